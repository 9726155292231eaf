//! What one VM's bridge allows, and the counters that hold each stream and the VM to it.
//!
//! Every count is charged before the thing it counts exists (a pool's memfd, a pipe, filled
//! memory) and checked against the stream's limit and then the VM's. Going over ends that
//! stream with an [`Exceeded`] that names the limit; the VM's other streams keep what they
//! have. What a stream holds is given back to the VM when the stream ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// App streams one VM's bridge serves at once: as many as the compositor accepts on a VM's
/// Wayland socket (`compositor/src/limits.rs`). More are refused at accept.
pub const STREAMS: usize = 64;

/// Threads a stream runs: its own (guest → compositor) and one that moves the compositor's
/// messages and every pipe's data to the guest, waiting on all of them with ppoll. Nothing
/// else makes threads, so a VM's bridge runs at most `STREAMS × 2 + 1` (the accept loop).
pub const THREADS_PER_STREAM: usize = 2;

/// Shared memory the bridge has filled for one stream and not yet given back.
///
/// What the bridge can observe: it creates each pool's memfd, fills it (the compositor maps it
/// read-only, so the bridge is its only writer) and passes it to the compositor. It cannot see
/// when the compositor unmaps it: a buffer the compositor still shows keeps its pool mapped
/// after the guest app destroyed both (`ShmDrop` means only that the app is done with it), and
/// nothing about a memfd tells its owner that the last other mapping went. What it can see is
/// the end of the stream: the bridge then closes the compositor connection, and the compositor
/// destroys the client with its buffers and pools. So filled memory is charged as it is filled
/// and never refunded before the stream ends, `ShmDrop` included.
///
/// What is charged is memory, not pool sizes: pools are sparse memfds (foot maps 512 MiB and
/// scrolls its buffers through them), and the bridge measures what a write made the memfd
/// allocate (its block count) rather than trusting sizes. Pages of a pool the guest never
/// filled cost nothing unless the compositor reads them, and the compositor bounds what it
/// maps per client and per VM itself.
///
/// The cap is set for never refunding: a long-lived app that makes pool after pool (every
/// resize) adds each one's filled pages until it ends. 2 GiB per app is foot's two 512 MiB
/// pools filled by scrolling, and a full-screen 4K buffer (32 MiB) on each of 30 resizes.
pub const SHM_MEMORY_PER_STREAM: u64 = 2 * GIB;

/// Filled shared memory of all of a VM's streams: two apps at their stream limit. Before, each
/// of 64 streams could hold 2 GiB of pools, 128 GiB per VM.
pub const SHM_MEMORY_PER_VM: u64 = 4 * GIB;

/// Pools whose memfd the bridge holds for one stream (until `ShmDrop`): the compositor's own
/// limit of wl_shm_pool objects per client.
pub const POOLS_PER_STREAM: usize = 256;

/// Pools held for all of a VM's streams: the compositor's limit per VM.
pub const POOLS_PER_VM: usize = 1024;

/// Pipes open on one stream: transfers from the compositor the bridge pumps to the guest
/// (`PipeWrite` from the guest: a paste into the guest app) and transfers from the guest it
/// writes into the compositor's pipe (`PipeWrite` to the guest: a paste from it). A paste uses
/// one at a time; a drag offering several types, a few.
pub const PIPES_PER_STREAM: usize = 16;

/// Pipes open on all of a VM's streams.
pub const PIPES_PER_VM: usize = 64;

/// What one VM's bridge allows. The bridge binary uses [`Limits::default`], the constants
/// above; tests pass small ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// App streams served at once; more are refused.
    pub streams: usize,
    /// Shared memory filled for one stream (see [`SHM_MEMORY_PER_STREAM`]).
    pub shm_memory_per_stream: u64,
    /// Filled shared memory of all the VM's streams.
    pub shm_memory_per_vm: u64,
    /// Shared-memory pools one stream holds open.
    pub pools_per_stream: usize,
    /// Pools of all the VM's streams.
    pub pools_per_vm: usize,
    /// Pipes (clipboard and drag-and-drop transfers) open on one stream.
    pub pipes_per_stream: usize,
    /// Pipes of all the VM's streams.
    pub pipes_per_vm: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            streams: STREAMS,
            shm_memory_per_stream: SHM_MEMORY_PER_STREAM,
            shm_memory_per_vm: SHM_MEMORY_PER_VM,
            pools_per_stream: POOLS_PER_STREAM,
            pools_per_vm: POOLS_PER_VM,
            pipes_per_stream: PIPES_PER_STREAM,
            pipes_per_vm: PIPES_PER_VM,
        }
    }
}

/// What a stream uses that is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Bytes of shared memory filled.
    ShmMemory,
    /// Pools whose memfd the bridge holds.
    Pools,
    /// Pipes open.
    Pipes,
}

const RESOURCES: usize = 3;

impl Resource {
    fn index(self) -> usize {
        match self {
            Resource::ShmMemory => 0,
            Resource::Pools => 1,
            Resource::Pipes => 2,
        }
    }
}

/// Whose limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Stream,
    Vm,
}

/// A stream went over a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub resource: Resource,
    pub scope: Scope,
    pub limit: u64,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.resource {
            Resource::ShmMemory if self.limit.is_multiple_of(MIB) => {
                format!("{} MiB of shared memory filled", self.limit / MIB)
            }
            Resource::ShmMemory => format!("{} bytes of shared memory filled", self.limit),
            Resource::Pools => format!("{} shared-memory pools", self.limit),
            Resource::Pipes => format!("{} pipes", self.limit),
        };
        let scope = match self.scope {
            Scope::Stream => "for this app",
            Scope::Vm => "for the VM's apps together",
        };
        write!(f, "over the limit of {what} {scope}")
    }
}

impl Limits {
    fn of(&self, r: Resource, scope: Scope) -> u64 {
        let v = match (r, scope) {
            (Resource::ShmMemory, Scope::Stream) => return self.shm_memory_per_stream,
            (Resource::ShmMemory, Scope::Vm) => return self.shm_memory_per_vm,
            (Resource::Pools, Scope::Stream) => self.pools_per_stream,
            (Resource::Pools, Scope::Vm) => self.pools_per_vm,
            (Resource::Pipes, Scope::Stream) => self.pipes_per_stream,
            (Resource::Pipes, Scope::Vm) => self.pipes_per_vm,
        };
        v as u64
    }
}

/// One VM's use of each resource, over all its streams.
#[derive(Debug, Default)]
pub struct VmUse {
    used: [AtomicU64; RESOURCES],
}

impl VmUse {
    /// What the VM's streams hold of `r` now.
    pub fn used(&self, r: Resource) -> u64 {
        self.used[r.index()].load(Ordering::SeqCst)
    }
}

/// One stream's use, charged to its VM as well. Dropping it (the stream ended) gives all of it
/// back to the VM.
#[derive(Debug)]
pub struct StreamUse {
    vm: Arc<VmUse>,
    limits: Limits,
    used: [u64; RESOURCES],
}

impl StreamUse {
    pub fn new(vm: Arc<VmUse>, limits: Limits) -> StreamUse {
        StreamUse {
            vm,
            limits,
            used: [0; RESOURCES],
        }
    }

    /// Charges `n` of `r`, or says which limit it would cross (and charges nothing).
    pub fn take(&mut self, r: Resource, n: u64) -> Result<(), Exceeded> {
        let over = |scope| Exceeded {
            resource: r,
            scope,
            limit: self.limits.of(r, scope),
        };
        let own = self.used[r.index()];
        if own.saturating_add(n) > self.limits.of(r, Scope::Stream) {
            return Err(over(Scope::Stream));
        }
        let vm_max = self.limits.of(r, Scope::Vm);
        self.vm.used[r.index()]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                v.checked_add(n).filter(|t| *t <= vm_max)
            })
            .map_err(|_| over(Scope::Vm))?;
        self.used[r.index()] = own + n;
        Ok(())
    }

    /// Gives back `n` of `r` (at most what this stream holds).
    pub fn give(&mut self, r: Resource, n: u64) {
        let n = n.min(self.used[r.index()]);
        self.used[r.index()] -= n;
        self.vm.used[r.index()].fetch_sub(n, Ordering::SeqCst);
    }

    /// Turns a charge of `reserved` into one of `used`, what it really cost.
    pub fn settle(&mut self, r: Resource, reserved: u64, used: u64) -> Result<(), Exceeded> {
        if used <= reserved {
            self.give(r, reserved - used);
            Ok(())
        } else {
            self.take(r, used - reserved)
        }
    }

    /// What this stream holds of `r`.
    pub fn used(&self, r: Resource) -> u64 {
        self.used[r.index()]
    }
}

impl Drop for StreamUse {
    fn drop(&mut self) {
        for r in [Resource::ShmMemory, Resource::Pools, Resource::Pipes] {
            self.give(r, self.used[r.index()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            pipes_per_stream: 2,
            pipes_per_vm: 3,
            ..Limits::default()
        }
    }

    #[test]
    fn a_stream_is_held_to_its_limit_and_the_vm_to_its_own() {
        let vm = Arc::new(VmUse::default());
        let mut a = StreamUse::new(vm.clone(), small());
        let mut b = StreamUse::new(vm.clone(), small());
        a.take(Resource::Pipes, 2).unwrap();
        let e = a.take(Resource::Pipes, 1).unwrap_err();
        assert_eq!((e.scope, e.limit), (Scope::Stream, 2));
        b.take(Resource::Pipes, 1).unwrap();
        let e = b.take(Resource::Pipes, 1).unwrap_err();
        assert_eq!((e.scope, e.limit), (Scope::Vm, 3));
        assert_eq!(vm.used(Resource::Pipes), 3);
        drop(a);
        assert_eq!(vm.used(Resource::Pipes), 1);
        b.take(Resource::Pipes, 1).unwrap();
    }

    #[test]
    fn settling_charges_what_was_used() {
        let vm = Arc::new(VmUse::default());
        let mut a = StreamUse::new(
            vm.clone(),
            Limits {
                shm_memory_per_stream: 100,
                ..Limits::default()
            },
        );
        a.take(Resource::ShmMemory, 60).unwrap();
        a.settle(Resource::ShmMemory, 60, 10).unwrap();
        assert_eq!(a.used(Resource::ShmMemory), 10);
        a.take(Resource::ShmMemory, 30).unwrap();
        assert!(a.settle(Resource::ShmMemory, 30, 120).is_err());
        assert_eq!(vm.used(Resource::ShmMemory), 40);
    }

    #[test]
    fn the_default_limits_are_the_documented_constants() {
        let d = Limits::default();
        assert_eq!(
            (d.streams, d.shm_memory_per_stream, d.shm_memory_per_vm),
            (64, 2 << 30, 4 << 30)
        );
        assert_eq!(
            (
                d.pools_per_stream,
                d.pools_per_vm,
                d.pipes_per_stream,
                d.pipes_per_vm
            ),
            (256, 1024, 16, 64)
        );
    }
}
