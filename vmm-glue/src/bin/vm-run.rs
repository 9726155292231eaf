//! `vm-run VM CMD...`: run a command in a VM as its user, starting the VM if needed.

use std::io::Write;
use std::process::ExitCode;

use bulkhead_ipc::{OutputStream, Reply, Request, Response};
use bulkhead_vmm::cli;
use clap::Parser;

/// Run a command in a VM as the guest user; the VM starts first if it is stopped.
#[derive(Parser)]
#[command(name = "vm-run", version)]
struct Args {
    /// Wait for the command: stream its output and exit with its exit code.
    #[arg(long, short)]
    wait: bool,
    /// The VM.
    vm: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let req = Request::VmRun {
        vm: a.vm,
        argv: a.command,
        wait: a.wait,
    };
    let mut client = match cli::send(&req) {
        Ok(c) => c,
        Err(e) => return cli::fail("vm-run", &e),
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    loop {
        match client.recv() {
            Err(e) => return cli::fail("vm-run", &e),
            Ok(Response::Error(e)) => return cli::fail("vm-run", &e),
            Ok(Response::Ok(Reply::VmRunStarted { .. })) if !a.wait => return ExitCode::SUCCESS,
            Ok(Response::Ok(Reply::VmRunStarted { .. })) => {}
            Ok(Response::Ok(Reply::Output { stream, data })) => {
                let w: &mut dyn Write = match stream {
                    OutputStream::Stdout => &mut out,
                    OutputStream::Stderr => &mut err,
                };
                if w.write_all(&data).and_then(|()| w.flush()).is_err() {
                    // Our own output is gone (a closed pipe): stop like any command would.
                    return ExitCode::from(141);
                }
            }
            Ok(Response::Ok(Reply::Exited { code, signal })) => {
                return match (code, signal) {
                    (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
                    (None, Some(s)) => ExitCode::from((128 + s).clamp(0, 255) as u8),
                    (None, None) => ExitCode::FAILURE,
                };
            }
            Ok(Response::Ok(other)) => return cli::unexpected("vm-run", &other),
        }
    }
}
