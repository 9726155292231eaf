//! The terminal filter in a real terminal emulator (tmux, on its own server): recorded and
//! live vim and less look the same with and without `bulkhead-term-filter` in between, and a
//! hostile stream that sets tmux's clipboard and makes it type answers does so only without.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const FILTER: &str = env!("CARGO_BIN_EXE_bulkhead-term-filter");

/// A tmux server of our own (`-L`), killed when dropped.
struct Tmux {
    name: String,
}

impl Tmux {
    fn new(test: &str) -> Tmux {
        let t = Tmux {
            name: format!("bulkhead-{test}-{}", std::process::id()),
        };
        // A server that stays up between sessions, with OSC 52 reaching its buffers.
        t.run(&[
            "-f",
            "/dev/null",
            "start-server",
            ";",
            "set",
            "-g",
            "exit-empty",
            "off",
        ]);
        t.run(&["set", "-g", "set-clipboard", "on"]);
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        // A UTF-8 locale for tmux, the programs and the filter (which otherwise writes ASCII).
        let out = Command::new("tmux")
            .args(["-L", &self.name])
            .args(args)
            .env_remove("TMUX")
            .env("LANG", "C.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("LC_CTYPE")
            .output()
            .expect("tmux runs (install it: .ci/install-deps)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts `command` (sh) in an 80x24 pane.
    fn start(&self, session: &str, command: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "80",
            "-y",
            "24",
            command,
        ]);
    }

    fn keys(&self, session: &str, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", session, k]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// The pane's screen with attributes, once it stopped changing.
    fn screen(&self, session: &str) -> String {
        let capture = || {
            let out = self.run(&["capture-pane", "-p", "-e", "-t", session]);
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = capture();
        loop {
            std::thread::sleep(Duration::from_millis(400));
            let now = capture();
            if (now == last && !now.trim().is_empty()) || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    fn buffers(&self) -> String {
        let out = self.run(&["list-buffers", "-F", "#{buffer_sample}"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.name, "kill-server"])
            .output();
    }
}

/// A recording's bytes up to its final exit from the alternate screen, so that the screen
/// compared is the program's own.
fn before_exit(recording: &[u8]) -> &[u8] {
    let exit = b"\x1b[?1049l";
    let at = recording
        .windows(exit.len())
        .rposition(|w| w == exit)
        .unwrap_or(recording.len());
    &recording[..at]
}

#[test]
fn recorded_vim_less_and_htop_look_the_same_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::new("replay");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/terminal");
    for (name, shows) in [
        ("vim", "\"héllo wörld ✓\""),
        ("less", "line with some text 2"),
        ("htop", "Load average:"),
    ] {
        let file = dir.path().join(name);
        std::fs::write(
            &file,
            before_exit(&std::fs::read(corpus.join(name)).unwrap()),
        )
        .unwrap();
        let file = file.display();
        // No echo, so that answers tmux types to the raw replay's queries stay off screen;
        // the filter's input stays open, so it does not reset the modes before the capture.
        tmux.start(
            &format!("{name}-raw"),
            &format!("stty -echo; cat {file}; sleep 60"),
        );
        tmux.start(
            &format!("{name}-filtered"),
            &format!("stty -echo; {{ cat {file}; sleep 60; }} | {FILTER}"),
        );
        let raw = tmux.screen(&format!("{name}-raw"));
        let filtered = tmux.screen(&format!("{name}-filtered"));
        assert!(raw.contains(shows), "{name}: {raw}");
        assert_eq!(raw, filtered, "{name}: the filtered screen differs");
    }
}

#[test]
fn live_less_and_vim_look_the_same_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.rs");
    let lines: String = (1..200)
        .map(|i| format!("fn line_{i}() {{ println!(\"ünïcödé {i}\"); }}\n"))
        .collect();
    std::fs::write(&text, lines).unwrap();
    let tmux = Tmux::new("live");
    let file = text.display();
    for (name, program, keys) in [
        (
            "less",
            format!("less {file}"),
            &[" ", "/line_4", "Enter", "n"][..],
        ),
        (
            "vim",
            format!("vim -u NONE -i NONE -n {file}"),
            &[
                ":syntax on",
                "Enter",
                ":set number",
                "Enter",
                "50G",
                "dd",
                "O",
                "new ✓",
                "Escape",
            ][..],
        ),
    ] {
        let env = "TERM=xterm-256color";
        tmux.start(&format!("{name}-raw"), &format!("{env} {program}"));
        tmux.start(
            &format!("{name}-filtered"),
            &format!("script -qfec '{env} {program}' /dev/null | {FILTER}"),
        );
        for session in [format!("{name}-raw"), format!("{name}-filtered")] {
            tmux.screen(&session);
            tmux.keys(&session, keys);
        }
        let raw = tmux.screen(&format!("{name}-raw"));
        let filtered = tmux.screen(&format!("{name}-filtered"));
        assert!(raw.contains("ünïcödé 4"), "{name}: {raw}");
        if name == "vim" {
            assert!(raw.contains("new ✓"), "{name}: {raw}");
        }
        assert_eq!(raw, filtered, "{name}: the filtered screen differs");
    }
}

#[test]
fn hostile_output_drives_tmux_only_without_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostile");
    // OSC 52 with "pwned" for the clipboard, then a cursor position and a device attributes
    // request, whose answers tmux types into the pane, where the echo shows them.
    std::fs::write(&file, b"\x1b]52;c;cHduZWQ=\x07\x1b[6n\x1b[c ready\r\n").unwrap();
    let file = file.display();
    let tmux = Tmux::new("hostile");
    tmux.start("filtered", &format!("cat {file} | {FILTER}; sleep 60"));
    let filtered = tmux.screen("filtered");
    assert_eq!(filtered.trim(), "ready", "{filtered:?}");
    assert_eq!(tmux.buffers(), "", "the clipboard stays empty");
    // The same bytes unfiltered: the attack this guards against works in tmux.
    tmux.start("raw", &format!("cat {file}; sleep 60"));
    let raw = tmux.screen("raw");
    assert!(
        raw.contains("^[[1;1R") || raw.contains("^[[?1;2c"),
        "{raw:?}"
    );
    assert!(tmux.buffers().contains("pwned"));
}
