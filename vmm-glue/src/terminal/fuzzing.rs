//! What the terminal filter's fuzz target (`vmm-glue/fuzz`, target `terminal`) checks, also
//! run over its corpus by `cargo test` (`tests/terminal_corpus.rs`): not only that nothing
//! panics, but that no output can drive a terminal.

use super::{TerminalFilter, DEC_MODES};

/// Filters `data` whole, byte by byte, and in two chunks split where its first two bytes
/// say; panics unless all three outputs are equal, the output keeps [`check_output`]'s
/// promises and filtering it again changes nothing. The filter for terminals that are not
/// UTF-8 must write ASCII only.
pub fn check(data: &[u8]) {
    let mut ascii = Vec::new();
    let mut f = TerminalFilter::ascii();
    f.feed(data, &mut ascii);
    f.finish(&mut ascii);
    assert!(ascii.is_ascii(), "the ASCII filter wrote {ascii:?}");
    if let Err(e) = check_output(&ascii) {
        panic!("{e}; ASCII output {:?}", String::from_utf8_lossy(&ascii));
    }

    let whole = filter_chunks(data, data.len());
    if let Err(e) = check_output(&whole) {
        panic!("{e}; output {:?}", String::from_utf8_lossy(&whole));
    }
    let at = split_point(data);
    assert!(
        filter_chunks(data, at) == whole,
        "split at {at} changes the output"
    );
    assert!(
        filter_chunks(data, 1) == whole,
        "byte by byte changes the output"
    );
    assert!(
        filter_chunks(&whole, whole.len()) == whole,
        "filtering the output again changes it"
    );
}

/// `data` filtered (and finished) in chunks of `chunk` bytes.
pub fn filter_chunks(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut f = TerminalFilter::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        f.feed(piece, &mut out);
    }
    f.finish(&mut out);
    out
}

fn split_point(data: &[u8]) -> usize {
    let seed = match data {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
        [a] => usize::from(*a),
        [] => 0,
    };
    seed % (data.len() + 1)
}

/// The promises about what reaches the terminal: valid UTF-8 without C1 controls; no ENQ;
/// every ESC starts a whole sequence that is neither a string (OSC, DCS, SOS, PM, APC), nor a
/// request the terminal answers (DSR, DA, DECRQM, window reports, XTVERSION, DECID, …), nor
/// a DEC private mode outside [`DEC_MODES`].
pub fn check_output(out: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("not UTF-8: {e}"))?;
    if let Some(c) = text.chars().find(|c| ('\u{80}'..='\u{9f}').contains(c)) {
        return Err(format!("a C1 control {c:?}"));
    }
    if out.contains(&0x05) {
        return Err("ENQ".into());
    }
    let mut rest = out;
    while let Some(i) = rest.iter().position(|b| *b == 0x1b) {
        let seq = rest.get(i + 1..).unwrap_or_default();
        let len = check_escape(seq)?;
        rest = seq.get(len..).unwrap_or_default();
    }
    Ok(())
}

/// Checks the sequence after an ESC; returns its length.
fn check_escape(seq: &[u8]) -> Result<usize, String> {
    match seq {
        [] => Err("a lone ESC at the end".into()),
        [b']' | b'P' | b'X' | b'^' | b'_', ..] => Err(format!("a string: ESC {}", seq[0] as char)),
        [b'[', body @ ..] => check_csi(body).map(|n| n + 1),
        [b'(' | b')', charset, ..] if (0x30..=0x7e).contains(charset) => Ok(2),
        [b'7' | b'8' | b'=' | b'>' | b'D' | b'E' | b'H' | b'M', ..] => Ok(1),
        [b, ..] => Err(format!("an escape not on the list: ESC {:?}", *b as char)),
    }
}

/// Checks a control sequence after its `ESC [`; returns its length.
fn check_csi(body: &[u8]) -> Result<usize, String> {
    let end = body
        .iter()
        .position(|b| !(0x20..=0x3f).contains(b))
        .ok_or("a control sequence without a final byte")?;
    let (head, final_byte) = (&body[..end], body[end]);
    let shown = String::from_utf8_lossy(&body[..=end]).into_owned();
    if !(0x40..=0x7e).contains(&final_byte) {
        return Err(format!("a control sequence cut short: CSI {shown:?}"));
    }
    let marker = head.first().filter(|b| (b'<'..=b'?').contains(*b));
    let request = matches!(final_byte, b'n' | b'c' | b't' | b'x' | b'y' | b'w' | b'|')
        || head.contains(&b'$')
        || matches!(marker, Some(b'<' | b'=' | b'>'))
        || (marker == Some(&b'?') && !matches!(final_byte, b'h' | b'l'));
    if request {
        return Err(format!("a request or unknown sequence: CSI {shown:?}"));
    }
    if marker == Some(&b'?') {
        for mode in head[1..].split(|b| *b == b';') {
            let known = std::str::from_utf8(mode)
                .ok()
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| DEC_MODES.contains(&m));
            if !known {
                return Err(format!("a DEC private mode not on the list: CSI {shown:?}"));
            }
        }
    }
    Ok(end + 1)
}
