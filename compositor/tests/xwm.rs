//! The guest proxy's X11 window manager (guest-proxy/src/xwm.rs) with the Xwayland of the
//! guests (Debian 12's 22.1), here a client of the headless compositor's host socket, and a
//! real X client (xterm): the manager lets Xwayland take clients, pairs each X window with
//! the wl_surface Xwayland made for it, reports its title and class bounded and clean, and
//! closes it the way the user's click on the frame will.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Instant;

use bulkhead_guest::xwm::{Change, Role, Wm, WmError, MAX_TITLE};
use common::vms::wait_until;
use common::*;

/// Xwayland as the guest proxy starts it (rootless, shm, its window manager on a socket),
/// with its display number from `-displayfd`.
fn xwayland(c: &Compositor) -> (ChildGuard, Wm, String) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (display_r, display_w) = nix::unistd::pipe().unwrap();
    let mut cmd = c.client_command("host", "Xwayland");
    cmd.args([
        "-rootless",
        "-shm",
        "-nolisten",
        "tcp",
        "-displayfd",
        "3",
        "-wm",
        "4",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // Above 4, so that putting one at 3 or 4 cannot overwrite the other.
    let high = |fd: OwnedFd| {
        let raw = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
            .expect("dup");
        // SAFETY: fcntl just returned this new descriptor, owned by nothing else.
        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) }
    };
    let fds: [OwnedFd; 2] = [high(display_w), high(theirs.into())];
    let raw = [fds[0].as_raw_fd(), fds[1].as_raw_fd()];
    // SAFETY: between fork and exec only dup2(2), which is async-signal-safe, puts the two
    // descriptors at 3 and 4 (without close-on-exec) for Xwayland.
    unsafe {
        cmd.pre_exec(move || {
            for (to, from) in [(3, raw[0]), (4, raw[1])] {
                if nix::libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = ChildGuard(cmd.spawn().expect("start Xwayland"), "Xwayland".into());
    drop(fds);
    let wm = Wm::new(ours).expect("take over as window manager");
    let mut line = String::new();
    BufReader::new(std::fs::File::from(display_r))
        .read_line(&mut line)
        .expect("Xwayland's display number");
    (child, wm, format!(":{}", line.trim()))
}

/// Handles the manager's events until `want` matches one of its changes.
fn wait_change(wm: &mut Wm, what: &str, want: impl Fn(&Change) -> bool) -> Change {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let changes = wm
            .wait_for(std::time::Duration::from_millis(500))
            .expect("window manager");
        for change in changes {
            if want(&change) {
                return change;
            }
        }
        assert!(Instant::now() < deadline, "never: {what}");
    }
}

#[test]
fn xterm_is_paired_with_its_surface_titled_and_closed() {
    let c = Compositor::start("[keyboard]\nrepeat-rate = 0\n");
    let (_xwayland, mut wm, display) = xwayland(&c);
    // A second window manager is refused.
    let second = x11rb::rust_connection::RustConnection::connect(Some(&display))
        .expect("connect")
        .0;
    assert!(matches!(Wm::start(second), Err(WmError::NotAlone)));

    // A title with a control character, and one of 20,000 characters.
    let long = "x".repeat(20_000);
    let mut xterms = Vec::new();
    for title in ["first\u{7}term", long.as_str()] {
        let mut cmd = c.client_command("host", "xterm");
        cmd.env("DISPLAY", &display)
            .args(["-T", title, "-e", "sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        xterms.push(ChildGuard(
            cmd.spawn().expect("start xterm"),
            "xterm".into(),
        ));
    }
    let mut shown = Vec::new();
    while shown.len() < 2 {
        match wait_change(&mut wm, "xterm shown", |c| matches!(c, Change::Show { .. })) {
            Change::Show {
                window,
                surface,
                role,
                title,
                class,
            } => {
                assert_eq!(role, Role::Toplevel { parent: None });
                assert_eq!(class, "XTerm");
                assert!(surface > 1, "surface id {surface}");
                shown.push((window, surface, title));
            }
            other => unreachable!("{other:?}"),
        }
    }
    shown.sort_by_key(|s| s.2.len());
    eprintln!(
        "shown (window, surface): {:?}",
        shown.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>()
    );
    assert_eq!(shown[0].2, "firstterm", "control characters are dropped");
    assert_eq!(shown[1].2, "x".repeat(MAX_TITLE), "long titles are cut");
    assert_ne!(shown[0].1, shown[1].1, "each window has its own surface");
    // Xwayland commits nothing to a window's surface until the Wayland side has shown it.
    let probe = x11rb::rust_connection::RustConnection::connect(Some(&display))
        .expect("connect")
        .0;
    let commits = |window| {
        use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _};
        let atom = probe
            .intern_atom(false, b"_XWAYLAND_ALLOW_COMMITS")
            .unwrap()
            .reply()
            .unwrap()
            .atom;
        let reply = probe
            .get_property(false, window, atom, AtomEnum::CARDINAL, 0, 1)
            .unwrap()
            .reply()
            .unwrap();
        reply.value32().and_then(|mut v| v.next())
    };
    for (window, _, _) in &shown {
        assert_eq!(commits(*window), Some(0));
        wm.shown(*window).unwrap();
        assert_eq!(commits(*window), Some(1));
    }

    // A menu (an override-redirect window) of the second xterm, made on the wire: a popup
    // of its parent at its offset from it.
    {
        use x11rb::connection::Connection as _;
        use x11rb::protocol::xproto::{ConnectionExt as _, CreateWindowAux, WindowClass};
        use x11rb::wrapper::ConnectionExt as _;
        let parent = shown[1].0;
        let at = probe.get_geometry(parent).unwrap().reply().unwrap();
        let menu = probe.generate_id().unwrap();
        let root = probe.setup().roots[0].root;
        probe
            .create_window(
                0,
                menu,
                root,
                at.x + 10,
                at.y + 20,
                50,
                30,
                0,
                WindowClass::INPUT_OUTPUT,
                0,
                &CreateWindowAux::new().override_redirect(1),
            )
            .unwrap();
        probe
            .change_property32(
                x11rb::protocol::xproto::PropMode::REPLACE,
                menu,
                x11rb::protocol::xproto::AtomEnum::WM_TRANSIENT_FOR,
                x11rb::protocol::xproto::AtomEnum::WINDOW,
                &[parent],
            )
            .unwrap();
        probe.map_window(menu).unwrap();
        probe.flush().unwrap();
        let popup = wait_change(
            &mut wm,
            "the menu shown",
            |c| matches!(c, Change::Show { window, .. } if *window == menu),
        );
        let Change::Show { role, .. } = popup else {
            unreachable!()
        };
        assert_eq!(
            role,
            Role::Popup {
                parent,
                x: 10,
                y: 20,
                width: 50,
                height: 30
            }
        );
    }

    // The frame's close button: xterm takes WM_DELETE_WINDOW and exits.
    let (window, surface, _) = shown[0].clone();
    wm.close(window).unwrap();
    let hidden = wait_change(
        &mut wm,
        "the closed xterm hidden",
        |c| matches!(c, Change::Hide { window: w, .. } if *w == window),
    );
    assert_eq!(hidden, Change::Hide { window, surface });
    let deadline = Instant::now() + TIMEOUT;
    while xterms.iter_mut().all(|x| x.running()) {
        assert!(Instant::now() < deadline, "no xterm exited after its close");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A free X display number, its leftovers removed.
fn free_display() -> u32 {
    (140..200)
        .find(|&n| claim_x_display(n))
        .expect("a free X display")
}

/// The guest proxy (its cross-domain host side in process) for the work VM, listening on a
/// free X display, and an xterm there with `args`: its window, once the compositor lists it.
struct ProxiedX {
    display: u32,
    _proxy: ChildGuard,
    xterm: ChildGuard,
    window: bulkhead_ipc::WindowInfo,
    log: std::path::PathBuf,
}

fn proxied_xterm(c: &Compositor, title: &str, args: &[&str]) -> ProxiedX {
    let n = free_display();
    let dir = c.dir.path();
    let guest = dir.join("guest-wayland-0");
    let log = dir.join("wl-proxy.log");
    let proxy = std::process::Command::new(workspace_binary("bulkhead-wl-proxy"))
        .arg("--socket")
        .arg(&guest)
        .arg("--loopback-host")
        .arg(c.vm_socket("work"))
        .args(["--x-display", &n.to_string()])
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("proxy");
    let proxy = ChildGuard(proxy, "proxy".into());
    wait_for_path(std::path::Path::new(&format!("/tmp/.X11-unix/X{n}")));
    let xterm = std::process::Command::new("xterm")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("DISPLAY", format!(":{n}"))
        .args(["-T", title])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("xterm.log")).unwrap())
        .spawn()
        .expect("xterm");
    let xterm = ChildGuard(xterm, "xterm".into());
    let window = c.wait_window("work", title);
    ProxiedX {
        display: n,
        _proxy: proxy,
        xterm,
        window,
        log,
    }
}

/// Waits until xterm shows its background at its centre and `text` pixels of white in its
/// first lines; returns the screenshot.
fn xterm_drawn(c: &Compositor, x: &ProxiedX, name: &str, background: [u8; 3]) -> Image {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let img = c.screenshot(name);
        let g = x.window.geometry;
        let centre = img.pixel(g.x + g.width / 2, g.y + g.height / 2);
        let text = img
            .find(|p| p == [0xff, 0xff, 0xff])
            .into_iter()
            .filter(|&(px, py)| px >= g.x && px < g.x + g.width / 2 && py >= g.y && py < g.y + 40)
            .count();
        if centre == background && text > 20 {
            return img;
        }
        assert!(
            Instant::now() < deadline,
            "xterm's pixels never came; proxy log:\n{}",
            std::fs::read_to_string(&x.log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The whole path of an X app in a VM, without the VM: the guest proxy (its cross-domain
/// host side in process) listens on an X display; xterm's connection starts Xwayland, whose
/// window manager in the proxy gives xterm's surface an xdg_toplevel. The compositor shows a
/// window of the VM, titled as xterm titles itself, framed in the VM's colour with xterm's
/// own pixels, and its close button closes xterm.
#[test]
fn xterm_through_the_guest_proxy_is_a_framed_window_of_its_vm() {
    let c = Compositor::start(TWO_VMS);
    let mut x = proxied_xterm(
        &c,
        "hello from X",
        &[
            "-bg",
            "#c03020",
            "-fg",
            "#ffffff",
            "-e",
            "sh",
            "-c",
            "echo X11 in a VM; sleep 600",
        ],
    );
    let w = x.window.clone();
    assert_eq!(w.title, "hello from X");
    assert_eq!(w.app_id, "XTerm");
    assert!(!w.client_decorations);
    let img = xterm_drawn(&c, &x, "xwm-xterm", [0xc0, 0x30, 0x20]);
    assert_framed(&img, &w, WORK, "[work] hello from X", w.focused);
    // The frame's close: the compositor's close reaches xterm as WM_DELETE_WINDOW.
    c.focus(w.id);
    c.action("close", None);
    let deadline = Instant::now() + TIMEOUT;
    while x.xterm.running() {
        assert!(Instant::now() < deadline, "xterm did not close");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    c.wait_windows("xterm's window gone", |ws| ws.iter().all(|x| x.id != w.id));
}

/// A connection to X display `n` and its root window.
fn x_connect(n: u32) -> (x11rb::rust_connection::RustConnection, u32) {
    use x11rb::connection::Connection as _;
    let (conn, screen) = x11rb::rust_connection::RustConnection::connect(Some(&format!(":{n}")))
        .expect("connect to the proxy's X display");
    let root = conn.setup().roots[screen].root;
    (conn, root)
}

fn x_atom(conn: &x11rb::rust_connection::RustConnection, name: &str) -> u32 {
    use x11rb::protocol::xproto::ConnectionExt as _;
    conn.intern_atom(false, name.as_bytes())
        .unwrap()
        .reply()
        .unwrap()
        .atom
}

/// What an X client of display `n` gets when it converts `selection` to UTF8_STRING (`None`:
/// refused).
fn x_paste(n: u32, selection: &str) -> Option<String> {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _, CreateWindowAux, WindowClass};
    use x11rb::protocol::Event;
    let (conn, root) = x_connect(n);
    let atom = |name: &str| x_atom(&conn, name);
    let (sel, utf8, prop) = (atom(selection), atom("UTF8_STRING"), atom("TEST_PASTE"));
    let win = conn.generate_id().unwrap();
    conn.create_window(
        0,
        win,
        root,
        0,
        0,
        1,
        1,
        0,
        WindowClass::INPUT_ONLY,
        0,
        &CreateWindowAux::new(),
    )
    .unwrap();
    conn.convert_selection(win, sel, utf8, prop, x11rb::CURRENT_TIME)
        .unwrap();
    conn.flush().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(Event::SelectionNotify(e)) = conn.poll_for_event().unwrap() {
            if e.property == x11rb::NONE {
                return None;
            }
            let r = conn
                .get_property(true, win, prop, AtomEnum::ANY, 0, 1 << 20)
                .unwrap()
                .reply()
                .unwrap();
            return Some(String::from_utf8_lossy(&r.value).into_owned());
        }
        assert!(
            Instant::now() < deadline,
            "no answer to the conversion of {selection}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The selections between X and Wayland apps of one VM, through the guest proxy: a word
/// double-clicked in xterm is the VM's primary selection, which a Wayland app of the VM
/// pastes and another VM's does not; the VM's clipboard, copied by a Wayland app, is what an
/// X app pastes while an X window has the keyboard.
#[test]
fn selections_cross_between_x_and_wayland_apps_of_one_vm_only() {
    let c = Compositor::start(TWO_VMS);
    let mut bank = common::client::Client::connect(&c.vm_socket("banking"));
    let bt = bank.toplevel("bank app");
    bank.map(&bt, 300, 200, common::client::WHITE);
    c.wait_window("banking", "bank app");
    let x = proxied_xterm(
        &c,
        "X selection",
        &[
            "-bg",
            "#203040",
            "-fg",
            "#ffffff",
            "-e",
            "sh",
            "-c",
            "echo wordfromx; sleep 600",
        ],
    );
    xterm_drawn(&c, &x, "xwm-selection", [0x20, 0x30, 0x40]);
    let g = x.window.geometry;
    c.focus(x.window.id);
    // Double-click on the word on xterm's first line.
    let at = (g.x + 12, g.y + 8);
    let mut events = vec![bulkhead_ipc::InputEvent::PointerMotion {
        x: at.0 as f64,
        y: at.1 as f64,
    }];
    for _ in 0..2 {
        for pressed in [true, false] {
            events.push(bulkhead_ipc::InputEvent::PointerButton {
                button: 272,
                pressed,
            });
        }
    }
    c.input(events);
    c.wait_selection("work", true);
    let word = paste(&c, "work", "--primary --no-newline");
    assert_eq!(
        String::from_utf8_lossy(&word),
        "wordfromx",
        "the work VM's Wayland app pasted something else; proxy log:\n{}",
        std::fs::read_to_string(&x.log).unwrap_or_default()
    );
    assert_ne!(
        String::from_utf8_lossy(&paste(&c, "banking", "--primary --no-newline")),
        "wordfromx",
        "banking pasted the work VM's X selection"
    );

    // The other way: a Wayland app of the VM copies (wl-copy's surface takes the focus as
    // its domain holds it); with xterm focused, X apps paste it.
    c.focus(x.window.id);
    let _copy = c.spawn("work", "wl-copy", &["from-wayland"]);
    c.wait_selection("work", false);
    c.focus(x.window.id);
    wait_until(
        "an X app pastes the VM's clipboard",
        TIMEOUT.as_secs(),
        || x_paste(x.display, "CLIPBOARD").as_deref() == Some("from-wayland"),
    );

    // Large: more than a pipe holds, which the relay must wait to pass on, not cut short.
    let (_, before_big) = c.selection_state(false);
    let big: String = (0..40_000).map(|i| format!("{i:07}\n")).collect();
    let file = c.dir.path().join("big.txt");
    std::fs::write(&file, &big).unwrap();
    c.focus(x.window.id);
    let _big_copy = c.spawn(
        "work",
        "sh",
        &["-c", &format!("wl-copy < {}", file.display())],
    );
    wait_until("the large copy set", TIMEOUT.as_secs(), || {
        c.selection_owner(false).as_deref() == Some("work")
            && c.selection_state(false).1 != before_big
    });
    c.focus(x.window.id);
    let pasted = x_paste(x.display, "CLIPBOARD").unwrap_or_default();
    assert_eq!(
        pasted.len(),
        big.len(),
        "an X app pasted a cut-short clipboard"
    );
    assert!(pasted == big);
}

/// The X window of display `n` titled `title` (WM_NAME), among the root's children.
fn x_window_titled(conn: &x11rb::rust_connection::RustConnection, title: &str) -> u32 {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _};
    let root = conn.setup().roots[0].root;
    let tree = conn.query_tree(root).unwrap().reply().unwrap();
    tree.children
        .into_iter()
        .find(|&w| {
            conn.get_property(false, w, AtomEnum::WM_NAME, AtomEnum::ANY, 0, 256)
                .unwrap()
                .reply()
                .is_ok_and(|r| r.value == title.as_bytes())
        })
        .unwrap_or_else(|| panic!("no X window titled {title:?}"))
}

/// Fullscreen, maximised and minimised, both ways: an X app's `_NET_WM_STATE` and
/// `WM_CHANGE_STATE` requests reach the compositor; the compositor's fullscreen and maximise
/// reach the app as its window's size and `_NET_WM_STATE`.
#[test]
fn x_windows_go_fullscreen_maximised_and_minimised_both_ways() {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::{AtomEnum, ClientMessageEvent, ConnectionExt as _, EventMask};
    let c = Compositor::start(TWO_VMS);
    let x = proxied_xterm(&c, "X states", &["-e", "sleep", "600"]);
    let id = x.window.id;
    let (conn, root) = x_connect(x.display);
    let atom = |name: &str| x_atom(&conn, name);
    let (state, fs, max_v, change_state) = (
        atom("_NET_WM_STATE"),
        atom("_NET_WM_STATE_FULLSCREEN"),
        atom("_NET_WM_STATE_MAXIMIZED_VERT"),
        atom("WM_CHANGE_STATE"),
    );
    let win = x_window_titled(&conn, "X states");
    let ask = |kind: u32, data: [u32; 5]| {
        let e = ClientMessageEvent::new(32, win, kind, data);
        conn.send_event(
            false,
            root,
            EventMask::SUBSTRUCTURE_REDIRECT | EventMask::SUBSTRUCTURE_NOTIFY,
            e,
        )
        .unwrap();
        conn.flush().unwrap();
    };
    let x_states = || -> Vec<u32> {
        conn.get_property(false, win, state, AtomEnum::ATOM, 0, 16)
            .unwrap()
            .reply()
            .unwrap()
            .value32()
            .map(|v| v.collect())
            .unwrap_or_default()
    };
    let x_size = || {
        let g = conn.get_geometry(win).unwrap().reply().unwrap();
        (i32::from(g.width), i32::from(g.height))
    };
    let this = |ws: &[bulkhead_ipc::WindowInfo]| ws.iter().find(|w| w.id == id).cloned();

    // The app asks for fullscreen: the compositor makes it so, and the X window takes the
    // whole output and says it is fullscreen.
    ask(state, [1, fs, 0, 1, 0]);
    c.wait_windows("xterm fullscreen", |ws| {
        this(ws).is_some_and(|w| w.fullscreen)
    });
    wait_until("the X window fullscreen", TIMEOUT.as_secs(), || {
        let w = this(&c.windows()).unwrap();
        x_states().contains(&fs) && x_size() == (w.geometry.width, w.geometry.height)
    });
    // The compositor's fullscreen toggle ends it; the app hears so.
    c.focus(id);
    c.action("fullscreen", None);
    c.wait_windows("xterm not fullscreen", |ws| {
        this(ws).is_some_and(|w| !w.fullscreen)
    });
    wait_until("the X window not fullscreen", TIMEOUT.as_secs(), || {
        !x_states().contains(&fs)
    });
    // The compositor maximises: the app hears so.
    c.action("maximize", None);
    c.wait_windows("xterm maximised", |ws| {
        this(ws).is_some_and(|w| w.maximized)
    });
    wait_until("the X window maximised", TIMEOUT.as_secs(), || {
        x_states().contains(&max_v)
    });
    // The app iconifies itself.
    ask(change_state, [3, 0, 0, 0, 0]);
    c.wait_windows("xterm minimised", |ws| {
        this(ws).is_some_and(|w| w.minimized)
    });
}
