//! `bulkhead-term-filter`: standard input to standard output through the terminal filter
//! `vm-shell` and `vm-run --wait` use (`bulkhead_vmm::terminal`), for other guest bytes on
//! their way to a terminal: `bulkhead-term-filter < console.log`.

use std::io::Read;
use std::process::ExitCode;

use bulkhead_vmm::cli::{self, GuestOutput, OutputMode};
use clap::Parser;

/// Copy standard input to standard output with what could drive the terminal removed:
/// clipboard writes (OSC 52), titles, queries that make the terminal answer (DSR, DA, …),
/// C1 controls and invalid UTF-8. Text, colours, cursor movement and the alternate screen
/// pass; at the end, the modes the input left changed are reset. Unless the locale is UTF-8,
/// every character outside ASCII becomes "?".
#[derive(Parser)]
#[command(name = "bulkhead-term-filter", version)]
struct Args {}

fn main() -> ExitCode {
    Args::parse();
    let mut input = std::io::stdin().lock();
    let mut output = GuestOutput::new(std::io::stdout().lock(), OutputMode::for_user(false));
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return cli::fail("bulkhead-term-filter", &format!("reading: {e}")),
        };
        if output.write(&buf[..n]).is_err() {
            return ExitCode::from(141);
        }
    }
    match output.finish() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(141),
    }
}
