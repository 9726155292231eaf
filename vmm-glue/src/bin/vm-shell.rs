//! `vm-shell VM`: the VM's serial console (a root shell in Bulkhead guests). Ctrl-] leaves.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use bulkhead_ipc::{Reply, Request};
use bulkhead_vmm::cli;
use clap::Parser;
use nix::sys::termios;

/// Attach to a running VM's serial console; Ctrl-] leaves.
#[derive(Parser)]
#[command(name = "vm-shell", version)]
struct Args {
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
    // Guest output to our stdout until the console closes.
    let out = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdout = std::io::stdout();
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0
                || stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
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
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, t);
        eprintln!("\r\n[left the console of {}]", a.vm);
        let _ = writer.shutdown(std::net::Shutdown::Both);
    } else {
        // Piped input (scripts, tests): the console never closes by itself, so keep printing
        // the guest's answer until it has been quiet for two seconds. The timeout is on the
        // socket, which the output thread reads too.
        let _ = writer.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let _ = out.join();
    }
    ExitCode::SUCCESS
}
