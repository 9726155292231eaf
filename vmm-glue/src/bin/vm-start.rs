//! `vm-start VM...`: start VMs (and what they depend on).

use std::process::ExitCode;

use bulkhead_ipc::{Reply, Request};
use bulkhead_vmm::cli;
use clap::Parser;

/// Start VMs; returns once each one's guest agent answers.
#[derive(Parser)]
#[command(name = "vm-start", version)]
struct Args {
    /// The VMs.
    #[arg(required = true)]
    vms: Vec<String>,
}

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for vm in Args::parse().vms {
        match cli::call(&Request::VmStart { vm: vm.clone() }) {
            Ok(Reply::VmStarted { started: false, .. }) => println!("{vm} is already running"),
            Ok(Reply::VmStarted { boot, .. }) => match boot {
                Some(b) => println!("{vm} started in {}", cli::secs(b.total_ms)),
                None => println!("{vm} started"),
            },
            Ok(other) => status = cli::unexpected("vm-start", &other),
            Err(e) => status = cli::fail("vm-start", &e),
        }
    }
    status
}
