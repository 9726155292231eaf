//! Where a VM's files live.
//!
//! - runtime dir `$XDG_RUNTIME_DIR/bulkhead/vms/<vm>/`: sockets (Wayland, vsock, virtiofs,
//!   console, QMP), which the VMM and its helpers see and may write — gone at logout;
//! - control dir `$XDG_RUNTIME_DIR/bulkhead/control/<vm>/`: the launch plan, the monitor's pid,
//!   state and exit report, which no VMM or helper sees, so the host never trusts a file a
//!   compromised VMM could have written;
//! - state dir `$XDG_STATE_HOME/bulkhead/vms/<vm>/`: logs and the per-start scratch disk;
//! - data dir `$XDG_DATA_HOME/bulkhead/vms/<vm>/`: what persists, the home.

use std::path::{Path, PathBuf};

/// The roots under which every VM has its directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// `$XDG_RUNTIME_DIR` itself (the confinement hides everything else in it).
    pub runtime_base: PathBuf,
    pub runtime: PathBuf,
    pub control: PathBuf,
    pub state: PathBuf,
    pub data: PathBuf,
}

impl Dirs {
    /// From the XDG variables (`$HOME/.local/{state,share}` when unset).
    pub fn from_env() -> Result<Dirs, String> {
        let runtime_base = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .ok_or("XDG_RUNTIME_DIR is not set; log in through a session that sets it")?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let xdg = |var: &str, fallback: &str| -> Result<PathBuf, String> {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(fallback)))
                .ok_or_else(|| format!("neither {var} nor HOME is set"))
        };
        Ok(Dirs::new(
            &runtime_base,
            &xdg("XDG_STATE_HOME", ".local/state")?,
            &xdg("XDG_DATA_HOME", ".local/share")?,
        ))
    }

    pub fn new(runtime_base: &Path, state_home: &Path, data_home: &Path) -> Dirs {
        Dirs {
            runtime_base: runtime_base.to_owned(),
            runtime: runtime_base.join("bulkhead/vms"),
            control: runtime_base.join("bulkhead/control"),
            state: state_home.join("bulkhead/vms"),
            data: data_home.join("bulkhead/vms"),
        }
    }

    /// A switch network's directory, bulkhead-switch's `--dir`: its counters.json and one
    /// subdirectory per port. Outside every VM's own dirs: a VM stopping must not remove the
    /// socket the switch listens on for it.
    pub fn switch(&self, network: &str) -> PathBuf {
        self.runtime_base.join("bulkhead/switch").join(network)
    }

    /// The directory of one VM's port on a switch network: the only part of the switch's
    /// directory that VM's VMM sees (confinement keeps directories, not files).
    pub fn switch_port_dir(&self, network: &str, vm: &str) -> PathBuf {
        self.switch(network).join(vm)
    }

    /// The vhost-user socket of that port: bulkhead-switch listens, the VMM connects.
    pub fn switch_port(&self, network: &str, vm: &str) -> PathBuf {
        self.switch_port_dir(network, vm).join("vhost-user.sock")
    }

    pub fn vm(&self, name: &str) -> VmPaths {
        VmPaths {
            runtime: self.runtime.join(name),
            control: self.control.join(name),
            state: self.state.join(name),
            data: self.data.join(name),
        }
    }
}

/// One VM's directories and the files in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    pub runtime: PathBuf,
    pub control: PathBuf,
    pub state: PathBuf,
    pub data: PathBuf,
}

impl VmPaths {
    pub fn wayland(&self) -> PathBuf {
        self.runtime.join("wayland-0")
    }
    /// vhost-user control socket of vhost-device-vsock (QEMU connects).
    pub fn vsock_control(&self) -> PathBuf {
        self.runtime.join("vsock-ctl.sock")
    }
    /// Hybrid vsock: the host connects here to reach guest ports.
    pub fn vsock(&self) -> PathBuf {
        self.runtime.join("vsock.sock")
    }
    /// Hybrid vsock: guest connections to host port `port` arrive here.
    pub fn vsock_port(&self, port: u32) -> PathBuf {
        self.runtime.join(format!("vsock.sock_{port}"))
    }
    pub fn virtiofs(&self, tag: &str) -> PathBuf {
        self.runtime.join(format!("fs-{tag}.sock"))
    }
    pub fn console(&self) -> PathBuf {
        self.runtime.join("console.sock")
    }
    pub fn qmp(&self) -> PathBuf {
        self.runtime.join("qmp.sock")
    }
    pub fn crosvm_control(&self) -> PathBuf {
        self.runtime.join("crosvm.sock")
    }
    pub fn plan(&self) -> PathBuf {
        self.control.join("plan.json")
    }
    /// Written by the monitor once the VMM runs: pids and start times.
    pub fn state_file(&self) -> PathBuf {
        self.control.join("state.json")
    }
    /// Written by the monitor when the VMM has ended: why.
    pub fn exit_file(&self) -> PathBuf {
        self.control.join("exit.json")
    }
    /// Names the VM's monitor process (for re-adoption).
    pub fn monitor_file(&self) -> PathBuf {
        self.control.join("monitor.json")
    }
    pub fn scratch(&self) -> PathBuf {
        self.state.join("scratch.img")
    }
    pub fn log(&self, what: &str) -> PathBuf {
        self.state.join(format!("{what}.log"))
    }
    pub fn home(&self) -> PathBuf {
        self.data.join("home")
    }
}
