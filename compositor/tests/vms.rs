//! VM lifecycle on real QEMU guests (TCG): the `test` guest from `rootfs/build-guest --profile
//! test`, started by the compositor's VM manager and driven through the vm-* commands.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_ipc::VmState;
use common::vms::*;
use common::*;

const ORANGE: [u8; 3] = [0xe6, 0x7e, 0x22];

wayland_client::delegate_noop!(common::client::Events: ignore wayland_protocols::xdg::activation::v1::client::xdg_activation_v1::XdgActivationV1);

/// A launch's activation token reaches the app (`XDG_ACTIVATION_TOKEN` in its environment, as
/// toolkits read it), and the window of that VM the app activates with it takes the keyboard:
/// once, never from another domain's client, and not after the user acted elsewhere.
#[test]
fn a_launch_token_reaches_the_app_and_focuses_the_window_it_activates() {
    use common::client::{Client, WHITE};
    use wayland_protocols::xdg::activation::v1::client::xdg_activation_v1::XdgActivationV1;
    let c = Compositor::start(&config(&format!(
        "{}\n[[vm]]\nname = \"work\"\ncolor = \"#3060ff\"\n[[vm]]\nname = \"banking\"\ncolor = \"#2ecc71\"\n",
        vm("test", "")
    )));
    let (mut work, _wt) = window(&c, "work", "work app", (300, 200));
    user_clicks(&c, &mut work, "work app");
    // The test VM's app and banking's each have a window behind work's.
    let map = |domain: &str, title: &str| {
        let mut cl = Client::connect(&c.vm_socket(domain));
        let t = cl.toplevel(title);
        cl.map(&t, 200, 150, WHITE);
        let id = c.wait_window(domain, title).id;
        let activation: XdgActivationV1 = cl.bind(1);
        (cl, t, id, activation)
    };
    let (mut app, at, app_id, app_activation) = map("test", "launched app");
    let (mut bank, bt, _, bank_activation) = map("banking", "bank app");
    let focused = |c: &Compositor| c.windows().into_iter().find(|w| w.focused).map(|w| w.title);
    assert_eq!(focused(&c).as_deref(), Some("work app"));

    // The launch: its command reads the token from its environment.
    let launch = |c: &Compositor| {
        let token = run_ok(
            c,
            "test",
            &["sh", "-c", "echo $XDG_ACTIVATION_TOKEN $DESKTOP_STARTUP_ID"],
        );
        let parts: Vec<&str> = token.split_whitespace().collect();
        assert!(
            parts.len() == 2 && parts[0] == parts[1] && parts[0].len() >= 16,
            "the launch's token did not reach the app: {token:?}"
        );
        parts[0].to_string()
    };
    let token = launch(&c);
    // Another domain's client cannot spend it.
    bank_activation.activate(token.clone(), &bt.surface);
    bank.roundtrip();
    assert_eq!(
        focused(&c).as_deref(),
        Some("work app"),
        "banking used the VM's token"
    );
    // The app's own window, activated with it, takes the keyboard.
    app_activation.activate(token.clone(), &at.surface);
    app.roundtrip();
    c.wait_windows("the launched app focused", |ws| {
        ws.iter().any(|w| w.id == app_id && w.focused)
    });
    // Once: back in work, the same token does nothing.
    user_clicks(&c, &mut work, "work app");
    app_activation.activate(token, &at.surface);
    app.roundtrip();
    assert_eq!(
        focused(&c).as_deref(),
        Some("work app"),
        "a token worked twice"
    );
    // A fresh launch's token is void once the user clicks elsewhere before the app uses it.
    let token = launch(&c);
    user_clicks(&c, &mut work, "work app");
    app_activation.activate(token, &at.surface);
    app.roundtrip();
    assert_eq!(
        focused(&c).as_deref(),
        Some("work app"),
        "a token outlived the user's click"
    );
    stop(&c, "test");
}

#[test]
fn vm_run_boots_a_stopped_vm_runs_as_the_guest_user_and_vm_stop_ends_it() {
    let c = Compositor::start(&config(&vm("test", "")));
    assert_eq!(state_of(&c, "test").state, VmState::Stopped);

    // A stopped VM boots on demand; output and exit codes come back.
    let (code, out, err) = c.vm_cli("vm-run", &["--wait", "test", "echo", "hello"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "hello\n"),
        "{err}\n{}",
        c.log_text()
    );
    let (code, out, err) = c.vm_cli(
        "vm-run",
        &[
            "--wait",
            "test",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    assert_eq!(run_ok(&c, "test", &["id", "-un"]), "user\n");
    // The image's session environment: toolkits take Wayland first, X11 second.
    let env = run_ok(&c, "test", &["env"]);
    for want in [
        "QT_QPA_PLATFORM=wayland;xcb",
        "GDK_BACKEND=wayland,x11",
        "MOZ_ENABLE_WAYLAND=1",
        "XDG_SESSION_TYPE=wayland",
        "WAYLAND_DISPLAY=wayland-0",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    }
    // No Xwayland in this image: no X display to point at.
    assert!(
        !env.lines().any(|l| l.starts_with("DISPLAY=")),
        "DISPLAY set in a guest without Xwayland: {env}"
    );
    let (code, _, err) = c.vm_cli("vm-run", &["--wait", "test", "no-such-program"]);
    assert!(
        code != 0 && err.contains("cannot start the command"),
        "{err}"
    );

    let info = state_of(&c, "test");
    assert_eq!(info.state, VmState::Running);
    assert_eq!(info.vmm.as_deref(), Some("qemu"));
    assert!(info
        .boot
        .is_some_and(|b| b.total_ms > 0 && b.agent_ms.is_some()));
    assert!(
        scratch(&c, "test").exists(),
        "a running VM has its scratch disk"
    );

    // The VMM sees its own runtime dir and nothing else of the user's: no IPC socket, no host
    // Wayland socket (/proc/PID/root resolves paths in the VMM's mount namespace).
    let qemu = vmm_pid(&c, "test");
    let seen_by_qemu =
        |p: &Path| PathBuf::from(format!("/proc/{qemu}/root")).join(p.strip_prefix("/").unwrap());
    assert!(
        c.ipc.exists() && !seen_by_qemu(&c.ipc).exists(),
        "ipc.sock visible to the VMM"
    );
    assert!(UnixStream::connect(seen_by_qemu(&c.ipc)).is_err());
    assert!(
        !seen_by_qemu(&c.host_socket).exists(),
        "host socket visible to the VMM"
    );
    assert!(seen_by_qemu(&c.runtime.join("bulkhead/vms/test/vsock.sock")).exists());

    // The serial console: a root shell (input piped here; Ctrl-] leaves on a terminal).
    let (code, out, err) = c.vm_cli_input("vm-shell", &["test"], b"echo console-$((6*7))\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("console-42"), "{out}");

    // A busy VM stops too.
    let (code, _, err) = c.vm_cli("vm-run", &["test", "sleep", "1000"]);
    assert_eq!(code, 0, "{err}");
    stop(&c, "test");
    assert_eq!(state_of(&c, "test").state, VmState::Stopped);
    assert!(
        !Path::new(&format!("/proc/{qemu}")).exists(),
        "QEMU still runs"
    );
    assert_eq!(c.leftover_processes(), Vec::<i32>::new());
    assert!(
        !scratch(&c, "test").exists(),
        "the scratch disk is deleted at stop"
    );

    // Errors say what to do.
    let (code, _, err) = c.vm_cli("vm-run", &["--wait", "nope", "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("VM \"nope\" is not defined; defined: test"),
        "{err}"
    );
    let (_, out, _) = c.vm_cli("vm-stop", &["test"]);
    assert_eq!(out.trim(), "test was not running");
}

#[test]
fn root_changes_vanish_at_restart_and_the_home_persists() {
    // `keep` depends on `temp`: starting it starts `temp` first.
    let c = Compositor::start(&config(&format!(
        "{}{}",
        vm("keep", "depends-on = [\"temp\"]"),
        vm("temp", "disposable = true\nroot-overlay = \"tmpfs\"")
    )));
    run_ok(
        &c,
        "keep",
        &[
            "sh",
            "-c",
            "echo data > /home/user/notes && echo junk > /var/tmp/junk && sync",
        ],
    );
    assert_eq!(
        state_of(&c, "temp").state,
        VmState::Running,
        "the dependency runs"
    );
    let host_home = c.dir.path().join("data/bulkhead/vms/keep/home");
    assert_eq!(
        std::fs::read_to_string(host_home.join("notes")).expect("the note on the host"),
        "data\n"
    );
    stop(&c, "keep");
    let out = run_ok(
        &c,
        "keep",
        &[
            "sh",
            "-c",
            "cat /home/user/notes; test -e /var/tmp/junk || echo root-clean",
        ],
    );
    assert_eq!(out, "data\nroot-clean\n");
    stop(&c, "keep");

    // A disposable VM has no home on the host and forgets its root.
    let out = run_ok(
        &c,
        "temp",
        &[
            "sh",
            "-c",
            "echo junk > /var/tmp/junk; grep -c virtiofs /proc/mounts || true",
        ],
    );
    assert_eq!(out, "0\n", "a disposable VM mounts no home");
    stop(&c, "temp");
    assert!(!c.dir.path().join("data/bulkhead/vms/temp/home").exists());
    let out = run_ok(
        &c,
        "temp",
        &["sh", "-c", "test -e /var/tmp/junk || echo root-clean"],
    );
    assert_eq!(out, "root-clean\n");
}

/// Runs `ip ARGS` (in the calling thread's network namespace), insisting on success.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stand-in for the internet: a network namespace behind a veth pair from the calling
/// thread's namespace, holding a web server at 203.0.113.10:8080 and a DNS server at
/// 203.0.113.53 that answers `inet.example` with it. The calling thread's namespace gets
/// 203.0.113.1/24 and a default route into it. Serves until the returned sender is dropped.
fn internet() -> std::sync::mpsc::Sender<()> {
    use std::net::UdpSocket;
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(net)");
        tid_tx.send(nix::unistd::gettid().as_raw()).expect("tid");
        go_rx.recv().expect("configured");
        let web = TcpListener::bind("203.0.113.10:8080").expect("web");
        web.set_nonblocking(true).expect("nonblocking");
        let dns = UdpSocket::bind("203.0.113.53:53").expect("dns");
        dns.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        while matches!(
            stop_rx.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        ) {
            let mut q = [0u8; 512];
            if let Ok((n, peer)) = dns.recv_from(&mut q) {
                let _ = dns.send_to(&dns_answer(&q[..n], [203, 0, 113, 10]), peer);
            }
            if let Ok((mut s, _)) = web.accept() {
                s.set_nonblocking(false).expect("blocking");
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                // The whole request first: closing with some of it unread would reset the
                // connection and could cut the answer short in the guest (a CI run read
                // just "t").
                let mut req = Vec::new();
                let mut chunk = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 4096 {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = "hello from the internet\n";
                let _ = write!(
                    s,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                // Then end our side and let the client close: no reset either way.
                let _ = s.shutdown(std::net::Shutdown::Write);
                let _ = s.read(&mut chunk);
            }
        }
    });
    let tid = tid_rx.recv().expect("tid").to_string();
    let netns = format!("/proc/{tid}/ns/net");
    ip(&["link", "set", "lo", "up"]);
    ip(&[
        "link", "add", "bh-up", "type", "veth", "peer", "name", "bh-inet", "netns", &tid,
    ]);
    ip(&["addr", "add", "203.0.113.1/24", "dev", "bh-up"]);
    ip(&["link", "set", "bh-up", "up"]);
    ip(&["route", "add", "default", "via", "203.0.113.254"]);
    for args in [
        "addr add 203.0.113.10/24 dev bh-inet",
        "addr add 203.0.113.53/24 dev bh-inet",
        "link set bh-inet up",
        "link set lo up",
    ] {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .arg("ip")
            .args(args.split(' '))
            .output()
            .expect("nsenter");
        assert!(out.status.success(), "{args}: {out:?}");
    }
    go_tx.send(()).expect("go");
    stop_tx
}

/// A DNS reply to `query`: `addr` for an A question, no answer for anything else.
fn dns_answer(query: &[u8], addr: [u8; 4]) -> Vec<u8> {
    // The question's name ends at the first zero-length label after the 12-byte header.
    let mut end = 12;
    while end < query.len() && query[end] != 0 {
        end += 1 + query[end] as usize;
    }
    let question_end = (end + 5).min(query.len());
    let is_a = query.get(end + 1..end + 3) == Some(&[0, 1]);
    let mut r = query[..2.min(query.len())].to_vec();
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    r.extend_from_slice(&query[12.min(question_end)..question_end]);
    if is_a {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&addr);
    }
    r
}

/// User networking (passt) takes a guest to the outside world, names resolved, but never to
/// the host's own loopback services, under any address the guest might try.
#[test]
fn user_network_reaches_the_outside_but_never_the_hosts_loopback() {
    if !is_root() {
        cannot_run(
            "vms::user_network_reaches_the_outside_but_never_the_hosts_loopback",
            "network namespaces with a veth pair need root",
        );
        return;
    }
    // This thread's own network namespace stands in for the host's (the compositor, its VM
    // monitor and passt inherit it); nothing here reaches the machine's real network.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(net)");
    let _internet = internet();
    // A service only the host itself should reach.
    let local = TcpListener::bind("127.0.0.1:0").expect("listen");
    local.set_nonblocking(true).expect("nonblocking");
    let port = local.local_addr().expect("addr").port();
    let c = Compositor::start(&config(&vm(
        "test",
        "[[vm.network]]\ntype = \"user\"\nnameservers = [\"203.0.113.53\"]",
    )));
    // Every attempt is bounded (timeout); a connection that got through but hung shows on the
    // host side, in the listener's backlog.
    let script = format!(
        "a=$(nslookup inet.example | awk '/^Address/ {{x=$NF}} END {{print x}}'); \
         echo resolved $a; \
         printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 20 nc $a 8080 | tail -n 1; \
         for h in 10.0.2.2 10.0.2.3 127.0.0.1 203.0.113.1 203.0.113.254; do \
           (timeout 5 nc $h {port} </dev/null && echo reached $h) & \
         done; wait; echo done"
    );
    let out = run_ok(&c, "test", &["sh", "-c", &script]);
    assert_eq!(
        out,
        "resolved 203.0.113.10\nhello from the internet\ndone\n",
        "{}",
        c.log_text()
    );
    assert!(
        matches!(local.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a guest connection reached the host's loopback service"
    );
}

#[test]
fn tap_interface_gets_its_address_in_a_network_namespace() {
    if !is_root() {
        cannot_run(
            "vms::tap_interface_gets_its_address_in_a_network_namespace",
            "a tap device in a private network namespace needs root",
        );
        return;
    }
    // This test's own network namespace (per thread; the compositor inherits it).
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(net)");
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("ip")
    };
    assert!(ip(&["link", "set", "lo", "up"]).status.success());
    // A service on the host side of the tap (in this namespace).
    let listener = TcpListener::bind("0.0.0.0:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req);
        let body = format!("you are {}\n", peer.ip());
        let _ = write!(
            s,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    });
    let c = Compositor::start(&config(&vm(
        "test",
        "[[vm.network]]\ntype = \"tap\"\nname = \"bh-tap0\"\nhost-address = \"10.10.0.1/24\"\n\
         address = \"10.10.0.2/24\"",
    )));
    let out = run_ok(
        &c,
        "test",
        &[
            "sh",
            "-c",
            &format!("ip -4 -o addr show; wget -q -O - http://10.10.0.1:{port}/"),
        ],
    );
    assert!(out.contains("inet 10.10.0.2/24"), "{out}");
    assert!(out.ends_with("you are 10.10.0.2\n"), "{out}");
    server.join().expect("server");
    let host =
        String::from_utf8_lossy(&ip(&["-4", "-o", "addr", "show", "bh-tap0"]).stdout).into_owned();
    assert!(host.contains("inet 10.10.0.1/24"), "{host}");
    stop(&c, "test");
    assert!(
        !ip(&["link", "show", "bh-tap0"]).status.success(),
        "the tap the monitor created is removed at stop"
    );
}

#[test]
fn an_autostarted_vm_that_stays_idle_shuts_itself_down() {
    let c = Compositor::start(&config(&vm(
        "test",
        "autostart = true\nauto-shutdown = { after = \"2s\" }",
    )));
    // Nobody asks for it: the session starts it.
    wait_until("the autostart VM to run", 180, || {
        state_of(&c, "test").state == VmState::Running
    });
    wait_until("the idle VM to stop", 120, || {
        state_of(&c, "test").state == VmState::Stopped
    });
    assert_eq!(c.leftover_processes(), Vec::<i32>::new());
    let img = c.screenshot("vm-idle");
    assert_eq!(
        notification_diff(&img, 0, ORANGE, "[test] shut down after being idle"),
        0
    );
}

#[test]
fn a_killed_qemu_is_noticed_and_its_windows_go() {
    let c = Compositor::start(&config(&vm("test", "")));
    let (code, _, err) = c.vm_cli("vm-start", &["test"]);
    assert_eq!(code, 0, "{err}");
    // A client on the VM's socket stands in for the VM's apps until the graphics path lands.
    let _foot = c.spawn("test", "foot", &[]);
    c.wait_window("test", "foot");
    let qemu = vmm_pid(&c, "test");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill qemu");
    wait_until("the crash to be noticed", 60, || {
        state_of(&c, "test").state == VmState::Stopped
    });
    let info = state_of(&c, "test");
    assert!(
        info.last_exit
            .as_deref()
            .is_some_and(|e| e.contains("qemu was killed by SIGKILL")),
        "{info:?}"
    );
    c.wait_windows("the VM's window to go", |ws| {
        ws.iter().all(|w| w.domain != "test")
    });
    let img = c.screenshot("vm-crashed");
    assert_eq!(
        notification_diff(
            &img,
            0,
            ORANGE,
            "[test] stopped unexpectedly: qemu was killed by SIGKILL"
        ),
        0
    );
    assert_eq!(c.leftover_processes(), Vec::<i32>::new());
    assert!(!scratch(&c, "test").exists());
    // Nothing else was affected: the VM starts again.
    assert_eq!(run_ok(&c, "test", &["echo", "again"]), "again\n");
}

#[test]
fn a_restarted_compositor_adopts_the_running_vm() {
    let mut c = Compositor::start(&config(&vm("test", "")));
    let (code, _, err) = c.vm_cli("vm-start", &["test"]);
    assert_eq!(code, 0, "{err}");
    let qemu = vmm_pid(&c, "test");
    c.kill_hard();
    assert!(
        Path::new(&format!("/proc/{qemu}")).exists(),
        "the VM outlives the compositor"
    );
    c.spawn_compositor();
    let info = state_of(&c, "test");
    assert_eq!(info.state, VmState::Running, "{info:?}");
    assert_eq!(
        run_ok(&c, "test", &["echo", "still", "here"]),
        "still here\n"
    );
    assert_eq!(vmm_pid(&c, "test"), qemu, "the same VM, not a new one");
    // Ending the session (a logout's SIGTERM) powers the VM off before the compositor exits.
    let status = c.end_session();
    assert!(status.success(), "the compositor ended with {status}");
    assert_eq!(c.leftover_processes(), Vec::<i32>::new());
    let exit = std::fs::read_to_string(c.runtime.join("bulkhead/control/test/exit.json"))
        .expect("exit.json");
    assert!(exit.contains("the guest powered off"), "{exit}");
}

#[test]
fn twenty_start_stop_cycles_leave_nothing_behind() {
    let c = Compositor::start(&config(&vm("test", "")));
    // The fewest fds seen over half a second: an IPC connection or worker may be closing at
    // any one instant; a leak stays.
    let compositor_fds = || {
        (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                std::fs::read_dir(format!("/proc/{}/fd", c.pid()))
                    .map(|d| d.count())
                    .unwrap_or(usize::MAX)
            })
            .min()
            .unwrap_or(usize::MAX)
    };
    let mut fds_after_first = 0;
    for i in 0..20 {
        let (code, _, err) = c.vm_cli("vm-start", &["test"]);
        assert_eq!(code, 0, "start {i}: {err}\n{}", c.log_text());
        stop(&c, "test");
        if i == 0 {
            fds_after_first = compositor_fds();
        }
    }
    assert_eq!(c.leftover_processes(), Vec::<i32>::new());
    let fds_at_end = compositor_fds();
    assert!(
        fds_at_end <= fds_after_first,
        "the compositor leaks fds: {fds_after_first} after the first cycle, {fds_at_end} after 20"
    );
    let mut left: Vec<String> = std::fs::read_dir(c.runtime.join("bulkhead/vms/test"))
        .expect("runtime dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["wayland-0", "wayland-0.lock"]);
    assert!(!scratch(&c, "test").exists());
}

#[test]
fn a_bad_vm_value_is_rejected_before_anything_starts() {
    // The session still starts (with the defaults: a broken file must not keep the user out),
    // names the error by file and line, and nothing of the bad VM exists.
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).expect("mkdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config(&vm("test", "cid = 2"))).expect("write");
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["--backend", "headless", "--config"])
        .arg(&cfg)
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("run bulkhead");
    let at = format!("{}:", cfg.display());
    let deadline = Instant::now() + Duration::from_secs(60);
    let err = loop {
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        if err.contains("starting with the default config") || Instant::now() > deadline {
            break err;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("bulkhead ended ({status}) instead of starting with the defaults:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        err.contains(&at)
            && err.contains("cid must be at least 3")
            && err.contains("starting with the default config"),
        "{err}"
    );
    assert!(
        !runtime.join("bulkhead/vms/test").exists(),
        "the bad VM got a socket"
    );
}

#[test]
fn vms_run_for_an_unprivileged_user() {
    // As root, switch to nobody; otherwise this already is an unprivileged user.
    let user = if is_root() {
        Some((65534, 65534))
    } else {
        None
    };
    let c = Compositor::start_with(&config(&vm("test", "")), user, &[]);
    assert_eq!(run_ok(&c, "test", &["id", "-u"]), "1000\n");
    // The compositor, the VM monitor and QEMU all run as that user.
    let expect = user.map_or(nix::unistd::getuid().as_raw(), |(u, _)| u);
    for pid in [c.pid() as i32, vmm_pid(&c, "test")] {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .expect("Uid");
        assert_eq!(uid, expect.to_string(), "pid {pid} runs as uid {uid}");
    }
    stop(&c, "test");
    assert_eq!(c.leftover_processes(), Vec::<i32>::new());
}

#[test]
fn the_launcher_boots_a_stopped_vm_for_its_app() {
    let app = "[[vm.app]]\nname = \"Marker\"\ncommand = [\"sh\", \"-c\", \"echo launched > /tmp/launched; exec sleep 600\"]";
    let c = Compositor::start(&config(&vm("test", app)));
    assert_eq!(state_of(&c, "test").state, VmState::Stopped);
    // Super, "mark", Enter: through the compositor's own key handling.
    c.input(chord(&[], KEY_LEFTMETA));
    let mut keys = Vec::new();
    for k in [50, 30, 19, 37, 28] {
        keys.extend(chord(&[], k)); // m a r k Enter
    }
    c.input(keys);
    wait_until("the launcher started the VM", 30, || {
        state_of(&c, "test").state != VmState::Stopped
    });
    // The agent ran the app: its marker is there and its process runs.
    wait_until("the app ran in the guest", 300, || {
        let (code, out, _) = c.vm_cli("vm-run", &["--wait", "test", "cat", "/tmp/launched"]);
        code == 0 && out.trim() == "launched"
    });
    let out = run_ok(&c, "test", &["sh", "-c", "ps | grep -c '[s]leep 600'"]);
    assert_eq!(out.trim(), "1", "the app's process runs");
    stop(&c, "test");
}

/// The full guest (`rootfs/build-guest --profile full`): a Debian root under systemd, the agent
/// and the Wayland proxy as units, the launcher apps taken from the image's desktop entries.
#[test]
fn the_full_guest_runs_systemd_units_and_exports_its_apps() {
    let g = guest().with_file_name("full");
    assert!(
        g.join("root.img").exists(),
        "no full guest in {}: run rootfs/build-guest --profile full (.ci/test does)",
        g.display()
    );
    // The config build-guest wrote, with its apps from the image's .desktop files.
    let written = std::fs::read_to_string(g.join("config.toml")).unwrap();
    assert!(
        written.contains("[[vm.app]]\nname = \"Foot\"\ncommand = [\"foot\"]"),
        "foot's desktop entry is not a launcher app:\n{written}"
    );
    assert!(g.join("applications/foot.desktop").exists());
    let teal = [0x16, 0xa0, 0x85];
    let cfg = config(&debian_vm("full", "#16a085", &g, "512M"));
    let c = Compositor::start(&cfg);
    // systemd is PID 1, and the agent and the proxy are its units, active.
    let (code, out, err) = c.vm_cli(
        "vm-run",
        &[
            "--wait",
            "full",
            "sh",
            "-c",
            // The units of the agent and proxy processes, from their cgroups (systemctl would
            // need a bus the guest user has not got).
            "cat /proc/1/comm; for p in /proc/[0-9]*; do \
               case $(cat $p/comm 2>/dev/null) in bulkhead-agent|bulkhead-wl-pro*) \
                 sed 's|.*/||' $p/cgroup;; esac; done | sort -u; \
             . /etc/profile.d/bulkhead.sh; echo $WAYLAND_DISPLAY",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "systemd\nbulkhead-agent.service\nbulkhead-wl-proxy.service\nwayland-0\n",
        "{err}"
    );
    // An app through the unit's proxy: framed in the VM's colour.
    let (code, _, err) = c.vm_cli("vm-run", &["full", "foot"]);
    assert_eq!(code, 0, "{err}");
    let w = c.wait_window("full", "foot");
    std::thread::sleep(Duration::from_millis(1000));
    let img = c.screenshot("vm-full-foot");
    assert_framed(&img, &w, teal, &format!("[full] {}", w.title), true);
    stop(&c, "full");
}

/// Two test guests on one bulkhead-switch network (router and client), both started through
/// vm-run: they ping each other; the client's switch child is killed, the supervisor restarts
/// it, QEMU reconnects and the ping works again.
#[test]
fn two_guests_on_a_switch_network_ping_each_other_and_survive_a_port_restart() {
    let router = vm(
        "router",
        "[[vm.network]]\ntype = \"switch\"\nnetwork = \"lan\"\nrole = \"router\"\n\
         mac = \"02:00:00:00:77:01\"\naddress = \"10.77.0.1/24\"",
    );
    let client = vm(
        "client",
        "[[vm.network]]\ntype = \"switch\"\nnetwork = \"lan\"\nrole = \"client\"\n\
         mac = \"02:00:00:00:77:02\"\naddress = \"10.77.0.2/24\"\ngateway = \"10.77.0.1\"",
    );
    let c = Compositor::start(&config(&format!("{router}\n{client}")));
    run_ok(&c, "router", &["true"]);
    let ping = |from: &str, to: &str| {
        let (code, out, err) = c.vm_cli(
            "vm-run",
            &["--wait", from, "ping", "-c", "3", "-W", "5", to],
        );
        (code, format!("{out}{err}"))
    };
    let (code, out) = ping("client", "10.77.0.1");
    assert_eq!(
        code,
        0,
        "client could not ping the router:\n{out}\n{}",
        c.log_text()
    );
    let (code, out) = ping("router", "10.77.0.2");
    assert_eq!(code, 0, "router could not ping the client:\n{out}");

    // The client's port child (SIGKILL, as a crash): the supervisor restarts it, says so in
    // the counters, and QEMU reconnects to the port's socket.
    // The switch's counters, through the compositor's IPC (`bulkhead msg switch lan`).
    let port = |vm: &str| -> serde_json::Value {
        match c.request(&bulkhead_ipc::Request::SwitchCounters {
            network: "lan".into(),
        }) {
            bulkhead_ipc::Reply::SwitchCounters { counters, .. } => counters["ports"]
                .as_array()
                .and_then(|ports| ports.iter().find(|p| p["vm"] == vm).cloned())
                .unwrap_or_default(),
            other => panic!("unexpected reply {other:?}"),
        }
    };
    let before = port("client");
    assert_eq!(before["restarts"], 0, "{before}");
    let child = port_child("lan", "client").expect("the client's switch child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the port child");
    wait_until("the client's port restarted", 60, || {
        let p = port("client");
        p["restarts"] == 1 && p["running"] == true
    });
    wait_until("the client reaches the router again", 120, || {
        ping("client", "10.77.0.1").0 == 0
    });
    // The router's port was not disturbed.
    assert_eq!(port("router")["restarts"], 0, "{}", port("router"));
    stop(&c, "client");
    stop(&c, "router");
}

/// Host pid of the bulkhead-switch port child serving `vm` on `network`: the supervisor forks
/// one child per `--port` in command-line order, so the children by start time follow it.
fn port_child(network: &str, vm: &str) -> Option<i32> {
    struct P {
        pid: i32,
        ppid: i32,
        start: u64,
        args: Vec<String>,
    }
    let procs: Vec<P> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let args: Vec<String> = std::fs::read(e.path().join("cmdline"))
                .ok()?
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Fields after the parenthesised name: state ppid ... starttime (field 22).
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(P {
                pid,
                ppid: rest.get(1)?.parse().ok()?,
                start: rest.get(19)?.parse().ok()?,
                args,
            })
        })
        .filter(|p| {
            p.args
                .first()
                .is_some_and(|a| a.ends_with("bulkhead-switch"))
                && p.args.iter().any(|a| *a == format!("--network={network}"))
        })
        .collect();
    let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
    // Port children: their parent (the supervisor) has a bulkhead-switch parent too.
    let parent = |pid: i32| procs.iter().find(|p| p.pid == pid);
    let mut children: Vec<&P> = procs
        .iter()
        .filter(|p| parent(p.ppid).is_some_and(|sup| pids.contains(&sup.ppid)))
        .collect();
    children.sort_by_key(|p| p.start);
    let ports: Vec<&str> = children
        .first()?
        .args
        .iter()
        .filter_map(|a| a.strip_prefix("--port="))
        .collect();
    let index = ports
        .iter()
        .position(|p| p.split(',').any(|kv| kv == format!("vm={vm}")))?;
    children.get(index).map(|p| p.pid)
}

/// The pids the monitor recorded for the VMM and its helpers.
fn vm_pids(c: &Compositor, vm: &str) -> Vec<i32> {
    let v = monitor_state(c, vm);
    let mut pids = vec![v["vmm_pid"].as_i64().expect("vmm_pid") as i32];
    for h in v["helper_pids"].as_array().expect("helper_pids") {
        pids.push(h.as_i64().expect("pid") as i32);
    }
    pids
}

/// A test VM with everything that adds a helper: a home (virtiofsd), user networking (passt),
/// graphics (the Wayland bridge), and a second VM whose files must stay out of reach.
fn confined_vms(extra: &str) -> String {
    config(&format!(
        "{}\n[[vm]]\nname = \"other\"\ncolor = \"#2ecc71\"\n",
        // With a GPU: the bridge is one of the helpers, and QEMU is the one with
        // virtio-gpu-rutabaga (its prefix under /opt in its view).
        vm(
            "test",
            &format!("gpu = true\n{extra}\n[[vm.network]]\ntype = \"user\"")
        )
    ))
}

/// What no VMM or helper may reach, as the probe's KIND:TARGET ({home} and {run} are the
/// user's home and runtime dir): the user's files, the config, other VMs, the host's sockets.
const FORBIDDEN: &[&str] = &[
    "list:{run}/bulkhead/control",
    "open:{home}/marker",
    "open:{home}/config.toml",
    "list:{run}/bulkhead/vms/other",
    "unix:{run}/bulkhead/vms/other/wayland-0",
    "unix:{run}/bulkhead/ipc.sock",
    "unix:{run}/wayland-*",
    "list:/tmp/.X11-unix",
    "unix:/run/dbus/system_bus_socket",
    "list:/run/dbus",
    "list:/home",
    "list:/root",
    "list:/var",
    "open:/etc/passwd",
];

/// A FORBIDDEN target's path for compositor `c` (the globbed host socket: as named).
fn forbidden_path(c: &Compositor, t: &str) -> PathBuf {
    let (_, target) = t.split_once(':').expect("KIND:TARGET");
    let path = target
        .replace("{home}", &c.dir.path().display().to_string())
        .replace("{run}", &c.runtime.display().to_string());
    if path.contains('*') {
        return c.host_socket.clone();
    }
    PathBuf::from(path)
}

/// Inspects the running VMM and each helper from outside: its root holds none of what it must
/// not see, and it has namespaces of its own.
fn vmm_and_helpers_see_only_their_vm(user: Option<(u32, u32)>) {
    let c = Compositor::start_with(&confined_vms(""), user, &[]);
    std::fs::write(c.dir.path().join("marker"), "the user's").expect("marker");
    assert_eq!(run_ok(&c, "test", &["echo", "up"]), "up\n");
    let pids = vm_pids(&c, "test");
    assert_eq!(
        pids.len(),
        5,
        "qemu, vsock, wl-bridge, virtiofsd, passt: {pids:?}"
    );
    let ns = |pid: i32, kind: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("ns link")
    };
    let host = c.pid() as i32;
    let vmm = pids[0];
    for pid in pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
        let comm = comm.trim();
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        for t in FORBIDDEN {
            let f = forbidden_path(&c, t);
            let inside = root.join(f.strip_prefix("/").expect("absolute"));
            assert!(
                std::fs::symlink_metadata(&inside).is_err(),
                "{comm} ({pid}) sees {}",
                f.display()
            );
        }
        // The VMM's own runtime dir is there (virtiofsd and passt pivot further, into their
        // own sandboxes).
        if pid == vmm {
            let own = c.runtime.join("bulkhead/vms/test");
            assert!(root.join(own.strip_prefix("/").unwrap()).is_dir(), "{comm}");
        }
        for kind in ["mnt", "pid", "ipc", "user"] {
            assert_ne!(
                ns(pid, kind),
                ns(host, kind),
                "{comm} shares the {kind} namespace"
            );
        }
        // passt is the guest's way out: it alone keeps the host's network.
        if comm != "passt" && comm != "passt.avx2" {
            assert_ne!(ns(pid, "net"), ns(host, "net"), "{comm} shares the network");
        }
    }
    stop(&c, "test");
}

#[test]
fn the_vmm_and_its_helpers_see_only_their_own_vm() {
    vmm_and_helpers_see_only_their_vm(None);
}

#[test]
fn the_vmm_and_its_helpers_see_only_their_own_vm_unprivileged() {
    vmm_and_helpers_see_only_their_vm(Some((65534, 65534)));
}

/// A probe in QEMU's place, started by the monitor as QEMU would be, tries to open, list and
/// connect to everything it must not reach; every attempt fails.
fn a_probe_in_place_of_the_vmm_reaches_nothing(user: Option<(u32, u32)>) {
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe-vmm");
    // Listeners it must not reach: an abstract socket (X11's kind), a socket in /tmp, a
    // service on the host's loopback.
    let abstract_name = format!("bulkhead-probe-{}", std::process::id());
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).expect("abstract");
        std::os::unix::net::UnixListener::bind_addr(&addr).expect("abstract listener")
    };
    let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp");
    let port = tcp.local_addr().expect("addr").port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let tmp_sock = tmp.path().join("x.sock");
    let _tmp_listener = std::os::unix::net::UnixListener::bind(&tmp_sock).expect("listener");
    let mut targets: Vec<String> = FORBIDDEN.iter().map(|t| t.to_string()).collect();
    targets.extend([
        format!("unix:{}", tmp_sock.display()),
        format!("abstract:{abstract_name}"),
        format!("tcp:127.0.0.1:{port}"),
    ]);
    let probes = std::iter::once("\"--probe\"".to_string())
        .chain(targets.iter().map(|t| format!("{t:?}")))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = confined_vms(&format!("extra-args = [{probes}]")).replace(
        "[vmm]\n",
        &format!("[vmm]\nqemu = \"{}\"\n", probe.display()),
    );
    let c = Compositor::start_with(&cfg, user, &[]);
    std::fs::write(c.dir.path().join("marker"), "the user's").expect("marker");
    // What the probe must not reach exists on the host.
    for t in [
        "open:{home}/marker",
        "open:{home}/config.toml",
        "unix:{run}/wayland-*",
    ] {
        assert!(forbidden_path(&c, t).exists(), "{t}");
    }
    let _ = c.vm_cli("vm-start", &["test"]);
    let log = c.dir.path().join("state/bulkhead/vms/test/qemu.log");
    wait_until("the probe's report", 60, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("probe: done"))
    });
    let report = std::fs::read_to_string(&log).expect("log");
    eprintln!("{report}");
    assert!(!report.contains("probe: reached"), "{report}");
    assert_eq!(
        report.matches("probe: blocked").count(),
        targets.len(),
        "{report}"
    );
    tcp.set_nonblocking(true).expect("nonblocking");
    assert!(
        matches!(tcp.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host's loopback service was reached"
    );
}

#[test]
fn a_probe_in_place_of_qemu_reaches_nothing_of_the_host() {
    a_probe_in_place_of_the_vmm_reaches_nothing(None);
}

#[test]
fn a_probe_in_place_of_qemu_reaches_nothing_of_the_host_unprivileged() {
    a_probe_in_place_of_the_vmm_reaches_nothing(Some((65534, 65534)));
}

/// What a compromised VMM may write (its runtime dir) is never read by the host: a monitor
/// file naming another process, a state file naming it as the VMM, an exit report and a plan
/// planted there change nothing when the compositor restarts, re-adopts and stops the VM.
#[test]
fn files_the_vmm_can_write_are_never_trusted() {
    let mut c = Compositor::start(&config(&vm("test", "")));
    assert_eq!(run_ok(&c, "test", &["echo", "up"]), "up\n");
    let qemu = vmm_pid(&c, "test");
    // A process of the user's that a forged pid file would have the host kill.
    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep");
    let pid = bystander.id() as i32;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let start_time: u64 = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .nth(19)
        .expect("starttime")
        .parse()
        .expect("number");
    let runtime = c.runtime.join("bulkhead/vms/test");
    let plant = |name: &str, json: serde_json::Value| {
        std::fs::write(runtime.join(name), json.to_string()).expect("plant");
    };
    plant(
        "monitor.json",
        serde_json::json!({ "pid": pid, "start_time": start_time }),
    );
    plant(
        "state.json",
        serde_json::json!({ "vmm": "qemu", "vmm_pid": pid, "helper_pids": [pid],
                            "started_unix_ms": 0 }),
    );
    plant(
        "exit.json",
        serde_json::json!({ "reason": "planted", "code": 0, "signal": null,
                            "requested": false }),
    );
    c.kill_hard();
    c.spawn_compositor();
    let info = state_of(&c, "test");
    assert_eq!(info.state, VmState::Running, "{info:?}");
    assert_eq!(vmm_pid(&c, "test"), qemu, "the real VM was re-adopted");
    stop(&c, "test");
    assert!(
        bystander.try_wait().expect("wait").is_none(),
        "the host killed a process a planted file named"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
}

/// A tmux server of the test's own running `vm-shell` in an 80x24 pane: what a person sees.
struct ShellPane {
    server: String,
}

impl ShellPane {
    fn tmux(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .args(["-L", &self.server, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .env("LANG", "C.UTF-8")
            .output()
            .expect("tmux runs (install it: .ci/install-deps)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> Vec<String> {
        self.tmux(&["capture-pane", "-p", "-t", "vm"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Types `keys` (tmux key names) and waits until the screen satisfies `ok`.
    fn type_until(&self, keys: &[&str], what: &str, ok: impl Fn(&[String]) -> bool) {
        let mut args = vec!["send-keys", "-t", "vm"];
        args.extend_from_slice(keys);
        self.tmux(&args);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ok(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}; the screen:\n{}",
                s.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ShellPane {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}

/// vm-shell in a real terminal (tmux): less and vi of the guest draw as they should through
/// the terminal filter, and the guest's OSC 52 never reaches the terminal's clipboard.
#[test]
fn full_screen_programs_draw_in_vm_shell_and_the_guest_cannot_set_the_clipboard() {
    let c = Compositor::start(&config(&vm("test", "")));
    assert_eq!(run_ok(&c, "test", &["echo", "up"]), "up\n");
    let shell = workspace_binary("vm-shell");
    let pane = ShellPane {
        server: format!("bulkhead-vm-shell-{}", std::process::id()),
    };
    let command = format!(
        "env XDG_RUNTIME_DIR={} BULKHEAD_SOCKET={} {} test",
        c.runtime.display(),
        c.ipc.display(),
        shell.display()
    );
    pane.tmux(&[
        "new-session",
        "-d",
        "-s",
        "vm",
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    pane.tmux(&["set", "-g", "set-clipboard", "on"]);
    pane.type_until(
        &[
            "stty rows 24 cols 80; seq 1 100 > /tmp/f; echo rea''dy",
            "Enter",
        ],
        "the console answers",
        |s| s.iter().any(|l| l.trim() == "ready"),
    );
    // less: the first lines of the file from the top row, its prompt on the last.
    pane.type_until(&["less /tmp/f", "Enter"], "less draws the file", |s| {
        s.len() >= 24 && (0..23).all(|i| s[i].trim() == (i + 1).to_string())
    });
    pane.tmux(&["send-keys", "-t", "vm", "q"]);
    pane.type_until(
        &["clear; echo af''ter-less", "Enter"],
        "the shell is back",
        |s| s.iter().any(|l| l.trim() == "after-less"),
    );
    // vi: the file at the top, the cursor on it; :q leaves.
    pane.type_until(&["vi /tmp/f", "Enter"], "vi draws the file", |s| {
        s.len() >= 24 && s[0].trim() == "1" && s[1].trim() == "2" && s[22].trim() == "23"
    });
    pane.tmux(&["send-keys", "-t", "vm", ":q", "Enter"]);
    pane.type_until(
        &["clear; echo af''ter-vi", "Enter"],
        "the shell is back",
        |s| s.iter().any(|l| l.trim() == "after-vi"),
    );
    // The guest tries to set the terminal's clipboard (OSC 52, "pwned" in base64).
    pane.type_until(
        &["printf '\\033]52;c;cHduZWQ=\\007'; echo sen''t", "Enter"],
        "the sequence was sent",
        |s| s.iter().any(|l| l.trim() == "sent"),
    );
    let buffers = pane.tmux(&["list-buffers"]);
    assert!(
        !buffers.contains("pwned"),
        "the guest set the clipboard: {buffers}"
    );
}
