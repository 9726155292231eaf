//! Hostile streams against the Wayland bridge: every one ends that stream with an error that
//! says what was wrong, and nothing reaches the compositor's socket.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use bulkhead_ipc::wlstream::{Record, STREAM_VERSION};
use bulkhead_vmm::bridge::{Bridge, Limits};

/// Runs the bridge on one stream carrying `records` after a hello; returns its result and what
/// a stand-in compositor received.
fn run(records: Vec<Record>) -> (Result<(), String>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wl: PathBuf = dir.path().join("wayland-0");
    let listener = UnixListener::bind(&wl).expect("bind");
    let compositor = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    let (mut guest, theirs) = UnixStream::pair().expect("pair");
    let bridge = std::thread::spawn(move || Bridge::new(wl, Limits::default()).stream(theirs));
    Record::Hello {
        version: STREAM_VERSION,
    }
    .write(&mut guest)
    .expect("hello");
    for r in records {
        if r.write(&mut guest).is_err() {
            break;
        }
    }
    // The guest is done: the bridge sees the end of its stream.
    let _ = guest.shutdown(std::net::Shutdown::Write);
    let result = bridge.join().expect("bridge thread");
    drop(guest);
    (result, compositor.join().expect("compositor thread"))
}

#[test]
fn hostile_records_end_the_stream() {
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
        (
            (0..3).map(|i| shm(i, 1 << 30)).collect(),
            "too much shared memory",
        ),
        (vec![Record::Blob(b"keymap".to_vec())], "the guest sent"),
        (
            vec![Record::Hello {
                version: STREAM_VERSION,
            }],
            "the guest sent",
        ),
    ];
    for (records, want) in cases {
        let (result, seen) = run(records.clone());
        let err = result.expect_err("the bridge accepted a hostile stream");
        assert!(
            err.contains(want),
            "{records:?}: {err:?} does not say {want:?}"
        );
        assert!(seen.is_empty(), "bytes reached the compositor: {seen:?}");
    }
}

#[test]
fn a_wrong_version_is_refused_before_connecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wl = dir.path().join("wayland-0");
    let (mut guest, theirs) = UnixStream::pair().expect("pair");
    Record::Hello {
        version: STREAM_VERSION + 1,
    }
    .write(&mut guest)
    .expect("hello");
    let err = Bridge::new(wl, Limits::default())
        .stream(theirs)
        .expect_err("accepted");
    assert!(err.contains("expected hello version"), "{err}");
}

#[test]
fn wayland_bytes_pass_through_with_their_memory() {
    let (result, seen) = run(vec![
        Record::ShmNew { id: 7, size: 64 },
        Record::ShmWrite {
            id: 7,
            offset: 8,
            data: vec![42; 8],
        },
        Record::Wl(vec![1, 0, 0, 0, 0, 0, 8, 0]),
    ]);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(seen, [1, 0, 0, 0, 0, 0, 8, 0]);
}
