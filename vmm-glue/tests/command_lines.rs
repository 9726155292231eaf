//! Snapshot tests of the generated VMM command lines, one argument per line, compared with
//! `tests/snapshots/*.txt`. crosvm cannot run on the CI machine: these files are what a crosvm
//! host compares with `crosvm run --help` (the crosvm release is named in src/crosvm.rs).
//! After an intended change, rewrite them with `BULKHEAD_UPDATE_SNAPSHOTS=1 cargo test`.

use std::path::{Path, PathBuf};

use bulkhead_config::Config;
use bulkhead_vmm::confine::view;
use bulkhead_vmm::paths::Dirs;
use bulkhead_vmm::plan::{plan, Access, HostEnv, LaunchPlan};

const FULL: &str = r##"
[[vm]]
name = "work"
color = "#3060ff"
memory = "2G"
cpus = 4
kernel = "/images/work/vmlinuz"
initramfs = "/images/work/initramfs.cpio"
root-disk = "/images/work/root.img"
root-overlay = { type = "disk", size = "4G" }
kernel-params = ["quiet", "loglevel=3"]
home = { template = "/etc/skel" }
gpu = { context-types = ["cross-domain"] }
extra-args = ["-extra-flag"]
[[vm.share]]
tag = "projects"
path = "/srv/projects"
mount = "/home/user/projects"
read-only = true
uid-map = ["1000:1000:1"]
gid-map = ["1000:100:1"]
[[vm.disk]]
path = "/images/work/data.img"
[[vm.network]]
type = "tap"
name = "vm-work0"
host-address = "10.0.0.1/24"
address = "10.0.0.2/24"
gateway = "10.0.0.1"
nameservers = ["10.0.0.1"]
routes = [{ to = "10.1.0.0/16", via = "10.0.0.1" }]
[[vm.vhost-user]]
type = "block"
socket = "/run/blk.sock"
"##;

fn env(crosvm_found: bool, kvm_usable: bool) -> HostEnv {
    HostEnv {
        dirs: Dirs::new(
            Path::new("/run/user/1000"),
            Path::new("/home/u/.local/state"),
            Path::new("/home/u/.local/share"),
        ),
        uid: 1000,
        gid: 100,
        crosvm_found,
        kvm_usable,
        bridge_program: "bulkhead-wl-bridge".into(),
        qemu_cross_domain: None,
    }
}

fn plan_of(toml: &str, vmm: &str, e: &HostEnv) -> Result<LaunchPlan, String> {
    let text = toml.replace(
        "color = \"#3060ff\"\n",
        &format!("color = \"#3060ff\"\nvmm = \"{vmm}\"\n"),
    );
    let c = Config::parse(&text, Path::new("/etc/bulkhead/config.toml")).expect("valid config");
    plan(&c.vms[0], &c.vmm, e)
}

fn snapshot(name: &str, plan: &LaunchPlan) {
    let mut text = String::new();
    for p in plan
        .helpers
        .iter()
        .chain(std::iter::once(&plan.vmm_process))
    {
        text.push_str(&format!("# {}\n", p.name));
        for a in &p.argv {
            text.push_str(a);
            text.push('\n');
        }
        // What its confined view holds beyond the system and the VM's runtime dir.
        for a in &p.access {
            let rw = if a.writable { "rw" } else { "ro" };
            text.push_str(&format!("## sees {rw} {}\n", a.path.display()));
        }
        for f in &p.fds {
            text.push_str(&format!("## is handed {f:?}\n"));
        }
        if p.host_network {
            text.push_str("## shares the host's network\n");
        }
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("BULKHEAD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (BULKHEAD_UPDATE_SNAPSHOTS=1 writes it)",
            path.display()
        )
    });
    if want != text {
        for (i, (w, g)) in want.lines().zip(text.lines()).enumerate() {
            assert_eq!(w, g, "{name}: first difference at line {}", i + 1);
        }
        assert_eq!(
            want.lines().count(),
            text.lines().count(),
            "{name}: line count"
        );
    }
}

#[test]
fn crosvm_command_line() {
    let p = plan_of(FULL, "crosvm", &env(true, true)).unwrap();
    assert!(p.helpers.is_empty(), "crosvm runs its own devices");
    assert_eq!(
        p.hybrid_vsock, None,
        "crosvm guests are reached over kernel vsock"
    );
    snapshot("crosvm-full", &p);
}

#[test]
fn qemu_command_line_kvm() {
    let p = plan_of(FULL, "qemu", &env(false, true)).unwrap();
    snapshot("qemu-full-kvm", &p);
}

#[test]
fn qemu_command_line_tcg_user_net_tmpfs() {
    let toml = r##"
[[vm]]
name = "ci"
color = "#3060ff"
kernel = "/g/vmlinuz"
root-disk = "/g/root.img"
root-overlay = "tmpfs"
disposable = true
sound = true
[[vm.network]]
type = "user"
"##;
    let p = plan_of(toml, "auto", &env(false, false)).unwrap();
    assert!(p.scratch.is_none() && p.home.is_none());
    snapshot("qemu-tcg-user", &p);
}

#[test]
fn vfio_puts_qemu_on_q35_with_pci_devices() {
    let toml = FULL.replace("cpus = 4\n", "cpus = 4\npci = [\"0000:03:00.0\"]\n");
    let p = plan_of(&toml, "qemu", &env(false, true)).unwrap();
    let argv = p.vmm_process.argv.join(" ");
    assert!(argv.contains("-M q35,memory-backend=mem"), "{argv}");
    assert!(
        argv.contains("-device vfio-pci,host=0000:03:00.0"),
        "{argv}"
    );
    assert!(argv.contains("vhost-user-vsock-pci") && !argv.contains("-device virtio-blk-device"));
    let c = plan_of(&toml, "crosvm", &env(true, true)).unwrap();
    assert!(c
        .vmm_process
        .argv
        .contains(&"--vfio=/sys/bus/pci/devices/0000:03:00.0,iommu=viommu".to_string()));
}

/// A host with QEMU built with virtio-gpu-rutabaga (.ci/build-qemu-rutabaga).
fn rutabaga_env() -> HostEnv {
    HostEnv {
        qemu_cross_domain: Some("/opt/bulkhead/qemu-rutabaga/bin/qemu-system-x86_64".into()),
        ..env(false, true)
    }
}

#[test]
fn a_gpu_vm_on_a_rutabaga_qemu_takes_cross_domain_on_q35() {
    let p = plan_of(FULL, "qemu", &rutabaga_env()).unwrap();
    let argv = &p.vmm_process.argv;
    assert_eq!(
        argv[0],
        "/opt/bulkhead/qemu-rutabaga/bin/qemu-system-x86_64"
    );
    let line = argv.join(" ");
    assert!(line.contains("-M q35,memory-backend=mem"), "{line}");
    assert!(
        line.contains(
            "-device virtio-gpu-rutabaga-pci,cross-domain=on,hostmem=1G,\
             wayland-socket-path=/run/user/1000/bulkhead/vms/work/wayland-0"
        ),
        "{line}"
    );
    // Under `auto` the vsock bridge stays beside it, for a guest kernel without virtio-gpu.
    assert!(p.helpers.iter().any(|h| h.name == "wl-bridge"));
    snapshot("qemu-cross-domain", &p);
    // transport = "cross-domain": QEMU alone is on the VM's socket, no bridge.
    let only = FULL.replace(
        "gpu = { context-types = [\"cross-domain\"] }",
        "gpu = { transport = \"cross-domain\" }",
    );
    let p = plan_of(&only, "qemu", &rutabaga_env()).unwrap();
    assert!(p
        .vmm_process
        .argv
        .join(" ")
        .contains("virtio-gpu-rutabaga-pci"));
    assert!(
        p.helpers.iter().all(|h| h.name != "wl-bridge"),
        "{:?}",
        p.helpers.iter().map(|h| &h.name).collect::<Vec<_>>()
    );

    // Its QEMU sees its prefix under /opt (libraries), read-only.
    let v = view(&p, &p.vmm_process, Path::new(&argv[0]));
    assert!(
        v.binds.contains(&Access::read("/opt/bulkhead")),
        "{:?}",
        v.binds
    );

    // A VM without gpu stays on microvm with the system QEMU.
    let no_gpu = FULL.replace(
        "gpu = { context-types = [\"cross-domain\"] }",
        "gpu = false",
    );
    let p = plan_of(&no_gpu, "qemu", &rutabaga_env()).unwrap();
    assert_eq!(p.vmm_process.argv[0], "qemu-system-x86_64");
    assert!(p.vmm_process.argv.join(" ").contains("-M microvm"));

    // transport = "vsock" keeps the stream (and the bridge) on any QEMU.
    let vsock = FULL.replace(
        "gpu = { context-types = [\"cross-domain\"] }",
        "gpu = { transport = \"vsock\" }",
    );
    let p = plan_of(&vsock, "qemu", &rutabaga_env()).unwrap();
    assert_eq!(p.vmm_process.argv[0], "qemu-system-x86_64");
    assert!(p.helpers.iter().any(|h| h.name == "wl-bridge"));
    assert!(!p.vmm_process.argv.join(" ").contains("rutabaga"));
}

#[test]
fn a_cross_domain_vm_without_the_device_says_how_to_get_it() {
    let toml = FULL.replace(
        "gpu = { context-types = [\"cross-domain\"] }",
        "gpu = { transport = \"cross-domain\" }",
    );
    let e = plan_of(&toml, "qemu", &env(false, true)).unwrap_err();
    assert!(
        e.contains("no virtio-gpu-rutabaga-pci device") && e.contains(".ci/install-deps"),
        "{e}"
    );
    assert!(plan_of(&toml, "qemu", &rutabaga_env()).is_ok());
    let vsock = FULL.replace(
        "gpu = { context-types = [\"cross-domain\"] }",
        "gpu = { transport = \"vsock\" }",
    );
    let e = plan_of(&vsock, "crosvm", &env(true, true)).unwrap_err();
    assert!(e.contains("cross-domain only"), "{e}");
}

#[test]
fn plans_that_cannot_work_say_why() {
    let e = plan_of(FULL, "crosvm", &env(true, false)).unwrap_err();
    assert!(e.contains("needs KVM"), "{e}");
    let no_kernel = "[[vm]]\nname = \"a\"\ncolor = \"#3060ff\"\n";
    let e = plan_of(no_kernel, "qemu", &env(false, true)).unwrap_err();
    assert!(e.contains("has no kernel; set kernel = "), "{e}");
    let user_net = format!("{FULL}[[vm.network]]\ntype = \"user\"\n");
    let e = plan_of(&user_net, "crosvm", &env(true, true)).unwrap_err();
    assert!(e.contains("not available with crosvm"), "{e}");
}

#[test]
fn a_switch_port_is_a_vhost_user_socket_of_its_own() {
    let switch = format!(
        "{FULL}[[vm.network]]\ntype = \"switch\"\nnetwork = \"lan\"\nmac = \"02:00:00:00:00:09\"\n"
    );
    let sock = "/run/user/1000/bulkhead/switch/lan/work/vhost-user.sock";
    let q = plan_of(&switch, "qemu", &env(false, true)).unwrap();
    let argv = &q.vmm_process.argv;
    let chardev = format!("socket,id=sw1,path={sock},reconnect-ms=1000");
    assert!(argv.contains(&chardev), "{argv:?}");
    assert!(
        argv.contains(&"vhost-user,id=net1,chardev=sw1".to_string()),
        "{argv:?}"
    );
    // The VMM sees its own port's directory and no other part of the switch's directory.
    let v = view(&q, &q.vmm_process, Path::new("/usr/bin/qemu-system-x86_64"));
    let port_dir = Path::new(sock).parent().unwrap();
    assert!(v.binds.contains(&Access::write(port_dir)), "{:?}", v.binds);
    assert!(!v.binds.iter().any(|b| b.path.ends_with("switch/lan")));
    let c = plan_of(&switch, "crosvm", &env(true, true)).unwrap();
    let want = format!("--vhost-user=type=net,socket={sock}");
    assert!(
        c.vmm_process.argv.contains(&want),
        "{:?}",
        c.vmm_process.argv
    );
}

#[test]
fn the_kernel_command_line_carries_the_guest_setup() {
    let p = plan_of(FULL, "qemu", &env(false, true)).unwrap();
    let argv = &p.vmm_process.argv;
    let append = &argv[argv.iter().position(|a| a == "-append").unwrap() + 1];
    for part in [
        "bulkhead.name=work",
        "bulkhead.overlay=disk",
        "bulkhead.share=home,/home/user",
        "bulkhead.share=projects,/home/user/projects,ro",
        "bulkhead.route=10.1.0.0/16,10.0.0.1",
        "bulkhead.dns=10.0.0.1",
        "loglevel=3",
    ] {
        assert!(
            append.split(' ').any(|p| p == part),
            "{part} missing in {append}"
        );
    }
    assert!(append.contains("bulkhead.net=02:") && append.contains(",10.0.0.2/24,10.0.0.1"));
    assert!(!append.contains("tsc_early_khz"), "only under TCG");
    // The scratch disk and home live in the user's state and data dirs.
    assert_eq!(
        p.scratch.as_ref().unwrap().path,
        Path::new("/home/u/.local/state/bulkhead/vms/work/scratch.img")
    );
    assert_eq!(
        p.home.as_ref().unwrap().path,
        Path::new("/home/u/.local/share/bulkhead/vms/work/home")
    );
}

/// Every process of a plan sees the system, its VM's runtime dir and what it declares, and
/// nothing of the user's home, other runtime dirs, /tmp, /var or the rest of /etc.
#[test]
fn every_process_sees_only_its_own_files() {
    let p = plan_of(FULL, "qemu", &env(false, true)).unwrap();
    let runtime = Path::new("/run/user/1000/bulkhead/vms/work");
    for spec in p.helpers.iter().chain(std::iter::once(&p.vmm_process)) {
        let v = view(&p, spec, Path::new("/usr/bin/x"));
        for b in &v.binds {
            let system = [
                "/usr",
                "/nix/store",
                "/etc/ld.so",
                "/bin",
                "/sbin",
                "/lib",
                "/dev/",
            ]
            .iter()
            .any(|s| b.path.to_string_lossy().starts_with(s));
            let declared = spec.access.contains(b);
            assert!(
                system || declared || b.path == runtime,
                "{} sees {:?}",
                spec.name,
                b
            );
            for never in [
                "/",
                "/home/u",
                "/run/user/1000",
                "/tmp",
                "/var",
                "/etc",
                "/root",
            ] {
                assert_ne!(b.path, Path::new(never), "{} sees {never}", spec.name);
            }
        }
        assert!(!v.host_network, "{} shares the host's network", spec.name);
    }
    // The VMM reads its images and writes only its scratch disk, console log and sockets.
    let vmm = &p.vmm_process.access;
    assert!(
        vmm.contains(&Access::read("/images/work/root.img")),
        "{vmm:?}"
    );
    assert!(vmm.contains(&Access::write(
        "/home/u/.local/state/bulkhead/vms/work/scratch.img"
    )));
    assert!(vmm.contains(&Access::write("/dev/kvm")));
    // Each virtiofsd sees its own share only.
    let home = p
        .helpers
        .iter()
        .find(|h| h.name == "virtiofsd-home")
        .unwrap();
    assert_eq!(
        home.access,
        vec![Access::write("/home/u/.local/share/bulkhead/vms/work/home")]
    );
}
