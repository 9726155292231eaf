//! The client side of the IPC socket, shared by `bulkhead msg` and the vm-* commands.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::{Request, Response};

/// Longest reply line a client accepts (output chunks and window lists are far smaller).
pub const MAX_REPLY_LEN: u64 = 16 * 1024 * 1024;

/// The IPC socket of the running compositor: `$BULKHEAD_SOCKET`, else
/// `$XDG_RUNTIME_DIR/bulkhead/ipc.sock`.
pub fn default_socket() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(crate::SOCKET_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|p| !p.is_empty())
        .ok_or("XDG_RUNTIME_DIR is not set; set it, or BULKHEAD_SOCKET to Bulkhead's IPC socket")?;
    Ok(crate::socket_path(Path::new(&runtime)))
}

/// One connection to the compositor.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, String> {
        let stream = UnixStream::connect(socket).map_err(|e| {
            format!(
                "cannot connect to Bulkhead at {}: {e} (is it running? set BULKHEAD_SOCKET to its \
                 IPC socket)",
                socket.display()
            )
        })?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("cannot use the IPC socket: {e}"))?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    pub fn send(&mut self, req: &Request) -> Result<(), String> {
        let line = crate::to_line(req).map_err(|e| e.to_string())?;
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| format!("cannot send the request: {e}"))
    }

    /// The next response line.
    pub fn recv(&mut self) -> Result<Response, String> {
        let mut line = String::new();
        (&mut self.reader)
            .take(MAX_REPLY_LEN)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the reply: {e}"))?;
        if line.is_empty() {
            return Err("the compositor closed the connection without replying".into());
        }
        serde_json::from_str(&line)
            .map_err(|e| format!("the compositor sent a malformed reply: {e}"))
    }
}

/// Sends one request and reads its one response.
pub fn request(socket: &Path, req: &Request) -> Result<Response, String> {
    let mut c = Client::connect(socket)?;
    c.send(req)?;
    c.recv()
}

/// [`request`], failing when the reply has not come within `limit` (a compositor that cannot
/// take the connection, out of file descriptors say, leaves it waiting in the backlog).
pub fn request_within(
    socket: &Path,
    req: &Request,
    limit: std::time::Duration,
) -> Result<Response, String> {
    let mut c = Client::connect(socket)?;
    c.writer
        .set_read_timeout(Some(limit))
        .map_err(|e| format!("cannot use the IPC socket: {e}"))?;
    c.send(req)?;
    c.recv()
        .map_err(|e| format!("{e} (no reply within {} s)", limit.as_secs_f32()))
}
