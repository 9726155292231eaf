//! Hostile streams against the Wayland bridge, written as raw frames: each one over a limit or
//! against a rule ends that stream with an error that says which, and nothing it should not
//! send reaches the compositor; the VM's other streams carry on. A stand-in compositor keeps
//! every descriptor it receives (as a real one keeps pools mapped) and reports what arrives;
//! tests wait for those reports, never for time.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bulkhead_ipc::wlstream::{fdpass, Record, STREAM_VERSION};
use bulkhead_vmm::bridge::{Bridge, Limits};

// The stream's record tags (protocols/src/wlstream.rs).
const HELLO: u8 = 1;
const WL: u8 = 2;
const SHM_NEW: u8 = 3;
const SHM_WRITE: u8 = 5;
const SHM_DROP: u8 = 6;
const PIPE_WRITE: u8 = 7;

const KIB: u64 = 1024;

/// How long a report may take before the test fails rather than hangs.
const PATIENCE: Duration = Duration::from_secs(20);

fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((payload.len() + 1) as u32).to_le_bytes().to_vec();
    f.push(tag);
    f.extend(payload);
    f
}

/// Wayland bytes that declare `fds` descriptors (8 bytes: one empty message header).
fn wl(fds: u8) -> Vec<u8> {
    frame(WL, &[fds, 1, 0, 0, 0, 0, 0, 8, 0])
}

fn shm_new(id: u32, size: u64) -> Vec<u8> {
    frame(
        SHM_NEW,
        &[&id.to_le_bytes()[..], &size.to_le_bytes()].concat(),
    )
}

/// Fills `len` bytes at `offset`, in records of 64 KiB.
fn shm_fill(id: u32, offset: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let n = (len - at).min(64 * KIB);
        let head = [&id.to_le_bytes()[..], &(offset + at).to_le_bytes()].concat();
        out.extend(frame(SHM_WRITE, &[head, vec![0x5a; n as usize]].concat()));
        at += n;
    }
    out
}

fn shm_drop(id: u32) -> Vec<u8> {
    frame(SHM_DROP, &id.to_le_bytes())
}

fn pipe_write(id: u32) -> Vec<u8> {
    frame(PIPE_WRITE, &id.to_le_bytes())
}

/// What the stand-in compositor got on one read.
struct Got {
    conn: usize,
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// A VM: its bridge and a compositor on its Wayland socket.
struct Vm {
    _dir: tempfile::TempDir,
    bridge: Arc<Bridge>,
    got: Receiver<Got>,
    /// Everything the compositor received, by connection (fds kept open).
    seen: HashMap<usize, Vec<Got>>,
}

fn vm(limits: Limits) -> Vm {
    let dir = tempfile::tempdir().expect("tempdir");
    let wl: PathBuf = dir.path().join("wayland-0");
    let listener = UnixListener::bind(&wl).expect("bind");
    let (tx, got) = channel();
    std::thread::spawn(move || {
        for (conn, s) in listener.incoming().enumerate() {
            let (s, tx) = (s.expect("accept"), tx.clone());
            std::thread::spawn(move || loop {
                let mut buf = vec![0u8; 4096];
                let mut fds = Vec::new();
                match fdpass::recv(&s, &mut buf, &mut fds) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        let _ = tx.send(Got {
                            conn,
                            bytes: buf,
                            fds,
                        });
                    }
                }
            });
        }
    });
    Vm {
        _dir: dir,
        bridge: Arc::new(Bridge::new(wl, limits)),
        got,
        seen: HashMap::new(),
    }
}

/// One guest app's stream into the bridge.
struct Stream {
    guest: UnixStream,
    bridge: JoinHandle<Result<(), String>>,
}

impl Vm {
    fn open(&self) -> Stream {
        let (mut guest, theirs) = UnixStream::pair().expect("pair");
        let b = self.bridge.clone();
        let bridge = std::thread::spawn(move || b.stream(theirs).map_err(|e| e.to_string()));
        guest
            .write_all(&frame(HELLO, &STREAM_VERSION.to_le_bytes()))
            .expect("hello");
        Stream { guest, bridge }
    }

    /// Waits until the compositor got `n` descriptors in all on connection `conn`.
    fn wait_for_fds(&mut self, conn: usize, n: usize) {
        while self.fds_on(conn) < n {
            self.next();
        }
    }

    /// Waits until the compositor got `n` bytes in all on connection `conn`.
    fn wait_for_bytes(&mut self, conn: usize, n: usize) {
        while self.bytes_on(conn).len() < n {
            self.next();
        }
    }

    fn bytes_on(&self, conn: usize) -> Vec<u8> {
        let got = self.seen.get(&conn).map_or(&[][..], Vec::as_slice);
        got.iter().flat_map(|g| g.bytes.iter().copied()).collect()
    }

    /// A copy of the `i`th descriptor the compositor got on connection `conn`.
    fn fd(&self, conn: usize, i: usize) -> std::fs::File {
        let got = self.seen.get(&conn).map_or(&[][..], Vec::as_slice);
        let fd = got.iter().flat_map(|g| &g.fds).nth(i).expect("no such fd");
        std::fs::File::from(fd.try_clone().expect("dup"))
    }

    fn next(&mut self) {
        match self.got.recv_timeout(PATIENCE) {
            Ok(g) => self.seen.entry(g.conn).or_default().push(g),
            Err(RecvTimeoutError::Timeout) => panic!("the compositor got nothing more"),
            Err(RecvTimeoutError::Disconnected) => panic!("the compositor is gone"),
        }
    }

    fn fds_on(&self, conn: usize) -> usize {
        self.seen
            .get(&conn)
            .map_or(0, |v| v.iter().map(|g| g.fds.len()).sum())
    }

    /// Everything the compositor received up to now (bytes, descriptors) on all connections.
    fn drain(&mut self) -> (usize, usize) {
        while let Ok(g) = self.got.try_recv() {
            self.seen.entry(g.conn).or_default().push(g);
        }
        let all = self.seen.values().flatten();
        all.fold((0, 0), |(b, f), g| (b + g.bytes.len(), f + g.fds.len()))
    }
}

impl Stream {
    fn send(&mut self, bytes: &[u8]) {
        // A bridge that ended the stream stops reading: the rest need not arrive.
        let _ = self.guest.write_all(bytes);
    }

    /// The guest is done: returns how the bridge ended the stream.
    fn end(self) -> Result<(), String> {
        let _ = self.guest.shutdown(std::net::Shutdown::Write);
        let r = self.bridge.join().expect("bridge thread");
        drop(self.guest);
        r
    }
}

/// The thread-count test needs the others not to start threads meanwhile.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn expect_limit(r: Result<(), String>, want: &[&str]) {
    let err = r.expect_err("the bridge let the stream go over its limit");
    for w in want {
        assert!(err.contains(w), "{err:?} does not say {w:?}");
    }
}

#[test]
fn hostile_records_end_the_stream() {
    let _s = serial();
    let shm = |id, size| Record::ShmNew { id, size };
    let cases: Vec<(Vec<Record>, &str)> = vec![
        (
            vec![Record::ShmWrite {
                id: 1,
                offset: 0,
                data: vec![1],
            }],
            "unknown memory",
        ),
        (
            vec![
                shm(1, 4096),
                Record::ShmWrite {
                    id: 1,
                    offset: 4000,
                    data: vec![0; 200],
                },
            ],
            "past 4096 bytes",
        ),
        (
            vec![
                shm(1, 4096),
                Record::ShmWrite {
                    id: 1,
                    offset: u64::MAX,
                    data: vec![0; 2],
                },
            ],
            "past the end",
        ),
        (
            vec![shm(1, 4096), Record::ShmResize { id: 1, size: 10 }],
            "cannot become 10 bytes",
        ),
        (vec![shm(1, 4096), shm(1, 4096)], "duplicate"),
        (vec![Record::Blob(b"keymap".to_vec())], "the guest sent"),
        (
            vec![Record::Hello {
                version: STREAM_VERSION,
            }],
            "the guest sent",
        ),
    ];
    for (records, want) in cases {
        let mut v = vm(Limits::default());
        let mut s = v.open();
        for r in &records {
            s.send(&r.encode().expect("encode"));
        }
        let err = s.end().expect_err("the bridge accepted a hostile stream");
        assert!(
            err.contains(want),
            "{records:?}: {err:?} does not say {want:?}"
        );
        assert_eq!(v.drain(), (0, 0), "{records:?} reached the compositor");
    }
}

#[test]
fn a_wrong_version_is_refused_before_connecting_and_told_ours() {
    let _s = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut guest, theirs) = UnixStream::pair().expect("pair");
    guest
        .write_all(&frame(HELLO, &(STREAM_VERSION + 1).to_le_bytes()))
        .expect("hello");
    let err = Bridge::new(dir.path().join("wayland-0"), Limits::default())
        .stream(theirs)
        .expect_err("accepted")
        .to_string();
    assert!(
        err.contains(&format!("speaks stream version {}", STREAM_VERSION + 1)),
        "{err}"
    );
    let ours = Record::read(&mut guest).expect("the bridge's hello");
    assert_eq!(
        ours,
        Some(Record::Hello {
            version: STREAM_VERSION
        })
    );
}

#[test]
fn wayland_bytes_pass_through_with_their_memory() {
    let _s = serial();
    let mut v = vm(Limits::default());
    let mut s = v.open();
    s.send(&[shm_new(7, 64), shm_fill(7, 8, 8), wl(1)].concat());
    v.wait_for_fds(0, 1);
    v.wait_for_bytes(0, 8);
    assert_eq!(s.end(), Ok(()));
    assert_eq!(v.bytes_on(0), [1, 0, 0, 0, 0, 0, 8, 0]);
    let mut pool = [0u8; 16];
    std::os::unix::fs::FileExt::read_exact_at(&v.fd(0, 0), &mut pool, 8).expect("read the pool");
    assert_eq!(
        pool,
        [0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn descriptors_go_only_with_the_wayland_bytes_that_declare_them() {
    let _s = serial();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A pool's memfd before bytes that declare none: before, it rode on them.
        (
            [shm_new(1, 4096), wl(0)].concat(),
            "declare 0 file descriptors, but 1 wait",
        ),
        (wl(1), "declare 1 file descriptors, but 0 wait"),
        (
            [shm_new(1, 4096), shm_new(2, 4096), wl(1)].concat(),
            "declare 1 file descriptors, but 2 wait",
        ),
        // More than one message batch may carry, never sent.
        (
            (1..=29).flat_map(|i| shm_new(i, 4096)).collect(),
            "more than 28 file descriptors wait",
        ),
    ];
    for (bytes, want) in cases {
        let mut v = vm(Limits::default());
        let mut s = v.open();
        s.send(&bytes);
        let err = s
            .end()
            .expect_err("the bridge attached descriptors nobody declared");
        assert!(err.contains(want), "{err:?} does not say {want:?}");
        assert_eq!(v.drain(), (0, 0), "the compositor got something");
    }
}

#[test]
fn filled_memory_is_not_refunded_when_the_guest_drops_its_pool() {
    let _s = serial();
    let mut v = vm(Limits {
        shm_memory_per_stream: 256 * KIB,
        ..Limits::default()
    });
    let mut s = v.open();
    // Each pool filled, handed to the compositor (which keeps it), then dropped by the app.
    for id in 1..=2 {
        s.send(
            &[
                shm_new(id, 128 * KIB),
                shm_fill(id, 0, 128 * KIB),
                wl(1),
                shm_drop(id),
            ]
            .concat(),
        );
    }
    v.wait_for_fds(0, 2);
    s.send(&[shm_new(3, 128 * KIB), shm_fill(3, 0, 64 * KIB), wl(1)].concat());
    expect_limit(
        s.end(),
        &["262144 bytes of shared memory filled", "for this app"],
    );
    assert_eq!(v.drain().1, 2, "the third pool reached the compositor");
}

#[test]
fn filled_memory_is_capped_for_the_vm_across_its_streams() {
    let _s = serial();
    let mut v = vm(Limits {
        shm_memory_per_stream: 1024 * KIB,
        shm_memory_per_vm: 384 * KIB,
        ..Limits::default()
    });
    // Each stream is opened once the one before is connected: the compositor numbers its
    // connections in that order.
    let mut a = v.open();
    a.send(&[shm_new(1, 256 * KIB), shm_fill(1, 0, 192 * KIB), wl(1)].concat());
    v.wait_for_fds(0, 1);
    let mut b = v.open();
    b.send(&[shm_new(1, 256 * KIB), shm_fill(1, 0, 192 * KIB), wl(1)].concat());
    v.wait_for_fds(1, 1);
    let mut c = v.open();
    c.send(&[shm_new(1, 256 * KIB), shm_fill(1, 0, 64 * KIB), wl(1)].concat());
    expect_limit(c.end(), &["393216 bytes", "for the VM's apps together"]);
    // The others go on; once one ends, what it filled is the VM's again.
    a.send(&wl(0));
    v.wait_for_bytes(0, 16);
    assert_eq!(a.end(), Ok(()));
    let mut d = v.open();
    d.send(&[shm_new(1, 256 * KIB), shm_fill(1, 0, 128 * KIB), wl(1)].concat());
    v.wait_for_fds(3, 1);
    assert_eq!(d.end(), Ok(()));
    assert_eq!(b.end(), Ok(()));
}

#[test]
fn pools_are_capped_per_stream() {
    let _s = serial();
    let mut v = vm(Limits {
        pools_per_stream: 4,
        ..Limits::default()
    });
    let mut s = v.open();
    let pools: Vec<u8> = (1..=4)
        .flat_map(|i| [shm_new(i, 4096), wl(1)].concat())
        .collect();
    s.send(&pools);
    // A dropped pool's memfd is closed: it no longer counts.
    s.send(&[shm_drop(1), shm_new(5, 4096), wl(1)].concat());
    v.wait_for_fds(0, 5);
    s.send(&[shm_new(6, 4096), wl(1)].concat());
    expect_limit(s.end(), &["4 shared-memory pools for this app"]);
    assert_eq!(v.drain().1, 5);
}

#[test]
fn pools_are_capped_for_the_vm() {
    let _s = serial();
    let mut v = vm(Limits {
        pools_per_stream: 4,
        pools_per_vm: 6,
        ..Limits::default()
    });
    let mut a = v.open();
    a.send(
        &(1..=4)
            .flat_map(|i| [shm_new(i, 4096), wl(1)].concat())
            .collect::<Vec<_>>(),
    );
    v.wait_for_fds(0, 4);
    let mut b = v.open();
    b.send(
        &(1..=3)
            .flat_map(|i| [shm_new(i, 4096), wl(1)].concat())
            .collect::<Vec<_>>(),
    );
    expect_limit(
        b.end(),
        &["6 shared-memory pools for the VM's apps together"],
    );
    v.wait_for_fds(1, 2);
    v.drain();
    assert_eq!(v.fds_on(1), 2, "the third pool reached the compositor");
    a.send(&wl(0));
    v.wait_for_bytes(0, 5 * 8);
    assert_eq!(a.end(), Ok(()));
}

#[test]
fn pipes_are_capped_per_stream() {
    let _s = serial();
    let mut v = vm(Limits {
        pipes_per_stream: 3,
        ..Limits::default()
    });
    let mut s = v.open();
    s.send(
        &(1..=3)
            .flat_map(|i| [pipe_write(i), wl(1)].concat())
            .collect::<Vec<_>>(),
    );
    v.wait_for_fds(0, 3);
    s.send(&[pipe_write(4), wl(1)].concat());
    expect_limit(s.end(), &["3 pipes for this app"]);
    assert_eq!(v.drain().1, 3);
}

#[test]
fn pipes_are_capped_for_the_vm() {
    let _s = serial();
    let mut v = vm(Limits {
        pipes_per_stream: 3,
        pipes_per_vm: 4,
        ..Limits::default()
    });
    let mut a = v.open();
    a.send(
        &(1..=3)
            .flat_map(|i| [pipe_write(i), wl(1)].concat())
            .collect::<Vec<_>>(),
    );
    v.wait_for_fds(0, 3);
    let mut b = v.open();
    b.send(
        &(1..=2)
            .flat_map(|i| [pipe_write(i), wl(1)].concat())
            .collect::<Vec<_>>(),
    );
    expect_limit(b.end(), &["4 pipes for the VM's apps together"]);
    // The first stream's transfers still flow: the compositor writes into one, the guest
    // gets the data under its id.
    let mut pipe = v.fd(0, 1);
    pipe.write_all(b"paste").expect("write into the pipe");
    let mut reader = &a.guest;
    assert_eq!(
        Record::read(&mut reader).expect("hello"),
        Some(Record::Hello {
            version: STREAM_VERSION
        })
    );
    assert_eq!(
        Record::read(&mut reader).expect("data"),
        Some(Record::PipeData {
            id: 2,
            data: b"paste".to_vec()
        })
    );
    assert_eq!(a.end(), Ok(()));
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[test]
fn pipes_take_no_thread_each() {
    let _s = serial();
    let mut v = vm(Limits::default());
    let mut s = v.open();
    s.send(&wl(0));
    v.wait_for_bytes(0, 8);
    let before = threads();
    s.send(
        &(1..=12)
            .flat_map(|i| [pipe_write(i), wl(1)].concat())
            .collect::<Vec<_>>(),
    );
    v.wait_for_fds(0, 12);
    // (Threads of earlier tests' compositors may still be ending: fewer is fine.)
    let more = threads().saturating_sub(before);
    assert!(more < 4, "12 pipes started {more} threads");
    assert_eq!(s.end(), Ok(()));
}
