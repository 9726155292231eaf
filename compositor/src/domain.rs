//! Security domains and the sockets that decide them.
//!
//! A client's domain is fixed when it is accepted, by the socket it connected to: the host's
//! `wayland-N`, or a VM's `$XDG_RUNTIME_DIR/bulkhead/vms/<vm>/wayland-0`. Nothing the client
//! says later changes it.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use smithay::reexports::wayland_server::backend::{
    ClientData, ClientId, DisconnectReason, ObjectId,
};
use smithay::reexports::wayland_server::Client;
use smithay::wayland::compositor::CompositorClientState;
use smithay::wayland::security_context::SecurityContext;

use crate::limits::{ClientUsage, Exceeded};

/// The objects that map a client's shared memory (charged by the bytes they map).
const SHM_INTERFACES: &[&str] = &["wl_shm_pool", "wl_buffer"];

/// Where a client came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// The trusted host session.
    Host,
    /// A VM, by its configured name.
    Vm(Arc<str>),
    /// A client the compositor did not insert itself (its id: a domain of its own, never
    /// equal to another client's), or one already gone (`None`): trusted with nothing.
    Unknown(Option<ClientId>),
}

/// The name shown for clients of an unknown domain.
pub const UNKNOWN_DOMAIN: &str = "unknown";

impl Domain {
    pub fn is_host(&self) -> bool {
        matches!(self, Domain::Host)
    }

    pub fn name(&self) -> &str {
        match self {
            Domain::Host => bulkhead_config::HOST_DOMAIN,
            Domain::Vm(n) => n,
            Domain::Unknown(_) => UNKNOWN_DOMAIN,
        }
    }
}

/// Per-client data: the domain (immutable), and what we count to cap hostile clients.
pub struct ClientState {
    pub domain: Domain,
    /// Where to report this client's end, so the compositor can tell the user when a VM app
    /// was disconnected for misbehaving.
    pub on_disconnect: Option<smithay::reexports::calloop::channel::Sender<(Domain, String)>>,
    /// What this client holds, counted against its own and its domain's limits (VM clients
    /// only: the host is trusted).
    pub usage: Option<Arc<ClientUsage>>,
    /// See [`ClientState::take_last_shm_object`].
    last_shm_object: std::sync::Mutex<Option<ObjectId>>,
    /// Set for host clients that came through a wp_security_context_v1 listener: sandboxed
    /// host apps, which get no privileged globals either.
    pub security_context: Option<SecurityContext>,
    pub compositor_state: CompositorClientState,
    /// The latest input serials the compositor sent to this client while it held focus.
    pub serials: InputSerials,
    /// The process that connected (from the kernel at accept time), if the kernel said.
    pub peer: Option<Peer>,
    /// How the connection arrived (the VM's VMM, its vsock bridge, or a process directly).
    pub arrival: bulkhead_ipc::Arrival,
}

/// The process at the other end of a client's socket when it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    /// Its command name then (`/proc/PID/comm`), for people reading `bulkhead msg clients`.
    pub program: Option<String>,
}

impl Peer {
    /// The peer of `stream` (SO_PEERCRED: the process that called connect).
    pub fn of(stream: &std::os::unix::net::UnixStream) -> Option<Peer> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let cred = getsockopt(stream, PeerCredentials).ok()?;
        // No pid: the peer is in a PID namespace this one cannot see.
        (cred.pid() > 0).then(|| Peer {
            pid: cred.pid(),
            uid: cred.uid(),
            program: std::fs::read_to_string(format!("/proc/{}/comm", cred.pid()))
                .ok()
                .map(|c| c.trim_end().to_string()),
        })
    }
}

/// Serials of user input the compositor sent to one client (0: none since it last lost the
/// keyboard). A grab, an interactive move or resize, or an activation token of a VM client is
/// honoured only with one of these, exactly: never an older one, nor another client's.
#[derive(Default, Debug)]
pub struct InputSerials {
    /// The latest button press or touch down.
    pub press: AtomicU32,
    /// The latest key press.
    pub key: AtomicU32,
}

/// Which serials a request may cite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialUse {
    /// A move or resize: a button press only.
    Press,
    /// A popup grab or an activation token: a press, a key press or the keyboard enter.
    Input,
}

impl InputSerials {
    pub fn record_press(&self, serial: u32) {
        self.press.store(serial, Ordering::Relaxed);
    }

    pub fn record_key(&self, serial: u32) {
        self.key.store(serial, Ordering::Relaxed);
    }

    /// Forgets every serial: the client lost the keyboard to another client.
    pub fn clear(&self) {
        self.press.store(0, Ordering::Relaxed);
        self.key.store(0, Ordering::Relaxed);
    }

    /// Whether `serial` (never 0) is this client's latest press, or, for `SerialUse::Input`,
    /// its latest key press or `enter` (the keyboard enter it was sent, if it holds the
    /// keyboard).
    pub fn allows(&self, serial: u32, kind: SerialUse, enter: Option<u32>) -> bool {
        if serial == 0 {
            return false;
        }
        let press = self.press.load(Ordering::Relaxed) == serial;
        match kind {
            SerialUse::Press => press,
            SerialUse::Input => {
                press || self.key.load(Ordering::Relaxed) == serial || enter == Some(serial)
            }
        }
    }
}

impl ClientState {
    pub fn new(domain: Domain) -> Self {
        ClientState {
            domain,
            on_disconnect: None,
            security_context: None,
            compositor_state: CompositorClientState::default(),
            usage: None,
            last_shm_object: Default::default(),
            serials: InputSerials::default(),
            peer: None,
            arrival: bulkhead_ipc::Arrival::Direct,
        }
    }

    /// Whether this client may see privileged globals (layer-shell, virtual keyboard, …).
    pub fn privileged(&self) -> bool {
        self.domain.is_host() && self.security_context.is_none()
    }

    /// Counts one more object of `interface`; false when that takes this VM client or its
    /// domain over a limit (host clients are not counted).
    pub fn admit(&self, interface: &'static str) -> bool {
        match &self.usage {
            Some(u) => u.add_object(interface).is_ok(),
            None => true,
        }
    }

    /// The shm pool or buffer this client made last (the one a `create_pool` or
    /// `create_buffer` request just made, right after it is dispatched).
    pub fn take_last_shm_object(&self) -> Option<ObjectId> {
        crate::limits::lock(&self.last_shm_object).take()
    }

    /// Notes that the client went over a limit that is not an object count (it is then
    /// disconnected, and the notification says which).
    pub fn exceeded(&self, e: Exceeded) -> Exceeded {
        match &self.usage {
            Some(u) => u.refuse(e),
            None => e,
        }
    }
}

impl ClientData for ClientState {
    fn initialized(&self, _client_id: ClientId) {}

    fn object_created(&self, _client_id: ClientId, object: &ObjectId) -> bool {
        let interface = object.interface().name;
        if SHM_INTERFACES.contains(&interface) {
            *crate::limits::lock(&self.last_shm_object) = Some(object.clone());
        }
        self.admit(interface)
    }

    fn object_destroyed(&self, _client_id: ClientId, object: &ObjectId) {
        if let Some(u) = &self.usage {
            u.remove_object(object.interface().name);
        }
    }

    fn disconnected(&self, client_id: ClientId, reason: DisconnectReason) {
        if let Some(u) = &self.usage {
            u.disconnected();
        }
        if let (DisconnectReason::ProtocolError(err), Some(tx)) = (&reason, &self.on_disconnect) {
            // The limit it went over, else the protocol error (its interface: the message
            // may carry client text).
            let why = match self.usage.as_ref().and_then(|u| u.exceeded()) {
                Some(e) => e.to_string(),
                // wl_display.no_memory: wayland-backend's own bounds (queued fds), in its
                // words ("More than 1024 file descriptors queued.").
                None if err.object_interface == "wl_display" && err.code == 2 => {
                    let m = err.message.trim_end_matches('.');
                    let mut chars = m.chars();
                    chars
                        .next()
                        .map(|c| c.to_lowercase().chain(chars).collect())
                        .unwrap_or_else(|| "out of memory".into())
                }
                None => format!("protocol error ({})", err.object_interface),
            };
            let _ = tx.send((self.domain.clone(), why));
        }
        tracing::debug!(
            domain = self.domain.name(),
            ?client_id,
            ?reason,
            "client disconnected"
        );
    }
}

/// The domain of a client: ours from its [`ClientState`]; the host for the Xwayland server
/// that smithay inserts with its own data; an unprivileged unknown domain for anything else.
pub fn client_domain(client: &Client) -> Domain {
    classify(
        client.get_data::<ClientState>(),
        client
            .get_data::<smithay::xwayland::XWaylandClientData>()
            .is_some(),
        client.id(),
    )
}

/// The domain of the client with `id`, as [`client_domain`] decides it (unknown once gone).
pub fn client_id_domain(
    dh: &smithay::reexports::wayland_server::DisplayHandle,
    id: &ClientId,
) -> Domain {
    match dh.backend_handle().get_client_data(id.clone()) {
        Ok(data) => classify(
            data.downcast_ref::<ClientState>(),
            data.downcast_ref::<smithay::xwayland::XWaylandClientData>()
                .is_some(),
            id.clone(),
        ),
        Err(_) => Domain::Unknown(None),
    }
}

fn classify(ours: Option<&ClientState>, xwayland: bool, id: ClientId) -> Domain {
    match ours {
        Some(c) => c.domain.clone(),
        None if xwayland => Domain::Host,
        None => Domain::Unknown(Some(id)),
    }
}

/// Global filter: only unsandboxed host clients see privileged globals.
pub fn is_privileged(client: &Client) -> bool {
    client
        .get_data::<ClientState>()
        .is_some_and(ClientState::privileged)
}

/// A VM's listening Wayland socket, with the lock that proves we own the path.
pub struct DomainSocket {
    pub path: PathBuf,
    listener: UnixListener,
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a directory owned by this user with mode 0700; remove it or fix its owner and mode")]
    UnsafeDir { path: PathBuf },
    #[error(
        "another compositor already serves {path} (its lock file {lock} is held); stop it first"
    )]
    InUse { path: PathBuf, lock: PathBuf },
    #[error("cannot open the lock file {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove the stale socket {path}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Creates `dir` (and missing parents) with mode 0700 and checks that it is ours and private.
pub fn ensure_private_dir(dir: &Path) -> Result<(), SocketError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SocketError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    // symlink_metadata: a symlink planted in our place must not redirect us.
    let meta = fs::symlink_metadata(dir).map_err(|source| SocketError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != uid {
        return Err(SocketError::UnsafeDir {
            path: dir.to_owned(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            SocketError::CreateDir {
                path: dir.to_owned(),
                source,
            }
        })?;
    }
    Ok(())
}

impl DomainSocket {
    /// Binds `path`, replacing a stale socket left by a crashed compositor. A live one (its
    /// lock file held by another process) is an error, never taken over.
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        ensure_private_dir(dir)?;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|source| SocketError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            SocketError::InUse {
                path: path.to_owned(),
                lock: lock_path.clone(),
            }
        })?;
        // We hold the lock, so whatever sits at `path` is stale.
        match fs::remove_file(path) {
            Ok(()) => tracing::info!("replaced stale socket {}", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SocketError::RemoveStale {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        let listener = UnixListener::bind(path).map_err(|source| SocketError::Bind {
            path: path.to_owned(),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| SocketError::Bind {
                path: path.to_owned(),
                source,
            })?;
        Ok(DomainSocket {
            path: path.to_owned(),
            listener,
            _lock: lock,
        })
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Takes one pending connection (`None`: none is waiting).
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        match self.listener.accept() {
            Ok((stream, _)) => Ok(Some(stream)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for DomainSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_socket_is_replaced_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vms/work/wayland-0");
        // A stale socket file with nobody holding the lock.
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let s = DomainSocket::bind(&path).unwrap();
        let mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        UnixStream::connect(&path).unwrap();
        // A second compositor must not take over the live socket.
        match DomainSocket::bind(&path) {
            Err(SocketError::InUse { .. }) => {}
            other => panic!("expected InUse, got {:?}", other.map(|s| s.path.clone())),
        }
        drop(s);
        assert!(!path.exists());
    }

    #[test]
    fn symlinked_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("vms")).unwrap();
        let r = DomainSocket::bind(&dir.path().join("vms/wayland-0"));
        assert!(
            matches!(r, Err(SocketError::UnsafeDir { .. })),
            "{:?}",
            r.err()
        );
    }

    #[test]
    fn only_the_latest_serials_are_honoured() {
        let s = InputSerials::default();
        assert!(
            !s.allows(0, SerialUse::Input, Some(0)),
            "0 is never a serial"
        );
        s.record_press(10);
        s.record_key(12);
        assert!(s.allows(10, SerialUse::Press, None));
        assert!(
            !s.allows(12, SerialUse::Press, None),
            "a key cannot start a move"
        );
        assert!(s.allows(12, SerialUse::Input, None));
        assert!(s.allows(14, SerialUse::Input, Some(14)));
        s.record_press(20);
        assert!(!s.allows(10, SerialUse::Press, None), "an older press");
        s.clear();
        assert!(
            !s.allows(20, SerialUse::Input, None),
            "forgotten when focus left"
        );
    }

    /// Fail closed: a client that carries no data of ours is an unknown domain of its own,
    /// never the host, and gets no privileged globals.
    #[test]
    fn a_client_without_our_data_is_unknown_not_host() {
        struct Foreign;
        impl ClientData for Foreign {}
        let display = smithay::reexports::wayland_server::Display::<()>::new().unwrap();
        let (a, _a) = UnixStream::pair().unwrap();
        let (b, _b) = UnixStream::pair().unwrap();
        let one = display
            .handle()
            .insert_client(a, Arc::new(Foreign))
            .unwrap();
        let two = display
            .handle()
            .insert_client(b, Arc::new(Foreign))
            .unwrap();
        let (d1, d2) = (client_domain(&one), client_domain(&two));
        assert!(matches!(d1, Domain::Unknown(_)), "{d1:?}");
        assert!(!d1.is_host());
        assert_ne!(d1, d2, "two unknown clients share a domain");
        assert!(!is_privileged(&one));
        let ours = display
            .handle()
            .insert_client(
                UnixStream::pair().unwrap().0,
                Arc::new(ClientState::new(Domain::Host)),
            )
            .unwrap();
        assert_eq!(client_domain(&ours), Domain::Host);
    }

    #[test]
    fn only_vm_clients_are_counted() {
        let domain = Arc::new(crate::limits::DomainUsage::default());
        let mut vm = ClientState::new(Domain::Vm("work".into()));
        vm.usage = Some(Arc::new(ClientUsage::new(domain.clone())));
        let limit = crate::limits::per_client("wl_surface");
        for _ in 0..limit {
            assert!(vm.admit("wl_surface"));
        }
        assert!(!vm.admit("wl_surface"));
        let host = ClientState::new(Domain::Host);
        for _ in 0..limit + 5 {
            assert!(host.admit("wl_surface"));
        }
        assert!(host.privileged() && !vm.privileged());
        assert_eq!(domain.objects().get("wl_surface"), limit);
    }
}
