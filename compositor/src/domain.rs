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
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use smithay::reexports::wayland_server::backend::{ClientData, ClientId, DisconnectReason};
use smithay::reexports::wayland_server::Client;
use smithay::wayland::compositor::CompositorClientState;
use smithay::wayland::security_context::SecurityContext;

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

/// Most surfaces one VM client may have alive at once; more is a flood and disconnects it.
pub const MAX_SURFACES_PER_VM_CLIENT: usize = 2_000;

/// Per-client data: the domain (immutable), and what we count to cap hostile clients.
pub struct ClientState {
    pub domain: Domain,
    /// Where to report this client's end, so the compositor can tell the user when a VM app
    /// was disconnected for misbehaving.
    pub on_disconnect: Option<smithay::reexports::calloop::channel::Sender<(Domain, String)>>,
    /// Set for host clients that came through a wp_security_context_v1 listener: sandboxed
    /// host apps, which get no privileged globals either.
    pub security_context: Option<SecurityContext>,
    pub compositor_state: CompositorClientState,
    pub surfaces: AtomicUsize,
    /// The latest input serials the compositor sent to this client while it held focus.
    pub serials: InputSerials,
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
            surfaces: AtomicUsize::new(0),
            serials: InputSerials::default(),
        }
    }

    /// Whether this client may see privileged globals (layer-shell, virtual keyboard, …).
    pub fn privileged(&self) -> bool {
        self.domain.is_host() && self.security_context.is_none()
    }

    /// Counts one more surface; false when the client is over its cap.
    pub fn add_surface(&self) -> bool {
        let n = self.surfaces.fetch_add(1, Ordering::Relaxed) + 1;
        self.domain.is_host() || n <= MAX_SURFACES_PER_VM_CLIENT
    }

    pub fn remove_surface(&self) {
        // Saturating: a destruction hook can never run more often than creation, but a
        // miscount must not wrap around and lift the cap.
        let _ = self
            .surfaces
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

impl ClientData for ClientState {
    fn initialized(&self, _client_id: ClientId) {}
    fn disconnected(&self, client_id: ClientId, reason: DisconnectReason) {
        if let (DisconnectReason::ProtocolError(err), Some(tx)) = (&reason, &self.on_disconnect) {
            let _ = tx.send((self.domain.clone(), err.object_interface.clone()));
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

    /// Accepts every pending connection.
    pub fn accept_all(&self) -> Vec<UnixStream> {
        let mut out = Vec::new();
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => out.push(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accept on {} failed: {e}", self.path.display());
                    break;
                }
            }
        }
        out
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
    fn surface_cap_applies_to_vms_only() {
        let vm = ClientState::new(Domain::Vm("work".into()));
        for _ in 0..MAX_SURFACES_PER_VM_CLIENT {
            assert!(vm.add_surface());
        }
        assert!(!vm.add_surface());
        vm.remove_surface();
        vm.remove_surface();
        assert!(vm.add_surface());
        let host = ClientState::new(Domain::Host);
        for _ in 0..MAX_SURFACES_PER_VM_CLIENT + 5 {
            assert!(host.add_surface());
        }
        assert!(host.privileged() && !vm.privileged());
    }
}
