//! A client with one 16384×16384 shm buffer (1 GiB, sparse), as a hostile VM might send.
//! Only its top-left corner has content: the left half of a `W`×`H` block in magenta, the
//! right half in green; everything else is zero (black, as XRGB). The desktop machine test
//! runs it on a VM socket inside the machine and checks that the compositor shows the
//! corner without uploading the whole buffer.
//!
//! Usage: `WAYLAND_DISPLAY=… huge-buffer [TITLE]`; prints "committed" after its first commit
//! and "shown" once a frame callback says the compositor drew it, then stays until killed.

use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use wayland_client::globals::{registry_queue_init, GlobalListContents};
use wayland_client::protocol::{
    wl_buffer, wl_callback, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface,
};
use wayland_client::{delegate_noop, Connection, Dispatch, QueueHandle};
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base};

const SIDE: i32 = 16384;
/// The block with content, in the buffer's top-left corner.
const W: i32 = 1024;
const H: i32 = 512;
const MAGENTA: [u8; 4] = [0xff, 0x00, 0xff, 0xff];
const GREEN: [u8; 4] = [0x00, 0xc0, 0x00, 0xff];

#[derive(Default)]
struct State {
    configured: Option<u32>,
    frame_done: bool,
    closed: bool,
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for State {
    fn event(
        _: &mut Self,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for State {
    fn event(
        _: &mut Self,
        base: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            base.pong(serial);
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for State {
    fn event(
        state: &mut Self,
        _: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = event {
            state.configured = Some(serial);
        }
    }
}

impl Dispatch<xdg_toplevel::XdgToplevel, ()> for State {
    fn event(
        state: &mut Self,
        _: &xdg_toplevel::XdgToplevel,
        event: xdg_toplevel::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_toplevel::Event::Close = event {
            state.closed = true;
        }
    }
}

impl Dispatch<wl_callback::WlCallback, ()> for State {
    fn event(
        state: &mut Self,
        _: &wl_callback::WlCallback,
        _: wl_callback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        state.frame_done = true;
    }
}

delegate_noop!(State: ignore wl_compositor::WlCompositor);
delegate_noop!(State: ignore wl_surface::WlSurface);
delegate_noop!(State: ignore wl_shm::WlShm);
delegate_noop!(State: ignore wl_shm_pool::WlShmPool);
delegate_noop!(State: ignore wl_buffer::WlBuffer);

/// The buffer's file: 1 GiB long, written only in the block's rows.
fn buffer_file() -> std::io::Result<std::fs::File> {
    let mut file = tempfile::tempfile()?;
    let stride = i64::from(SIDE) * 4;
    file.set_len(stride as u64 * SIDE as u64)?;
    let mut row = Vec::with_capacity(W as usize * 4);
    for x in 0..W {
        // XRGB little-endian: B, G, R, X.
        let [r, g, b, a] = if x < W / 2 { MAGENTA } else { GREEN };
        row.extend_from_slice(&[b, g, r, a]);
    }
    for y in 0..i64::from(H) {
        file.seek(SeekFrom::Start((y * stride) as u64))?;
        file.write_all(&row)?;
    }
    Ok(file)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let title = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "huge-buffer".into());
    let conn = Connection::connect_to_env()?;
    let (globals, mut queue) = registry_queue_init::<State>(&conn)?;
    let qh = queue.handle();
    let compositor: wl_compositor::WlCompositor = globals.bind(&qh, 4..=6, ())?;
    let shm: wl_shm::WlShm = globals.bind(&qh, 1..=1, ())?;
    let base: xdg_wm_base::XdgWmBase = globals.bind(&qh, 1..=6, ())?;
    let mut state = State::default();

    let surface = compositor.create_surface(&qh, ());
    let xdg = base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_title(title);
    toplevel.set_app_id("huge-buffer".into());
    surface.commit();
    while state.configured.is_none() {
        queue.blocking_dispatch(&mut state)?;
    }
    if let Some(serial) = state.configured.take() {
        xdg.ack_configure(serial);
    }

    let file = buffer_file()?;
    let pool = shm.create_pool(file.as_fd(), SIDE * SIDE * 4, &qh, ());
    let buffer = pool.create_buffer(0, SIDE, SIDE, SIDE * 4, wl_shm::Format::Xrgb8888, &qh, ());
    surface.attach(Some(&buffer), 0, 0);
    surface.damage_buffer(0, 0, SIDE, SIDE);
    surface.frame(&qh, ());
    surface.commit();
    queue.roundtrip(&mut state)?;
    println!("committed");
    while !state.frame_done && !state.closed {
        queue.blocking_dispatch(&mut state)?;
    }
    println!("shown");
    while !state.closed {
        queue.blocking_dispatch(&mut state)?;
    }
    Ok(())
}
