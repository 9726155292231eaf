//! bulkhead-switch, one per VM network: which networks a configuration has, and the command
//! line that starts a network's switch.
//!
//! The switch listens on one socket per port, `Dirs::switch_port(network, vm)`, each in a
//! directory of its own so that a VM's VMM can be given exactly its own port (see `plan`). Its
//! `--dir` is `Dirs::switch(network)`, where it also writes `counters.json` (per port: frames,
//! bytes, drops by reason, restarts, why the last port child ended).

use std::collections::BTreeMap;

use bulkhead_config::vm::{NetKind, SwitchRole};
use bulkhead_config::VmConfig;

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
    ProcessSpec {
        name: format!("switch-{network}"),
        argv,
        wait_for: ports.last().map(|l| dirs.switch_port(network, &l.vm)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

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
