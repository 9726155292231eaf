//! The jail on its own: a shell started in a view sees the system, its runtime dir and what it
//! was given, and nothing else of the host (the QEMU-guest tests check the real VMM).

use std::os::fd::OwnedFd;
use std::path::Path;

use bulkhead_vmm::confine::View;
use bulkhead_vmm::jail::{dev_null, spawn, Launch};
use bulkhead_vmm::plan::Access;

/// Runs `script` with sh in a view of the system plus `extra`; returns (exit code, output).
fn run_in_view(extra: Vec<Access>, host_network: bool, script: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).expect("out");
    let err: OwnedFd = out.try_clone().expect("dup").into();
    let mut binds = vec![
        Access::read("/usr"),
        Access::write("/dev/null"),
        Access::read("/etc/ld.so.cache"),
    ];
    binds.extend(extra);
    let links = ["/bin", "/lib", "/lib64", "/sbin"]
        .iter()
        .filter_map(|l| Some((l.into(), std::fs::read_link(l).ok()?)))
        .collect();
    let view = View {
        binds,
        links,
        host_network,
    };
    let argv = vec!["sh".to_string(), "-c".into(), script.into()];
    let pid = spawn(Launch {
        program: Path::new("/usr/bin/sh"),
        argv: &argv,
        env: &[],
        cwd: Path::new("/"),
        view: &view,
        stdio: [dev_null().expect("null"), out.into(), err],
        fds: Vec::new(),
        keep_capabilities: false,
    })
    .expect("spawn");
    let status = nix::sys::wait::waitpid(pid, None).expect("wait");
    let code = match status {
        nix::sys::wait::WaitStatus::Exited(_, c) => c,
        other => panic!("{other:?}"),
    };
    (code, std::fs::read_to_string(&out_path).expect("read"))
}

#[test]
fn a_confined_process_sees_only_its_view() {
    let given = tempfile::tempdir().expect("tempdir");
    std::fs::write(given.path().join("mine"), "mine").unwrap();
    let home = std::env::var("HOME").expect("HOME");
    let (code, out) = run_in_view(
        vec![Access::write(given.path())],
        false,
        &format!(
            "ls / | tr '\\n' ' '; echo; cat {g}/mine; echo; \
             echo x > {g}/written && echo wrote-given; \
             (echo x > /usr/forbidden) 2>/dev/null || echo usr-read-only; \
             ls {home} >/dev/null 2>&1 || echo no-home; \
             echo tmp holds $(ls -A /tmp); \
             cat /proc/1/cmdline | tr '\\0' ' '; echo; \
             ls /sys/class/net >/dev/null 2>&1 || echo no-sys",
            g = given.path().display()
        ),
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let top: Vec<&str> = lines[0].split_whitespace().collect();
    for absent in [
        "home",
        "root",
        "var",
        "etc/passwd",
        "run",
        "srv",
        "opt",
        "mnt",
    ] {
        assert!(!top.contains(&absent), "{absent} in / of the view: {top:?}");
    }
    assert!(top.contains(&"usr") && top.contains(&"proc"), "{top:?}");
    assert_eq!(lines[1], "mine");
    assert_eq!(
        &lines[2..6],
        &[
            "wrote-given",
            "usr-read-only",
            "no-home",
            // Of /tmp, only the directory it was given (it lives there).
            &format!(
                "tmp holds {}",
                given.path().file_name().unwrap().to_string_lossy()
            )
        ]
    );
    // It is PID 1 of its own PID namespace: it sees no other process.
    assert!(lines[6].starts_with("sh -c"), "{out}");
    assert_eq!(lines[7], "no-sys");
    assert!(given.path().join("written").exists());
}

/// A confined process that is uid 0 on the host (root's id mapping) can neither write sysctls
/// (kernel.core_pattern checks the uid, no capability: a new core pattern would run a program
/// as host root) nor reach the sysrq trigger or kernel memory. The pattern is written back
/// unchanged, so a failure of this test changes nothing on the machine.
#[test]
fn a_confined_process_cannot_write_sysctls_or_reach_the_kernel() {
    let (code, out) = run_in_view(
        Vec::new(),
        false,
        "cp=$(cat /proc/sys/kernel/core_pattern); \
         (echo \"$cp\" > /proc/sys/kernel/core_pattern) 2>/dev/null \
           && echo wrote-sysctl || echo sysctl-read-only; \
         for f in sysrq-trigger kcore keys timer_list kallsyms; do \
           if [ -e /proc/$f ] && [ ! -c /proc/$f ]; then echo exposed $f; fi; \
         done",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "sysctl-read-only\n");
    // Not vacuous: this kernel has some of them (some kernels lack sysrq-trigger or kcore).
    assert!(["/proc/keys", "/proc/kallsyms", "/proc/sysrq-trigger"]
        .iter()
        .any(|p| Path::new(p).exists()));
}
