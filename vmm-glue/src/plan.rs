//! A launch plan: everything the monitor process does to start one VM, decided up front from
//! the config so that it can be checked (and snapshot-tested) without starting anything.

use std::path::{Path, PathBuf};

use bulkhead_config::values::IdMap;
use bulkhead_config::vm::{Accel, GpuTransport, LogLevel, NetKind, RootOverlay, VmmKind};
use bulkhead_config::{VmConfig, VmmSettings};
use serde::{Deserialize, Serialize};

use crate::paths::Dirs;
use crate::{crosvm, qemu};

/// The guest user's uid/gid in Bulkhead guest images.
pub const GUEST_UID: u32 = 1000;

/// Which VMM a plan uses, after `auto` was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vmm {
    Qemu,
    Crosvm,
}

/// Facts about the host that shape a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEnv {
    pub dirs: Dirs,
    pub uid: u32,
    pub gid: u32,
    /// Whether `crosvm` was found (for `vmm = "auto"`).
    pub crosvm_found: bool,
    /// Whether /dev/kvm can be opened (for `accel = "auto"`).
    pub kvm_usable: bool,
    /// The Wayland bridge for VMMs without cross-domain (next to the running binary when it
    /// is there, else found on PATH).
    pub bridge_program: String,
    /// A QEMU with the virtio-gpu-rutabaga device (crosvm's cross-domain inside QEMU), when
    /// this host has one: `[vmm] qemu` when it lists the device, else the build of
    /// .ci/build-qemu-rutabaga under /opt (only while `[vmm] qemu` is left at its default).
    pub qemu_cross_domain: Option<String>,
}

/// Where .ci/build-qemu-rutabaga installs QEMU with virtio-gpu-rutabaga.
pub const RUTABAGA_QEMU: &str = "/opt/bulkhead/qemu-rutabaga/bin/qemu-system-x86_64";

/// The QEMU device that carries cross-domain.
pub const RUTABAGA_DEVICE: &str = "virtio-gpu-rutabaga-pci";

/// Whether the QEMU at `program` lists the virtio-gpu-rutabaga device (`-device help`).
pub fn qemu_has_rutabaga(program: &Path) -> bool {
    std::process::Command::new(program)
        .args(["-device", "help"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains(&format!("\"{RUTABAGA_DEVICE}\""))
        })
        .unwrap_or(false)
}

/// The QEMU to run cross-domain VMs with on this host (see [`HostEnv::qemu_cross_domain`]).
/// One `-device help` at most when ours is installed (it runs once, at start-up).
fn detect_cross_domain_qemu(settings: &VmmSettings) -> Option<String> {
    let ours = Path::new(RUTABAGA_QEMU);
    // A QEMU of the user's choosing is never swapped for ours behind their back.
    if settings.qemu == VmmSettings::default().qemu && ours.is_file() && qemu_has_rutabaga(ours) {
        return Some(RUTABAGA_QEMU.to_string());
    }
    let q = find_program(&settings.qemu)?;
    qemu_has_rutabaga(&q).then(|| q.display().to_string())
}

impl HostEnv {
    /// Looks at this host.
    pub fn detect(settings: &VmmSettings) -> Result<HostEnv, String> {
        let kvm_usable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        Ok(HostEnv {
            dirs: Dirs::from_env()?,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            crosvm_found: find_program(&settings.crosvm).is_some(),
            kvm_usable,
            bridge_program: std::env::current_exe()
                .ok()
                .map(|e| e.with_file_name("bulkhead-wl-bridge"))
                .filter(|p| p.is_file())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "bulkhead-wl-bridge".into()),
            qemu_cross_domain: detect_cross_domain_qemu(settings),
        })
    }
}

/// `program` as given when it contains a '/', else found on PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A process the monitor starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Short name, used for its log file.
    pub name: String,
    pub argv: Vec<String>,
    /// A socket the process creates; the monitor waits for it before going on.
    pub wait_for: Option<PathBuf>,
    /// Host files it uses beyond the VM's runtime dir (images, shares, devices, sockets):
    /// its confined view holds these and nothing else of the host's data.
    #[serde(default)]
    pub access: Vec<Access>,
    /// Whether it stays in the host's network namespace (passt, which is the guest's way
    /// out); everything else gets an empty one of its own.
    #[serde(default)]
    pub host_network: bool,
    /// Descriptors the monitor opens for it, handed in as fds 3, 4, ... in this order.
    #[serde(default)]
    pub fds: Vec<PassFd>,
    /// Environment beyond the confined default (PATH and the log settings).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Keeps its capabilities inside its user namespace (virtiofsd run by root acts for the
    /// guest's users and builds its own sandbox); everything else runs with none.
    #[serde(default)]
    pub keep_capabilities: bool,
}

impl ProcessSpec {
    /// A process that needs nothing of the host but its VM's runtime dir.
    pub fn new(name: impl Into<String>, argv: Vec<String>, wait_for: Option<PathBuf>) -> Self {
        ProcessSpec {
            name: name.into(),
            argv,
            wait_for,
            access: Vec::new(),
            host_network: false,
            fds: Vec::new(),
            env: Vec::new(),
            keep_capabilities: false,
        }
    }

    /// The descriptor number the process sees for a `PassFd` it is given (added to `fds`).
    pub fn pass_fd(&mut self, fd: PassFd) -> i32 {
        self.fds.push(fd);
        2 + self.fds.len() as i32
    }
}

/// A host path a confined process may use, at the same path inside its view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub path: PathBuf,
    pub writable: bool,
}

impl Access {
    pub fn read(path: impl Into<PathBuf>) -> Access {
        Access {
            path: path.into(),
            writable: false,
        }
    }

    pub fn write(path: impl Into<PathBuf>) -> Access {
        Access {
            path: path.into(),
            writable: true,
        }
    }
}

/// A descriptor the monitor opens in the host's namespaces and hands to a confined process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PassFd {
    /// The tap device of this name (the VMM has no way to open it from its own network
    /// namespace).
    Tap(String),
    /// The write end of a pipe the monitor copies into the VM's console log, capped and
    /// rotated (the guest decides how much its console prints).
    ConsoleLog,
}

/// A tap device the monitor prepares before the VMM opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapSetup {
    pub name: String,
    pub host_address: Option<String>,
    pub bridge: Option<String>,
}

/// The per-start scratch disk that holds the root overlay's upper layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scratch {
    pub path: PathBuf,
    pub size: u64,
}

/// The persistent home, created from a template at first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeSetup {
    pub path: PathBuf,
    pub template: Option<PathBuf>,
}

/// Everything the monitor needs to start, watch and clean up one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchPlan {
    pub vm: String,
    pub vmm: Vmm,
    pub runtime_dir: PathBuf,
    /// Where the monitor keeps its state: outside every view.
    pub control_dir: PathBuf,
    pub state_dir: PathBuf,
    pub helpers: Vec<ProcessSpec>,
    pub vmm_process: ProcessSpec,
    pub scratch: Option<Scratch>,
    pub home: Option<HomeSetup>,
    pub taps: Vec<TapSetup>,
    /// Files that must exist before anything starts (kernel, disks, ...).
    pub inputs: Vec<PathBuf>,
    /// The vsock CID (crosvm: kernel vhost-vsock) and whether the host reaches the agent
    /// through a hybrid-vsock Unix socket (QEMU) instead.
    pub cid: u32,
    pub hybrid_vsock: Option<PathBuf>,
}

/// The guest kernel command line for `vm`.
pub fn kernel_cmdline(vm: &VmConfig, tcg: bool, home: bool) -> String {
    let s = &vm.spec;
    let mut p: Vec<String> = vec!["console=ttyS0".into(), "panic=-1".into()];
    if s.log_level < LogLevel::Debug {
        p.push("quiet".into());
    }
    if tcg {
        // Without a known TSC frequency, about one TCG boot in twelve hangs calibrating it.
        p.push("tsc_early_khz=2400000".into());
    }
    p.push(format!("bulkhead.name={}", vm.name));
    p.push(
        match s.root_overlay {
            RootOverlay::Disk { .. } => "bulkhead.overlay=disk",
            RootOverlay::Tmpfs => "bulkhead.overlay=tmpfs",
        }
        .into(),
    );
    for n in &s.networks {
        if let Some(addr) = n.address {
            let gw = n.gateway.map(|g| format!(",{}", g.0)).unwrap_or_default();
            p.push(format!("bulkhead.net={},{addr}{gw}", n.mac));
        }
        for r in &n.routes {
            p.push(format!("bulkhead.route={},{}", r.to, r.via.0));
        }
        for d in &n.nameservers {
            p.push(format!("bulkhead.dns={}", d.0));
        }
    }
    if home {
        p.push("bulkhead.share=home,/home/user".into());
    }
    for sh in &s.shares {
        let ro = if sh.read_only { ",ro" } else { "" };
        p.push(format!("bulkhead.share={},{}{ro}", sh.tag, sh.mount));
    }
    p.extend(s.kernel_params.iter().cloned());
    p.join(" ")
}

/// The id mappings of the home: the guest user is the host user.
pub fn home_id_map(env: &HostEnv) -> (Vec<IdMap>, Vec<IdMap>) {
    (
        vec![IdMap {
            guest: GUEST_UID,
            host: env.uid,
            count: 1,
        }],
        vec![IdMap {
            guest: GUEST_UID,
            host: env.gid,
            count: 1,
        }],
    )
}

/// A virtiofsd for one shared directory.
pub fn virtiofsd(
    socket: &Path,
    dir: &Path,
    read_only: bool,
    uid_map: &[IdMap],
    gid_map: &[IdMap],
    running_as_root: bool,
) -> Vec<String> {
    let mut a = vec![
        "virtiofsd".to_string(),
        format!("--socket-path={}", socket.display()),
        format!("--shared-dir={}", dir.display()),
        "--cache=auto".into(),
        // Unprivileged, virtiofsd's own namespace sandbox needs privileges it does not have;
        // the monitor's confinement (its own root with the shared dir only) is its sandbox
        // then. As root it keeps its own sandbox inside the monitor's as well.
        format!(
            "--sandbox={}",
            if running_as_root { "namespace" } else { "none" }
        ),
    ];
    if read_only {
        a.push("--readonly".into());
    }
    for m in uid_map {
        a.push(format!(
            "--translate-uid=map:{}:{}:{}",
            m.guest, m.host, m.count
        ));
    }
    for m in gid_map {
        a.push(format!(
            "--translate-gid=map:{}:{}:{}",
            m.guest, m.host, m.count
        ));
    }
    a
}

/// Decides how `vm` starts on this host.
pub fn plan(vm: &VmConfig, settings: &VmmSettings, env: &HostEnv) -> Result<LaunchPlan, String> {
    let s = &vm.spec;
    let paths = env.dirs.vm(&vm.name);
    let vmm = match s.vmm {
        VmmKind::Qemu => Vmm::Qemu,
        VmmKind::Crosvm => Vmm::Crosvm,
        VmmKind::Auto if env.crosvm_found => Vmm::Crosvm,
        VmmKind::Auto => Vmm::Qemu,
    };
    let tcg = match settings.accel {
        Accel::Tcg => true,
        Accel::Kvm => false,
        Accel::Auto => !env.kvm_usable,
    };
    if tcg && vmm == Vmm::Crosvm {
        return Err(format!(
            "VM {:?} uses crosvm, which needs KVM, but /dev/kvm cannot be opened (or accel = \
             \"tcg\"); set vmm = \"qemu\" or give this user access to /dev/kvm",
            vm.name
        ));
    }
    let kernel = s.kernel.clone().ok_or_else(|| {
        format!(
            "VM {:?} has no kernel; set kernel = \"...\" in its [[vm]] (rootfs/build-guest builds one)",
            vm.name
        )
    })?;
    let root_disk = s.root_disk.clone().ok_or_else(|| {
        format!(
            "VM {:?} has no root disk; set root-disk = \"...\" in its [[vm]]",
            vm.name
        )
    })?;
    let mut inputs = vec![kernel.clone(), root_disk.clone()];
    inputs.extend(s.initramfs.iter().cloned());
    inputs.extend(s.disks.iter().map(|d| d.path.clone()));
    inputs.extend(s.shares.iter().map(|d| d.path.clone()));
    if vmm == Vmm::Crosvm {
        if s.networks.iter().any(|n| n.kind == NetKind::User) {
            return Err(format!(
                "VM {:?}: type = \"user\" networking is not available with crosvm yet; use a \
                 tap interface or vmm = \"qemu\"",
                vm.name
            ));
        }
        if s.sound.playback || s.sound.capture {
            return Err(format!(
                "VM {:?}: sound is not available with crosvm yet (nixpkgs' crosvm has no audio \
                 backend that keeps capture off); use vmm = \"qemu\" or remove `sound`",
                vm.name
            ));
        }
    }
    let home = s.home.as_ref().map(|h| HomeSetup {
        path: h.path.clone().unwrap_or_else(|| paths.home()),
        template: h.template.clone(),
    });
    let scratch = match s.root_overlay {
        RootOverlay::Disk { size } => Some(Scratch {
            path: paths.scratch(),
            size: size.0,
        }),
        RootOverlay::Tmpfs => None,
    };
    let taps = s
        .networks
        .iter()
        .filter_map(|n| match &n.kind {
            NetKind::Tap {
                name,
                host_address,
                bridge,
            } => Some(TapSetup {
                name: name.clone(),
                host_address: host_address.map(|a| a.to_string()),
                bridge: bridge.clone(),
            }),
            _ => None,
        })
        .collect();
    let cmdline = kernel_cmdline(vm, tcg, home.is_some());
    let inputs_ref = Inputs {
        kernel: &kernel,
        initramfs: s.initramfs.as_deref(),
        root_disk: &root_disk,
        scratch: scratch.as_ref().map(|s| s.path.as_path()),
        home: home.as_ref().map(|h| h.path.as_path()),
        cmdline: &cmdline,
    };
    let cross_domain = cross_domain(vm, vmm, env)?;
    let (helpers, mut vmm_process, hybrid) = match vmm {
        Vmm::Qemu => {
            let q = qemu::command(vm, &paths, env, &inputs_ref, tcg, cross_domain, settings);
            (q.helpers, q.vmm, Some(paths.vsock()))
        }
        Vmm::Crosvm => {
            let c = crosvm::command(vm, &paths, env, &inputs_ref, settings);
            (c.helpers, c.vmm, None)
        }
    };
    vmm_process.access = vmm_access(vm, vmm, env, &inputs_ref, tcg);
    // The user's extra arguments go last, but before crosvm's positional kernel argument.
    let at = match vmm {
        Vmm::Qemu => vmm_process.argv.len(),
        Vmm::Crosvm => vmm_process.argv.len().saturating_sub(1),
    };
    vmm_process
        .argv
        .splice(at..at, s.extra_args.iter().cloned());
    Ok(LaunchPlan {
        vm: vm.name.clone(),
        vmm,
        runtime_dir: paths.runtime.clone(),
        control_dir: paths.control.clone(),
        state_dir: paths.state.clone(),
        helpers,
        vmm_process,
        scratch,
        home,
        taps,
        inputs,
        cid: s.cid,
        hybrid_vsock: hybrid,
    })
}

/// Whether `vm`'s Wayland goes over virtio-gpu cross-domain (the VMM on the VM's socket)
/// rather than the guest proxy's vsock stream (the bridge on it), or an error that says what
/// to change when the config asks for what this host cannot do.
fn cross_domain(vm: &VmConfig, vmm: Vmm, env: &HostEnv) -> Result<bool, String> {
    let gpu = &vm.spec.gpu;
    if !gpu.enable {
        return Ok(false);
    }
    match (vmm, gpu.transport) {
        (Vmm::Crosvm, GpuTransport::Vsock) => Err(format!(
            "VM {:?}: crosvm carries Wayland over cross-domain only; remove `transport = \"vsock\"` \
             from its gpu or set vmm = \"qemu\"",
            vm.name
        )),
        (Vmm::Crosvm, _) => Ok(true),
        (Vmm::Qemu, GpuTransport::Vsock) => Ok(false),
        (Vmm::Qemu, GpuTransport::Auto) => Ok(env.qemu_cross_domain.is_some()),
        (Vmm::Qemu, GpuTransport::CrossDomain) if env.qemu_cross_domain.is_some() => Ok(true),
        (Vmm::Qemu, GpuTransport::CrossDomain) => Err(format!(
            "VM {:?} asks for transport = \"cross-domain\", but this host's QEMU has no \
             {RUTABAGA_DEVICE} device: run .ci/install-deps (it builds one into {}), set \
             [vmm] qemu to a QEMU built with --enable-rutabaga-gfx, or use transport = \"auto\"",
            vm.name,
            RUTABAGA_QEMU.trim_end_matches("/bin/qemu-system-x86_64")
        )),
    }
}

/// What a VMM (QEMU or crosvm alike) uses of the host: its images, the console log, the
/// sockets of its vhost-user devices and switch ports, KVM, passed-through PCI devices, and
/// the sound server when the VM has sound.
fn vmm_access(vm: &VmConfig, vmm: Vmm, env: &HostEnv, inputs: &Inputs, tcg: bool) -> Vec<Access> {
    let s = &vm.spec;
    let mut a = vec![Access::read(inputs.kernel), Access::read(inputs.root_disk)];
    a.extend(inputs.initramfs.map(Access::read));
    a.extend(inputs.scratch.map(Access::write));
    for d in &s.disks {
        a.push(Access {
            path: d.path.clone(),
            writable: !d.read_only,
        });
    }
    for n in &s.networks {
        if let NetKind::Switch { network, .. } = &n.kind {
            // The port's directory, not its socket: a restarted switch makes a new socket
            // there, which a bind of the old one would never show.
            a.push(Access::write(env.dirs.switch_port_dir(network, &vm.name)));
        }
    }
    if vmm == Vmm::Crosvm {
        // crosvm serves virtio-fs and vsock itself (QEMU leaves both to helpers).
        a.extend(inputs.home.map(Access::write));
        for sh in &s.shares {
            a.push(Access {
                path: sh.path.clone(),
                writable: !sh.read_only,
            });
        }
        a.push(Access::write("/dev/vhost-vsock"));
    }
    a.extend(s.vhost_user.iter().map(|v| Access::write(&v.socket)));
    if !tcg {
        a.push(Access::write("/dev/kvm"));
    }
    if !s.pci.is_empty() {
        // VFIO: the container and group nodes, and the devices' sysfs entries (read-only).
        a.push(Access::write("/dev/vfio"));
        a.push(Access::read("/sys"));
    }
    if s.sound.playback || s.sound.capture {
        // The user's PipeWire socket: the only host service a VM with sound reaches.
        a.push(Access::write(env.dirs.runtime_base.join("pipewire-0")));
    }
    a
}

/// The files a VMM command line refers to.
pub struct Inputs<'a> {
    pub kernel: &'a Path,
    pub initramfs: Option<&'a Path>,
    pub root_disk: &'a Path,
    pub scratch: Option<&'a Path>,
    pub home: Option<&'a Path>,
    pub cmdline: &'a str,
}

/// Helper processes and the VMM process of one plan.
pub struct Commands {
    pub helpers: Vec<ProcessSpec>,
    pub vmm: ProcessSpec,
}

/// Path to a string for a command line.
pub fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Checks a PCI device for passthrough under `sysfs` (normally `/sys`): it exists, sits in an
/// IOMMU group, and every device of that group is bound to vfio-pci or is a PCI bridge (a VM
/// gets whole groups: anything else in the group would be reachable from the guest).
pub fn check_vfio(sysfs: &Path, bdf: &str) -> Result<(), String> {
    let dev = sysfs.join("bus/pci/devices").join(bdf);
    if !dev.exists() {
        return Err(format!(
            "PCI device {bdf} does not exist on this host (see lspci -D)"
        ));
    }
    let group = std::fs::read_link(dev.join("iommu_group")).map_err(|_| {
        format!(
            "PCI device {bdf} is in no IOMMU group: enable the IOMMU (intel_iommu=on or \
             amd_iommu=on) before passing devices through"
        )
    })?;
    let group_name = group
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let members = sysfs
        .join("kernel/iommu_groups")
        .join(&group_name)
        .join("devices");
    let entries = std::fs::read_dir(&members)
        .map_err(|e| format!("cannot list IOMMU group {group_name}: {e}"))?;
    for e in entries.flatten() {
        let other = e.file_name().to_string_lossy().into_owned();
        let path = sysfs.join("bus/pci/devices").join(&other);
        let driver = std::fs::read_link(path.join("driver"))
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
        // PCI class 0x0604xx: a PCI-to-PCI bridge, which stays with the host.
        let bridge = std::fs::read_to_string(path.join("class"))
            .is_ok_and(|c| c.trim().starts_with("0x0604"));
        match driver.as_deref() {
            Some("vfio-pci") => {}
            _ if bridge => {}
            Some(d) => {
                return Err(format!(
                    "PCI device {bdf} shares IOMMU group {group_name} with {other}, which is \
                     bound to {d}; bind every device of the group to vfio-pci (the NixOS module \
                     does this early at boot)"
                ))
            }
            None if other == bdf => {
                return Err(format!(
                    "PCI device {bdf} is not bound to vfio-pci; bind it first (echo vfio-pci > \
                     /sys/bus/pci/devices/{bdf}/driver_override, then bind)"
                ))
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs: devices with their group, driver and class.
    fn sysfs(devs: &[(&str, &str, Option<&str>, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        for (bdf, group, driver, class) in devs {
            let d = root.join("bus/pci/devices").join(bdf);
            std::fs::create_dir_all(&d).unwrap();
            let g = root.join("kernel/iommu_groups").join(group);
            std::fs::create_dir_all(g.join("devices")).unwrap();
            std::os::unix::fs::symlink(&g, d.join("iommu_group")).unwrap();
            std::os::unix::fs::symlink(&d, g.join("devices").join(bdf)).unwrap();
            if let Some(drv) = driver {
                let dd = root.join("bus/pci/drivers").join(drv);
                std::fs::create_dir_all(&dd).unwrap();
                std::os::unix::fs::symlink(&dd, d.join("driver")).unwrap();
            }
            std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
        }
        t
    }

    #[test]
    fn vfio_groups_are_checked() {
        let t = sysfs(&[
            ("0000:03:00.0", "14", Some("vfio-pci"), "0x030000"),
            ("0000:03:00.1", "14", Some("vfio-pci"), "0x040300"),
            ("0000:00:1c.0", "14", Some("pcieport"), "0x060400"),
            ("0000:05:00.0", "15", Some("vfio-pci"), "0x020000"),
            ("0000:05:00.1", "15", Some("e1000e"), "0x020000"),
            ("0000:06:00.0", "16", None, "0x020000"),
        ]);
        check_vfio(t.path(), "0000:03:00.0").unwrap();
        let e = check_vfio(t.path(), "0000:05:00.0").unwrap_err();
        assert!(
            e.contains("shares IOMMU group 15 with 0000:05:00.1, which is bound to e1000e"),
            "{e}"
        );
        let e = check_vfio(t.path(), "0000:06:00.0").unwrap_err();
        assert!(e.contains("not bound to vfio-pci"), "{e}");
        let e = check_vfio(t.path(), "0000:09:00.0").unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }
}
