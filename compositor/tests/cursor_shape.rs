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

/// The theme's image of cursor `name` at 24 px: (width, height, hotspot, premultiplied
/// B, G, R, A bytes).
fn theme_cursor(name: &str) -> (i32, i32, (i32, i32), Vec<u8>) {
    let theme = xcursor::CursorTheme::load("Adwaita");
    let path = theme
        .load_icon(name)
        .unwrap_or_else(|| panic!("the Adwaita cursor theme has no {name:?} (adwaita-icon-theme)"));
    let bytes = std::fs::read(&path).expect("cursor file");
    let images = xcursor::parser::parse_xcursor(&bytes).expect("an xcursor file");
    let i = images
        .iter()
        .find(|i| i.size == 24)
        .unwrap_or_else(|| panic!("{name} has no 24 px image"));
    (
        i.width as i32,
        i.height as i32,
        (i.xhot as i32, i.yhot as i32),
        i.pixels_rgba.clone(),
    )
}

/// Checks that `img` shows cursor `name` with its hotspot at `at`: every opaque pixel of the
/// theme's image, exactly. Returns how many were compared.
fn assert_cursor_drawn(img: &Image, at: (i32, i32), name: &str) -> usize {
    let (w, h, hot, px) = theme_cursor(name);
    let mut opaque = 0;
    for y in 0..h {
        for x in 0..w {
            let p = &px[((y * w + x) * 4) as usize..][..4];
            if p[3] != 0xff {
                continue;
            }
            opaque += 1;
            let (sx, sy) = (at.0 - hot.0 + x, at.1 - hot.1 + y);
            assert_eq!(
                img.pixel(sx, sy),
                [p[2], p[1], p[0]],
                "{name}: pixel {x},{y} of the cursor at {sx},{sy}"
            );
        }
    }
    assert!(opaque > 20, "{name} has only {opaque} opaque pixels");
    opaque
}

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
