//! The desktop test machine (`rootfs/build-guest --profile desktop`) booted by
//! `rootfs/run-desktop`, driven as a person would: keys and the pointer through QMP
//! (`input-send-event`, which reach the guest's libinput through virtio), the screen through QMP
//! `screendump` (the scanout, as a monitor would show it), and the machine's state through its
//! serial console (a root shell).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::Image;

/// How long booting, logging in and starting apps may take under TCG on a loaded machine.
pub const SLOW: Duration = Duration::from_secs(240);

/// What to boot.
pub struct Boot<'a> {
    pub outputs: usize,
    /// The session's config.toml for `user`.
    pub config: &'a str,
    /// Files the machine gets as /run/bulkhead-install/add/NAME (`run-desktop --add`).
    pub add: &'a [PathBuf],
}

pub struct Machine {
    child: Child,
    dir: tempfile::TempDir,
    qmp: Qmp,
    serial: Serial,
    shots: usize,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

/// Waits until `path` exists or `child` ended.
fn wait_socket(path: &Path, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "run-desktop ended ({status}) before {} appeared:\n{}",
                path.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A program of this workspace's examples (`cargo test` builds them next to the binaries).
pub fn example(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_bulkhead"))
        .parent()
        .expect("bin dir")
        .join("examples")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: cargo build --examples -p bulkhead (cargo test builds it)",
        p.display()
    );
    p
}

impl Machine {
    pub fn boot(b: Boot) -> Machine {
        let image = target_dir().join("guest/desktop");
        assert!(
            image.join("root.img").exists(),
            "no desktop machine in {}: run rootfs/build-guest --profile desktop (.ci/test does)",
            image.display()
        );
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_bulkhead"))
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("bulkhead-desktop-test-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, b.config).expect("write config");
        let qmp_path = dir.path().join("qmp.sock");
        let serial_path = dir.path().join("serial.sock");
        let out = dir.path().join("run-desktop.log");
        let mut child = Command::new("bash")
            .arg(repo().join("rootfs/run-desktop"))
            .arg("--qmp")
            .arg(&qmp_path)
            .arg("--serial")
            .arg(&serial_path)
            .arg("--log")
            .arg(dir.path().join("console.log"))
            .arg("--outputs")
            .arg(b.outputs.to_string())
            .arg("--size")
            .arg("1024x768")
            .arg("--config")
            .arg(&config)
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--image")
            .arg(&image)
            .args(b.add.iter().flat_map(|f| [Path::new("--add"), f.as_path()]))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("run-desktop.err")).expect("log"))
            .spawn()
            .expect("run rootfs/run-desktop");
        wait_socket(&qmp_path, &mut child, &dir.path().join("run-desktop.err"));
        wait_socket(
            &serial_path,
            &mut child,
            &dir.path().join("run-desktop.err"),
        );
        let qmp = Qmp::connect(&qmp_path);
        let serial = Serial::connect(&serial_path);
        Machine {
            child,
            dir,
            qmp,
            serial,
            shots: 0,
        }
    }

    /// A screenshot of one head's scanout; also kept in the test's directory.
    pub fn screen(&mut self, head: usize) -> Image {
        self.shots += 1;
        let path = self
            .dir
            .path()
            .join(format!("screen-{:03}-head{head}.png", self.shots));
        self.qmp.execute(
            "screendump",
            json!({"filename": path, "format": "png", "device": "gpu", "head": head}),
        );
        Image::load(&path)
    }

    /// Waits until `head` shows what `pred` looks for; panics with `what` and the last
    /// screenshot's path.
    pub fn wait_screen(&mut self, head: usize, what: &str, pred: impl Fn(&Image) -> bool) -> Image {
        eprintln!("waiting for: {what}");
        let deadline = Instant::now() + SLOW;
        loop {
            let img = self.screen(head);
            if pred(&img) {
                return img;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for: {what} (last screenshot {})\n{}",
                    self.dir
                        .path()
                        .join(format!("screen-{:03}-head{head}.png", self.shots))
                        .display(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until `check` (run against the machine) holds.
    pub fn wait(&mut self, what: &str, mut check: impl FnMut(&mut Machine) -> bool) {
        eprintln!("waiting for: {what}");
        let deadline = Instant::now() + SLOW;
        while !check(self) {
            if Instant::now() > deadline {
                panic!("timed out waiting for: {what}\n{}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Types `text` on the virtio keyboard (US layout) at the greeter or a text console: the
    /// kernel's keyboard handler takes the keys as they come.
    pub fn type_on_console(&mut self, text: &str) {
        for ch in text.chars() {
            self.input(char_events(ch));
        }
    }

    /// Types `text` into the Bulkhead session, as fast as the session takes it. The kernel
    /// keeps only 64 unread events per evdev client (a key is two: the key and a SYN): keys
    /// sent faster than a busy compositor reads them (GLES on llvmpipe under TCG) are dropped
    /// (SYN_DROPPED), and the typed text comes out garbled. So at most
    /// [`KEYS_UNREAD`] key events are sent before the compositor has handled them all (its
    /// `keys_handled` counter).
    pub fn type_text(&mut self, text: &str) {
        let mut handled = self.keys_handled();
        let mut sent = 0;
        for ch in text.chars() {
            let events = char_events(ch);
            if sent + events.len() > KEYS_UNREAD {
                handled = self.wait_keys_handled(handled + sent as u64);
                sent = 0;
            }
            sent += events.len();
            self.input(events);
        }
        self.wait_keys_handled(handled + sent as u64);
    }

    /// The compositor's count of key events handled.
    fn keys_handled(&mut self) -> u64 {
        let stats = self.msg("stats").unwrap_or_else(|| {
            panic!(
                "`bulkhead msg stats` failed: is the session up?\n{}",
                self.diagnostics()
            )
        });
        match serde_json::from_value(stats) {
            Ok(bulkhead_ipc::Reply::Stats { keys_handled, .. }) => keys_handled,
            other => panic!("`bulkhead msg stats` answered {other:?}"),
        }
    }

    /// Waits until the compositor has handled `n` key events in all; the count then.
    fn wait_keys_handled(&mut self, n: u64) -> u64 {
        let mut now = 0;
        self.wait(&format!("the session to handle {n} key events"), |m| {
            now = m.keys_handled();
            now >= n
        });
        now
    }

    /// Presses `keys` in order and releases them in reverse (a chord: ["ctrl", "alt", "f2"]).
    pub fn chord(&mut self, keys: &[&str]) {
        let mut events: Vec<Value> = keys.iter().map(|k| key_event(k, true)).collect();
        events.extend(keys.iter().rev().map(|k| key_event(k, false)));
        for e in events {
            self.input(vec![e]);
        }
    }

    /// Moves the tablet to `(x, y)` of the first output (`size` its mode) and clicks there.
    pub fn click(&mut self, x: i32, y: i32, size: (i32, i32)) {
        let abs = |v: i32, max: i32| (i64::from(v) * 32767 / i64::from(max.max(2) - 1)) as i32;
        self.input(vec![
            json!({"type": "abs", "data": {"axis": "x", "value": abs(x, size.0)}}),
            json!({"type": "abs", "data": {"axis": "y", "value": abs(y, size.1)}}),
        ]);
        for down in [true, false] {
            self.input(vec![
                json!({"type": "btn", "data": {"down": down, "button": "left"}}),
            ]);
        }
    }

    /// Sends input events to the virtio keyboard and tablet, routed as the first head's.
    fn input(&mut self, events: Vec<Value>) {
        self.qmp.execute(
            "input-send-event",
            json!({"device": "gpu", "head": 0, "events": events}),
        );
    }

    /// Runs `cmd` in the root shell on the serial console; its exit status and output.
    pub fn sh(&mut self, cmd: &str) -> (i32, String) {
        self.serial.run(cmd, SLOW)
    }

    /// Runs `cmd` and insists it succeeds; its output.
    pub fn sh_ok(&mut self, cmd: &str) -> String {
        let (status, out) = self.sh(cmd);
        assert_eq!(status, 0, "`{cmd}` failed ({status}):\n{out}");
        out
    }

    /// A `bulkhead msg` request as the session's user.
    pub fn msg(&mut self, args: &str) -> Option<Value> {
        let (status, out) = self.sh(&format!(
            "runuser -u user -- env XDG_RUNTIME_DIR=/run/user/1000 bulkhead msg {args} 2>&1"
        ));
        if status != 0 {
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    /// The session's log (`~/.local/state/bulkhead/session.log`).
    pub fn session_log(&mut self) -> String {
        self.sh("cat /home/user/.local/state/bulkhead/session.log 2>/dev/null")
            .1
    }

    /// Runs a QMP command; its `return` value.
    pub fn qmp(&mut self, command: &str, args: Value) -> Value {
        self.qmp.execute(command, args)
    }

    fn diagnostics(&mut self) -> String {
        let log = self.session_log();
        let journal = self
            .sh("journalctl -b --no-pager -n 60 -o short-monotonic 2>&1")
            .1;
        // Whether the compositor still composes frames, and where it waits if not.
        let compositor = self
            .sh(
                "for i in 1 2; do timeout 5 runuser -u user -- env XDG_RUNTIME_DIR=/run/user/1000 \
                 bulkhead msg stats 2>&1; sleep 2; done; for p in $(pidof bulkhead); do \
                 echo \"pid $p: $(cat /proc/$p/wchan) $(grep State /proc/$p/status)\"; \
                 cat /proc/$p/stack 2>/dev/null | head -8; done",
            )
            .1;
        format!(
            "---- session.log ----\n{log}\n---- journal ----\n{journal}\n---- compositor ----\n{compositor}\n---- screenshots in {} ----",
            self.dir.path().display()
        )
    }

    /// Keeps the test's directory (screenshots, console log) after the test.
    pub fn keep_dir(&mut self) -> PathBuf {
        let p = self.dir.path().to_path_buf();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let _ = dir.keep();
        p
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = self.keep_dir();
            eprintln!(
                "the machine's screenshots and console log are in {}",
                kept.display()
            );
        }
        // `quit` ends QEMU at once; run-desktop then removes its install disk.
        let _ = self.qmp.try_execute("quit", json!({}));
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Key events sent into the session before the compositor must have handled them (a quarter
/// of the kernel's per-client evdev buffer).
const KEYS_UNREAD: usize = 16;

/// The key events that type `ch`.
fn char_events(ch: char) -> Vec<Value> {
    let (key, shift) = qcode(ch).unwrap_or_else(|| panic!("no key for {ch:?}"));
    let mut events = Vec::new();
    if shift {
        events.push(key_event("shift", true));
    }
    events.push(key_event(key, true));
    events.push(key_event(key, false));
    if shift {
        events.push(key_event("shift", false));
    }
    events
}

fn key_event(key: &str, down: bool) -> Value {
    json!({"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": key}}})
}

/// The QEMU key code for a character on a US keyboard, and whether it needs shift.
fn qcode(ch: char) -> Option<(&'static str, bool)> {
    const LOWER: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    const SHIFTED_DIGITS: &str = ")!@#$%^&*(";
    if ch.is_ascii_lowercase() {
        return Some((LOWER[(ch as u8 - b'a') as usize], false));
    }
    if ch.is_ascii_uppercase() {
        return Some((LOWER[(ch as u8 - b'A') as usize], true));
    }
    if ch.is_ascii_digit() {
        return Some((DIGITS[(ch as u8 - b'0') as usize], false));
    }
    if let Some(i) = SHIFTED_DIGITS.find(ch) {
        return Some((DIGITS[i], true));
    }
    Some(match ch {
        ' ' => ("spc", false),
        '\n' => ("ret", false),
        '\t' => ("tab", false),
        '-' => ("minus", false),
        '_' => ("minus", true),
        '=' => ("equal", false),
        '+' => ("equal", true),
        '[' => ("bracket_left", false),
        '{' => ("bracket_left", true),
        ']' => ("bracket_right", false),
        '}' => ("bracket_right", true),
        ';' => ("semicolon", false),
        ':' => ("semicolon", true),
        '\'' => ("apostrophe", false),
        '"' => ("apostrophe", true),
        '`' => ("grave_accent", false),
        '~' => ("grave_accent", true),
        '\\' => ("backslash", false),
        '|' => ("backslash", true),
        ',' => ("comma", false),
        '<' => ("comma", true),
        '.' => ("dot", false),
        '>' => ("dot", true),
        '/' => ("slash", false),
        '?' => ("slash", true),
        _ => return None,
    })
}

/// A QMP connection: commands answered in order (events are skipped).
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let stream = UnixStream::connect(path).expect("connect to QMP");
        stream
            .set_read_timeout(Some(SLOW))
            .expect("QMP read timeout");
        let mut q = Qmp {
            reader: BufReader::new(stream.try_clone().expect("clone QMP stream")),
            writer: stream,
        };
        let greeting = q.read();
        assert!(
            greeting.get("QMP").is_some(),
            "not a QMP greeting: {greeting}"
        );
        q.execute("qmp_capabilities", json!({}));
        q
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("QMP closed (QEMU ended)"),
            Ok(_) => {
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("QMP sent {line:?}: {e}"))
            }
            Err(e) => panic!("reading QMP: {e}"),
        }
    }

    fn try_execute(&mut self, command: &str, args: Value) -> Result<Value, String> {
        let msg = json!({"execute": command, "arguments": args});
        writeln!(self.writer, "{msg}").map_err(|e| e.to_string())?;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err("QMP closed".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            return Err(format!("{command}: {v}"));
        }
    }

    fn execute(&mut self, command: &str, args: Value) -> Value {
        self.try_execute(command, args)
            .unwrap_or_else(|e| panic!("QMP {command} failed: {e}"))
    }
}

/// The root shell on the serial console. Each command's output is framed by markers that
/// the echoed command line cannot contain, and the shell's echo and prompt are turned off.
struct Serial {
    stream: UnixStream,
    buf: Vec<u8>,
    n: u64,
}

impl Serial {
    fn connect(path: &Path) -> Serial {
        let stream = UnixStream::connect(path).expect("connect to the serial console");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("serial read timeout");
        let mut s = Serial {
            stream,
            buf: Vec::new(),
            n: 0,
        };
        // The autologin shell comes once the machine has booted; until then the line is the
        // kernel's and systemd's. Ask until a command answers.
        let deadline = Instant::now() + SLOW;
        loop {
            if s.try_run("stty -echo -onlcr; PS1=; PROMPT_COMMAND=; bind 'set enable-bracketed-paste off' 2>/dev/null; true", Duration::from_secs(5)).is_some() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the serial console never gave a shell"
            );
        }
    }

    fn try_run(&mut self, cmd: &str, timeout: Duration) -> Option<(i32, String)> {
        self.n += 1;
        let tag = format!("{:x}{}", std::process::id(), self.n);
        // printf joins the halves, so the markers appear only in the output.
        let line = format!(
            "printf '%s%s\\n' '<<<' '{tag}'; {cmd}\nprintf '%s%s %d\\n' '>>>' '{tag}' $?\n"
        );
        self.stream.write_all(line.as_bytes()).ok()?;
        let start = format!("<<<{tag}\n");
        let end = format!(">>>{tag} ");
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 65536];
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            if let (Some(a), Some(b)) = (text.find(&start), text.find(&end)) {
                if b > a {
                    let rest = &text[b + end.len()..];
                    if let Some(nl) = rest.find('\n') {
                        let status = rest[..nl].trim().parse().unwrap_or(-1);
                        let out = text[a + start.len()..b].replace('\r', "");
                        let consumed = b + end.len() + nl + 1;
                        self.buf.drain(..consumed.min(self.buf.len()));
                        return Some((status, out));
                    }
                }
            }
            if Instant::now() > deadline {
                self.buf.clear();
                return None;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return None,
            }
        }
    }

    /// Runs `cmd`, again if the line was lost: a console that went through suspend and resume
    /// may drop what was typed while it woke up.
    fn run(&mut self, cmd: &str, timeout: Duration) -> (i32, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(r) = self.try_run(cmd, left.min(Duration::from_secs(30))) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "the serial console did not finish `{cmd}`"
            );
            // Whatever half line the shell holds ends here.
            let _ = self.stream.write_all(b"\x03\n");
        }
    }
}
