//! `vm-stop VM...`: stop VMs gracefully.

use std::process::ExitCode;

use bulkhead_ipc::{Reply, Request};
use bulkhead_vmm::cli;
use clap::Parser;

/// Stop VMs: the guest powers off; one that does not in time is terminated.
#[derive(Parser)]
#[command(name = "vm-stop", version)]
struct Args {
    /// The VMs.
    #[arg(required = true)]
    vms: Vec<String>,
}

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for vm in Args::parse().vms {
        match cli::call(&Request::VmStop { vm: vm.clone() }) {
            Ok(Reply::VmStopped { stopped: true, .. }) => println!("{vm} stopped"),
            Ok(Reply::VmStopped { stopped: false, .. }) => println!("{vm} was not running"),
            Ok(other) => status = cli::unexpected("vm-stop", &other),
            Err(e) => status = cli::fail("vm-stop", &e),
        }
    }
    status
}
