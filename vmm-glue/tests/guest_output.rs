//! The real `vm-run`, `vm-shell` and `vm-list` binaries against a stand-in compositor (on
//! `BULKHEAD_SOCKET`) that relays hostile guest bytes: what reaches their stdout and stderr is
//! filtered (or raw with `--raw`), and guest text in errors is clean. No VM is booted.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bulkhead_ipc::{OutputStream, Reply, Request, Response, VmInfo, VmState};
use bulkhead_vmm::terminal::{self, fuzzing::check_output};

/// Sets the clipboard, asks for the cursor position and the terminal's identity, enters the
/// alternate screen, and draws some text in colour; an 8-bit CSI and bad UTF-8 too.
const HOSTILE: &[u8] =
    b"\x1b]52;c;cm0gLXJmIH4K\x07\x1b[6n\x1b[c\x1b[>q\x1bP$qm\x1b\\\x1b[?1049h\x1b[1;31mred\x1b[m\r\nb\xffad\x9b6n\x1b]0;title\x1b\\";
/// What of it may reach a terminal; the filter adds the end of the alternate screen.
const FILTERED: &[u8] = "\x1b[?1049h\x1b[1;31mred\x1b[m\r\nb\u{FFFD}ad6n\x1b[?1049l".as_bytes();

/// A stand-in compositor answering one request with `answer(request)`.
fn compositor(
    dir: &Path,
    answer: impl FnOnce(Request) -> Vec<Response> + Send + 'static,
) -> PathBuf {
    let path = dir.join("ipc.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        let request: Request = serde_json::from_str(&line).unwrap();
        let mut w = &stream;
        for r in answer(request) {
            w.write_all(bulkhead_ipc::to_line(&r).unwrap().as_bytes())
                .unwrap();
        }
    });
    path
}

/// Runs `bin` in a UTF-8 locale.
fn run(bin: &str, socket: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("BULKHEAD_SOCKET", socket)
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_CTYPE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn output(stream: OutputStream, data: &[u8]) -> Response {
    Response::Ok(Reply::Output {
        stream,
        data: data.to_vec(),
    })
}

fn vm_run(args: &[&str]) -> Output {
    vm_run_in(args, None)
}

/// `vm-run` relaying [`HOSTILE`] on both streams, in `locale` (`LC_ALL`) if given.
fn vm_run_in(args: &[&str], locale: Option<&str>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let socket = compositor(dir.path(), |request| {
        assert!(matches!(request, Request::VmRun { wait: true, .. }));
        vec![
            Response::Ok(Reply::VmRunStarted { pid: 7 }),
            output(OutputStream::Stdout, &HOSTILE[..10]),
            output(OutputStream::Stdout, &HOSTILE[10..]),
            output(OutputStream::Stderr, HOSTILE),
            Response::Ok(Reply::Exited {
                code: Some(3),
                signal: None,
            }),
        ]
    });
    match locale {
        None => run(env!("CARGO_BIN_EXE_vm-run"), &socket, args),
        Some(l) => Command::new(env!("CARGO_BIN_EXE_vm-run"))
            .args(args)
            .env("BULKHEAD_SOCKET", &socket)
            .env("LC_ALL", l)
            .output()
            .unwrap(),
    }
}

#[test]
fn vm_run_wait_filters_both_streams() {
    let out = vm_run(&["--wait", "work", "cat", "evil"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(FILTERED)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(FILTERED)
    );
    check_output(&out.stdout).unwrap();
}

#[test]
fn vm_run_writes_ascii_only_outside_a_utf8_locale() {
    let out = vm_run_in(&["--wait", "work", "cat", "evil"], Some("C"));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\x1b[?1049h\x1b[1;31mred\x1b[m\r\nb?ad6n\x1b[?1049l"
    );
}

#[test]
fn vm_run_raw_passes_the_bytes() {
    let out = vm_run(&["--wait", "--raw", "work", "cat", "evil"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, HOSTILE);
    assert_eq!(out.stderr, HOSTILE);
}

#[test]
fn vm_run_raw_needs_wait() {
    let out = Command::new(env!("CARGO_BIN_EXE_vm-run"))
        .args(["--raw", "work", "true"])
        .env("BULKHEAD_SOCKET", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--wait"));
}

#[test]
fn errors_quoting_the_guest_are_printed_clean() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = format!(
        "VM \"work\": {}{}",
        String::from_utf8_lossy(HOSTILE),
        "A".repeat(10_000)
    );
    let socket = compositor(dir.path(), move |_| vec![Response::Error(hostile)]);
    let out = run(
        env!("CARGO_BIN_EXE_vm-run"),
        &socket,
        &["--wait", "work", "x"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let line = err.strip_suffix('\n').unwrap();
    assert!(
        line.starts_with("vm-run: VM \"work\": \u{FFFD}]52;c;"),
        "{line}"
    );
    assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    assert!(line.len() <= "vm-run: ".len() + terminal::MAX_MESSAGE);
}

#[test]
fn vm_list_prints_exit_reasons_clean() {
    let dir = tempfile::tempdir().unwrap();
    let socket = compositor(dir.path(), |_| {
        vec![Response::Ok(Reply::Vms(vec![VmInfo {
            name: "work".into(),
            color: "#3465a4".into(),
            state: VmState::Stopped,
            vmm: None,
            pid: None,
            since_unix_ms: None,
            memory_mib: 1024,
            cpus: 2,
            disposable: false,
            autostart: false,
            boot: None,
            last_exit: Some("qemu said \x1b]52;c;cm0K\x07\x1b[6n".into()),
        }]))]
    });
    let out = run(env!("CARGO_BIN_EXE_vm-list"), &socket, &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("last: qemu said \u{FFFD}]52;c;cm0K\u{FFFD}\u{FFFD}[6n"),
        "{text}"
    );
    assert!(!text.contains('\x1b') && !text.contains('\x07'));
}

/// `vm-shell` with a console that sends `bytes` and closes.
fn vm_shell(args: &[&str], bytes: &'static [u8]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.sock");
    let listener = UnixListener::bind(&console).unwrap();
    std::thread::spawn(move || {
        let (mut s, _): (UnixStream, _) = listener.accept().unwrap();
        for piece in bytes.chunks(3) {
            s.write_all(piece).unwrap();
        }
    });
    let path = console.clone();
    let socket = compositor(dir.path(), move |request| {
        assert!(matches!(request, Request::VmConsole { .. }));
        vec![Response::Ok(Reply::Console { path })]
    });
    run(env!("CARGO_BIN_EXE_vm-shell"), &socket, args)
}

#[test]
fn vm_shell_filters_the_console() {
    let out = vm_shell(&["work"], HOSTILE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(FILTERED)
    );
}

#[test]
fn vm_shell_raw_passes_the_bytes() {
    let out = vm_shell(&["--raw", "work"], HOSTILE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, HOSTILE);
}

#[test]
fn help_documents_raw() {
    for bin in [env!("CARGO_BIN_EXE_vm-run"), env!("CARGO_BIN_EXE_vm-shell")] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--raw") && help.contains("OSC 52"),
            "{bin}: {help}"
        );
    }
}

/// On a terminal (a pty from `script`), leaving with Ctrl-] while the console is still open
/// resets what the guest left changed (here the alternate screen) before vm-shell says it left.
#[test]
fn vm_shell_on_a_terminal_resets_the_modes_when_leaving() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.sock");
    let listener = UnixListener::bind(&console).unwrap();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _): (UnixStream, _) = listener.accept().unwrap();
        s.write_all(HOSTILE).unwrap();
        sent_tx.send(()).unwrap();
        // Stay open: only Ctrl-] ends this session. Hold the stream until vm-shell leaves.
        let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
    });
    let path = console.clone();
    let socket = compositor(dir.path(), move |_| {
        vec![Response::Ok(Reply::Console { path })]
    });
    let mut child = Command::new("script")
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_CTYPE")
        .args(["-qfec", &format!("{} work", env!("CARGO_BIN_EXE_vm-shell"))])
        .arg("/dev/null")
        .env("BULKHEAD_SOCKET", &socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    sent_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap();
    // Let vm-shell print what it got before it leaves.
    std::thread::sleep(std::time::Duration::from_millis(500));
    stdin.write_all(b"\x1d").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    let shown = text
        .find("\x1b[1;31mred")
        .expect("the guest's text is shown");
    let reset = text
        .find("\x1b[?1049l")
        .expect("the alternate screen is left");
    let left = text
        .find("[left the console of work]")
        .expect("vm-shell says it left");
    assert!(shown < reset && reset < left, "{text:?}");
    assert!(
        !text.contains("\x1b]52") && !text.contains("\x1b[6n"),
        "{text:?}"
    );
}
