//! The invariants the `wire` fuzz target (`guest-proxy/fuzz`) checks, shared with the corpus
//! test (`tests/fuzz_corpus.rs`) so the two cannot drift, and the generator of its seeds.
//!
//! The proxy parses Wayland messages from the guest's apps and from the host compositor with
//! [`crate::wire`]. An input is a mode byte, then a byte stream of messages:
//! - **framing**: the stream cut into messages by [`wire::next_message`] (as the app side
//!   reads) and by [`wire::drain_messages`] in two pieces (as the host side reads) gives the
//!   same messages and the same end; each is 8..=4096 bytes, a multiple of 4, and what waits
//!   for more bytes is less than one message;
//! - **arguments**: each message parsed as a request and as an event of an interface the
//!   proxy knows (picked by its sender): what is returned lies inside the message, encodes
//!   back to its bytes (up to padding), and [`wire::put_word`] at an object's offset changes
//!   that argument alone (the cross-domain proxy rewrites ids there);
//! - **the vsock proxy**: the messages run through its request and event handling on one
//!   connection's state (bit 0 of the mode byte: the first are requests; a message from
//!   object 0 switches direction), until the first error ends the connection as it would.
//!   Requests that carry an fd get a dup of one 64 KiB memfd. Objects stay under the cap,
//!   every record for the host encodes, and the events passed on are whole messages, with
//!   globals the proxy does not offer removed and versions capped.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use bulkhead_ipc::wlstream::Record;
use wayland_backend::protocol::{AllowNull, ArgumentType, Interface, MessageDesc};
use wayland_client::protocol::__interfaces::{WL_DISPLAY_INTERFACE, WL_REGISTRY_INTERFACE};

use crate::wire::{self, Arg, HEADER, MAX_MESSAGE};
use crate::wlproxy::{self, State, ALLOWED};

/// Every interface the proxy can meet: the globals it offers, wl_display and wl_registry, and
/// every interface their messages create.
fn interfaces() -> &'static [&'static Interface] {
    static ALL: OnceLock<Vec<&'static Interface>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<&'static Interface> = vec![&WL_DISPLAY_INTERFACE, &WL_REGISTRY_INTERFACE];
        all.extend(ALLOWED.iter().copied());
        let mut i = 0;
        while i < all.len() {
            let iface = all[i];
            for m in iface.requests.iter().chain(iface.events) {
                if let Some(c) = m.child_interface {
                    if !all.iter().any(|k| k.name == c.name) {
                        all.push(c);
                    }
                }
            }
            i += 1;
        }
        all
    })
}

/// A message as the framing found it.
type Message = (u32, u16, Vec<u8>);

/// How a stream ended: `Ok(bytes left waiting)` or the error.
type End = Result<usize, String>;

/// Arbitrary bytes as the proxy's Wayland input (see the module documentation).
pub fn check_wire(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let (messages, end) = frame(stream);
    let pick = stream
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
    for cut in [stream.len(), pick % (stream.len() + 1)] {
        let (a, b) = stream.split_at(cut);
        assert_eq!(
            drain([a, b]),
            (messages.clone(), end.clone()),
            "drained in pieces cut at {cut}"
        );
    }
    for (sender, opcode, msg) in &messages {
        check_message(*sender, *opcode, msg);
    }
    check_proxy(mode & 1 == 1, &messages);
}

/// The stream cut by `next_message`, as the proxy's app side reads.
fn frame(stream: &[u8]) -> (Vec<Message>, End) {
    let mut out = Vec::new();
    let mut rest = stream;
    loop {
        match wire::next_message(rest) {
            Ok(Some((sender, opcode, len))) => {
                assert!((HEADER..=MAX_MESSAGE).contains(&len) && len.is_multiple_of(4));
                assert!(len <= rest.len());
                let word = u32::from_ne_bytes([rest[4], rest[5], rest[6], rest[7]]);
                assert_eq!(
                    sender,
                    u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]])
                );
                assert_eq!(
                    (opcode, len),
                    ((word & 0xffff) as u16, (word >> 16) as usize)
                );
                out.push((sender, opcode, rest[..len].to_vec()));
                rest = &rest[len..];
            }
            Ok(None) => {
                assert!(rest.len() < MAX_MESSAGE, "{} bytes wait", rest.len());
                return (out, Ok(rest.len()));
            }
            Err(e) => return (out, Err(e)),
        }
    }
}

/// The stream fed to `drain_messages` in pieces, as the proxy's host side reads.
fn drain(pieces: [&[u8]; 2]) -> (Vec<Message>, End) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        let r = wire::drain_messages(&mut buf, |sender, opcode, msg| {
            out.push((sender, opcode, msg.to_vec()));
            Ok(())
        });
        if let Err(e) = r {
            return (out, Err(e));
        }
        assert!(buf.len() < MAX_MESSAGE, "{} bytes wait", buf.len());
    }
    (out, Ok(buf.len()))
}

/// One message as a request and as an event of the interface its sender picks.
fn check_message(sender: u32, opcode: u16, msg: &[u8]) {
    let all = interfaces();
    let iface = all[sender as usize % all.len()];
    for request in [true, false] {
        let list = if request {
            iface.requests
        } else {
            iface.events
        };
        assert_eq!(
            wire::message(iface, opcode, request).is_ok(),
            (opcode as usize) < list.len()
        );
        if let Some(desc) = list.get(opcode as usize % list.len().max(1)) {
            check_args(desc, &msg[HEADER..]);
        }
    }
}

/// A value to encode as a message argument (arrays with their contents).
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    W(u32),
    S(Option<&'a str>),
    A(&'a [u8]),
}

/// Encodes arguments as the wire has them, padding with zeros.
pub fn encode_args(vals: &[Val]) -> Vec<u8> {
    let mut body = Vec::new();
    let bytes = |b: &[u8], body: &mut Vec<u8>| {
        body.extend(b);
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
    };
    for v in vals {
        match v {
            Val::W(w) => body.extend(w.to_ne_bytes()),
            Val::S(None) => body.extend(0u32.to_ne_bytes()),
            Val::S(Some(s)) => {
                body.extend(((s.len() + 1) as u32).to_ne_bytes());
                bytes(&[s.as_bytes(), b"\0"].concat(), &mut body);
            }
            Val::A(a) => {
                body.extend((a.len() as u32).to_ne_bytes());
                bytes(a, &mut body);
            }
        }
    }
    body
}

fn check_args(desc: &MessageDesc, body: &[u8]) {
    let Ok((args, offsets)) = wire::parse_args_at(desc.signature, body) else {
        return;
    };
    assert_eq!(wire::parse_args(desc.signature, body).as_ref(), Ok(&args));
    assert_eq!(args.len(), desc.signature.len());
    assert_eq!(offsets.len(), args.len());
    // Each argument inside the body, in order; the same body with its padding zeroed.
    let mut vals = Vec::new();
    let mut unpadded = body.to_vec();
    let mut last = 0;
    for ((t, a), &at) in desc.signature.iter().zip(&args).zip(&offsets) {
        assert!(at >= last && at <= body.len());
        last = at;
        let content = |n: usize| {
            assert!(n <= body.len() - at - 4, "{n} bytes past the message");
            &body[at + 4..at + 4 + n]
        };
        let val = match (t, a) {
            (ArgumentType::Fd, Arg::Fd) => continue,
            (ArgumentType::Int, Arg::Int(v)) | (ArgumentType::Fixed, Arg::Fixed(v)) => {
                Val::W(*v as u32)
            }
            (ArgumentType::Uint, Arg::Uint(v))
            | (ArgumentType::Object(_), Arg::Object(v))
            | (ArgumentType::NewId, Arg::NewId(v)) => Val::W(*v),
            (ArgumentType::Str(null), Arg::Str(s)) => {
                assert!(
                    s.is_some() || *null == AllowNull::Yes,
                    "a null string parsed"
                );
                if let Some(s) = s {
                    assert_eq!(content(s.len() + 1), [s.as_bytes(), b"\0"].concat());
                    let pad = at + 4 + s.len() + 1;
                    unpadded[pad..at + 4 + (s.len() + 1).div_ceil(4) * 4].fill(0);
                }
                Val::S(s.as_deref())
            }
            (ArgumentType::Array, Arg::Array(n)) => {
                let bytes = content(*n);
                unpadded[at + 4 + n..at + 4 + n.div_ceil(4) * 4].fill(0);
                Val::A(bytes)
            }
            (t, a) => panic!("{a:?} parsed for a {t:?}"),
        };
        assert!(at + 4 <= body.len());
        vals.push(val);
    }
    assert_eq!(encode_args(&vals), unpadded, "{}", desc.name);
    // Rewriting an object id changes that argument alone.
    for (i, (a, &at)) in args.iter().zip(&offsets).enumerate() {
        let (Arg::Object(v) | Arg::NewId(v)) = a else {
            continue;
        };
        let mut rewritten = body.to_vec();
        wire::put_word(&mut rewritten, at, !*v);
        let mut expect = args.clone();
        expect[i] = match a {
            Arg::Object(_) => Arg::Object(!*v),
            _ => Arg::NewId(!*v),
        };
        assert_eq!(
            wire::parse_args(desc.signature, &rewritten),
            Ok(expect),
            "{} with argument {i} rewritten",
            desc.name
        );
    }
}

/// The memfd each fd-carrying request gets a dup of: 64 KiB, zeros.
fn pool_file() -> Option<&'static OwnedFd> {
    static FILE: OnceLock<Option<OwnedFd>> = OnceLock::new();
    FILE.get_or_init(|| {
        use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
        let fd = memfd_create(c"bulkhead-fuzz-pool", MemFdCreateFlag::MFD_CLOEXEC).ok()?;
        let f = std::fs::File::from(fd);
        f.set_len(64 * 1024).ok()?;
        Some(OwnedFd::from(f))
    })
    .as_ref()
}

/// Most fds one input gets.
const MAX_FDS: usize = 16;

/// Where the vsock proxy drops the app of input `data` (the index of the message it
/// refuses, switches counted), if it does; for the seeds' test.
pub fn refused_at(data: &[u8]) -> Option<usize> {
    let (&mode, stream) = data.split_first()?;
    check_proxy(mode & 1 == 1, &frame(stream).0)
}

fn check_proxy(requests_first: bool, messages: &[Message]) -> Option<usize> {
    let mut st = State::new();
    let mut requests = requests_first;
    let mut fds: VecDeque<OwnedFd> = VecDeque::new();
    let mut fds_given = 0;
    for (i, (sender, opcode, msg)) in messages.iter().enumerate() {
        if *sender == 0 {
            requests = !requests;
            continue;
        }
        let ok = if requests {
            if fds.is_empty() && fds_given < MAX_FDS {
                if let Some(fd) = pool_file().and_then(|f| f.try_clone().ok()) {
                    fds.push_back(fd);
                    fds_given += 1;
                }
            }
            let mut pre = Vec::new();
            let r = wlproxy::request(
                &mut st,
                *sender,
                *opcode,
                &msg[HEADER..],
                &mut fds,
                &mut pre,
            );
            for rec in pre.iter().map(wlproxy::Out::to_record) {
                rec.encode().expect("a record for the host encodes");
                if let Record::ShmNew { size, .. } | Record::ShmResize { size, .. } = rec {
                    assert!(size <= 64 * 1024, "a pool larger than its file");
                }
            }
            r.is_ok()
        } else {
            let is_global = st.objects().get(*sender).is_some_and(|i| {
                i.name == "wl_registry"
                    && i.events
                        .get(*opcode as usize)
                        .is_some_and(|m| m.name == "global")
            });
            let mut m = msg.clone();
            let mut out = Vec::new();
            let r = wlproxy::event(&mut st, *sender, *opcode, &mut m, &mut out);
            check_forwarded(is_global, r.is_ok(), msg, &out);
            r.is_ok()
        };
        assert!(st.objects().len() <= wire::MAX_OBJECTS);
        if !ok {
            return Some(i); // the proxy drops the app
        }
    }
    None
}

/// What the vsock proxy passed on for one event (`ok`: it accepted the event): a global it
/// does not offer nowhere, one it offers with the version capped, anything else unchanged.
fn check_forwarded(is_global: bool, ok: bool, msg: &[u8], out: &[u8]) {
    if !ok {
        assert!(out.is_empty(), "a refused event was passed on");
        return;
    }
    if !is_global {
        assert_eq!(out, msg, "an event changed on its way");
        return;
    }
    let sig = [
        ArgumentType::Uint,
        ArgumentType::Str(AllowNull::No),
        ArgumentType::Uint,
    ];
    let args = wire::parse_args(&sig, &msg[HEADER..]).expect("an accepted global parses");
    let (Some(Arg::Str(Some(name))), Some(Arg::Uint(version))) = (args.get(1), args.get(2)) else {
        panic!("a global of {args:?}");
    };
    match wlproxy::allowed(name) {
        None => assert!(
            out.is_empty(),
            "{name}, which the proxy does not offer, passed"
        ),
        Some(ours) => {
            let capped = (*version).min(ours.version);
            let n = msg.len();
            assert_eq!(
                out[..n - 4],
                msg[..n - 4],
                "a global changed beyond its version"
            );
            assert_eq!(out[n - 4..], capped.to_ne_bytes(), "{name} passed uncapped");
        }
    }
}

/// Finds a message of `iface` by name (seeds).
fn opcode(iface: &Interface, name: &str, request: bool) -> u16 {
    let list = if request {
        iface.requests
    } else {
        iface.events
    };
    list.iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("{}.{name}", iface.name)) as u16
}

fn iface(name: &str) -> &'static Interface {
    interfaces()
        .iter()
        .copied()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{name}"))
}

/// `(sender, interface, message, arguments)` in one direction, then the other after each
/// [`SWITCH`].
type Step<'a> = (u32, &'a str, &'a str, Vec<Val<'a>>);

/// The message from object 0 that switches direction.
const SWITCH: Step = (0, "", "", Vec::new());

fn session(requests_first: bool, steps: &[Step]) -> Vec<u8> {
    let mut out = vec![requests_first as u8];
    let mut requests = requests_first;
    for (sender, iface_name, name, vals) in steps {
        if *sender == 0 {
            out.extend(wire::message_bytes(0, 0, &[]));
            requests = !requests;
            continue;
        }
        let op = opcode(iface(iface_name), name, requests);
        out.extend(wire::message_bytes(*sender, op, &encode_args(vals)));
    }
    out
}

/// The seeds of the `wire` target: what apps and the compositor send through the proxy.
pub fn wire_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use Val::{A, S, W};
    let s = |t: &'static str| S(Some(t));
    let bind = |name: u32, iface: &'static str, version: u32, id: u32| -> Step<'static> {
        (
            2,
            "wl_registry",
            "bind",
            vec![W(name), S(Some(iface)), W(version), W(id)],
        )
    };
    let global = |name: u32, iface: &'static str, version: u32| -> Step<'static> {
        (
            2,
            "wl_registry",
            "global",
            vec![W(name), S(Some(iface)), W(version)],
        )
    };
    let startup: Vec<Step> = vec![
        (1, "wl_display", "get_registry", vec![W(2)]),
        (1, "wl_display", "sync", vec![W(3)]),
    ];
    let globals: Vec<Step> = vec![
        global(1, "wl_compositor", 6),
        global(2, "wl_shm", 2),
        global(3, "zwlr_layer_shell_v1", 4),
        global(4, "xdg_wm_base", 7),
        global(5, "wl_seat", 9),
        global(6, "wl_data_device_manager", 3),
        global(7, "wl_output", 4),
        (3, "wl_callback", "done", vec![W(0)]),
        (1, "wl_display", "delete_id", vec![W(3)]),
    ];
    let window: Vec<Step> = vec![
        bind(1, "wl_compositor", 4, 4),
        bind(2, "wl_shm", 1, 5),
        bind(4, "xdg_wm_base", 5, 6),
        bind(5, "wl_seat", 7, 7),
        (4, "wl_compositor", "create_surface", vec![W(8)]),
        (6, "xdg_wm_base", "get_xdg_surface", vec![W(9), W(8)]),
        (9, "xdg_surface", "get_toplevel", vec![W(10)]),
        (10, "xdg_toplevel", "set_title", vec![s("foot — ~/src")]),
        (10, "xdg_toplevel", "set_app_id", vec![s("foot")]),
        (8, "wl_surface", "commit", vec![]),
    ];
    let configure: Vec<Step> = vec![
        (6, "xdg_wm_base", "ping", vec![W(17)]),
        (
            10,
            "xdg_toplevel",
            "configure",
            vec![W(800), W(600), A(&[1, 0, 0, 0, 4, 0, 0, 0])],
        ),
        (9, "xdg_surface", "configure", vec![W(18)]),
        (7, "wl_seat", "capabilities", vec![W(3)]),
        (7, "wl_seat", "name", vec![s("seat0")]),
    ];
    let draw: Vec<Step> = vec![
        (6, "xdg_wm_base", "pong", vec![W(17)]),
        (9, "xdg_surface", "ack_configure", vec![W(18)]),
        (5, "wl_shm", "create_pool", vec![W(11), W(65536)]),
        (
            11,
            "wl_shm_pool",
            "create_buffer",
            vec![W(12), W(0), W(64), W(64), W(256), W(1)],
        ),
        (8, "wl_surface", "attach", vec![W(12), W(0), W(0)]),
        (
            8,
            "wl_surface",
            "damage_buffer",
            vec![W(0), W(0), W(64), W(64)],
        ),
        (8, "wl_surface", "frame", vec![W(13)]),
        (8, "wl_surface", "commit", vec![]),
        (8, "wl_surface", "damage", vec![W(3), W(5), W(10), W(2)]),
        (8, "wl_surface", "set_buffer_scale", vec![W(2)]),
        (8, "wl_surface", "commit", vec![]),
        (11, "wl_shm_pool", "resize", vec![W(65536)]),
        (11, "wl_shm_pool", "destroy", vec![]),
        (12, "wl_buffer", "destroy", vec![]),
    ];
    let keyboard: Vec<Step> = vec![
        (7, "wl_seat", "get_keyboard", vec![W(14)]),
        (7, "wl_seat", "get_pointer", vec![W(15)]),
        SWITCH,
        (14, "wl_keyboard", "keymap", vec![W(1), W(48_000)]),
        (14, "wl_keyboard", "repeat_info", vec![W(25), W(600)]),
        (
            14,
            "wl_keyboard",
            "enter",
            vec![W(20), W(8), A(&[30, 0, 0, 0])],
        ),
        (14, "wl_keyboard", "key", vec![W(21), W(1000), W(31), W(1)]),
        (
            14,
            "wl_keyboard",
            "modifiers",
            vec![W(22), W(4), W(0), W(0), W(0)],
        ),
        (
            15,
            "wl_pointer",
            "enter",
            vec![W(23), W(8), W(10 << 8), W(20 << 8)],
        ),
        (
            15,
            "wl_pointer",
            "axis",
            vec![W(1001), W(0), W((-15i32 << 8) as u32)],
        ),
        (15, "wl_pointer", "frame", vec![]),
        (14, "wl_keyboard", "leave", vec![W(24), W(8)]),
    ];
    let clipboard: Vec<Step> = vec![
        bind(6, "wl_data_device_manager", 3, 16),
        (
            16,
            "wl_data_device_manager",
            "get_data_device",
            vec![W(17), W(7)],
        ),
        (
            16,
            "wl_data_device_manager",
            "create_data_source",
            vec![W(18)],
        ),
        (
            18,
            "wl_data_source",
            "offer",
            vec![s("text/plain;charset=utf-8")],
        ),
        (17, "wl_data_device", "set_selection", vec![W(18), W(21)]),
        SWITCH,
        (17, "wl_data_device", "data_offer", vec![W(0xff00_0001)]),
        (0xff00_0001, "wl_data_offer", "offer", vec![s("text/plain")]),
        (17, "wl_data_device", "selection", vec![W(0xff00_0001)]),
        (
            18,
            "wl_data_source",
            "send",
            vec![s("text/plain;charset=utf-8")],
        ),
        SWITCH,
        (
            0xff00_0001,
            "wl_data_offer",
            "receive",
            vec![s("text/plain")],
        ),
        (0xff00_0001, "wl_data_offer", "destroy", vec![]),
    ];
    let cat = |parts: &[&[Step<'static>]]| -> Vec<Step<'static>> {
        parts.iter().flat_map(|p| p.iter().cloned()).collect()
    };
    vec![
        ("startup", session(true, &startup)),
        (
            "globals",
            session(true, &cat(&[&startup, &[SWITCH], &globals])),
        ),
        (
            "window",
            session(
                true,
                &cat(&[&startup, &[SWITCH], &globals, &[SWITCH], &window]),
            ),
        ),
        (
            "configure-and-draw",
            session(
                true,
                &cat(&[
                    &startup,
                    &[SWITCH],
                    &globals,
                    &[SWITCH],
                    &window,
                    &[SWITCH],
                    &configure,
                    &[SWITCH],
                    &draw,
                ]),
            ),
        ),
        (
            "keyboard-and-pointer",
            session(
                true,
                &cat(&[&startup, &[SWITCH], &globals, &[SWITCH], &window, &keyboard]),
            ),
        ),
        (
            "clipboard",
            session(
                true,
                &cat(&[
                    &startup,
                    &[SWITCH],
                    &globals,
                    &[SWITCH],
                    &window,
                    &clipboard,
                ]),
            ),
        ),
        (
            "bind-not-offered",
            session(
                true,
                &cat(&[&startup, &[bind(3, "zwlr_layer_shell_v1", 4, 4)]]),
            ),
        ),
        (
            "display-error",
            session(
                false,
                &[(
                    1,
                    "wl_display",
                    "error",
                    vec![W(8), W(2), s("invalid surface state")],
                )],
            ),
        ),
    ]
}
