//! No request crashes the compositor (threat model, promise 4): a raw-wire VM client sends the
//! sizes smithay's debug assertions and our own clamps choke on, and the session, another
//! domain's client included, lives on.

mod common;

use common::client::{Client, MAGENTA, WHITE};
use common::*;

/// The compositor still answers, and a client of the other domain still gets a frame.
fn still_alive(c: &Compositor) {
    let mut other = Client::connect(&c.vm_socket("banking"));
    let t = other.toplevel("witness");
    other.map(&t, 100, 80, WHITE);
    c.wait_window("banking", "witness");
    let callback = t.surface.frame(&other.qh, ());
    t.surface.commit();
    other.roundtrip();
    drop(callback);
}

#[test]
fn negative_sizes_in_requests_crash_nothing() {
    let c = Compositor::start(TWO_VMS);
    let mut work = Client::connect(&c.vm_socket("work"));
    let t = work.toplevel("negative");
    t.toplevel.set_min_size(-5, -7);
    t.toplevel.set_max_size(-100, -1);
    t.xdg.set_window_geometry(-10, -10, -300, -200);
    work.map(&t, 200, 150, WHITE);
    t.surface.damage(-50, -50, -10, -20);
    t.surface.damage_buffer(10, 10, -1000, -1000);
    let region = work.compositor.create_region(&work.qh, ());
    region.add(0, 0, -40, -40);
    region.subtract(-1, -1, -2, -2);
    t.surface.set_opaque_region(Some(&region));
    t.surface.set_input_region(Some(&region));
    t.surface.commit();
    // A protocol error for this client is fine; a dead compositor is not.
    let _ = work.try_roundtrip();
    still_alive(&c);
}

#[test]
fn a_window_whose_min_size_exceeds_its_max_survives_a_super_right_drag_resize() {
    let c = Compositor::start(TWO_VMS);
    let mut work = Client::connect(&c.vm_socket("work"));
    let t = work.toplevel("min over max");
    t.toplevel.set_min_size(20_000, 20_000);
    t.toplevel.set_max_size(100, 100);
    work.map(&t, 300, 200, WHITE);
    let w = c.wait_window("work", "min over max");
    work.events.configured = None;
    let (px, py) = (
        w.geometry.x + w.geometry.width - 10,
        w.geometry.y + w.geometry.height - 10,
    );
    c.input(super_right_drag((px, py), (px - 150, py - 100)));
    // The resize went through the grab: the client is asked for a size, within the bounds
    // the compositor can honour (never above its maximum window size).
    let deadline = std::time::Instant::now() + TIMEOUT;
    while work.events.configured.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the resize asked for no size"
        );
        work.try_roundtrip().expect("the compositor went away");
    }
    let (cw, ch) = work.events.configured.expect("a configure");
    assert!(
        cw > 0 && ch > 0 && cw <= 16_384 && ch <= 16_384,
        "configured {cw}x{ch}"
    );
    still_alive(&c);
}

/// A VM client maps a window, then `attack` sends extreme values; the pointer crosses the
/// window, the screen is drawn, a Super+drag moves it, and the session lives on.
fn survives(attack: impl FnOnce(&mut Client, &common::client::Toplevel)) {
    let c = Compositor::start(TWO_VMS);
    let mut work = Client::connect(&c.vm_socket("work"));
    let t = work.toplevel("extreme");
    work.map(&t, 200, 150, WHITE);
    let w = c.wait_window("work", "extreme");
    attack(&mut work, &t);
    // A protocol error for this client is fine; a dead compositor is not.
    let _ = work.try_roundtrip();
    let (x, y) = (w.geometry.x + 20, w.geometry.y + 20);
    c.input(vec![bulkhead_ipc::InputEvent::PointerMotion {
        x: x as f64,
        y: y as f64,
    }]);
    let _ = work.try_roundtrip();
    let _ = c.screenshot("extreme");
    c.input(super_drag(272, (x, y), (x + 300, y + 200)));
    let _ = work.try_roundtrip();
    let _ = c.screenshot("extreme-moved");
    still_alive(&c);
}

const EXTREMES: [i32; 4] = [i32::MAX, i32::MIN, i32::MAX - 1, -1];

#[test]
fn extreme_subsurface_positions_and_offsets() {
    for v in EXTREMES {
        survives(|cl, t| {
            let s = cl.surface();
            let sub = cl.subcompositor.get_subsurface(&s, &t.surface, &cl.qh, ());
            sub.set_position(v, v.wrapping_neg());
            let b = cl.buffer(50, 50, MAGENTA);
            s.attach(Some(&b), 0, 0);
            s.offset(v, v);
            s.commit();
            t.surface.offset(v, v.wrapping_neg());
            t.surface.commit();
        });
    }
}

#[test]
fn extreme_window_geometry_and_sizes() {
    for v in EXTREMES {
        survives(|_, t| {
            t.xdg.set_window_geometry(v, v, v, v);
            t.toplevel.set_min_size(v, v);
            t.toplevel.set_max_size(v, v);
            t.surface.commit();
        });
    }
}

#[test]
fn extreme_popup_positioners() {
    for v in EXTREMES {
        survives(|cl, t| {
            let pos = cl.wm_base.create_positioner(&cl.qh, ());
            pos.set_size(i32::MAX, i32::MAX);
            pos.set_anchor_rect(v, v, i32::MAX, i32::MAX);
            pos.set_offset(v, v);
            pos.set_constraint_adjustment(
                wayland_protocols::xdg::shell::client::xdg_positioner::ConstraintAdjustment::all(),
            );
            pos.set_parent_size(v, v);
            let s = cl.surface();
            let xdg = cl.wm_base.get_xdg_surface(&s, &cl.qh, ());
            let popup = xdg.get_popup(Some(&t.xdg), &pos, &cl.qh, ());
            s.commit();
            let _ = cl.try_roundtrip();
            if let Some(serial) = cl.events.configure_serial.take() {
                xdg.ack_configure(serial);
            }
            let b = cl.buffer(64, 64, MAGENTA);
            s.attach(Some(&b), 0, 0);
            s.commit();
            popup.reposition(&pos, 7);
        });
    }
}

#[test]
fn extreme_cursor_hotspots() {
    for v in EXTREMES {
        survives(|cl, t| {
            let pointer = cl.seat.get_pointer(&cl.qh, ());
            let _ = cl.try_roundtrip();
            let serial = cl.events.pointer_enter.unwrap_or(0);
            let cs = cl.surface();
            let b = cl.buffer(32, 32, MAGENTA);
            cs.attach(Some(&b), 0, 0);
            cs.commit();
            pointer.set_cursor(serial, Some(&cs), v, v.wrapping_neg());
            let _ = t;
        });
    }
}

#[test]
fn extreme_scales_and_transforms() {
    for (scale, transform) in [(0, 99), (-1, i32::MIN as u32), (i32::MAX, 7), (i32::MIN, 8)] {
        survives(|cl, t| {
            t.surface.set_buffer_scale(scale);
            // Sent raw: the client library would refuse an unknown transform.
            let _ = cl.conn.send_request(
                &t.surface,
                wayland_client::protocol::wl_surface::Request::SetBufferTransform {
                    transform: wayland_client::WEnum::Unknown(transform),
                },
                None,
            );
            let b = cl.buffer(30, 30, MAGENTA);
            t.surface.attach(Some(&b), 0, 0);
            t.surface.commit();
        });
    }
}

#[test]
fn extreme_damage_and_regions() {
    for v in EXTREMES {
        survives(|cl, t| {
            let b = cl.buffer(200, 150, MAGENTA);
            t.surface.attach(Some(&b), 0, 0);
            t.surface.damage(v, v, v, v);
            t.surface.damage_buffer(v, v.wrapping_neg(), v, i32::MAX);
            let r = cl.compositor.create_region(&cl.qh, ());
            r.add(v, v, v, v);
            r.subtract(v.wrapping_neg(), v, i32::MAX, v);
            t.surface.set_opaque_region(Some(&r));
            t.surface.set_input_region(Some(&r));
            t.surface.commit();
        });
    }
}

#[test]
fn shm_pool_resized_to_zero_or_less() {
    for size in [0, -1, i32::MIN] {
        survives(|cl, _| {
            let file = tempfile::tempfile().unwrap();
            file.set_len(4096).unwrap();
            let pool = cl
                .shm
                .create_pool(std::os::fd::AsFd::as_fd(&file), 4096, &cl.qh, ());
            pool.resize(size);
        });
    }
}
