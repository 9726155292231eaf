//! Guest bytes on their way to the user's terminal (`vm-shell`, `vm-run --wait`,
//! `bulkhead-term-filter`), and guest messages on their way to a CLI or a notification.
//!
//! A terminal is not a passive screen. OSC 52 writes the host clipboard, and requests (device
//! status, device attributes, mode, window and version reports, DECRQSS, XTGETTCAP, ENQ) make
//! the terminal type its answer into the input stream. [`TerminalFilter`] is a streaming parser
//! shaped like the DEC VT500 one (vt100.net/emu/dec_ansi_parser: ground, escape, control
//! sequence and string states) that lets text and the sequences full-screen programs draw with
//! through, byte for byte, and drops everything else whole. Default deny: a sequence passes
//! only if it is on the list below.
//!
//! Passes: text (valid UTF-8), BEL, BS, HT, LF, VT, FF, CR, SO, SI; ESC 7 / 8 (DECSC, DECRC),
//! ESC D / E / H / M, ESC = / > (keypad modes), ESC ( or ESC ) and one final (G0/G1 charset);
//! CSI cursor movement (A–G, H, f, d, `, a, e, I, Z), erase and edit (J, K, X, P, @, L, M),
//! scroll (S, T with one parameter), scroll region (r), SGR (m, with `:` sub-parameters),
//! tab clear (g), repeat (b, at most [`MAX_REPEAT`]), save/restore cursor (s, u without
//! parameters), cursor style (`CSI Ps SP q`), insert/replace mode (`CSI 4 h/l`) and the DEC
//! private modes in [`DEC_MODES`]. A mode list with other modes in it passes with only the
//! allowed ones (`CSI ? 1049;1000 h` becomes `CSI ? 1049 h`).
//!
//! Drops: every OSC, DCS, SOS, PM and APC string up to its terminator; every other CSI (DSR
//! `n`, DA `c`, DECRQM `$ p`, window ops `t`, XTVERSION `> q`, anything with a `<`, `=` or `>`
//! marker, `?` with any final but h/l, unknown finals); every other escape (ESC Z, ESC c,
//! ESC % …, ESC SP …, ESC #…); the other C0 controls (ENQ answers back); DEL; C1 controls,
//! whether raw bytes or UTF-8 encoded; sequences longer than [`MAX_SEQUENCE`] bytes or with
//! more than [`MAX_PARAMS`] parameters. Invalid UTF-8 becomes U+FFFD.
//!
//! The output is a run of whole units (a character, an allowed control, a complete allowed
//! sequence), so the terminal is back in its ground state after each, whatever was dropped in
//! between. Every decision is made byte by byte, so the way input is split into chunks never
//! changes the output. [`TerminalFilter::finish`] undoes the modes the guest left changed
//! (alternate screen, hidden cursor, bracketed paste, …) so they do not outlive its output.
//!
//! All this assumes a UTF-8 terminal. In one that is not, the bytes 0x80–0x9f inside UTF-8
//! characters (`Û` is C3 9B) would be C1 controls (9B is CSI), so for a user whose locale is
//! not UTF-8 ([`locale_is_utf8`]) the filter is made with [`TerminalFilter::ascii`], which
//! writes every character outside ASCII as `?`.

use std::io::Write;

pub mod fuzzing;

/// Longest escape or control sequence kept, in bytes from its ESC to its final byte; a longer
/// one is read to its end and dropped whole.
pub const MAX_SEQUENCE: usize = 128;

/// Most parameters in one control sequence; one with more is dropped.
pub const MAX_PARAMS: usize = 32;

/// Largest count of `CSI Ps b` (repeat the last character) that passes.
pub const MAX_REPEAT: u32 = 65_535;

/// Longest guest message [`guest_message`] keeps, in bytes (UTF-8), ellipsis included.
pub const MAX_MESSAGE: usize = 1024;

/// DEC private modes (`CSI ? Pm h/l`) that pass: cursor keys (1), origin (6), auto-wrap (7),
/// cursor blink (12, display only; vim sets it), cursor visible (25), alternate screen (47,
/// 1047, 1048, 1049) and bracketed paste (2004). Mouse reporting (9, 1000–1006, 1015, 1016)
/// and focus events (1004) are dropped: they make the terminal type mouse and focus reports
/// into the input, and would keep doing so in the user's own shell after the guest's output
/// ends; full-screen programs work without them, with the keyboard.
pub const DEC_MODES: &[u32] = &[1, 6, 7, 12, 25, 47, 1047, 1048, 1049, 2004];

/// ANSI modes (`CSI Pm h/l`) that pass: insert/replace (4).
const ANSI_MODES: &[u32] = &[4];

const ESC: u8 = 0x1b;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const DEL: u8 = 0x7f;
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Filters a stream of guest output for a terminal; feed it chunks as they come.
#[derive(Debug, Clone, Default)]
pub struct TerminalFilter {
    /// Every character outside ASCII becomes `?` (a terminal that is not UTF-8).
    ascii: bool,
    state: State,
    seq: Sequence,
    utf8: Utf8,
    changed: Changed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Ground,
    /// After ESC: intermediates up to the final byte.
    Escape,
    /// After ESC [: parameters and intermediates up to the final byte.
    Csi,
    /// Inside an OSC string: dropped up to BEL or ST.
    Osc,
    /// Inside a DCS, SOS, PM or APC string: dropped up to ST.
    Str,
}

impl TerminalFilter {
    /// A filter for a UTF-8 terminal.
    pub fn new() -> TerminalFilter {
        TerminalFilter::default()
    }

    /// A filter for a terminal that is not UTF-8: its output is ASCII only, every other
    /// character (and every invalid sequence) one `?`.
    pub fn ascii() -> TerminalFilter {
        TerminalFilter {
            ascii: true,
            ..TerminalFilter::default()
        }
    }

    /// Filters `input`, appending what may reach the terminal to `out`. A sequence or a
    /// character cut by the end of `input` waits for the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        let mut rest = input;
        while !rest.is_empty() {
            // Runs of printable ASCII outside any sequence, the bulk of most output, at once.
            if self.state == State::Ground && self.utf8.idle() {
                let run = rest
                    .iter()
                    .position(|b| !(0x20..0x7f).contains(b))
                    .unwrap_or(rest.len());
                let (text, after) = rest.split_at(run);
                out.extend_from_slice(text);
                rest = after;
            }
            if let Some((&b, after)) = rest.split_first() {
                let [first, second] = self.utf8.push(b);
                for token in [first, second].into_iter().flatten() {
                    self.token(token, out);
                }
                rest = after;
            }
        }
    }

    /// The end of the guest's output: drops an unfinished sequence, turns an unfinished
    /// character into U+FFFD, and appends what undoes the modes the guest left changed.
    /// The filter starts afresh after this.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(token) = self.utf8.finish() {
            self.token(token, out);
        }
        self.state = State::Ground;
        self.changed.undo(out);
        self.changed = Changed::default();
    }

    fn token(&mut self, token: Token, out: &mut Vec<u8>) {
        let text: &[u8] = match token {
            Token::Ascii(b) => return self.byte(b, out),
            Token::C1 => {
                // A C1 control (ST, CSI, OSC, … in UTF-8) ends whatever it is in, and is
                // dropped.
                self.state = State::Ground;
                return;
            }
            Token::Char(..) | Token::Invalid if self.ascii => b"?",
            Token::Char(ref bytes, len) => bytes.get(..len).unwrap_or_default(),
            Token::Invalid => REPLACEMENT,
            Token::RawC1 => b"",
        };
        match self.state {
            State::Osc | State::Str => {}
            // Not part of any sequence: the sequence is dropped, the character is text.
            State::Escape | State::Csi | State::Ground => {
                self.state = State::Ground;
                out.extend_from_slice(text);
            }
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match (b, self.state) {
            (CAN | SUB, _) => self.state = State::Ground,
            (ESC, _) => {
                self.seq.start();
                self.state = State::Escape;
            }
            (0x07, State::Osc) => self.state = State::Ground,
            (_, State::Osc | State::Str) => {}
            (DEL, _) => {}
            // C0 controls inside a sequence act at once, as in a terminal.
            (0x00..=0x1f, _) => self.control(b, out),
            (_, State::Ground) => out.push(b),
            (_, State::Escape) => self.escape_byte(b, out),
            (_, State::Csi) => self.csi_byte(b, out),
        }
    }

    fn control(&mut self, b: u8, out: &mut Vec<u8>) {
        // BEL, BS, HT, LF, VT, FF, CR, SO, SI.
        if (0x07..=0x0f).contains(&b) {
            match b {
                0x0e => self.changed.shifted_out = true,
                0x0f => self.changed.shifted_out = false,
                _ => {}
            }
            out.push(b);
        }
    }

    fn escape_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        let first = self.seq.len() == 1;
        match b {
            0x20..=0x2f => return self.seq.push(b),
            b'[' if first => {
                self.seq.push(b);
                self.state = State::Csi;
                return;
            }
            b']' if first => {
                self.state = State::Osc;
                return;
            }
            b'P' | b'X' | b'^' | b'_' if first => {
                self.state = State::Str;
                return;
            }
            _ => self.seq.push(b),
        }
        self.state = State::Ground;
        if let Some(seq) = self.seq.complete() {
            if self.changed.escape_allowed(seq) {
                out.extend_from_slice(seq);
            }
        }
    }

    fn csi_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        self.seq.push(b);
        if (0x40..=0x7e).contains(&b) {
            self.state = State::Ground;
            if let Some(csi) = self.seq.complete().and_then(Csi::parse) {
                csi.dispatch(&mut self.changed, out);
            }
        }
    }
}

/// The bytes of the sequence being read, from its ESC on.
#[derive(Debug, Clone)]
struct Sequence {
    bytes: [u8; MAX_SEQUENCE],
    len: usize,
    /// It outgrew the buffer: read to its final byte, then dropped.
    too_long: bool,
}

impl Default for Sequence {
    fn default() -> Sequence {
        Sequence {
            bytes: [0; MAX_SEQUENCE],
            len: 0,
            too_long: false,
        }
    }
}

impl Sequence {
    fn start(&mut self) {
        self.len = 0;
        self.too_long = false;
        self.push(ESC);
    }

    fn push(&mut self, b: u8) {
        match self.bytes.get_mut(self.len) {
            Some(slot) => {
                *slot = b;
                self.len += 1;
            }
            None => self.too_long = true,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The whole sequence, unless it was too long.
    fn complete(&self) -> Option<&[u8]> {
        (!self.too_long).then(|| self.bytes.get(..self.len).unwrap_or_default())
    }
}

/// A complete control sequence: `ESC [ marker? params intermediates final`.
struct Csi<'a> {
    bytes: &'a [u8],
    marker: Option<u8>,
    params: &'a [u8],
    intermediates: &'a [u8],
    final_byte: u8,
}

impl<'a> Csi<'a> {
    /// Splits `bytes` into its parts; `None` when they are out of order (a marker after the
    /// start, a parameter after an intermediate), so the sequence is malformed.
    fn parse(bytes: &'a [u8]) -> Option<Csi<'a>> {
        let (&final_byte, body) = bytes.strip_prefix(&[ESC, b'['])?.split_last()?;
        let (marker, body) = match body.split_first() {
            Some((&m @ b'<'..=b'?', rest)) => (Some(m), rest),
            _ => (None, body),
        };
        let split = body
            .iter()
            .position(|b| !(b'0'..=b';').contains(b))
            .unwrap_or(body.len());
        let (params, intermediates) = body.split_at(split);
        if !intermediates.iter().all(|b| (0x20..=0x2f).contains(b)) {
            return None;
        }
        Some(Csi {
            bytes,
            marker,
            params,
            intermediates,
            final_byte,
        })
    }

    fn param_count(&self) -> usize {
        if self.params.is_empty() {
            0
        } else {
            self.params.iter().filter(|b| **b == b';').count() + 1
        }
    }

    fn params(&self) -> impl Iterator<Item = &'a [u8]> {
        // No parameters at all are none, not one empty one.
        let none = self.params.is_empty();
        self.params.split(|b| *b == b';').filter(move |_| !none)
    }

    /// The first parameter, or `None` when it is empty or not a plain number.
    fn first_number(&self) -> Option<u32> {
        self.params().next().and_then(number)
    }

    /// Appends the sequence to `out` if it may pass (the allowed modes only, for a mode list),
    /// and notes what it changes.
    fn dispatch(&self, changed: &mut Changed, out: &mut Vec<u8>) {
        if self.param_count() > MAX_PARAMS {
            return;
        }
        match (self.marker, self.intermediates, self.final_byte) {
            (None, b"", b'h' | b'l') => self.modes(ANSI_MODES, changed, out),
            (Some(b'?'), b"", b'h' | b'l') => self.modes(DEC_MODES, changed, out),
            (None, b"", _) if self.plain_allowed() => {
                changed.note_plain(self);
                out.extend_from_slice(self.bytes);
            }
            // DECSCUSR, the cursor's shape.
            (None, b" ", b'q') if self.param_count() <= 1 && !self.params.contains(&b':') => {
                changed.cursor_style = !matches!(self.first_number(), None | Some(0));
                out.extend_from_slice(self.bytes);
            }
            _ => {}
        }
    }

    /// A sequence without marker or intermediates that only draws or moves.
    fn plain_allowed(&self) -> bool {
        if self.params.contains(&b':') {
            return self.final_byte == b'm';
        }
        match self.final_byte {
            b'A'..=b'M' | b'P' | b'S' | b'X' | b'Z' | b'@' => true,
            b'`' | b'a' | b'd' | b'e' | b'f' | b'g' | b'm' | b'r' => true,
            b'T' => self.param_count() <= 1,
            b'b' => self.param_count() <= 1 && self.first_number().unwrap_or(1) <= MAX_REPEAT,
            b's' | b'u' => self.params.is_empty(),
            _ => false,
        }
    }

    /// `CSI [?] Pm h/l`: passes with the modes in `allowed` only, byte for byte when all are.
    fn modes(&self, allowed: &[u32], changed: &mut Changed, out: &mut Vec<u8>) {
        let set = self.final_byte == b'h';
        let is_allowed = |p: &[u8]| number(p).filter(|m| allowed.contains(m));
        let kept = self.params().filter_map(is_allowed).count();
        if kept == 0 {
            return;
        }
        for mode in self.params().filter_map(is_allowed) {
            match self.marker {
                Some(_) => changed.dec_mode(mode, set),
                None => changed.insert = set,
            }
        }
        if kept == self.param_count() {
            out.extend_from_slice(self.bytes);
            return;
        }
        out.extend_from_slice(b"\x1b[");
        out.extend(self.marker);
        for (i, mode) in self.params().filter_map(is_allowed).enumerate() {
            let sep = if i == 0 { "" } else { ";" };
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{sep}{mode}");
        }
        out.push(self.final_byte);
    }
}

/// A parameter as a number: digits only, at least one; saturates.
fn number(p: &[u8]) -> Option<u32> {
    if p.is_empty() || !p.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(p.iter().fold(0u32, |n, d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    }))
}

/// The terminal state that passed sequences changed from its default, so that
/// [`TerminalFilter::finish`] can put it back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Changed {
    /// The mode that entered the alternate screen (47, 1047 or 1049).
    alt_screen: Option<u32>,
    cursor_hidden: bool,
    no_wrap: bool,
    cursor_keys: bool,
    origin: bool,
    bracketed_paste: bool,
    insert: bool,
    keypad: bool,
    scroll_region: bool,
    sgr: bool,
    cursor_style: bool,
    g0: bool,
    g1: bool,
    shifted_out: bool,
}

impl Changed {
    /// Whether an escape sequence (`ESC intermediates final`) may pass; notes what it changes.
    fn escape_allowed(&mut self, seq: &[u8]) -> bool {
        match *seq {
            [ESC, mode @ (b'=' | b'>')] => {
                self.keypad = mode == b'=';
                true
            }
            [ESC, b'7' | b'8' | b'D' | b'E' | b'H' | b'M'] => true,
            [ESC, which @ (b'(' | b')'), charset] => {
                let changed = charset != b'B';
                match which {
                    b'(' => self.g0 = changed,
                    _ => self.g1 = changed,
                }
                true
            }
            _ => false,
        }
    }

    fn dec_mode(&mut self, mode: u32, set: bool) {
        match mode {
            47 | 1047 | 1049 => self.alt_screen = set.then_some(mode),
            1 => self.cursor_keys = set,
            6 => self.origin = set,
            7 => self.no_wrap = !set,
            25 => self.cursor_hidden = !set,
            2004 => self.bracketed_paste = set,
            _ => {}
        }
    }

    fn note_plain(&mut self, csi: &Csi) {
        let default = matches!(csi.params, b"" | b"0");
        match csi.final_byte {
            b'm' => self.sgr = !default,
            b'r' => self.scroll_region = !csi.params.is_empty(),
            _ => {}
        }
    }

    /// Appends what puts the changed state back to the terminal's default.
    fn undo(&self, out: &mut Vec<u8>) {
        if let Some(mode) = self.alt_screen {
            let _ = write!(out, "\x1b[?{mode}l");
        }
        let steps: [(bool, &[u8]); 13] = [
            // Resetting the scroll region homes the cursor: save and restore it around.
            (self.scroll_region, b"\x1b7\x1b[r\x1b8"),
            (self.origin, b"\x1b[?6l"),
            (self.insert, b"\x1b[4l"),
            (self.no_wrap, b"\x1b[?7h"),
            (self.cursor_hidden, b"\x1b[?25h"),
            (self.cursor_keys, b"\x1b[?1l"),
            (self.keypad, b"\x1b>"),
            (self.bracketed_paste, b"\x1b[?2004l"),
            (self.cursor_style, b"\x1b[0 q"),
            (self.shifted_out, b"\x0f"),
            (self.g0, b"\x1b(B"),
            (self.g1, b"\x1b)B"),
            (self.sgr, b"\x1b[m"),
        ];
        for (changed, undo) in steps {
            if changed {
                out.extend_from_slice(undo);
            }
        }
    }
}

/// What the UTF-8 decoder makes of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// 0x00–0x7f.
    Ascii(u8),
    /// A valid character from U+00A0 up, with its bytes.
    Char([u8; 4], usize),
    /// A C1 control encoded in UTF-8 (U+0080–U+009F), which UTF-8 terminals obey.
    C1,
    /// A raw byte 0x80–0x9f outside any character: an 8-bit C1 control.
    RawC1,
    /// Any other byte or bytes that are not UTF-8.
    Invalid,
}

/// An incremental UTF-8 decoder that never accepts what `str::from_utf8` would refuse
/// (overlong forms, surrogates, code points past U+10FFFF).
#[derive(Debug, Clone, Copy, Default)]
struct Utf8 {
    bytes: [u8; 4],
    len: usize,
    need: usize,
}

impl Utf8 {
    /// Takes one byte; returns what it completes: nothing (a character is under way), a
    /// token, or an unfinished character cut short followed by what this byte is.
    fn push(&mut self, b: u8) -> [Option<Token>; 2] {
        if self.len == 0 {
            return [self.start(b), None];
        }
        if !self.continues(b) {
            self.len = 0;
            return [Some(Token::Invalid), self.start(b)];
        }
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
        }
        self.len += 1;
        if self.len < self.need {
            return [None, None];
        }
        self.len = 0;
        let token = match self.bytes {
            [0xc2, 0x80..=0x9f, ..] => Token::C1,
            bytes => Token::Char(bytes, self.need),
        };
        [Some(token), None]
    }

    fn start(&mut self, b: u8) -> Option<Token> {
        self.need = match b {
            0x00..=0x7f => return Some(Token::Ascii(b)),
            0x80..=0x9f => return Some(Token::RawC1),
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return Some(Token::Invalid),
        };
        self.bytes[0] = b;
        self.len = 1;
        None
    }

    /// Whether `b` may come next in the character under way.
    fn continues(&self, b: u8) -> bool {
        let range = match (self.len, self.bytes[0]) {
            (1, 0xe0) => 0xa0..=0xbf,
            (1, 0xed) => 0x80..=0x9f,
            (1, 0xf0) => 0x90..=0xbf,
            (1, 0xf4) => 0x80..=0x8f,
            _ => 0x80..=0xbf,
        };
        range.contains(&b)
    }

    /// No character is under way.
    fn idle(&self) -> bool {
        self.len == 0
    }

    /// The end of input: a character under way is invalid.
    fn finish(&mut self) -> Option<Token> {
        let cut = self.len > 0;
        self.len = 0;
        cut.then_some(Token::Invalid)
    }
}

/// Whether the user's locale says their terminal speaks UTF-8: the first of `LC_ALL`,
/// `LC_CTYPE` and `LANG` that is set and not empty (as `setlocale` reads them) names a UTF-8
/// codeset. None set is the C locale: not UTF-8. `var` looks a variable up (`std::env::var`).
pub fn locale_is_utf8(var: impl Fn(&str) -> Option<String>) -> bool {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .into_iter()
        .find_map(|name| var(name).filter(|v| !v.is_empty()))
        .is_some_and(|locale| {
            let locale = locale.to_ascii_lowercase();
            locale.contains("utf-8") || locale.contains("utf8")
        })
}

/// Makes a message that came from a guest (an agent error, a protocol complaint quoting what
/// the guest sent) safe to print in a terminal or show in a notification: tabs and line
/// breaks become spaces, every other control character (C0, DEL, C1) and every invisible
/// format character (bidi overrides and isolates, zero-width characters) becomes U+FFFD, and
/// the result is cut to [`MAX_MESSAGE`] bytes with an ellipsis. The one function for guest
/// text; use it wherever such text is stored or printed.
pub fn guest_message(raw: &str) -> String {
    const ELLIPSIS: char = '…';
    let budget = MAX_MESSAGE - ELLIPSIS.len_utf8();
    let mut out = String::with_capacity(raw.len().min(MAX_MESSAGE));
    // The longest prefix that leaves room for the ellipsis.
    let mut keep = 0;
    for c in raw.chars() {
        let c = match c {
            '\t' | '\n' | '\r' | '\u{2028}' | '\u{2029}' => ' ',
            c if c.is_control() || is_format(c) => char::REPLACEMENT_CHARACTER,
            c => c,
        };
        if out.len() + c.len_utf8() > MAX_MESSAGE {
            out.truncate(keep);
            out.push(ELLIPSIS);
            return out;
        }
        out.push(c);
        if out.len() <= budget {
            keep = out.len();
        }
    }
    out
}

/// Invisible characters that reorder or hide text (the compositor's title sanitiser uses the
/// same set).
pub fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests;
