//! The main process of a network: it knows the ports, forks a child per port, hands ring
//! descriptors between children, watches their heartbeats, restarts the dead and tells their
//! peers, and publishes the counters. It never maps a ring: frames do not pass through it.
//!
//! It is single-threaded on purpose: it forks without exec.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::child::{self, ChildSetup, HEARTBEAT};
use crate::control::{self, ControlError, ToChild};
use crate::counters::{json_escape, SharedCounters};
use crate::policy::{max_frame_len, PortSpec, Topology, TopologyError};
use crate::ring::{self, Doorbell, Geometry, RingError};
use crate::sandbox::Mode;
use crate::shm::ShmError;

/// A child whose heartbeat has not moved for this long is killed and restarted.
pub const HUNG_AFTER: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(50);
const COUNTERS_EVERY: Duration = Duration::from_millis(500);
/// A child that ran at least this long before dying is restarted at once.
const STABLE_AFTER: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A port as the VM manager describes it, with its socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub spec: PortSpec,
    pub socket: PathBuf,
}

/// Everything the switch is told on its command line, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub network: String,
    /// The switch's own directory: counters.json, test triggers.
    pub dir: PathBuf,
    pub ports: Vec<PortConfig>,
    pub mtu: usize,
    pub ring_slots: u32,
    pub seccomp: Mode,
    pub test_trigger: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("the network's ports")]
    Topology(#[source] TopologyError),
    #[error("ring shape")]
    Ring(#[source] RingError),
    #[error("listening on {0:?}")]
    Listen(PathBuf, #[source] std::io::Error),
    #[error("{0:?} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("counters page")]
    Counters(#[source] ShmError),
    #[error("duplicating a descriptor")]
    Dup(#[source] std::io::Error),
    #[error("control channel")]
    Control(#[source] ControlError),
    #[error("forking a port child")]
    Fork(#[source] nix::Error),
    #[error("installing signal handlers")]
    Signals(#[source] nix::Error),
}

struct Running {
    pid: Pid,
    control: OwnedFd,
    started: Instant,
    beat: u64,
    beat_seen: Instant,
    killed_hung: bool,
}

struct Port {
    listener: UnixListener,
    socket: PathBuf,
    counters: SharedCounters,
    doorbell: Doorbell,
    child: Option<Running>,
    restarts: u64,
    failures_in_row: u32,
    start_at: Option<Instant>,
    last_exit: Option<String>,
}

/// The main process's state.
pub struct Supervisor {
    config: Config,
    topology: Arc<Topology>,
    geometry: Geometry,
    ports: Vec<Port>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGTERM and SIGINT end the supervision loop.
pub fn install_stop_handlers() -> Result<(), SupervisorError> {
    // No SA_RESTART: a blocked waitpid or sleep returns so the loop sees the request.
    let action = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(SupervisorError::Signals)?;
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn bind(path: &Path) -> Result<UnixListener, SupervisorError> {
    // Each port's socket sits in a directory of its own, which the VM manager lets that VM's
    // VMM (and nothing else) see.
    if let Some(parent) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| SupervisorError::Listen(path.to_owned(), e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A socket left by an earlier switch of this network.
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => return Err(SupervisorError::NotASocket(path.to_owned())),
        Err(_) => {}
    }
    UnixListener::bind(path).map_err(|e| SupervisorError::Listen(path.to_owned(), e))
}

impl Supervisor {
    /// Checks the ports, binds every port's socket, makes counters and doorbells.
    pub fn new(config: Config) -> Result<Supervisor, SupervisorError> {
        let specs = config.ports.iter().map(|p| p.spec.clone()).collect();
        let topology =
            Arc::new(Topology::new(specs, config.mtu).map_err(SupervisorError::Topology)?);
        let geometry = Geometry::new(config.ring_slots, max_frame_len(config.mtu))
            .map_err(SupervisorError::Ring)?;
        let mut ports = Vec::with_capacity(config.ports.len());
        for p in &config.ports {
            ports.push(Port {
                listener: bind(&p.socket)?,
                socket: p.socket.clone(),
                counters: SharedCounters::create(&format!("counters-{}", p.spec.vm))
                    .map_err(SupervisorError::Counters)?,
                doorbell: Doorbell::new().map_err(SupervisorError::Ring)?,
                child: None,
                restarts: 0,
                failures_in_row: 0,
                start_at: Some(Instant::now()),
                last_exit: None,
            });
        }
        Ok(Supervisor {
            config,
            topology,
            geometry,
            ports,
        })
    }

    /// Supervises until SIGTERM/SIGINT; then kills the children.
    pub fn run(&mut self) -> Result<(), SupervisorError> {
        let mut counters_written = Instant::now() - COUNTERS_EVERY;
        while !stop_requested() {
            self.reap();
            self.start_due();
            self.check_heartbeats();
            if self.config.test_trigger {
                self.check_triggers();
            }
            if counters_written.elapsed() >= COUNTERS_EVERY {
                self.write_counters();
                counters_written = Instant::now();
            }
            std::thread::sleep(TICK);
        }
        for port in &self.ports {
            if let Some(r) = &port.child {
                let _ = kill(r.pid, Signal::SIGKILL);
            }
        }
        for port in &mut self.ports {
            if let Some(r) = port.child.take() {
                let _ = waitpid(r.pid, None);
            }
        }
        self.write_counters();
        for port in &self.ports {
            let _ = std::fs::remove_file(&port.socket);
        }
        Ok(())
    }

    fn start_due(&mut self) {
        for i in 0..self.ports.len() {
            let due = self.ports[i].start_at.is_some_and(|t| Instant::now() >= t);
            if due && self.ports[i].child.is_none() {
                self.ports[i].start_at = None;
                if let Err(e) = self.spawn(i) {
                    eprintln!(
                        "bulkhead-switch: starting port {}: {}",
                        self.name(i),
                        chain(&e)
                    );
                    self.schedule_restart(i, false);
                }
            }
        }
    }

    fn name(&self, i: usize) -> &str {
        self.topology
            .ports()
            .get(i)
            .map(|p| p.vm.as_str())
            .unwrap_or("?")
    }

    fn spawn(&mut self, i: usize) -> Result<(), SupervisorError> {
        let (main_end, child_end) = control::pair().map_err(SupervisorError::Control)?;
        let port = &self.ports[i];
        // The backend's own connection, which the child's relay feeds (see relay.rs): made
        // here, where the filesystem is, and unlinked at once.
        let inner_path = self
            .config
            .dir
            .join(format!(".backend-{i}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&inner_path);
        let inner_listener = UnixListener::bind(&inner_path)
            .map_err(|e| SupervisorError::Listen(inner_path.clone(), e))?;
        let inner_stream = std::os::unix::net::UnixStream::connect(&inner_path)
            .map_err(|e| SupervisorError::Listen(inner_path.clone(), e));
        let _ = std::fs::remove_file(&inner_path);
        let inner_stream = OwnedFd::from(inner_stream?);
        let setup = ChildSetup {
            port: i,
            topology: self.topology.clone(),
            listener: port.listener.try_clone().map_err(SupervisorError::Dup)?,
            inner_listener,
            inner_stream,
            control: child_end,
            counters: port.counters.dup_fd().map_err(SupervisorError::Dup)?,
            doorbell: port.doorbell.dup_fd().map_err(SupervisorError::Ring)?,
            seccomp: self.config.seccomp,
            test_trigger: self.config.test_trigger,
        };
        let keep = setup.fds();
        // SAFETY: the supervisor never starts a thread, so the child is a complete copy of a
        // single-threaded process and may run any code.
        match unsafe { fork() }.map_err(SupervisorError::Fork)? {
            ForkResult::Child => {
                close_all_but(&keep);
                // SAFETY: plain prctl with constant arguments: die with the supervisor.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                let code = match child::run(setup) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("bulkhead-switch port {i}: {}", chain(&e));
                        1
                    }
                };
                // SAFETY: ends the child without running the destructors of the supervisor's
                // state, whose descriptors `close_all_but` already closed.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(setup);
                let now = Instant::now();
                self.ports[i].child = Some(Running {
                    pid: child,
                    control: main_end,
                    started: now,
                    beat: self.ports[i].counters.get().snapshot().heartbeat,
                    beat_seen: now,
                    killed_hung: false,
                });
                let peers: Vec<usize> = self.topology.peers(i).to_vec();
                for j in peers {
                    if self.ports[j].child.is_some() {
                        if let Err(e) = self.connect(i, j) {
                            eprintln!(
                                "bulkhead-switch: rings between {} and {}: {}",
                                self.name(i),
                                self.name(j),
                                chain(&e)
                            );
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Fresh rings in both directions between two running children.
    fn connect(&self, i: usize, j: usize) -> Result<(), SupervisorError> {
        let g = self.geometry;
        let i_to_j = ring::create("bulkhead-switch-ring", g).map_err(SupervisorError::Ring)?;
        let j_to_i = ring::create("bulkhead-switch-ring", g).map_err(SupervisorError::Ring)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(SupervisorError::Dup);
        let to_i = ToChild::Connect {
            peer: j as u32,
            geometry: g,
            out: dup(&i_to_j)?,
            peer_doorbell: self.ports[j]
                .doorbell
                .dup_fd()
                .map_err(SupervisorError::Ring)?,
            inp: dup(&j_to_i)?,
        };
        let to_j = ToChild::Connect {
            peer: i as u32,
            geometry: g,
            out: j_to_i,
            peer_doorbell: self.ports[i]
                .doorbell
                .dup_fd()
                .map_err(SupervisorError::Ring)?,
            inp: i_to_j,
        };
        for (k, msg) in [(i, to_i), (j, to_j)] {
            if let Some(r) = &self.ports[k].child {
                // A child that died meanwhile is reaped and reconnected on the next tick.
                let _ = control::send(r.control.as_fd(), &msg);
            }
        }
        Ok(())
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let (pid, how, clean) = match status {
                WaitStatus::Exited(pid, 0) => {
                    (pid, "exited (the VMM disconnected)".to_string(), true)
                }
                WaitStatus::Exited(pid, code) => (pid, format!("exited with status {code}"), false),
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("killed by {sig}"), false),
                _ => continue,
            };
            let Some(i) = self
                .ports
                .iter()
                .position(|p| p.child.as_ref().is_some_and(|r| r.pid == pid))
            else {
                continue;
            };
            let Some(r) = self.ports[i].child.take() else {
                continue;
            };
            let how = if r.killed_hung {
                format!("{how} after its heartbeat stopped")
            } else {
                how
            };
            eprintln!("bulkhead-switch: port {} {how}; restarting", self.name(i));
            self.ports[i].last_exit = Some(how);
            self.ports[i].restarts += 1;
            for &j in self.topology.peers(i) {
                if let Some(rj) = &self.ports[j].child {
                    let _ =
                        control::send(rj.control.as_fd(), &ToChild::Disconnect { peer: i as u32 });
                }
            }
            let stable = r.started.elapsed() >= STABLE_AFTER;
            self.schedule_restart(i, clean || stable);
        }
    }

    fn schedule_restart(&mut self, i: usize, at_once: bool) {
        let port = &mut self.ports[i];
        if at_once {
            port.failures_in_row = 0;
            port.start_at = Some(Instant::now());
        } else {
            let delay = Duration::from_millis(100)
                .saturating_mul(1 << port.failures_in_row.min(6))
                .min(MAX_BACKOFF);
            port.failures_in_row = port.failures_in_row.saturating_add(1);
            port.start_at = Some(Instant::now() + delay);
        }
    }

    fn check_heartbeats(&mut self) {
        for port in &mut self.ports {
            let beat = port.counters.get().snapshot().heartbeat;
            let Some(r) = &mut port.child else { continue };
            if beat != r.beat {
                r.beat = beat;
                r.beat_seen = Instant::now();
            } else if r.beat_seen.elapsed() >= HUNG_AFTER.max(HEARTBEAT * 4) && !r.killed_hung {
                r.killed_hung = true;
                let _ = kill(r.pid, Signal::SIGKILL);
            }
        }
    }

    /// Test triggers: `<dir>/trap-<vm>` makes that port's child call a forbidden system call,
    /// `<dir>/hang-<vm>` stops its worker thread.
    fn check_triggers(&mut self) {
        for (i, port) in self.ports.iter().enumerate() {
            let Some(r) = &port.child else { continue };
            let vm = self
                .topology
                .ports()
                .get(i)
                .map(|p| p.vm.as_str())
                .unwrap_or("");
            for (file, msg) in [("trap", ToChild::Trap), ("hang", ToChild::Hang)] {
                if std::fs::remove_file(self.config.dir.join(format!("{file}-{vm}"))).is_ok() {
                    let _ = control::send(r.control.as_fd(), &msg);
                }
            }
        }
    }

    /// `<dir>/counters.json`, replaced atomically.
    pub fn counters_json(&self) -> String {
        let mut s = format!(
            "{{\"network\":\"{}\",\"ports\":[",
            json_escape(&self.config.network)
        );
        for (i, port) in self.ports.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let snap = port.counters.get().snapshot();
            s.push_str(&format!(
                "{{\"vm\":\"{}\",{},\"running\":{},\"restarts\":{},\"last_exit\":{}}}",
                json_escape(self.name(i)),
                snap.json_fields(),
                port.child.is_some(),
                port.restarts,
                port.last_exit
                    .as_ref()
                    .map(|e| format!("\"{}\"", json_escape(e)))
                    .unwrap_or_else(|| "null".into())
            ));
        }
        s.push_str("]}\n");
        s
    }

    fn write_counters(&self) {
        let path = self.config.dir.join("counters.json");
        let tmp = self.config.dir.join(".counters.json.tmp");
        let body = self.counters_json();
        let ok = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(body.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = ok {
            eprintln!("bulkhead-switch: writing {path:?}: {e}");
        }
    }

    /// The pids of the running port children (namespace pids under the sandbox).
    pub fn child_pids(&self) -> Vec<Option<i32>> {
        self.ports
            .iter()
            .map(|p| p.child.as_ref().map(|r| r.pid.as_raw()))
            .collect()
    }
}

/// Closes every descriptor above stderr except `keep`.
fn close_all_but(keep: &[i32]) {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&f| u32::try_from(f).ok()).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep {
        if k > from {
            close_range(from, k - 1);
        }
        from = from.max(k + 1);
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range(2) only closes descriptors; the caller owns every one in the range
    // (it is a freshly forked child that will never touch the closed ones again).
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
}

/// An error with its sources, for a person to read.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
