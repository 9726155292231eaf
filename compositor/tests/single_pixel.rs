//! Single-pixel buffers (wp_single_pixel_buffer_manager_v1), which GTK 4 and browsers draw
//! solid backgrounds with: a VM app's fills the size its viewport gives, inside its frame.

mod common;

use common::client::{Client, WHITE};
use common::*;
use wayland_protocols::wp::single_pixel_buffer::v1::client::wp_single_pixel_buffer_manager_v1::WpSinglePixelBufferManagerV1;
use wayland_protocols::wp::viewporter::client::wp_viewporter::WpViewporter;

const WORK: [u8; 3] = [0x30, 0x60, 0xff];

#[test]
fn a_vm_apps_single_pixel_buffer_fills_its_viewport_inside_the_frame() {
    let c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    let t = cl.toplevel("solid");
    cl.map(&t, 400, 300, WHITE);
    c.wait_window("work", "solid");
    let pixels: WpSinglePixelBufferManagerV1 = cl.bind(1);
    let viewporter: WpViewporter = cl.bind(1);
    let viewport = viewporter.get_viewport(&t.surface, &cl.qh, ());
    let red = pixels.create_u32_rgba_buffer(u32::MAX, 0, 0, u32::MAX, &cl.qh, ());
    viewport.set_destination(320, 240);
    t.surface.attach(Some(&red), 0, 0);
    t.surface.damage_buffer(0, 0, 1, 1);
    t.surface.commit();
    cl.roundtrip();
    let w = c.wait_window("work", "solid");
    assert_eq!((w.geometry.width, w.geometry.height), (320, 240));
    let img = c.screenshot("single-pixel");
    let g = w.geometry;
    for (x, y) in [
        (g.x, g.y),
        (g.x + g.width - 1, g.y),
        (g.x, g.y + g.height - 1),
        (g.x + g.width - 1, g.y + g.height - 1),
        (g.x + g.width / 2, g.y + g.height / 2),
    ] {
        assert_eq!(img.pixel(x, y), [0xff, 0, 0], "content at {x},{y}");
    }
    assert_framed(&img, &w, WORK, "[work] solid", true);
}
