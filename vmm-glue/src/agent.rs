//! The host side of the guest agent protocol (`bulkhead_ipc::agent`).
//!
//! The agent is reached over vsock: through vhost-device-vsock's Unix socket ("hybrid vsock":
//! write `CONNECT <port>\n`, read `OK <port>\n`) for QEMU guests, or AF_VSOCK to the guest's CID
//! for crosvm. Everything the guest sends is parsed with bounds and treated as untrusted.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bulkhead_ipc::agent::{
    self, Frame, GuestMessage, HostMessage, WireError, AGENT_PORT, PROTOCOL_VERSION,
};

use crate::terminal;

/// How the host reaches a guest's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// vhost-device-vsock's host socket.
    Hybrid(PathBuf),
    /// Kernel vsock (crosvm's vhost-vsock) to this CID.
    Vsock(u32),
}

/// What can go wrong talking to the agent. The text in each variant may quote the guest, so it
/// is made with the constructors below, which pass it through [`terminal::guest_message`]
/// (no control characters, at most [`terminal::MAX_MESSAGE`] bytes): whoever prints or
/// shows it, a CLI, a log or a notification, gets clean text.
#[derive(Debug)]
pub enum AgentError {
    /// Nothing listens (yet): the guest is still booting, or the VM is gone.
    Unreachable(String),
    /// The agent answered, but not as the protocol says.
    Protocol(String),
    /// The agent refused the request; its message says why.
    Refused(String),
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Unreachable(m) => write!(f, "the guest agent is not reachable: {m}"),
            AgentError::Protocol(m) => write!(f, "the guest agent broke the protocol: {m}"),
            AgentError::Refused(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for AgentError {}

impl AgentError {
    fn unreachable(text: impl AsRef<str>) -> AgentError {
        AgentError::Unreachable(terminal::guest_message(text.as_ref()))
    }

    fn protocol(text: impl AsRef<str>) -> AgentError {
        AgentError::Protocol(terminal::guest_message(text.as_ref()))
    }

    fn refused(text: impl AsRef<str>) -> AgentError {
        AgentError::Refused(terminal::guest_message(text.as_ref()))
    }
}

impl From<WireError> for AgentError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Io(e) => AgentError::unreachable(e.to_string()),
            WireError::Protocol(m) => AgentError::protocol(m),
        }
    }
}

trait Stream: Read + Write + Send {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Stream for UnixStream {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
}

impl Stream for vsock::VsockStream {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
}

/// One connection to the agent, past the hello exchange.
pub struct Connection {
    stream: Box<dyn Stream>,
}

/// What happens while a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEvent<'a> {
    /// It started with this pid in the guest.
    Started(u32),
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
}

/// Receives a command's events as they happen; an error ends the run (the agent then hangs
/// the command up).
pub type OutputSink<'a> = &'a mut dyn FnMut(RunEvent) -> io::Result<()>;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// The agent's answer to a status request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub running: u32,
    pub idle_secs: u64,
    pub uptime_ms: u64,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

impl Connection {
    /// Connects and exchanges hellos.
    pub fn open(ep: &Endpoint) -> Result<Connection, AgentError> {
        let unreachable = |e: io::Error| AgentError::unreachable(e.to_string());
        let stream: Box<dyn Stream> = match ep {
            Endpoint::Hybrid(path) => {
                let mut s = UnixStream::connect(path).map_err(unreachable)?;
                s.set_timeout(Some(HANDSHAKE_TIMEOUT))
                    .map_err(unreachable)?;
                s.write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes())
                    .map_err(unreachable)?;
                // The answer is one short line; read it byte by byte so nothing after it is
                // consumed, and never more than 64 bytes.
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while line.len() < 64 {
                    match s.read(&mut byte) {
                        Ok(0) => break,
                        Ok(_) if byte[0] == b'\n' => break,
                        Ok(_) => line.push(byte[0]),
                        Err(e) => return Err(unreachable(e)),
                    }
                }
                if !line.starts_with(b"OK ") {
                    return Err(AgentError::unreachable(format!(
                        "vsock connect to port {AGENT_PORT} answered {:?}",
                        String::from_utf8_lossy(&line)
                    )));
                }
                Box::new(s)
            }
            Endpoint::Vsock(cid) => {
                let s = vsock::VsockStream::connect(&vsock::VsockAddr::new(*cid, AGENT_PORT))
                    .map_err(unreachable)?;
                s.set_timeout(Some(HANDSHAKE_TIMEOUT))
                    .map_err(unreachable)?;
                Box::new(s)
            }
        };
        let mut c = Connection { stream };
        c.send(&HostMessage::Hello {
            version: PROTOCOL_VERSION,
        })?;
        match c.message()? {
            GuestMessage::Hello { version, .. } if version == PROTOCOL_VERSION => Ok(c),
            GuestMessage::Error { message } => Err(AgentError::refused(message)),
            other => Err(AgentError::protocol(format!(
                "expected hello version {PROTOCOL_VERSION}, got {other:?}"
            ))),
        }
    }

    fn send(&mut self, m: &HostMessage) -> Result<(), AgentError> {
        agent::write_message(&mut self.stream, m)?;
        Ok(())
    }

    fn frame(&mut self) -> Result<Frame<GuestMessage>, AgentError> {
        agent::read_frame(&mut self.stream)?
            .ok_or_else(|| AgentError::unreachable("the agent closed the connection"))
    }

    fn message(&mut self) -> Result<GuestMessage, AgentError> {
        match self.frame()? {
            Frame::Message(m) => Ok(m),
            _ => Err(AgentError::protocol("output outside a running command")),
        }
    }

    pub fn status(mut self) -> Result<Status, AgentError> {
        self.send(&HostMessage::Status {})?;
        match self.message()? {
            GuestMessage::Status {
                running,
                idle_secs,
                uptime_ms,
            } => Ok(Status {
                running,
                idle_secs,
                uptime_ms,
            }),
            other => Err(AgentError::protocol(format!(
                "expected status, got {other:?}"
            ))),
        }
    }

    pub fn poweroff(mut self) -> Result<(), AgentError> {
        self.send(&HostMessage::Poweroff {})?;
        match self.message()? {
            GuestMessage::PoweringOff {} => Ok(()),
            other => Err(AgentError::protocol(format!(
                "expected powering-off, got {other:?}"
            ))),
        }
    }

    /// Starts `argv`; returns the guest pid once it started. With `output`, reports the start
    /// and streams the output there, and returns how it ended.
    pub fn run(
        mut self,
        argv: &[String],
        env: &[(String, String)],
        output: Option<OutputSink>,
    ) -> Result<(u32, Option<Exit>), AgentError> {
        let wait = output.is_some();
        self.send(&HostMessage::Run {
            argv: argv.to_vec(),
            env: env.to_vec(),
            wait,
        })?;
        let pid = match self.message()? {
            GuestMessage::Started { pid } => pid,
            GuestMessage::Error { message } => return Err(AgentError::refused(message)),
            other => {
                return Err(AgentError::protocol(format!(
                    "expected started, got {other:?}"
                )))
            }
        };
        let Some(output) = output else {
            return Ok((pid, None));
        };
        let sink_err = |e: io::Error| AgentError::unreachable(format!("output: {e}"));
        output(RunEvent::Started(pid)).map_err(sink_err)?;
        // The command may run for as long as it likes.
        let _ = self.stream.set_timeout(None);
        loop {
            match self.frame()? {
                Frame::Stdout(d) => output(RunEvent::Stdout(&d)).map_err(sink_err)?,
                Frame::Stderr(d) => output(RunEvent::Stderr(&d)).map_err(sink_err)?,
                Frame::Message(GuestMessage::Exited { code, signal }) => {
                    return Ok((pid, Some(Exit { code, signal })))
                }
                Frame::Message(other) => {
                    return Err(AgentError::protocol(format!(
                        "expected exited, got {other:?}"
                    )))
                }
            }
        }
    }
}

/// Boot timings the agent reports once when it is ready (ms since the guest kernel started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready {
    pub init_ms: u64,
    pub agent_ms: u64,
}

/// Waits until the agent answers: through its one-time ready message on `listener` (hybrid
/// vsock) or, without one, by polling. Gives up at `deadline` or when `alive` says the VM died.
pub fn wait_ready(
    ep: &Endpoint,
    listener: Option<&UnixListener>,
    deadline: Instant,
    alive: &mut dyn FnMut() -> bool,
) -> Result<Option<Ready>, AgentError> {
    if let Some(l) = listener {
        l.set_nonblocking(true)
            .map_err(|e| AgentError::unreachable(e.to_string()))?;
    }
    loop {
        if let Some(l) = listener {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
                    if let Ok(Some(Frame::Message(GuestMessage::Ready { init_ms, agent_ms }))) =
                        agent::read_frame::<GuestMessage, _>(&mut s)
                    {
                        // Confirm the agent port answers too.
                        Connection::open(ep)?;
                        return Ok(Some(Ready { init_ms, agent_ms }));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(AgentError::unreachable(e.to_string())),
            }
        } else if Connection::open(ep).is_ok() {
            return Ok(None);
        }
        if !alive() {
            return Err(AgentError::unreachable("the VM stopped while booting"));
        }
        if Instant::now() >= deadline {
            return Err(AgentError::unreachable(
                "the guest agent did not answer in time (see the VM's console log)",
            ));
        }
        std::thread::sleep(Duration::from_millis(if listener.is_some() {
            20
        } else {
            200
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_ipc::agent::FrameKind;

    /// A hostile agent behind a hybrid-vsock socket: it accepts the connection, reads the
    /// host's hello and answers with `reply` (a whole frame).
    fn agent_answering(reply: Vec<u8>) -> (tempfile::TempDir, Endpoint) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut connect = [0u8; 13]; // "CONNECT 1024\n"
            s.read_exact(&mut connect).unwrap();
            s.write_all(b"OK 1024\n").unwrap();
            let _hello = agent::read_frame::<HostMessage, _>(&mut s).unwrap();
            s.write_all(&reply).unwrap();
        });
        (dir, Endpoint::Hybrid(path))
    }

    fn assert_clean(e: &AgentError) {
        let text = e.to_string();
        assert!(
            !text.chars().any(|c| c.is_control()),
            "control characters reach the user: {text:?}"
        );
        assert!(
            text.len() <= terminal::MAX_MESSAGE + 64,
            "{} bytes",
            text.len()
        );
    }

    #[test]
    fn guest_error_text_reaches_the_host_clean_and_short() {
        let hostile = format!("\x1b]52;c;cm0gLXJmIH4K\x07\x1b[6n{}", "A".repeat(100_000));
        // The agent refuses with a hostile message.
        let refusal = agent::encode_message(&GuestMessage::Error {
            message: hostile.clone(),
        })
        .unwrap();
        let (_dir, ep) = agent_answering(refusal);
        let e = Connection::open(&ep).err().unwrap();
        assert!(matches!(e, AgentError::Refused(_)), "{e:?}");
        assert!(e.to_string().starts_with("\u{FFFD}]52;c;"), "{e}");
        assert_clean(&e);
        // A message that does not parse: serde quotes the guest's unknown type in its error.
        let json = serde_json::json!({ "type": hostile }).to_string();
        let bad = agent::encode(FrameKind::Message, json.as_bytes()).unwrap();
        let (_dir, ep) = agent_answering(bad);
        let e = Connection::open(&ep).err().unwrap();
        assert!(matches!(e, AgentError::Protocol(_)), "{e:?}");
        assert_clean(&e);
        // The wrong message, quoted whole.
        let hello = agent::encode_message(&GuestMessage::Hello {
            version: PROTOCOL_VERSION + 1,
            agent: hostile,
        })
        .unwrap();
        let (_dir, ep) = agent_answering(hello);
        let e = Connection::open(&ep).err().unwrap();
        assert!(matches!(e, AgentError::Protocol(_)), "{e:?}");
        assert_clean(&e);
    }
}
