//! No request crashes the compositor (threat model, promise 4): a raw-wire VM client sends the
//! sizes smithay's debug assertions and our own clamps choke on, and the session, another
//! domain's client included, lives on.

mod common;

use common::client::{Client, WHITE};
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
