//! A real Linux guest under QEMU on a client port, and the in-process harness as the router:
//! ARP and ICMP echo go through QEMU's vhost-user frontend, the guest's virtio-net driver, the
//! relay, the port children and the rings. Needs `qemu-system-x86_64` and a guest image built
//! by `rootfs/build-guest --profile test`: the directory named by `BULKHEAD_TEST_GUEST`, else
//! the workspace's `target/guest/test` (vmlinuz, initramfs.cpio and root.img); without them
//! the test fails and says what to run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_switch::harness::{Guest, SocketDir};

const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GUEST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const ROUTER_IP: [u8; 4] = [10, 9, 0, 1];
const GUEST_IP: [u8; 4] = [10, 9, 0, 2];

struct Kill(Child, bool);

impl Drop for Kill {
    fn drop(&mut self) {
        if self.1 {
            // SAFETY: kill(2) on a child this test spawned.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        } else {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn arp_request() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&ROUTER_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&ROUTER_MAC);
    f.extend_from_slice(&ROUTER_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&GUEST_IP);
    f
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ping(seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(b"bulkhead-switch!");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&ROUTER_IP);
    ip.extend_from_slice(&GUEST_IP);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&ROUTER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

#[test]
fn a_linux_guest_answers_arp_and_ping_through_the_switch() {
    let image = std::env::var_os("BULKHEAD_TEST_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guest/test"));
    assert!(
        image.join("root.img").exists(),
        "no test guest in {}: run rootfs/build-guest --profile test (.ci/test does)",
        image.display()
    );
    let dir = SocketDir::new("guest").unwrap();
    let switch = Kill(
        Command::new(env!("CARGO_BIN_EXE_bulkhead-switch"))
            .args(["--network", "lan", "--dir"])
            .arg(dir.path())
            .args([
                "--port",
                "vm=r,mac=02:00:00:00:00:01,role=router",
                "--port",
                "vm=c,mac=02:00:00:00:00:02,role=client",
            ])
            .spawn()
            .unwrap(),
        true,
    );
    let sock = |vm: &str| dir.path().join(vm).join("vhost-user.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(sock("r").exists() && sock("c").exists()) {
        assert!(Instant::now() < deadline, "no sockets");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut router = Guest::connect(&sock("r"), true).unwrap();
    router.post_rx().unwrap();
    let img = |f: &str| image.join(f).display().to_string();
    let serial = dir.path().join("serial.log");
    let _vm = Kill(
        Command::new("qemu-system-x86_64")
            .args(["-M", "microvm,memory-backend=mem,acpi=on", "-m", "512"])
            .args(["-object", "memory-backend-memfd,id=mem,size=512M,share=on"])
            .args(["-global", "virtio-mmio.force-legacy=false", "-cpu", "max"])
            .args([
                "-kernel",
                &img("vmlinuz"),
                "-initrd",
                &img("initramfs.cpio"),
            ])
            .args([
                "-append",
                "console=ttyS0 panic=-1 tsc_early_khz=2400000 bulkhead.name=c \
                 bulkhead.overlay=tmpfs bulkhead.net=02:00:00:00:00:02,10.9.0.2/24",
            ])
            .args([
                "-drive",
                &format!(
                    "file={},if=none,id=root,format=raw,readonly=on",
                    img("root.img")
                ),
                "-device",
                "virtio-blk-device,drive=root,serial=bh-root",
            ])
            .args([
                "-chardev",
                &format!(
                    "socket,id=sw0,path={},reconnect-ms=1000",
                    sock("c").display()
                ),
                "-netdev",
                "vhost-user,id=net0,chardev=sw0",
                "-device",
                "virtio-net-device,netdev=net0,mac=02:00:00:00:00:02",
            ])
            .args(["-display", "none", "-monitor", "none", "-nodefaults"])
            .args(["-serial", &format!("file:{}", serial.display())])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        false,
    );
    // ARP until the guest (booting under TCG) answers.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut arp_reply = None;
    while arp_reply.is_none() {
        assert!(
            Instant::now() < deadline,
            "no ARP reply; counters: {}\nguest console:\n{}",
            std::fs::read_to_string(dir.path().join("counters.json")).unwrap_or_default(),
            std::fs::read_to_string(&serial).unwrap_or_default()
        );
        router.reclaim_tx().unwrap();
        router.queue_tx(&arp_request()).unwrap();
        router.kick_tx().unwrap();
        for f in router.recv_frames(1, Duration::from_millis(500)).unwrap() {
            if f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] {
                arp_reply = Some(f);
            }
        }
    }
    let reply = arp_reply.unwrap_or_default();
    assert_eq!(&reply[0..6], &ROUTER_MAC);
    assert_eq!(&reply[6..12], &GUEST_MAC);
    assert_eq!(&reply[28..32], &GUEST_IP);
    // ICMP echo.
    let mut echoed = false;
    for seq in 1..20u16 {
        router.reclaim_tx().unwrap();
        router.queue_tx(&ping(seq)).unwrap();
        router.kick_tx().unwrap();
        for f in router.recv_frames(1, Duration::from_millis(500)).unwrap() {
            if f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 1 && f[34] == 0 {
                assert!(f.ends_with(b"bulkhead-switch!"));
                echoed = true;
            }
        }
        if echoed {
            break;
        }
    }
    assert!(echoed, "no echo reply");
    drop(switch);
}
