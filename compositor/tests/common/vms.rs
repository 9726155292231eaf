//! Helpers of the tests on real QEMU guests (vms.rs, guest_gpu.rs): the guest images, VM
//! configs, and the vm-* commands driven through the harness.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_ipc::VmInfo;

use super::Compositor;

/// The test guest's directory (built by `.ci/test` before the tests run).
pub fn guest() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("guest/test");
    assert!(
        dir.join("root.img").exists(),
        "no test guest in {}: run rootfs/build-guest --profile test (.ci/test does)",
        dir.display()
    );
    dir.canonicalize().expect("guest dir")
}

/// The demo guest's directory (`rootfs/build-guest --profile demo`, beside the test guest).
pub fn demo_guest() -> PathBuf {
    let g = guest().with_file_name("demo");
    assert!(
        g.join("root.img").exists(),
        "no demo guest in {}: run rootfs/build-guest --profile demo (.ci/test does)",
        g.display()
    );
    g
}

/// One `[[vm]]` of the test guest; `extra` goes inside it (sub-tables last).
pub fn vm(name: &str, extra: &str) -> String {
    let g = guest();
    let g = g.display();
    format!(
        r##"
[[vm]]
name = "{name}"
color = "#e67e22"
vmm = "qemu"
memory = 256
cpus = 1
kernel = "{g}/vmlinuz"
initramfs = "{g}/initramfs.cpio"
root-disk = "{g}/root.img"
{overlay}
{gpu}
{extra}
"##,
        overlay = if extra.contains("root-overlay") {
            ""
        } else {
            "root-overlay = { type = \"disk\", size = \"64M\" }"
        },
        // The test guest runs no Wayland proxy: no GPU (and so microvm, whatever the QEMU).
        gpu = if extra.contains("gpu") {
            ""
        } else {
            "gpu = false"
        }
    )
}

/// A whole config: TCG (this machine has no usable KVM), generous timeouts for a busy CI.
pub fn config(vms: &str) -> String {
    format!(
        "[vmm]\naccel = \"tcg\"\nstart-timeout = \"3m\"\nstop-timeout = \"30s\"\n\
         [keyboard]\nrepeat-rate = 0\n{vms}"
    )
}

pub fn vm_list(c: &Compositor) -> Vec<VmInfo> {
    let (code, out, err) = c.vm_cli("vm-list", &["--json"]);
    assert_eq!(code, 0, "vm-list failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("vm-list --json: {e}: {out}"))
}

pub fn state_of(c: &Compositor, vm: &str) -> VmInfo {
    vm_list(c)
        .into_iter()
        .find(|v| v.name == vm)
        .unwrap_or_else(|| panic!("{vm} not in vm-list"))
}

/// Runs `vm-run --wait VM ARGS...` and insists on success.
pub fn run_ok(c: &Compositor, vm: &str, args: &[&str]) -> String {
    let mut a = vec!["--wait", vm];
    a.extend_from_slice(args);
    let (code, out, err) = c.vm_cli("vm-run", &a);
    assert_eq!(code, 0, "vm-run {args:?}: {err}\n{}", c.log_text());
    out
}

pub fn stop(c: &Compositor, vm: &str) {
    let (code, out, err) = c.vm_cli("vm-stop", &[vm]);
    assert_eq!((code, out.trim()), (0, &*format!("{vm} stopped")), "{err}");
}

/// The monitor's state file of `vm`.
pub fn monitor_state(c: &Compositor, vm: &str) -> serde_json::Value {
    let path = c
        .runtime
        .join("bulkhead/control")
        .join(vm)
        .join("state.json");
    serde_json::from_slice(&std::fs::read(&path).expect("state.json")).expect("json")
}

/// The VMM's pid from the monitor's state file.
pub fn vmm_pid(c: &Compositor, vm: &str) -> i32 {
    monitor_state(c, vm)["vmm_pid"].as_i64().expect("vmm_pid") as i32
}

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn scratch(c: &Compositor, vm: &str) -> PathBuf {
    c.dir
        .path()
        .join("state/bulkhead/vms")
        .join(vm)
        .join("scratch.img")
}

/// One `[[vm]]` of a Debian guest built into `dir` (demo, full): 1 GiB, two vCPUs.
pub fn debian_vm(name: &str, color: &str, dir: &Path, overlay: &str) -> String {
    format!(
        r##"
[[vm]]
name = "{name}"
color = "{color}"
vmm = "qemu"
memory = 1024
cpus = 2
kernel = "{g}/vmlinuz"
initramfs = "{g}/initramfs.cpio"
root-disk = "{g}/root.img"
root-overlay = {{ type = "disk", size = "{overlay}" }}
"##,
        g = dir.display()
    )
}
