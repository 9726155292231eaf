//! Test harness: the real `bulkhead` binary on the headless backend, each instance in its own
//! private XDG_RUNTIME_DIR, with real clients started against its sockets. Everything
//! started here is killed when its guard drops, also when a test fails.

#![allow(dead_code)]

pub mod client;
pub mod vms;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_compositor::ipc;
use bulkhead_ipc::{Reply, Request, Response, WindowInfo};

/// Generous: the CI machine has 2 cores and may be busy.
pub const TIMEOUT: Duration = Duration::from_secs(40);

pub const TWO_VMS: &str = r##"
[[vm]]
name = "work"
color = "#3060ff"
[[vm]]
name = "banking"
color = "#2ecc71"

[keyboard]
repeat-rate = 0
"##;

pub const WORK: [u8; 3] = [0x30, 0x60, 0xff];
pub const BANKING: [u8; 3] = [0x2e, 0xcc, 0x71];
pub const HOST: [u8; 3] = [0x5a, 0x5a, 0x5a];

/// A running headless compositor.
pub struct Compositor {
    child: Child,
    pub dir: tempfile::TempDir,
    pub runtime: PathBuf,
    pub ipc: PathBuf,
    pub host_socket: PathBuf,
    log: PathBuf,
    /// Run clients as this user (uid, gid) when set.
    user: Option<(u32, u32)>,
    exe: PathBuf,
    extra: Vec<String>,
    x_display: Option<String>,
    /// PATH of the compositor process (and so of what it starts, Xwayland included).
    path: String,
    /// RLIMIT_NOFILE (soft and hard) of the compositor process, when set.
    nofile: Option<u64>,
}

/// Kills and reaps a child process on drop.
pub struct ChildGuard(pub Child, pub String);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Compositor {
    pub fn start(config: &str) -> Compositor {
        Self::start_with(config, None, &[])
    }

    /// Starts the compositor, optionally as another user (needs root), with extra args.
    pub fn start_with(config: &str, user: Option<(u32, u32)>, extra: &[&str]) -> Compositor {
        Self::launch(config, user, extra, None)
    }

    /// Starts the nested (winit) backend inside the X server at `display`.
    pub fn start_nested(config: &str, display: &str) -> Compositor {
        Self::launch(config, None, &[], Some(display))
    }

    /// Starts the compositor with at most `n` open files (soft and hard limit).
    pub fn start_with_fd_limit(config: &str, n: u64) -> Compositor {
        let mut c = Self::launch_stopped(config, None, &[], None);
        c.nofile = Some(n);
        c.spawn_compositor();
        c
    }

    /// Starts the compositor with `dir` first on its PATH (a newer Xwayland, say).
    pub fn start_with_path_first(config: &str, dir: &Path) -> Compositor {
        let mut c = Self::launch_stopped(config, None, &[], None);
        c.path = format!("{}:{}", dir.display(), c.path);
        c.spawn_compositor();
        c
    }

    fn launch(
        config: &str,
        user: Option<(u32, u32)>,
        extra: &[&str],
        x_display: Option<&str>,
    ) -> Compositor {
        let mut c = Self::launch_stopped(config, user, extra, x_display);
        c.spawn_compositor();
        c
    }

    /// Everything of `launch` but starting the process.
    fn launch_stopped(
        config: &str,
        user: Option<(u32, u32)>,
        extra: &[&str],
        x_display: Option<&str>,
    ) -> Compositor {
        let dir = tempfile::Builder::new()
            .prefix("bulkhead-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let runtime = dir.path().join("run");
        std::fs::create_dir(&runtime).expect("runtime dir");
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).expect("config");
        let log = dir.path().join("bulkhead.log");
        // BULKHEAD_TEST_BINARY runs the same tests against another build (a release build).
        let mut exe = std::env::var_os("BULKHEAD_TEST_BINARY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_bulkhead")));
        if let Some((uid, gid)) = user {
            reachable_by_others(Path::new(env!("CARGO_MANIFEST_DIR")), uid);
            // The build tree may not be reachable for another user: run a copy.
            let copy = dir.path().join("bulkhead");
            std::fs::copy(&exe, &copy).expect("copy binary");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            // The VM manager looks for its monitor and Wayland bridge next to itself.
            for helper in ["bulkhead-vm-monitor", "bulkhead-wl-bridge"] {
                let to = dir.path().join(helper);
                std::fs::copy(exe.with_file_name(helper), &to).expect("copy helper");
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            exe = copy;
            for p in [dir.path(), &runtime, &config_path] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
            }
        }
        let ipc = runtime.join("bulkhead/ipc.sock");
        // A placeholder child, replaced at once by spawn_compositor.
        let placeholder = Command::new("true").spawn().expect("spawn true");
        let mut c = Compositor {
            child: placeholder,
            dir,
            host_socket: PathBuf::new(),
            runtime,
            ipc,
            log,
            user,
            exe,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            x_display: x_display.map(str::to_string),
            path: tool_path(),
            nofile: None,
        };
        let _ = c.child.wait();
        c
    }

    /// Starts the compositor process (again, after [`Compositor::kill_hard`]) on the same
    /// runtime dir and config, and waits for its IPC socket.
    pub fn spawn_compositor(&mut self) {
        let dir = self.dir.path();
        let mut cmd = wrap_user(self.user, &self.exe);
        cmd.arg("--backend")
            .arg(if self.x_display.is_some() {
                "winit"
            } else {
                "headless"
            })
            .arg("--config")
            .arg(dir.join("config.toml"))
            .args(&self.extra)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("PATH", &self.path)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DISPLAY")
            .env_remove("BULKHEAD_SOCKET")
            // Named cursors from one known theme (install-deps installs it).
            .env("XCURSOR_THEME", "Adwaita")
            .env("XCURSOR_SIZE", "24")
            .env(
                "RUST_LOG",
                "warn,bulkhead_compositor=info,bulkhead_vmm=info",
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("bulkhead.out")).expect("out"))
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("log"),
            );
        if let Some(d) = &self.x_display {
            cmd.env("DISPLAY", d);
        }
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the closure only calls setrlimit(2), which is
            // async-signal-safe, and allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        self.child = cmd.spawn().expect("start bulkhead");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Response::Ok(_)) = ipc::request_within(&self.ipc, &Request::Version, TIMEOUT)
            {
                break;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "bulkhead exited during start ({status}):\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bulkhead did not open its IPC socket:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = std::fs::read_to_string(dir.join("bulkhead.out")).unwrap_or_default();
        let host = out
            .lines()
            .find_map(|l| l.strip_prefix("bulkhead: host socket "))
            .expect("host socket line");
        self.host_socket = PathBuf::from(host);
    }

    /// The compositor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the compositor with SIGKILL, as a crash would: its VMs keep running.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ends the session as a logout does (SIGTERM): VMs are stopped gracefully. Returns the
    /// compositor's exit status.
    pub fn end_session(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "bulkhead did not end the session in 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Processes (pids) whose working directory is inside this test's directory: VM monitors,
    /// VMMs and their helpers all run in their VM's runtime dir.
    pub fn leftover_processes(&self) -> Vec<i32> {
        let mine = std::process::id() as i32;
        let compositor = self.child.id() as i32;
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == mine || pid == compositor {
                continue;
            }
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            if zombie {
                continue;
            }
            if std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| cwd.starts_with(self.dir.path()))
            {
                out.push(pid);
            }
        }
        out
    }

    /// Runs one of the vm-* commands against this compositor: (exit code, stdout, stderr).
    pub fn vm_cli(&self, program: &str, args: &[&str]) -> (i32, String, String) {
        self.vm_cli_input(program, args, b"")
    }

    /// Like [`Compositor::vm_cli`], with `input` on the command's stdin.
    pub fn vm_cli_input(
        &self,
        program: &str,
        args: &[&str],
        input: &[u8],
    ) -> (i32, String, String) {
        let exe = Path::new(env!("CARGO_BIN_EXE_bulkhead")).with_file_name(program);
        assert!(
            exe.exists(),
            "{} is missing: build the workspace first (cargo build --workspace)",
            exe.display()
        );
        let mut cmd = wrap_user(self.user, &exe);
        let mut out = cmd
            .args(args)
            .env_clear()
            .env("PATH", tool_path())
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("BULKHEAD_SOCKET", &self.ipc)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        {
            use std::io::Write;
            let mut stdin = out.stdin.take().expect("stdin");
            let _ = stdin.write_all(input);
        }
        let out = out
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{program} failed: {e}"));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn vm_socket(&self, vm: &str) -> PathBuf {
        self.runtime.join("bulkhead/vms").join(vm).join("wayland-0")
    }

    /// The socket of `domain` ("host" or a VM name), or `domain` itself when it is an
    /// absolute path (a proxy's socket).
    pub fn socket(&self, domain: &str) -> PathBuf {
        if domain.starts_with('/') {
            PathBuf::from(domain)
        } else if domain == "host" {
            self.host_socket.clone()
        } else {
            self.vm_socket(domain)
        }
    }

    /// One IPC request; an error, never a hang, when no reply comes within [`TIMEOUT`].
    pub fn try_request(&self, req: &Request) -> Result<Response, String> {
        ipc::request_within(&self.ipc, req, TIMEOUT)
    }

    pub fn request(&self, req: &Request) -> Reply {
        match self.try_request(req) {
            Ok(Response::Ok(r)) => r,
            other => panic!("request {req:?} failed: {other:?}\n{}", self.log_text()),
        }
    }

    pub fn outputs(&self) -> Vec<bulkhead_ipc::OutputInfo> {
        match self.request(&Request::Outputs) {
            Reply::Outputs(o) => o,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub fn windows(&self) -> Vec<WindowInfo> {
        match self.request(&Request::Windows) {
            Reply::Windows(w) => w,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// Polls the window list until `pred` holds.
    pub fn wait_windows(
        &self,
        what: &str,
        pred: impl Fn(&[WindowInfo]) -> bool,
    ) -> Vec<WindowInfo> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let w = self.windows();
            if pred(&w) {
                return w;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; windows: {w:#?}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a window of `domain` whose app id or title contains `needle`.
    pub fn wait_window(&self, domain: &str, needle: &str) -> WindowInfo {
        let w = self.wait_windows(&format!("a {domain} window {needle:?}"), |ws| {
            ws.iter().any(|w| {
                w.domain == domain && (w.app_id.contains(needle) || w.title.contains(needle))
            })
        });
        w.into_iter()
            .find(|w| w.domain == domain && (w.app_id.contains(needle) || w.title.contains(needle)))
            .expect("window")
    }

    /// The clipboard's (or, with `primary`, the primary selection's) owner and version: the
    /// version changes whenever the selection is set anew.
    pub fn selection_state(&self, primary: bool) -> (Option<String>, Option<u64>) {
        match self.request(&Request::Clipboard) {
            Reply::Clipboard {
                selection_domain,
                primary_domain,
                selection_version,
                primary_version,
                ..
            } => {
                if primary {
                    (primary_domain, primary_version)
                } else {
                    (selection_domain, selection_version)
                }
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// The domain that owns the clipboard (or, with `primary`, the primary selection).
    pub fn selection_owner(&self, primary: bool) -> Option<String> {
        match self.request(&Request::Clipboard) {
            Reply::Clipboard {
                selection_domain,
                primary_domain,
                ..
            } => {
                if primary {
                    primary_domain
                } else {
                    selection_domain
                }
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// Waits until `domain` owns the clipboard (or, with `primary`, the primary selection).
    /// wl-copy sets it from a surface of its own, which must hold the focus: a paste started
    /// before that takes the focus wl-copy needs.
    pub fn wait_selection(&self, domain: &str, primary: bool) {
        let deadline = Instant::now() + TIMEOUT;
        while self.selection_owner(primary).as_deref() != Some(domain) {
            assert!(
                Instant::now() < deadline,
                "{domain} never owned the selection\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The user focuses window `id` (as Alt-Tab or a click would) and it holds the keyboard.
    pub fn focus(&self, id: u64) {
        self.action("focus-window", Some(&id.to_string()));
        self.wait_windows("the window focused", |ws| {
            ws.iter().any(|w| w.id == id && w.focused)
        });
    }

    /// The user focuses a window of `domain` (the oldest), unless one already has focus:
    /// a new window of a VM takes the keyboard only when its domain holds it.
    pub fn focus_domain(&self, domain: &str) {
        let ws = self.windows();
        if ws.iter().any(|w| w.focused && w.domain == domain) {
            return;
        }
        if let Some(w) = ws.iter().find(|w| w.domain == domain && !w.minimized) {
            self.focus(w.id);
        }
    }

    pub fn action(&self, name: &str, arg: Option<&str>) {
        self.request(&Request::Action {
            name: name.into(),
            arg: arg.map(Into::into),
        });
    }

    pub fn input(&self, events: Vec<bulkhead_ipc::InputEvent>) {
        self.request(&Request::Input { events });
    }

    /// Takes a screenshot, keeps a copy under the target dir for people to look at, decodes it.
    pub fn screenshot(&self, name: &str) -> Image {
        let path = self.dir.path().join(format!("{name}.png"));
        if let Some((uid, gid)) = self.user {
            let _ = (uid, gid);
        }
        self.request(&Request::Screenshot { path: path.clone() });
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&path, keep.join(format!("{name}.png")));
        Image::load(&path)
    }

    /// Starts a client program on the socket of `domain`.
    pub fn spawn(&self, domain: &str, program: &str, args: &[&str]) -> ChildGuard {
        self.spawn_env(domain, program, args, &[])
    }

    /// Starts a client program on the socket of `domain` with extra environment variables.
    pub fn spawn_env(
        &self,
        domain: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ChildGuard {
        let mut cmd = wrap_user(self.user, Path::new(program));
        self.client_env(&mut cmd, domain);
        cmd.envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(
                    self.dir
                        .path()
                        .join(format!("{}.log", program.replace('/', "_"))),
                )
                .expect("log"),
            );
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        ChildGuard(child, program.to_string())
    }

    /// Runs a client to completion (20 s at most) and returns its success and stdout.
    pub fn run(&self, domain: &str, program: &str, args: &[&str]) -> (bool, String) {
        self.run_for(20, domain, program, args)
    }

    /// Runs a client for at most `secs` seconds.
    pub fn run_for(&self, secs: u32, domain: &str, program: &str, args: &[&str]) -> (bool, String) {
        let out_path = self.dir.path().join("run.out");
        let mut cmd = wrap_user(self.user, Path::new("timeout"));
        self.client_env(&mut cmd, domain);
        cmd.arg(secs.to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("out"))
            .stderr(Stdio::null());
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        (
            status.success(),
            std::fs::read_to_string(&out_path).unwrap_or_default(),
        )
    }

    /// A client's whole environment, explicit so a CI machine's variables (or their absence:
    /// without SHELL, foot run as `nobody` starts nologin and exits) change nothing.
    /// A command for a client of `domain`, with the environment of those `spawn` starts.
    pub fn client_command(&self, domain: &str, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.client_env(&mut cmd, domain);
        cmd
    }

    fn client_env(&self, cmd: &mut Command, domain: &str) {
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LANG", "C.UTF-8")
            .env("SHELL", "/bin/sh")
            .env("WAYLAND_DISPLAY", self.socket(domain))
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("HOME", self.dir.path());
    }

    /// Whether the compositor answers on its IPC socket.
    pub fn answers(&self) -> bool {
        matches!(self.try_request(&Request::Version), Ok(Response::Ok(_)))
    }

    /// Whether the compositor process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Tests that run apps as another user need the checkout (its tools and guests) reachable by
/// that user: says which directory is not, instead of timing out waiting for a window.
fn reachable_by_others(dir: &Path, uid: u32) {
    use std::os::unix::fs::MetadataExt;
    for d in dir.ancestors() {
        let Ok(meta) = std::fs::metadata(d) else {
            continue;
        };
        assert!(
            meta.mode() & 0o001 != 0,
            "{} (mode {:o}) cannot be entered by uid {uid}, which this test runs apps as: \
             clone the repository under a directory others can enter (chmod o+x {})",
            d.display(),
            meta.mode() & 0o7777,
            d.display()
        );
    }
}

fn wrap_user(user: Option<(u32, u32)>, program: &Path) -> Command {
    match user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A binary of the workspace, next to `bulkhead` in the target dir.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_bulkhead")).with_file_name(name);
    assert!(
        exe.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        exe.display()
    );
    exe
}

/// Waits until `path` exists.
pub fn wait_for_path(path: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PATH for the compositor and the commands it runs: the VM tools may live in
/// /usr/local/bin (install-deps as root) or ~/.cargo/bin; ip and mke2fs in /usr/sbin.
pub fn tool_path() -> String {
    let mut p = String::from("/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin");
    if let Some(home) = std::env::var_os("HOME") {
        p.push(':');
        p.push_str(&Path::new(&home).join(".cargo/bin").to_string_lossy());
    }
    p
}

impl Drop for Compositor {
    fn drop(&mut self) {
        // Let a VM-running compositor stop its VMs (a logout); then make sure nothing of this
        // test is left, whatever happened.
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.leftover_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if std::thread::panicking() {
            eprintln!("---- bulkhead log ----\n{}", self.log_text());
            // Each client's stderr, for a client that died before it showed a window.
            if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "log") && p != self.log {
                        let text = std::fs::read_to_string(&p).unwrap_or_default();
                        eprintln!("---- {} ----\n{text}", p.display());
                    }
                }
            }
            // The last lines of each VM's logs (VMM, helpers, monitor, console).
            let vms = self.dir.path().join("state/bulkhead/vms");
            for vm in std::fs::read_dir(&vms).into_iter().flatten().flatten() {
                for log in std::fs::read_dir(vm.path()).into_iter().flatten().flatten() {
                    let p = log.path();
                    if p.extension().is_some_and(|x| x == "log") {
                        let text = std::fs::read_to_string(&p).unwrap_or_default();
                        let lines: Vec<&str> = text.lines().collect();
                        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                        eprintln!("---- {} (last 30 lines) ----\n{tail}", p.display());
                    }
                }
            }
        }
    }
}

/// A decoded RGBA screenshot.
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

impl Image {
    pub fn load(path: &Path) -> Image {
        let file =
            std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let decoder = png::Decoder::new(std::io::BufReader::new(file));
        let mut reader = decoder.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("png frame");
        buf.truncate(info.buffer_size());
        // Ours are RGBA; other tools (grim) write RGB.
        let buf = match info.color_type {
            png::ColorType::Rgba => buf,
            png::ColorType::Rgb => buf
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 0xff])
                .collect(),
            other => panic!("{}: unexpected PNG colour type {other:?}", path.display()),
        };
        Image {
            width: info.width,
            height: info.height,
            rgba: buf,
        }
    }

    /// How many distinct colours every third pixel of `r` holds (an app's drawing arrived:
    /// a plain fill has one).
    pub fn distinct_colours(&self, r: bulkhead_ipc::Rect) -> usize {
        let mut colours = std::collections::HashSet::new();
        for y in (r.y..r.y + r.height).step_by(3) {
            for x in (r.x..r.x + r.width).step_by(3) {
                colours.insert(self.pixel(x, y));
            }
        }
        colours.len()
    }

    pub fn pixel(&self, x: i32, y: i32) -> [u8; 3] {
        assert!(
            x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height,
            "pixel {x},{y} off image"
        );
        let i = ((y as u32 * self.width + x as u32) * 4) as usize;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// Every pixel for which `pred` holds, as coordinates.
    pub fn find(&self, pred: impl Fn([u8; 3]) -> bool) -> Vec<(i32, i32)> {
        let mut out = Vec::new();
        for y in 0..self.height as i32 {
            for x in 0..self.width as i32 {
                if pred(self.pixel(x, y)) {
                    out.push((x, y));
                }
            }
        }
        out
    }
}

/// Checks the frame of `w` in `img`: borders and title bar background in `color`, and the
/// title bar showing exactly `label` as the compositor's rasteriser draws it.
pub fn assert_framed(img: &Image, w: &WindowInfo, color: [u8; 3], label: &str, focused: bool) {
    let f = w.frame;
    let g = w.geometry;
    let mid_y = g.y + g.height / 2;
    assert_eq!(img.pixel(f.x + 1, mid_y), color, "left border of {label}");
    assert_eq!(
        img.pixel(f.x + f.width - 2, mid_y),
        color,
        "right border of {label}"
    );
    assert_eq!(
        img.pixel(g.x + g.width / 2, f.y + f.height - 2),
        color,
        "bottom border of {label}"
    );
    assert_eq!(
        img.pixel(f.x + f.width - 3, f.y + 2),
        color,
        "title bar corner of {label}"
    );
    // The bar shows the label: compare with the same text rendered by the same code.
    let bar_h = g.y - f.y;
    let c = bulkhead_config::Color::rgb(color[0], color[1], color[2]);
    let want = bulkhead_compositor::text::render_line(
        label,
        f.width,
        bar_h,
        8,
        c.text_color(),
        c,
        !focused,
    );
    let mut diff = 0;
    for y in 0..bar_h {
        for x in 0..f.width {
            let i = ((y * f.width + x) * 4) as usize;
            let expect = [want.pixels[i + 2], want.pixels[i + 1], want.pixels[i]];
            if img.pixel(f.x + x, f.y + y) != expect {
                diff += 1;
            }
        }
    }
    assert_eq!(
        diff, 0,
        "title bar of {label:?} differs from the expected label in {diff} pixels"
    );
}

/// An Xvfb server on a free display number, for the nested backend.
pub struct Xvfb {
    _child: ChildGuard,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        for n in 90..140 {
            if !claim_x_display(n) {
                continue;
            }
            let display = format!(":{n}");
            let child = Command::new("Xvfb")
                .arg(&display)
                .args(["-screen", "0", "1400x900x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Xvfb");
            let mut guard = ChildGuard(child, "Xvfb".into());
            let deadline = Instant::now() + TIMEOUT;
            while Instant::now() < deadline {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return Xvfb {
                        _child: guard,
                        display,
                    };
                }
                if !guard.running() {
                    break; // lost a race for this number: try the next
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("could not start Xvfb");
    }
}

/// Whether X display `n` is free, its leftovers removed: no lock file of a live process, and
/// no socket anyone answers on. Servers killed by a test leave both behind, and counting
/// those as taken would use up the numbers a test may pick from.
pub fn claim_x_display(n: u32) -> bool {
    let lock = PathBuf::from(format!("/tmp/.X{n}-lock"));
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
    if let Ok(text) = std::fs::read_to_string(&lock) {
        let alive = text
            .trim()
            .parse::<i32>()
            .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
        if alive {
            return false;
        }
    }
    if socket.exists() && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return false;
    }
    let _ = std::fs::remove_file(&lock);
    let _ = std::fs::remove_file(&socket);
    !lock.exists() && !socket.exists()
}

/// Linux evdev key codes used by the tests.
pub const KEY_ESC: u32 = 1;
pub const KEY_TAB: u32 = 15;
pub const KEY_LEFTALT: u32 = 56;
pub const KEY_LEFTMETA: u32 = 125;

/// Super held, the right button pressed at `from`, dragged to `to`, released: the resize a
/// person does with Super+right-drag.
pub fn super_right_drag(from: (i32, i32), to: (i32, i32)) -> Vec<bulkhead_ipc::InputEvent> {
    super_drag(273, from, to)
}

/// Super held while `button` drags from `from` to `to` (272: left, a move; 273: right, a
/// resize).
pub fn super_drag(button: u32, from: (i32, i32), to: (i32, i32)) -> Vec<bulkhead_ipc::InputEvent> {
    use bulkhead_ipc::InputEvent::{Key, PointerButton, PointerMotion};
    let motion = |(x, y): (i32, i32)| PointerMotion {
        x: x as f64,
        y: y as f64,
    };
    vec![
        Key {
            code: KEY_LEFTMETA,
            pressed: true,
        },
        motion(from),
        PointerButton {
            button,
            pressed: true,
        },
        motion(to),
        PointerButton {
            button,
            pressed: false,
        },
        Key {
            code: KEY_LEFTMETA,
            pressed: false,
        },
    ]
}

/// Waits for the newest notification to read `text` in `color`.
pub fn notified(c: &Compositor, color: [u8; 3], text: &str) {
    let mut last = usize::MAX;
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        let img = c.screenshot("notification");
        last = notification_diff(&img, 0, color, text);
        if last == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the newest notification does not read {text:?} ({last} pixels differ)");
}

/// A key chord as a person types it: modifiers down, the key down and up, modifiers up.
pub fn chord(mods: &[u32], key: u32) -> Vec<bulkhead_ipc::InputEvent> {
    use bulkhead_ipc::InputEvent::Key;
    let mut events: Vec<_> = mods
        .iter()
        .map(|&code| Key {
            code,
            pressed: true,
        })
        .collect();
    events.push(Key {
        code: key,
        pressed: true,
    });
    events.push(Key {
        code: key,
        pressed: false,
    });
    events.extend(mods.iter().rev().map(|&code| Key {
        code,
        pressed: false,
    }));
    events
}

/// How many pixels of the `index`-th notification (newest first, top right of a 1280 wide
/// output) differ from `text` rendered in `color` by the compositor's own code.
pub fn notification_diff(img: &Image, index: usize, color: [u8; 3], text: &str) -> usize {
    use bulkhead_compositor::notify;
    let x0 = img.width as i32 - notify::WIDTH - notify::MARGIN;
    let y0 = notify::MARGIN + index as i32 * (notify::HEIGHT + notify::MARGIN / 2);
    let c = bulkhead_config::Color::rgb(color[0], color[1], color[2]);
    let want = notify::render(text, c);
    let mut diff = 0;
    for y in 0..notify::HEIGHT {
        for x in 0..notify::WIDTH {
            let p = ((y * notify::WIDTH + x) * 4) as usize;
            if img.pixel(x0 + x, y0 + y) != [want.pixels[p + 2], want.pixels[p + 1], want.pixels[p]]
            {
                diff += 1;
            }
        }
    }
    diff
}

/// Whether the process runs as root (then a test can switch to an unprivileged user).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A test that cannot run on this machine (a tool or privilege is missing) fails and says what
/// to install, unless `BULKHEAD_ALLOW_SKIP=1`: then it is a named skip, written to
/// `$BULKHEAD_SKIP_LOG` so the run's summary counts and names it, and the caller returns.
pub fn cannot_run(test: &str, why: &str) {
    let allowed = std::env::var_os("BULKHEAD_ALLOW_SKIP").is_some_and(|v| v == "1");
    assert!(
        allowed,
        "{test}: {why} (BULKHEAD_ALLOW_SKIP=1 makes this a named skip)"
    );
    eprintln!("skipped {test}: {why}");
    if let Some(log) = std::env::var_os("BULKHEAD_SKIP_LOG") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .expect("skip log");
        writeln!(f, "{test}: {why}").expect("skip log");
    }
}

/// A point of `w` that no other window's frame covers.
pub fn free_point(c: &Compositor, w: &WindowInfo) -> (f64, f64) {
    let others: Vec<bulkhead_ipc::Rect> = c
        .windows()
        .into_iter()
        .filter(|o| o.id != w.id && !o.minimized)
        .map(|o| o.frame)
        .collect();
    let g = w.geometry;
    for dy in (5..g.height).step_by(10) {
        for dx in (5..g.width).step_by(10) {
            let (x, y) = (g.x + dx, g.y + dy);
            if !others.iter().any(|r| r.contains(x, y)) {
                return (x as f64, y as f64);
            }
        }
    }
    panic!("window {} is covered everywhere", w.title);
}

pub fn click(c: &Compositor, (x, y): (f64, f64)) {
    c.input(vec![
        bulkhead_ipc::InputEvent::PointerMotion { x, y },
        bulkhead_ipc::InputEvent::PointerButton {
            button: 272,
            pressed: true,
        },
        bulkhead_ipc::InputEvent::PointerButton {
            button: 272,
            pressed: false,
        },
    ]);
}

/// A mapped window of a raw client that listens to keys and the pointer.
pub fn window(
    c: &Compositor,
    domain: &str,
    title: &str,
    size: (i32, i32),
) -> (client::Client, client::Toplevel) {
    let mut cl = client::Client::connect(&c.vm_socket(domain));
    let _keyboard = cl.keyboard();
    let _pointer = cl.seat.get_pointer(&cl.qh, ());
    let t = cl.toplevel(title);
    cl.map(&t, size.0, size.1, client::WHITE);
    c.wait_window(domain, title);
    (cl, t)
}

/// The user clicks `title`'s window and it holds the keyboard.
pub fn user_clicks(c: &Compositor, cl: &mut client::Client, title: &str) {
    let w = c
        .windows()
        .into_iter()
        .find(|w| w.title == title)
        .expect(title);
    click(c, free_point(c, &w));
    c.wait_windows(&format!("{title} focused"), |ws| {
        ws.iter().any(|w| w.title == title && w.focused)
    });
    cl.roundtrip();
    assert!(cl.events.has_keyboard, "{title} did not get the keyboard");
}

/// The theme's image of cursor `name` at 24 px: (width, height, hotspot, premultiplied
/// B, G, R, A bytes).
pub fn theme_cursor(name: &str) -> (i32, i32, (i32, i32), Vec<u8>) {
    let theme = xcursor::CursorTheme::load("Adwaita");
    let path = theme
        .load_icon(name)
        .unwrap_or_else(|| panic!("the Adwaita cursor theme has no {name:?} (adwaita-icon-theme)"));
    let bytes = std::fs::read(&path).expect("cursor file");
    let images = xcursor::parser::parse_xcursor(&bytes).expect("an xcursor file");
    let i = images
        .iter()
        .find(|i| i.size == 24)
        .unwrap_or_else(|| panic!("{name} has no 24 px image"));
    (
        i.width as i32,
        i.height as i32,
        (i.xhot as i32, i.yhot as i32),
        i.pixels_rgba.clone(),
    )
}

/// How many of the opaque pixels of cursor `name` (the theme's image) `img` does not show
/// with the hotspot at `at`, and how many were compared.
pub fn cursor_mismatches(img: &Image, at: (i32, i32), name: &str) -> (usize, usize) {
    let (w, h, hot, px) = theme_cursor(name);
    let (mut opaque, mut wrong) = (0, 0);
    for y in 0..h {
        for x in 0..w {
            let p = &px[((y * w + x) * 4) as usize..][..4];
            if p[3] != 0xff {
                continue;
            }
            opaque += 1;
            let (sx, sy) = (at.0 - hot.0 + x, at.1 - hot.1 + y);
            if img.pixel(sx, sy) != [p[2], p[1], p[0]] {
                wrong += 1;
            }
        }
    }
    assert!(opaque > 20, "{name} has only {opaque} opaque pixels");
    (wrong, opaque)
}

/// Checks that `img` shows cursor `name` with its hotspot at `at`: every opaque pixel of the
/// theme's image, exactly. Returns how many were compared.
pub fn assert_cursor_drawn(img: &Image, at: (i32, i32), name: &str) -> usize {
    let (wrong, opaque) = cursor_mismatches(img, at, name);
    assert_eq!(
        wrong, 0,
        "{name}: {wrong} of {opaque} pixels differ at {at:?}"
    );
    opaque
}

/// wl-paste's output in `domain` as bytes (through a file: the data may be binary).
pub fn paste(c: &Compositor, domain: &str, args: &str) -> Vec<u8> {
    let out = c.dir.path().join(format!("paste-{domain}.out"));
    let _ = std::fs::remove_file(&out);
    // The user is in that domain when they paste there.
    c.focus_domain(domain);
    c.run_for(
        6,
        domain,
        "sh",
        &["-c", &format!("wl-paste {args} > {}", out.display())],
    );
    std::fs::read(&out).unwrap_or_default()
}
