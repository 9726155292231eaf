//! Entry points for the fuzz targets in net-switch/fuzz (and a quick in-tree run of them in
//! `cargo test`): arbitrary bytes as frames, and arbitrary bytes as a guest's virtqueues.
//! Neither may panic, loop forever or touch memory outside the guest's.

use std::sync::Arc;

use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use crate::backend::{PortBackend, DOORBELL_EVENT, RX_QUEUE, TX_QUEUE};
use crate::counters::SharedCounters;
use crate::policy::{max_frame_len, Mac, PortSpec, Role, Topology, DEFAULT_MTU};
use crate::ring::{self, Doorbell, Geometry};

fn topology() -> Option<Topology> {
    let port = |vm: &str, last: u8, role| PortSpec {
        vm: vm.into(),
        mac: Mac([2, 0, 0, 0, 0, last]),
        role,
    };
    Topology::new(
        vec![
            port("r", 1, Role::Router),
            port("a", 2, Role::Client),
            port("b", 3, Role::Client),
        ],
        DEFAULT_MTU,
    )
    .ok()
}

/// Arbitrary bytes as a frame from every port, then through a ring.
pub fn frames(data: &[u8]) {
    let Some(t) = topology() else { return };
    for from in 0..4 {
        let _ = t.decide(from, data);
    }
    let Ok(g) = Geometry::new(4, 256) else { return };
    let Ok(bell) = Doorbell::new() else { return };
    let Ok((mut p, mut c)) = ring::pair("fuzz", g, &bell) else {
        return;
    };
    let mut buf = [0u8; 256];
    // What went in, in order (at most the ring's four slots): what comes out must match.
    let mut queued: std::collections::VecDeque<&[u8]> = std::collections::VecDeque::new();
    for chunk in data.chunks(97) {
        if let Ok(true) = p.push(chunk) {
            queued.push_back(chunk);
        }
        if chunk.first().is_some_and(|b| b & 1 == 0) {
            if let Ok(Some(n)) = c.peek(&mut buf) {
                assert_eq!(Some(&buf[..n]), queued.pop_front());
                c.discard();
            }
        }
    }
}

const QUEUE: u16 = 16;
const MEM: usize = 0x10000;
const TX_BASE: u64 = 0;
const RX_BASE: u64 = 0x800;
const DATA: u64 = 0x1000;

fn vring(mem: &GuestMemoryAtomic<GuestMemoryMmap>, base: u64) -> Option<VringRwLock> {
    let v = VringRwLock::new(mem.clone(), QUEUE).ok()?;
    v.set_queue_size(QUEUE);
    v.set_queue_info(base, base + 0x100, base + 0x200).ok()?;
    v.set_queue_ready(true);
    v.set_enabled(true);
    Some(v)
}

/// Arbitrary bytes as guest state: the sender's TX descriptor table, available ring and data,
/// and the receiver's RX descriptors. Runs the sender's TX path and the receiver's RX path.
/// Returns how many frames were delivered into RX buffers.
pub fn descriptors(data: &[u8]) -> u64 {
    let Some(t) = topology() else { return 0 };
    let t = Arc::new(t);
    let Some(&first) = data.first() else { return 0 };
    let from = if first & 1 == 0 { 0 } else { 1 };
    let features = 1u64 << VIRTIO_F_VERSION_1
        | if first & 2 != 0 {
            1 << VIRTIO_NET_F_MRG_RXBUF
        } else {
            0
        };
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]) else {
        return 0;
    };
    // Guest memory: TX queue (desc, avail, used), RX queue, then data — all from the input.
    let mut image = vec![0u8; MEM];
    for (dst, src) in image.iter_mut().zip(data.iter().skip(1)) {
        *dst = *src;
    }
    // Make the frames in the data area more often well-formed: a valid source for `from`.
    if data.len() > 2 && data[1] & 1 == 0 {
        let mac = t.ports().get(from).map(|p| p.mac.0).unwrap_or_default();
        if let Some(dst) = image.get_mut(DATA as usize + 12 + 6..DATA as usize + 12 + 12) {
            dst.copy_from_slice(&mac);
        }
    }
    if mem.write_slice(&image, GuestAddress(0)).is_err() {
        return 0;
    }
    let atomic = GuestMemoryAtomic::new(mem);
    let Ok(g) = Geometry::new(8, max_frame_len(DEFAULT_MTU)) else {
        return 0;
    };
    let mut backends = Vec::new();
    let mut bells = Vec::new();
    for i in 0..t.ports().len() {
        let (Ok(counters), Ok(bell)) = (SharedCounters::create("fuzz"), Doorbell::new()) else {
            return 0;
        };
        let Ok(copy) = bell.try_clone() else { return 0 };
        bells.push(copy);
        let b = PortBackend::new(t.clone(), i, Arc::new(counters), bell);
        b.acked_features(features);
        let _ = b.update_memory(atomic.clone());
        backends.push(b);
    }
    for i in 0..backends.len() {
        for &j in t.peers(i).iter().filter(|&&j| j > i) {
            let (Ok((ij, ji_in)), Ok((ji, ij_in))) = (
                ring::pair("fuzz", g, &bells[j]),
                ring::pair("fuzz", g, &bells[i]),
            ) else {
                return 0;
            };
            let _ = backends[i].connect_peer(j, ij, ij_in);
            let _ = backends[j].connect_peer(i, ji, ji_in);
        }
    }
    let (Some(rx), Some(tx)) = (vring(&atomic, RX_BASE), vring(&atomic, TX_BASE)) else {
        return 0;
    };
    let vrings = [rx, tx];
    let Some(sender) = backends.get(from) else {
        return 0;
    };
    let _ = sender.handle_event(TX_QUEUE, EventSet::IN, &vrings, 0);
    // Every peer of the sender delivers what it got into the same hostile RX queue.
    for &peer in t.peers(from) {
        if let Some(b) = backends.get(peer) {
            let _ = b.handle_event(DOORBELL_EVENT, EventSet::IN, &vrings, 0);
            let _ = b.handle_event(RX_QUEUE, EventSet::IN, &vrings, 0);
        }
    }
    backends
        .iter()
        .map(|b| b.counters().snapshot().rx_frames)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_frames_do_not_panic() {
        let mut s = 0x9e3779b97f4a7c15u64;
        for _ in 0..2000 {
            let len = (xorshift(&mut s) % 2000) as usize;
            let data: Vec<u8> = (0..len).map(|_| xorshift(&mut s) as u8).collect();
            frames(&data);
        }
    }

    /// A well-formed TX queue: one descriptor with a header and a frame from the router to a,
    /// and one RX buffer: the frame must arrive.
    fn valid_image(mergeable: bool) -> Vec<u8> {
        let mut img = vec![0u8; 0x2000];
        let mut put = |at: usize, bytes: &[u8]| img[at..at + bytes.len()].copy_from_slice(bytes);
        // TX desc 0: DATA, 12 + 60 bytes, readable.
        put(0, &DATA.to_le_bytes());
        put(8, &72u32.to_le_bytes());
        // TX avail: idx 1, ring[0] = 0.
        put(0x100 + 2, &1u16.to_le_bytes());
        // RX desc 0: 0x1800, 2048 bytes, write-only.
        put(RX_BASE as usize, &0x1800u64.to_le_bytes());
        put(RX_BASE as usize + 8, &2048u32.to_le_bytes());
        put(RX_BASE as usize + 12, &2u16.to_le_bytes());
        put(RX_BASE as usize + 0x100 + 2, &1u16.to_le_bytes());
        // The frame: to a (02::02) from the router (02::01).
        let d = DATA as usize + 12;
        put(d, &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]);
        let mut data = vec![if mergeable { 2 } else { 0 }];
        data.extend_from_slice(&img);
        // The first input byte selects port and features; shift the image by one.
        data
    }

    #[test]
    fn impossible_available_index_does_not_spin() {
        let mut data = valid_image(false);
        // TX avail idx 1000 on a 16-entry queue (byte 0 of `data` is the selector).
        data[1 + 0x100 + 2..1 + 0x100 + 4].copy_from_slice(&1000u16.to_le_bytes());
        assert_eq!(descriptors(&data), 0);
    }

    #[test]
    fn valid_queue_forwards_and_random_queues_do_not_panic() {
        for mergeable in [false, true] {
            assert_eq!(descriptors(&valid_image(mergeable)), 1);
        }
        let mut s = 0x2545f4914f6cdd1du64;
        for i in 0..3000 {
            let mut data = valid_image(i % 2 == 0);
            // Flip a few random bytes of the valid image, or replace it entirely.
            if i % 5 == 0 {
                let len = (xorshift(&mut s) % 0x2000) as usize;
                data = (0..len).map(|_| xorshift(&mut s) as u8).collect();
            } else {
                for _ in 0..(1 + xorshift(&mut s) % 8) {
                    let at = (xorshift(&mut s) % 0x1100) as usize;
                    data[at] = xorshift(&mut s) as u8;
                }
            }
            descriptors(&data);
        }
    }
}
