//! `bulkhead-vm-monitor CONTROL_DIR`: starts, confines and watches one VM (see
//! `bulkhead_vmm::monitor`). Started by the compositor's VM manager, not by people.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Start, confine and watch one VM from the launch plan in CONTROL_DIR (the compositor's VM
/// manager runs this; it is not meant to be run by hand).
#[derive(Parser)]
#[command(name = "bulkhead-vm-monitor", version)]
struct Args {
    /// The VM's control directory, holding its plan.json.
    control_dir: PathBuf,
}

fn main() -> ExitCode {
    let a = Args::parse();
    ExitCode::from(bulkhead_vmm::monitor::run(&a.control_dir).clamp(0, 255) as u8)
}
