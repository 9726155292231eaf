//! An in-process network for tests and the benchmark: every port's real vhost-user backend on a
//! real socket, driven by the vhost crate's frontend, as QEMU drives it, with guest memory in a
//! memfd and split virtqueues that this module fills in as a guest driver would.
//!
//! Each guest has an RX and a TX queue of `QUEUE_SIZE` one-descriptor buffers of `BUF_SIZE`
//! bytes (header included). Hostile descriptors can be queued with `queue_tx_raw`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, Listener, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vhost_user_backend::VhostUserDaemon;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemory, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::backend::{PortBackend, DOORBELL_EVENT};
use crate::counters::SharedCounters;
use crate::policy::{max_frame_len, PortSpec, Topology};
use crate::ring::{self, Doorbell, Geometry};

pub const QUEUE_SIZE: u16 = 256;
pub const BUF_SIZE: u32 = 4096;
/// Slots per ring in the harness (and the default of the switch).
pub const RING_SLOTS: u32 = 256;

const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
const QUEUE_AREA: u64 = 0x4000;
const RX_QUEUE_BASE: u64 = 0;
const TX_QUEUE_BASE: u64 = QUEUE_AREA;
const BUFFERS_BASE: u64 = 2 * QUEUE_AREA;
const MEM_SIZE: u64 = BUFFERS_BASE + 2 * QUEUE_SIZE as u64 * BUF_SIZE as u64;

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Options of the in-process network.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mtu: usize,
    /// Whether guests acknowledge `VIRTIO_NET_F_MRG_RXBUF`.
    pub mergeable: bool,
    /// Bytes each RX buffer offers (at most `BUF_SIZE`): small buffers make frames span
    /// several (with mergeable buffers) or not fit (without).
    pub rx_buffer: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mtu: crate::policy::DEFAULT_MTU,
            mergeable: true,
            rx_buffer: BUF_SIZE,
        }
    }
}

/// The switch side: every port's backend and daemon.
pub struct Switch {
    pub topology: Arc<Topology>,
    pub backends: Vec<Arc<PortBackend>>,
    _daemons: Vec<VhostUserDaemon<Arc<PortBackend>>>,
}

/// Starts one backend per port, rings between permitted peers, and a guest per port.
pub fn start(
    ports: Vec<PortSpec>,
    options: Options,
    dir: &Path,
) -> io::Result<(Switch, Vec<Guest>)> {
    let topology = Arc::new(Topology::new(ports, options.mtu).map_err(other)?);
    let n = topology.ports().len();
    let geometry = Geometry::new(RING_SLOTS, max_frame_len(options.mtu)).map_err(other)?;
    let mut backends = Vec::with_capacity(n);
    let mut doorbells = Vec::with_capacity(n);
    for i in 0..n {
        let counters = Arc::new(SharedCounters::create("counters").map_err(other)?);
        let bell = Doorbell::new().map_err(other)?;
        doorbells.push(bell.try_clone().map_err(other)?);
        backends.push(Arc::new(PortBackend::new(
            topology.clone(),
            i,
            counters,
            bell,
        )));
    }
    for i in 0..n {
        for &j in topology.peers(i).iter().filter(|&&j| j > i) {
            let (i_to_j, j_from_i) = ring::pair("ring", geometry, &doorbells[j]).map_err(other)?;
            let (j_to_i, i_from_j) = ring::pair("ring", geometry, &doorbells[i]).map_err(other)?;
            backends[i]
                .connect_peer(j, i_to_j, i_from_j)
                .map_err(other)?;
            backends[j]
                .connect_peer(i, j_to_i, j_from_i)
                .map_err(other)?;
        }
    }
    let mut daemons = Vec::with_capacity(n);
    let mut guests = Vec::with_capacity(n);
    for (i, backend) in backends.iter().enumerate() {
        let path = dir.join(format!("port-{i}.sock"));
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::<()>::new());
        let mut daemon =
            VhostUserDaemon::new(format!("port{i}"), backend.clone(), mem).map_err(other)?;
        for handler in daemon.get_epoll_handlers() {
            handler
                .register_listener(backend.doorbell_fd(), EventSet::IN, DOORBELL_EVENT as u64)
                .map_err(other)?;
        }
        let mut listener = Listener::new(&path, true).map_err(other)?;
        let frontend = Frontend::connect(&path, 2).map_err(other)?;
        daemon.start(&mut listener).map_err(other)?;
        let mut guest = Guest::new(frontend, options.mergeable)?;
        guest.rx_len = options.rx_buffer.clamp(1, BUF_SIZE);
        guests.push(guest);
        daemons.push(daemon);
    }
    Ok((
        Switch {
            topology,
            backends,
            _daemons: daemons,
        },
        guests,
    ))
}

/// The guest side of one split virtqueue.
struct DriverQueue {
    index: usize,
    desc: GuestAddress,
    avail: GuestAddress,
    used: GuestAddress,
    buffers: GuestAddress,
    free: Vec<u16>,
    next_avail: u16,
    last_used: u16,
    kick: EventFd,
    call: EventFd,
}

impl DriverQueue {
    fn new(index: usize, base: u64, buffers: u64) -> io::Result<DriverQueue> {
        Ok(DriverQueue {
            index,
            desc: GuestAddress(base),
            avail: GuestAddress(base + 0x1000),
            used: GuestAddress(base + 0x2000),
            buffers: GuestAddress(buffers),
            free: (0..QUEUE_SIZE).rev().collect(),
            next_avail: 0,
            last_used: 0,
            kick: EventFd::new(EFD_NONBLOCK)?,
            call: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    fn buffer(&self, id: u16) -> GuestAddress {
        GuestAddress(self.buffers.0 + id as u64 * BUF_SIZE as u64)
    }

    fn write_desc(
        &self,
        mem: &GuestMemoryMmap,
        id: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> io::Result<()> {
        let d = GuestAddress(self.desc.0 + 16 * id as u64);
        mem.write_obj(addr, d).map_err(other)?;
        mem.write_obj(len, GuestAddress(d.0 + 8)).map_err(other)?;
        mem.write_obj(flags, GuestAddress(d.0 + 12))
            .map_err(other)?;
        mem.write_obj(next, GuestAddress(d.0 + 14)).map_err(other)
    }

    fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) -> io::Result<()> {
        let slot = GuestAddress(self.avail.0 + 4 + 2 * (self.next_avail % QUEUE_SIZE) as u64);
        mem.write_obj(head, slot).map_err(other)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        mem.store(
            self.next_avail,
            GuestAddress(self.avail.0 + 2),
            Ordering::Release,
        )
        .map_err(other)
    }

    fn pop_used(&mut self, mem: &GuestMemoryMmap) -> io::Result<Option<(u16, u32)>> {
        let idx: u16 = mem
            .load(GuestAddress(self.used.0 + 2), Ordering::Acquire)
            .map_err(other)?;
        if idx == self.last_used {
            return Ok(None);
        }
        let e = GuestAddress(self.used.0 + 4 + 8 * (self.last_used % QUEUE_SIZE) as u64);
        let id: u32 = mem.read_obj(e).map_err(other)?;
        let len: u32 = mem.read_obj(GuestAddress(e.0 + 4)).map_err(other)?;
        self.last_used = self.last_used.wrapping_add(1);
        let id = u16::try_from(id).map_err(other)?;
        Ok(Some((id, len)))
    }
}

/// One guest: its memory, its frontend connection, its RX and TX queues.
pub struct Guest {
    _frontend: Frontend,
    mem: GuestMemoryMmap,
    rx: DriverQueue,
    tx: DriverQueue,
    hdr: usize,
    /// Split TX chains in flight: (head, tail).
    tx_tails: Vec<(u16, u16)>,
    /// Bytes each posted RX buffer offers.
    rx_len: u32,
    scratch: Vec<u8>,
}

impl Guest {
    /// Connects to a port's socket as a VMM would and sets the device up.
    pub fn connect(path: &Path, mergeable: bool) -> io::Result<Guest> {
        Guest::new(Frontend::connect(path, 2).map_err(other)?, mergeable)
    }

    fn new(mut frontend: Frontend, mergeable: bool) -> io::Result<Guest> {
        let memfd =
            nix::sys::memfd::memfd_create(c"guest", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)?;
        let file = File::from(memfd);
        file.set_len(MEM_SIZE)?;
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files(&[(
            GuestAddress(0),
            MEM_SIZE as usize,
            Some(FileOffset::new(file, 0)),
        )])
        .map_err(other)?;
        let region = mem
            .find_region(GuestAddress(0))
            .ok_or_else(|| other("no region"))?;
        let host = mem.get_host_address(GuestAddress(0)).map_err(other)? as u64;
        let region_info = VhostUserMemoryRegionInfo::from_guest_region(region).map_err(other)?;

        frontend.set_owner().map_err(other)?;
        let offered = frontend.get_features().map_err(other)?;
        let protocol = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        let mut wanted = 1 << VIRTIO_F_VERSION_1 | protocol;
        if mergeable {
            wanted |= 1 << VIRTIO_NET_F_MRG_RXBUF;
        }
        frontend.set_features(offered & wanted).map_err(other)?;
        // As QEMU does: protocol features (and SET_VRING_ENABLE) only if the backend offers
        // them; otherwise SET_FEATURES enables the rings.
        let with_protocol = offered & protocol != 0;
        if with_protocol {
            let proto = frontend.get_protocol_features().map_err(other)?;
            frontend
                .set_protocol_features(proto & VhostUserProtocolFeatures::REPLY_ACK)
                .map_err(other)?;
        }
        frontend.set_mem_table(&[region_info]).map_err(other)?;
        let rx = DriverQueue::new(0, RX_QUEUE_BASE, BUFFERS_BASE)?;
        let tx = DriverQueue::new(
            1,
            TX_QUEUE_BASE,
            BUFFERS_BASE + QUEUE_SIZE as u64 * BUF_SIZE as u64,
        )?;
        for q in [&rx, &tx] {
            frontend.set_vring_num(q.index, QUEUE_SIZE).map_err(other)?;
            frontend
                .set_vring_addr(
                    q.index,
                    &VringConfigData {
                        queue_max_size: QUEUE_SIZE,
                        queue_size: QUEUE_SIZE,
                        flags: 0,
                        desc_table_addr: host + q.desc.0,
                        used_ring_addr: host + q.used.0,
                        avail_ring_addr: host + q.avail.0,
                        log_addr: None,
                    },
                )
                .map_err(other)?;
            frontend.set_vring_base(q.index, 0).map_err(other)?;
            frontend.set_vring_call(q.index, &q.call).map_err(other)?;
            frontend.set_vring_kick(q.index, &q.kick).map_err(other)?;
            if with_protocol {
                frontend.set_vring_enable(q.index, true).map_err(other)?;
            }
        }
        Ok(Guest {
            _frontend: frontend,
            mem,
            rx,
            tx,
            hdr: 12,
            tx_tails: Vec::new(),
            rx_len: BUF_SIZE,
            scratch: Vec::with_capacity(BUF_SIZE as usize),
        })
    }

    /// Queues a frame (behind a zero header) in one descriptor; false if no descriptor is free.
    pub fn queue_tx(&mut self, frame: &[u8]) -> io::Result<bool> {
        let Some(id) = self.tx.free.pop() else {
            return Ok(false);
        };
        let len = self.hdr + frame.len();
        if len > BUF_SIZE as usize {
            self.tx.free.push(id);
            return Err(other("frame larger than a harness buffer"));
        }
        let buf = self.tx.buffer(id);
        self.mem
            .write_slice(&[0u8; 12][..self.hdr], buf)
            .map_err(other)?;
        self.mem
            .write_slice(frame, GuestAddress(buf.0 + self.hdr as u64))
            .map_err(other)?;
        self.tx.write_desc(&self.mem, id, buf.0, len as u32, 0, 0)?;
        self.tx.publish(&self.mem, id)?;
        Ok(true)
    }

    /// Queues a frame as two descriptors: the header, then the frame (as some drivers do).
    pub fn queue_tx_split(&mut self, frame: &[u8]) -> io::Result<bool> {
        if self.tx.free.len() < 2 {
            return Ok(false);
        }
        let (Some(head), Some(tail)) = (self.tx.free.pop(), self.tx.free.pop()) else {
            return Ok(false);
        };
        let hbuf = self.tx.buffer(head);
        let fbuf = self.tx.buffer(tail);
        self.mem
            .write_slice(&[0u8; 12][..self.hdr], hbuf)
            .map_err(other)?;
        self.mem.write_slice(frame, fbuf).map_err(other)?;
        self.tx.write_desc(
            &self.mem,
            head,
            hbuf.0,
            self.hdr as u32,
            VIRTQ_DESC_F_NEXT,
            tail,
        )?;
        self.tx
            .write_desc(&self.mem, tail, fbuf.0, frame.len() as u32, 0, 0)?;
        self.tx_tails.push((head, tail));
        self.tx.publish(&self.mem, head)?;
        Ok(true)
    }

    /// Queues one descriptor exactly as given: any address, length and write flag.
    pub fn queue_tx_raw(&mut self, addr: u64, len: u32, write_only: bool) -> io::Result<bool> {
        let Some(id) = self.tx.free.pop() else {
            return Ok(false);
        };
        let flags = if write_only { VIRTQ_DESC_F_WRITE } else { 0 };
        self.tx.write_desc(&self.mem, id, addr, len, flags, 0)?;
        self.tx.publish(&self.mem, id)?;
        Ok(true)
    }

    pub fn kick_tx(&self) -> io::Result<()> {
        self.tx.kick.write(1)
    }

    /// Takes back the TX descriptors the switch has used; how many chains.
    pub fn reclaim_tx(&mut self) -> io::Result<usize> {
        let mut n = 0;
        while let Some((id, _)) = self.tx.pop_used(&self.mem)? {
            self.tx.free.push(id);
            // The used ring names heads only; a split chain's tail comes back with its head.
            if let Some(k) = self.tx_tails.iter().position(|&(h, _)| h == id) {
                let (_, tail) = self.tx_tails.swap_remove(k);
                self.tx.free.push(tail);
            }
            n += 1;
        }
        Ok(n)
    }

    /// Posts every free RX descriptor (one buffer of `rx_len` bytes each) and kicks.
    pub fn post_rx(&mut self) -> io::Result<()> {
        while let Some(id) = self.rx.free.pop() {
            let buf = self.rx.buffer(id);
            self.rx
                .write_desc(&self.mem, id, buf.0, self.rx_len, VIRTQ_DESC_F_WRITE, 0)?;
            self.rx.publish(&self.mem, id)?;
        }
        self.rx.kick.write(1)
    }

    /// Hands every received frame (header stripped) to `f`; how many there were. Used buffers
    /// go back on the free list (call `post_rx` to give them to the switch again).
    pub fn poll_rx(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut frames = 0;
        while let Some((id, len)) = self.rx.pop_used(&self.mem)? {
            self.rx.free.push(id);
            let buf = self.rx.buffer(id);
            let len = (len as usize).min(BUF_SIZE as usize);
            self.scratch.resize(len, 0);
            self.mem.read_slice(&mut self.scratch, buf).map_err(other)?;
            let mut count: u16 = 1;
            if self.scratch.len() >= 12 {
                count = u16::from_le_bytes([self.scratch[10], self.scratch[11]]).max(1);
            }
            for _ in 1..count {
                let Some((id, len)) = self.rx.pop_used(&self.mem)? else {
                    return Err(other("num_buffers names more buffers than were used"));
                };
                self.rx.free.push(id);
                let start = self.scratch.len();
                let len = (len as usize).min(BUF_SIZE as usize);
                self.scratch.resize(start + len, 0);
                self.mem
                    .read_slice(&mut self.scratch[start..], self.rx.buffer(id))
                    .map_err(other)?;
            }
            if self.scratch.len() >= self.hdr {
                f(&self.scratch[self.hdr..]);
                frames += 1;
            }
        }
        Ok(frames)
    }

    /// Waits until the switch signals RX (or `timeout` passes); whether it did.
    pub fn wait_rx(&self, timeout: Duration) -> bool {
        wait_readable(&self.rx.call, timeout)
    }

    /// Waits until the switch signals TX completions (or `timeout` passes).
    pub fn wait_tx(&self, timeout: Duration) -> bool {
        wait_readable(&self.tx.call, timeout)
    }

    /// Receives frames until `want` have arrived or `timeout` passes; the frames.
    pub fn recv_frames(&mut self, want: usize, timeout: Duration) -> io::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            self.poll_rx(|f| out.push(f.to_vec()))?;
            self.post_rx()?;
            let now = Instant::now();
            if out.len() >= want || now >= deadline {
                return Ok(out);
            }
            self.wait_rx((deadline - now).min(Duration::from_millis(20)));
        }
    }
}

fn wait_readable(fd: &EventFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r > 0 {
        let _ = fd.read();
        true
    } else {
        false
    }
}

/// A directory for the harness's sockets, removed on drop.
pub struct SocketDir(PathBuf);

impl SocketDir {
    pub fn new(tag: &str) -> io::Result<SocketDir> {
        let dir = std::env::temp_dir().join(format!(
            "bulkhead-switch-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let dir = PathBuf::from(
            dir.to_string_lossy()
                .replace(['(', ')'], "")
                .replace("ThreadId", "t"),
        );
        std::fs::create_dir_all(&dir)?;
        Ok(SocketDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
