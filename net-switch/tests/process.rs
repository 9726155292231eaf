//! The real `bulkhead-switch` binary: ports in separate processes, under the sandbox, with
//! guests attached through the port sockets as a VMM attaches.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_switch::harness::{Guest, SocketDir};
use bulkhead_switch::policy::{Mac, ETH_HLEN};

const ROUTER: Mac = Mac([2, 0, 0, 0, 0, 1]);
const CLIENT: Mac = Mac([2, 0, 0, 0, 0, 2]);
const WAIT: Duration = Duration::from_secs(10);

struct Switch {
    child: Child,
    dir: SocketDir,
}

impl Switch {
    fn start(extra: &[&str]) -> Switch {
        let dir = SocketDir::new("proc").unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bulkhead-switch"))
            .args(["--network", "lan", "--dir"])
            .arg(dir.path())
            .args([
                "--port",
                &format!("vm=r,mac={ROUTER},role=router"),
                "--port",
                &format!("vm=c,mac={CLIENT},role=client"),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let s = Switch { child, dir };
        s.wait_for(|s| {
            s.sock("r").exists()
                && s.sock("c").exists()
                && s.counters().contains("\"running\":true,")
        });
        s
    }

    fn sock(&self, vm: &str) -> PathBuf {
        self.dir.path().join(vm).join("vhost-user.sock")
    }

    fn counters(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("counters.json")).unwrap_or_default()
    }

    /// The counters.json object of one port.
    fn port(&self, vm: &str) -> String {
        let all = self.counters();
        let key = format!("{{\"vm\":\"{vm}\"");
        let start = all.find(&key).unwrap_or(all.len());
        let rest = &all[start..];
        let end = rest.find("},{").map(|e| e + 1).unwrap_or(rest.len());
        rest[..end].to_string()
    }

    fn wait_for(&self, mut ok: impl FnMut(&Switch) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "timed out; counters: {}",
                self.counters()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn trigger(&self, what: &str, vm: &str) {
        std::fs::write(self.dir.path().join(format!("{what}-{vm}")), "").unwrap();
    }

    /// Host pids: the switch's descendants (outer process, supervisor, port children).
    fn descendants(&self) -> Vec<u32> {
        let mut found = vec![self.child.id()];
        let mut i = 0;
        while i < found.len() {
            let parent = found[i];
            for p in children_of(parent) {
                if !found.contains(&p) {
                    found.push(p);
                }
            }
            i += 1;
        }
        found
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the child this test spawned.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The fields after the command name, which is in parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if rest.split(' ').nth(1).and_then(|s| s.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn status_field(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn interfaces(pid: u32) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    s.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

fn frame(dst: Mac, src: Mac, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

fn connect(path: &Path) -> Guest {
    let deadline = Instant::now() + WAIT;
    loop {
        match Guest::connect(path, true) {
            Ok(mut g) => {
                g.post_rx().unwrap();
                return g;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "connecting to {path:?}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Sends `f` from one guest until the other receives it (rings are handed over right after the
/// children start, so the first frames may meet a peer not yet connected).
fn deliver(from: &mut Guest, to: &mut Guest, f: &[u8]) {
    let deadline = Instant::now() + WAIT;
    loop {
        from.reclaim_tx().unwrap();
        assert!(from.queue_tx(f).unwrap());
        from.kick_tx().unwrap();
        let got = to.recv_frames(1, Duration::from_millis(200)).unwrap();
        if let Some(g) = got.first() {
            assert_eq!(g, f);
            return;
        }
        assert!(Instant::now() < deadline, "frame never arrived");
    }
}

#[test]
fn sandboxed_switch_forwards_between_processes_and_confines_them() {
    let sw = Switch::start(&[]);
    let mut r = connect(&sw.sock("r"));
    let mut c = connect(&sw.sock("c"));
    deliver(&mut r, &mut c, &frame(CLIENT, ROUTER, b"over the ring"));
    deliver(&mut c, &mut r, &frame(ROUTER, CLIENT, b"and back"));
    sw.wait_for(|s| {
        s.port("c").contains("\"rx_frames\":1,") || s.port("c").contains("\"rx_frames\":2,")
    });

    let pids = sw.descendants();
    // The outer process, the supervisor, two ports.
    assert_eq!(pids.len(), 4, "processes: {pids:?}");
    for &pid in &pids[1..] {
        assert_eq!(status_field(pid, "Seccomp"), "2", "pid {pid}");
        assert_eq!(interfaces(pid), vec!["lo".to_string()], "pid {pid}");
    }
    // The ports live in their own PID namespace, under the supervisor (its pid 1).
    let nspid = status_field(pids[2], "NSpid");
    assert!(nspid.split_whitespace().count() == 2, "NSpid {nspid}");
}

#[test]
fn forbidden_syscall_kills_the_child_with_sigsys_and_it_comes_back() {
    let sw = Switch::start(&["--test-trigger"]);
    let mut r = connect(&sw.sock("r"));
    let mut c = connect(&sw.sock("c"));
    deliver(&mut r, &mut c, &frame(CLIENT, ROUTER, b"before"));
    sw.trigger("trap", "c");
    sw.wait_for(|s| {
        s.port("c")
            .contains("\"restarts\":1,\"last_exit\":\"killed by SIGSYS\"")
    });
    // The VMM reconnects to the same socket; the new child has rings to the router again.
    drop(c);
    let mut c = connect(&sw.sock("c"));
    deliver(&mut r, &mut c, &frame(CLIENT, ROUTER, b"after"));
    deliver(&mut c, &mut r, &frame(ROUTER, CLIENT, b"after, back"));
    // The router's child was not disturbed.
    assert!(
        sw.port("r").contains("\"restarts\":0,"),
        "{}",
        sw.counters()
    );
}

#[test]
fn hung_child_is_killed_and_restarted() {
    let sw = Switch::start(&["--test-trigger"]);
    let _r = connect(&sw.sock("r"));
    sw.trigger("hang", "r");
    sw.wait_for(|s| {
        s.port("r")
            .contains("\"last_exit\":\"killed by SIGKILL after its heartbeat stopped\"")
    });
    sw.wait_for(|s| s.port("r").contains("\"running\":true"));
}

#[test]
fn without_sandbox_children_have_no_filter() {
    let sw = Switch::start(&["--no-sandbox"]);
    let mut r = connect(&sw.sock("r"));
    let mut c = connect(&sw.sock("c"));
    deliver(&mut r, &mut c, &frame(CLIENT, ROUTER, b"plain"));
    let pids = sw.descendants();
    assert_eq!(pids.len(), 3, "processes: {pids:?}");
    for &pid in &pids {
        assert_eq!(status_field(pid, "Seccomp"), "0", "pid {pid}");
    }
}

#[test]
fn bad_command_lines_are_refused_with_a_reason() {
    let dir = SocketDir::new("cli").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead-switch"))
        .args(["--network", "lan", "--dir"])
        .arg(dir.path())
        .args([
            "--port",
            "vm=a,mac=02:00:00:00:00:01,role=router",
            "--port",
            "vm=b,mac=02:00:00:00:00:02,role=router",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("both routers"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead-switch"))
        .args(["--network", "lan", "--dir"])
        .arg(dir.path())
        .args(["--port", "vm=a,mac=zz,role=router"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a MAC address"));
}
