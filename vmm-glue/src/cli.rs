//! What the vm-* commands share: talking to the compositor, reporting errors, and writing a
//! VM's output to the user's terminal.

use std::io::{self, Write};
use std::process::ExitCode;

use bulkhead_ipc::client::{default_socket, Client};
use bulkhead_ipc::{Reply, Request, Response};

use crate::terminal::{self, TerminalFilter};

/// Connects, sends `req` and returns the connection for reading the answer(s).
pub fn send(req: &Request) -> Result<Client, String> {
    let mut c = Client::connect(&default_socket()?)?;
    c.send(req)?;
    Ok(c)
}

/// Sends `req` and returns its one reply; the compositor's error text becomes the error.
pub fn call(req: &Request) -> Result<Reply, String> {
    match send(req)?.recv()? {
        Response::Ok(r) => Ok(r),
        Response::Error(e) => Err(e),
    }
}

/// Prints `prog: message` and returns failure. The message often quotes a guest (an agent's
/// error, a VM's exit reason), so it passes through [`terminal::guest_message`]: no control
/// characters, at most [`terminal::MAX_MESSAGE`] bytes.
pub fn fail(prog: &str, message: &str) -> ExitCode {
    eprintln!("{prog}: {}", terminal::guest_message(message));
    ExitCode::FAILURE
}

/// An unexpected reply (a compositor of another version).
pub fn unexpected(prog: &str, reply: &Reply) -> ExitCode {
    fail(
        prog,
        &format!("unexpected reply {reply:?}; is the compositor the same Bulkhead version?"),
    )
}

/// Seconds with one decimal, for boot times.
pub fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// How a VM's output reaches one of our streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Unfiltered: the user asked for the raw bytes (`--raw`).
    Raw,
    /// Through the terminal filter, for a UTF-8 terminal.
    Utf8,
    /// Through the terminal filter, ASCII only: the locale is not UTF-8, so the terminal may
    /// take bytes inside UTF-8 characters for C1 controls.
    Ascii,
}

impl OutputMode {
    /// What `--raw` and the user's locale (`LC_ALL`, `LC_CTYPE`, `LANG`) ask for.
    pub fn for_user(raw: bool) -> OutputMode {
        if raw {
            OutputMode::Raw
        } else if terminal::locale_is_utf8(|name| std::env::var(name).ok()) {
            OutputMode::Utf8
        } else {
            OutputMode::Ascii
        }
    }
}

/// A VM's output on its way to one of our streams (a terminal, usually): through a
/// [`TerminalFilter`] unless the user asked for the raw bytes. `vm-shell`, `vm-run --wait`
/// and `bulkhead-term-filter` write guest bytes only through this.
pub struct GuestOutput<W: Write> {
    sink: W,
    filter: Option<TerminalFilter>,
    buf: Vec<u8>,
}

impl<W: Write> GuestOutput<W> {
    pub fn new(sink: W, mode: OutputMode) -> GuestOutput<W> {
        let filter = match mode {
            OutputMode::Raw => None,
            OutputMode::Utf8 => Some(TerminalFilter::new()),
            OutputMode::Ascii => Some(TerminalFilter::ascii()),
        };
        GuestOutput {
            sink,
            filter,
            buf: Vec::new(),
        }
    }

    /// Writes (filtered) guest bytes and flushes them.
    pub fn write(&mut self, guest: &[u8]) -> io::Result<()> {
        match &mut self.filter {
            Some(f) => {
                self.buf.clear();
                f.feed(guest, &mut self.buf);
                self.sink.write_all(&self.buf)?;
            }
            None => self.sink.write_all(guest)?,
        }
        self.sink.flush()
    }

    /// The guest's output ended: undoes the terminal modes it left changed (alternate
    /// screen, hidden cursor, bracketed paste, …).
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(f) = &mut self.filter {
            self.buf.clear();
            f.finish(&mut self.buf);
            self.sink.write_all(&self.buf)?;
        }
        self.sink.flush()
    }

    pub fn into_inner(self) -> W {
        self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_output_is_filtered_unless_raw() {
        let hostile = b"ok\x1b]52;c;cm0K\x07\x1b[6n\x1b[?1049h\x9b6n";
        let mut filtered = GuestOutput::new(Vec::new(), OutputMode::Utf8);
        filtered.write(&hostile[..5]).unwrap();
        filtered.write(&hostile[5..]).unwrap();
        filtered.finish().unwrap();
        assert_eq!(
            filtered.into_inner(),
            b"ok\x1b[?1049h6n\x1b[?1049l",
            "no OSC 52, no DSR, the alternate screen left at the end"
        );
        let mut raw = GuestOutput::new(Vec::new(), OutputMode::Raw);
        raw.write(hostile).unwrap();
        raw.finish().unwrap();
        assert_eq!(raw.into_inner(), hostile);
        let mut ascii = GuestOutput::new(Vec::new(), OutputMode::Ascii);
        ascii.write("Û6n\x1b[6n".as_bytes()).unwrap();
        assert_eq!(ascii.into_inner(), b"?6n");
    }
}
