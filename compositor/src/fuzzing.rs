//! The real compositor as a fuzz target: a headless `State` with one VM ("fuzz") and the host,
//! fed arbitrary bytes and fds as a client of the VM, through the same accept path and the
//! same dispatch as a real VM app (`compositor/fuzz`, and its corpus as a unit test in
//! `tests/fuzz_corpus.rs`). After each input a host client, which owns a mapped window, must
//! still get a frame: a panic, a hang or a starved other domain is a finding.
//!
//! An input is a sequence of chunks, each `[fds: u8][len: u16 LE][len bytes]`: the bytes are
//! written to the VM client's socket with `fds % 4` file descriptors attached (a sparse
//! 256 MiB memfd, usable as an shm pool), then the compositor dispatches and renders a frame.
//!
//! Serials and global names differ from one compositor run to the next, so inputs recorded
//! from real apps (`compositor/fuzz/record`) would die at their first `ack_configure`. The
//! harness follows the protocol as a proxy would ([`Tracker`]): it learns each object's
//! interface from the requests that made it, and puts the serial the compositor last sent
//! into `xdg_surface.ack_configure` and `xdg_wm_base.pong`, and the harness's own name of a
//! global into `wl_registry.bind`. Everything else reaches the compositor as given.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use smithay::reexports::calloop::EventLoop;

use crate::state::State;

/// The name of the VM whose client the input drives.
pub const VM: &str = "fuzz";
/// Input beyond this is ignored (libFuzzer's `-max_len` keeps inputs smaller anyway).
pub const MAX_INPUT: usize = 1 << 20;

const CONFIG: &str = r##"
[[vm]]
name = "fuzz"
color = "#3060ff"

[headless]
width = 320
height = 240
refresh = 1
"##;

/// Why the harness could not be set up (never a finding: the machine lacks something).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot make a runtime dir: {0}")]
    RuntimeDir(std::io::Error),
    #[error("the built-in config does not parse: {0}")]
    Config(String),
    #[error("cannot start the compositor: {0}")]
    Start(String),
    #[error("the witness client failed: {0}")]
    Witness(String),
}

/// One compositor, reused across inputs (as libFuzzer runs them), and its witness.
pub struct Harness {
    event_loop: EventLoop<'static, State>,
    state: State,
    witness: Witness,
    memfd: OwnedFd,
}

impl Harness {
    pub fn new() -> Result<Harness, SetupError> {
        let runtime = std::env::temp_dir().join(format!(
            "bulkhead-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&runtime).map_err(SetupError::RuntimeDir)?;
        std::env::set_var("XDG_RUNTIME_DIR", &runtime);
        let config = bulkhead_config::Config::parse(CONFIG, std::path::Path::new("fuzz.toml"))
            .map_err(|e| SetupError::Config(e.to_string()))?;
        let started = crate::backend::headless::headless_state(config);
        // The sockets are bound and nothing is read from the dir again: remove it now, so a
        // fuzzer that exits without dropping the harness (libFuzzer does) leaves nothing.
        let _ = std::fs::remove_dir_all(&runtime);
        let (event_loop, state) = started.map_err(SetupError::Start)?;
        let memfd = memfd().map_err(SetupError::RuntimeDir)?;
        let (ours, theirs) = UnixStream::pair().map_err(SetupError::RuntimeDir)?;
        let mut h = Harness {
            event_loop,
            state,
            witness: Witness::new(ours),
            memfd,
        };
        h.state
            .desk
            .accept_client(theirs, crate::domain::Domain::Host, None);
        h.map_witness()?;
        Ok(h)
    }

    /// Runs one input: how many windows the VM client had mapped at most (seeds recorded from
    /// real apps map theirs), or how the host client was starved (a finding).
    pub fn run(&mut self, input: &[u8]) -> Result<usize, String> {
        let input = &input[..input.len().min(MAX_INPUT)];
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        ours.set_nonblocking(true).map_err(|e| e.to_string())?;
        let vm = self
            .state
            .desk
            .vms
            .first()
            .cloned()
            .ok_or("the fuzz VM is not configured")?;
        self.state
            .desk
            .accept_vm_client(theirs, &vm, |_| (None, bulkhead_ipc::Arrival::Direct));
        let mut tracker = Tracker::new(&self.witness.globals);
        let mut rest = input;
        let mut windows = 0;
        while let [fds, lo, hi, tail @ ..] = rest {
            let len = (u16::from_le_bytes([*lo, *hi]) as usize).min(tail.len());
            let (bytes, next) = tail.split_at(len);
            rest = next;
            let bytes = tracker.requests(bytes);
            let fds: Vec<_> = (0..fds % 4).map(|_| self.memfd.as_raw_fd()).collect();
            if send(&ours, &bytes, &fds).is_err() {
                break; // the compositor closed the VM client
            }
            self.frame();
            windows = windows.max(self.vm_windows());
            tracker.events(&drain(&ours));
        }
        let _ = send(&ours, &tracker.rest(), &[]);
        drop(ours);
        self.frame();
        self.witness_gets_a_frame().map(|()| windows)
    }

    /// Windows of the fuzz VM on screen.
    fn vm_windows(&self) -> usize {
        let desk = &self.state.desk;
        desk.space
            .elements()
            .filter(|w| {
                w.toplevel()
                    .is_some_and(|t| desk.surface_domain(t.wl_surface()).name() == VM)
            })
            .count()
    }

    /// Dispatches what clients sent and renders, as one turn of the real event loop.
    fn frame(&mut self) {
        let _ = self
            .event_loop
            .dispatch(Some(Duration::ZERO), &mut self.state);
        self.state.refresh_pointer_focus();
        self.state.desk.space.refresh();
        self.state.desk.popups.cleanup();
        self.state.render();
        let _ = self.state.desk.display_handle.flush_clients();
    }

    /// Maps the host client's window (a 32×32 shm buffer) and waits for its first frame.
    fn map_witness(&mut self) -> Result<(), SetupError> {
        let w = &mut self.witness;
        w.send(1, 1, &[2]); // wl_display.get_registry -> 2
        self.frame();
        let globals = self.witness.read_globals().map_err(SetupError::Witness)?;
        let name = |iface: &str| {
            globals
                .iter()
                .find(|(_, i)| i == iface)
                .map(|(n, _)| *n)
                .ok_or_else(|| SetupError::Witness(format!("no {iface}")))
        };
        let (compositor, shm, wm_base) = (
            name("wl_compositor")?,
            name("wl_shm")?,
            name("xdg_wm_base")?,
        );
        let w = &mut self.witness;
        w.bind(compositor, "wl_compositor", 4, 3);
        w.bind(shm, "wl_shm", 1, 4);
        w.bind(wm_base, "xdg_wm_base", 1, 5);
        w.send(3, 0, &[6]); // wl_compositor.create_surface -> 6 (the window)
        w.send(5, 2, &[7, 6]); // xdg_wm_base.get_xdg_surface -> 7
        w.send(7, 1, &[8]); // xdg_surface.get_toplevel -> 8
        w.send(6, 6, &[]); // wl_surface.commit
        self.frame();
        let serial = self.witness.wait_event(7, 0).map_err(SetupError::Witness)?;
        let w = &mut self.witness;
        w.send(7, 4, &[serial]); // xdg_surface.ack_configure
        let fd = self.memfd.as_raw_fd();
        // wl_shm.create_pool(9, fd, 65536); wl_shm_pool.create_buffer(10, 0, 32, 32, 128, argb)
        w.send_fds(4, 0, &[9, 65536], &[fd]);
        w.send(9, 0, &[10, 0, 32, 32, 128, 0]);
        w.send(6, 1, &[10, 0, 0]); // wl_surface.attach
        w.send(6, 6, &[]); // commit
        self.frame();
        self.witness_gets_a_frame().map_err(SetupError::Witness)
    }

    /// The host client asks for a frame callback and commits with damage: the callback must
    /// be done within a few frames.
    fn witness_gets_a_frame(&mut self) -> Result<(), String> {
        let id = self.witness.fresh_id();
        let w = &mut self.witness;
        w.send(6, 3, &[id]); // wl_surface.frame
        w.send(6, 9, &[0, 0, 32, 32]); // wl_surface.damage_buffer
        w.send(6, 6, &[]); // commit
        for _ in 0..8 {
            self.frame();
            if self.witness.saw_event(id, 0)? {
                return Ok(());
            }
        }
        Err("the host client got no frame".into())
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A sparse 256 MiB memfd (what a client would make for an shm pool).
fn memfd() -> std::io::Result<OwnedFd> {
    let fd =
        nix::sys::memfd::memfd_create(c"bulkhead-fuzz", nix::sys::memfd::MemFdCreateFlag::empty())
            .map_err(std::io::Error::from)?;
    let file = std::fs::File::from(fd);
    file.set_len(256 << 20)?;
    Ok(file.into())
}

/// Writes `bytes` with `fds` attached; an error means the peer is gone.
fn send(stream: &UnixStream, bytes: &[u8], fds: &[std::os::fd::RawFd]) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        stream.as_fd().as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(|_| ())
    .map_err(std::io::Error::from)
}

/// Reads what the compositor sent the VM client (fds are closed), at most 1 MiB.
fn drain(stream: &UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut s = stream;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || out.len() > 1 << 20 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// A host client speaking the wire protocol by hand (no toolkit, no dependency).
struct Witness {
    stream: UnixStream,
    /// Bytes received and not yet parsed.
    inbox: Vec<u8>,
    /// Events seen: (object, opcode, first argument).
    events: Vec<(u32, u16, u32)>,
    globals: Vec<(u32, String)>,
    next_id: u32,
}

impl Witness {
    fn new(stream: UnixStream) -> Witness {
        let _ = stream.set_nonblocking(true);
        Witness {
            stream,
            inbox: Vec::new(),
            events: Vec::new(),
            globals: Vec::new(),
            // The ids 1 to 10 are taken by `map_witness`; new ids must come in order.
            next_id: 10,
        }
    }

    fn fresh_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn send(&mut self, object: u32, opcode: u16, args: &[u32]) {
        self.send_fds(object, opcode, args, &[]);
    }

    fn send_fds(&mut self, object: u32, opcode: u16, args: &[u32], fds: &[std::os::fd::RawFd]) {
        let mut msg = encode_header(object, opcode, 8 + 4 * args.len());
        for a in args {
            msg.extend_from_slice(&a.to_ne_bytes());
        }
        let _ = send(&self.stream, &msg, fds);
    }

    /// wl_registry.bind(name, interface, version, new id).
    fn bind(&mut self, name: u32, interface: &str, version: u32, id: u32) {
        let mut s = interface.as_bytes().to_vec();
        s.push(0);
        let len = s.len() as u32;
        while !s.len().is_multiple_of(4) {
            s.push(0);
        }
        let size = 8 + 4 + 4 + s.len() + 4 + 4;
        let mut msg = encode_header(2, 0, size);
        msg.extend_from_slice(&name.to_ne_bytes());
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&s);
        msg.extend_from_slice(&version.to_ne_bytes());
        msg.extend_from_slice(&id.to_ne_bytes());
        let _ = (&self.stream).write_all(&msg);
    }

    /// Reads what arrived and records its events.
    fn pump(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 8192];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(0) => return Err("the compositor disconnected the host client".into()),
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        while self.inbox.len() >= 8 {
            let word = |i: usize| {
                u32::from_ne_bytes([
                    self.inbox[i],
                    self.inbox[i + 1],
                    self.inbox[i + 2],
                    self.inbox[i + 3],
                ])
            };
            let (object, second) = (word(0), word(4));
            let size = (second >> 16) as usize;
            let opcode = (second & 0xffff) as u16;
            if size < 8 || self.inbox.len() < size {
                break;
            }
            let first = if size >= 12 { word(8) } else { 0 };
            if object == 1 && opcode == 0 {
                return Err("the compositor sent the host client a protocol error".into());
            }
            if object == 2 && opcode == 0 && size >= 16 {
                // wl_registry.global(name, interface, version)
                let len = word(12) as usize;
                let end = (16 + len).min(size);
                let iface = String::from_utf8_lossy(&self.inbox[16..end])
                    .trim_end_matches('\0')
                    .to_string();
                self.globals.push((first, iface));
            }
            self.events.push((object, opcode, first));
            self.inbox.drain(..size);
        }
        Ok(())
    }

    fn read_globals(&mut self) -> Result<Vec<(u32, String)>, String> {
        self.pump()?;
        Ok(self.globals.clone())
    }

    /// The first argument of the first event `opcode` of `object`.
    fn wait_event(&mut self, object: u32, opcode: u16) -> Result<u32, String> {
        self.pump()?;
        self.events
            .iter()
            .find(|(o, op, _)| *o == object && *op == opcode)
            .map(|(_, _, a)| *a)
            .ok_or_else(|| format!("no event {object}.{opcode}"))
    }

    fn saw_event(&mut self, object: u32, opcode: u16) -> Result<bool, String> {
        self.pump()?;
        Ok(self
            .events
            .iter()
            .any(|(o, op, _)| *o == object && *op == opcode))
    }
}

fn encode_header(object: u32, opcode: u16, size: usize) -> Vec<u8> {
    let mut msg = Vec::with_capacity(size);
    msg.extend_from_slice(&object.to_ne_bytes());
    msg.extend_from_slice(&(((size as u32) << 16) | opcode as u32).to_ne_bytes());
    msg
}

use smithay::reexports::wayland_server::backend::protocol::{ArgumentType, Interface};

/// The interfaces of the globals a VM client may bind, by name (and what they make).
fn global_interfaces() -> Vec<&'static Interface> {
    use smithay::reexports::wayland_protocols as wp;
    use smithay::reexports::wayland_server::protocol as core;
    use smithay::reexports::wayland_server::Resource;
    vec![
        core::wl_compositor::WlCompositor::interface(),
        core::wl_subcompositor::WlSubcompositor::interface(),
        core::wl_shm::WlShm::interface(),
        core::wl_seat::WlSeat::interface(),
        core::wl_output::WlOutput::interface(),
        core::wl_data_device_manager::WlDataDeviceManager::interface(),
        wp::xdg::shell::server::xdg_wm_base::XdgWmBase::interface(),
        wp::xdg::decoration::zv1::server::zxdg_decoration_manager_v1::ZxdgDecorationManagerV1::interface(),
        wp::xdg::xdg_output::zv1::server::zxdg_output_manager_v1::ZxdgOutputManagerV1::interface(),
        wp::xdg::activation::v1::server::xdg_activation_v1::XdgActivationV1::interface(),
        wp::wp::primary_selection::zv1::server::zwp_primary_selection_device_manager_v1::ZwpPrimarySelectionDeviceManagerV1::interface(),
        wp::wp::viewporter::server::wp_viewporter::WpViewporter::interface(),
        wp::wp::fractional_scale::v1::server::wp_fractional_scale_manager_v1::WpFractionalScaleManagerV1::interface(),
        wp::wp::presentation_time::server::wp_presentation::WpPresentation::interface(),
        wp::wp::cursor_shape::v1::server::wp_cursor_shape_manager_v1::WpCursorShapeManagerV1::interface(),
        wp::wp::idle_inhibit::zv1::server::zwp_idle_inhibit_manager_v1::ZwpIdleInhibitManagerV1::interface(),
        wp::wp::relative_pointer::zv1::server::zwp_relative_pointer_manager_v1::ZwpRelativePointerManagerV1::interface(),
        wp::wp::pointer_constraints::zv1::server::zwp_pointer_constraints_v1::ZwpPointerConstraintsV1::interface(),
        wp::wp::single_pixel_buffer::v1::server::wp_single_pixel_buffer_manager_v1::WpSinglePixelBufferManagerV1::interface(),
        wp::wp::content_type::v1::server::wp_content_type_manager_v1::WpContentTypeManagerV1::interface(),
        smithay::reexports::wayland_protocols_misc::server_decoration::server::org_kde_kwin_server_decoration_manager::OrgKdeKwinServerDecorationManager::interface(),
    ]
}

/// Follows a client's objects through its requests, and mends what only a live client could
/// know (serials, global names) — see the module docs.
pub struct Tracker {
    objects: std::collections::HashMap<u32, Kind>,
    globals: Vec<&'static Interface>,
    /// The harness's global names by interface.
    names: Vec<(u32, String)>,
    /// The latest configure serial per xdg_surface, and the latest ping.
    configure: std::collections::HashMap<u32, u32>,
    ping: Option<u32>,
    /// Bytes of a request split across chunks.
    partial: Vec<u8>,
    events_partial: Vec<u8>,
}

impl Tracker {
    fn new(names: &[(u32, String)]) -> Tracker {
        let mut objects = std::collections::HashMap::new();
        objects.insert(1, Kind::Display);
        Tracker {
            objects,
            globals: global_interfaces(),
            names: names.to_vec(),
            configure: Default::default(),
            ping: None,
            partial: Vec::new(),
            events_partial: Vec::new(),
        }
    }

    /// The requests of one chunk, mended; bytes of an unfinished request wait for the next
    /// chunk (or [`Tracker::rest`]).
    fn requests(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.partial.len());
        let mut at = 0;
        while let Some((object, opcode, size)) = header(&self.partial[at..]) {
            if size < 8 {
                // Not a message (the compositor disconnects the client): pass it on as it is.
                out.extend_from_slice(&self.partial[at..]);
                at = self.partial.len();
                break;
            }
            if at + size > self.partial.len() {
                break;
            }
            let mut msg = self.partial[at..at + size].to_vec();
            self.request(object, opcode, &mut msg);
            out.extend_from_slice(&msg);
            at += size;
        }
        self.partial.drain(..at);
        out
    }

    /// Bytes of an unfinished request at the end of the input.
    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }

    fn request(&mut self, object: u32, opcode: u16, msg: &mut [u8]) {
        let interface = match self.objects.get(&object).copied() {
            Some(Kind::Of(i)) => i,
            Some(Kind::Display) => {
                // sync -> wl_callback, get_registry -> wl_registry
                if let Some(id) = get(msg, 8) {
                    let kind = if opcode == 1 {
                        Kind::Registry
                    } else {
                        Kind::Callback
                    };
                    self.objects.insert(id, kind);
                }
                return;
            }
            Some(Kind::Registry) => {
                // bind(name, interface: string, version, new_id)
                if let Some((name_str, id)) = bind_args(msg) {
                    if let Some((n, _)) = self.names.iter().find(|(_, i)| *i == name_str) {
                        put(msg, 8, *n);
                    }
                    if let Some(i) = self.globals.iter().find(|i| i.name == name_str) {
                        self.objects.insert(id, Kind::Of(i));
                    }
                }
                return;
            }
            Some(Kind::Callback) | None => return,
        };
        let Some(desc) = interface.requests.get(opcode as usize) else {
            return;
        };
        match (interface.name, opcode) {
            ("xdg_surface", 4) => {
                if let Some(serial) = self.configure.get(&object) {
                    put(msg, 8, *serial);
                }
            }
            ("xdg_wm_base", 3) => {
                if let Some(serial) = self.ping {
                    put(msg, 8, serial);
                }
            }
            _ => {}
        }
        // New objects: their ids and interfaces.
        let mut at = 8;
        for arg in desc.signature {
            let Some(word) = get(msg, at) else { return };
            match arg {
                ArgumentType::NewId => {
                    if let Some(child) = desc.child_interface {
                        self.objects.insert(word, Kind::Of(child));
                    }
                    at += 4;
                }
                ArgumentType::Str(_) | ArgumentType::Array => {
                    at += 4 + (word as usize).div_ceil(4) * 4;
                }
                ArgumentType::Fd => {}
                _ => at += 4,
            }
        }
        if desc.is_destructor {
            self.objects.remove(&object);
        }
    }

    /// Events the compositor sent: configure and ping serials.
    fn events(&mut self, bytes: &[u8]) {
        self.events_partial.extend_from_slice(bytes);
        let mut at = 0;
        while let Some((object, opcode, size)) = header(&self.events_partial[at..]) {
            if size < 8 || at + size > self.events_partial.len() {
                break;
            }
            let msg = &self.events_partial[at..at + size];
            let name = match self.objects.get(&object) {
                Some(Kind::Of(i)) => Some(i.name),
                Some(Kind::Display) => Some("wl_display"),
                _ => None,
            };
            match (name, opcode) {
                (Some("xdg_surface"), 0) => {
                    if let Some(serial) = get(msg, 8) {
                        self.configure.insert(object, serial);
                    }
                }
                (Some("xdg_wm_base"), 0) => self.ping = get(msg, 8),
                // wl_display.delete_id
                (Some("wl_display"), 1) => {
                    if let Some(id) = get(msg, 8) {
                        self.objects.remove(&id);
                    }
                }
                _ => {}
            }
            at += size;
        }
        self.events_partial.drain(..at);
        self.events_partial.truncate(1 << 20);
    }
}

/// What the tracker knows of an object.
#[derive(Clone, Copy)]
enum Kind {
    /// wl_display, wl_registry and wl_callback: wayland-backend keeps their interfaces private.
    Display,
    Registry,
    Callback,
    Of(&'static Interface),
}

/// Object, opcode and size of the message at the start of `bytes`.
fn header(bytes: &[u8]) -> Option<(u32, u16, usize)> {
    let object = get(bytes, 0)?;
    let second = get(bytes, 4)?;
    Some((object, (second & 0xffff) as u16, (second >> 16) as usize))
}

fn get(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn put(bytes: &mut [u8], at: usize, value: u32) {
    if let Some(b) = bytes.get_mut(at..at + 4) {
        b.copy_from_slice(&value.to_ne_bytes());
    }
}

/// The interface name and new id of a `wl_registry.bind`.
fn bind_args(msg: &[u8]) -> Option<(String, u32)> {
    let len = get(msg, 12)? as usize;
    let text = msg.get(16..16 + len)?;
    let name = String::from_utf8_lossy(text)
        .trim_end_matches('\0')
        .to_string();
    let after = 16 + len.div_ceil(4) * 4;
    // version, then the new id
    let id = get(msg, after + 4)?;
    Some((name, id))
}
