//! `bulkhead-wl-bridge`, the host side of the vsock graphics transport, one per VM.
//!
//! It accepts the guest proxy's streams (through vhost-device-vsock: guest connections to host
//! port 5000 arrive on `<runtime>/vsock.sock_5000`) and connects each to the VM's Wayland
//! socket, exactly as crosvm's cross-domain does, so the compositor sees the same clients from
//! both transports. It does not parse Wayland: it turns the stream's records back into file
//! descriptors (shared memory it owns and fills with the rectangles the guest sends, pipes) and
//! the compositor's descriptors into records (keymaps as their contents, pipe write ends).
//!
//! Every record is checked against fixed limits (`limits`): what each stream and the VM as a
//! whole may hold of filled shared memory, pools and pipes, and descriptors attached only to
//! the Wayland bytes that declare them. A stream that goes over one, or breaks the protocol,
//! ends with the reason logged; the VM's other streams keep going. Each stream runs two
//! threads (`up`: guest to compositor; `down`: compositor and pipes to guest), whatever it does.

mod down;
pub mod limits;
mod up;

use std::fs::File;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bulkhead_ipc::wlstream::{Pipes, Record, STREAM_VERSION};

use limits::StreamUse;
pub use limits::{Exceeded, Limits, Resource, Scope, VmUse};

/// Why a stream ended before its guest closed it.
#[derive(Debug)]
pub enum StreamError {
    /// It went over one of the bridge's limits.
    Limit(Exceeded),
    /// The guest sent what the stream protocol does not allow (or speaks another version).
    Protocol(String),
    /// The compositor sent a descriptor the bridge cannot carry.
    Compositor(String),
    /// Reading or writing one of the stream's ends failed, or making a memfd or pipe did.
    Io {
        what: &'static str,
        source: io::Error,
    },
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Limit(e) => write!(f, "{e}"),
            StreamError::Protocol(m) | StreamError::Compositor(m) => write!(f, "{m}"),
            StreamError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Exceeded> for StreamError {
    fn from(e: Exceeded) -> Self {
        StreamError::Limit(e)
    }
}

/// Maps an I/O error of `what` (one of the stream's ends, a memfd, a pipe).
fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> StreamError {
    move |source| StreamError::Io { what, source }
}

/// Maps an error reading the guest's records: malformed ones are the guest's doing.
fn guest_read(e: io::Error) -> StreamError {
    if e.kind() == io::ErrorKind::InvalidData {
        StreamError::Protocol(format!("guest: {e}"))
    } else {
        StreamError::Io {
            what: "guest",
            source: e,
        }
    }
}

/// One VM's bridge: the Wayland socket its streams go to, its limits, and what its streams
/// hold together.
pub struct Bridge {
    wayland: PathBuf,
    limits: Limits,
    usage: Arc<VmUse>,
}

impl Bridge {
    pub fn new(wayland: PathBuf, limits: Limits) -> Bridge {
        Bridge {
            wayland,
            limits,
            usage: Arc::default(),
        }
    }

    /// What the VM's streams hold now.
    pub fn usage(&self) -> &VmUse {
        &self.usage
    }

    /// Bridges one guest stream to a new connection on the VM's Wayland socket, until either
    /// side ends it or it breaks a rule.
    pub fn stream(&self, guest: UnixStream) -> Result<(), StreamError> {
        hello(&guest)?;
        let comp = UnixStream::connect(&self.wayland)
            .map_err(io_err("cannot connect to the VM's Wayland socket"))?;
        let (wake_r, wake_w) = nonblocking_pipe().map_err(io_err("cannot make a pipe"))?;
        let shared = Shared {
            usage: Mutex::new(StreamUse::new(self.usage.clone(), self.limits)),
            pipes: Mutex::default(),
            pumps: Mutex::default(),
            wake: wake_w,
        };
        std::thread::scope(|s| {
            let down = std::thread::Builder::new()
                .spawn_scoped(s, || {
                    let r = down::run(&comp, &guest, &shared, wake_r);
                    let _ = guest.shutdown(Shutdown::Both);
                    r
                })
                .map_err(io_err("cannot start the stream's thread"))?;
            let up = up::run(&guest, &comp, &shared);
            let _ = comp.shutdown(Shutdown::Both);
            let _ = guest.shutdown(Shutdown::Both);
            let down = down.join().unwrap_or_else(|_| {
                Err(StreamError::Compositor(
                    "the stream's thread panicked".into(),
                ))
            });
            up.and(down)
        })
        // `shared` goes here: what the stream held is given back to the VM, now that the
        // compositor's connection is closed.
    }
}

/// Both sides say which stream version they speak; ours goes out even when theirs differs, so
/// the guest can say what is wrong too.
fn hello(mut guest: &UnixStream) -> Result<(), StreamError> {
    let theirs = Record::read(&mut guest).map_err(guest_read)?;
    Record::Hello {
        version: STREAM_VERSION,
    }
    .write(&mut guest)
    .map_err(io_err("guest"))?;
    match theirs {
        Some(Record::Hello { version }) if version == STREAM_VERSION => Ok(()),
        Some(Record::Hello { version }) => Err(StreamError::Protocol(format!(
            "the guest speaks stream version {version}, this bridge {STREAM_VERSION}: the \
             guest's bulkhead-wl-proxy and the host's bulkhead-wl-bridge must be of one release"
        ))),
        other => Err(StreamError::Protocol(format!(
            "expected hello version {STREAM_VERSION}, got {other:?}"
        ))),
    }
}

/// What a stream's two threads share.
struct Shared {
    usage: Mutex<StreamUse>,
    /// Compositor fds that data from the guest goes into (wl_data_source.send), by id.
    pipes: Mutex<Pipes>,
    /// Read ends of new pipes whose data goes to the guest, for `down` to pump.
    pumps: Mutex<Vec<(u32, File)>>,
    /// Written to after adding to `pumps`: wakes `down`.
    wake: File,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pipe whose ends never block (and are closed on exec).
fn nonblocking_pipe() -> io::Result<(File, File)> {
    use nix::fcntl::OFlag;
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    Ok((File::from(r), File::from(w)))
}

/// Accepts guest streams on `listen` and bridges each to the Wayland socket `wayland`, under
/// the seccomp filter of `crate::sandbox` once listening.
pub fn serve(listen: &Path, wayland: &Path, seccomp: crate::sandbox::Mode) -> io::Result<()> {
    raise_fd_limit();
    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen)?;
    crate::sandbox::confine_bridge(seccomp).map_err(io::Error::other)?;
    let vm = Arc::new(Bridge::new(wayland.to_path_buf(), Limits::default()));
    let live = Arc::new(AtomicUsize::new(0));
    for guest in listener.incoming() {
        let guest = match guest {
            Ok(g) => g,
            Err(e) => {
                eprintln!("bulkhead-wl-bridge: accept: {e}");
                continue;
            }
        };
        let max = vm.limits.streams;
        if live.load(Ordering::SeqCst) >= max {
            eprintln!("bulkhead-wl-bridge: more than {max} apps; refusing one");
            continue;
        }
        live.fetch_add(1, Ordering::SeqCst);
        let (vm, live2) = (vm.clone(), live.clone());
        let started = std::thread::Builder::new().spawn(move || {
            if let Err(e) = vm.stream(guest) {
                eprintln!("bulkhead-wl-bridge: app stream ended: {e}");
            }
            live2.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = started {
            eprintln!("bulkhead-wl-bridge: cannot start a stream's thread: {e}");
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// Every stream holds 4 descriptors (guest, compositor, wake pipe) and up to 28 waiting to be
/// attached; the VM's pools and pipes add theirs: about 3,200 at the limits, more than the
/// usual soft limit of 1,024. Raised to the hard limit, before the seccomp filter.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                eprintln!("bulkhead-wl-bridge: cannot raise the fd limit to {hard}: {e}");
            }
        }
    }
}
