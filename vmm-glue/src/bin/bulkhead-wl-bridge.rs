//! `bulkhead-wl-bridge --listen SOCKET --wayland SOCKET`: the host side of the vsock graphics
//! transport for one VM (started by the VM's monitor, inside its confinement).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Bridge a VM's Wayland streams (from bulkhead-wl-proxy over vsock) to its Wayland socket.
#[derive(Parser)]
#[command(name = "bulkhead-wl-bridge", version)]
struct Args {
    /// Where guest streams arrive (vhost-device-vsock's `<uds-path>_5000`).
    #[arg(long)]
    listen: PathBuf,
    /// The VM's Wayland socket in the compositor.
    #[arg(long)]
    wayland: PathBuf,
    /// What the seccomp filter does with a system call off its list: kill, log or disabled.
    #[arg(long, default_value = "kill")]
    seccomp: bulkhead_vmm::sandbox::Mode,
}

fn main() -> ExitCode {
    let a = Args::parse();
    match bulkhead_vmm::bridge::serve(&a.listen, &a.wayland, a.seccomp) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead-wl-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
