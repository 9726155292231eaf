//! crosvm command lines.
//!
//! Targets crosvm as packaged by nixpkgs `0-unstable-2026-07-06` (crosvm commit 1378aabf,
//! `src/crosvm/cmdline.rs`): `--block`, `--vsock cid=`, `--shared-dir PATH:TAG:type=fs:...`,
//! `--wayland-sock`, `--gpu context-types=cross-domain`, `--net tap-fd=`, `--vfio`,
//! `--vhost-user type=,socket=`, `--serial`, `--socket`. Global options (`--log-level`) go
//! before `run`; the kernel is the last argument. The snapshot tests in `tests` pin the exact
//! output so a crosvm host can compare it with `crosvm run --help` quickly.

use bulkhead_config::values::IdMap;
use bulkhead_config::vm::NetKind;
use bulkhead_config::{VmConfig, VmmSettings};

use crate::paths::VmPaths;
use crate::plan::{p, Commands, HostEnv, Inputs, PassFd, ProcessSpec};

fn id_map(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}", m.guest, m.host, m.count))
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds the crosvm process (crosvm runs its devices itself: no helpers).
pub fn command(
    vm: &VmConfig,
    paths: &VmPaths,
    env: &HostEnv,
    inputs: &Inputs,
    settings: &VmmSettings,
) -> Commands {
    let s = &vm.spec;
    let mut a: Vec<String> = vec![
        settings.crosvm.clone(),
        format!("--log-level={}", s.log_level.as_str()),
        "run".into(),
        format!("--name=bulkhead-{}", vm.name),
        format!("--mem={}", s.memory.as_mib()),
        format!("--cpus={}", s.cpus),
        format!("--socket={}", p(&paths.crosvm_control())),
        format!("--vsock=cid={}", s.cid),
        // Through a pipe the monitor writes to a capped, rotated file.
        "--serial=type=file,path=/proc/self/fd/3,hardware=serial,num=1,console".into(),
    ];
    if let Some(initrd) = inputs.initramfs {
        a.push(format!("--initrd={}", p(initrd)));
    }
    a.push(format!("--params={}", inputs.cmdline));
    a.push(format!(
        "--block=path={},ro=true,id=bh-root",
        p(inputs.root_disk)
    ));
    if let Some(scratch) = inputs.scratch {
        a.push(format!("--block=path={},id=bh-scratch", p(scratch)));
    }
    for (i, d) in s.disks.iter().enumerate() {
        a.push(format!(
            "--block=path={},ro={},id=bh-disk{i}",
            p(&d.path),
            d.read_only
        ));
    }
    if let Some(home) = inputs.home {
        let (u, g) = crate::plan::home_id_map(env);
        a.push(format!(
            "--shared-dir={}:home:type=fs:uidmap={}:gidmap={}",
            p(home),
            id_map(&u),
            id_map(&g)
        ));
    }
    for sh in &s.shares {
        let mut opt = format!("--shared-dir={}:{}:type=fs", p(&sh.path), sh.tag);
        if !sh.uid_map.is_empty() {
            opt.push_str(&format!(":uidmap={}", id_map(&sh.uid_map)));
        }
        if !sh.gid_map.is_empty() {
            opt.push_str(&format!(":gidmap={}", id_map(&sh.gid_map)));
        }
        a.push(opt);
    }
    if s.gpu.enable {
        // The guest's Wayland proxy reaches the compositor through cross-domain on the VM's
        // own socket, which tags every connection with the VM's domain.
        a.push(format!(
            "--gpu=context-types={}",
            s.gpu.context_types.join(":")
        ));
        a.push(format!("--wayland-sock={}", p(&paths.wayland())));
    }
    let mut fds = vec![PassFd::ConsoleLog];
    for n in &s.networks {
        match &n.kind {
            NetKind::Tap { name, .. } => {
                // Opened by the monitor in the host's network namespace.
                fds.push(PassFd::Tap(name.clone()));
                a.push(format!("--net=tap-fd={},mac={}", 2 + fds.len(), n.mac))
            }
            // crosvm has no user networking of its own (a passt helper is future work):
            // `plan` refuses such VMs with a clear message before this runs.
            NetKind::User => {}
            NetKind::Switch { network, .. } => a.push(format!(
                "--vhost-user=type=net,socket={}",
                p(&env.dirs.switch_port(network, &vm.name))
            )),
        }
    }
    for v in &s.vhost_user {
        a.push(format!(
            "--vhost-user=type={},socket={}",
            v.kind,
            p(&v.socket)
        ));
    }
    for bdf in &s.pci {
        a.push(format!("--vfio=/sys/bus/pci/devices/{bdf},iommu=viommu"));
    }
    a.push(p(inputs.kernel));
    Commands {
        helpers: Vec::new(),
        vmm: ProcessSpec {
            fds,
            ..ProcessSpec::new("crosvm", a, None)
        },
    }
}
