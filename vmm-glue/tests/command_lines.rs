//! Snapshot tests of the generated VMM command lines, one argument per line, compared with
//! `tests/snapshots/*.txt`. crosvm cannot run on the CI machine: these files are what a crosvm
//! host compares with `crosvm run --help` (the crosvm release is named in src/crosvm.rs).
//! After an intended change, rewrite them with `BULKHEAD_UPDATE_SNAPSHOTS=1 cargo test`.

use std::path::{Path, PathBuf};

use bulkhead_config::Config;
use bulkhead_vmm::paths::Dirs;
use bulkhead_vmm::plan::{plan, HostEnv, LaunchPlan};

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
    // The VMM sees its own port's directory and no other part of the switch's.
    let port_dir = PathBuf::from("/run/user/1000/bulkhead/switch/lan/work");
    assert!(q.confine.keep.contains(&port_dir), "{:?}", q.confine.keep);
    assert!(!q.confine.keep.iter().any(|k| k.ends_with("switch/lan")));
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
    assert!(p.confine.hide.contains(&PathBuf::from("/run/user/1000")));
}
