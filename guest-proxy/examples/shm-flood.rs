//! A benchmark client: one xdg toplevel whose 1920×1080 shm buffers are committed as fast as
//! the path accepts them (a `wl_display.sync` round trip after each commit, no frame
//! callbacks), with full or partial damage.
//!
//!     shm-flood SECONDS DAMAGE_PERCENT
//!
//! Prints `frames N seconds S`.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use wayland_client::protocol::{
    wl_buffer, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface,
};
use wayland_client::{delegate_noop, Connection, Dispatch, QueueHandle};
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base};

const W: i32 = 1920;
const H: i32 = 1080;

#[derive(Default)]
struct App {
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm: Option<xdg_wm_base::XdgWmBase>,
    configured: bool,
}

impl Dispatch<wl_registry::WlRegistry, ()> for App {
    fn event(
        app: &mut Self,
        registry: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        if let wl_registry::Event::Global {
            name, interface, ..
        } = event
        {
            match interface.as_str() {
                "wl_compositor" => app.compositor = Some(registry.bind(name, 4, qh, ())),
                "wl_shm" => app.shm = Some(registry.bind(name, 1, qh, ())),
                "xdg_wm_base" => app.wm = Some(registry.bind(name, 1, qh, ())),
                _ => {}
            }
        }
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for App {
    fn event(
        _: &mut Self,
        wm: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm.pong(serial);
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for App {
    fn event(
        app: &mut Self,
        s: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = event {
            s.ack_configure(serial);
            app.configured = true;
        }
    }
}

delegate_noop!(App: ignore wl_compositor::WlCompositor);
delegate_noop!(App: ignore wl_surface::WlSurface);
delegate_noop!(App: ignore wl_shm::WlShm);
delegate_noop!(App: ignore wl_shm_pool::WlShmPool);
delegate_noop!(App: ignore wl_buffer::WlBuffer);
delegate_noop!(App: ignore xdg_toplevel::XdgToplevel);

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let damage: i32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(100)
        .clamp(1, 100);
    let conn = Connection::connect_to_env().expect("connect to WAYLAND_DISPLAY");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut app = App::default();
    queue.roundtrip(&mut app).expect("roundtrip");
    let (Some(compositor), Some(shm), Some(wm)) =
        (app.compositor.clone(), app.shm.clone(), app.wm.clone())
    else {
        eprintln!("shm-flood: the compositor lacks wl_compositor, wl_shm or xdg_wm_base");
        std::process::exit(1);
    };
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm.get_xdg_surface(&surface, &qh, ());
    let top = xdg.get_toplevel(&qh, ());
    top.set_title("shm-flood".into());
    surface.commit();
    while !app.configured {
        queue.blocking_dispatch(&mut app).expect("dispatch");
    }
    // Two buffers in one pool, drawn alternately.
    let size = (W * H * 4) as usize;
    let fd =
        nix::sys::memfd::memfd_create(c"shm-flood", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .expect("memfd");
    let file = std::fs::File::from(fd);
    file.set_len((size * 2) as u64).expect("size");
    let pool = shm.create_pool(file.as_fd(), (size * 2) as i32, &qh, ());
    let buffers: Vec<_> = (0..2)
        .map(|i| {
            pool.create_buffer(
                (i * size) as i32,
                W,
                H,
                W * 4,
                wl_shm::Format::Xrgb8888,
                &qh,
                (),
            )
        })
        .collect();
    // The damaged band: `damage` percent of the rows, moving down each frame.
    let band = (H * damage / 100).max(1);
    let mut row = vec![0u8; (W * 4) as usize];
    let start = Instant::now();
    let mut frames: u64 = 0;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let i = (frames % 2) as usize;
        let y0 = ((frames as i32) * 7) % (H - band + 1);
        let shade = (frames % 251) as u8;
        row.iter_mut().for_each(|b| *b = shade);
        for y in y0..y0 + band {
            use std::os::unix::fs::FileExt;
            let _ = file.write_at(&row, (i * size) as u64 + (y * W * 4) as u64);
        }
        surface.attach(Some(&buffers[i]), 0, 0);
        surface.damage_buffer(0, y0, W, band);
        surface.commit();
        queue.roundtrip(&mut app).expect("roundtrip");
        frames += 1;
    }
    println!(
        "frames {frames} seconds {:.3}",
        start.elapsed().as_secs_f64()
    );
}
