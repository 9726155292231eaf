//! Named cursors come from the host's xcursor theme (the harness runs the compositor with
//! Adwaita at 24 px): the default cursor over a VM window, and each shape a VM app asks for
//! through cursor-shape-v1, are that theme's images, checked pixel by pixel against the
//! theme's own files.

mod common;

use bulkhead_ipc::InputEvent;
use common::client::{Client, WHITE};
use common::*;
use wayland_protocols::wp::cursor_shape::v1::client::wp_cursor_shape_device_v1::Shape;
use wayland_protocols::wp::cursor_shape::v1::client::wp_cursor_shape_manager_v1::WpCursorShapeManagerV1;

#[test]
fn a_vm_apps_cursor_shapes_are_drawn_from_the_hosts_theme() {
    let c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    let pointer = cl.seat.get_pointer(&cl.qh, ());
    let t = cl.toplevel("shapes");
    cl.map(&t, 400, 300, WHITE);
    let g = c.wait_window("work", "shapes").geometry;
    let at = (g.x + 150, g.y + 120);
    c.input(vec![InputEvent::PointerMotion {
        x: at.0 as f64,
        y: at.1 as f64,
    }]);
    cl.roundtrip();
    let serial = cl.events.pointer_enter.expect("pointer enter");
    // Nothing asked yet: the theme's default arrow.
    assert_cursor_drawn(&c.screenshot("cursor-default"), at, "default");
    let shapes: WpCursorShapeManagerV1 = cl.bind(1);
    let device = shapes.get_pointer(&pointer, &cl.qh, ());
    for (shape, name) in [(Shape::Text, "text"), (Shape::Crosshair, "crosshair")] {
        device.set_shape(serial, shape);
        cl.roundtrip();
        assert_cursor_drawn(&c.screenshot(&format!("cursor-{name}")), at, name);
    }
    // A stale serial changes nothing.
    device.set_shape(serial.wrapping_sub(1000), Shape::Wait);
    cl.roundtrip();
    assert_cursor_drawn(&c.screenshot("cursor-stale"), at, "crosshair");
}
