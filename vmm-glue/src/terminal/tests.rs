//! The filter against hostile sequences, and against what vim, less and htop really emit.

use super::fuzzing::{check, check_output, filter_chunks};
use super::*;

/// `input` fed in one piece, without the undo that `finish` appends.
fn feed(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    TerminalFilter::new().feed(input, &mut out);
    out
}

/// `input` fed as two chunks split at `at`, then finished.
fn split_at(input: &[u8], at: usize) -> Vec<u8> {
    let mut f = TerminalFilter::new();
    let mut out = Vec::new();
    f.feed(&input[..at], &mut out);
    f.feed(&input[at..], &mut out);
    f.finish(&mut out);
    out
}

/// Asserts that `input`, split at every byte boundary, gives `expected` (plus nothing from
/// `finish`), and that the fuzz target's invariants hold for it.
fn assert_filters_to(input: &[u8], expected: &[u8]) {
    for at in 0..=input.len() {
        let got = split_at(input, at);
        assert!(
            got == expected,
            "{:?} split at {at}: got {:?}, want {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }
    check(input);
}

fn assert_passes(input: &[u8]) {
    assert_eq!(
        feed(input),
        input,
        "{:?} must pass unchanged",
        String::from_utf8_lossy(input)
    );
    check(input);
}

#[test]
fn text_and_utf8_pass_unchanged() {
    assert_filters_to(
        "plain text, ünïcödé, 漢字, 🦀 and tabs\tand\r\nlines\x07\x08".as_bytes(),
        "plain text, ünïcödé, 漢字, 🦀 and tabs\tand\r\nlines\x07\x08".as_bytes(),
    );
}

#[test]
fn osc_52_is_dropped_with_either_terminator_at_every_split() {
    // Sets the host clipboard to "rm -rf ~\n" in xterm, foot, kitty, WezTerm, …
    assert_filters_to(b"a\x1b]52;c;cm0gLXJmIH4K\x07b", b"ab");
    assert_filters_to(b"a\x1b]52;c;cm0gLXJmIH4K\x1b\\b", b"ab");
    assert_filters_to(b"a\x1b]52;p;?\x07b", b"ab");
    // With the UTF-8 C1 string terminator.
    assert_filters_to("a\x1b]52;c;cm0K\u{9c}b".as_bytes(), b"ab");
}

#[test]
fn every_osc_and_string_is_dropped() {
    for hostile in [
        &b"\x1b]0;fake title\x07"[..],
        b"\x1b]2;title\x1b\\",
        b"\x1b]4;1;?\x07", // colour query
        b"\x1b]10;?\x07",  // foreground colour query
        b"\x1b]1337;File=inline=1:AAAA\x07",
        b"\x1bP$qm\x1b\\",         // DECRQSS
        b"\x1bP+q544e\x1b\\",      // XTGETTCAP
        b"\x1bP1;1|17/ab\x1b\\",   // DECUDK: program the keys
        b"\x1b_Gf=100;AAAA\x1b\\", // APC (kitty graphics)
        b"\x1b^privacy message\x1b\\",
        b"\x1bXstart of string\x1b\\",
    ] {
        let mut input = b"<".to_vec();
        input.extend_from_slice(hostile);
        input.extend_from_slice(b">");
        assert_filters_to(&input, b"<>");
    }
    // A hyperlink loses its target, keeps its text.
    assert_filters_to(
        b"<\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\>",
        b"<link>",
    );
    // A string's content never leaks, even with BEL (which ends only OSC) in a DCS.
    assert_filters_to(b"\x1bPq\x07#0;2;0;0;0\x1b\\ok", b"ok");
}

#[test]
fn requests_the_terminal_answers_are_dropped() {
    for request in [
        &b"\x1b[6n"[..], // cursor position report
        b"\x1b[5n",
        b"\x1b[?6n",
        b"\x1b[?15n",
        b"\x1b[c", // primary DA
        b"\x1b[0c",
        b"\x1b[>c", // secondary DA
        b"\x1b[>0c",
        b"\x1b[=c",   // tertiary DA
        b"\x1b[?1$p", // DECRQM
        b"\x1b[4$p",
        b"\x1b[14t", // window ops and reports
        b"\x1b[18t",
        b"\x1b[21t",
        b"\x1b[22;0;0t",
        b"\x1b[3;0;0t",
        b"\x1b[>q", // XTVERSION
        b"\x1b[>0q",
        b"\x1bZ",            // DECID
        b"\x05",             // ENQ: the answerback message
        b"\x1b[x",           // DECREQTPARM
        b"\x1b[?4m",         // XTQMODKEYS
        b"\x1b[?u",          // kitty keyboard query
        b"\x1b[?1;1;0S",     // XTSMGRAPHICS
        b"\x1b[1;1;1;1;1*y", // DECRQCRA
        b"\x1b[?996n",       // colour scheme query
    ] {
        let mut input = b"<".to_vec();
        input.extend_from_slice(request);
        input.extend_from_slice(b">");
        assert_filters_to(&input, b"<>");
    }
}

#[test]
fn other_unlisted_sequences_are_dropped() {
    for other in [
        &b"\x1bc"[..],       // full reset
        b"\x1b%@",           // leave UTF-8 mode: 8-bit C1 bytes would then act
        b"\x1b G",           // S8C1T: answers in 8-bit controls
        b"\x1b#8",           // DECALN
        b"\x1b[>4;2m",       // modifyOtherKeys
        b"\x1b[!p",          // soft reset
        b"\x1b[?1000h",      // mouse reporting
        b"\x1b[?1006;1000h", // as htop sends it
        b"\x1b[?1004h",      // focus events
        b"\x1b[20h",         // LNM
        b"\x1b[2h",          // keyboard lock
        b"\x1b[1;2s",        // DECSLRM
        b"\x1b[1;2;3;4;5T",  // mouse highlight tracking
        b"\x1b[5i",          // media copy
        b"\x1b[3:1A",        // sub-parameters outside SGR
        b"\x1b[1$}",         // unknown intermediates
        b"\x1b[1y",          // unknown final
        b"\x1bN",            // SS2
        b"\x1b\\",           // a lone ST
        b"\x00\x01\x02\x03\x04\x06\x10\x11\x1c\x1f\x7f",
    ] {
        let mut input = b"<".to_vec();
        input.extend_from_slice(other);
        input.extend_from_slice(b">");
        assert_filters_to(&input, b"<>");
    }
}

#[test]
fn drawing_sequences_pass_byte_for_byte() {
    for allowed in [
        &b"\x1b[A"[..],
        b"\x1b[12B",
        b"\x1b[3C",
        b"\x1b[D",
        b"\x1b[2E",
        b"\x1b[F",
        b"\x1b[40G",
        b"\x1b[H",
        b"\x1b[24;80H",
        b"\x1b[5;5f",
        b"\x1b[7d",
        b"\x1b[9`",
        b"\x1b[2a",
        b"\x1b[3e",
        b"\x1b[I",
        b"\x1b[Z",
        b"\x1b[J",
        b"\x1b[2J",
        b"\x1b[K",
        b"\x1b[1K",
        b"\x1b[28X",
        b"\x1b[4P",
        b"\x1b[3@",
        b"\x1b[2L",
        b"\x1b[2M",
        b"\x1b[1;24r",
        b"\x1b[r",
        b"\x1b[3S",
        b"\x1b[2T",
        b"\x1b[m",
        b"\x1b[0;1;4;38;5;208;48;2;10;20;30m",
        b"\x1b[38:2::255:128:0m",
        b"\x1b[4:3m",
        b"\x1b[3g",
        b"\x1b[80b",
        b"\x1b[s",
        b"\x1b[u",
        b"\x1b[2 q",
        b"\x1b[4h",
        b"\x1b[4l",
        b"\x1b[?1049h",
        b"\x1b[?1049l",
        b"\x1b[?47h",
        b"\x1b[?1047l",
        b"\x1b[?1048h",
        b"\x1b[?25l",
        b"\x1b[?25h",
        b"\x1b[?7l",
        b"\x1b[?1h",
        b"\x1b[?2004h",
        b"\x1b[?6h",
        b"\x1b[?12;25h",
        b"\x1b7",
        b"\x1b8",
        b"\x1bM",
        b"\x1bD",
        b"\x1bE",
        b"\x1bH",
        b"\x1b=",
        b"\x1b>",
        b"\x1b(B",
        b"\x1b(0",
        b"\x1b)0",
        b"\x0e\x0f\x0b\x0c",
    ] {
        assert_passes(allowed);
    }
}

#[test]
fn mode_lists_keep_only_the_allowed_modes() {
    assert_eq!(feed(b"\x1b[?1049;1000h"), b"\x1b[?1049h");
    assert_eq!(feed(b"\x1b[?1000;25;1006l"), b"\x1b[?25l");
    assert_eq!(feed(b"\x1b[?0025h"), b"\x1b[?0025h");
    assert_eq!(feed(b"\x1b[?;25h"), b"\x1b[?25h");
    assert_eq!(feed(b"\x1b[4;20h"), b"\x1b[4h");
    assert_eq!(feed(b"\x1b[?99999999999999h"), b"");
    check(b"\x1b[?1049;1000h\x1b[?1000;25;1006l\x1b[4;20h");
}

#[test]
fn c1_introducers_never_act() {
    // Raw 8-bit C1 bytes (CSI, OSC, DCS, ST) are dropped; what follows them is plain text.
    assert_filters_to(b"a\x9b6nb", b"a6nb");
    assert_filters_to(b"a\x9d52;c;eA==\x9cb", b"a52;c;eA==b");
    assert_filters_to(b"\x90$qm\x9c", b"$qm");
    // C1 controls encoded as UTF-8 too (UTF-8 terminals obey those).
    assert_filters_to("a\u{9b}6nb".as_bytes(), b"a6nb");
    assert_filters_to("a\u{9d}0;title\u{7}b".as_bytes(), b"a0;title\x07b");
    assert_filters_to("\u{85}\u{8d}\u{9a}\u{9f}x".as_bytes(), b"x");
    // A C1 control inside a sequence ends it.
    assert_filters_to("\x1b[1\u{9b}6n".as_bytes(), b"6n");
    // Continuation bytes 0x80–0x9f inside real characters are fine.
    assert_filters_to("Ā ŀ Ÿ ‚".as_bytes(), "Ā ŀ Ÿ ‚".as_bytes());
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    let r = "\u{FFFD}";
    // A lone high byte, a lead byte cut by ASCII, a surrogate, past U+10FFFF, an overlong
    // encoding, and a character cut by the end of the input. Each maximal invalid part is one
    // U+FFFD, except stray bytes 0x80-0x9f, which are dropped like the C1 controls they are.
    assert_filters_to(
        b"a\xffb\xc3(c\xed\xa0\x80d\xf4\x90\x80\x80e\xc0\xafz\xe2\x82",
        format!("a{r}b{r}(c{r}{r}d{r}e{r}{r}z{r}").as_bytes(),
    );
    // A cut character before an escape sequence does not swallow it.
    assert_filters_to(b"\xe2\x82\x1b[1m", format!("{r}\x1b[1m\x1b[m").as_bytes());
}

#[test]
fn overlong_sequences_are_dropped_whole() {
    let mut many_params = b"\x1b[".to_vec();
    for _ in 0..MAX_PARAMS {
        many_params.extend_from_slice(b"1;");
    }
    many_params.extend_from_slice(b"1mok");
    assert_filters_to(&many_params, b"ok");

    let mut long = b"\x1b[".to_vec();
    long.extend(std::iter::repeat_n(b'9', 10 * MAX_SEQUENCE));
    long.extend_from_slice(b"Aok");
    assert_filters_to(&long, b"ok");

    let mut private = b"\x1b[?".to_vec();
    for _ in 0..200 {
        private.extend_from_slice(b"25;");
    }
    private.extend_from_slice(b"lok");
    assert_eq!(filter_chunks(&private, 7), b"ok");

    let mut intermediates = b"\x1b".to_vec();
    intermediates.extend(std::iter::repeat_n(b' ', 2 * MAX_SEQUENCE));
    intermediates.extend_from_slice(b"Fok");
    assert_filters_to(&intermediates, b"ok");

    // The longest sequence that fits still passes.
    let mut longest = b"\x1b[".to_vec();
    longest.extend(std::iter::repeat_n(b'0', MAX_SEQUENCE - 3));
    longest.push(b'm');
    assert_passes(&longest);
    // Strings may be as long as they like; they never pass.
    let mut osc = b"\x1b]52;c;".to_vec();
    osc.extend(std::iter::repeat_n(b'A', 100_000));
    osc.extend_from_slice(b"\x07ok");
    assert_eq!(filter_chunks(&osc, 4096), b"ok");
    // REP repeats at most MAX_REPEAT times.
    assert_eq!(feed(b"x\x1b[65535b"), b"x\x1b[65535b");
    assert_eq!(feed(b"x\x1b[65536b"), b"x");
}

#[test]
fn interrupted_sequences_follow_the_vt500_parser() {
    // CAN and SUB abort; ESC starts over; C0 controls act in the middle of a sequence.
    assert_filters_to(b"\x1b[1\x18A", b"A");
    assert_filters_to(b"\x1b]52;c;x\x1aA", b"A");
    assert_filters_to(b"\x1b[1\x1b[2A", b"\x1b[2A");
    assert_filters_to(b"\x1b[1\n2A", b"\n\x1b[12A");
    assert_filters_to(b"\x1b[1\x7f2A", b"\x1b[12A");
    // ESC ends a string; what it starts is judged on its own.
    assert_filters_to(b"\x1b]0;t\x1b[1A", b"\x1b[1A");
    assert_filters_to(b"\x1b]0;t\x1b[6n", b"");
    // A character that is not ASCII ends a sequence and is text.
    assert_filters_to("\x1b[1é".as_bytes(), "é".as_bytes());
    // Malformed: a marker after the start, a parameter after an intermediate.
    assert_filters_to(b"\x1b[1?25h\x1b[1 2q", b"");
}

#[test]
fn finish_undoes_the_modes_the_guest_left() {
    let mut f = TerminalFilter::new();
    let mut out = Vec::new();
    f.feed(
        b"\x1b[?1049h\x1b[?25l\x1b[?2004h\x1b[?1h\x1b=\x1b(0\x0e\x1b[31m\x1b[2;20r\x1b[4h\x1b[?7l\x1b[5 q",
        &mut out,
    );
    let mut end = Vec::new();
    f.finish(&mut end);
    assert_eq!(
        String::from_utf8_lossy(&end),
        "\x1b[?1049l\x1b7\x1b[r\x1b8\x1b[4l\x1b[?7h\x1b[?25h\x1b[?1l\x1b>\x1b[?2004l\x1b[0 q\x0f\x1b(B\x1b[m"
    );
    // Modes put back by the guest itself need nothing; the filter starts afresh.
    f.feed(
        b"\x1b[?1049h\x1b[?1049l\x1b[1m\x1b[0m\x1b(0\x1b(B",
        &mut out,
    );
    end.clear();
    f.finish(&mut end);
    assert_eq!(end, b"");
    // An unfinished sequence is dropped at the end.
    f.feed(b"\x1b]52;c;AAAA", &mut out);
    end.clear();
    f.finish(&mut end);
    assert_eq!(end, b"");
}

/// Real output of full-screen programs, recorded with `tmux pipe-pane` at 80x24 with
/// `TERM=xterm-256color` (vim 9.0 `-u NONE` with `:syntax on`, `:set number`, typing and
/// `:vsplit`; less 590 paging and searching; htop 3.2.2 with tree view and setup). All of it
/// passes byte for byte except the listed sequences: title stack pushes and pops and window
/// reports (`CSI t`), vim's modifyOtherKeys (`CSI > 4 m`) and its query (`CSI ? 4 m`), and
/// htop's mouse reporting.
const RECORDINGS: [(&str, &[u8], &[&str]); 3] = [
    (
        "vim",
        include_bytes!("../../fuzz/corpus/terminal/vim"),
        &[
            "\x1b[22;0;0t",
            "\x1b[23;0;0t",
            "\x1b[22;1t",
            "\x1b[22;2t",
            "\x1b[23;1t",
            "\x1b[23;2t",
            "\x1b[>4;2m",
            "\x1b[>4;m",
            "\x1b[?4m",
        ],
    ),
    (
        "less",
        include_bytes!("../../fuzz/corpus/terminal/less"),
        &["\x1b[22;0;0t", "\x1b[23;0;0t"],
    ),
    (
        "htop",
        include_bytes!("../../fuzz/corpus/terminal/htop"),
        &[
            "\x1b[22;0;0t",
            "\x1b[23;0;0t",
            "\x1b[?1006;1000h",
            "\x1b[?1006;1000l",
        ],
    ),
];

fn remove_all(mut data: Vec<u8>, what: &[u8]) -> Vec<u8> {
    while let Some(i) = data.windows(what.len()).position(|w| w == what) {
        data.drain(i..i + what.len());
    }
    data
}

#[test]
fn vim_less_and_htop_output_passes_byte_for_byte() {
    for (name, recorded, dropped) in RECORDINGS {
        let mut expected = recorded.to_vec();
        for d in dropped {
            let before = expected.len();
            expected = remove_all(expected, d.as_bytes());
            assert!(expected.len() < before, "{name} no longer sends {d:?}");
        }
        let got = feed(recorded);
        if got != expected {
            let at = got
                .iter()
                .zip(&expected)
                .take_while(|(a, b)| a == b)
                .count();
            panic!(
                "{name}: output differs from byte {at}: got {:?}, want {:?}",
                String::from_utf8_lossy(&got[at..(at + 60).min(got.len())]),
                String::from_utf8_lossy(&expected[at..(at + 60).min(expected.len())])
            );
        }
        check(recorded);
        for chunk in [1, 2, 3, 7, 64, 4096] {
            assert!(filter_chunks(recorded, chunk) == filter_chunks(recorded, usize::MAX));
        }
    }
}

#[test]
fn check_output_catches_what_the_filter_must_never_emit() {
    for bad in [
        &b"\x1b]52;c;AA\x07"[..],
        b"\x1bP$qm\x1b\\",
        b"\x1b_x\x1b\\",
        b"\x1b^x\x1b\\",
        b"\x1bXx\x1b\\",
        b"\x1b[6n",
        b"\x1b[?6n",
        b"\x1b[c",
        b"\x1b[>c",
        b"\x1b[?1$p",
        b"\x1b[18t",
        b"\x1b[>q",
        b"\x1b[?1000h",
        b"\x1bZ",
        b"\x05",
        b"\x9b6n",
        "\u{9b}6n".as_bytes(),
        b"\x1b",
        b"\x1b[1",
    ] {
        assert!(
            check_output(bad).is_err(),
            "{:?} must be caught",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(check_output(b"\x1b[?1049h\x1b[1;31mok\x1b(B\x1b[m"), Ok(()));
}

#[test]
fn terminals_that_are_not_utf8_get_ascii_only() {
    // In a Latin-1 terminal the 9B in "Û" (C3 9B) would be a CSI: "Û6n" a cursor report.
    let mut f = TerminalFilter::ascii();
    let mut out = Vec::new();
    f.feed("Û6n ✓ \x1b[1mok\x1b[m \u{9b}6n ".as_bytes(), &mut out);
    f.feed(b"\xff\xff\xc3", &mut out);
    f.finish(&mut out);
    assert_eq!(out, b"?6n ? \x1b[1mok\x1b[m 6n ???");
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(locale_is_utf8(env(&[("LANG", "en_GB.UTF-8")])));
    assert!(locale_is_utf8(env(&[
        ("LC_CTYPE", "C.utf8"),
        ("LANG", "C")
    ])));
    assert!(locale_is_utf8(env(&[
        ("LC_ALL", ""),
        ("LANG", "de_DE.utf-8")
    ])));
    assert!(!locale_is_utf8(env(&[
        ("LC_ALL", "C"),
        ("LANG", "en_US.UTF-8")
    ])));
    assert!(!locale_is_utf8(env(&[("LANG", "de_DE.ISO-8859-1")])));
    assert!(!locale_is_utf8(env(&[])));
}

#[test]
fn guest_messages_lose_controls_and_length() {
    assert_eq!(
        guest_message("no such command\x1b]52;c;cm0K\x07\nnext\tline"),
        "no such command\u{FFFD}]52;c;cm0K\u{FFFD} next line"
    );
    assert_eq!(guest_message("a\u{9b}6n\u{7f}"), "a\u{FFFD}6n\u{FFFD}");
    assert_eq!(
        guest_message("user\u{202E}gnp.exe\u{200B}"),
        "user\u{FFFD}gnp.exe\u{FFFD}"
    );
    let exact = "x".repeat(MAX_MESSAGE);
    assert_eq!(guest_message(&exact), exact);
    let long = "é".repeat(MAX_MESSAGE);
    let cut = guest_message(&long);
    assert!(cut.len() <= MAX_MESSAGE, "{} bytes", cut.len());
    assert!(cut.len() > MAX_MESSAGE - 8);
    assert!(cut.ends_with("é…"));
    let huge = "\x1b".repeat(1 << 20);
    let cut = guest_message(&huge);
    assert!(cut.len() <= MAX_MESSAGE && cut.ends_with('…'));
    assert!(!cut.chars().any(|c| c.is_control()));
}
