//! Forwarding throughput between two ports (router → client) through the in-process vhost-user
//! frontends, at 64-byte and 1500-byte frames, beside the memcpy bandwidth of the same bytes
//! measured in the same run. Run through `net-switch/bench/throughput`.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use bulkhead_switch::harness::{self, Options, SocketDir};
use bulkhead_switch::policy::{Mac, PortSpec, Role};

const ROUTER: Mac = Mac([2, 0, 0, 0, 0, 1]);
const CLIENT: Mac = Mac([2, 0, 0, 0, 0, 2]);
/// Frames in flight at most: below the ring's and the RX queue's size, so nothing is dropped.
const WINDOW: u64 = 192;

struct Run {
    frames: u64,
    elapsed: Duration,
    drops: u64,
}

fn forward(size: usize, duration: Duration) -> io::Result<Run> {
    let dir = SocketDir::new("bench")?;
    let ports = vec![
        PortSpec {
            vm: "router".into(),
            mac: ROUTER,
            role: Role::Router,
        },
        PortSpec {
            vm: "client".into(),
            mac: CLIENT,
            role: Role::Client,
        },
    ];
    let (switch, mut guests) = harness::start(ports, Options::default(), dir.path())?;
    let mut frame = vec![0u8; size];
    frame[..6].copy_from_slice(&CLIENT.0);
    frame[6..12].copy_from_slice(&ROUTER.0);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let (router, rest) = guests.split_at_mut(1);
    let (router, client) = (&mut router[0], &mut rest[0]);
    client.post_rx()?;
    let (mut sent, mut received) = (0u64, 0u64);
    let start = Instant::now();
    let mut deadline_hit = false;
    loop {
        if !deadline_hit {
            let mut queued = false;
            while sent - received < WINDOW && router.queue_tx(&frame)? {
                sent += 1;
                queued = true;
            }
            if queued {
                router.kick_tx()?;
            }
        }
        let got = client.poll_rx(|f| {
            black_box(f);
        })? as u64;
        if got > 0 {
            received += got;
            client.post_rx()?;
        }
        router.reclaim_tx()?;
        if !deadline_hit && start.elapsed() >= duration {
            deadline_hit = true;
        }
        if deadline_hit && received >= sent {
            break;
        }
        if got == 0 && !client.wait_rx(Duration::from_millis(100)) && deadline_hit {
            // Frames were dropped (counted below): stop waiting for them.
            break;
        }
    }
    let elapsed = start.elapsed();
    let drops = switch
        .backends
        .iter()
        .map(|b| b.counters().snapshot().drops.iter().sum::<u64>())
        .sum();
    Ok(Run {
        frames: received,
        elapsed,
        drops,
    })
}

/// Copies `frames` frames of `size` bytes between two 256-slot arrays, as a ring would hold them.
fn memcpy(size: usize, frames: u64) -> Duration {
    let slots = 256usize;
    let src = vec![0x5au8; size * slots];
    let mut dst = vec![0u8; size * slots];
    let start = Instant::now();
    for i in 0..frames {
        let k = (i as usize % slots) * size;
        dst[k..k + size].copy_from_slice(black_box(&src[k..k + size]));
        black_box(&mut dst);
    }
    start.elapsed()
}

fn main() -> io::Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let duration = Duration::from_secs_f64(seconds);
    // The first network of a process pays for page faults and thread start-up: warm up.
    forward(64, Duration::from_millis(300))?;
    let mut ratio = 0.0;
    for size in [64usize, 1500] {
        let run = forward(size, duration)?;
        let secs = run.elapsed.as_secs_f64();
        let mpps = run.frames as f64 / secs / 1e6;
        let gbits = run.frames as f64 * size as f64 * 8.0 / secs / 1e9;
        let copy = memcpy(size, run.frames).as_secs_f64();
        let copy_mpps = run.frames as f64 / copy / 1e6;
        let copy_gbits = run.frames as f64 * size as f64 * 8.0 / copy / 1e9;
        ratio = gbits / copy_gbits;
        println!(
            "{size:>5} B: switch {mpps:8.3} Mpps {gbits:8.3} Gbit/s ({} frames in {secs:.2} s, {} dropped) | memcpy {copy_mpps:9.3} Mpps {copy_gbits:8.3} Gbit/s | ratio {ratio:.4}",
            run.frames, run.drops
        );
    }
    println!("ratio switch/memcpy: {ratio:.4}");
    Ok(())
}
