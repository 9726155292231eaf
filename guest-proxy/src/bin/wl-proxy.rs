//! `bulkhead-wl-proxy`: the guest's Wayland socket, forwarded app by app to the host.

use std::path::PathBuf;
use std::sync::Arc;

use bulkhead_guest::crossdomain::{self, Opener};
use bulkhead_guest::virtgpu::drm::DrmGpu;
use bulkhead_guest::virtgpu::loopback::LoopbackGpu;
use bulkhead_guest::virtgpu::VirtGpu;
use bulkhead_guest::wlproxy::{serve, HostEndpoint};

fn usage() -> ! {
    eprintln!(
        "usage: bulkhead-wl-proxy [--socket PATH] [--transport auto|cross-domain|vsock]\n\
         \x20                        [--host-port N | --host-socket PATH | --loopback-host WAYLAND_SOCKET]\n\
         apps connect to --socket (default $XDG_RUNTIME_DIR/wayland-0).\n\
         auto (the default): cross-domain when a virtio-gpu render node offers it (crosvm),\n\
         else the vsock stream (vsock port 5000 on the host, or --host-port / --host-socket).\n\
         --loopback-host: cross-domain with its host side (rutabaga_gfx, as crosvm runs it) in\n\
         this process, connected to WAYLAND_SOCKET: for tests and trying it without a VM.\n\
         --x-display N: X11 apps on display :N (socket in /tmp/.X11-unix, or --x-socket-dir),\n\
         through Xwayland started on demand (cross-domain only)."
    );
    std::process::exit(2);
}

#[derive(PartialEq)]
enum Transport {
    Auto,
    CrossDomain,
    Vsock,
}

fn main() {
    let mut socket: Option<PathBuf> = None;
    let mut host = HostEndpoint::default();
    let mut transport = Transport::Auto;
    let mut loopback: Option<PathBuf> = None;
    let mut x_display: Option<u32> = None;
    let mut x_dir = PathBuf::from("/tmp/.X11-unix");
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.to_str() {
            Some("--socket") => socket = Some(PathBuf::from(value())),
            Some("--host-socket") => {
                host = HostEndpoint::Unix(PathBuf::from(value()));
                transport = Transport::Vsock;
            }
            Some("--host-port") => {
                let port = value()
                    .to_str()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage());
                host = HostEndpoint::Vsock { port };
                transport = Transport::Vsock;
            }
            Some("--loopback-host") => {
                loopback = Some(PathBuf::from(value()));
                transport = Transport::CrossDomain;
            }
            Some("--x-display") => {
                x_display = Some(
                    value()
                        .to_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            Some("--x-socket-dir") => x_dir = PathBuf::from(value()),
            Some("--transport") => {
                transport = match value().to_str() {
                    Some("auto") => Transport::Auto,
                    Some("cross-domain") => Transport::CrossDomain,
                    Some("vsock") => Transport::Vsock,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    let socket = socket.unwrap_or_else(|| {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").unwrap_or_else(|| {
            eprintln!("bulkhead-wl-proxy: XDG_RUNTIME_DIR is not set; pass --socket");
            std::process::exit(2);
        });
        PathBuf::from(runtime).join("wayland-0")
    });
    let opener: Option<Opener> = if let Some(wayland) = loopback {
        Some(Arc::new(move || {
            LoopbackGpu::open(&wayland).map(|g| Box::new(g) as Box<dyn VirtGpu>)
        }))
    } else if transport == Transport::Vsock {
        None
    } else {
        match DrmGpu::find_cross_domain() {
            Ok(node) => {
                eprintln!("bulkhead-wl-proxy: cross-domain on {}", node.display());
                Some(Arc::new(move || {
                    DrmGpu::open(&node).map(|g| Box::new(g) as Box<dyn VirtGpu>)
                }))
            }
            Err(e) if transport == Transport::CrossDomain => {
                eprintln!("bulkhead-wl-proxy: cross-domain is not available: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("bulkhead-wl-proxy: {e}; using the vsock stream");
                None
            }
        }
    };
    // An image without Xwayland serves no X display (and its session has no DISPLAY).
    let x_display = x_display.filter(|d| {
        let found = bulkhead_guest::xwayland::installed();
        if !found {
            eprintln!("bulkhead-wl-proxy: no Xwayland in PATH; X display :{d} is not served");
        }
        found
    });
    if let Some(display) = x_display {
        match &opener {
            Some(open) => match bulkhead_guest::xwayland::listen(&x_dir, display) {
                Ok((listener, path)) => {
                    eprintln!("bulkhead-wl-proxy: X11 apps on :{display} ({})", path.display());
                    let open = open.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = bulkhead_guest::xwayland::serve(listener, display, open) {
                            eprintln!("bulkhead-wl-proxy: X display :{display}: {e}");
                        }
                    });
                }
                Err(e) => eprintln!("bulkhead-wl-proxy: cannot listen on X display :{display}: {e}"),
            },
            None => eprintln!(
                "bulkhead-wl-proxy: X11 apps need the cross-domain transport; :{display} is not served"
            ),
        }
    }
    let r = match opener {
        Some(open) => crossdomain::serve(&socket, open),
        None => serve(&socket, host),
    };
    if let Err(e) = r {
        eprintln!("bulkhead-wl-proxy: {e}");
        std::process::exit(1);
    }
}
