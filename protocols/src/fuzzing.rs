//! The invariants the fuzz targets in `protocols/fuzz` check, shared with the corpus test
//! (`tests/fuzz_corpus.rs`) so the two cannot drift, and the generator of their seeds.
//!
//! Both parsers read bytes a guest controls: the host's bridge reads [`wlstream`] records from
//! the guest proxy, the host reads [`agent`] frames from the guest agent (and the agent reads
//! the host's). Beyond "no panic", every check asserts:
//! - what a parser returns is bounded by what it read (and by the format's limits);
//! - decode → encode reproduces the bytes read (records and output frames are canonical) or,
//!   for JSON messages, decode → encode → decode gives the same message;
//! - a reader that returns the bytes in short pieces, interrupted at the cuts, yields the same
//!   items and the same error as one that has them all at once.

use std::io::{self, Read};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::agent::{self, Frame, FrameKind, GuestMessage, HostMessage};
use crate::wlstream::{self, Record};

/// Serves bytes in pieces that end at each cut; the first read at each cut fails with
/// `Interrupted`, as a socket read may.
struct Trickle<'a> {
    data: &'a [u8],
    at: usize,
    cuts: Vec<usize>,
    interrupted_at: Option<usize>,
}

impl<'a> Trickle<'a> {
    fn new(data: &'a [u8], cuts: Vec<usize>) -> Trickle<'a> {
        Trickle {
            data,
            at: 0,
            cuts,
            interrupted_at: None,
        }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.cuts.contains(&self.at) && self.interrupted_at != Some(self.at) {
            self.interrupted_at = Some(self.at);
            return Err(io::ErrorKind::Interrupted.into());
        }
        let end = self
            .cuts
            .iter()
            .copied()
            .filter(|&c| c > self.at)
            .min()
            .unwrap_or(self.data.len())
            .min(self.data.len());
        let n = buf.len().min(end - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The ways of cutting `data` a check compares with reading it whole: in two pieces at a
/// point the input picks, and (for short inputs) in pieces of three bytes.
fn cuttings(data: &[u8]) -> Vec<Vec<usize>> {
    let pick = data
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
    let mut out = vec![vec![pick % (data.len() + 1)]];
    if data.len() <= 1024 {
        out.push((1..data.len()).step_by(3).collect());
    }
    out
}

/// Items read until the end of the stream, and how it ended (`None`: cleanly).
type Reading<T> = (Vec<T>, Option<String>);

fn read_all<T, E: std::fmt::Display>(
    mut next: impl FnMut() -> Result<Option<T>, E>,
    max_items: usize,
) -> Reading<T> {
    let mut items = Vec::new();
    loop {
        match next() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(e) => return (items, Some(e.to_string())),
        }
        // Each item consumes at least one header: a reader that yields more is looping.
        assert!(
            items.len() <= max_items,
            "more items than headers in the input"
        );
    }
}

/// Stream records (`wlstream`): the bridge's and the guest proxy's reader.
pub fn check_wlstream(data: &[u8]) {
    const HEADER: usize = 5;
    let max_items = data.len() / HEADER;
    // Whole, remembering the bytes of each record.
    let mut rest = data;
    let whole = read_all(
        || {
            let before = rest.len();
            Record::read(&mut rest).map(|r| r.map(|r| (r, before - rest.len())))
        },
        max_items,
    );
    let mut at = 0;
    for (record, len) in &whole.0 {
        let bytes = &data[at..at + len];
        at += len;
        let max = match record {
            Record::ShmWrite { .. } => wlstream::MAX_SHM_FRAME,
            _ => wlstream::MAX_FRAME,
        };
        assert!(*len >= HEADER && *len <= 4 + max, "{len}-byte record");
        check_record_bounds(record);
        let encoded = record.encode().expect("a record that was read encodes");
        assert_eq!(encoded, bytes, "{record:?} is not encoded as it was read");
        let again = Record::decode(bytes[4], &bytes[HEADER..]).expect("its frame decodes");
        assert_eq!(&again, record);
    }
    if whole.1.is_none() {
        assert_eq!(at, data.len(), "a clean end before the end of the input");
    }
    let whole = (
        whole.0.into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
        whole.1,
    );
    for cuts in cuttings(data) {
        let mut r = Trickle::new(data, cuts.clone());
        let pieces = read_all(|| Record::read(&mut r), max_items);
        assert_eq!(pieces, whole, "read in pieces cut at {cuts:?}");
    }
}

fn check_record_bounds(r: &Record) {
    let max_data = wlstream::MAX_FRAME - 1;
    match r {
        Record::Hello { .. }
        | Record::ShmDrop { .. }
        | Record::PipeWrite { .. }
        | Record::PipeClose { .. } => {}
        Record::ShmNew { size, .. } | Record::ShmResize { size, .. } => {
            assert!(*size <= wlstream::MAX_SHM, "shm of {size} bytes")
        }
        Record::Wl { fds, data } => {
            assert!(data.len() < max_data);
            assert!(usize::from(*fds) <= wlstream::fdpass::MAX_FDS);
            assert!(*fds == 0 || !data.is_empty(), "descriptors with no bytes");
        }
        Record::ShmWrite { data, .. } => assert!(data.len() <= wlstream::MAX_SHM_CHUNK),
        Record::PipeData { data, .. } => assert!(data.len() <= max_data - 4),
        Record::Blob(d) => assert!(d.len() <= max_data.min(wlstream::MAX_BLOB)),
    }
}

/// Agent frames: the host reads the guest's ([`GuestMessage`]), the agent the host's
/// ([`HostMessage`]); both from the same bytes.
pub fn check_agent(data: &[u8]) {
    check_frames::<GuestMessage>(data);
    check_frames::<HostMessage>(data);
}

/// What re-encoding a message may add to the JSON it came from: fields left out that have
/// defaults (`"env":[],"wait":false`, `"code":null,"signal":null`).
const JSON_GROWTH: usize = 64;

fn check_frames<M>(data: &[u8])
where
    M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    const HEADER: usize = 5;
    let max_items = data.len() / HEADER;
    let mut rest = data;
    let whole = read_all(
        || {
            let before = rest.len();
            agent::read_frame::<M, _>(&mut rest).map(|f| f.map(|f| (f, before - rest.len())))
        },
        max_items,
    );
    let mut at = 0;
    for (frame, len) in &whole.0 {
        let bytes = &data[at..at + len];
        at += len;
        assert!(
            *len >= HEADER && *len <= 4 + agent::MAX_FRAME,
            "{len}-byte frame"
        );
        let payload = &bytes[HEADER..];
        match frame {
            Frame::Stdout(d) | Frame::Stderr(d) => {
                let kind = if matches!(frame, Frame::Stdout(_)) {
                    FrameKind::Stdout
                } else {
                    FrameKind::Stderr
                };
                assert_eq!(d, payload);
                let encoded = agent::encode(kind, d).expect("output that was read encodes");
                assert_eq!(encoded, bytes, "output is not encoded as it was read");
            }
            Frame::Message(m) => {
                // Everything a message holds is in its JSON, so this bounds what the parser
                // returned by what it read.
                let json = serde_json::to_vec(m).expect("a message that was read serialises");
                assert!(
                    json.len() <= payload.len() + JSON_GROWTH,
                    "{m:?}: {} bytes of JSON from {}",
                    json.len(),
                    payload.len()
                );
                let again: Frame<M> =
                    agent::decode(FrameKind::Message, json).expect("its JSON decodes");
                assert_eq!(&again, frame);
                match agent::encode_message(m) {
                    Ok(encoded) => {
                        let mut r = &encoded[..];
                        let read = agent::read_frame::<M, _>(&mut r).expect("it reads back");
                        assert_eq!(read.as_ref(), Some(frame));
                    }
                    Err(e) => assert!(
                        payload.len() + JSON_GROWTH >= agent::MAX_FRAME,
                        "{m:?} does not encode: {e}"
                    ),
                }
            }
        }
    }
    if whole.1.is_none() {
        assert_eq!(at, data.len(), "a clean end before the end of the input");
    }
    let whole = (
        whole.0.into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
        whole.1,
    );
    for cuts in cuttings(data) {
        let mut r = Trickle::new(data, cuts.clone());
        let pieces = read_all(|| agent::read_frame::<M, _>(&mut r), max_items);
        assert_eq!(pieces, whole, "read in pieces cut at {cuts:?}");
    }
}

/// An argument of a seed's Wayland message.
enum Wl<'a> {
    U(u32),
    S(&'a str),
}

/// A Wayland message as the wire has it, for the seeds (native byte order, as the proxy's).
fn wl_message(sender: u32, opcode: u16, args: &[Wl]) -> Vec<u8> {
    let mut body: Vec<u8> = Vec::new();
    for a in args {
        match a {
            Wl::U(w) => body.extend(w.to_ne_bytes()),
            Wl::S(s) => {
                body.extend(((s.len() + 1) as u32).to_ne_bytes());
                body.extend(s.as_bytes());
                body.push(0);
                while !body.len().is_multiple_of(4) {
                    body.push(0);
                }
            }
        }
    }
    let size = (8 + body.len()) as u32;
    let mut m = sender.to_ne_bytes().to_vec();
    m.extend(((size << 16) | opcode as u32).to_ne_bytes());
    m.extend(body);
    m
}

fn records(rs: &[Record]) -> Vec<u8> {
    rs.iter()
        .flat_map(|r| r.encode().expect("a seed record fits a frame"))
        .collect()
}

/// The seeds of the `wlstream` target: record streams as the proxy and the bridge send them.
pub fn wlstream_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let hello = Record::Hello {
        version: wlstream::STREAM_VERSION,
    };
    use Wl::{S, U};
    // wl_display.get_registry(2), wl_display.sync(3)
    let mut startup = wl_message(1, 1, &[U(2)]);
    startup.extend(wl_message(1, 0, &[U(3)]));
    // wl_registry.global(1, "wl_compositor", 6), wl_callback.done(0)
    let mut globals = wl_message(2, 0, &[U(1), S("wl_compositor"), U(6)]);
    globals.extend(wl_message(3, 0, &[U(0)]));
    let pixels: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let one = |r: Record| records(&[r]);
    let mut guest_session = vec![
        hello.clone(),
        Record::Wl {
            fds: 0,
            data: startup.clone(),
        },
        Record::ShmNew { id: 1, size: 8192 },
        Record::Wl {
            fds: 1,
            data: wl_message(4, 0, &[U(5), U(8192)]),
        },
    ];
    guest_session.extend(wlstream::shm_writes(1, 256, &pixels));
    guest_session.extend([
        Record::Wl {
            fds: 0,
            data: wl_message(7, 6, &[]),
        },
        Record::PipeWrite { id: 1 },
        Record::Wl {
            fds: 1,
            data: wl_message(9, 1, &[S("text/plain;charset=utf-8")]),
        },
        Record::PipeData {
            id: 1,
            data: b"pasted text".to_vec(),
        },
        Record::PipeClose { id: 1 },
        Record::ShmResize { id: 1, size: 16384 },
        Record::ShmDrop { id: 1 },
    ]);
    let host_session = [
        hello.clone(),
        Record::Wl {
            fds: 0,
            data: globals.clone(),
        },
        Record::Blob(b"xkb_keymap {\n\txkb_keycodes \"evdev\" { };\n};\n".to_vec()),
        Record::Wl {
            fds: 1,
            data: wl_message(10, 0, &[U(1), U(40)]),
        },
        Record::PipeWrite { id: 7 },
        Record::Wl {
            fds: 1,
            data: wl_message(11, 1, &[S("text/plain")]),
        },
        Record::PipeData {
            id: 3,
            data: vec![b'x'; 300],
        },
        Record::PipeClose { id: 3 },
    ];
    let mut truncated = records(&host_session);
    truncated.truncate(truncated.len() - 3);
    vec![
        ("hello", one(hello.clone())),
        (
            "wl",
            one(Record::Wl {
                fds: 0,
                data: startup,
            }),
        ),
        ("shm-new", one(Record::ShmNew { id: 1, size: 4096 })),
        (
            "shm-resize",
            one(Record::ShmResize {
                id: 1,
                size: wlstream::MAX_SHM,
            }),
        ),
        (
            "shm-write",
            one(Record::ShmWrite {
                id: 1,
                offset: 64,
                data: pixels[..256].to_vec(),
            }),
        ),
        ("shm-drop", one(Record::ShmDrop { id: 1 })),
        ("pipe-write", one(Record::PipeWrite { id: 2 })),
        (
            "pipe-data",
            one(Record::PipeData {
                id: 2,
                data: b"hello".to_vec(),
            }),
        ),
        ("pipe-close", one(Record::PipeClose { id: 2 })),
        ("blob", one(Record::Blob(b"xkb_keymap { };".to_vec()))),
        ("guest-session", records(&guest_session)),
        ("host-session", records(&host_session)),
        ("host-session-truncated", truncated),
        (
            "empty-records",
            records(&[
                Record::Wl {
                    fds: 0,
                    data: Vec::new(),
                },
                Record::PipeData {
                    id: 0,
                    data: Vec::new(),
                },
                Record::Blob(Vec::new()),
            ]),
        ),
    ]
}

/// The seeds of the `agent` target: frames as the host and the agent send them.
pub fn agent_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let host = |m: HostMessage| agent::encode_message(&m).expect("a seed message encodes");
    let guest = |m: GuestMessage| agent::encode_message(&m).expect("a seed message encodes");
    let out = |kind, d: &[u8]| agent::encode(kind, d).expect("seed output fits a frame");
    let hello = host(HostMessage::Hello {
        version: agent::PROTOCOL_VERSION,
    });
    let guest_hello = guest(GuestMessage::Hello {
        version: agent::PROTOCOL_VERSION,
        agent: "0.1.0".into(),
    });
    let run = host(HostMessage::Run {
        argv: vec!["sh".into(), "-c".into(), "echo hi; ls /".into()],
        env: vec![
            ("LANG".into(), "C.UTF-8".into()),
            ("TERM".into(), "xterm".into()),
        ],
        wait: true,
    });
    vec![
        ("host-hello", hello.clone()),
        ("host-run", [hello.clone(), run].concat()),
        (
            "host-run-nowait",
            host(HostMessage::Run {
                argv: vec!["foot".into()],
                env: Vec::new(),
                wait: false,
            }),
        ),
        ("host-status", host(HostMessage::Status {})),
        ("host-poweroff", host(HostMessage::Poweroff {})),
        ("guest-hello", guest_hello.clone()),
        (
            "guest-ready",
            guest(GuestMessage::Ready {
                init_ms: 812,
                agent_ms: 1034,
            }),
        ),
        ("guest-started", guest(GuestMessage::Started { pid: 4242 })),
        (
            "guest-output",
            [
                guest_hello,
                out(FrameKind::Stdout, b"hi\nbin\netc\nusr\n"),
                out(FrameKind::Stderr, b"ls: cannot access '/x': No such file\n"),
                guest(GuestMessage::Exited {
                    code: Some(2),
                    signal: None,
                }),
            ]
            .concat(),
        ),
        (
            "guest-killed",
            guest(GuestMessage::Exited {
                code: None,
                signal: Some(9),
            }),
        ),
        (
            "guest-status",
            guest(GuestMessage::Status {
                running: 1,
                idle_secs: 0,
                uptime_ms: 90_000,
            }),
        ),
        ("guest-powering-off", guest(GuestMessage::PoweringOff {})),
        (
            "guest-error",
            guest(GuestMessage::Error {
                message: "no such user: \"user\"".into(),
            }),
        ),
        (
            "message-defaults-left-out",
            out(FrameKind::Message, br#"{"type":"run","argv":["true"]}"#),
        ),
    ]
}

/// Runs every file of a fuzz target's corpus `dir` through `check` (as the corpus tests of
/// this crate and the guest proxy do), after checking that its seeds are exactly what the
/// generator makes now; `BULKHEAD_WRITE_SEEDS=1` rewrites them first. Test support: it panics
/// on what it finds.
pub fn run_corpus(dir: &Path, seeds: Vec<(&str, Vec<u8>)>, check: fn(&[u8])) {
    let target = dir.display();
    let corpus = || {
        let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{target}: {e}"))
            .map(|e| {
                let path = e.expect("corpus entry").path();
                let bytes = std::fs::read(&path).expect("corpus file");
                let name = path.file_name().expect("a file name");
                (name.to_string_lossy().into_owned(), bytes)
            })
            .collect();
        inputs.sort();
        inputs
    };
    if std::env::var_os("BULKHEAD_WRITE_SEEDS").is_some() {
        for (name, _) in corpus() {
            if name.starts_with("seed-") {
                std::fs::remove_file(dir.join(name)).expect("remove an old seed");
            }
        }
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
        }
    }
    let inputs = corpus();
    let committed: Vec<_> = inputs
        .iter()
        .filter(|(n, _)| n.starts_with("seed-"))
        .cloned()
        .collect();
    let mut generated: Vec<_> = seeds
        .into_iter()
        .map(|(n, b)| (format!("seed-{n}"), b))
        .collect();
    generated.sort();
    assert!(
        committed == generated,
        "the seeds of {target} differ from the generator's; rewrite them with BULKHEAD_WRITE_SEEDS=1"
    );
    for (name, bytes) in &inputs {
        assert!(
            name.starts_with("seed-") || name.starts_with("regression-"),
            "{target}/{name}: corpus files are seeds or regressions"
        );
        if let Err(panic) = std::panic::catch_unwind(|| check(bytes)) {
            std::panic::resume_unwind(Box::new(format!("{target}/{name}: {panic:?}")));
        }
    }
}
