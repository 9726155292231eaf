//! `bulkhead-wl-proxy`: the guest's Wayland socket, forwarded app by app to the host.

use std::path::PathBuf;

use bulkhead_guest::wlproxy::{serve, HostEndpoint};

fn usage() -> ! {
    eprintln!(
        "usage: bulkhead-wl-proxy [--socket PATH] [--host-port N | --host-socket PATH]\n\
         default socket: $XDG_RUNTIME_DIR/wayland-0; default host: vsock port 5000"
    );
    std::process::exit(2);
}

fn main() {
    let mut socket: Option<PathBuf> = None;
    let mut host = HostEndpoint::default();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.to_str() {
            Some("--socket") => socket = Some(PathBuf::from(value())),
            Some("--host-socket") => host = HostEndpoint::Unix(PathBuf::from(value())),
            Some("--host-port") => {
                let port = value()
                    .to_str()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage());
                host = HostEndpoint::Vsock { port };
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
    if let Err(e) = serve(&socket, host) {
        eprintln!("bulkhead-wl-proxy: {e}");
        std::process::exit(1);
    }
}
