//! The VM manager: starts VMs (dependencies first) through a monitor process each, stops them
//! gracefully (agent poweroff, then signals), runs commands through the guest agent, notices
//! crashes, shuts idle VMs down, and re-adopts the VMs a previous compositor left running.
//!
//! Every operation blocks its caller (an IPC worker thread), never the compositor's loop; a
//! watcher thread per VM polls its monitor and idle time, so a guest slow to answer delays no
//! other VM's. Every call to a guest's agent has a deadline (`agent::CALL_TIMEOUT`), and the
//! session's end waits on no guest longer than [`SESSION_STOP_BOUND`] in all. State changes are
//! reported through the `events` callback.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkhead_config::{Config, VmConfig, VmmSettings};
use bulkhead_ipc::{BootInfo, VmInfo, VmState};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::agent::{self, Call, Connection, Endpoint, Exit, OutputSink};
use crate::monitor::{self, ExitReport, MonitorState, ProcessId};
use crate::plan::{self, HostEnv, LaunchPlan};
use crate::switch;
use bulkhead_config::vm::NetKind;

/// Why a VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// vm-stop, the launcher, or the session ending.
    Requested,
    /// Auto-shutdown after being idle.
    Idle,
    /// It ended on its own; the text says how.
    Crashed(String),
}

/// What the compositor hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    Started { vm: String },
    Stopped { vm: String, reason: StopReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Stopped,
    Starting,
    Running,
    Stopping,
}

#[derive(Default)]
struct Slot {
    phase: Option<Phase>,
    monitor: Option<ProcessId>,
    /// The monitor process when this manager started it (to reap it).
    child: Option<Child>,
    endpoint: Option<Endpoint>,
    vmm: Option<String>,
    since_ms: u64,
    boot: Option<BootInfo>,
    last_exit: Option<String>,
    last_idle_check: Option<Instant>,
}

impl Slot {
    fn phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::Stopped)
    }
}

/// How long a poweroff may take before the VM is killed comes from the config; these are the
/// fixed steps after it.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// The longest the session's end (`stop_all`) waits for all its VMs and their switches
/// together, however many and whatever their guests do: the first half for guests to power
/// off through their agents, then SIGTERM to the monitors, then SIGKILL to monitors and VMMs.
pub const SESSION_STOP_BOUND: Duration = Duration::from_secs(5);
/// How long a switch may take to listen on every port.
const SWITCH_START_TIMEOUT: Duration = Duration::from_secs(10);
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type EventSink = Box<dyn Fn(VmEvent) + Send + Sync>;

/// When each step of stopping a VM ends: the guest's own poweroff (through its agent), then
/// SIGTERM to its monitor, then SIGKILL to the monitor and the VMM.
#[derive(Debug, Clone, Copy)]
struct StopSchedule {
    poweroff_by: Instant,
    term_by: Instant,
    kill_by: Instant,
}

impl StopSchedule {
    /// A stop asked for (vm-stop, idle): the config's stop timeout, then a grace per signal.
    fn requested(stop_timeout: Duration) -> StopSchedule {
        let poweroff_by = Instant::now() + stop_timeout;
        let term_by = poweroff_by + TERM_GRACE;
        StopSchedule {
            poweroff_by,
            term_by,
            kill_by: term_by + TERM_GRACE,
        }
    }

    /// The session's end, begun at `start`: everything within [`SESSION_STOP_BOUND`].
    fn session(start: Instant) -> StopSchedule {
        let at = |percent: u32| start + SESSION_STOP_BOUND * percent / 100;
        StopSchedule {
            poweroff_by: at(50),
            term_by: at(80),
            kill_by: at(90),
        }
    }

    /// Each step no later than in `other`.
    fn no_later_than(self, other: Option<StopSchedule>) -> StopSchedule {
        let Some(o) = other else { return self };
        StopSchedule {
            poweroff_by: self.poweroff_by.min(o.poweroff_by),
            term_by: self.term_by.min(o.term_by),
            kill_by: self.kill_by.min(o.kill_by),
        }
    }
}

pub struct Manager {
    vms: BTreeMap<String, VmConfig>,
    order: Vec<String>,
    settings: VmmSettings,
    env: HostEnv,
    monitor_exe: PathBuf,
    slots: Mutex<BTreeMap<String, Slot>>,
    changed: Condvar,
    events: EventSink,
    closing: AtomicBool,
    /// Once the session ends: its stop schedule, which cuts every stop under way short.
    session_end: Mutex<Option<StopSchedule>>,
    /// Switches this manager started (reaped when they end); held while a network's switch is
    /// being checked or started, so two VMs starting together start it once.
    switches: Mutex<Vec<Child>>,
}

impl Manager {
    /// A manager for the VMs of `config`. Re-adopts VMs whose monitor still runs and cleans up
    /// after those whose monitor died. `monitor_exe` is `bulkhead-vm-monitor`.
    pub fn new(
        config: &Config,
        env: HostEnv,
        monitor_exe: PathBuf,
        events: EventSink,
    ) -> Arc<Manager> {
        let mut slots = BTreeMap::new();
        for vm in &config.vms {
            slots.insert(vm.name.clone(), Slot::default());
        }
        let m = Arc::new(Manager {
            vms: config
                .vms
                .iter()
                .map(|v| (v.name.clone(), v.clone()))
                .collect(),
            order: config.vms.iter().map(|v| v.name.clone()).collect(),
            settings: config.vmm.clone(),
            env,
            monitor_exe,
            slots: Mutex::new(slots),
            changed: Condvar::new(),
            events,
            closing: AtomicBool::new(false),
            session_end: Mutex::new(None),
            switches: Mutex::new(Vec::new()),
        });
        for name in &m.order {
            m.adopt(name);
        }
        for name in &m.order {
            let (weak, name) = (Arc::downgrade(&m), name.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("vm-watch {name}"))
                .spawn(move || watch(weak, &name));
            if let Err(e) = spawned {
                tracing::error!("cannot start a VM watcher thread: {e}");
            }
        }
        m
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn vm(&self, name: &str) -> Result<&VmConfig, String> {
        self.vms.get(name).ok_or_else(|| {
            let defined: Vec<&str> = self.order.iter().map(String::as_str).collect();
            if defined.is_empty() {
                format!("VM {name:?} is not defined; no VMs are defined in the config")
            } else {
                format!(
                    "VM {name:?} is not defined; defined: {}",
                    defined.join(", ")
                )
            }
        })
    }

    /// Picks up a VM a previous compositor left running.
    fn adopt(&self, name: &str) {
        let paths = self.env.dirs.vm(name);
        let Some(id) = monitor::read_json::<ProcessId>(&paths.monitor_file()) else {
            return;
        };
        let plan = monitor::read_json::<LaunchPlan>(&paths.plan());
        match plan {
            Some(plan) if id.alive() => {
                tracing::info!("VM {name}: re-adopted (monitor pid {})", id.pid);
                let mut slots = self.lock();
                if let Some(s) = slots.get_mut(name) {
                    s.phase = Some(Phase::Running);
                    s.monitor = Some(id);
                    s.endpoint = Some(endpoint(&plan));
                    s.vmm = Some(vmm_name(&plan));
                    s.since_ms = monitor::read_json::<MonitorState>(&paths.state_file())
                        .map_or_else(now_ms, |st| st.started_unix_ms);
                }
            }
            _ => {
                tracing::info!("VM {name}: cleaning up after a monitor that is gone");
                self.cleanup_leftovers(name, plan.as_ref());
            }
        }
    }

    /// What a dead monitor could not clean: its scratch disk and runtime files.
    fn cleanup_leftovers(&self, name: &str, plan: Option<&LaunchPlan>) {
        let paths = self.env.dirs.vm(name);
        // The VMM and helpers die with their monitor (PR_SET_PDEATHSIG); kill any that a
        // SIGKILLed monitor could not take along anyway.
        self.kill_vm_processes(name);
        if let Some(s) = plan.and_then(|p| p.scratch.as_ref()) {
            let _ = std::fs::remove_file(&s.path);
        }
        monitor::remove_runtime_files(&paths.runtime);
        let _ = std::fs::remove_file(paths.monitor_file());
    }

    /// SIGKILL to the VM's VMM and helpers, as its monitor's state names them (and only if
    /// they run in the VM's runtime dir: a pid may have been reused).
    fn kill_vm_processes(&self, name: &str) {
        let paths = self.env.dirs.vm(name);
        if let Some(st) = monitor::read_json::<MonitorState>(&paths.state_file()) {
            for pid in std::iter::once(st.vmm_pid).chain(st.helper_pids) {
                let started_after = monitor::proc_start_time(pid).is_some();
                if started_after && is_ours(pid, &paths.runtime) {
                    let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }

    /// Every VM with its state.
    pub fn list(&self) -> Vec<VmInfo> {
        let slots = self.lock();
        self.order
            .iter()
            .filter_map(|name| {
                let vm = self.vms.get(name)?;
                let s = slots.get(name)?;
                let state = match s.phase() {
                    Phase::Stopped => VmState::Stopped,
                    Phase::Starting => VmState::Starting,
                    Phase::Running => VmState::Running,
                    Phase::Stopping => VmState::Stopping,
                };
                let up = state != VmState::Stopped;
                Some(VmInfo {
                    name: name.clone(),
                    color: vm.color.to_string(),
                    state,
                    vmm: if up { s.vmm.clone() } else { None },
                    pid: if up { s.monitor.map(|m| m.pid) } else { None },
                    since_unix_ms: if up { Some(s.since_ms) } else { None },
                    memory_mib: vm.spec.memory.as_mib(),
                    cpus: vm.spec.cpus,
                    disposable: vm.spec.disposable,
                    autostart: vm.spec.autostart,
                    boot: if up { s.boot } else { None },
                    last_exit: s.last_exit.clone(),
                })
            })
            .collect()
    }

    /// Starts `name` (and what it depends on) unless it runs; returns once its agent answers.
    /// `Ok(false)` when it was already running.
    pub fn start(&self, name: &str) -> Result<bool, String> {
        self.start_chain(name, 0)
    }

    fn start_chain(&self, name: &str, depth: usize) -> Result<bool, String> {
        let vm = self.vm(name)?.clone();
        if depth > self.order.len() {
            return Err("depends-on is too deep".into());
        }
        for dep in &vm.spec.depends_on {
            self.start_chain(dep, depth + 1)
                .map_err(|e| format!("cannot start {dep:?}, which {name:?} depends on: {e}"))?;
        }
        {
            let mut slots = self.lock();
            loop {
                if self.closing.load(Ordering::SeqCst) {
                    return Err("the session is ending".into());
                }
                let phase = slots.get(name).map_or(Phase::Stopped, Slot::phase);
                match phase {
                    Phase::Running => return Ok(false),
                    Phase::Stopped => break,
                    Phase::Starting | Phase::Stopping => {
                        slots = self.changed.wait(slots).unwrap_or_else(|e| e.into_inner());
                        // Someone else's start: when it ends in Running, use it.
                        if slots.get(name).map(Slot::phase) == Some(Phase::Running) {
                            return Ok(false);
                        }
                    }
                }
            }
            if let Some(s) = slots.get_mut(name) {
                s.phase = Some(Phase::Starting);
                s.since_ms = now_ms();
                s.boot = None;
            }
        }
        self.changed.notify_all();
        match self.launch(&vm) {
            Ok(()) => {
                (self.events)(VmEvent::Started { vm: name.into() });
                Ok(true)
            }
            Err(e) => {
                let mut slots = self.lock();
                if let Some(s) = slots.get_mut(name) {
                    *s = Slot {
                        last_exit: Some(e.clone()),
                        ..Slot::default()
                    };
                }
                drop(slots);
                self.changed.notify_all();
                Err(e)
            }
        }
    }

    fn launch(&self, vm: &VmConfig) -> Result<(), String> {
        let started = Instant::now();
        let plan = plan::plan(vm, &self.settings, &self.env)?;
        self.ensure_switches(vm)?;
        for bdf in &vm.spec.pci {
            plan::check_vfio(Path::new("/sys"), &bdf.to_string())?;
        }
        let paths = self.env.dirs.vm(&vm.name);
        for dir in [&paths.runtime, &paths.control, &paths.state] {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        monitor::remove_runtime_files(&paths.runtime);
        let _ = std::fs::remove_file(paths.exit_file());
        monitor::write_json(&paths.plan(), &plan)
            .map_err(|e| format!("cannot write {}: {e}", paths.plan().display()))?;
        // The agent announces itself on this socket (hybrid vsock, guest -> host port).
        let ready_path = paths.vsock_port(bulkhead_ipc::agent::READY_PORT);
        let listener = match &plan.hybrid_vsock {
            Some(_) => {
                let _ = std::fs::remove_file(&ready_path);
                Some(
                    UnixListener::bind(&ready_path)
                        .map_err(|e| format!("cannot listen on {}: {e}", ready_path.display()))?,
                )
            }
            None => None,
        };
        let mut cmd =
            monitor::detached_command(self.monitor_exe.as_os_str(), &paths.log("monitor"))?;
        cmd.arg(&paths.control).current_dir(&paths.control);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the VM monitor: {e}"))?;
        let id = ProcessId::of(child.id() as i32).ok_or("the VM monitor exited at once")?;
        let _ = monitor::write_json(&paths.monitor_file(), &id);
        let ep = endpoint(&plan);
        {
            let mut slots = self.lock();
            if let Some(s) = slots.get_mut(&vm.name) {
                s.monitor = Some(id);
                s.child = Some(child);
                s.endpoint = Some(ep.clone());
                s.vmm = Some(vmm_name(&plan));
            }
        }
        let deadline = started + Duration::from_secs(self.settings.start_timeout.0);
        // A start under way when the session ends gives up at once.
        let mut alive =
            || id.alive() && !paths.exit_file().exists() && !self.closing.load(Ordering::SeqCst);
        let ready = agent::wait_ready(&vm.name, &ep, listener.as_ref(), deadline, &mut alive);
        drop(listener);
        let _ = std::fs::remove_file(&ready_path);
        match ready {
            Ok(times) => {
                let total_ms = started.elapsed().as_millis() as u64;
                let mut slots = self.lock();
                if let Some(s) = slots.get_mut(&vm.name) {
                    s.phase = Some(Phase::Running);
                    s.boot = Some(BootInfo {
                        total_ms,
                        init_ms: times.map(|t| t.init_ms),
                        agent_ms: times.map(|t| t.agent_ms),
                    });
                    s.last_exit = None;
                }
                drop(slots);
                self.changed.notify_all();
                tracing::info!("VM {}: ready in {total_ms} ms", vm.name);
                Ok(())
            }
            Err(e) => {
                // Stop whatever is left; the monitor cleans up and says why it ended.
                self.terminate(&vm.name, id, StopSchedule::requested(Duration::ZERO));
                let report = monitor::read_json::<ExitReport>(&paths.exit_file());
                self.cleanup_leftovers(&vm.name, Some(&plan));
                let why = report.map(|r| r.reason).unwrap_or_else(|| e.to_string());
                Err(format!(
                    "VM {:?} did not start: {why} (logs: {})",
                    vm.name,
                    paths.state.display()
                ))
            }
        }
    }

    /// The per-port counters of a switch network, as JSON (see `switch::counters`).
    pub fn switch_counters(&self, network: &str) -> Result<String, String> {
        let all: Vec<VmConfig> = self.vms.values().cloned().collect();
        if !switch::networks(&all).contains_key(network) {
            return Err(format!("no VM is on a switch network named {network:?}"));
        }
        switch::counters(&self.env.dirs, network)
    }

    /// Starts (or finds running) the bulkhead-switch of every switch network `vm` is on, with
    /// the ports of every configured VM on that network.
    fn ensure_switches(&self, vm: &VmConfig) -> Result<(), String> {
        let all: Vec<VmConfig> = self
            .order
            .iter()
            .filter_map(|n| self.vms.get(n).cloned())
            .collect();
        let networks = switch::networks(&all);
        let mut children = self.switches.lock().unwrap_or_else(|e| e.into_inner());
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        for n in &vm.spec.networks {
            let NetKind::Switch { network, .. } = &n.kind else {
                continue;
            };
            let ports = networks
                .get(network)
                .ok_or_else(|| format!("switch network {network:?} has no ports"))?;
            let started = switch::ensure_running(
                &switch::program(),
                network,
                ports,
                &self.env.dirs,
                SWITCH_START_TIMEOUT,
            )
            .map_err(|e| format!("VM {:?}: {e}", vm.name))?;
            children.extend(started);
        }
        Ok(())
    }

    /// `sched`, cut short by the session's end once it began.
    fn schedule(&self, sched: StopSchedule) -> StopSchedule {
        let session = *self.session_end.lock().unwrap_or_else(|e| e.into_inner());
        sched.no_later_than(session)
    }

    /// Waits until the monitor `id` is gone or the step `by` of `sched` (as the session's end
    /// may cut it) has passed; `true` when it is gone.
    fn wait_gone(
        &self,
        name: &str,
        id: ProcessId,
        sched: StopSchedule,
        by: fn(&StopSchedule) -> Instant,
    ) -> bool {
        loop {
            self.reap(name);
            if !id.alive() {
                return true;
            }
            if Instant::now() >= by(&self.schedule(sched)) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the monitor (it stops the VMM and cleans up); when it is still there at
    /// `sched`'s term step, SIGKILL to it and to the VMM and helpers.
    fn terminate(&self, name: &str, id: ProcessId, sched: StopSchedule) {
        if id.alive() {
            let _ = signal::kill(Pid::from_raw(id.pid), Signal::SIGTERM);
        }
        if !self.wait_gone(name, id, sched, |s| s.term_by) {
            tracing::warn!("VM {name}: its monitor ignored SIGTERM; killing it and its VMM");
            self.kill_now(name, Some(id));
            self.wait_gone(name, id, sched, |s| s.kill_by);
        }
        self.reap(name);
    }

    /// SIGKILL to the monitor, the VMM and the helpers, without waiting.
    fn kill_now(&self, name: &str, id: Option<ProcessId>) {
        if let Some(id) = id.filter(ProcessId::alive) {
            let _ = signal::kill(Pid::from_raw(id.pid), Signal::SIGKILL);
        }
        self.kill_vm_processes(name);
    }

    /// Reaps the monitor if this manager started it and it exited.
    fn reap(&self, name: &str) {
        let mut slots = self.lock();
        if let Some(s) = slots.get_mut(name) {
            if let Some(c) = s.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    s.child = None;
                }
            }
        }
    }

    /// Stops `name`: the agent powers the guest off; after `stop-timeout` it is terminated.
    /// `Ok(false)` when it was not running.
    pub fn stop(&self, name: &str) -> Result<bool, String> {
        self.stop_for(name, StopReason::Requested)
    }

    fn stop_for(&self, name: &str, reason: StopReason) -> Result<bool, String> {
        self.vm(name)?;
        let Some((id, ep)) = self.begin_stop(name) else {
            return Ok(false);
        };
        let sched = StopSchedule::requested(Duration::from_secs(self.settings.stop_timeout.0));
        let t = Instant::now();
        if let Some(ep) = &ep {
            self.poweroff(name, ep, sched);
        }
        if let Some(id) = id {
            if self.wait_gone(name, id, sched, |s| s.poweroff_by) {
                tracing::info!("VM {name}: powered off in {} ms", t.elapsed().as_millis());
            } else {
                tracing::warn!("VM {name}: did not power off in time; terminating it");
            }
            self.terminate(name, id, sched);
        }
        self.finish(name, reason);
        Ok(true)
    }

    /// Marks a running VM as stopping (after a start or stop under way ends); its monitor and
    /// agent. `None` when it is not running.
    fn begin_stop(&self, name: &str) -> Option<(Option<ProcessId>, Option<Endpoint>)> {
        let mut slots = self.lock();
        loop {
            match slots.get(name).map_or(Phase::Stopped, Slot::phase) {
                Phase::Stopped => return None,
                Phase::Running => break,
                Phase::Starting | Phase::Stopping => {
                    slots = self.changed.wait(slots).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        let s = slots.get_mut(name)?;
        s.phase = Some(Phase::Stopping);
        let found = (s.monitor, s.endpoint.clone());
        drop(slots);
        self.changed.notify_all();
        Some(found)
    }

    /// Asks the guest's agent to power off, by `sched`'s poweroff step at the latest.
    fn poweroff(&self, name: &str, ep: &Endpoint, sched: StopSchedule) {
        let call =
            Call::new(name, "poweroff", agent::CALL_TIMEOUT).by(self.schedule(sched).poweroff_by);
        if let Err(e) = Connection::open(ep, call).and_then(Connection::poweroff) {
            tracing::info!("{}; terminating", e.in_vm(name));
        }
    }

    /// Marks a VM stopped after its monitor ended, cleans up and reports it.
    fn finish(&self, name: &str, reason: StopReason) {
        let paths = self.env.dirs.vm(name);
        let plan = monitor::read_json::<LaunchPlan>(&paths.plan());
        let report = monitor::read_json::<ExitReport>(&paths.exit_file());
        self.cleanup_leftovers(name, plan.as_ref());
        {
            let mut slots = self.lock();
            if let Some(s) = slots.get_mut(name) {
                let mut child = s.child.take();
                if let Some(c) = child.as_mut() {
                    let _ = c.wait();
                }
                *s = Slot {
                    last_exit: report.map(|r| r.reason),
                    ..Slot::default()
                };
            }
        }
        self.changed.notify_all();
        (self.events)(VmEvent::Stopped {
            vm: name.into(),
            reason,
        });
    }

    /// Runs `argv` in `name`, starting the VM first if needed. With `output`, streams the
    /// command's output there and returns how it ended; without, returns once it started.
    pub fn run(
        &self,
        name: &str,
        argv: &[String],
        env: &[(String, String)],
        output: Option<OutputSink>,
    ) -> Result<(u32, Option<Exit>), String> {
        if argv.is_empty() {
            return Err("no command given".into());
        }
        self.start(name)?;
        let ep = self
            .lock()
            .get(name)
            .and_then(|s| s.endpoint.clone())
            .ok_or_else(|| format!("VM {name:?} stopped before the command could start"))?;
        // A re-adopted VM may still be booting: give its agent the start timeout.
        let deadline = Instant::now() + Duration::from_secs(self.settings.start_timeout.0);
        let conn = loop {
            // One deadline for connect, handshake, request and the reply that it started.
            match Connection::open(&ep, Call::new(name, "run", agent::CALL_TIMEOUT)) {
                Ok(c) => break c,
                Err(agent::AgentError::Unreachable(m)) if Instant::now() < deadline => {
                    if self.lock().get(name).map(Slot::phase) != Some(Phase::Running) {
                        return Err(format!("VM {name:?} stopped: {m}"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.in_vm(name)),
            }
        };
        conn.run(argv, env, output).map_err(|e| e.in_vm(name))
    }

    /// Starts the VMs marked `autostart`, each on its own thread.
    pub fn autostart(self: &Arc<Self>) {
        for name in &self.order {
            if self.vms.get(name).is_some_and(|v| v.spec.autostart) {
                let m = self.clone();
                let name = name.clone();
                std::thread::spawn(move || {
                    if let Err(e) = m.start(&name) {
                        tracing::warn!("autostart of VM {name} failed: {e}");
                    }
                });
            }
        }
    }

    /// Stops every VM (the session is ending), in parallel, and their switches; returns within
    /// [`SESSION_STOP_BOUND`] in all. A VM whose stop is still under way by then (a guest or
    /// a process that does not go) has its monitor, VMM and helpers killed.
    pub fn stop_all(self: &Arc<Self>) {
        let start = Instant::now();
        let sched = StopSchedule::session(start);
        *self.session_end.lock().unwrap_or_else(|e| e.into_inner()) = Some(sched);
        self.closing.store(true, Ordering::SeqCst);
        self.changed.notify_all();
        let (tx, rx) = std::sync::mpsc::channel();
        for name in &self.order {
            let (m, name, tx) = (self.clone(), name.clone(), tx.clone());
            let spawned = std::thread::Builder::new().spawn(move || {
                let _ = m.stop(&name);
                let _ = tx.send(name);
            });
            if let Err(e) = spawned {
                tracing::error!("cannot start a thread to stop a VM: {e}");
            }
        }
        drop(tx);
        let mut left: BTreeSet<String> = self.order.iter().cloned().collect();
        let give_up = start + SESSION_STOP_BOUND * 95 / 100;
        while !left.is_empty() {
            let wait = give_up.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(name) => {
                    left.remove(&name);
                }
                Err(_) => break,
            }
        }
        for name in &left {
            tracing::warn!("VM {name}: still stopping at the session's end; killing it");
            let monitor = self.lock().get(name).and_then(|s| s.monitor);
            self.kill_now(name, monitor);
        }
        self.stop_switches(start + SESSION_STOP_BOUND);
    }

    /// The VMs are down: their networks' switches go too, by `deadline`.
    fn stop_switches(&self, deadline: Instant) {
        let all: Vec<VmConfig> = self.vms.values().cloned().collect();
        for network in switch::networks(&all).keys() {
            let grace = deadline.saturating_duration_since(Instant::now());
            switch::stop(&self.env.dirs, network, grace);
        }
        let mut children = self.switches.lock().unwrap_or_else(|e| e.into_inner());
        for mut c in children.drain(..) {
            let _ = c.try_wait();
        }
    }

    /// What process `pid` (a socket peer's, from the kernel) is to VM `name`: its VMM, one of
    /// its helpers, or nothing of it (also when the VM does not run).
    pub fn peer_role(&self, name: &str, pid: i32) -> monitor::PeerRole {
        let running = self.lock().get(name).is_some_and(|s| s.monitor.is_some());
        if !running {
            return monitor::PeerRole::Other;
        }
        monitor::read_json::<MonitorState>(&self.env.dirs.vm(name).state_file())
            .map_or(monitor::PeerRole::Other, |st| st.role_of(pid))
    }

    /// The console socket of a running VM (QEMU) for vm-shell.
    pub fn console(&self, name: &str) -> Result<PathBuf, String> {
        self.vm(name)?;
        let slots = self.lock();
        let s = slots.get(name).ok_or("unknown VM")?;
        if s.phase() != Phase::Running {
            return Err(format!(
                "VM {name:?} is not running; start it with vm-start {name}"
            ));
        }
        if s.vmm.as_deref() != Some("qemu") {
            return Err(format!(
                "VM {name:?} runs under crosvm, whose console is its log ({}); an interactive \
                 crosvm console is not done yet",
                self.env.dirs.vm(name).log("console").display()
            ));
        }
        Ok(self.env.dirs.vm(name).console())
    }

    /// One watcher pass over VM `name`: has it crashed, is it idle?
    fn watch_vm(self: &Arc<Self>, name: &str) {
        match self.look_at(name) {
            Seen::Nothing => {}
            Seen::Crashed => self.crashed(name),
            Seen::IdleCheckDue { ep, after } => self.idle_check(name, &ep, after),
        }
    }

    /// What the watcher of `name` has to do now.
    fn look_at(&self, name: &str) -> Seen {
        let mut slots = self.lock();
        let Some(s) = slots.get_mut(name) else {
            return Seen::Nothing;
        };
        if s.phase() != Phase::Running {
            return Seen::Nothing;
        }
        if let Some(c) = s.child.as_mut() {
            let _ = c.try_wait();
        }
        if s.monitor.is_some_and(|m| !m.alive()) {
            s.phase = Some(Phase::Stopping);
            return Seen::Crashed;
        }
        let after = self.vms.get(name).and_then(|v| v.spec.auto_shutdown);
        let (Some(after), Some(ep)) = (after, &s.endpoint) else {
            return Seen::Nothing;
        };
        let due = s
            .last_idle_check
            .is_none_or(|t| t.elapsed() >= IDLE_CHECK_INTERVAL);
        if !due || self.closing.load(Ordering::SeqCst) {
            return Seen::Nothing;
        }
        s.last_idle_check = Some(Instant::now());
        Seen::IdleCheckDue {
            ep: ep.clone(),
            after: after.0,
        }
    }

    fn crashed(&self, name: &str) {
        let paths = self.env.dirs.vm(name);
        let why = monitor::read_json::<ExitReport>(&paths.exit_file())
            .map(|r| r.reason)
            .unwrap_or_else(|| "its VM monitor was killed".into());
        tracing::warn!("VM {name} stopped unexpectedly: {why}");
        self.finish(name, StopReason::Crashed(why));
    }

    /// Asks the agent whether the VM is idle (by the call's deadline) and shuts it down if so.
    fn idle_check(self: &Arc<Self>, name: &str, ep: &Endpoint, after: u64) {
        let call = Call::new(name, "status", agent::CALL_TIMEOUT);
        let idle = match Connection::open(ep, call).and_then(Connection::status) {
            Ok(st) => st.running == 0 && st.idle_secs >= after,
            Err(e) => {
                tracing::debug!("{}", e.in_vm(name));
                false
            }
        };
        if idle {
            tracing::info!("VM {name}: idle for {after} s, shutting it down");
            let (m, name) = (self.clone(), name.to_owned());
            std::thread::spawn(move || {
                let _ = m.stop_for(&name, StopReason::Idle);
            });
        }
    }
}

/// What a watcher pass found.
enum Seen {
    Nothing,
    Crashed,
    IdleCheckDue { ep: Endpoint, after: u64 },
}

/// Watches VM `name` until the manager is gone: one thread per VM, so a guest that is slow to
/// answer its idle check holds up no other VM's watch.
fn watch(m: Weak<Manager>, name: &str) {
    loop {
        std::thread::sleep(WATCH_INTERVAL);
        let Some(m) = m.upgrade() else {
            return;
        };
        m.watch_vm(name);
    }
}

fn endpoint(plan: &LaunchPlan) -> Endpoint {
    match &plan.hybrid_vsock {
        Some(p) => Endpoint::Hybrid(p.clone()),
        None => Endpoint::Vsock(plan.cid),
    }
}

fn vmm_name(plan: &LaunchPlan) -> String {
    match plan.vmm {
        plan::Vmm::Qemu => "qemu".into(),
        plan::Vmm::Crosvm => "crosvm".into(),
    }
}

/// Whether `pid` runs in (or refers to) the VM's runtime dir: its working directory is it (the
/// monitor starts every helper and the VMM there).
fn is_ours(pid: i32, runtime: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == runtime)
}
