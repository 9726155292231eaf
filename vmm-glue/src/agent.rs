//! The host side of the guest agent protocol (`bulkhead_ipc::agent`).
//!
//! The agent is reached over vsock: through vhost-device-vsock's Unix socket ("hybrid vsock":
//! write `CONNECT <port>\n`, read `OK <port>\n`) for QEMU guests, or AF_VSOCK to the guest's CID
//! for crosvm. Everything the guest sends is parsed with bounds and treated as untrusted.
//!
//! Every call has one deadline for all of it (connect, handshake, request and reply): each
//! read and write waits only for the time left, so a guest that drips a byte now and then
//! cannot stretch a call. A call past its deadline fails with [`AgentError::TimedOut`], which
//! names the VM and the call.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_ipc::agent::{
    self, Frame, GuestMessage, HostMessage, WireError, AGENT_PORT, PROTOCOL_VERSION,
};

use crate::terminal;

/// The longest one agent call may take, from connect to the reply (a run's output afterwards
/// is not part of it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How the host reaches a guest's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// vhost-device-vsock's host socket.
    Hybrid(PathBuf),
    /// Kernel vsock (crosvm's vhost-vsock) to this CID.
    Vsock(u32),
}

/// One call to a VM's agent: which VM, what for, and by when it must be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub vm: String,
    /// What the call does (`status`, `poweroff`, `run`, `hello`), for errors.
    pub what: &'static str,
    started: Instant,
    deadline: Instant,
}

impl Call {
    /// A call that must be done within `within` from now.
    pub fn new(vm: &str, what: &'static str, within: Duration) -> Call {
        let started = Instant::now();
        Call {
            vm: vm.to_owned(),
            what,
            started,
            deadline: started + within,
        }
    }

    /// The same call, due no later than `t`.
    pub fn by(mut self, t: Instant) -> Call {
        self.deadline = self.deadline.min(t);
        self
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The time left, or the error for a call past its deadline.
    fn left(&self) -> Result<Duration, AgentError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.timed_out())
        } else {
            Ok(left)
        }
    }

    fn timed_out(&self) -> AgentError {
        AgentError::TimedOut {
            vm: self.vm.clone(),
            call: self.what,
            limit: self.deadline.saturating_duration_since(self.started),
        }
    }
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
    /// The call was not done by its deadline.
    TimedOut {
        vm: String,
        call: &'static str,
        limit: Duration,
    },
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Unreachable(m) => write!(f, "the guest agent is not reachable: {m}"),
            AgentError::Protocol(m) => write!(f, "the guest agent broke the protocol: {m}"),
            AgentError::Refused(m) => write!(f, "{m}"),
            AgentError::TimedOut { vm, call, limit } => write!(
                f,
                "VM {vm:?}: the guest agent's {call} call did not finish within {:.1} s",
                limit.as_secs_f64()
            ),
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

    /// The error with the VM's name in front, unless it names the VM already.
    pub fn in_vm(&self, vm: &str) -> String {
        match self {
            AgentError::TimedOut { .. } => self.to_string(),
            _ => format!("VM {vm:?}: {self}"),
        }
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

/// Connects to the hybrid-vsock socket without blocking past the call's deadline: its owner
/// (vhost-device-vsock, a helper a compromised guest may control) could leave its backlog
/// full, and a blocking connect would then wait for as long as it likes.
fn connect_unix(path: &Path, call: &Call) -> Result<UnixStream, AgentError> {
    use nix::errno::Errno;
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let unreachable = |e: Errno| AgentError::unreachable(format!("{}: {e}", path.display()));
    let addr = UnixAddr::new(path).map_err(unreachable)?;
    loop {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None).map_err(unreachable)?;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let s = UnixStream::from(fd);
                s.set_nonblocking(false)
                    .map_err(|e| AgentError::unreachable(e.to_string()))?;
                return Ok(s);
            }
            // A full backlog: Unix sockets do not finish the connect later; try again.
            Err(Errno::EAGAIN) => {
                let left = call.left()?;
                std::thread::sleep(left.min(Duration::from_millis(10)));
            }
            Err(e) => return Err(unreachable(e)),
        }
    }
}

/// Connects to the guest's agent over kernel vsock, waiting for the connection (which the
/// guest's kernel answers) only until the call's deadline.
fn connect_vsock(cid: u32, call: &Call) -> Result<vsock::VsockStream, AgentError> {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{connect, getsockopt, socket, sockopt, AddressFamily, SockFlag};
    use nix::sys::socket::{SockType, VsockAddr};
    let unreachable = |e: Errno| AgentError::unreachable(format!("vsock cid {cid}: {e}"));
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd = socket(AddressFamily::Vsock, SockType::Stream, flags, None).map_err(unreachable)?;
    match connect(fd.as_raw_fd(), &VsockAddr::new(cid, AGENT_PORT)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(unreachable(e)),
    }
    loop {
        let left = call.left()?;
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX).max(1);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(unreachable(e)),
        }
    }
    match getsockopt(&fd, sockopt::SocketError).map_err(unreachable)? {
        0 => {}
        e => return Err(unreachable(Errno::from_raw(e))),
    }
    let s = vsock::VsockStream::from(fd);
    s.set_nonblocking(false)
        .map_err(|e| AgentError::unreachable(e.to_string()))?;
    Ok(s)
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

/// A stream whose every read and write waits at most until the deadline (none: forever).
struct Timed {
    inner: Box<dyn Stream>,
    deadline: Option<Instant>,
}

impl Timed {
    fn arm(&self) -> io::Result<()> {
        let left = match self.deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the call's deadline passed",
                    ));
                }
                Some(left)
            }
        };
        self.inner.set_timeout(left)
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.inner.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One connection to the agent, past the hello exchange, for one call.
pub struct Connection {
    stream: Timed,
    call: Call,
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

impl Connection {
    /// Connects and exchanges hellos, all by the call's deadline (which its request and reply
    /// then share).
    pub fn open(ep: &Endpoint, call: Call) -> Result<Connection, AgentError> {
        let inner: Box<dyn Stream> = match ep {
            Endpoint::Hybrid(path) => Box::new(connect_unix(path, &call)?),
            Endpoint::Vsock(cid) => Box::new(connect_vsock(*cid, &call)?),
        };
        let mut c = Connection {
            stream: Timed {
                inner,
                deadline: Some(call.deadline),
            },
            call,
        };
        if let Endpoint::Hybrid(_) = ep {
            c.hybrid_connect()?;
        }
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

    /// vhost-device-vsock's handshake: `CONNECT <port>`, answered by `OK <port>`.
    fn hybrid_connect(&mut self) -> Result<(), AgentError> {
        let unreachable = |e: io::Error| AgentError::unreachable(e.to_string());
        let sent = self
            .stream
            .write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes());
        sent.map_err(|e| self.fail(unreachable(e)))?;
        // The answer is one short line; read it byte by byte so nothing after it is
        // consumed, and never more than 64 bytes.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 64 {
            match self.stream.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(self.fail(unreachable(e))),
            }
        }
        if !line.starts_with(b"OK ") {
            return Err(AgentError::unreachable(format!(
                "vsock connect to port {AGENT_PORT} answered {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        Ok(())
    }

    /// Past the deadline, whatever went wrong is the deadline's doing.
    fn fail(&self, e: AgentError) -> AgentError {
        match self.stream.deadline {
            Some(d) if Instant::now() >= d => self.call.timed_out(),
            _ => e,
        }
    }

    fn send(&mut self, m: &HostMessage) -> Result<(), AgentError> {
        let r = agent::write_message(&mut self.stream, m);
        r.map_err(|e| self.fail(e.into()))
    }

    fn frame(&mut self) -> Result<Frame<GuestMessage>, AgentError> {
        let r = agent::read_frame(&mut self.stream);
        r.map_err(|e| self.fail(e.into()))?
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
        // The command may run for as long as it likes: its output is not part of the call.
        self.stream.deadline = None;
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
/// Every read from the guest, and every call to its agent, ends by `deadline`.
pub fn wait_ready(
    vm: &str,
    ep: &Endpoint,
    listener: Option<&UnixListener>,
    deadline: Instant,
    alive: &mut dyn FnMut() -> bool,
) -> Result<Option<Ready>, AgentError> {
    if let Some(l) = listener {
        l.set_nonblocking(true)
            .map_err(|e| AgentError::unreachable(e.to_string()))?;
    }
    let hello = || Call::new(vm, "hello", CALL_TIMEOUT).by(deadline);
    loop {
        if let Some(l) = listener {
            match l.accept() {
                Ok((s, _)) => {
                    if let Some(ready) = ready_message(s, hello().deadline) {
                        // Confirm the agent port answers too.
                        Connection::open(ep, hello())?;
                        return Ok(Some(ready));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(AgentError::unreachable(e.to_string())),
            }
        } else if Connection::open(ep, hello()).is_ok() {
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

/// The agent's ready message on a connection to the ready port, read by `deadline`.
fn ready_message(s: UnixStream, deadline: Instant) -> Option<Ready> {
    s.set_nonblocking(false).ok()?;
    let mut s = Timed {
        inner: Box::new(s),
        deadline: Some(deadline),
    };
    match agent::read_frame::<GuestMessage, _>(&mut s) {
        Ok(Some(Frame::Message(GuestMessage::Ready { init_ms, agent_ms }))) => {
            Some(Ready { init_ms, agent_ms })
        }
        _ => None,
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
        let e = Connection::open(&ep, Call::new("test", "hello", CALL_TIMEOUT))
            .err()
            .unwrap();
        assert!(matches!(e, AgentError::Refused(_)), "{e:?}");
        assert!(e.to_string().starts_with("\u{FFFD}]52;c;"), "{e}");
        assert_clean(&e);
        // A message that does not parse: serde quotes the guest's unknown type in its error.
        let json = serde_json::json!({ "type": hostile }).to_string();
        let bad = agent::encode(FrameKind::Message, json.as_bytes()).unwrap();
        let (_dir, ep) = agent_answering(bad);
        let e = Connection::open(&ep, Call::new("test", "hello", CALL_TIMEOUT))
            .err()
            .unwrap();
        assert!(matches!(e, AgentError::Protocol(_)), "{e:?}");
        assert_clean(&e);
        // The wrong message, quoted whole.
        let hello = agent::encode_message(&GuestMessage::Hello {
            version: PROTOCOL_VERSION + 1,
            agent: hostile,
        })
        .unwrap();
        let (_dir, ep) = agent_answering(hello);
        let e = Connection::open(&ep, Call::new("test", "hello", CALL_TIMEOUT))
            .err()
            .unwrap();
        assert!(matches!(e, AgentError::Protocol(_)), "{e:?}");
        assert_clean(&e);
    }
}
