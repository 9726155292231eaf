//! `vm-list`: the configured VMs and their state.

use std::process::ExitCode;

use bulkhead_ipc::{Reply, Request};
use bulkhead_vmm::{cli, terminal};
use clap::Parser;

/// List the configured VMs with their state.
#[derive(Parser)]
#[command(name = "vm-list", version)]
struct Args {
    /// Print JSON (an array of VMs).
    #[arg(long, conflicts_with = "names")]
    json: bool,
    /// Print only the names, one per line (for shell completion).
    #[arg(long)]
    names: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let vms = match cli::call(&Request::VmList) {
        Ok(Reply::Vms(v)) => v,
        Ok(other) => return cli::unexpected("vm-list", &other),
        Err(e) => return cli::fail("vm-list", &e),
    };
    if a.json {
        match serde_json::to_string_pretty(&vms) {
            Ok(s) => println!("{s}"),
            Err(e) => return cli::fail("vm-list", &e.to_string()),
        }
    } else if a.names {
        for v in &vms {
            println!("{}", v.name);
        }
    } else {
        println!(
            "{:<20} {:<9} {:<7} {:>7} {:>4}  NOTE",
            "NAME", "STATE", "VMM", "MEMORY", "CPUS"
        );
        for v in &vms {
            let mut note = Vec::new();
            if v.disposable {
                note.push("disposable".to_string());
            }
            if v.autostart {
                note.push("autostart".to_string());
            }
            if let (Some(b), bulkhead_ipc::VmState::Running) = (v.boot, v.state) {
                note.push(format!("booted in {}", cli::secs(b.total_ms)));
            }
            if let (Some(e), bulkhead_ipc::VmState::Stopped) = (&v.last_exit, v.state) {
                // The reason may quote the guest or its VMM.
                note.push(format!("last: {}", terminal::guest_message(e)));
            }
            println!(
                "{:<20} {:<9} {:<7} {:>6}M {:>4}  {}",
                v.name,
                v.state.as_str(),
                v.vmm.as_deref().unwrap_or("-"),
                v.memory_mib,
                v.cpus,
                note.join(", ")
            );
        }
    }
    ExitCode::SUCCESS
}
