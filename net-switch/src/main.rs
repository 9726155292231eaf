//! `bulkhead-switch`: one VM network. See net-switch/README.md.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_switch::policy::{Mac, PortSpec, Role, DEFAULT_MTU};
use bulkhead_switch::sandbox::{self, Mode, Tier};
use bulkhead_switch::supervisor::{self, chain, Config, PortConfig, Supervisor};
use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// A VM network: one router, clients that reach only the router; a vhost-user net socket per
/// VM, served by a sandboxed child process per VM.
#[derive(Debug, Parser)]
#[command(name = "bulkhead-switch", version)]
struct Args {
    /// The network's name (used in reports).
    #[arg(long)]
    network: String,
    /// The switch's own directory (counters.json is written here). Must exist.
    #[arg(long)]
    dir: PathBuf,
    /// A port: vm=NAME,mac=02:..,role=router|client[,socket=PATH] (default socket:
    /// DIR/NAME/vhost-user.sock; its directory is created). Repeat for every VM on the network.
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// The network's MTU.
    #[arg(long, default_value_t = DEFAULT_MTU)]
    mtu: usize,
    /// Frames each ring between two ports holds (a power of two).
    #[arg(long, default_value_t = 256)]
    ring_slots: u32,
    /// What seccomp does with a forbidden system call: kill, trap, log or disabled.
    #[arg(long, default_value = "kill")]
    seccomp: Mode,
    /// No namespaces and no seccomp (debugging only).
    #[arg(long)]
    no_sandbox: bool,
    /// Obey trap-<vm> and hang-<vm> files in DIR (tests of the sandbox and supervision).
    #[arg(long, hide = true)]
    test_trigger: bool,
}

fn parse_port(s: &str, dir: &std::path::Path) -> Result<PortConfig, String> {
    let (mut vm, mut mac, mut role, mut socket) = (None, None, None, None);
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("--port {s:?}: {part:?} is not key=value"))?;
        match k {
            "vm" => vm = Some(v.to_string()),
            "mac" => mac = Some(v.parse::<Mac>().map_err(|e| format!("--port {s:?}: {e}"))?),
            "role" => {
                role = Some(
                    v.parse::<Role>()
                        .map_err(|e| format!("--port {s:?}: {e}"))?,
                )
            }
            "socket" => socket = Some(PathBuf::from(v)),
            other => return Err(format!("--port {s:?}: unknown key {other:?}")),
        }
    }
    let vm = vm.ok_or_else(|| format!("--port {s:?}: vm= is missing"))?;
    let mac = mac.ok_or_else(|| format!("--port {s:?}: mac= is missing"))?;
    let role = role.ok_or_else(|| format!("--port {s:?}: role= is missing"))?;
    let socket = socket.unwrap_or_else(|| dir.join(&vm).join("vhost-user.sock"));
    Ok(PortConfig {
        spec: PortSpec { vm, mac, role },
        socket,
    })
}

impl TryFrom<Args> for (Config, bool) {
    type Error = String;
    fn try_from(a: Args) -> Result<(Config, bool), String> {
        let dir = std::path::absolute(&a.dir).map_err(|e| format!("--dir {:?}: {e}", a.dir))?;
        if !dir.is_dir() {
            return Err(format!("--dir {dir:?} is not a directory"));
        }
        let ports = a
            .ports
            .iter()
            .map(|p| parse_port(p, &dir))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            Config {
                network: a.network,
                dir,
                ports,
                mtu: a.mtu,
                ring_slots: a.ring_slots,
                seccomp: if a.no_sandbox {
                    Mode::Disabled
                } else {
                    a.seccomp
                },
                test_trigger: a.test_trigger,
            },
            !a.no_sandbox,
        ))
    }
}

fn main() -> ExitCode {
    let (config, sandboxed) = match <(Config, bool)>::try_from(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bulkhead-switch: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config, sandboxed) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bulkhead-switch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, sandboxed: bool) -> Result<ExitCode, String> {
    let dir = config.dir.clone();
    let seccomp = config.seccomp;
    let mut sup = Supervisor::new(config).map_err(|e| chain(&e))?;
    supervisor::install_stop_handlers().map_err(|e| chain(&e))?;
    if !sandboxed {
        sup.run().map_err(|e| chain(&e))?;
        return Ok(ExitCode::SUCCESS);
    }
    sandbox::enter_namespaces().map_err(|e| chain(&e))?;
    // The next child is the PID namespace's init: the supervisor. This process only waits for
    // it and passes SIGTERM/SIGINT on.
    // SAFETY: no thread has been started, so the child is a complete single-threaded copy.
    match unsafe { fork() }.map_err(|e| format!("forking the supervisor: {e}"))? {
        ForkResult::Child => {
            let result = sandbox::pivot_to_tmpfs(&[&dir])
                .and_then(|()| sandbox::install(Tier::Main, seccomp))
                .map_err(|e| chain(&e))
                .and_then(|()| sup.run().map_err(|e| chain(&e)));
            if let Err(e) = result {
                eprintln!("bulkhead-switch: {e}");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        ForkResult::Parent { child } => {
            drop(sup);
            let _ = sandbox::install(Tier::Main, seccomp);
            let mut forwarded = false;
            loop {
                if supervisor::stop_requested() && !forwarded {
                    let _ = kill(child, Signal::SIGTERM);
                    forwarded = true;
                }
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => {
                        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
                    }
                    Ok(WaitStatus::Signaled(..)) => return Ok(ExitCode::FAILURE),
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(format!("waiting for the supervisor: {e}")),
                }
            }
        }
    }
}
