//! QEMU (10.x) command lines: microvm with shared memfd memory, or q35 when a device needs PCI
//! (vfio, and virtio-gpu-rutabaga, whose blob memory is a PCI BAR). vsock goes through
//! vhost-device-vsock (hybrid vsock: a Unix socket on the host), shares through virtiofsd,
//! networking through passt or a tap. Guest Wayland: QEMU's virtio-gpu-rutabaga with
//! cross-domain on the VM's socket when the host has that QEMU, else the guest proxy's vsock
//! stream, which bulkhead-wl-bridge puts on the socket.

use bulkhead_config::vm::{GpuTransport, NetKind};
use bulkhead_config::{VmConfig, VmmSettings};

use crate::paths::VmPaths;
use crate::plan::{
    p, virtiofsd, Access, Commands, HostEnv, Inputs, PassFd, ProcessSpec, RUTABAGA_DEVICE,
};

/// The GPU's window for host blobs mapped into the guest: room for every shm pool and
/// keymap of a busy session (a 4K double-buffered window takes 64 MiB).
const HOSTMEM: &str = "1G";
/// The CPU model under TCG (see `args`).
pub const TCG_CPU: &str = "Nehalem";

/// Builds the helpers and the QEMU process for `vm`.
pub fn command(
    vm: &VmConfig,
    paths: &VmPaths,
    env: &HostEnv,
    inputs: &Inputs,
    tcg: bool,
    cross_domain: bool,
    settings: &VmmSettings,
) -> Commands {
    let s = &vm.spec;
    // PCI passthrough and the GPU's blob memory (a BAR) need a PCI bus: q35 and the -pci
    // device variants.
    let pci = !s.pci.is_empty() || cross_domain;
    let dev = |name: &str| {
        if pci {
            format!("{name}-pci")
        } else {
            format!("{name}-device")
        }
    };
    let mem_mib = s.memory.as_mib();
    let mut helpers = vec![ProcessSpec::new(
        "vsock",
        vec![
            "vhost-device-vsock".into(),
            format!("--guest-cid={}", s.cid),
            format!("--socket={}", p(&paths.vsock_control())),
            format!("--uds-path={}", p(&paths.vsock())),
        ],
        Some(paths.vsock_control()),
    )];
    if s.gpu.enable && s.gpu.transport != GpuTransport::CrossDomain {
        // The guest proxy's streams over vsock, which the bridge puts on the VM's Wayland
        // socket: the path when this QEMU has no cross-domain, and under `auto` also beside
        // it, for guests whose kernel has no virtio-gpu (the proxy takes cross-domain when
        // its kernel offers it).
        let listen = paths.vsock_port(bulkhead_ipc::wlstream::WAYLAND_PORT);
        helpers.push(ProcessSpec::new(
            "wl-bridge",
            vec![
                env.bridge_program.clone(),
                format!("--listen={}", p(&listen)),
                format!("--wayland={}", p(&paths.wayland())),
            ],
            Some(listen),
        ));
    }
    let root = env.uid == 0;
    let mut fs_devices = Vec::new();
    if let Some(home) = inputs.home {
        let (u, g) = crate::plan::home_id_map(env);
        let mut fs = ProcessSpec::new(
            "virtiofsd-home",
            virtiofsd(&paths.virtiofs("home"), home, false, &u, &g, root),
            Some(paths.virtiofs("home")),
        );
        fs.access.push(Access::write(home));
        fs.keep_capabilities = root;
        helpers.push(fs);
        fs_devices.push(("home".to_string(), paths.virtiofs("home")));
    }
    for sh in &s.shares {
        let mut fs = ProcessSpec::new(
            format!("virtiofsd-{}", sh.tag),
            virtiofsd(
                &paths.virtiofs(&sh.tag),
                &sh.path,
                sh.read_only,
                &sh.uid_map,
                &sh.gid_map,
                root,
            ),
            Some(paths.virtiofs(&sh.tag)),
        );
        fs.access.push(Access {
            path: sh.path.clone(),
            writable: !sh.read_only,
        });
        fs.keep_capabilities = root;
        helpers.push(fs);
        fs_devices.push((sh.tag.clone(), paths.virtiofs(&sh.tag)));
    }

    let machine = if pci { "q35" } else { "microvm" };
    let program = match (&env.qemu_cross_domain, cross_domain) {
        (Some(q), true) => q.clone(),
        _ => settings.qemu.clone(),
    };
    let mut a: Vec<String> = vec![
        program,
        "-name".into(),
        format!("bulkhead-{},debug-threads=on", vm.name),
        "-M".into(),
        if pci {
            format!("{machine},memory-backend=mem")
        } else {
            // ACPI lets the guest power itself off; virtio-mmio must be modern for vhost-user.
            format!("{machine},memory-backend=mem,acpi=on")
        },
        "-accel".into(),
        if tcg { "tcg".into() } else { "kvm".into() },
        "-cpu".into(),
        // Under TCG a named model: with `max`, LLVM (Mesa's llvmpipe, which GTK 4 and browsers
        // render with in a guest) takes the CPU for a subtarget without 64-bit code and
        // aborts the app (found starting gtk4-demo in the full guest).
        if tcg { TCG_CPU.into() } else { "host".into() },
        "-m".into(),
        format!("{mem_mib}M"),
        // vhost-user backends map guest memory: it must be a shared memfd.
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={mem_mib}M,share=on"),
        "-smp".into(),
        s.cpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-sandbox".into(),
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny".into(),
        "-kernel".into(),
        p(inputs.kernel),
    ];
    if let Some(initrd) = inputs.initramfs {
        a.extend(["-initrd".into(), p(initrd)]);
    }
    a.extend(["-append".into(), inputs.cmdline.to_string()]);
    if !pci {
        a.extend(["-global".into(), "virtio-mmio.force-legacy=false".into()]);
    }
    // The serial console: a socket for vm-shell, logged whatever is connected, through a
    // pipe the monitor writes to a capped, rotated file (QEMU never sees the state dir).
    let mut fds = vec![PassFd::ConsoleLog];
    a.extend([
        "-chardev".into(),
        format!(
            "socket,id=console,path={},server=on,wait=off,logfile=/proc/self/fd/3,logappend=on",
            p(&paths.console()),
        ),
        "-serial".into(),
        "chardev:console".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", p(&paths.qmp())),
    ]);
    let mut disk = |id: &str, file: &str, ro: bool, serial: &str| {
        a.extend([
            "-drive".into(),
            format!(
                "id={id},file={file},format=raw,if=none,read-only={},discard=unmap",
                if ro { "on" } else { "off" }
            ),
            "-device".into(),
            format!("{},drive={id},serial={serial}", dev("virtio-blk")),
        ]);
    };
    disk("root", &p(inputs.root_disk), true, "bh-root");
    if let Some(scratch) = inputs.scratch {
        disk("scratch", &p(scratch), false, "bh-scratch");
    }
    for (i, d) in s.disks.iter().enumerate() {
        disk(
            &format!("disk{i}"),
            &p(&d.path),
            d.read_only,
            &format!("bh-disk{i}"),
        );
    }
    a.extend([
        "-chardev".into(),
        format!("socket,id=vsock,path={}", p(&paths.vsock_control())),
        "-device".into(),
        format!("{},chardev=vsock", dev("vhost-user-vsock")),
    ]);
    for (i, (tag, sock)) in fs_devices.iter().enumerate() {
        a.extend([
            "-chardev".into(),
            format!("socket,id=fs{i},path={}", p(sock)),
            "-device".into(),
            format!("{},chardev=fs{i},tag={tag}", dev("vhost-user-fs")),
        ]);
    }
    for (i, n) in s.networks.iter().enumerate() {
        let netdev = match &n.kind {
            NetKind::User => {
                // passt, outside QEMU's empty network namespace, is the guest's way out.
                let sock = paths.runtime.join(format!("passt-net{i}.sock"));
                helpers.push(passt(n, &sock, i, env));
                format!(
                    "stream,id=net{i},server=off,addr.type=unix,addr.path={}",
                    p(&sock)
                )
            }
            NetKind::Tap { name, .. } => {
                // Opened by the monitor in the host's network namespace.
                fds.push(PassFd::Tap(name.clone()));
                format!("tap,id=net{i},fd={}", 2 + fds.len())
            }
            NetKind::Switch { network, .. } => {
                a.extend([
                    "-chardev".into(),
                    // Reconnect: a port child that died is replaced on the same socket.
                    format!(
                        "socket,id=sw{i},path={},reconnect-ms=1000",
                        p(&env.dirs.switch_port(network, &vm.name))
                    ),
                ]);
                format!("vhost-user,id=net{i},chardev=sw{i}")
            }
        };
        a.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            format!("{},netdev=net{i},mac={}", dev("virtio-net"), n.mac),
        ]);
    }
    for (i, v) in s.vhost_user.iter().enumerate() {
        a.extend([
            "-chardev".into(),
            format!("socket,id=vu{i},path={}", p(&v.socket)),
            "-device".into(),
            format!(
                "{},chardev=vu{i}",
                dev(&format!("vhost-user-{}", qemu_vhost_name(&v.kind)))
            ),
        ]);
    }
    if cross_domain {
        // The guest's proxy opens cross-domain contexts on this GPU; for each, QEMU (its
        // rutabaga_gfx) connects to the VM's own socket, which is the VM's domain. Host
        // blobs (shm pools, keymaps) are mapped into the guest through the hostmem BAR: an
        // address window, not memory.
        a.extend([
            "-device".into(),
            format!(
                "{RUTABAGA_DEVICE},cross-domain=on,hostmem={HOSTMEM},wayland-socket-path={}",
                p(&paths.wayland())
            ),
        ]);
    }
    for bdf in &s.pci {
        a.extend(["-device".into(), format!("vfio-pci,host={bdf}")]);
    }
    if s.sound.playback || s.sound.capture {
        // One stream is playback only; two add capture.
        let streams = if s.sound.capture { 2 } else { 1 };
        a.extend([
            "-audiodev".into(),
            "pipewire,id=snd0".into(),
            "-device".into(),
            format!("{},audiodev=snd0,streams={streams}", dev("virtio-sound")),
        ]);
    }
    Commands {
        helpers,
        vmm: ProcessSpec {
            fds,
            // PipeWire finds its socket there; the confined view holds nothing else of it.
            env: if s.sound.playback || s.sound.capture {
                vec![("PIPEWIRE_RUNTIME_DIR".into(), p(&env.dirs.runtime_base))]
            } else {
                Vec::new()
            },
            ..ProcessSpec::new("qemu", a, None)
        },
    }
}

/// passt for user networking (`type = "user"`): the guest keeps the addresses the config gives
/// it (10.0.2.15, gateway 10.0.2.2, DNS 10.0.2.3 by default) and reaches the outside world
/// through passt's sockets, never the host's loopback (`--no-map-gw`: the gateway is not the
/// host), with no ports forwarded in. DNS sent to the first nameserver goes to the host's
/// resolver.
fn passt(
    n: &bulkhead_config::vm::NetworkConfig,
    sock: &std::path::Path,
    i: usize,
    env: &HostEnv,
) -> ProcessSpec {
    let mut a = vec![
        "passt".to_string(),
        "--foreground".into(),
        "--stderr".into(),
        "--quiet".into(),
        // As this user, not the "nobody" passt would switch to when root: the view has no
        // other user, and passt runs without capabilities in any case.
        format!("--runas={}:{}", env.uid, env.gid),
        format!("--socket={}", p(sock)),
        "--no-map-gw".into(),
        "--tcp-ports=none".into(),
        "--udp-ports=none".into(),
    ];
    if let Some(addr) = n.address {
        a.push(format!("--address={}", addr.addr));
        a.push(format!("--netmask={}", addr.prefix));
    }
    if let Some(gw) = n.gateway {
        a.push(format!("--gateway={}", gw.0));
    }
    // A nameserver inside the guest's own subnet (10.0.2.3 by default) can only be passt:
    // it forwards those queries to the host's resolver. Others are reached like any address.
    for dns in &n.nameservers {
        if n.address.is_some_and(|a| a.contains(dns.0)) {
            a.push(format!("--dns-forward={}", dns.0));
            break;
        }
    }
    let mut spec = ProcessSpec::new(format!("passt-net{i}"), a, Some(sock.to_path_buf()));
    spec.host_network = true;
    spec.access.push(Access::read("/etc/resolv.conf"));
    spec
}

/// QEMU's device names for vhost-user device types.
fn qemu_vhost_name(kind: &str) -> &str {
    match kind {
        "block" => "blk",
        "sound" => "snd",
        "gpu" => "gpu",
        "input" => "input",
        other => other,
    }
}
