//! `vm-shell VM`: the VM's serial console (a root shell in Bulkhead guests). Ctrl-] leaves.
//! The console's output reaches the terminal through `cli::GuestOutput` (the terminal filter)
//! unless `--raw` is given.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use bulkhead_ipc::{Reply, Request};
use bulkhead_vmm::cli;
use clap::Parser;
use nix::sys::termios;

/// Attach to a running VM's serial console; Ctrl-] leaves.
///
/// The guest's output is filtered before it reaches your terminal: text, colours, cursor
/// movement and the alternate screen pass; clipboard writes (OSC 52), titles, queries that
/// make the terminal answer (DSR, DA, …) and other sequences are dropped, and the modes the
/// guest leaves changed are reset when you leave. Unless the locale is UTF-8, every character
/// outside ASCII becomes "?".
#[derive(Parser)]
#[command(name = "vm-shell", version)]
struct Args {
    /// Pass the guest's bytes to the terminal unfiltered. A hostile guest can then write
    /// your clipboard and type into your terminal's input.
    #[arg(long)]
    raw: bool,
    /// The VM.
    vm: String,
}

/// Ctrl-].
const ESCAPE: u8 = 0x1d;

fn main() -> ExitCode {
    let a = Args::parse();
    let path = match cli::call(&Request::VmConsole { vm: a.vm.clone() }) {
        Ok(Reply::Console { path }) => path,
        Ok(other) => return cli::unexpected("vm-shell", &other),
        Err(e) => return cli::fail("vm-shell", &e),
    };
    let sock = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            return cli::fail(
                "vm-shell",
                &format!(
                    "cannot open the console of {} at {}: {e} (another vm-shell may be attached)",
                    a.vm,
                    path.display()
                ),
            )
        }
    };
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let saved = if tty {
        termios::tcgetattr(&stdin).ok()
    } else {
        None
    };
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        eprint!("[attached to {}: Ctrl-] leaves]\r\n", a.vm);
    }
    let mut reader = match sock.try_clone() {
        Ok(r) => r,
        Err(e) => return cli::fail("vm-shell", &e.to_string()),
    };
    // Guest output to our stdout until the console closes (or we close it).
    let mode = cli::OutputMode::for_user(a.raw);
    let out = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdout = cli::GuestOutput::new(std::io::stdout(), mode);
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || stdout.write(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = stdout.finish();
    });
    // Our stdin to the guest until Ctrl-] or end of input.
    let mut writer = sock;
    let mut buf = [0u8; 1024];
    let mut input = stdin.lock();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let (data, leave) = match chunk.iter().position(|b| *b == ESCAPE) {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        if writer.write_all(data).is_err() || leave {
            break;
        }
    }
    if let Some(t) = &saved {
        // Closing the socket ends the output thread's read; it then resets the modes the
        // guest left changed, before the terminal gets its own settings back.
        let _ = writer.shutdown(std::net::Shutdown::Both);
        let _ = out.join();
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, t);
        eprintln!("\r\n[left the console of {}]", a.vm);
    } else {
        // Piped input (scripts, tests): the console never closes by itself, so keep printing
        // the guest's answer until it has been quiet for two seconds. The timeout is on the
        // socket, which the output thread reads too.
        let _ = writer.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let _ = out.join();
    }
    ExitCode::SUCCESS
}
