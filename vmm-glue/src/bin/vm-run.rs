//! `vm-run VM CMD...`: run a command in a VM as its user, starting the VM if needed. With
//! `--wait`, the command's output reaches our stdout and stderr through `cli::GuestOutput`
//! (the terminal filter) unless `--raw` is given.

use std::io::{Stderr, Stdout};
use std::process::ExitCode;

use bulkhead_ipc::{OutputStream, Reply, Request, Response};
use bulkhead_vmm::cli::{self, GuestOutput, OutputMode};
use clap::Parser;

/// Run a command in a VM as the guest user; the VM starts first if it is stopped.
///
/// With --wait, the command's output is filtered before it reaches your terminal: text,
/// colours, cursor movement and the alternate screen pass; clipboard writes (OSC 52),
/// titles, queries that make the terminal answer (DSR, DA, …) and other sequences are
/// dropped, invalid UTF-8 becomes U+FFFD (and, unless the locale is UTF-8, every character
/// outside ASCII becomes "?"). Binary output needs --raw.
#[derive(Parser)]
#[command(name = "vm-run", version)]
struct Args {
    /// Wait for the command: stream its output and exit with its exit code.
    #[arg(long, short)]
    wait: bool,
    /// With --wait: pass the output unfiltered (binary data, a file). A hostile guest can
    /// then write your clipboard and type into your terminal's input.
    #[arg(long, requires = "wait")]
    raw: bool,
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
    let mut output = Output {
        out: GuestOutput::new(std::io::stdout(), OutputMode::for_user(a.raw)),
        err: GuestOutput::new(std::io::stderr(), OutputMode::for_user(a.raw)),
    };
    loop {
        let reply = match client.recv() {
            Ok(Response::Ok(reply)) => reply,
            Err(e) | Ok(Response::Error(e)) => {
                output.finish();
                return cli::fail("vm-run", &e);
            }
        };
        match reply {
            Reply::VmRunStarted { .. } if !a.wait => return ExitCode::SUCCESS,
            Reply::VmRunStarted { .. } => {}
            Reply::Output { stream, data } => {
                let written = match stream {
                    OutputStream::Stdout => output.out.write(&data),
                    OutputStream::Stderr => output.err.write(&data),
                };
                if written.is_err() {
                    // Our own output is gone (a closed pipe): stop like any command would.
                    return ExitCode::from(141);
                }
            }
            Reply::Exited { code, signal } => {
                output.finish();
                return match (code, signal) {
                    (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
                    (None, Some(s)) => ExitCode::from((128 + s).clamp(0, 255) as u8),
                    (None, None) => ExitCode::FAILURE,
                };
            }
            other => {
                output.finish();
                return cli::unexpected("vm-run", &other);
            }
        }
    }
}

/// The command's two streams.
struct Output {
    out: GuestOutput<Stdout>,
    err: GuestOutput<Stderr>,
}

impl Output {
    /// The command ended: each stream resets the terminal modes its output left changed.
    fn finish(&mut self) {
        let _ = self.out.finish();
        let _ = self.err.finish();
    }
}
