//! A port child: one VM's vhost-user net backend, in a process of its own.
//!
//! It inherits, from the fork, the port's listening socket, its control socket, its counters
//! page and its doorbell; everything else was closed. It installs the child seccomp tier before
//! starting any thread, then serves one vhost-user connection. Its worker thread also handles
//! control messages (rings from the main process) and a timer that advances the heartbeat
//! counter. The VMM's connection reaches the backend through `relay` (see there why). When the
//! VMM disconnects the child exits, and the main process starts a fresh one on the same
//! listening socket (the VMM reconnects).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use crate::backend::{PortBackend, DOORBELL_EVENT, FIRST_OWNER_EVENT};
use crate::control::{self, ControlError, ToChild};
use crate::counters::SharedCounters;
use crate::policy::Topology;
use crate::relay;
use crate::ring::{Consumer, Doorbell, Producer};
use crate::sandbox::{self, Mode, Tier};

const CONTROL_EVENT: u16 = FIRST_OWNER_EVENT;
const TICK_EVENT: u16 = FIRST_OWNER_EVENT + 1;
/// How often the heartbeat advances.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

/// What a port child starts with.
pub struct ChildSetup {
    pub port: usize,
    pub topology: Arc<Topology>,
    pub listener: UnixListener,
    /// The backend's side of a pre-made connection (see relay.rs) and the relay's side.
    pub inner_listener: UnixListener,
    pub inner_stream: OwnedFd,
    pub control: OwnedFd,
    pub counters: OwnedFd,
    pub doorbell: OwnedFd,
    pub seccomp: Mode,
    /// Whether a `Trap` control message is obeyed (tests of the sandbox).
    pub test_trigger: bool,
}

impl ChildSetup {
    /// The descriptors the child keeps (all others are closed after the fork).
    pub fn fds(&self) -> [i32; 6] {
        [
            self.listener.as_raw_fd(),
            self.inner_listener.as_raw_fd(),
            self.inner_stream.as_raw_fd(),
            self.control.as_raw_fd(),
            self.counters.as_raw_fd(),
            self.doorbell.as_raw_fd(),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("the heartbeat timer")]
    Timer(#[source] std::io::Error),
    #[error("the counters page")]
    Counters(#[source] crate::shm::ShmError),
    #[error("confining the port")]
    Sandbox(#[source] sandbox::SandboxError),
    #[error("the vhost-user daemon: {0}")]
    Daemon(String),
    #[error("accepting the VMM's connection")]
    Accept(#[source] std::io::Error),
    #[error("relaying vhost-user messages")]
    Relay(#[source] crate::relay::RelayError),
}

/// Runs the port until the VMM disconnects (`Ok`) or something breaks.
pub fn run(setup: ChildSetup) -> Result<(), ChildError> {
    let ChildSetup {
        port,
        topology,
        listener,
        inner_listener,
        inner_stream,
        control,
        counters,
        doorbell,
        seccomp,
        test_trigger,
    } = setup;
    let mut timer = TimerFd::new().map_err(|e| ChildError::Timer(e.into()))?;
    timer
        .reset(HEARTBEAT, Some(HEARTBEAT))
        .map_err(|e| ChildError::Timer(e.into()))?;
    let counters = Arc::new(SharedCounters::from_fd(counters).map_err(ChildError::Counters)?);
    counters.get().beat();
    sandbox::install(Tier::Child, seccomp).map_err(ChildError::Sandbox)?;

    let backend = Arc::new(PortBackend::new(
        topology,
        port,
        counters.clone(),
        Doorbell::from_fd(doorbell),
    ));
    let control_fd = control.as_raw_fd();
    let timer_fd = timer.as_raw_fd();
    backend.set_owner_hook(Box::new(move |event, backend: &PortBackend| match event {
        CONTROL_EVENT => handle_control(&control, backend, test_trigger),
        TICK_EVENT => {
            let _ = timer.wait();
            backend.counters().beat();
        }
        _ => {}
    }));
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::<()>::new());
    let mut daemon = VhostUserDaemon::new(format!("port{port}"), backend.clone(), mem)
        .map_err(|e| ChildError::Daemon(e.to_string()))?;
    for handler in daemon.get_epoll_handlers() {
        for (fd, id) in [
            (backend.doorbell_fd(), DOORBELL_EVENT),
            (control_fd, CONTROL_EVENT),
            (timer_fd, TICK_EVENT),
        ] {
            handler
                .register_listener(fd, EventSet::IN, id as u64)
                .map_err(|e| ChildError::Daemon(e.to_string()))?;
        }
    }
    // The backend takes the connection made for it; the VMM's goes through the relay.
    let mut inner = Listener::from(inner_listener);
    daemon
        .start(&mut inner)
        .map_err(|e| ChildError::Daemon(e.to_string()))?;
    let (vmm, _) = listener.accept().map_err(ChildError::Accept)?;
    // The VMM going away is the normal end of a port child.
    relay::run(&OwnedFd::from(vmm), &inner_stream).map_err(ChildError::Relay)
}

fn handle_control(control: &OwnedFd, backend: &PortBackend, test_trigger: bool) {
    loop {
        match control::recv(control.as_fd()) {
            Ok(None) => return,
            Ok(Some(ToChild::Connect {
                peer,
                geometry,
                out,
                peer_doorbell,
                inp,
            })) => {
                let rings = Producer::open(out, Doorbell::from_fd(peer_doorbell), geometry)
                    .and_then(|p| Ok((p, Consumer::open(inp, geometry)?)));
                match rings {
                    Ok((p, c)) => {
                        if let Err(e) = backend.connect_peer(peer as usize, p, c) {
                            eprintln!("bulkhead-switch port {}: peer {peer}: {e}", backend.port());
                        }
                    }
                    Err(e) => eprintln!(
                        "bulkhead-switch port {}: rings for peer {peer}: {e}",
                        backend.port()
                    ),
                }
            }
            Ok(Some(ToChild::Disconnect { peer })) => backend.disconnect_peer(peer as usize),
            Ok(Some(ToChild::Trap)) => {
                if test_trigger {
                    forbidden_syscall();
                }
            }
            Ok(Some(ToChild::Hang)) => {
                if test_trigger {
                    loop {
                        std::thread::park();
                    }
                }
            }
            Err(ControlError::Closed) => {
                // The main process is gone: nothing supervises this port any more.
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("bulkhead-switch port {}: {e}", backend.port());
                return;
            }
        }
    }
}

/// Creates a socket, which the child tier forbids: under `kill` or `trap` the child dies of
/// SIGSYS here (tests use this to see the filter work and the child restarted).
fn forbidden_syscall() {
    // SAFETY: socket(2) with constant arguments; the descriptor, if any, is closed at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        unsafe { libc::close(fd) };
    }
}
