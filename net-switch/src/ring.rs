//! A lock-free single-producer single-consumer ring of frames in shared memory.
//!
//! One ring carries frames in one direction between two port children. Its memory is a memfd
//! (created by the main process, zero-filled, so an all-zero ring is an empty one) mapped by
//! the producer and the consumer; an eventfd wakes the consumer after the producer has pushed.
//!
//! Layout: the producer's index `head` (cache line 0), the consumer's index `tail` (cache line
//! 1), then `slots` slots of `SLOT_HEADER + slot_data` bytes rounded up to a cache line, each a
//! little-endian `u32` length and the frame. Indices run freely and wrap at `u32::MAX`; the slot
//! is `index & (slots - 1)`. The geometry never lives in the shared memory: both sides get it
//! from the main process, so a peer that scribbles over the ring can make frames wrong, but
//! never make this side read or write outside the mapping. Every length and index read from the
//! ring is checked.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use std::fs::File;
use std::io::{Read, Write};

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::shm::{SharedRegion, ShmError};

const CACHE_LINE: usize = 64;
const SLOT_HEADER: usize = 4;
const HEAD_OFFSET: usize = 0;
const TAIL_OFFSET: usize = CACHE_LINE;
const SLOTS_OFFSET: usize = 2 * CACHE_LINE;
/// The largest ring: bounds the memory one ring may take.
pub const MAX_SLOTS: u32 = 4096;
/// The largest frame a slot may hold.
pub const MAX_SLOT_DATA: usize = 16 * 1024;

/// A ring's shape, decided by the main process and given to both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// A power of two, at most `MAX_SLOTS`.
    pub slots: u32,
    /// Bytes of frame per slot, at most `MAX_SLOT_DATA`.
    pub slot_data: usize,
}

impl Geometry {
    pub fn new(slots: u32, slot_data: usize) -> Result<Geometry, RingError> {
        if !slots.is_power_of_two() || slots > MAX_SLOTS || slot_data == 0 {
            return Err(RingError::BadGeometry(slots, slot_data));
        }
        if slot_data > MAX_SLOT_DATA {
            return Err(RingError::BadGeometry(slots, slot_data));
        }
        Ok(Geometry { slots, slot_data })
    }

    fn stride(&self) -> usize {
        (SLOT_HEADER + self.slot_data).div_ceil(CACHE_LINE) * CACHE_LINE
    }

    /// Bytes of shared memory the ring needs.
    pub fn bytes(&self) -> usize {
        SLOTS_OFFSET + self.stride() * self.slots as usize
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("ring geometry {0} slots of {1} bytes is not allowed")]
    BadGeometry(u32, usize),
    #[error("shared memory for the ring")]
    Shm(#[source] ShmError),
    #[error("duplicating or creating a descriptor")]
    Io(#[source] std::io::Error),
    #[error("the peer corrupted the ring (indices {head}/{tail})")]
    Corrupt { head: u32, tail: u32 },
    #[error("a frame of {0} bytes is larger than a slot")]
    TooLarge(usize),
}

/// Creates a ring's zero-filled memory (the main process does this; it never maps it).
pub fn create(name: &str, geometry: Geometry) -> Result<OwnedFd, RingError> {
    let region = SharedRegion::create(name, geometry.bytes()).map_err(RingError::Shm)?;
    region.dup_fd().map_err(RingError::Io)
}

/// A port's wake-up: a non-blocking eventfd that every producer feeding the port rings after
/// pushing. One per port rather than per ring, so that replacing a ring (a peer restarted)
/// never changes what the port's worker waits on.
#[derive(Debug)]
pub struct Doorbell(File);

impl Doorbell {
    pub fn new() -> Result<Doorbell, RingError> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|e| RingError::Io(e.into()))?;
        Ok(Doorbell(File::from(OwnedFd::from(fd))))
    }

    /// A doorbell received from another process. It must be a non-blocking eventfd; anything
    /// else only makes `ring` and `take` fail quietly.
    pub fn from_fd(fd: OwnedFd) -> Doorbell {
        Doorbell(File::from(fd))
    }

    pub fn try_clone(&self) -> Result<Doorbell, RingError> {
        Ok(Doorbell(self.0.try_clone().map_err(RingError::Io)?))
    }

    pub fn dup_fd(&self) -> Result<OwnedFd, RingError> {
        Ok(OwnedFd::from(self.0.try_clone().map_err(RingError::Io)?))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn ring(&self) {
        // A full counter (EAGAIN) only means a wake-up is already pending.
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// Clears the pending wake-ups; how many there were, `None` when there was none.
    pub fn take(&self) -> Option<u64> {
        let mut b = [0u8; 8];
        match (&self.0).read(&mut b) {
            Ok(8) => Some(u64::from_ne_bytes(b)),
            _ => None,
        }
    }
}

struct Shared {
    region: SharedRegion,
    geometry: Geometry,
}

impl Shared {
    fn open(memory: OwnedFd, geometry: Geometry) -> Result<Shared, RingError> {
        let region = SharedRegion::from_fd(memory, geometry.bytes()).map_err(RingError::Shm)?;
        Ok(Shared { region, geometry })
    }

    fn index(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset + 4 <= SLOTS_OFFSET);
        // SAFETY: `offset` is HEAD_OFFSET or TAIL_OFFSET, 4-aligned and inside the mapping
        // (which is page aligned and at least SLOTS_OFFSET long); the memory is only ever
        // accessed atomically at these offsets, by both processes.
        unsafe { &*(self.region.as_ptr().add(offset) as *const AtomicU32) }
    }

    /// The start of slot `i` (any index; it is masked).
    fn slot(&self, i: u32) -> *mut u8 {
        let slot = (i & (self.geometry.slots - 1)) as usize;
        // SAFETY: `slot < slots`, so the offset is within `geometry.bytes()`, the mapped length.
        unsafe {
            self.region
                .as_ptr()
                .add(SLOTS_OFFSET + slot * self.geometry.stride())
        }
    }
}

/// The sending end of a ring.
pub struct Producer {
    shared: Shared,
    doorbell: Doorbell,
    head: u32,
    pushed: bool,
}

impl Producer {
    /// The producing end of the ring in `memory`; `doorbell` is the consuming port's.
    pub fn open(
        memory: OwnedFd,
        doorbell: Doorbell,
        geometry: Geometry,
    ) -> Result<Producer, RingError> {
        let shared = Shared::open(memory, geometry)?;
        let head = shared.index(HEAD_OFFSET).load(Ordering::Relaxed);
        Ok(Producer {
            shared,
            doorbell,
            head,
            pushed: false,
        })
    }

    /// Copies a frame into the next slot. `Ok(false)` when the ring is full.
    pub fn push(&mut self, frame: &[u8]) -> Result<bool, RingError> {
        if frame.len() > self.shared.geometry.slot_data {
            return Err(RingError::TooLarge(frame.len()));
        }
        let tail = self.shared.index(TAIL_OFFSET).load(Ordering::Acquire);
        let used = self.head.wrapping_sub(tail);
        if used > self.shared.geometry.slots {
            return Err(RingError::Corrupt {
                head: self.head,
                tail,
            });
        }
        if used == self.shared.geometry.slots {
            return Ok(false);
        }
        let slot = self.shared.slot(self.head);
        // The length fits in u32: it is at most MAX_SLOT_DATA.
        let len = (frame.len() as u32).to_le_bytes();
        // SAFETY: the slot has SLOT_HEADER + slot_data bytes inside the mapping and
        // `frame.len() <= slot_data`; the consumer does not read this slot until `head` is
        // published below (Release), and the source is our own memory, not the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(len.as_ptr(), slot, SLOT_HEADER);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(SLOT_HEADER), frame.len());
        }
        self.head = self.head.wrapping_add(1);
        self.shared
            .index(HEAD_OFFSET)
            .store(self.head, Ordering::Release);
        self.pushed = true;
        Ok(true)
    }

    /// Wakes the consumer if anything was pushed since the last call.
    pub fn notify(&mut self) {
        if std::mem::take(&mut self.pushed) {
            self.doorbell.ring();
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.shared.geometry
    }
}

/// The receiving end of a ring.
pub struct Consumer {
    shared: Shared,
    tail: u32,
}

impl Consumer {
    pub fn open(memory: OwnedFd, geometry: Geometry) -> Result<Consumer, RingError> {
        let shared = Shared::open(memory, geometry)?;
        let tail = shared.index(TAIL_OFFSET).load(Ordering::Relaxed);
        Ok(Consumer { shared, tail })
    }

    /// Copies the oldest frame into `buf` without removing it; its length, or `None` when the
    /// ring is empty. A frame longer than `buf` or than a slot (a corrupt ring) is an error;
    /// `discard` skips it.
    pub fn peek(&self, buf: &mut [u8]) -> Result<Option<usize>, RingError> {
        let head = self.shared.index(HEAD_OFFSET).load(Ordering::Acquire);
        let avail = head.wrapping_sub(self.tail);
        if avail == 0 {
            return Ok(None);
        }
        if avail > self.shared.geometry.slots {
            return Err(RingError::Corrupt {
                head,
                tail: self.tail,
            });
        }
        let slot = self.shared.slot(self.tail);
        let mut len = [0u8; SLOT_HEADER];
        // SAFETY: the slot header is inside the mapping; the producer finished writing it
        // before publishing `head` (Acquire above).
        unsafe { std::ptr::copy_nonoverlapping(slot, len.as_mut_ptr(), SLOT_HEADER) };
        let len = u32::from_le_bytes(len) as usize;
        if len > self.shared.geometry.slot_data || len > buf.len() {
            return Err(RingError::TooLarge(len));
        }
        // SAFETY: `len <= slot_data`, so the source lies inside the slot; `len <= buf.len()`.
        unsafe { std::ptr::copy_nonoverlapping(slot.add(SLOT_HEADER), buf.as_mut_ptr(), len) };
        Ok(Some(len))
    }

    /// Removes the oldest frame (after `peek`), giving its slot back to the producer.
    pub fn discard(&mut self) {
        self.tail = self.tail.wrapping_add(1);
        self.shared
            .index(TAIL_OFFSET)
            .store(self.tail, Ordering::Release);
    }

    /// Empties a ring the peer corrupted: skips to its head (if the head is plausible) or
    /// leaves it to be replaced.
    pub fn resync(&mut self) {
        let head = self.shared.index(HEAD_OFFSET).load(Ordering::Acquire);
        self.tail = head;
        self.shared
            .index(TAIL_OFFSET)
            .store(self.tail, Ordering::Release);
    }

    pub fn geometry(&self) -> Geometry {
        self.shared.geometry
    }
}

/// Both ends of a new ring in this process (tests, the benchmark, the in-process harness);
/// the producer rings `doorbell`.
pub fn pair(
    name: &str,
    geometry: Geometry,
    doorbell: &Doorbell,
) -> Result<(Producer, Consumer), RingError> {
    let memory = create(name, geometry)?;
    let again = memory.try_clone().map_err(RingError::Io)?;
    Ok((
        Producer::open(memory, doorbell.try_clone()?, geometry)?,
        Consumer::open(again, geometry)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, g: Geometry) -> Result<(Producer, Consumer), RingError> {
        super::pair(name, g, &Doorbell::new()?)
    }

    fn frame(n: u32, len: usize) -> Vec<u8> {
        (0..len).map(|i| (n as usize * 7 + i) as u8).collect()
    }

    #[test]
    fn push_peek_discard_in_order() {
        let (mut p, mut c) = pair("t", Geometry::new(4, 64).unwrap()).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(c.peek(&mut buf).unwrap(), None);
        assert!(p.push(&frame(1, 10)).unwrap());
        assert!(p.push(&frame(2, 64)).unwrap());
        assert_eq!(c.peek(&mut buf).unwrap(), Some(10));
        assert_eq!(&buf[..10], &frame(1, 10)[..]);
        // Peeking does not consume.
        assert_eq!(c.peek(&mut buf).unwrap(), Some(10));
        c.discard();
        assert_eq!(c.peek(&mut buf).unwrap(), Some(64));
        assert_eq!(&buf[..], &frame(2, 64)[..]);
        c.discard();
        assert_eq!(c.peek(&mut buf).unwrap(), None);
    }

    #[test]
    fn full_ring_refuses_then_accepts_after_consume() {
        let (mut p, mut c) = pair("t", Geometry::new(4, 16).unwrap()).unwrap();
        for i in 0..4 {
            assert!(p.push(&frame(i, 16)).unwrap());
        }
        assert!(!p.push(&frame(9, 16)).unwrap());
        let mut buf = [0u8; 16];
        assert_eq!(c.peek(&mut buf).unwrap(), Some(16));
        c.discard();
        assert!(p.push(&frame(4, 16)).unwrap());
        assert!(!p.push(&frame(9, 16)).unwrap());
        for i in 1..5 {
            assert_eq!(c.peek(&mut buf).unwrap(), Some(16));
            assert_eq!(&buf[..], &frame(i, 16)[..]);
            c.discard();
        }
        assert_eq!(c.peek(&mut buf).unwrap(), None);
    }

    #[test]
    fn wraps_around_many_times() {
        let (mut p, mut c) = pair("t", Geometry::new(8, 100).unwrap()).unwrap();
        let mut buf = [0u8; 100];
        let mut next_out = 0u32;
        for n in 0..1000u32 {
            if !p.push(&frame(n, (n % 100) as usize + 1)).unwrap() {
                panic!("ring full at {n}");
            }
            // Consume in bursts so the ring fills partly and wraps at every offset.
            if n % 5 == 4 {
                while let Some(len) = c.peek(&mut buf).unwrap() {
                    assert_eq!(len, (next_out % 100) as usize + 1);
                    assert_eq!(&buf[..len], &frame(next_out, len)[..]);
                    c.discard();
                    next_out += 1;
                }
            }
        }
        assert_eq!(next_out, 1000);
    }

    #[test]
    fn indices_wrap_at_u32_max() {
        let g = Geometry::new(4, 8).unwrap();
        let memory = create("t", g).unwrap();
        let again = memory.try_clone().unwrap();
        {
            // Start both indices just below the wrap.
            let region = SharedRegion::from_fd(memory.try_clone().unwrap(), g.bytes()).unwrap();
            let start = u32::MAX - 1;
            // SAFETY: offsets 0 and 64 are the aligned index words inside the mapping.
            unsafe {
                (*(region.as_ptr() as *const AtomicU32)).store(start, Ordering::SeqCst);
                (*(region.as_ptr().add(TAIL_OFFSET) as *const AtomicU32))
                    .store(start, Ordering::SeqCst);
            }
        }
        let mut p = Producer::open(memory, Doorbell::new().unwrap(), g).unwrap();
        let mut c = Consumer::open(again, g).unwrap();
        let mut buf = [0u8; 8];
        for n in 0..4 {
            assert!(p.push(&frame(n, 8)).unwrap());
        }
        assert!(!p.push(&frame(9, 8)).unwrap());
        for n in 0..4 {
            assert_eq!(c.peek(&mut buf).unwrap(), Some(8));
            assert_eq!(&buf[..], &frame(n, 8)[..]);
            c.discard();
        }
        assert_eq!(c.peek(&mut buf).unwrap(), None);
    }

    #[test]
    fn oversized_push_is_refused() {
        let (mut p, _c) = pair("t", Geometry::new(2, 8).unwrap()).unwrap();
        assert!(matches!(p.push(&[0u8; 9]), Err(RingError::TooLarge(9))));
    }

    #[test]
    fn corrupt_peer_cannot_cause_out_of_bounds() {
        let g = Geometry::new(4, 8).unwrap();
        let (mut p, mut c) = pair("t", g).unwrap();
        assert!(p.push(&[1u8; 8]).unwrap());
        // A hostile producer writes a huge length into the slot.
        // SAFETY: slot 0's header lies at SLOTS_OFFSET inside the mapping.
        unsafe {
            let slot = p.shared.region.as_ptr().add(SLOTS_OFFSET);
            std::ptr::copy_nonoverlapping(u32::MAX.to_le_bytes().as_ptr(), slot, 4);
        }
        let mut buf = [0u8; 8];
        assert!(matches!(c.peek(&mut buf), Err(RingError::TooLarge(_))));
        // …or a head far ahead of the tail.
        p.shared.index(HEAD_OFFSET).store(1000, Ordering::SeqCst);
        assert!(matches!(c.peek(&mut buf), Err(RingError::Corrupt { .. })));
        c.resync();
        assert_eq!(c.peek(&mut buf).unwrap(), None);
    }

    #[test]
    fn notify_wakes_consumer_once_per_batch() {
        let bell = Doorbell::new().unwrap();
        let (mut p, _c) = super::pair("t", Geometry::new(4, 8).unwrap(), &bell).unwrap();
        p.notify(); // nothing pushed: no wake-up
        assert_eq!(bell.take(), None);
        p.push(&[0u8; 8]).unwrap();
        p.push(&[0u8; 8]).unwrap();
        p.notify();
        assert_eq!(bell.take(), Some(1));
        assert_eq!(bell.take(), None);
    }

    #[test]
    fn geometry_is_bounded() {
        assert!(Geometry::new(3, 8).is_err());
        assert!(Geometry::new(0, 8).is_err());
        assert!(Geometry::new(MAX_SLOTS * 2, 8).is_err());
        assert!(Geometry::new(4, MAX_SLOT_DATA + 1).is_err());
        assert!(Geometry::new(4, 0).is_err());
        assert_eq!(Geometry::new(4, 60).unwrap().bytes(), 128 + 4 * 64);
        assert_eq!(Geometry::new(4, 61).unwrap().bytes(), 128 + 4 * 128);
    }
}
