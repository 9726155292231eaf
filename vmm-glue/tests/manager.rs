//! Guests that answer slowly against the VM manager: a call to an agent that drips one byte a
//! second ends by its deadline; the session's end waits on such a guest no longer than its
//! bound; one slow VM does not hold up noticing that another crashed.
//!
//! No QEMU: each VM is one a previous compositor left running, which the manager re-adopts
//! from its runtime dir (plan and monitor pid), with a stand-in process for its monitor (one
//! that ignores SIGTERM where the test needs it) and a test thread serving its agent's
//! hybrid-vsock socket. Stop, crash detection and agent calls then take their real paths.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_config::Config;
use bulkhead_vmm::manager::StopReason;
use bulkhead_vmm::monitor::{self, MonitorState, ProcessId};
use bulkhead_vmm::paths::Dirs;
use bulkhead_vmm::plan::{plan, HostEnv, Vmm};
use bulkhead_vmm::{Manager, VmEvent};

/// `agent::CALL_TIMEOUT`: the most one agent call may take.
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// `manager::SESSION_STOP_BOUND`: the most the session's end waits for all its VMs.
const SESSION_BOUND: Duration = Duration::from_secs(5);
/// What thread scheduling and process exit may add.
const SLACK: Duration = Duration::from_secs(1);

/// Processes started for a test, killed when it ends whatever happened.
#[derive(Default)]
struct Procs(Vec<Child>);

impl Procs {
    /// A stand-in that runs until killed; with `deaf`, SIGTERM does nothing to it.
    fn start(&mut self, dir: &Path, deaf: bool) -> ProcessId {
        let script = if deaf {
            "trap '' TERM; exec sleep 600"
        } else {
            "exec sleep 600"
        };
        let child = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .spawn()
            .expect("stand-in process");
        let id = ProcessId::of(child.id() as i32).expect("its start time");
        self.0.push(child);
        id
    }

    /// Whether every process started exits (after being killed) within `d`.
    fn all_end_within(&mut self, d: Duration) -> bool {
        let children = std::mem::take(&mut self.0);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for mut c in children {
                let _ = c.wait();
            }
            let _ = tx.send(());
        });
        rx.recv_timeout(d).is_ok()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Session {
    _dir: tempfile::TempDir,
    env: HostEnv,
    config: Config,
    procs: Procs,
}

/// A config with `vms`, each `(name, extra lines)`, and a host env under a temp dir.
fn session(vms: &[(&str, &str)]) -> Session {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical tempdir");
    let env = HostEnv {
        dirs: Dirs::new(&root.join("run"), &root.join("state"), &root.join("data")),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        crosvm_found: false,
        kvm_usable: false,
        bridge_program: "bulkhead-wl-bridge".into(),
        qemu_cross_domain: None,
    };
    let mut text = String::new();
    for (name, extra) in vms {
        text.push_str(&format!(
            "[[vm]]\nname = \"{name}\"\ncolor = \"#3060ff\"\nvmm = \"qemu\"\n\
             kernel = \"/images/vmlinuz\"\nroot-disk = \"/images/root.img\"\n{extra}\n"
        ));
    }
    let config = Config::parse(&text, Path::new("/etc/bulkhead/config.toml")).expect("config");
    Session {
        _dir: dir,
        env,
        config,
        procs: Procs::default(),
    }
}

impl Session {
    /// Leaves `vm` as a running VM for the manager to re-adopt: its plan, a stand-in monitor
    /// (`deaf`: ignoring SIGTERM) and, with `vmm`, a stand-in VMM the monitor's state names.
    /// Returns the path of its agent's hybrid-vsock socket.
    fn running(&mut self, vm: &str, deaf: bool, vmm: bool) -> PathBuf {
        let spec = self.config.vms.iter().find(|v| v.name == vm).expect("vm");
        let paths = self.env.dirs.vm(vm);
        std::fs::create_dir_all(&paths.runtime).expect("runtime dir");
        std::fs::create_dir_all(&paths.control).expect("control dir");
        std::fs::create_dir_all(&paths.state).expect("state dir");
        let p = plan(spec, &self.config.vmm, &self.env).expect("plan");
        monitor::write_json(&paths.plan(), &p).expect("plan.json");
        let monitor = self.procs.start(&paths.runtime, deaf);
        monitor::write_json(&paths.monitor_file(), &monitor).expect("monitor.json");
        if vmm {
            let vmm = self.procs.start(&paths.runtime, deaf);
            let state = MonitorState {
                vmm: Vmm::Qemu,
                vmm_pid: vmm.pid,
                helper_pids: vec![],
                started_unix_ms: 0,
                helpers: vec![],
            };
            monitor::write_json(&paths.state_file(), &state).expect("state.json");
        }
        p.hybrid_vsock
            .expect("a QEMU plan reaches its agent by hybrid vsock")
    }

    fn manager(&self) -> (Arc<Manager>, Receiver<VmEvent>) {
        let (tx, rx) = channel();
        let tx = Mutex::new(tx);
        let m = Manager::new(
            &self.config,
            self.env.clone(),
            PathBuf::from("/nonexistent/bulkhead"),
            Box::new(move |e| {
                let _ = tx.lock().map(|tx| tx.send(e));
            }),
        );
        (m, rx)
    }
}

/// Serves an agent's hybrid-vsock socket as a hostile guest: it answers the `CONNECT` line,
/// then starts its hello frame (a header for 1,000 bytes) and drips one byte a second until
/// the host hangs up. Each connection it takes is reported.
fn dripping_agent(socket: &Path) -> Receiver<()> {
    let listener = UnixListener::bind(socket).expect("bind the agent socket");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            let tx = tx.clone();
            std::thread::spawn(move || drip(s, &tx));
        }
    });
    rx
}

fn drip(mut s: UnixStream, connected: &Sender<()>) {
    let mut line = String::new();
    if BufReader::new(&s).read_line(&mut line).is_err() || !line.starts_with("CONNECT ") {
        return;
    }
    if s.write_all(b"OK 1024\n").is_err() {
        return;
    }
    let _ = connected.send(());
    let mut header = 1000u32.to_le_bytes().to_vec();
    header.push(0);
    if s.write_all(&header).is_err() {
        return;
    }
    // The guest's own pace: one byte a second, as long as the host listens.
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if s.write_all(b" ").is_err() {
            return;
        }
    }
}

/// Runs `f` on a thread; its result and how long it took, or `None` if it is still running
/// after `limit`.
fn timed<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<(T, Duration)> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = f();
        let _ = tx.send((r, t.elapsed()));
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn an_agent_dripping_bytes_fails_the_call_by_its_deadline() {
    let mut s = session(&[("slow", "")]);
    let socket = s.running("slow", false, false);
    let connected = dripping_agent(&socket);
    let (m, _events) = s.manager();
    let (result, took) = timed(CALL_DEADLINE * 3, move || {
        m.run("slow", &["true".to_string()], &[], None)
    })
    .expect("the run call was still waiting on the guest long after its deadline");
    connected.try_recv().expect("the call reached the agent");
    let err = result.expect_err("a guest that never answered ran a command");
    assert!(
        err.contains("\"slow\"") && err.contains("run"),
        "the error names neither the VM nor the call: {err}"
    );
    assert!(
        took < CALL_DEADLINE + SLACK,
        "the call took {took:?}, its deadline is {CALL_DEADLINE:?}"
    );
}

#[test]
fn the_session_end_waits_on_no_guest_longer_than_its_bound() {
    let mut s = session(&[("stuck", ""), ("mute", "")]);
    // Two VMs whose agents drip and whose monitor and VMM ignore SIGTERM.
    let sockets = [
        s.running("stuck", true, true),
        s.running("mute", true, true),
    ];
    let _agents: Vec<_> = sockets.iter().map(|p| dripping_agent(p)).collect();
    let (m, events) = s.manager();
    let (_, took) = timed(SESSION_BOUND * 3, move || m.stop_all())
        .expect("the session's end was still waiting on the guests long after its bound");
    assert!(
        took < SESSION_BOUND + SLACK,
        "stop_all took {took:?}, its bound is {SESSION_BOUND:?}"
    );
    // Monitors and VMMs were killed, and the VMs reported stopped.
    assert!(
        s.procs.all_end_within(SLACK),
        "a monitor or VMM outlived the session"
    );
    let mut stopped: Vec<String> = events
        .try_iter()
        .filter_map(|e| match e {
            VmEvent::Stopped { vm, .. } => Some(vm),
            _ => None,
        })
        .collect();
    stopped.sort();
    assert_eq!(stopped, ["mute", "stuck"]);
}

#[test]
fn a_slow_vm_does_not_delay_noticing_that_another_crashed() {
    let mut s = session(&[("slow", "auto-shutdown = true"), ("fast", "")]);
    let socket = s.running("slow", false, false);
    let in_call = dripping_agent(&socket);
    s.running("fast", false, false);
    let (m, events) = s.manager();
    // The slow VM's idle check is under way, held by its guest.
    in_call
        .recv_timeout(CALL_DEADLINE)
        .expect("the watcher never asked the slow VM whether it is idle");
    // The fast VM's monitor dies.
    let fast = s.procs.0.get_mut(1).expect("fast's monitor");
    fast.kill().expect("kill");
    fast.wait().expect("reap");
    let t = Instant::now();
    // Noticed well before the slow call's deadline could free a shared watcher.
    let limit = CALL_DEADLINE / 2;
    loop {
        let e = events
            .recv_timeout(limit.saturating_sub(t.elapsed()))
            .expect("the crash of fast went unnoticed while slow's call was under way");
        if let VmEvent::Stopped { vm, reason } = e {
            assert_eq!(vm, "fast");
            assert!(matches!(reason, StopReason::Crashed(_)), "{reason:?}");
            break;
        }
    }
    drop(m);
}
