//! Wire types of Bulkhead's IPC socket.
//!
//! The protocol is newline-delimited JSON over a Unix stream socket: the client writes one
//! [`Request`] per line, the compositor answers each with one [`Response`] line, in order.

pub mod agent;
pub mod client;
/// The invariants of the fuzz targets in `protocols/fuzz`, for them and the corpus test.
#[doc(hidden)]
pub mod fuzzing;
pub mod wlstream;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variable that overrides the IPC socket path.
pub const SOCKET_ENV: &str = "BULKHEAD_SOCKET";

/// Longest request line the compositor accepts, in bytes.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// A request to the compositor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// The compositor's version.
    Version,
    /// Every toplevel window, in stacking order from bottom to top.
    Windows,
    /// Every connected Wayland client: its domain, its peer and how it arrived.
    Clients,
    /// The host domain and every configured VM domain.
    Domains,
    /// The outputs and their geometry in the global space.
    Outputs,
    /// Write a PNG of everything composed (all outputs side by side) to `path`.
    Screenshot { path: PathBuf },
    /// Run a named action, as a key binding would.
    Action {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arg: Option<String>,
    },
    /// Counters: frames composed so far (for benchmarks).
    Stats,
    /// What the global clipboard holds: its source domain, types and size (never the data).
    Clipboard,
    /// Feed synthetic input through the compositor's own input handling, exactly as a real
    /// device would. Only accepted with `--backend headless` (tests, demos).
    Input { events: Vec<InputEvent> },
    /// Every configured VM and its state.
    VmList,
    /// Start a VM (and what it depends on); answered once its agent is ready.
    VmStart { vm: String },
    /// Stop a VM gracefully; answered once it is stopped.
    VmStop { vm: String },
    /// Run a command in a VM as the guest user, starting the VM if needed. Answered with
    /// `vm_run_started`; with `wait`, then `output` lines and a final `exited`.
    VmRun {
        vm: String,
        argv: Vec<String>,
        #[serde(default)]
        wait: bool,
    },
    /// The serial console socket of a running VM (for vm-shell).
    VmConsole { vm: String },
    /// The per-port counters of a bulkhead-switch VM network (frames, bytes, drops by reason,
    /// restarts), as the switch last wrote them.
    SwitchCounters { network: String },
}

/// A synthetic input event (headless backend only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum InputEvent {
    /// Move the pointer to global logical coordinates.
    PointerMotion {
        x: f64,
        y: f64,
    },
    /// Move the pointer by `dx`, `dy` logical pixels, as a mouse does (relative motion:
    /// pointer locks and confinements apply).
    PointerMove {
        dx: f64,
        dy: f64,
    },
    /// Press or release a pointer button (Linux evdev code: 272 left, 273 right, 274 middle).
    PointerButton {
        button: u32,
        pressed: bool,
    },
    /// Scroll by `dy` (and `dx`) logical pixels.
    PointerAxis {
        #[serde(default)]
        dx: f64,
        #[serde(default)]
        dy: f64,
    },
    /// Press or release a key (Linux evdev code, e.g. 30 for A, 15 for Tab).
    Key {
        code: u32,
        pressed: bool,
    },
    /// A finger touches, moves or lifts (global logical coordinates; slot = finger).
    TouchDown {
        slot: u32,
        x: f64,
        y: f64,
    },
    TouchMotion {
        slot: u32,
        x: f64,
        y: f64,
    },
    TouchUp {
        slot: u32,
    },
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    /// What went wrong, phrased so that a person can fix it.
    Error(String),
}

/// The global clipboard's contents, described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipboardInfo {
    /// The domain it was copied from.
    pub from: String,
    pub types: Vec<String>,
    /// All types together.
    pub bytes: u64,
}

/// The successful result of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Version {
        version: String,
    },
    Windows(Vec<WindowInfo>),
    Clients(Vec<ClientInfo>),
    Domains(Vec<DomainInfo>),
    Outputs(Vec<OutputInfo>),
    Screenshot {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    /// The action ran.
    Done,
    Stats {
        /// Output frames composed that changed pixels (all outputs together).
        frames_composed: u64,
        /// Key presses and releases handled, from every keyboard and from `Input` requests.
        #[serde(default)]
        keys_handled: u64,
    },
    Clipboard {
        /// None when the global clipboard is empty.
        global: Option<ClipboardInfo>,
        /// The domain whose selection apps paste now (None: no selection).
        selection_domain: Option<String>,
        /// The domain whose primary selection apps paste now.
        #[serde(default)]
        primary_domain: Option<String>,
        /// A number that changes whenever the selection apps paste now is set anew (what a
        /// script waits on to see a copy arrive).
        #[serde(default)]
        selection_version: Option<u64>,
        #[serde(default)]
        primary_version: Option<u64>,
    },
    Vms(Vec<VmInfo>),
    SwitchCounters {
        network: String,
        counters: serde_json::Value,
    },
    VmStarted {
        vm: String,
        /// False when it was already running.
        started: bool,
        boot: Option<BootInfo>,
    },
    VmStopped {
        vm: String,
        /// False when it was not running.
        stopped: bool,
    },
    VmRunStarted {
        /// The command's pid in the guest.
        pid: u32,
    },
    /// Output of a command run with `wait` (raw bytes from the guest).
    Output {
        stream: OutputStream,
        data: Vec<u8>,
    },
    /// How a command run with `wait` ended: its exit code, or the signal that killed it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    Console {
        path: PathBuf,
    },
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// The lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    Stopped,
    Starting,
    Running,
    Stopping,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Stopped => "stopped",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Stopping => "stopping",
        }
    }
}

/// How long a VM took to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootInfo {
    /// From the start request until the agent answered (host clock).
    pub total_ms: u64,
    /// Guest clock, since the kernel started: when init ran, when the agent listened.
    pub init_ms: Option<u64>,
    pub agent_ms: Option<u64>,
}

/// One configured VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    pub name: String,
    pub color: String,
    pub state: VmState,
    pub vmm: Option<String>,
    /// The VM monitor's pid on the host.
    pub pid: Option<i32>,
    pub since_unix_ms: Option<u64>,
    pub memory_mib: u64,
    pub cpus: u32,
    pub disposable: bool,
    pub autostart: bool,
    pub boot: Option<BootInfo>,
    /// Why it last stopped or failed to start.
    pub last_exit: Option<String>,
}

/// A rectangle in the compositor's global (logical) space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

impl Rect {
    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x && y >= self.y && x < self.x + self.width && y < self.y + self.height
    }
}

/// How a client's connection reached the compositor, told by the peer's credentials (the
/// process that connected), never by anything the client says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// A host process connected itself: a host app, or a host program on a VM's socket.
    Direct,
    /// The VM's VMM (or a process it started) connected: virtio-gpu cross-domain.
    CrossDomain,
    /// The VM's vsock bridge connected, for one of the guest proxy's streams.
    VsockBridge,
}

impl std::fmt::Display for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arrival::Direct => "direct",
            Arrival::CrossDomain => "cross-domain",
            Arrival::VsockBridge => "vsock bridge",
        })
    }
}

/// One connected Wayland client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// `host` or the VM's name: the socket the client connected to.
    pub domain: String,
    /// The connecting process (SO_PEERCRED at connect time), its user and its command name
    /// then (absent when the kernel gave no credentials).
    pub pid: Option<i32>,
    pub uid: Option<u32>,
    pub program: Option<String>,
    pub arrival: Arrival,
    /// A sandboxed host app (it came through a wp_security_context_v1 listener).
    pub sandboxed: bool,
    /// Its toplevel windows now.
    pub windows: usize,
}

/// One toplevel window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowInfo {
    /// Stable for the window's lifetime; what `focus-window` takes.
    pub id: u64,
    /// `host` or the VM's name: the socket the client connected to.
    pub domain: String,
    /// The client's title after sanitising (without the `[vm]` prefix the frame shows).
    pub title: String,
    pub app_id: String,
    /// The client's content area (its xdg geometry) in global coordinates.
    pub geometry: Rect,
    /// The compositor-drawn frame around it, title bar included; equal to `geometry` when the
    /// window has no frame (a fullscreen host window).
    pub frame: Rect,
    /// The output the window is mostly on.
    pub output: Option<String>,
    pub focused: bool,
    pub maximized: bool,
    pub fullscreen: bool,
    pub minimized: bool,
    /// Opened without focus (its domain did not hold it): wants the user's attention.
    #[serde(default)]
    pub attention: bool,
    /// The app last asked to draw its own decorations (xdg-decoration or KDE client mode):
    /// it then shows a title bar of its own inside the compositor's frame.
    #[serde(default)]
    pub client_decorations: bool,
}

/// One domain: the host or a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub name: String,
    /// `#rrggbb`; the host's neutral frame colour for `host`.
    pub color: String,
    /// The Wayland socket whose clients belong to this domain.
    pub socket: PathBuf,
    /// Connected Wayland clients.
    pub clients: usize,
    pub windows: usize,
    /// The host's X display (`:N`) while Xwayland runs; never for a VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x11_display: Option<String>,
}

/// One output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub name: String,
    /// Logical geometry in the global space.
    pub geometry: Rect,
    pub scale: f64,
    /// Refresh rate in millihertz.
    pub refresh_mhz: i32,
    /// What draws it: "gles" or "pixman".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer: Option<String>,
}

/// The IPC socket path: `$BULKHEAD_SOCKET`, else `<runtime dir>/bulkhead/ipc.sock`.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => runtime_dir.join("bulkhead").join("ipc.sock"),
    }
}

/// Serialises a message as one line (with the trailing newline).
pub fn to_line<T: Serialize>(msg: &T) -> serde_json::Result<String> {
    let mut s = serde_json::to_string(msg)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_request(r: Request) {
        let line = to_line(&r).unwrap();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
    }

    #[test]
    fn requests_roundtrip() {
        roundtrip_request(Request::Version);
        roundtrip_request(Request::Windows);
        roundtrip_request(Request::Clients);
        roundtrip_request(Request::Domains);
        roundtrip_request(Request::Outputs);
        roundtrip_request(Request::Screenshot {
            path: "/tmp/a b.png".into(),
        });
        roundtrip_request(Request::Action {
            name: "focus-next".into(),
            arg: None,
        });
        roundtrip_request(Request::Action {
            name: "focus-window".into(),
            arg: Some("3".into()),
        });
    }

    #[test]
    fn input_requests_roundtrip() {
        roundtrip_request(Request::Stats);
        roundtrip_request(Request::Input {
            events: vec![
                InputEvent::PointerMotion { x: 1.5, y: 2.0 },
                InputEvent::PointerButton {
                    button: 272,
                    pressed: true,
                },
                InputEvent::PointerAxis { dx: 0.0, dy: 15.0 },
                InputEvent::Key {
                    code: 30,
                    pressed: false,
                },
                InputEvent::TouchDown {
                    slot: 0,
                    x: 3.0,
                    y: 4.0,
                },
                InputEvent::TouchMotion {
                    slot: 0,
                    x: 5.0,
                    y: 4.0,
                },
                InputEvent::TouchUp { slot: 0 },
            ],
        });
        let r: Request = serde_json::from_str(
            r#"{"request":"input","events":[{"type":"pointer-axis","dy":3.0},{"type":"key","code":15,"pressed":true}]}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Input {
                events: vec![
                    InputEvent::PointerAxis { dx: 0.0, dy: 3.0 },
                    InputEvent::Key {
                        code: 15,
                        pressed: true
                    }
                ]
            }
        );
    }

    #[test]
    fn wire_shape_is_stable() {
        assert_eq!(
            to_line(&Request::Windows).unwrap(),
            "{\"request\":\"windows\"}\n"
        );
        assert_eq!(
            serde_json::to_string(&Request::Action {
                name: "close".into(),
                arg: None
            })
            .unwrap(),
            r#"{"request":"action","name":"close"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Error("no such window 7".into())).unwrap(),
            r#"{"error":"no such window 7"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Ok(Reply::Done)).unwrap(),
            r#"{"ok":"done"}"#
        );
    }

    #[test]
    fn replies_roundtrip() {
        let w = WindowInfo {
            id: 1,
            domain: "work".into(),
            title: "foot".into(),
            app_id: "foot".into(),
            geometry: Rect {
                x: 10,
                y: 40,
                width: 640,
                height: 480,
            },
            frame: Rect {
                x: 6,
                y: 14,
                width: 648,
                height: 510,
            },
            output: Some("headless-1".into()),
            focused: true,
            maximized: false,
            fullscreen: false,
            minimized: false,
            attention: false,
            client_decorations: true,
        };
        let r = Response::Ok(Reply::Windows(vec![w]));
        let back: Response = serde_json::from_str(&to_line(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let c = ClientInfo {
            domain: "work".into(),
            pid: Some(4242),
            uid: Some(1000),
            program: Some("qemu-system-x86".into()),
            arrival: Arrival::CrossDomain,
            sandboxed: false,
            windows: 1,
        };
        let r = Response::Ok(Reply::Clients(vec![c]));
        let line = to_line(&r).unwrap();
        assert!(line.contains(r#""arrival":"cross-domain""#), "{line}");
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn unknown_request_is_an_error() {
        assert!(serde_json::from_str::<Request>(r#"{"request":"format-disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>("not json").is_err());
    }

    #[test]
    fn rect_contains() {
        let r = Rect {
            x: 0,
            y: 0,
            width: 2,
            height: 2,
        };
        assert!(r.contains(1, 1));
        assert!(!r.contains(2, 0));
        assert!(!r.contains(-1, 0));
    }
}
