//! bulkhead-switch, one per VM network: which networks a configuration has, and the command
//! line that starts a network's switch.
//!
//! The switch listens on one socket per port, `Dirs::switch_port(network, vm)`, each in a
//! directory of its own so that a VM's VMM can be given exactly its own port (see `plan`). Its
//! `--dir` is `Dirs::switch(network)`, where it also writes `counters.json` (per port: frames,
//! bytes, drops by reason, restarts, why the last port child ended).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use bulkhead_config::vm::{NetKind, SwitchRole};
use bulkhead_config::VmConfig;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::monitor::{self, ProcessId};
use crate::paths::Dirs;
use crate::plan::{p, ProcessSpec};

/// One VM's attachment to a switch network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchPort {
    pub vm: String,
    pub mac: String,
    pub router: bool,
}

/// Every switch network named in `vms`, with its ports (in configuration order).
pub fn networks(vms: &[VmConfig]) -> BTreeMap<String, Vec<SwitchPort>> {
    let mut out: BTreeMap<String, Vec<SwitchPort>> = BTreeMap::new();
    for vm in vms {
        for n in &vm.spec.networks {
            if let NetKind::Switch { network, role } = &n.kind {
                out.entry(network.clone()).or_default().push(SwitchPort {
                    vm: vm.name.clone(),
                    mac: n.mac.to_string(),
                    router: *role == SwitchRole::Router,
                });
            }
        }
    }
    out
}

/// The switch process of `network`. The manager starts it (once per network, before the first
/// VM on it) and waits for `wait_for`, the last port's socket.
pub fn command(program: &str, network: &str, ports: &[SwitchPort], dirs: &Dirs) -> ProcessSpec {
    let mut argv = vec![
        program.to_string(),
        format!("--network={network}"),
        format!("--dir={}", p(&dirs.switch(network))),
    ];
    for port in ports {
        argv.push(format!(
            "--port=vm={},mac={},role={},socket={}",
            port.vm,
            port.mac,
            if port.router { "router" } else { "client" },
            p(&dirs.switch_port(network, &port.vm))
        ));
    }
    ProcessSpec::new(
        format!("switch-{network}"),
        argv,
        ports.last().map(|l| dirs.switch_port(network, &l.vm)),
    )
}

/// The switch program: next to the running binary when it is there, else found on PATH.
pub fn program() -> String {
    std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("bulkhead-switch"))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "bulkhead-switch".into())
}

fn pid_file(dirs: &Dirs, network: &str) -> PathBuf {
    dirs.switch(network).join("switch.json")
}

/// The switch of `network` if one runs (from its pid file, so a switch started by an earlier
/// compositor is found again).
pub fn running(dirs: &Dirs, network: &str) -> Option<ProcessId> {
    monitor::read_json::<ProcessId>(&pid_file(dirs, network)).filter(ProcessId::alive)
}

/// Makes sure the switch of `network` runs with every port's socket in place: re-adopts a
/// running one, replaces one that lacks a port (the configuration changed), else starts one
/// (in its own session, like a VM monitor, so it outlives a compositor crash). Returns the
/// child when it started one (the caller reaps it), and waits at most `timeout` for the
/// sockets.
pub fn ensure_running(
    program: &str,
    network: &str,
    ports: &[SwitchPort],
    dirs: &Dirs,
    timeout: Duration,
) -> Result<Option<Child>, String> {
    let spec = command(program, network, ports, dirs);
    let sockets: Vec<PathBuf> = ports
        .iter()
        .map(|port| dirs.switch_port(network, &port.vm))
        .collect();
    if running(dirs, network).is_some() {
        if sockets.iter().all(|s| s.exists()) {
            return Ok(None);
        }
        stop(dirs, network, timeout);
    }
    let dir = dirs.switch(network);
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let log_path = dir.join("switch.log");
    let (prog, args) = spec.argv.split_first().ok_or("empty switch command")?;
    let mut cmd = monitor::detached_command(prog.as_ref(), &log_path)?;
    cmd.args(args);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {prog} for network {network:?}: {e}"))?;
    let id = ProcessId::of(child.id() as i32)
        .ok_or_else(|| format!("the switch of network {network:?} exited at once"))?;
    let _ = monitor::write_json(&pid_file(dirs, network), &id);
    let deadline = Instant::now() + timeout;
    while !sockets.iter().all(|s| s.exists()) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the switch of network {network:?} ended ({status}); see {}",
                log_path.display()
            ));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the switch of network {network:?} did not listen within {timeout:?}; see {}",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(child))
}

/// Stops the switch of `network` if it runs: SIGTERM (it removes its sockets), SIGKILL after
/// `grace`.
pub fn stop(dirs: &Dirs, network: &str, grace: Duration) {
    let Some(id) = running(dirs, network) else {
        return;
    };
    let pid = Pid::from_raw(id.pid);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while id.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if id.alive() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(pid_file(dirs, network));
}

/// The switch's per-port counters of `network` (frames and bytes each way, drops by reason,
/// restarts, why the last port child ended), as the JSON the switch writes every half second.
pub fn counters(dirs: &Dirs, network: &str) -> Result<String, String> {
    let path = dirs.switch(network).join("counters.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no counters for switch network {network:?} ({}: {e}); is a VM on it running?",
            path.display()
        )
    })?;
    if text.len() > 1 << 20 {
        return Err(format!("{} is implausibly large", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A stand-in switch: creates every `socket=` path given and waits for SIGTERM.
    const FAKE: &str = r#"#!/bin/sh
for a in "$@"; do
  case "$a" in
    --port=*) s="${a##*socket=}"; mkdir -p "$(dirname "$s")"; : > "$s" ;;
  esac
done
trap 'exit 0' TERM
while :; do sleep 0.05; done
"#;

    #[test]
    fn starts_once_readopts_and_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::new(tmp.path(), tmp.path(), tmp.path());
        let prog = tmp.path().join("fake-switch");
        std::fs::write(&prog, FAKE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ports = vec![SwitchPort {
            vm: "gw".into(),
            mac: "02:00:00:00:00:01".into(),
            router: true,
        }];
        let prog = prog.display().to_string();
        let t = Duration::from_secs(5);
        let mut child = ensure_running(&prog, "lan", &ports, &dirs, t)
            .unwrap()
            .expect("started");
        assert!(dirs.switch_port("lan", "gw").exists());
        let id = running(&dirs, "lan").expect("pid file names a live switch");
        // A second VM on the network finds it running.
        assert!(ensure_running(&prog, "lan", &ports, &dirs, t)
            .unwrap()
            .is_none());
        std::fs::write(dirs.switch("lan").join("counters.json"), "{\"ports\":[]}").unwrap();
        assert_eq!(counters(&dirs, "lan").unwrap(), "{\"ports\":[]}");
        assert!(counters(&dirs, "wan").unwrap_err().contains("no counters"));
        stop(&dirs, "lan", t);
        let _ = child.wait();
        assert!(!id.alive());
        assert!(running(&dirs, "lan").is_none());
    }

    #[test]
    fn one_process_per_network_with_a_socket_per_port() {
        let dirs = Dirs::new(
            Path::new("/run/user/1000"),
            Path::new("/s"),
            Path::new("/d"),
        );
        let ports = vec![
            SwitchPort {
                vm: "gw".into(),
                mac: "02:00:00:00:00:01".into(),
                router: true,
            },
            SwitchPort {
                vm: "work".into(),
                mac: "02:00:00:00:00:02".into(),
                router: false,
            },
        ];
        let c = command("bulkhead-switch", "lan", &ports, &dirs);
        assert_eq!(
            c.argv,
            vec![
                "bulkhead-switch",
                "--network=lan",
                "--dir=/run/user/1000/bulkhead/switch/lan",
                "--port=vm=gw,mac=02:00:00:00:00:01,role=router,socket=/run/user/1000/bulkhead/switch/lan/gw/vhost-user.sock",
                "--port=vm=work,mac=02:00:00:00:00:02,role=client,socket=/run/user/1000/bulkhead/switch/lan/work/vhost-user.sock",
            ]
        );
        assert_eq!(
            c.wait_for,
            Some(PathBuf::from(
                "/run/user/1000/bulkhead/switch/lan/work/vhost-user.sock"
            ))
        );
    }
}
