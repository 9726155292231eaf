//! The switch driven through vhost-user as QEMU drives it: real backends on real sockets, the
//! vhost crate's frontend, guest memory in a memfd, split virtqueues filled in by the harness.

use std::time::Duration;

use bulkhead_switch::harness::{self, Guest, Options, SocketDir, Switch};
use bulkhead_switch::policy::{DropReason, Mac, PortSpec, Role, DEFAULT_MTU, ETH_HLEN};

const ROUTER: Mac = Mac([2, 0, 0, 0, 0, 1]);
const A: Mac = Mac([2, 0, 0, 0, 0, 2]);
const B: Mac = Mac([2, 0, 0, 0, 0, 3]);
const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(200);

fn frame(dst: Mac, src: Mac, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

fn network(options: Options) -> (SocketDir, Switch, Vec<Guest>) {
    let dir = SocketDir::new("test").unwrap();
    let ports = vec![
        PortSpec {
            vm: "router".into(),
            mac: ROUTER,
            role: Role::Router,
        },
        PortSpec {
            vm: "a".into(),
            mac: A,
            role: Role::Client,
        },
        PortSpec {
            vm: "b".into(),
            mac: B,
            role: Role::Client,
        },
    ];
    let (switch, mut guests) = harness::start(ports, options, dir.path()).unwrap();
    for g in &mut guests {
        g.post_rx().unwrap();
    }
    (dir, switch, guests)
}

fn send(g: &mut Guest, f: &[u8]) {
    assert!(g.queue_tx(f).unwrap());
    g.kick_tx().unwrap();
}

/// Waits until the switch has taken back everything queued on this guest's TX.
fn drained(g: &mut Guest, chains: usize) {
    let mut got = 0;
    let deadline = std::time::Instant::now() + WAIT;
    while got < chains && std::time::Instant::now() < deadline {
        got += g.reclaim_tx().unwrap();
        if got < chains {
            g.wait_tx(Duration::from_millis(20));
        }
    }
    assert_eq!(got, chains, "TX chains returned by the switch");
}

#[test]
fn unicast_router_to_client_and_back() {
    let (_d, sw, mut g) = network(Options::default());
    let out = frame(A, ROUTER, b"hello a");
    send(&mut g[0], &out);
    assert_eq!(g[1].recv_frames(1, WAIT).unwrap(), vec![out.clone()]);
    let back = frame(ROUTER, A, &[7u8; 1000]);
    send(&mut g[1], &back);
    assert_eq!(g[0].recv_frames(1, WAIT).unwrap(), vec![back.clone()]);
    // b saw neither.
    assert!(g[2].recv_frames(1, QUIET).unwrap().is_empty());
    let r = sw.backends[0].counters().snapshot();
    assert_eq!((r.tx_frames, r.tx_bytes), (1, out.len() as u64));
    assert_eq!((r.rx_frames, r.rx_bytes), (1, back.len() as u64));
    let a = sw.backends[1].counters().snapshot();
    assert_eq!((a.tx_frames, a.rx_frames), (1, 1));
}

#[test]
fn broadcast_reaches_permitted_peers() {
    let (_d, _sw, mut g) = network(Options::default());
    let from_router = frame(Mac::BROADCAST, ROUTER, b"who has");
    send(&mut g[0], &from_router);
    assert_eq!(
        g[1].recv_frames(1, WAIT).unwrap(),
        vec![from_router.clone()]
    );
    assert_eq!(
        g[2].recv_frames(1, WAIT).unwrap(),
        vec![from_router.clone()]
    );
    assert!(
        g[0].recv_frames(1, QUIET).unwrap().is_empty(),
        "no echo to the sender"
    );
    // A client's broadcast reaches the router only, never the other client.
    let from_a = frame(Mac::BROADCAST, A, b"dhcp discover");
    send(&mut g[1], &from_a);
    assert_eq!(g[0].recv_frames(1, WAIT).unwrap(), vec![from_a.clone()]);
    assert!(g[2].recv_frames(1, QUIET).unwrap().is_empty());
}

#[test]
fn spoofed_source_is_dropped_and_counted() {
    let (_d, sw, mut g) = network(Options::default());
    send(&mut g[1], &frame(ROUTER, B, b"i am b"));
    send(
        &mut g[1],
        &frame(Mac::BROADCAST, ROUTER, b"i am the router"),
    );
    drained(&mut g[1], 2);
    assert!(g[0].recv_frames(1, QUIET).unwrap().is_empty());
    assert!(g[2].recv_frames(1, QUIET).unwrap().is_empty());
    let a = sw.backends[1].counters().snapshot();
    assert_eq!(a.drop_count(DropReason::SpoofedSource), 2);
    assert_eq!(a.tx_frames, 2);
    assert_eq!(sw.backends[0].counters().snapshot().rx_frames, 0);
}

#[test]
fn client_to_client_is_dropped() {
    let (_d, sw, mut g) = network(Options::default());
    send(&mut g[1], &frame(B, A, b"psst"));
    drained(&mut g[1], 1);
    assert!(g[2].recv_frames(1, QUIET).unwrap().is_empty());
    assert!(g[0].recv_frames(1, QUIET).unwrap().is_empty());
    let a = sw.backends[1].counters().snapshot();
    assert_eq!(a.drop_count(DropReason::NotPermitted), 1);
}

#[test]
fn oversize_is_dropped_and_mtu_sized_passes() {
    let (_d, sw, mut g) = network(Options::default());
    let big = frame(ROUTER, A, &vec![1u8; DEFAULT_MTU + 4 + 1]);
    send(&mut g[1], &big);
    let max = frame(ROUTER, A, &vec![2u8; DEFAULT_MTU + 4]);
    send(&mut g[1], &max);
    assert_eq!(g[0].recv_frames(2, QUIET).unwrap(), vec![max]);
    let a = sw.backends[1].counters().snapshot();
    assert_eq!(a.drop_count(DropReason::Oversize), 1);
}

#[test]
fn hostile_descriptors_are_dropped_without_harm() {
    let (_d, sw, mut g) = network(Options::default());
    // Outside guest memory, write-only on TX, shorter than the header, absurdly long.
    assert!(g[1].queue_tx_raw(1 << 40, 100, false).unwrap());
    assert!(g[1].queue_tx_raw(0x20000, 100, true).unwrap());
    assert!(g[1].queue_tx_raw(0x20000, 4, false).unwrap());
    assert!(g[1].queue_tx_raw(0x20000, u32::MAX, false).unwrap());
    g[1].kick_tx().unwrap();
    drained(&mut g[1], 4);
    // The port still works.
    let ok = frame(ROUTER, A, b"still here");
    send(&mut g[1], &ok);
    assert_eq!(g[0].recv_frames(1, WAIT).unwrap(), vec![ok]);
    let a = sw.backends[1].counters().snapshot();
    assert_eq!(a.drop_count(DropReason::BadDescriptor), 2);
    assert_eq!(a.drop_count(DropReason::Malformed), 1);
    assert_eq!(a.drop_count(DropReason::Oversize), 1);
}

#[test]
fn header_and_frame_in_separate_descriptors() {
    let (_d, _sw, mut g) = network(Options::default());
    let f = frame(A, ROUTER, b"split");
    assert!(g[0].queue_tx_split(&f).unwrap());
    g[0].kick_tx().unwrap();
    assert_eq!(g[1].recv_frames(1, WAIT).unwrap(), vec![f]);
}

#[test]
fn many_frames_in_order_without_mergeable_buffers() {
    let (_d, sw, mut g) = network(Options {
        mergeable: false,
        ..Options::default()
    });
    let frames: Vec<Vec<u8>> = (0..600u32)
        .map(|i| frame(A, ROUTER, &i.to_le_bytes().repeat(1 + (i as usize % 300))))
        .collect();
    let mut got = Vec::new();
    let mut sent = 0;
    // Windows smaller than the ring and the RX queue: nothing may be lost.
    while sent < frames.len() {
        let window = (frames.len() - sent).min(100);
        for f in &frames[sent..sent + window] {
            assert!(g[0].queue_tx(f).unwrap());
        }
        g[0].kick_tx().unwrap();
        got.extend(g[1].recv_frames(window, WAIT).unwrap());
        drained(&mut g[0], window);
        sent += window;
    }
    assert_eq!(got.len(), frames.len());
    assert!(got == frames, "frames arrive intact and in order");
    let r = sw.backends[0].counters().snapshot();
    assert_eq!(r.drops.iter().sum::<u64>(), 0);
}

#[test]
fn mergeable_buffers_carry_a_frame_across_several() {
    let (_d, sw, mut g) = network(Options {
        rx_buffer: 256,
        ..Options::default()
    });
    let big = frame(
        A,
        ROUTER,
        &(0..1400u32).map(|i| i as u8).collect::<Vec<_>>(),
    );
    let small = frame(A, ROUTER, b"fits one");
    send(&mut g[0], &big);
    send(&mut g[0], &small);
    assert_eq!(g[1].recv_frames(2, WAIT).unwrap(), vec![big, small]);
    assert_eq!(sw.backends[1].counters().snapshot().rx_frames, 2);
}

#[test]
fn without_mergeable_buffers_a_frame_too_big_for_a_buffer_is_dropped() {
    let (_d, sw, mut g) = network(Options {
        mergeable: false,
        rx_buffer: 256,
        ..Options::default()
    });
    send(&mut g[0], &frame(A, ROUTER, &[5u8; 1000]));
    let fits = frame(A, ROUTER, b"small enough");
    send(&mut g[0], &fits);
    // The big frame's buffer comes back empty (the guest sees a zero-length buffer, skipped).
    let got = g[1].recv_frames(1, WAIT).unwrap();
    assert_eq!(got, vec![fits]);
    let a = sw.backends[1].counters().snapshot();
    assert_eq!(a.drop_count(DropReason::BadDescriptor), 1);
    assert_eq!(a.rx_frames, 1);
}
