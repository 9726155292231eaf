//! Hostile VM clients: each test does what a malicious app in a VM would try, then checks by
//! pixel (magenta is the attacker's colour) and through IPC that it failed, and that the
//! compositor and other clients live on.

mod common;

use bulkhead_ipc::{InputEvent, Rect, WindowInfo};
use common::client::{Client, MAGENTA, WHITE};
use common::*;
use wayland_protocols::xdg::shell::client::xdg_positioner;

/// Every magenta pixel lies in one of `allowed`; returns how many there are.
fn magenta_only_inside(img: &Image, allowed: &[Rect], what: &str) -> usize {
    let magenta = img.find(|p| p == MAGENTA);
    let outside: Vec<_> = magenta
        .iter()
        .filter(|(x, y)| !allowed.iter().any(|r| r.contains(*x, *y)))
        .collect();
    assert!(
        outside.is_empty(),
        "{what}: {} VM pixels outside the frame, e.g. {:?}",
        outside.len(),
        &outside[..outside.len().min(5)]
    );
    magenta.len()
}

fn hostile_window(c: &Compositor) -> WindowInfo {
    c.wait_window("work", "hostile")
}

#[test]
fn gtk_style_margins_and_stray_subsurfaces_are_clipped_to_the_frame() {
    let c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    let t = cl.toplevel("margins");
    // A 400x300 buffer whose window geometry is only the middle 320x220, like a GTK3 shadow.
    t.xdg.set_window_geometry(40, 40, 320, 220);
    // Subsurfaces far outside and straddling the edge.
    for (x, y, size) in [(-300, -300, 200), (300, 200, 150), (-1000, 100, 900)] {
        let s = cl.surface();
        let sub = cl.subcompositor.get_subsurface(&s, &t.surface, &cl.qh, ());
        sub.set_position(x, y);
        sub.set_desync();
        let b = cl.buffer(size, size, MAGENTA);
        s.attach(Some(&b), 0, 0);
        s.commit();
    }
    cl.map(&t, 400, 300, MAGENTA);
    let w = c.wait_windows("the window at its xdg geometry", |ws| {
        ws.iter()
            .any(|w| w.app_id == "hostile" && w.geometry.width == 320 && w.geometry.height == 220)
    });
    let w = w.into_iter().find(|w| w.app_id == "hostile").unwrap();
    let img = c.screenshot("hostile-margins");
    let n = magenta_only_inside(&img, &[w.geometry], "margins and subsurfaces");
    assert_eq!(
        n,
        320 * 220,
        "the content area is exactly the client's geometry"
    );
    assert_framed(&img, &w, WORK, "[work] margins", true);
}

#[test]
fn fullscreen_vm_window_keeps_its_strip_and_escape_cannot_be_inhibited() {
    let c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    let t = cl.toplevel("fullscreen");
    cl.map(&t, 300, 200, MAGENTA);
    hostile_window(&c);
    t.toplevel.set_fullscreen(None);
    cl.roundtrip();
    let (w, h) = cl.events.configured.expect("configure");
    assert_eq!(
        (w, h),
        (1280, 800 - 24),
        "fullscreen leaves the title strip"
    );
    cl.map(&t, w, h, MAGENTA);
    let ws = c.wait_windows("fullscreen", |ws| {
        ws.iter().any(|w| w.fullscreen && w.geometry.height == 776)
    });
    let win = &ws[0];
    let img = c.screenshot("hostile-fullscreen");
    assert_eq!(
        magenta_only_inside(&img, &[win.geometry], "fullscreen"),
        1280 * 776
    );
    // The strip: the domain colour with the label, as on a normal frame.
    assert_eq!(img.pixel(1277, 2), WORK);
    let f = win.frame;
    assert_eq!((f.x, f.y, f.width, f.height), (0, 0, 1280, 800));

    // Super+Escape through the real key path: the VM never sees it and cannot keep fullscreen.
    c.input(chord(&[KEY_LEFTMETA], KEY_ESC));
    c.wait_windows("fullscreen left", |ws| ws.iter().all(|w| !w.fullscreen));
    cl.roundtrip();
    // The client asks to be fullscreen again right away: allowed, but the strip stays.
    t.toplevel.set_fullscreen(None);
    cl.roundtrip();
    assert_eq!(cl.events.configured, Some((1280, 776)));
}

#[test]
fn popups_are_framed_and_kept_on_the_output() {
    let c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    let t = cl.toplevel("popup-parent");
    cl.map(&t, 300, 200, WHITE);
    let w = hostile_window(&c);
    // A popup that asks to be huge and far away.
    let pos = cl.wm_base.create_positioner(&cl.qh, ());
    pos.set_size(3000, 3000);
    pos.set_anchor_rect(0, 0, 1, 1);
    pos.set_offset(5000, 5000);
    pos.set_constraint_adjustment(xdg_positioner::ConstraintAdjustment::all());
    let ps = cl.surface();
    let pxdg = cl.wm_base.get_xdg_surface(&ps, &cl.qh, ());
    let _popup = pxdg.get_popup(Some(&t.xdg), &pos, &cl.qh, ());
    ps.commit();
    cl.roundtrip();
    if let Some(serial) = cl.events.configure_serial.take() {
        pxdg.ack_configure(serial);
    }
    let b = cl.buffer(3000, 3000, MAGENTA);
    ps.attach(Some(&b), 0, 0);
    ps.commit();
    cl.roundtrip();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let img = c.screenshot("hostile-popup");
    let magenta = img.find(|p| p == MAGENTA);
    assert!(!magenta.is_empty(), "the popup is shown");
    let (x0, y0) = magenta
        .iter()
        .fold((i32::MAX, i32::MAX), |a, p| (a.0.min(p.0), a.1.min(p.1)));
    let (x1, y1) = magenta
        .iter()
        .fold((i32::MIN, i32::MIN), |a, p| (a.0.max(p.0), a.1.max(p.1)));
    // Inside the output with its frame visible all around, in the domain colour, and never
    // more than 90% of the output in either direction.
    assert!(
        x0 >= 2 && y0 >= 2 && x1 <= 1277 && y1 <= 797,
        "popup at {x0},{y0}..{x1},{y1}"
    );
    assert!(
        x1 - x0 < 1152 && y1 - y0 < 720,
        "popup of {}x{}",
        x1 - x0 + 1,
        y1 - y0 + 1
    );
    assert_eq!(
        magenta.len() as i32,
        (x1 - x0 + 1) * (y1 - y0 + 1),
        "one rectangle"
    );
    for x in [x0 - 1, (x0 + x1) / 2, x1 + 1] {
        assert_eq!(img.pixel(x, y0 - 1), WORK, "popup frame above at x={x}");
        assert_eq!(img.pixel(x, y1 + 1), WORK, "popup frame below at x={x}");
    }
    for y in [y0, (y0 + y1) / 2, y1] {
        assert_eq!(img.pixel(x0 - 1, y), WORK, "popup frame left at y={y}");
        assert_eq!(img.pixel(x1 + 1, y), WORK, "popup frame right at y={y}");
    }
    let _ = w;
}

#[test]
fn vm_cursor_is_capped_and_never_leaves_its_window() {
    let c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    let pointer = cl.seat.get_pointer(&cl.qh, ());
    let t = cl.toplevel("cursor");
    cl.map(&t, 400, 300, WHITE);
    let w = hostile_window(&c);
    let g = w.geometry;
    // Pointer near the window's right edge: a 300x300 cursor would spill over the frame.
    c.input(vec![InputEvent::PointerMotion {
        x: (g.x + g.width - 20) as f64,
        y: (g.y + 20) as f64,
    }]);
    cl.roundtrip();
    let serial = cl.events.pointer_enter.expect("pointer enter");
    let cs = cl.surface();
    let b = cl.buffer(300, 300, MAGENTA);
    cs.attach(Some(&b), 0, 0);
    cs.commit();
    pointer.set_cursor(serial, Some(&cs), 0, 0);
    cl.roundtrip();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let img = c.screenshot("hostile-cursor");
    let n = magenta_only_inside(&img, &[g], "cursor");
    assert!(n > 0 && n <= 64 * 64, "cursor drawn with {n} pixels");
    // Off the window: the VM's cursor image is gone.
    c.input(vec![InputEvent::PointerMotion { x: 5.0, y: 5.0 }]);
    let img = c.screenshot("hostile-cursor-outside");
    assert_eq!(magenta_only_inside(&img, &[], "cursor outside"), 0);
}

#[test]
fn vm_drag_icon_is_not_drawn() {
    let c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    let _pointer = cl.seat.get_pointer(&cl.qh, ());
    let dd = cl.ddm.get_data_device(&cl.seat, &cl.qh, ());
    let t = cl.toplevel("dnd");
    cl.map(&t, 400, 300, WHITE);
    let g = hostile_window(&c).geometry;
    c.input(vec![
        InputEvent::PointerMotion {
            x: (g.x + 50) as f64,
            y: (g.y + 50) as f64,
        },
        InputEvent::PointerButton {
            button: 272,
            pressed: true,
        },
    ]);
    cl.roundtrip();
    let serial = cl.events.button_serial.expect("button serial");
    let source = cl.ddm.create_data_source(&cl.qh, ());
    source.offer("text/plain".into());
    let icon = cl.surface();
    let b = cl.buffer(200, 200, MAGENTA);
    icon.attach(Some(&b), 0, 0);
    icon.commit();
    dd.start_drag(Some(&source), &t.surface, Some(&icon), serial);
    cl.roundtrip();
    // The drag is on: moving over the window itself enters it with the drag's offer.
    c.input(vec![InputEvent::PointerMotion {
        x: (g.x + 60) as f64,
        y: (g.y + 60) as f64,
    }]);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while cl.events.dnd_enters == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the drag never started"
        );
        cl.roundtrip();
    }
    c.input(vec![InputEvent::PointerMotion { x: 20.0, y: 20.0 }]);
    let img = c.screenshot("hostile-dnd");
    assert_eq!(magenta_only_inside(&img, &[], "drag icon"), 0);
    c.input(vec![InputEvent::PointerButton {
        button: 272,
        pressed: false,
    }]);
}

#[test]
fn absurd_titles_and_sizes_are_sanitised_and_clamped() {
    let c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    // One Wayland message carries at most 4 kB, so 100 kB of title arrive as 25 set_title
    // requests of ~4 kB, each full of controls, bidi overrides and a fake label.
    let evil: String = "\u{202e}[banking] Bank\u{7}\n\t\x1b\u{2066}".repeat(150);
    assert!(evil.len() > 3_500 && evil.len() < 4_000);
    let t = cl.toplevel("absurd");
    for _ in 0..25 {
        t.toplevel.set_title(evil.clone());
    }
    t.toplevel.set_min_size(1_000_000, 1_000_000);
    t.xdg.set_window_geometry(0, 0, 1_000_000, 1_000_000);
    cl.map(&t, 64, 64, MAGENTA);
    let w = c.wait_window("work", "Bank");
    assert!(
        w.title.chars().count() <= 160,
        "title kept {} chars",
        w.title.chars().count()
    );
    assert!(
        !w.title
            .chars()
            .any(|ch| ch.is_control() || ch == '\u{202e}'),
        "{:?}",
        w.title
    );
    assert!(
        w.geometry.width <= 16384 && w.geometry.height <= 6144,
        "{:?}",
        w.geometry
    );
    let img = c.screenshot("hostile-absurd");
    // The window was kept where its title bar can be grabbed, and the bar is ours.
    let x = w.frame.x.max(0) + 1;
    assert!(w.frame.y >= 0 && w.frame.y + 24 <= 800, "{:?}", w.frame);
    assert_eq!(img.pixel(x, w.frame.y + 1), WORK);
    assert!(c.answers());
}

#[test]
fn protocol_errors_and_floods_disconnect_only_the_offender() {
    let mut c = Compositor::start(TWO_VMS);
    let _foot = c.spawn("work", "foot", &[]);
    c.wait_window("work", "foot");
    // Fullscreen, so that the notifications below must appear above a fullscreen window.
    c.action("fullscreen", None);
    c.wait_windows("foot fullscreen", |ws| {
        ws.iter().any(|w| w.fullscreen && w.geometry.height == 776)
    });

    // 1. A protocol error: a subsurface that also wants to be a toplevel.
    let mut bad = Client::connect(&c.vm_socket("work"));
    let t = bad.toplevel("parent");
    let s = bad.surface();
    let _sub = bad
        .subcompositor
        .get_subsurface(&s, &t.surface, &bad.qh, ());
    let xdg = bad.wm_base.get_xdg_surface(&s, &bad.qh, ());
    let _top = xdg.get_toplevel(&bad.qh, ());
    assert!(bad.try_roundtrip().is_err(), "the offender is disconnected");

    // 2. An shm pool that claims far more memory than its file has, and a buffer in the part
    // that does not exist: reading it would fault (SIGBUS) in a naive compositor.
    let mut bad = Client::connect(&c.vm_socket("work"));
    let t = bad.toplevel("sigbus");
    let file = tempfile::tempfile().unwrap();
    file.set_len(4096).unwrap();
    // 256 MiB claimed (within the VM client's shm limit), 4 KiB real.
    let pool = bad
        .shm
        .create_pool(std::os::fd::AsFd::as_fd(&file), 256 << 20, &bad.qh, ());
    let buf = pool.create_buffer(
        0,
        4096,
        4096,
        4096 * 4,
        wayland_client::protocol::wl_shm::Format::Argb8888,
        &bad.qh,
        (),
    );
    if let Some(serial) = bad.events.configure_serial.take() {
        t.xdg.ack_configure(serial);
    }
    t.surface.attach(Some(&buf), 0, 0);
    t.surface.damage_buffer(0, 0, 4096, 4096);
    t.surface.commit();
    let _ = bad.try_roundtrip();
    let _ = c.screenshot("hostile-sigbus");
    assert!(c.answers(), "the compositor survives a truncated shm pool");

    // 3. A surface flood.
    let mut flood = Client::connect(&c.vm_socket("banking"));
    let surfaces: Vec<_> = (0..2_100).map(|_| flood.surface()).collect();
    assert!(
        flood.try_roundtrip().is_err(),
        "the flooding client is disconnected"
    );
    drop(surfaces);

    // The compositor and the well-behaved client live on.
    assert!(c.running());
    let w = c.wait_window("work", "foot");
    assert!(w.fullscreen);

    // The user is told, in the compositor's own layer above the fullscreen window: newest
    // first, each with a strip in the offender's domain colour, one place per VM (work's
    // second notice replaced its first).
    use bulkhead_compositor::notify;
    let expected = [
        (
            BANKING,
            "[banking] app disconnected: more than 2000 wl_surface objects",
        ),
        (WORK, "[work] app disconnected: protocol error (wl_buffer)"),
    ];
    let x0 = 1280 - notify::WIDTH - notify::MARGIN;
    let mut img = c.screenshot("hostile-after-errors");
    for _ in 0..100 {
        // The disconnect reports travel through the event loop; wait for the last.
        let y = notify::MARGIN;
        if img.pixel(x0 + 1, y + 1) == BANKING {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        img = c.screenshot("hostile-after-errors");
    }
    for (i, (color, text)) in expected.iter().enumerate() {
        assert_eq!(
            notification_diff(&img, i, *color, text),
            0,
            "notification {i} should read {text:?}"
        );
    }
}

#[test]
fn touch_reaches_only_the_window_under_the_finger() {
    let c = Compositor::start(TWO_VMS);
    let mut a = Client::connect(&c.vm_socket("work"));
    let touch_a = a.seat.get_touch(&a.qh, ());
    let ta = a.toplevel("touch-a");
    a.map(&ta, 300, 200, WHITE);
    let wa = c.wait_window("work", "touch-a");
    let mut b = Client::connect(&c.vm_socket("banking"));
    let touch_b = b.seat.get_touch(&b.qh, ());
    let tb = b.toplevel("touch-b");
    b.map(&tb, 300, 200, WHITE);
    let wb = c.wait_window("banking", "touch-b");
    c.focus(wb.id);
    let ws = c.windows();
    let wb = ws.iter().find(|w| w.title == "touch-b").unwrap();
    // A point of work's window that banking's (on top, placed beside it) does not cover.
    let (x, y) = (wa.geometry.x + 5, wa.geometry.y + 7);
    assert!(!wb.frame.contains(x, y));
    c.input(vec![
        InputEvent::TouchDown {
            slot: 0,
            x: x as f64,
            y: y as f64,
        },
        InputEvent::TouchUp { slot: 0 },
    ]);
    a.roundtrip();
    b.roundtrip();
    assert_eq!(
        a.events.touch_down,
        Some((5.0, 7.0)),
        "work's window gets the touch, surface-local"
    );
    assert_eq!(b.events.touch_down, None, "banking never sees it");
    c.wait_windows("touch focuses work", |ws| {
        ws.iter().any(|w| w.title == "touch-a" && w.focused)
    });
    drop((touch_a, touch_b));
}

#[test]
fn drag_and_drop_never_enters_another_domain() {
    let c = Compositor::start(TWO_VMS);
    // banking's window, listening for drags.
    let mut b = Client::connect(&c.vm_socket("banking"));
    let _bp = b.seat.get_pointer(&b.qh, ());
    let _bdd = b.ddm.get_data_device(&b.seat, &b.qh, ());
    let tb = b.toplevel("drop-target");
    b.map(&tb, 300, 200, WHITE);
    let wb = c.wait_window("banking", "drop-target");
    // work's window, starting a drag.
    let mut a = Client::connect(&c.vm_socket("work"));
    let _ap = a.seat.get_pointer(&a.qh, ());
    let add = a.ddm.get_data_device(&a.seat, &a.qh, ());
    let ta = a.toplevel("drag-source");
    a.map(&ta, 300, 200, WHITE);
    let wa = c.wait_window("work", "drag-source");
    // A point of each window that the other does not cover.
    let pa = (
        wa.geometry.x + wa.geometry.width - 10,
        wa.geometry.y + wa.geometry.height - 10,
    );
    let pb = (wb.geometry.x + 10, wb.geometry.y + 10);
    assert!(!wa.frame.contains(pb.0, pb.1) && !wb.frame.contains(pa.0, pa.1));
    c.input(vec![
        InputEvent::PointerMotion {
            x: pa.0 as f64,
            y: pa.1 as f64,
        },
        InputEvent::PointerButton {
            button: 272,
            pressed: true,
        },
    ]);
    a.roundtrip();
    let serial = a.events.button_serial.expect("button serial");
    let source = a.ddm.create_data_source(&a.qh, ());
    source.offer("text/plain".into());
    add.start_drag(Some(&source), &ta.surface, None, serial);
    a.roundtrip();
    // Over banking's window, then back over work's own.
    c.input(vec![InputEvent::PointerMotion {
        x: pb.0 as f64,
        y: pb.1 as f64,
    }]);
    b.roundtrip();
    c.input(vec![InputEvent::PointerMotion {
        x: pa.0 as f64 - 5.0,
        y: pa.1 as f64 - 5.0,
    }]);
    a.roundtrip();
    b.roundtrip();
    assert_eq!(b.events.dnd_enters, 0, "banking was offered work's drag");
    assert!(
        a.events.dnd_enters > 0,
        "the drag works inside its own domain"
    );
    c.input(vec![InputEvent::PointerButton {
        button: 272,
        pressed: false,
    }]);
}
