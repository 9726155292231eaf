//! One port's vhost-user net device: the guest's TX queue feeds the policy and the peers' rings;
//! the peers' rings feed the guest's RX queue.
//!
//! Queue 0 is RX (into the guest), queue 1 is TX (from the guest). No offloads are offered, so
//! every frame is complete and at most the MTU; the virtio-net header of a TX frame is skipped
//! (its fields mean nothing without offloads), that of an RX frame is all zero but for
//! `num_buffers`. With `VIRTIO_NET_F_MRG_RXBUF` a frame may span several RX chains; without it
//! it must fit one.
//!
//! Everything the guest controls is checked: descriptor direction, addresses (every copy goes
//! through `GuestMemory`, which refuses ranges outside the guest's memory), lengths (a TX chain
//! longer than the header and the largest frame is dropped as oversize, without reading the
//! rest). A TX frame is copied out of guest memory once, into this process, before the policy
//! looks at it: the guest cannot change the source MAC after the check. Guest mistakes are
//! counted, never returned as errors (an error stops the worker thread).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::counters::{PortCounters, SharedCounters};
use crate::policy::{max_frame_len, DropReason, Forward, Topology};
use crate::ring::{Consumer, Doorbell, Producer};

/// Queue indices.
pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
const NUM_QUEUES: usize = 2;
/// The largest queue the guest may configure.
pub const MAX_QUEUE_SIZE: usize = 1024;
/// Epoll event ids beyond the queues (the library reserves `NUM_QUEUES` for its exit event).
pub const DOORBELL_EVENT: u16 = 3;
/// The first id free for the owner of the backend (the child's control socket, its timer).
pub const FIRST_OWNER_EVENT: u16 = 4;
/// Segments one RX frame may be scattered over (bounds the scratch list).
const MAX_RX_SEGMENTS: usize = 256;

/// The virtio-net header length for the negotiated features.
fn header_len(features: u64) -> usize {
    if features & (1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_NET_F_MRG_RXBUF) != 0 {
        12
    } else {
        10
    }
}

type Memory = GuestMemoryAtomic<GuestMemoryMmap<()>>;
type OwnerHook = Box<dyn FnMut(u16, &PortBackend) + Send>;

/// The rings to and from one peer.
struct Link {
    out: Option<Producer>,
    inp: Option<Consumer>,
}

/// State the worker thread uses; behind one mutex (only that thread takes it in steady state).
struct Work {
    links: Vec<Link>,
    /// Header plus the largest frame: TX frames are copied here, RX frames staged here.
    buf: Vec<u8>,
    segments: Vec<(GuestAddress, usize)>,
    chains: Vec<(u16, usize)>,
    /// The peer whose ring RX delivery starts with next time (fairness among clients).
    next_peer: usize,
}

/// The vhost-user backend of one port.
pub struct PortBackend {
    port: usize,
    topology: Arc<Topology>,
    counters: Arc<SharedCounters>,
    doorbell: Doorbell,
    work: Mutex<Work>,
    memory: RwLock<Option<Memory>>,
    acked_features: AtomicU64,
    hook: Mutex<Option<OwnerHook>>,
}

/// What happened to the frame at the head of a ring.
enum Delivery {
    Done,
    Dropped,
    /// The guest has no RX buffers: leave the frame, wait for the next RX kick.
    NoBuffers,
}

impl PortBackend {
    /// The backend of port `port` of `topology`; `doorbell` is the eventfd its peers ring.
    pub fn new(
        topology: Arc<Topology>,
        port: usize,
        counters: Arc<SharedCounters>,
        doorbell: Doorbell,
    ) -> PortBackend {
        let n = topology.ports().len();
        let buf_len = 12 + max_frame_len(topology.mtu());
        PortBackend {
            port,
            counters,
            doorbell,
            work: Mutex::new(Work {
                links: (0..n)
                    .map(|_| Link {
                        out: None,
                        inp: None,
                    })
                    .collect(),
                buf: vec![0; buf_len],
                segments: Vec::with_capacity(16),
                chains: Vec::with_capacity(16),
                next_peer: 0,
            }),
            topology,
            memory: RwLock::new(None),
            acked_features: AtomicU64::new(0),
            hook: Mutex::new(None),
        }
    }

    pub fn port(&self) -> usize {
        self.port
    }

    pub fn counters(&self) -> &PortCounters {
        self.counters.get()
    }

    /// The fd to register with the worker's epoll as `DOORBELL_EVENT`.
    pub fn doorbell_fd(&self) -> std::os::fd::RawFd {
        self.doorbell.raw_fd()
    }

    /// Events with ids from `FIRST_OWNER_EVENT` go to `hook` (the child's control channel and
    /// heartbeat timer), on the worker thread.
    pub fn set_owner_hook(&self, hook: OwnerHook) {
        *lock(&self.hook) = Some(hook);
    }

    /// Installs (or replaces) the rings to and from `peer`. Refused for a port this one may not
    /// talk to, so even a confused main process cannot connect two clients.
    pub fn connect_peer(
        &self,
        peer: usize,
        out: Producer,
        inp: Consumer,
    ) -> Result<(), &'static str> {
        if !self.topology.peers(self.port).contains(&peer) {
            return Err("that port is not a permitted peer");
        }
        let mut work = lock(&self.work);
        let link = work.links.get_mut(peer).ok_or("no such port")?;
        link.out = Some(out);
        link.inp = Some(inp);
        drop(work);
        // Frames may already be waiting.
        self.doorbell.ring();
        Ok(())
    }

    /// Forgets the rings of a peer that went away; its frames are dropped as `PeerDown` until
    /// it is connected again.
    pub fn disconnect_peer(&self, peer: usize) {
        if let Some(link) = lock(&self.work).links.get_mut(peer) {
            link.out = None;
            link.inp = None;
        }
    }

    fn memory(&self) -> Option<Memory> {
        self.memory.read().ok().and_then(|m| m.clone())
    }

    fn features(&self) -> u64 {
        self.acked_features.load(Ordering::Relaxed)
    }

    /// Takes every frame the guest queued for sending.
    fn process_tx(&self, vring: &VringRwLock) {
        let Some(memory) = self.memory() else { return };
        let hdr = header_len(self.features());
        let limit = hdr + max_frame_len(self.topology.mtu());
        let mut work = lock(&self.work);
        let work = &mut *work;
        loop {
            let _ = vring.disable_notification();
            let mut progressed = false;
            loop {
                let chain = vring
                    .get_mut()
                    .get_queue_mut()
                    .pop_descriptor_chain(memory.memory());
                let Some(chain) = chain else { break };
                progressed = true;
                let head = chain.head_index();
                let mem = memory.memory();
                let read = read_chain(chain, &*mem, &mut work.buf, limit);
                let _ = vring.add_used(head, 0);
                let counters = self.counters.get();
                let len = match read {
                    Ok(len) if len < hdr => {
                        counters.dropped(DropReason::Malformed);
                        continue;
                    }
                    Ok(len) => len,
                    Err(why) => {
                        counters.dropped(why);
                        continue;
                    }
                };
                let frame = work.buf.get(hdr..len).unwrap_or(&[]);
                counters.sent(frame.len());
                match self.topology.decide(self.port, frame) {
                    Err(why) => counters.dropped(why),
                    Ok(Forward::One(peer)) => push(&mut work.links, peer, frame, counters),
                    Ok(Forward::Flood(peers)) => {
                        for &peer in peers {
                            push(&mut work.links, peer, frame, counters);
                        }
                    }
                }
            }
            // More may have arrived while notifications were off. A guest whose available
            // index is impossible also reads as "more" while yielding nothing: without
            // progress, stop rather than spin (the port then waits for the next kick).
            match vring.enable_notification() {
                Ok(true) if progressed => continue,
                _ => break,
            }
        }
        for link in &mut work.links {
            if let Some(p) = &mut link.out {
                p.notify();
            }
        }
        if vring.needs_notification().unwrap_or(true) {
            let _ = vring.signal_used_queue();
        }
    }

    /// Moves frames waiting in the peers' rings into the guest's RX buffers.
    fn process_rx(&self, vring: &VringRwLock) {
        let Some(memory) = self.memory() else { return };
        if !vring.get_ref().is_enabled() {
            return;
        }
        let features = self.features();
        let hdr = header_len(features);
        let mergeable = features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0;
        let mut work = lock(&self.work);
        let work = &mut *work;
        let n = work.links.len();
        let mut delivered = false;
        'peers: for k in 0..n {
            let peer = (work.next_peer + k) % n;
            while let Some(consumer) = work.links.get_mut(peer).and_then(|l| l.inp.as_mut()) {
                let Some(dst) = work.buf.get_mut(hdr..) else {
                    break 'peers;
                };
                let len = match consumer.peek(dst) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(_) => {
                        // The peer broke its ring; what it held is lost.
                        consumer.resync();
                        self.counters.get().dropped(DropReason::Malformed);
                        break;
                    }
                };
                let mem = memory.memory();
                let outcome = deliver(
                    vring,
                    &*mem,
                    &memory,
                    work.buf.get_mut(..hdr + len).unwrap_or(&mut []),
                    hdr,
                    mergeable,
                    &mut work.segments,
                    &mut work.chains,
                );
                match outcome {
                    Delivery::NoBuffers => {
                        work.next_peer = peer;
                        break 'peers;
                    }
                    Delivery::Done => {
                        delivered = true;
                        self.counters.get().delivered(len);
                    }
                    Delivery::Dropped => {
                        delivered = true;
                        self.counters.get().dropped(DropReason::BadDescriptor);
                    }
                }
                if let Some(c) = work.links.get_mut(peer).and_then(|l| l.inp.as_mut()) {
                    c.discard();
                }
            }
        }
        if delivered {
            work.next_peer = (work.next_peer + 1) % n.max(1);
            if vring.needs_notification().unwrap_or(true) {
                let _ = vring.signal_used_queue();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Copies a TX chain (header and frame) into `buf`; its length.
fn read_chain<M: vm_memory::GuestMemory>(
    chain: virtio_queue::DescriptorChain<impl std::ops::Deref<Target = M>>,
    mem: &M,
    buf: &mut [u8],
    limit: usize,
) -> Result<usize, DropReason> {
    let mut n = 0usize;
    for desc in chain {
        if desc.is_write_only() {
            return Err(DropReason::BadDescriptor);
        }
        let len = desc.len() as usize;
        let end = n.checked_add(len).ok_or(DropReason::Oversize)?;
        if end > limit {
            return Err(DropReason::Oversize);
        }
        let dst = buf.get_mut(n..end).ok_or(DropReason::Oversize)?;
        mem.read_slice(dst, desc.addr())
            .map_err(|_| DropReason::BadDescriptor)?;
        n = end;
    }
    Ok(n)
}

fn push(links: &mut [Link], peer: usize, frame: &[u8], counters: &PortCounters) {
    match links.get_mut(peer).and_then(|l| l.out.as_mut()) {
        None => counters.dropped(DropReason::PeerDown),
        Some(p) => match p.push(frame) {
            Ok(true) => {}
            Ok(false) => counters.dropped(DropReason::PeerBusy),
            Err(_) => counters.dropped(DropReason::PeerDown),
        },
    }
}

/// Writes `packet` (a zeroed header of `hdr` bytes and the frame) into RX chains.
#[allow(clippy::too_many_arguments)]
fn deliver<M: vm_memory::GuestMemory>(
    vring: &VringRwLock,
    mem: &M,
    memory: &Memory,
    packet: &mut [u8],
    hdr: usize,
    mergeable: bool,
    segments: &mut Vec<(GuestAddress, usize)>,
    chains: &mut Vec<(u16, usize)>,
) -> Delivery {
    let total = packet.len();
    segments.clear();
    chains.clear();
    let mut capacity = 0usize;
    let mut bad = false;
    {
        let mut state = vring.get_mut();
        let queue = state.get_queue_mut();
        let saved = queue.next_avail();
        while capacity < total {
            let Some(chain) = queue.pop_descriptor_chain(memory.memory()) else {
                // Nothing was marked used yet: put the chains back for the next attempt.
                queue.set_next_avail(saved);
                return Delivery::NoBuffers;
            };
            let head = chain.head_index();
            let mut size = 0usize;
            for desc in chain {
                if !desc.is_write_only() || segments.len() >= MAX_RX_SEGMENTS {
                    bad = true;
                    break;
                }
                segments.push((desc.addr(), desc.len() as usize));
                size = size.saturating_add(desc.len() as usize);
            }
            chains.push((head, size));
            capacity = capacity.saturating_add(size);
            if bad || !mergeable {
                break;
            }
        }
    }
    if capacity < total {
        bad = true;
    }
    if !bad && hdr >= 12 {
        // num_buffers: how many chains this frame uses.
        let n = (chains.len() as u16).to_le_bytes();
        if let Some(dst) = packet.get_mut(10..12) {
            dst.copy_from_slice(&n);
        }
    }
    let mut offset = 0usize;
    if !bad {
        for &(addr, len) in segments.iter() {
            if offset >= total {
                break;
            }
            let take = len.min(total - offset);
            let src = packet.get(offset..offset + take).unwrap_or(&[]);
            if mem.write_slice(src, addr).is_err() {
                bad = true;
                break;
            }
            offset += take;
        }
    }
    let mut remaining = if bad { 0 } else { total };
    for &(head, size) in chains.iter() {
        let used = remaining.min(size);
        remaining -= used;
        let _ = vring.add_used(head, used as u32);
    }
    if bad {
        Delivery::Dropped
    } else {
        Delivery::Done
    }
}

impl VhostUserBackend for PortBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_NET_F_MAC
            | 1 << VIRTIO_NET_F_MRG_RXBUF
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        self.acked_features.store(features, Ordering::Relaxed);
    }

    /// None beyond the base protocol: one queue pair, no replies asked for.
    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::empty()
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The vrings track it; notification decisions go through them.
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        // struct virtio_net_config: mac[6], status, max_virtqueue_pairs, mtu (little endian).
        let mut config = [0u8; 12];
        if let Some(p) = self.topology.ports().get(self.port) {
            config[..6].copy_from_slice(&p.mac.0);
        }
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        let mtu = u16::try_from(self.topology.mtu()).unwrap_or(u16::MAX);
        config[10..12].copy_from_slice(&mtu.to_le_bytes());
        let start = (offset as usize).min(config.len());
        let end = start.saturating_add(size as usize).min(config.len());
        config[start..end].to_vec()
    }

    fn update_memory(&self, mem: Memory) -> std::io::Result<()> {
        if let Ok(mut m) = self.memory.write() {
            *m = Some(mem);
        }
        Ok(())
    }

    fn reset_device(&self) {
        self.acked_features.store(0, Ordering::Relaxed);
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> std::io::Result<()> {
        match device_event {
            RX_QUEUE => {
                if let Some(rx) = vrings.get(RX_QUEUE as usize) {
                    self.process_rx(rx);
                }
            }
            TX_QUEUE => {
                if let Some(tx) = vrings.get(TX_QUEUE as usize) {
                    self.process_tx(tx);
                }
            }
            DOORBELL_EVENT => {
                self.doorbell.take();
                if let Some(rx) = vrings.get(RX_QUEUE as usize) {
                    self.process_rx(rx);
                }
            }
            other => {
                if let Some(hook) = lock(&self.hook).as_mut() {
                    hook(other, self);
                }
            }
        }
        Ok(())
    }
}
