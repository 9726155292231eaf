//! `bulkhead-agent`: runs commands for the host inside a guest.
//!
//! Everything the host sends is parsed with bounds (see `bulkhead_ipc::agent`); a connection
//! that breaks the protocol is dropped and the agent carries on.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_ipc::agent::{
    self, Frame, FrameKind, GuestMessage, HostMessage, WireError, MAX_ARGS, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::passwd::{self, Account};

/// How long the host may take to send its hello and its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more wait for a free slot.
const MAX_CONNECTIONS: usize = 64;

/// Most environment bytes one request may carry.
const MAX_ENV_BYTES: usize = 64 * 1024;

/// The image's session environment (`rootfs/guest/session.env`): toolkits take Wayland first,
/// X11 second. Read for every command, so an edit applies to the next one.
const SESSION_ENV: &str = "/etc/bulkhead/session.env";

/// Most of that file read, and most variables taken from it.
const MAX_SESSION_ENV_BYTES: u64 = 16 * 1024;
const MAX_SESSION_VARS: usize = 64;

/// Agent options (command line).
#[derive(Debug, Clone)]
pub struct Options {
    /// The guest account commands run as.
    pub user: String,
    pub port: u32,
    /// Where the init system wrote its start time (milliseconds since the kernel started).
    pub init_ms_file: String,
    /// Do not power the guest off (for running the agent outside a VM).
    pub no_poweroff: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            user: "user".into(),
            port: agent::AGENT_PORT,
            init_ms_file: "/run/bulkhead/init-ms".into(),
            no_poweroff: false,
        }
    }
}

/// What the host asks about for auto-shutdown.
struct Activity {
    running: u32,
    last_change: Instant,
}

struct Shared {
    opts: Options,
    activity: Mutex<Activity>,
}

impl Shared {
    fn started(&self) {
        if let Ok(mut a) = self.activity.lock() {
            a.running += 1;
            a.last_change = Instant::now();
        }
    }

    fn ended(&self) {
        if let Ok(mut a) = self.activity.lock() {
            a.running = a.running.saturating_sub(1);
            a.last_change = Instant::now();
        }
    }

    fn status(&self) -> GuestMessage {
        let (running, idle) = match self.activity.lock() {
            Ok(a) => (a.running, a.last_change.elapsed().as_secs()),
            Err(_) => (0, 0),
        };
        GuestMessage::Status {
            running,
            idle_secs: if running > 0 { 0 } else { idle },
            uptime_ms: uptime_ms().unwrap_or(0),
        }
    }
}

/// Milliseconds since the guest kernel started, from /proc/uptime.
pub fn uptime_ms() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((secs * 1000.0) as u64)
}

/// Listens on vsock and serves the host until the guest powers off.
pub async fn serve(opts: Options) -> std::io::Result<()> {
    let listener = tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(
        libc::VMADDR_CID_ANY,
        opts.port,
    ))?;
    let shared = Arc::new(Shared {
        opts,
        activity: Mutex::new(Activity {
            running: 0,
            last_change: Instant::now(),
        }),
    });
    eprintln!(
        "bulkhead-agent: listening on vsock port {}",
        shared.opts.port
    );
    tokio::spawn(announce_ready(shared.opts.init_ms_file.clone()));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, shared).await {
                eprintln!("bulkhead-agent: connection dropped: {e}");
            }
            drop(permit);
        });
    }
}

/// Tells the host once that the agent is listening, with the boot timings.
async fn announce_ready(init_ms_file: String) {
    let agent_ms = uptime_ms().unwrap_or(0);
    let init_ms = std::fs::read_to_string(&init_ms_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let msg = GuestMessage::Ready { init_ms, agent_ms };
    let Ok(bytes) = agent::encode_message(&msg) else {
        return;
    };
    for _ in 0..20 {
        let addr = tokio_vsock::VsockAddr::new(libc::VMADDR_CID_HOST, agent::READY_PORT);
        if let Ok(mut s) = tokio_vsock::VsockStream::connect(addr).await {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown(std::net::Shutdown::Write);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("bulkhead-agent: could not announce readiness to the host (it will poll)");
}

/// Reads one frame from an async stream; `Ok(None)` at a clean end.
async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<Frame<HostMessage>>, WireError> {
    let mut header = [0u8; 5];
    let mut got = 0;
    while got < header.len() {
        let n = s.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::Protocol(
                    "stream ended inside a frame header".into(),
                ))
            };
        }
        got += n;
    }
    let (kind, len) = agent::parse_header(header)?;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await?;
    agent::decode(kind, payload).map(Some)
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, msg: &GuestMessage) -> Result<(), WireError> {
    s.write_all(&agent::encode_message(msg)?).await?;
    Ok(())
}

async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> Result<HostMessage, WireError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(s)).await {
        Err(_) => Err(WireError::Protocol("the host sent nothing for 10 s".into())),
        Ok(Ok(Some(Frame::Message(m)))) => Ok(m),
        Ok(Ok(Some(_))) => Err(WireError::Protocol("the host sent output frames".into())),
        Ok(Ok(None)) => Err(WireError::Protocol("the host hung up".into())),
        Ok(Err(e)) => Err(e),
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    shared: Arc<Shared>,
) -> Result<(), WireError> {
    match read_message(&mut s).await? {
        HostMessage::Hello { version } if version == PROTOCOL_VERSION => {}
        HostMessage::Hello { version } => {
            let message = format!(
                "the host speaks agent protocol {version}, this agent {PROTOCOL_VERSION}; \
                 rebuild the guest image with the host's Bulkhead version"
            );
            send(
                &mut s,
                &GuestMessage::Error {
                    message: message.clone(),
                },
            )
            .await?;
            return Err(WireError::Protocol(message));
        }
        _ => {
            return Err(WireError::Protocol(
                "the host did not start with hello".into(),
            ))
        }
    }
    send(
        &mut s,
        &GuestMessage::Hello {
            version: PROTOCOL_VERSION,
            agent: env!("CARGO_PKG_VERSION").into(),
        },
    )
    .await?;
    match read_message(&mut s).await? {
        HostMessage::Hello { .. } => Err(WireError::Protocol("hello sent twice".into())),
        HostMessage::Status {} => send(&mut s, &shared.status()).await,
        HostMessage::Poweroff {} => {
            send(&mut s, &GuestMessage::PoweringOff {}).await?;
            let _ = s.flush().await;
            if !shared.opts.no_poweroff {
                poweroff();
            }
            Ok(())
        }
        HostMessage::Run { argv, env, wait } => match prepare(&argv, &env, &shared.opts.user) {
            Err(message) => send(&mut s, &GuestMessage::Error { message }).await,
            Ok((cmd, runtime)) => {
                wait_for_wayland_socket(Path::new(WL_PROXY), Path::new(&runtime)).await;
                run(s, &shared, cmd, wait).await
            }
        },
    }
}

/// The guest's Wayland proxy, where the image has one.
const WL_PROXY: &str = "/usr/bin/bulkhead-wl-proxy";

/// The agent counts as ready before the Wayland proxy may have made its socket (both start at
/// boot): in a guest that has the proxy, a command waits up to 10 s for `wayland-0`, so an app
/// run right after the start finds it. Without the proxy, or once the socket is there, nothing
/// waits.
async fn wait_for_wayland_socket(proxy: &Path, runtime: &Path) {
    if !proxy.exists() {
        return;
    }
    let socket = runtime.join("wayland-0");
    for _ in 0..200 {
        if socket.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `KEY=VALUE` lines of the session environment file (`#` comments and blank lines
/// skipped, names checked); none when it is missing. The file is the image's own, but read
/// within bounds all the same.
fn session_env(path: &Path) -> Vec<(String, String)> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SESSION_ENV_BYTES).read_to_string(&mut text));
    if let Err(e) = read {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("bulkhead-agent: {}: {e}", path.display());
        }
        return Vec::new();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()))
        .take(MAX_SESSION_VARS)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Checks a run request and builds the command with the guest user's environment; also says
/// the user's runtime dir.
fn prepare(
    argv: &[String],
    env: &[(String, String)],
    user: &str,
) -> Result<(tokio::process::Command, String), String> {
    let Some(program) = argv.first() else {
        return Err("empty command".into());
    };
    if argv.len() > MAX_ARGS || env.len() > MAX_ARGS {
        return Err(format!("more than {MAX_ARGS} arguments or variables"));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err("an argument contains a NUL byte".into());
    }
    let env_bytes: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if env_bytes > MAX_ENV_BYTES {
        return Err(format!("environment larger than {MAX_ENV_BYTES} bytes"));
    }
    for (k, v) in env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(format!("invalid environment variable name {k:?}"));
        }
    }
    let account = passwd::lookup(Path::new("/etc/passwd"), user)
        .map_err(|e| format!("guest user {user:?}: {e}"))?;
    let runtime = ensure_runtime_dir(&account);
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .env_clear()
        .env("HOME", &account.home)
        .env("USER", &account.name)
        .env("LOGNAME", &account.name)
        .env("SHELL", &account.shell)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("LANG", "C.UTF-8")
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("WAYLAND_DISPLAY", "wayland-0")
        .envs(session_env(Path::new(SESSION_ENV)))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(if Path::new(&account.home).is_dir() {
            account.home.as_str()
        } else {
            "/"
        })
        .stdin(Stdio::null())
        .kill_on_drop(false);
    // The user's identity with its supplementary groups (render for the GPU's render node,
    // like a login would give), switched in the child: std would drop the groups. Only root
    // can set groups; an agent run as the user itself (tests) keeps its own.
    let groups: Vec<libc::gid_t> = if nix::unistd::geteuid().is_root() {
        passwd::groups_of(Path::new("/etc/group"), &account)
    } else {
        Vec::new()
    };
    let (uid, gid) = (account.uid, account.gid);
    // SAFETY: the closure runs in the forked child before exec and only makes the system calls
    // setsid, setgroups, setgid and setuid, which are async-signal-safe; `groups` was
    // allocated before the fork and is only read.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if !groups.is_empty() && libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setgid(gid) < 0 || libc::setuid(uid) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((cmd, runtime))
}

/// `/run/user/<uid>`, created for the account (0700) when missing.
fn ensure_runtime_dir(a: &Account) -> String {
    let dir = format!("/run/user/{}", a.uid);
    if !Path::new(&dir).is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir);
        if made.is_ok() {
            let _ = std::os::unix::fs::chown(&dir, Some(a.uid), Some(a.gid));
        }
    }
    dir
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    shared: &Arc<Shared>,
    mut cmd: tokio::process::Command,
    wait: bool,
) -> Result<(), WireError> {
    if wait {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let message = format!("cannot start the command: {e}");
            return send(&mut s, &GuestMessage::Error { message }).await;
        }
    };
    let pid = child.id().unwrap_or(0);
    shared.started();
    send(&mut s, &GuestMessage::Started { pid }).await?;
    if !wait {
        // Track it for the activity count; the host does not wait.
        let shared_end = ActivityGuard(shared.clone());
        tokio::spawn(async move {
            let _ = child.wait().await;
            drop(shared_end);
        });
        return Ok(());
    }
    let result = stream_output(&mut s, &mut child).await;
    shared.ended();
    match result {
        Ok(status) => {
            let msg = GuestMessage::Exited {
                code: status.code(),
                signal: status.signal(),
            };
            send(&mut s, &msg).await
        }
        Err(e) => {
            // The host went away: hang up the command's session like a closed terminal.
            if let Ok(pgid) = i32::try_from(pid) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGHUP,
                );
            }
            let _ = child.wait().await;
            Err(e)
        }
    }
}

/// Forwards the child's stdout and stderr until both close and the child exits.
async fn stream_output<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    child: &mut tokio::process::Child,
) -> Result<std::process::ExitStatus, WireError> {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];
    let mut probe = [0u8; 1];
    while out.is_some() || err.is_some() {
        tokio::select! {
            n = read_opt(&mut out, &mut out_buf), if out.is_some() => {
                match n {
                    Ok(0) | Err(_) => out = None,
                    Ok(n) => s.write_all(&agent::encode(FrameKind::Stdout, &out_buf[..n])?).await?,
                }
            }
            n = read_opt(&mut err, &mut err_buf), if err.is_some() => {
                match n {
                    Ok(0) | Err(_) => err = None,
                    Ok(n) => s.write_all(&agent::encode(FrameKind::Stderr, &err_buf[..n])?).await?,
                }
            }
            // The host sends nothing more after its request: a read returning means it hung up
            // (or broke the protocol).
            _ = s.read(&mut probe) => {
                return Err(WireError::Protocol("the host hung up while the command ran".into()));
            }
        }
    }
    tokio::select! {
        status = child.wait() => Ok(status?),
        _ = s.read(&mut probe) => {
            Err(WireError::Protocol("the host hung up while the command ran".into()))
        }
    }
}

async fn read_opt<R: AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => Ok(0),
    }
}

/// Counts a command that runs without the host waiting as active until it ends.
struct ActivityGuard(Arc<Shared>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.0.ended();
    }
}

/// Syncs filesystems and powers the guest off.
fn poweroff() {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
}

/// Command-line parsing for the binary.
pub fn parse_args(args: impl Iterator<Item = OsString>) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.map(|a| String::from_utf8_lossy(&a.into_vec()).into_owned());
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--user" => o.user = value("--user")?,
            "--port" => {
                o.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port needs a number".to_string())?
            }
            "--init-ms-file" => o.init_ms_file = value("--init-ms-file")?,
            "--no-poweroff" => o.no_poweroff = true,
            "-h" | "--help" => {
                return Err(
                    "usage: bulkhead-agent [--user NAME] [--port N] [--init-ms-file PATH] \
                            [--no-poweroff]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_environment_file_gives_its_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("session.env");
        std::fs::write(
            &f,
            "# comment\n\nQT_QPA_PLATFORM=wayland;xcb\n  GDK_BACKEND=wayland,x11  \n\
             not a variable\nBAD-NAME=1\n=empty\nEMPTY=\n",
        )
        .unwrap();
        assert_eq!(
            session_env(&f),
            [
                ("QT_QPA_PLATFORM".into(), "wayland;xcb".into()),
                ("GDK_BACKEND".into(), "wayland,x11".into()),
                ("EMPTY".into(), String::new()),
            ]
        );
        assert!(session_env(&dir.path().join("missing")).is_empty());
        // The image's own file parses whole.
        let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs/guest/session.env");
        let vars = session_env(&ours);
        assert!(
            vars.contains(&("MOZ_ENABLE_WAYLAND".into(), "1".into())),
            "{vars:?}"
        );
        assert_eq!(vars.len(), 9);
    }
    use tokio::io::DuplexStream;

    #[tokio::test]
    async fn a_command_waits_for_the_wayland_socket_only_where_a_proxy_runs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let proxy = dir.path().join("bulkhead-wl-proxy");
        // No proxy in the image: no wait at all.
        let t = Instant::now();
        wait_for_wayland_socket(&proxy, dir.path()).await;
        assert!(t.elapsed() < Duration::from_secs(1));
        // A proxy still starting: the command goes once the socket appears.
        std::fs::write(&proxy, b"").unwrap_or_else(|e| panic!("{e}"));
        let socket = dir.path().join("wayland-0");
        let maker = socket.clone();
        let made = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            std::fs::write(&maker, b"").unwrap_or_else(|e| panic!("{e}"));
        });
        wait_for_wayland_socket(&proxy, dir.path()).await;
        assert!(socket.exists());
        made.await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// The account the tests run commands as: whoever runs the tests.
    fn me() -> String {
        let uid = nix::unistd::getuid().as_raw();
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .filter_map(passwd::parse_line)
            .find(|a| a.uid == uid)
            .map(|a| a.name)
            .expect("the test user is in /etc/passwd")
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            opts: Options {
                user: me(),
                no_poweroff: true,
                ..Options::default()
            },
            activity: Mutex::new(Activity {
                running: 0,
                last_change: Instant::now(),
            }),
        })
    }

    /// Runs one connection against `input`; returns the agent's result and every frame it sent.
    async fn session(input: Vec<u8>) -> (Result<(), WireError>, Vec<Frame<GuestMessage>>) {
        let (mut host, guest): (DuplexStream, DuplexStream) = tokio::io::duplex(1 << 20);
        host.write_all(&input).await.unwrap();
        let agent = tokio::spawn(handle(guest, shared()));
        let mut out = Vec::new();
        host.shutdown().await.unwrap();
        let _ = host.read_to_end(&mut out).await;
        let result = agent.await.unwrap();
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while let Ok(Some(f)) = agent::read_frame::<GuestMessage, _>(&mut rest) {
            frames.push(f);
        }
        (result, frames)
    }

    fn msg(m: &HostMessage) -> Vec<u8> {
        agent::encode_message(m).unwrap()
    }

    fn hello() -> Vec<u8> {
        msg(&HostMessage::Hello {
            version: PROTOCOL_VERSION,
        })
    }

    #[tokio::test]
    async fn run_without_wait_answers_started_and_nothing_else() {
        let mut input = hello();
        input.extend(msg(&HostMessage::Run {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            env: vec![],
            wait: false,
        }));
        // Without wait: started, nothing else.
        let (r, frames) = session(input).await;
        assert!(r.is_ok());
        assert!(matches!(
            frames[1],
            Frame::Message(GuestMessage::Started { .. })
        ));
        assert_eq!(frames.len(), 2);
    }

    #[tokio::test]
    async fn status_counts_nothing_running() {
        let mut input = hello();
        input.extend(msg(&HostMessage::Status {}));
        let (r, frames) = session(input).await;
        assert!(r.is_ok());
        assert!(matches!(
            frames[1],
            Frame::Message(GuestMessage::Status { running: 0, .. })
        ));
    }

    /// Whatever the host sends, the agent answers with an error or drops the connection; it
    /// never panics and never runs anything it should not.
    #[tokio::test]
    async fn hostile_input_is_refused() {
        let bad_requests: Vec<Vec<u8>> = vec![
            // No hello first.
            msg(&HostMessage::Status {}),
            // A wrong protocol version.
            msg(&HostMessage::Hello { version: 99 }),
            // Garbage and oversized frames.
            vec![0xff; 64],
            [hello(), (u32::MAX).to_le_bytes().to_vec(), vec![0]].concat(),
            [hello(), agent::encode(FrameKind::Stdout, b"x").unwrap()].concat(),
            [
                hello(),
                agent::encode(FrameKind::Message, b"{\"type\":\"rm-rf\"}").unwrap(),
            ]
            .concat(),
            // Hello twice.
            [hello(), hello()].concat(),
            // Truncated in the middle of a frame.
            hello()[..7].to_vec(),
        ];
        for input in bad_requests {
            let (r, _) = session(input.clone()).await;
            assert!(r.is_err(), "accepted {input:?}");
        }
        // Bad run requests get an error message, not a command.
        let runs = [
            HostMessage::Run {
                argv: vec![],
                env: vec![],
                wait: true,
            },
            HostMessage::Run {
                argv: vec!["a\0b".into()],
                env: vec![],
                wait: true,
            },
            HostMessage::Run {
                argv: vec!["true".into()],
                env: vec![("A=B".into(), "c".into())],
                wait: true,
            },
            HostMessage::Run {
                argv: vec!["true".into()],
                env: vec![("BIG".into(), "x".repeat(MAX_ENV_BYTES + 1))],
                wait: true,
            },
            HostMessage::Run {
                argv: vec!["/nonexistent/program".into()],
                env: vec![],
                wait: true,
            },
        ];
        for run in runs {
            let (r, frames) = session([hello(), msg(&run)].concat()).await;
            assert!(r.is_ok());
            assert!(
                matches!(&frames[1], Frame::Message(GuestMessage::Error { .. })),
                "{run:?} gave {frames:?}"
            );
        }
    }

    #[tokio::test]
    async fn wait_streams_output_then_the_exit_status() {
        let (mut host, guest) = tokio::io::duplex(1 << 20);
        let agent = tokio::spawn(handle(guest, shared()));
        host.write_all(&hello()).await.unwrap();
        host.write_all(&msg(&HostMessage::Run {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            env: vec![("GREETING".into(), "hi".into())],
            wait: true,
        }))
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut exit = None;
        while exit.is_none() {
            let mut header = [0u8; 5];
            host.read_exact(&mut header).await.unwrap();
            let (kind, len) = agent::parse_header(header).unwrap();
            let mut payload = vec![0; len];
            host.read_exact(&mut payload).await.unwrap();
            match agent::decode::<GuestMessage>(kind, payload).unwrap() {
                Frame::Message(GuestMessage::Exited { code, .. }) => exit = Some(code),
                Frame::Stdout(d) => got.push(("out", d)),
                Frame::Stderr(d) => got.push(("err", d)),
                Frame::Message(_) => {}
            }
        }
        assert_eq!(exit, Some(Some(3)));
        assert!(got.contains(&("out", b"out\n".to_vec())));
        assert!(got.contains(&("err", b"err\n".to_vec())));
        drop(host);
        assert!(agent.await.unwrap().is_ok());
    }
}
