//! QEMU itself attaches to a port: realizes a virtio-net device on `-netdev vhost-user` and
//! stays connected. (The guest never runs here, `-S`: this covers the connection, the feature
//! and ring set-up QEMU does at realize, not traffic; traffic is covered by the in-process
//! frontends.) Needs `qemu-system-x86_64` (10.x, `.ci/install-deps` installs it); without it the test fails.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_switch::harness::SocketDir;

fn qemu() -> Option<String> {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| "qemu-system-x86_64".to_string())
}

#[test]
fn qemu_realizes_a_virtio_net_device_on_a_port_and_stays_attached() {
    let Some(qemu) = qemu() else {
        panic!("qemu-system-x86_64 is not installed (run .ci/install-deps): QEMU attachment not checked");
    };
    let dir = SocketDir::new("qemu").unwrap();
    let mut switch = Command::new(env!("CARGO_BIN_EXE_bulkhead-switch"))
        .args(["--network", "lan", "--dir"])
        .arg(dir.path())
        .args([
            "--port",
            "vm=r,mac=02:00:00:00:00:01,role=router",
            "--port",
            "vm=c,mac=02:00:00:00:00:02,role=client",
        ])
        .spawn()
        .unwrap();
    let sock = dir.path().join("c/vhost-user.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut vm = Command::new(qemu)
        .args([
            "-M",
            "microvm,memory-backend=mem",
            "-object",
            "memory-backend-memfd,id=mem,size=64M,share=on",
            "-global",
            "virtio-mmio.force-legacy=false",
            "-chardev",
            &format!("socket,id=sw0,path={},reconnect-ms=1000", sock.display()),
            "-netdev",
            "vhost-user,id=net0,chardev=sw0",
            "-device",
            "virtio-net-device,netdev=net0,mac=02:00:00:00:00:02",
            "-display",
            "none",
            "-serial",
            "none",
            "-monitor",
            "none",
            "-S",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let still_running = vm.try_wait().unwrap().is_none();
    let _ = vm.kill();
    let out = vm.wait_with_output().unwrap();
    let counters = std::fs::read_to_string(dir.path().join("counters.json")).unwrap_or_default();
    // SAFETY: kill(2) on the pid of the switch this test spawned.
    unsafe { libc::kill(switch.id() as i32, libc::SIGTERM) };
    let _ = switch.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(still_running, "QEMU ended: {stderr}");
    assert!(!stderr.contains("vhost"), "QEMU complained: {stderr}");
    assert!(
        !counters.contains("\"last_exit\":\"exited with status"),
        "a port child failed: {counters}"
    );
}
