//! The two-level clipboard with real clients (wl-clipboard) and the compositor's own key path:
//! nothing crosses domains until the user copies into the global clipboard (Ctrl-Shift-C,
//! source focused) and pastes it into another domain (Ctrl-Shift-V, target focused).

mod common;

use std::time::{Duration, Instant};

use bulkhead_ipc::{ClipboardInfo, Reply, Request};
use common::client::{Client, SourceMode};
use common::*;

const KEY_LEFTCTRL: u32 = 29;
const KEY_LEFTSHIFT: u32 = 42;
const KEY_C: u32 = 46;
const KEY_V: u32 = 47;

fn clipboard(c: &Compositor) -> (Option<ClipboardInfo>, Option<String>) {
    match c.request(&Request::Clipboard) {
        Reply::Clipboard {
            global,
            selection_domain,
            ..
        } => (global, selection_domain),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A window in each domain to give focus to (weston-simple-shm).
struct Windows {
    work: u64,
    banking: u64,
    _apps: [ChildGuard; 2],
}

fn windows(c: &Compositor) -> Windows {
    let a = c.spawn("work", "weston-simple-shm", &[]);
    let work = c.wait_window("work", "simple-shm").id;
    let b = c.spawn("banking", "weston-simple-shm", &[]);
    let banking = c.wait_window("banking", "simple-shm").id;
    Windows {
        work,
        banking,
        _apps: [a, b],
    }
}

/// Focuses window `id`, then types `key` with Ctrl and Shift held: the real key path.
fn shortcut(c: &Compositor, id: u64, key: u32) {
    c.action("focus-window", Some(&id.to_string()));
    c.wait_windows("the window focused", |ws| {
        ws.iter().any(|w| w.id == id && w.focused)
    });
    c.input(chord(&[KEY_LEFTCTRL, KEY_LEFTSHIFT], key));
}

/// Copies `args` (wl-copy arguments, data on stdin from `input`) in `domain` and waits until
/// that domain owns the selection.
fn copy(c: &Compositor, domain: &str, input: &std::path::Path, args: &str) -> ChildGuard {
    // The user is in that domain when they copy there.
    c.focus_domain(domain);
    let g = c.spawn(
        domain,
        "sh",
        &[
            "-c",
            &format!("exec wl-copy --foreground {args} < {}", input.display()),
        ],
    );
    c.wait_selection(domain, args.contains("--primary"));
    g
}

#[test]
fn text_crosses_domains_only_through_copy_and_paste() {
    let c = Compositor::start(TWO_VMS);
    let w = windows(&c);
    let data = c.dir.path().join("secret.txt");
    std::fs::write(&data, "secret from work").unwrap();
    let _copy = copy(&c, "work", &data, "");
    // Not in banking: its paste finds nothing; the global clipboard is empty.
    assert_ne!(paste(&c, "banking", "--no-newline"), b"secret from work");
    assert_eq!(clipboard(&c).0, None);
    assert_eq!(paste(&c, "work", "--no-newline"), b"secret from work");

    shortcut(&c, w.work, KEY_C);
    wait("the global clipboard holds the copy", || {
        clipboard(&c)
            .0
            .is_some_and(|g| g.from == "work" && g.bytes > 0)
    });
    notified(&c, WORK, "Copied 16 B text from [work]");
    // Still nothing in banking: copying does not paste.
    assert_ne!(paste(&c, "banking", "--no-newline"), b"secret from work");

    shortcut(&c, w.banking, KEY_V);
    wait("the paste emptied the global clipboard", || {
        clipboard(&c) == (None, Some("banking".into()))
    });
    notified(&c, BANKING, "Pasted 16 B text from [work] into [banking]");
    assert_eq!(paste(&c, "banking", "--no-newline"), b"secret from work");
    // One-shot: a second paste has nothing to give.
    shortcut(&c, w.work, KEY_V);
    notified(&c, WORK, "Nothing to paste: the global clipboard is empty");
}

#[test]
fn binary_data_crosses_byte_for_byte_and_primary_stays_home() {
    let c = Compositor::start(TWO_VMS);
    let w = windows(&c);
    let png: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let file = c.dir.path().join("image.png");
    std::fs::write(&file, &png).unwrap();
    let _copy = copy(&c, "work", &file, "--type image/png");
    // This time through the named actions, as `bulkhead msg action clipboard-copy` runs them.
    c.action("focus-window", Some(&w.work.to_string()));
    c.action("clipboard-copy", None);
    wait("the image is in the global clipboard", || {
        clipboard(&c)
            .0
            .is_some_and(|g| g.types == ["image/png"] && g.bytes == png.len() as u64)
    });
    c.action("focus-window", Some(&w.banking.to_string()));
    c.action("clipboard-paste", None);
    wait("the image is banking's", || {
        clipboard(&c).1.as_deref() == Some("banking")
    });
    assert_eq!(paste(&c, "banking", "--type image/png"), png);

    // The primary selection has no global level: it never leaves its domain.
    let text = c.dir.path().join("primary.txt");
    std::fs::write(&text, "primary of work").unwrap();
    c.focus(w.work);
    let _p = c.spawn(
        "work",
        "sh",
        &[
            "-c",
            &format!("exec wl-copy --primary --foreground < {}", text.display()),
        ],
    );
    // (wl-copy sets it from a surface of its own, which must have focus: no paste meanwhile.)
    c.wait_selection("work", true);
    assert_eq!(
        paste(&c, "work", "--primary --no-newline"),
        b"primary of work"
    );
    assert_ne!(
        paste(&c, "banking", "--primary --no-newline"),
        b"primary of work"
    );
}

#[test]
fn a_copy_larger_than_the_cap_moves_nothing() {
    let c = Compositor::start(&format!("{TWO_VMS}\n[clipboard]\nmax-size = \"64K\"\n"));
    let w = windows(&c);
    let big = c.dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(100_000)).unwrap();
    let _copy = copy(&c, "work", &big, "");
    shortcut(&c, w.work, KEY_C);
    notified(
        &c,
        WORK,
        "Nothing copied: [work]'s clipboard is larger than 65.5 kB",
    );
    assert_eq!(clipboard(&c).0, None);
}

#[test]
fn hostile_sources_do_not_stall_the_compositor() {
    let c = Compositor::start(&format!("{TWO_VMS}\n[clipboard]\ntimeout = \"2s\"\n"));
    let w = windows(&c);
    // A source that never writes: the copy gives up at the deadline.
    let mut evil = Client::connect(&c.vm_socket("work"));
    let t = evil.toplevel("evil");
    evil.map(&t, 100, 100, [0x40, 0x40, 0x40]);
    let id = c.wait_window("work", "evil").id;
    c.action("focus-window", Some(&id.to_string()));
    evil.roundtrip();
    let _source = evil.set_selection("text/plain", SourceMode::Hold);
    wait("the selection is work's", || {
        clipboard(&c).1.as_deref() == Some("work")
    });
    shortcut(&c, id, KEY_C);
    // Meanwhile the compositor answers and composes (a blocking read would hang it for
    // good: this source never writes and never closes).
    for _ in 0..3 {
        c.screenshot("clipboard-while-copying");
        evil.roundtrip();
    }
    notified(
        &c,
        WORK,
        "Nothing copied: [work] did not hand over its clipboard within 2 s",
    );
    assert_eq!(clipboard(&c).0, None);
    assert!(
        !evil.events.held.is_empty(),
        "the source was asked for its data"
    );

    // A source that writes without end: the cap stops it.
    evil.set_selection("text/plain", SourceMode::Flood);
    shortcut(&c, id, KEY_C);
    for _ in 0..3 {
        evil.roundtrip(); // the source starts writing when it sees the request
    }
    notified(
        &c,
        WORK,
        "Nothing copied: [work]'s clipboard is larger than 16.8 MB",
    );
    assert_eq!(clipboard(&c).0, None);
    // Everyone else is fine: the other domain's window still takes focus.
    c.action("focus-window", Some(&w.banking.to_string()));
    c.wait_windows("banking focused", |ws| {
        ws.iter().any(|x| x.id == w.banking && x.focused)
    });
}

#[test]
fn host_clipboard_managers_see_the_host_domain_only() {
    let c = Compositor::start(TWO_VMS);
    let w = windows(&c);
    let _host_app = c.spawn("host", "weston-simple-shm", &[]);
    let host = c.wait_window("host", "simple-shm").id;
    // wl-clipboard on the host socket uses wlr-data-control (the host is offered it).
    let text = c.dir.path().join("work.txt");
    std::fs::write(&text, "work secret").unwrap();
    let _work_copy = copy(&c, "work", &text, "");
    assert_ne!(paste(&c, "host", "--no-newline"), b"work secret");

    // A host clipboard manager's own selection: the host's, readable by host tools only.
    let text = c.dir.path().join("host.txt");
    std::fs::write(&text, "host text").unwrap();
    let _host_copy = copy(&c, "host", &text, "");
    assert_eq!(paste(&c, "host", "--no-newline"), b"host text");
    assert_ne!(paste(&c, "work", "--no-newline"), b"host text");

    // It moves to a VM only through the global clipboard.
    shortcut(&c, host, KEY_C);
    wait("the host's text is in the global clipboard", || {
        clipboard(&c).0.is_some_and(|g| g.from == "host")
    });
    shortcut(&c, w.work, KEY_V);
    wait("the paste is work's", || {
        clipboard(&c).1.as_deref() == Some("work")
    });
    assert_eq!(paste(&c, "work", "--no-newline"), b"host text");

    // And back: a VM's text pasted into the host is readable by host tools.
    shortcut(&c, w.work, KEY_C);
    wait("work's paste is in the global clipboard", || {
        clipboard(&c).0.is_some_and(|g| g.from == "work")
    });
    shortcut(&c, host, KEY_V);
    wait("the paste is the host's", || {
        clipboard(&c).1.as_deref() == Some("host")
    });
    assert_eq!(paste(&c, "host", "--no-newline"), b"host text");
}

#[test]
fn a_host_clipboard_managers_selection_is_never_offered_to_a_vm() {
    let c = Compositor::start(TWO_VMS);
    // Work holds the keyboard and owns the clipboard, so smithay's selection focus is work's.
    let mut work = Client::connect(&c.vm_socket("work"));
    let t = work.toplevel("owner");
    work.map(&t, 200, 100, common::client::WHITE);
    c.wait_windows("work focused", |ws| {
        ws.iter().any(|w| w.title == "owner" && w.focused)
    });
    let _own = work.set_selection("x-work/own", SourceMode::Close);
    wait("work owns the clipboard", || {
        clipboard(&c).1.as_deref() == Some("work")
    });
    work.roundtrip();
    work.events.offered.clear();
    // A host clipboard manager (wl-copy on the host socket uses wlr-data-control) sets its own
    // (the host's) selection: host tools read it back through data-control.
    let _host = c.spawn("host", "wl-copy", &["host secret"]);
    wait("host tools read the host's selection", || {
        let (_, out) = c.run("host", "wl-paste", &["--no-newline"]);
        out == "host secret"
    });
    work.roundtrip();
    assert!(
        work.events.offered.is_empty(),
        "work was offered the host's selection: {:?}",
        work.events.offered
    );
}

#[test]
fn each_domain_keeps_its_own_clipboard_and_primary_while_others_copy() {
    let c = Compositor::start(TWO_VMS);
    let _w = windows(&c);
    let file = |name: &str, text: &str| {
        let p = c.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let _work = copy(&c, "work", &file("w.txt", "work text"), "");
    let _work_primary = copy(&c, "work", &file("wp.txt", "work primary"), "--primary");
    let _bank = copy(&c, "banking", &file("b.txt", "bank text"), "");
    let _bank_primary = copy(&c, "banking", &file("bp.txt", "bank primary"), "--primary");
    // Back in work: its own clipboard and primary selection, not banking's, not gone.
    assert_eq!(paste(&c, "work", "--no-newline"), b"work text");
    assert_eq!(paste(&c, "work", "--primary --no-newline"), b"work primary");
    assert_eq!(paste(&c, "banking", "--no-newline"), b"bank text");
    assert_eq!(
        paste(&c, "banking", "--primary --no-newline"),
        b"bank primary"
    );
}

#[test]
fn a_domains_clipboard_goes_with_the_app_that_held_it() {
    let c = Compositor::start(TWO_VMS);
    let _w = windows(&c);
    let text = c.dir.path().join("w.txt");
    std::fs::write(&text, "soon gone").unwrap();
    let copier = copy(&c, "work", &text, "");
    drop(copier);
    wait("work's clipboard is gone with its app", || {
        clipboard(&c).1.is_none()
    });
    assert_ne!(paste(&c, "work", "--no-newline"), b"soon gone");
}
