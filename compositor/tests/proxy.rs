//! The graphics path without a VM: real apps on `bulkhead-wl-proxy`'s socket, through either
//! transport into the VM's Wayland socket of the headless compositor:
//! - cross-domain: the proxy's virtio-gpu calls go to rutabaga_gfx in the proxy's own process
//!   (`--loopback-host`), the host side crosvm runs, whose context connects to the VM socket;
//! - the vsock stream: the proxy's stream into `bulkhead-wl-bridge` (over a Unix socket
//!   instead of vsock), the bridge on the VM socket.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[derive(Clone, Copy, Debug)]
enum Kind {
    CrossDomain,
    Stream,
}

struct Path2 {
    _bridge: Option<ChildGuard>,
    _proxy: ChildGuard,
    /// The guest-side Wayland socket apps connect to.
    socket: String,
}

/// Starts the transport's host side on `vm`'s socket and a proxy in front of it.
fn transport(c: &Compositor, vm: &str, kind: Kind) -> Path2 {
    let dir = c.dir.path();
    let stream = dir.join(format!("{vm}-stream.sock"));
    let guest = dir.join(format!("{vm}-guest-wayland"));
    let log = |name: &str| std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let mut proxy = Command::new(workspace_binary("bulkhead-wl-proxy"));
    proxy.arg("--socket").arg(&guest);
    let bridge = match kind {
        Kind::CrossDomain => {
            proxy.arg("--loopback-host").arg(c.vm_socket(vm));
            None
        }
        Kind::Stream => {
            proxy.arg("--host-socket").arg(&stream);
            Some(bridge(c, vm, &stream))
        }
    };
    let proxy = proxy
        .stdin(Stdio::null())
        .stderr(log("wl-proxy"))
        .spawn()
        .expect("proxy");
    let proxy = ChildGuard(proxy, "proxy".into());
    wait_for_path(&guest);
    Path2 {
        _bridge: bridge,
        _proxy: proxy,
        socket: guest.to_string_lossy().into_owned(),
    }
}

/// `bulkhead-wl-bridge` listening on `stream`, confined.
fn bridge(c: &Compositor, vm: &str, stream: &std::path::Path) -> ChildGuard {
    let log = std::fs::File::create(c.dir.path().join("wl-bridge.log")).expect("log");
    let bridge = Command::new(workspace_binary("bulkhead-wl-bridge"))
        .arg("--listen")
        .arg(stream)
        .arg("--wayland")
        .arg(c.vm_socket(vm))
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("bridge");
    let bridge = ChildGuard(bridge, "bridge".into());
    wait_for_path(stream);
    // Listening means confined: the seccomp filter is on (mode 2: filter).
    let pid = bridge.0.id();
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        if status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"])
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bridge never installed its filter"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    bridge
}

fn shm_app_is_drawn_in_its_vm_frame(kind: Kind) {
    let c = Compositor::start(TWO_VMS);
    let t = transport(&c, "work", kind);
    let _app = c.spawn(&t.socket, "weston-simple-shm", &[]);
    let w = c.wait_window("work", "simple-shm");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let img = c.screenshot(&format!("proxy-simple-shm-{kind:?}"));
    assert_framed(&img, &w, WORK, &format!("[work] {}", w.title), true);
    // Its pixels arrived: simple-shm draws a pattern of many colours.
    let colours = img.distinct_colours(w.geometry);
    assert!(colours > 50, "only {colours} colours in the window");
}

fn typing_reaches_foot(kind: Kind) {
    let c = Compositor::start(TWO_VMS);
    let t = transport(&c, "work", kind);
    let out = c.dir.path().join("typed.txt");
    // The keymap travels as a blob; keys go to the focused window.
    let script = format!("read line; echo \"$line\" > {}", out.display());
    let _foot = c.spawn(&t.socket, "foot", &["sh", "-c", &script]);
    let w = c.wait_window("work", "");
    c.wait_windows("foot focused", |ws| {
        ws.iter().any(|x| x.id == w.id && x.focused)
    });
    // All of foot's first frame arrived (its default background is #111111), also where it
    // repaints a reused buffer beyond the damage it reports.
    let g = w.geometry;
    let name = format!("proxy-foot-{kind:?}");
    let mut img = c.screenshot(&name);
    for _ in 0..50 {
        if img.pixel(g.x + g.width / 2, g.y + g.height / 2) == [0x11, 0x11, 0x11] {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        img = c.screenshot(&name);
    }
    for (x, y) in [
        (g.width / 2, g.height / 2),
        (g.width - 3, g.height - 3),
        (3, g.height - 3),
    ] {
        assert_eq!(
            img.pixel(g.x + x, g.y + y),
            [0x11, 0x11, 0x11],
            "foot's background at {x},{y}"
        );
    }
    // h, i, Enter (evdev codes).
    let mut keys = Vec::new();
    for code in [35, 23, 28] {
        keys.extend(chord(&[], code));
    }
    c.input(keys);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::fs::read_to_string(&out)
        .map(|s| s != "hi\n")
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "foot never got the typed line"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn copy_and_paste_inside_the_domain(kind: Kind) {
    let c = Compositor::start(TWO_VMS);
    let t = transport(&c, "work", kind);
    // Both ends behind the proxy: the data crosses two pipe translations each way.
    let _copy = c.spawn(&t.socket, "wl-copy", &["through-the-proxy"]);
    // No paste until it is set: wl-paste's own surface would take the focus wl-copy needs.
    c.wait_selection("work", false);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let (_, out) = c.run(&t.socket, "wl-paste", &["--no-newline"]);
        if out == "through-the-proxy" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "paste never got the text: {out:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A paste from a host-socket client of the same VM sees it too (same domain); banking does not.
    let (_, out) = c.run("work", "wl-paste", &["--no-newline"]);
    assert_eq!(out, "through-the-proxy");
    let (_, out) = c.run_for(4, "banking", "wl-paste", &["--no-newline"]);
    assert_ne!(out, "through-the-proxy");
}

#[test]
fn cross_domain_shm_app_is_drawn_in_its_vm_frame() {
    shm_app_is_drawn_in_its_vm_frame(Kind::CrossDomain);
}

#[test]
fn cross_domain_typing_reaches_foot() {
    typing_reaches_foot(Kind::CrossDomain);
}

#[test]
fn cross_domain_copy_and_paste_inside_the_domain() {
    copy_and_paste_inside_the_domain(Kind::CrossDomain);
}

#[test]
fn stream_shm_app_is_drawn_in_its_vm_frame() {
    shm_app_is_drawn_in_its_vm_frame(Kind::Stream);
}

#[test]
fn stream_typing_reaches_foot() {
    typing_reaches_foot(Kind::Stream);
}

#[test]
fn stream_copy_and_paste_inside_the_domain() {
    copy_and_paste_inside_the_domain(Kind::Stream);
}
