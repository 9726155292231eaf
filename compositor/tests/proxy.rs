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

/// No app of Debian 12 speaks fractional-scale-v1 (foot 1.13, GTK 4.8 and Qt 6.4 predate it),
/// so a raw client of ours does, through the proxy: at output scale 1.5 it is told 180/120,
/// draws 1.5× its logical size with a viewport, and its one-pixel stripes arrive on the
/// screen one physical pixel each (a compositor scaling its buffer would blur or double them).
fn fractional_scale_reaches_the_app_and_its_pixels_stay_sharp(kind: Kind) {
    use wayland_protocols::wp::fractional_scale::v1::client::wp_fractional_scale_manager_v1::WpFractionalScaleManagerV1;
    use wayland_protocols::wp::viewporter::client::wp_viewporter::WpViewporter;
    const RED: [u8; 3] = [0xff, 0, 0];
    const BLUE: [u8; 3] = [0, 0, 0xff];
    let c = Compositor::start(&format!("{TWO_VMS}\n[headless]\nscale = 1.5\n"));
    let t = transport(&c, "work", kind);
    let mut cl = common::client::Client::connect(std::path::Path::new(&t.socket));
    let scales: WpFractionalScaleManagerV1 = cl.bind(1);
    let viewporter: WpViewporter = cl.bind(1);
    let top = cl.toplevel("sharp");
    let _scale = scales.get_fractional_scale(&top.surface, &cl.qh, ());
    let viewport = viewporter.get_viewport(&top.surface, &cl.qh, ());
    cl.roundtrip();
    assert_eq!(
        cl.events.preferred_scale,
        Some(180),
        "the scale the app was told"
    );
    // 200×100 logical, drawn at 300×150.
    if let Some(serial) = cl.events.configure_serial.take() {
        top.xdg.ack_configure(serial);
    }
    viewport.set_destination(200, 100);
    let buf = cl.buffer_from(300, 150, |x, _| if x % 2 == 0 { RED } else { BLUE });
    top.surface.attach(Some(&buf), 0, 0);
    top.surface.damage_buffer(0, 0, 300, 150);
    top.surface.commit();
    cl.roundtrip();
    let w = c.wait_window("work", "sharp");
    assert_eq!((w.geometry.width, w.geometry.height), (200, 100));
    // The middle row of the window, in physical pixels: strictly alternating red and blue
    // (a margin of two pixels at each end for the edges' rounding).
    let y = ((w.geometry.y as f64 + 50.0) * 1.5) as i32;
    let x0 = (w.geometry.x as f64 * 1.5).ceil() as i32 + 2;
    let sharp = |img: &Image| {
        (x0..x0 + 294).all(|x| {
            let (a, b) = (img.pixel(x, y), img.pixel(x + 1, y));
            (a == RED || a == BLUE) && a != b
        })
    };
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let img = c.screenshot(&format!("proxy-fractional-{kind:?}"));
        if sharp(&img) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stripes are not one physical pixel each at {x0},{y}: {:?}",
            (x0..x0 + 8).map(|x| img.pixel(x, y)).collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn cross_domain_fractional_scale_keeps_pixels_sharp() {
    fractional_scale_reaches_the_app_and_its_pixels_stay_sharp(Kind::CrossDomain);
}

#[test]
fn stream_fractional_scale_keeps_pixels_sharp() {
    fractional_scale_reaches_the_app_and_its_pixels_stay_sharp(Kind::Stream);
}
