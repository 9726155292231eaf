//! The per-VM monitor process (`bulkhead-vm-monitor CONTROL_DIR`).
//!
//! The compositor starts one monitor per running VM, in its own session and process group, so
//! the VM outlives a compositor crash. The monitor prepares what the plan says (scratch disk,
//! home, taps), starts each helper and then the VMM in a jail of its own (`crate::jail`, with
//! the view `crate::confine` builds from the plan: its VM's runtime dir and declared files,
//! nothing else of the host), waits, and cleans up when the VMM ends: helpers stopped, scratch
//! disk deleted, taps it created removed, and `exit.json` in the control dir saying why. The
//! monitor itself stays unconfined and trusts nothing a jailed process can write.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::plan::{find_program, LaunchPlan, PassFd, ProcessSpec, Vmm};

/// What the monitor records once the VMM runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorState {
    pub vmm: Vmm,
    pub vmm_pid: i32,
    pub helper_pids: Vec<i32>,
    pub started_unix_ms: u64,
    /// The helpers by name ("vsock", "wl-bridge", "virtiofsd-home", …), pids as in
    /// `helper_pids` (absent in the state of a monitor from before it was recorded).
    #[serde(default)]
    pub helpers: Vec<(String, i32)>,
}

/// What a process is to a running VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRole {
    /// The VMM itself or a process under it (crosvm runs its devices in child processes).
    Vmm,
    /// One of its helpers, by name.
    Helper(String),
    /// Nothing of this VM.
    Other,
}

impl MonitorState {
    /// What `pid` is to this VM: its VMM (or a descendant of it), one of its helpers, or
    /// neither. Pids come from the kernel (a socket peer's credentials), never from a guest.
    pub fn role_of(&self, pid: i32) -> PeerRole {
        if let Some((name, _)) = self.helpers.iter().find(|(_, p)| *p == pid) {
            return PeerRole::Helper(name.clone());
        }
        // Up the parent chain (bounded: a chain longer than this is no device process).
        let mut p = pid;
        for _ in 0..8 {
            if p == self.vmm_pid {
                return PeerRole::Vmm;
            }
            match parent_of(p) {
                Some(parent) if parent > 1 => p = parent,
                _ => break,
            }
        }
        PeerRole::Other
    }
}

/// The parent of `pid` (field 4 of /proc/PID/stat).
fn parent_of(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Why a VM ended, written by the monitor as its last act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitReport {
    pub reason: String,
    /// The VMM's exit code, when it exited.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Whether the monitor was asked to stop (SIGTERM) before the VMM ended.
    pub requested: bool,
}

/// Who started the monitor, for re-adoption: its pid and kernel start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    pub fn of(pid: i32) -> Option<ProcessId> {
        proc_start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    /// Whether this very process still runs (not a zombie, not a reused pid).
    pub fn alive(&self) -> bool {
        proc_stat(self.pid)
            .is_some_and(|(state, start)| start == self.start_time && state != 'Z' && state != 'X')
    }
}

/// (state, start time) from /proc/PID/stat.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 of the whole line is the start time; `rest` starts at field 3.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn proc_start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, s)| s)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes `value` as JSON to `path` atomically (temp file + rename). The temp file is created
/// anew, never through a symlink or into a file someone left there.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let _ = fs::remove_file(&tmp);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(&data)?;
    }
    fs::rename(&tmp, path)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let data = fs::read(path).ok()?;
    if data.len() > 1 << 20 {
        return None;
    }
    serde_json::from_slice(&data).ok()
}

/// Makes a child process start with no blocked signals. The compositor blocks SIGTERM, SIGINT
/// and SIGHUP in all its threads (it reads them from a signalfd), and a child inherits the mask:
/// without this, a monitor, a helper or an app would ignore SIGTERM.
pub fn unblock_signals_in_child(cmd: &mut Command) {
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe; the closure runs in the forked
    // child before exec and touches nothing of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A command for a long-lived process of the VM manager (a VM's monitor, a network's switch):
/// stdout and stderr into `log`, no blocked signals, none of the session's Wayland or IPC
/// sockets in its environment, and a session of its own so a signal to the compositor's
/// process group (Ctrl-C in a terminal) does not reach it.
pub fn detached_command(program: &std::ffi::OsStr, log: &Path) -> Result<Command, String> {
    let out = open_log(log)?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("BULKHEAD_SOCKET");
    unblock_signals_in_child(&mut cmd);
    // SAFETY: setsid() is async-signal-safe; the closure runs in the forked child before exec
    // and touches nothing of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// The monitor's main: never returns an error to a caller that could act on it, so it reports
/// through `exit.json` and the exit code.
pub fn run(control_dir: &Path) -> i32 {
    // Whatever mask we were started with, stop requests must reach us.
    let _ = signal::sigprocmask(
        signal::SigmaskHow::SIG_SETMASK,
        Some(&signal::SigSet::empty()),
        None,
    );
    let plan_path = control_dir.join("plan.json");
    let Some(plan) = read_json::<LaunchPlan>(&plan_path) else {
        eprintln!(
            "bulkhead-vm-monitor: no readable plan at {}",
            plan_path.display()
        );
        return 2;
    };
    let mut m = Monitor {
        plan,
        console: None,
        created_taps: Vec::new(),
        helpers: Vec::new(),
    };
    let report = m.start_and_wait();
    let t = Instant::now();
    m.cleanup();
    eprintln!(
        "bulkhead-vm-monitor: {}: cleaned up in {} ms",
        m.plan.vm,
        t.elapsed().as_millis()
    );
    eprintln!("bulkhead-vm-monitor: {}: {}", m.plan.vm, report.reason);
    let exit_path = m.plan.control_dir.join("exit.json");
    let _ = write_json(&exit_path, &report);
    if report.code == Some(0) || report.requested {
        0
    } else {
        1
    }
}

struct Monitor {
    plan: LaunchPlan,
    /// The read end of the VMM's console pipe, until its pump starts.
    console: Option<std::os::fd::OwnedFd>,
    created_taps: Vec<String>,
    helpers: Vec<(String, Pid)>,
}

impl Monitor {
    fn fail(&self, reason: String) -> ExitReport {
        ExitReport {
            reason,
            code: None,
            signal: None,
            requested: STOP.load(Ordering::SeqCst),
        }
    }

    fn start_and_wait(&mut self) -> ExitReport {
        let _ = nix::unistd::setsid();
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; no
        // SA_RESTART, so a blocking waitpid returns EINTR and the loop sees the flag.
        unsafe {
            let action = signal::SigAction::new(
                SigHandler::Handler(on_stop),
                signal::SaFlags::empty(),
                signal::SigSet::empty(),
            );
            let _ = signal::sigaction(Signal::SIGTERM, &action);
            let _ = signal::sigaction(Signal::SIGINT, &action);
            let _ = signal::signal(Signal::SIGHUP, SigHandler::SigIgn);
        }
        for input in &self.plan.inputs {
            if !input.exists() {
                return self.fail(format!(
                    "{} does not exist (named in the VM's config)",
                    input.display()
                ));
            }
        }
        if let Err(e) = self.prepare() {
            return self.fail(e);
        }
        let helpers = self.plan.helpers.clone();
        for h in &helpers {
            match self.spawn(h) {
                Ok(pid) => self.helpers.push((h.name.clone(), pid)),
                Err(e) => return self.fail(e),
            }
            if let Some(sock) = &h.wait_for {
                if let Err(e) = self.wait_for_socket(h, sock) {
                    return self.fail(e);
                }
            }
        }
        let vmm_spec = self.plan.vmm_process.clone();
        let vmm = match self.spawn(&vmm_spec) {
            Ok(pid) => pid,
            Err(e) => return self.fail(e),
        };
        // Only now a thread: every confined process is cloned from a single-threaded monitor.
        if let Some(r) = self.console.take() {
            let path = self.plan.state_dir.join("console.log");
            let pump = std::thread::Builder::new()
                .name("console".into())
                .spawn(move || pump_console(File::from(r), &path, CONSOLE_LOG_MAX));
            if let Err(e) = pump {
                eprintln!("bulkhead-vm-monitor: no console log: {e}");
            }
        }
        let state = MonitorState {
            vmm: self.plan.vmm,
            vmm_pid: vmm.as_raw(),
            helper_pids: self.helpers.iter().map(|(_, p)| p.as_raw()).collect(),
            started_unix_ms: now_ms(),
            helpers: self
                .helpers
                .iter()
                .map(|(n, p)| (n.clone(), p.as_raw()))
                .collect(),
        };
        let _ = write_json(&self.plan.control_dir.join("state.json"), &state);
        self.wait(vmm)
    }

    /// Waits for the VMM; a helper's death or a stop request ends it.
    fn wait(&mut self, vmm: Pid) -> ExitReport {
        let mut sent_term = false;
        loop {
            if STOP.load(Ordering::SeqCst) && !sent_term {
                let _ = signal::kill(vmm, Signal::SIGTERM);
                sent_term = true;
            }
            match waitpid(None, None) {
                Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)))
                    if pid == vmm =>
                {
                    return self.vmm_ended(status)
                }
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => {
                    if let Some(pos) = self.helpers.iter().position(|(_, p)| *p == pid) {
                        let (name, _) = self.helpers.remove(pos);
                        // Helpers also end when the VMM closes their socket: if the VMM ends
                        // right after, that is the real story.
                        let deadline = Instant::now() + Duration::from_secs(1);
                        while Instant::now() < deadline {
                            match waitpid(vmm, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                                Ok(WaitStatus::StillAlive) => {
                                    std::thread::sleep(Duration::from_millis(10))
                                }
                                Ok(status) => return self.vmm_ended(status),
                                Err(_) => break,
                            }
                        }
                        // The VM cannot work without it: end the VM.
                        let _ = signal::kill(vmm, Signal::SIGKILL);
                        let _ = waitpid(vmm, None);
                        return self.fail(format!(
                            "helper {name} ended unexpectedly (see its log in {})",
                            self.plan.state_dir.display()
                        ));
                    }
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return self.fail(format!("waiting for the VMM failed: {e}")),
            }
        }
    }

    fn vmm_ended(&self, status: WaitStatus) -> ExitReport {
        let name = &self.plan.vmm_process.name;
        let requested = STOP.load(Ordering::SeqCst);
        match status {
            WaitStatus::Exited(_, 0) => ExitReport {
                reason: format!("the guest powered off ({name} exited)"),
                code: Some(0),
                signal: None,
                requested,
            },
            WaitStatus::Exited(_, code) => ExitReport {
                reason: format!("{name} exited with status {code} (see {name}.log)"),
                code: Some(code),
                signal: None,
                requested,
            },
            WaitStatus::Signaled(_, sig, _) => ExitReport {
                reason: format!("{name} was killed by {sig}"),
                code: None,
                signal: Some(sig as i32),
                requested,
            },
            other => self.fail(format!("{name} ended: {other:?}")),
        }
    }

    fn prepare(&mut self) -> Result<(), String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.plan.state_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.plan.state_dir.display()))?;
        if let Some(s) = &self.plan.scratch {
            make_scratch(&s.path, s.size)?;
        }
        if let Some(h) = &self.plan.home {
            make_home(&h.path, h.template.as_deref())?;
        }
        for tap in self.plan.taps.clone() {
            self.setup_tap(&tap)?;
        }
        Ok(())
    }

    fn setup_tap(&mut self, tap: &crate::plan::TapSetup) -> Result<(), String> {
        let exists = Path::new("/sys/class/net").join(&tap.name).exists();
        if !exists {
            let uid = nix::unistd::getuid().to_string();
            ip(&[
                "tuntap", "add", "dev", &tap.name, "mode", "tap", "user", &uid,
            ])
            .map_err(|e| {
                format!(
                    "tap device {} does not exist and cannot be created ({e}); create it for \
                     this user (ip tuntap add dev {} mode tap user {uid}) or let the NixOS \
                     module do it",
                    tap.name, tap.name
                )
            })?;
            self.created_taps.push(tap.name.clone());
        }
        // A tap prepared by the system (the NixOS module, an admin) may already be as the plan
        // wants it: then nothing is changed, which an unprivileged user could not do anyway.
        let sys = Path::new("/sys/class/net").join(&tap.name);
        if let Some(addr) = &tap.host_address {
            if !has_address(&tap.name, addr) {
                ip(&["addr", "replace", addr, "dev", &tap.name])
                    .map_err(|e| format!("cannot give {} the address {addr}: {e}", tap.name))?;
            }
        }
        if let Some(br) = &tap.bridge {
            let master = fs::read_link(sys.join("master")).ok();
            if master.as_deref().and_then(Path::file_name) != Some(std::ffi::OsStr::new(br)) {
                ip(&["link", "set", &tap.name, "master", br])
                    .map_err(|e| format!("cannot add {} to bridge {br}: {e}", tap.name))?;
            }
        }
        if !link_is_up(&sys) {
            ip(&["link", "set", &tap.name, "up"])
                .map_err(|e| format!("cannot bring {} up: {e}", tap.name))?;
        }
        Ok(())
    }

    /// Starts `p` confined to its view of the host (see `confine`), its output in its log.
    fn spawn(&mut self, p: &ProcessSpec) -> Result<Pid, String> {
        let log_path = self.plan.state_dir.join(format!("{}.log", p.name));
        let log = open_log(&log_path)?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let Some(program) = p.argv.first() else {
            return Err(format!("{}: empty command", p.name));
        };
        let resolved = find_program(program)
            .and_then(|p| p.canonicalize().ok())
            .ok_or_else(|| {
                format!(
                    "cannot start {}: {program} not found; run .ci/install-deps or install it",
                    p.name
                )
            })?;
        let view = crate::confine::view(&self.plan, p, &resolved);
        let mut fds = Vec::new();
        for f in &p.fds {
            fds.push(match f {
                PassFd::Tap(name) => crate::jail::open_tap(name)?,
                PassFd::ConsoleLog => {
                    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                        .map_err(|e| format!("a pipe for the console log: {e}"))?;
                    self.console = Some(r);
                    w
                }
            });
        }
        crate::jail::spawn(crate::jail::Launch {
            program: &resolved,
            argv: &p.argv,
            env: &p.env,
            cwd: &self.plan.runtime_dir,
            view: &view,
            stdio: [crate::jail::dev_null()?, log.into(), log2.into()],
            fds,
            keep_capabilities: p.keep_capabilities,
        })
        .map_err(|e| format!("cannot start {} ({program}) confined: {e}", p.name))
    }

    fn wait_for_socket(&self, p: &ProcessSpec, sock: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let pid = self
            .helpers
            .iter()
            .find(|(n, _)| *n == p.name)
            .map(|(_, pid)| *pid);
        while !sock.exists() {
            if let Some(pid) = pid {
                if let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
                    waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
                {
                    return Err(format!(
                        "{} exited during start (see {})",
                        p.name,
                        self.plan
                            .state_dir
                            .join(format!("{}.log", p.name))
                            .display()
                    ));
                }
            }
            if Instant::now() > deadline || STOP.load(Ordering::SeqCst) {
                return Err(format!("{} did not create {}", p.name, sock.display()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Stops helpers, deletes the scratch disk and sockets, removes taps it created.
    fn cleanup(&mut self) {
        // Helpers keep no state of their own once the VMM is gone, and each is PID 1 of its
        // namespace, which ignores SIGTERM unless it installed a handler: SIGKILL at once.
        for (_, pid) in &self.helpers {
            let _ = signal::kill(*pid, Signal::SIGKILL);
        }
        for (_, pid) in &self.helpers {
            let _ = waitpid(*pid, None);
        }
        self.helpers.clear();
        if let Some(s) = &self.plan.scratch {
            let _ = fs::remove_file(&s.path);
        }
        for tap in &self.created_taps {
            let _ = ip(&["link", "delete", tap]);
        }
        remove_runtime_files(&self.plan.runtime_dir);
    }
}

/// How much of a VM's console one log file holds before it is rotated to `.log.old`.
pub const CONSOLE_LOG_MAX: u64 = 4 << 20;

/// Copies the VMM's console output into `path`, starting a new file (the previous one kept as
/// `.log.old`) whenever it reaches `max` bytes, until the VMM closes the pipe.
pub fn pump_console(mut from: impl std::io::Read, path: &Path, max: u64) {
    let max = max.max(1);
    let mut out = match open_log(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bulkhead-vm-monitor: the console log: {e}");
            return;
        }
    };
    let mut written = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if written >= max {
                match open_log(path) {
                    Ok(f) => out = f,
                    Err(e) => {
                        eprintln!("bulkhead-vm-monitor: rotating the console log: {e}");
                        return;
                    }
                }
                written = 0;
            }
            let take = chunk
                .len()
                .min(usize::try_from(max - written).unwrap_or(usize::MAX));
            if out.write_all(&chunk[..take]).is_err() {
                return;
            }
            written += take as u64;
            chunk = &chunk[take..];
        }
    }
}

/// Opens a helper's log for writing, the previous start's kept as `.log.old`. Never through a
/// symlink and never an existing file: whatever is at the path is moved aside first.
fn open_log(path: &Path) -> Result<File, String> {
    let _ = fs::rename(path, path.with_extension("log.old"));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Removes what a run leaves in a VM's runtime dir (never the Wayland socket, which belongs to
/// the compositor).
pub fn remove_runtime_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with("vsock")
            || name.starts_with("fs-")
            || name.starts_with("switch-")
            || name.starts_with("passt-")
            || matches!(name.as_str(), "console.sock" | "qmp.sock" | "crosvm.sock");
        if ours {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Whether interface `dev` already has `cidr` (e.g. "10.0.0.1/24"), from `ip -o addr show`.
fn has_address(dev: &str, cidr: &str) -> bool {
    Command::new("ip")
        .args(["-o", "addr", "show", "dev", dev])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .any(|w| w == cidr)
        })
}

/// Whether the interface at `/sys/class/net/<dev>` is administratively up (IFF_UP).
fn link_is_up(sys: &Path) -> bool {
    fs::read_to_string(sys.join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & 0x1 != 0)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A fresh, sparse ext4 scratch disk: the guest's root overlay upper layer for this start.
fn make_scratch(path: &Path, size: u64) -> Result<(), String> {
    let _ = fs::remove_file(path);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create the scratch disk {}: {e}", path.display()))?;
    f.set_len(size)
        .map_err(|e| format!("cannot size the scratch disk {}: {e}", path.display()))?;
    drop(f);
    let out = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run mke2fs (install e2fsprogs): {e}"))?;
    if !out.status.success() {
        let _ = fs::remove_file(path);
        return Err(format!(
            "mke2fs failed on the scratch disk: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Creates the home on first start, from the template when there is one.
fn make_home(path: &Path, template: Option<&Path>) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    // Build it next to its final place and rename, so a failed copy leaves no half home.
    let tmp = parent.join(".home.new");
    let _ = fs::remove_dir_all(&tmp);
    match template {
        Some(t) => {
            let out = Command::new("cp")
                .arg("-a")
                .arg("--")
                .arg(t)
                .arg(&tmp)
                .output()
                .map_err(|e| format!("cannot run cp: {e}"))?;
            if !out.status.success() {
                let _ = fs::remove_dir_all(&tmp);
                return Err(format!(
                    "cannot copy the home template {}: {}",
                    t.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        None => fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?,
    }
    fs::rename(&tmp, path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_told_by_its_pid_and_its_parents() {
        // This test process stands for the VMM; a child of it for a device process (crosvm
        // forks those); another child is a helper by name.
        let me = std::process::id() as i32;
        let mut device = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let mut helper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let st = MonitorState {
            vmm: Vmm::Qemu,
            vmm_pid: me,
            helper_pids: vec![helper.id() as i32],
            started_unix_ms: 0,
            helpers: vec![("wl-bridge".into(), helper.id() as i32)],
        };
        assert_eq!(st.role_of(me), PeerRole::Vmm);
        assert_eq!(st.role_of(device.id() as i32), PeerRole::Vmm);
        assert_eq!(
            st.role_of(helper.id() as i32),
            PeerRole::Helper("wl-bridge".into())
        );
        // Init, and a pid that names no process: nothing of the VM.
        assert_eq!(st.role_of(1), PeerRole::Other);
        assert_eq!(st.role_of(i32::MAX), PeerRole::Other);
        let _ = (device.kill(), helper.kill(), device.wait(), helper.wait());
    }

    #[test]
    fn a_state_from_before_helper_names_still_reads() {
        let old = r#"{"vmm":"qemu","vmm_pid":7,"helper_pids":[8],"started_unix_ms":1}"#;
        let st: MonitorState = serde_json::from_str(old).expect("old state");
        assert!(st.helpers.is_empty());
        assert_eq!(st.helper_pids, vec![8]);
    }

    #[test]
    fn an_interface_already_as_planned_is_recognised() {
        // lo is up with 127.0.0.1/8 on every Linux machine: a prepared tap is read the same way.
        assert!(has_address("lo", "127.0.0.1/8"));
        assert!(!has_address("lo", "127.0.0.2/8"));
        assert!(!has_address("no-such-device0", "127.0.0.1/8"));
        assert!(link_is_up(Path::new("/sys/class/net/lo")));
        assert!(!link_is_up(Path::new("/sys/class/net/no-such-device0")));
    }

    #[test]
    fn process_identity_survives_odd_names_and_detects_exit() {
        let me = ProcessId::of(std::process::id() as i32).expect("own stat");
        assert!(me.alive());
        // A name with spaces and parentheses must not confuse the stat parser (the kernel takes
        // the name from the executable's file name).
        let dir = tempfile::tempdir().expect("tempdir");
        let odd = dir.path().join("odd ) name (");
        std::fs::copy("/bin/sleep", &odd).expect("copy sleep");
        let mut child = Command::new(&odd).arg("30").spawn().expect("spawn");
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(100));
        let id = ProcessId::of(pid).expect("child stat");
        assert!(id.alive());
        // A reused pid (another start time) is not the same process.
        let other = ProcessId {
            pid,
            start_time: id.start_time + 1,
        };
        assert!(!other.alive());
        child.kill().expect("kill");
        // Not reaped yet: a zombie counts as gone.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!id.alive());
        let _ = child.wait();
    }

    #[test]
    fn the_console_log_is_capped_and_rotated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("console.log");
        std::fs::write(&path, "the previous start").expect("old log");
        // A guest that prints 10 KiB with a 4 KiB cap: the last file holds at most the cap,
        // the one before it is kept, nothing grows past the cap.
        let spew: Vec<u8> = (0..10 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        pump_console(&spew[..], &path, 4096);
        let last = std::fs::read(&path).expect("log");
        let before = std::fs::read(path.with_extension("log.old")).expect("old");
        assert!(
            last.len() <= 4096 && before.len() <= 4096,
            "{} {}",
            last.len(),
            before.len()
        );
        assert!(
            spew.ends_with(&last),
            "the newest output is in the newest file"
        );
    }

    #[test]
    fn json_is_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "untouched").expect("target");
        let p = dir.path().join("state.json");
        std::os::unix::fs::symlink(&target, p.with_extension("json.tmp")).expect("symlink");
        write_json(&p, &1u32).expect("write");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "untouched");
        assert_eq!(read_json::<u32>(&p), Some(1));
    }

    #[test]
    fn state_files_roundtrip_and_junk_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("exit.json");
        let r = ExitReport {
            reason: "qemu was killed by SIGKILL".into(),
            code: None,
            signal: Some(9),
            requested: false,
        };
        write_json(&p, &r).expect("write");
        assert_eq!(read_json::<ExitReport>(&p), Some(r));
        std::fs::write(&p, b"{not json").expect("write");
        assert_eq!(read_json::<ExitReport>(&p), None);
    }
}
