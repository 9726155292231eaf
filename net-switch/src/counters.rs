//! Per-port counters, in a shared page that the port's child writes and the main process reads
//! (to report them to the VM manager and to watch the heartbeat).
//!
//! Directions are the guest's: `tx` is what the guest sent (the switch's input from that port),
//! `rx` what the switch delivered into the guest.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::policy::DropReason;
use crate::shm::{SharedRegion, ShmError};

/// The counters of one port. `repr(C)` so both processes agree on the layout.
#[repr(C)]
#[derive(Debug, Default)]
pub struct PortCounters {
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Advanced by the child's worker thread on every timer tick: a hung child stops it.
    pub heartbeat: AtomicU64,
}

impl PortCounters {
    pub fn sent(&self, bytes: usize) {
        self.tx_frames.fetch_add(1, Ordering::Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn delivered(&self, bytes: usize) {
        self.rx_frames.fetch_add(1, Ordering::Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn dropped(&self, why: DropReason) {
        if let Some(c) = self.drops.get(why as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn beat(&self) {
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let mut drops = [0u64; DropReason::COUNT];
        for (d, c) in drops.iter_mut().zip(&self.drops) {
            *d = c.load(Ordering::Relaxed);
        }
        CounterSnapshot {
            tx_frames: self.tx_frames.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            rx_frames: self.rx_frames.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            drops,
            heartbeat: self.heartbeat.load(Ordering::Relaxed),
        }
    }
}

/// A copy of one port's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
    pub heartbeat: u64,
}

impl CounterSnapshot {
    pub fn drop_count(&self, why: DropReason) -> u64 {
        self.drops.get(why as usize).copied().unwrap_or(0)
    }

    /// One JSON object (no dependencies: the names are fixed ASCII, the values numbers).
    pub fn to_json(&self, vm: &str) -> String {
        format!("{{\"vm\":\"{}\",{}}}", json_escape(vm), self.json_fields())
    }

    /// The counters as JSON object members, without braces.
    pub fn json_fields(&self) -> String {
        let mut s = format!(
            "\"tx_frames\":{},\"tx_bytes\":{},\"rx_frames\":{},\"rx_bytes\":{},\"drops\":{{",
            self.tx_frames, self.tx_bytes, self.rx_frames, self.rx_bytes
        );
        for (i, why) in DropReason::ALL.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"{}\":{}", why.name(), self.drop_count(*why)));
        }
        s.push('}');
        s
    }
}

/// Escapes a string for a JSON string literal.
pub fn json_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

/// A `PortCounters` in shared memory.
#[derive(Debug)]
pub struct SharedCounters {
    region: SharedRegion,
}

impl SharedCounters {
    pub fn create(name: &str) -> Result<SharedCounters, ShmError> {
        Ok(SharedCounters {
            region: SharedRegion::create(name, std::mem::size_of::<PortCounters>())?,
        })
    }

    pub fn from_fd(fd: OwnedFd) -> Result<SharedCounters, ShmError> {
        Ok(SharedCounters {
            region: SharedRegion::from_fd(fd, std::mem::size_of::<PortCounters>())?,
        })
    }

    pub fn dup_fd(&self) -> std::io::Result<OwnedFd> {
        self.region.dup_fd()
    }

    pub fn get(&self) -> &PortCounters {
        // SAFETY: the mapping is page aligned and at least size_of::<PortCounters>() long; a
        // zero-filled PortCounters is valid (all atomics zero), and the memory is only ever
        // accessed through these atomics, in either process.
        unsafe { &*(self.region.as_ptr() as *const PortCounters) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reports() {
        let c = SharedCounters::create("c").unwrap();
        let other = SharedCounters::from_fd(c.dup_fd().unwrap()).unwrap();
        c.get().sent(100);
        c.get().sent(60);
        c.get().delivered(42);
        c.get().dropped(DropReason::SpoofedSource);
        c.get().dropped(DropReason::SpoofedSource);
        c.get().dropped(DropReason::Oversize);
        let s = other.get().snapshot();
        assert_eq!(
            (s.tx_frames, s.tx_bytes, s.rx_frames, s.rx_bytes),
            (2, 160, 1, 42)
        );
        assert_eq!(s.drop_count(DropReason::SpoofedSource), 2);
        assert_eq!(s.drop_count(DropReason::Oversize), 1);
        assert_eq!(s.drop_count(DropReason::NotPermitted), 0);
        let j = s.to_json("we\"b");
        assert!(j.starts_with("{\"vm\":\"we\\\"b\",\"tx_frames\":2,"), "{j}");
        assert!(j.contains("\"spoofed_source\":2"), "{j}");
        assert!(j.ends_with("\"peer_down\":0}}"), "{j}");
    }
}
