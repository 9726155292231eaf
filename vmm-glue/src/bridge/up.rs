//! Guest → compositor: the guest's records become Wayland bytes and the descriptors they carry
//! (shared memory the bridge makes and fills, write ends of pipes the bridge pumps).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;

use bulkhead_ipc::wlstream::{fdpass, Incoming, Record};

use super::limits::Resource;
use super::{guest_read, io_err, lock, Shared, StreamError};

/// Reads the guest's records until it ends the stream.
pub(super) fn run(
    guest: &UnixStream,
    comp: &UnixStream,
    shared: &Shared,
) -> Result<(), StreamError> {
    let mut up = Up {
        comp,
        shared,
        pools: HashMap::new(),
        pending: Vec::new(),
        page: page_size(),
    };
    let mut reader = guest;
    while let Some(next) = Incoming::read(&mut reader).map_err(guest_read)? {
        match next {
            Incoming::Record(rec) => up.record(rec)?,
            Incoming::ShmWrite { id, offset, len } => up.shm_write(guest, id, offset, len)?,
        }
    }
    Ok(())
}

/// A pool the guest made: the memfd the compositor got, how much of it is filled (as charged
/// to the stream), and the bridge's own mapping of it once written to.
struct Pool {
    file: File,
    size: u64,
    filled: u64,
    map: Option<Mapping>,
}

/// A shared mapping of a pool's memfd, which only the kernel touches: the guest's rectangles
/// are read from the stream straight into it (one copy, where a read and a `pwrite` made
/// two). No code here dereferences it, so a fault in it is the read's `EFAULT`, not a signal.
struct Mapping {
    ptr: NonNull<std::ffi::c_void>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the pointer is never dereferenced
// in user space (only passed to read(2)), so moving it to another thread is sound.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(file: &File, len: u64) -> io::Result<Mapping> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let size = NonZeroUsize::new(len).ok_or_else(|| io::Error::other("empty pool"))?;
        // SAFETY: a new shared mapping of a file we own, at an address the kernel picks; it
        // aliases no Rust object, and nothing here reads or writes it except through read(2).
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                file,
                0,
            )
        }?;
        Ok(Mapping { ptr, len })
    }

    /// Reads exactly `len` bytes from `src` into the mapping at `offset` (checked to lie
    /// inside it).
    fn read_from(&self, src: &UnixStream, offset: u64, len: usize) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        if start.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::other("write outside the pool's mapping"));
        }
        let mut done = 0;
        while done < len {
            // SAFETY: `start + len <= self.len`, so the range is inside the live mapping; the
            // kernel writes it (a page it cannot fault in makes this EFAULT), and no Rust
            // reference to that memory exists.
            let n = unsafe {
                libc::recv(
                    src.as_raw_fd(),
                    self.ptr.as_ptr().cast::<u8>().add(start + done).cast(),
                    len - done,
                    libc::MSG_WAITALL,
                )
            };
            match n {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n if n > 0 => done += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, made by `new` with this length, and unmapped once.
        if let Err(e) = unsafe { nix::sys::mman::munmap(self.ptr, self.len) } {
            eprintln!("bulkhead-wl-bridge: cannot unmap a pool: {e}");
        }
    }
}

struct Up<'a> {
    comp: &'a UnixStream,
    shared: &'a Shared,
    pools: HashMap<u32, Pool>,
    /// Descriptors made for records since the last Wayland bytes, which must declare them.
    pending: Vec<OwnedFd>,
    page: u64,
}

fn protocol(m: impl Into<String>) -> StreamError {
    StreamError::Protocol(m.into())
}

impl Up<'_> {
    fn record(&mut self, rec: Record) -> Result<(), StreamError> {
        match rec {
            Record::ShmNew { id, size } => self.shm_new(id, size),
            Record::ShmResize { id, size } => self.shm_resize(id, size),
            // Read by `run` as `Incoming::ShmWrite`, data straight into the pool.
            Record::ShmWrite { .. } => Err(protocol("an shm write out of place")),
            Record::ShmDrop { id } => {
                self.shm_drop(id);
                Ok(())
            }
            Record::PipeWrite { id } => self.pipe_write(id),
            Record::PipeData { id, data } => {
                self.pipe_to_compositor(id, Some(&data));
                Ok(())
            }
            Record::PipeClose { id } => {
                self.pipe_to_compositor(id, None);
                Ok(())
            }
            Record::Wl { fds, data } => self.wayland(fds, &data),
            other => Err(protocol(format!("the guest sent {other:?}"))),
        }
    }

    /// A descriptor made now must fit in the next Wayland bytes' batch.
    fn room_for_fd(&self) -> Result<(), StreamError> {
        if self.pending.len() >= fdpass::MAX_FDS {
            return Err(protocol(format!(
                "more than {} file descriptors wait for the Wayland bytes that carry them",
                fdpass::MAX_FDS
            )));
        }
        Ok(())
    }

    fn shm_new(&mut self, id: u32, size: u64) -> Result<(), StreamError> {
        if self.pools.contains_key(&id) {
            return Err(protocol(format!("shared memory {id} is a duplicate")));
        }
        self.room_for_fd()?;
        lock(&self.shared.usage).take(Resource::Pools, 1)?;
        let file = memfd(size).map_err(io_err("cannot make shared memory"))?;
        let theirs = file
            .try_clone()
            .map_err(io_err("cannot make shared memory"))?;
        self.pending.push(OwnedFd::from(theirs));
        self.pools.insert(
            id,
            Pool {
                file,
                size,
                filled: 0,
                map: None,
            },
        );
        Ok(())
    }

    /// Pools only grow (the compositor's mapping of the old size must stay valid).
    fn shm_resize(&mut self, id: u32, size: u64) -> Result<(), StreamError> {
        let pool = self
            .pools
            .get_mut(&id)
            .ok_or_else(|| protocol("resize of unknown memory"))?;
        if size < pool.size {
            return Err(protocol(format!(
                "shared memory {id} cannot become {size} bytes"
            )));
        }
        pool.file
            .set_len(size)
            .map_err(io_err("cannot grow shared memory"))?;
        pool.size = size;
        // Mapped again, at the new size, by the next write.
        pool.map = None;
        Ok(())
    }

    /// Fills a rectangle's rows with the `len` bytes that follow on `guest`, read straight
    /// into the pool. The memory the write may allocate is charged before it is made (every
    /// page it touches counted as new), then settled to what the memfd really grew by: a
    /// rewrite of filled pages costs nothing.
    fn shm_write(
        &mut self,
        guest: &UnixStream,
        id: u32,
        offset: u64,
        len: usize,
    ) -> Result<(), StreamError> {
        let shared = self.shared;
        let pool = self
            .pools
            .get_mut(&id)
            .ok_or_else(|| protocol("write to unknown memory"))?;
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| protocol("write past the end"))?;
        if end > pool.size {
            return Err(protocol(format!(
                "write of {len} bytes at {offset} past {} bytes",
                pool.size
            )));
        }
        if len == 0 {
            return Ok(());
        }
        let map = match &mut pool.map {
            Some(m) => m,
            none => none.insert(
                Mapping::new(&pool.file, pool.size).map_err(io_err("cannot map shared memory"))?,
            ),
        };
        let worst = pages_spanned(offset, end, self.page);
        lock(&shared.usage).take(Resource::ShmMemory, worst)?;
        // Not under the lock: the guest decides how long this read takes.
        let written = map.read_from(guest, offset, len);
        let filled = allocated(&pool.file).map_err(io_err("cannot measure shared memory"))?;
        let grew = filled.saturating_sub(pool.filled);
        pool.filled = pool.filled.max(filled);
        lock(&shared.usage).settle(Resource::ShmMemory, worst, grew)?;
        written.map_err(io_err("guest"))
    }

    /// The guest app is done with a pool. The bridge closes its own descriptor (the pool no
    /// longer counts against the pools limit), but the filled memory stays charged until the
    /// stream ends: the compositor may still map it (see `limits::SHM_MEMORY_PER_STREAM`).
    fn shm_drop(&mut self, id: u32) {
        if self.pools.remove(&id).is_some() {
            lock(&self.shared.usage).give(Resource::Pools, 1);
        }
    }

    /// The guest reads a transfer: a pipe whose write end goes to the compositor with the
    /// next Wayland bytes, and whose read end `down` pumps to the guest.
    fn pipe_write(&mut self, id: u32) -> Result<(), StreamError> {
        self.room_for_fd()?;
        lock(&self.shared.usage).take(Resource::Pipes, 1)?;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| io_err("cannot make a pipe")(e.into()))?;
        self.pending.push(w);
        lock(&self.shared.pumps).push((id, File::from(r)));
        // A full wake pipe already has a wake-up waiting.
        let _ = (&self.shared.wake).write(&[1]);
        Ok(())
    }

    /// `PipeData` (`Some`) or `PipeClose` (`None`) for a transfer the compositor started; a
    /// transfer that ends gives its pipe back.
    fn pipe_to_compositor(&mut self, id: u32, data: Option<&[u8]>) {
        let mut pipes = lock(&self.shared.pipes);
        let before = pipes.len();
        match data {
            Some(d) => pipes.deliver(id, d),
            None => pipes.close(id),
        }
        let ended = before.saturating_sub(pipes.len());
        drop(pipes);
        lock(&self.shared.usage).give(Resource::Pipes, ended as u64);
    }

    /// Wayland bytes with the descriptors made since the last ones: exactly as many as the
    /// record declares, or the stream ends before anything reaches the compositor.
    fn wayland(&mut self, fds: u8, data: &[u8]) -> Result<(), StreamError> {
        if usize::from(fds) != self.pending.len() {
            return Err(protocol(format!(
                "Wayland bytes declare {fds} file descriptors, but {} wait to be attached",
                self.pending.len()
            )));
        }
        fdpass::send(self.comp, data, &self.pending).map_err(io_err("compositor"))?;
        self.pending.clear();
        Ok(())
    }
}

/// Bytes of the pages that `offset..end` touches.
fn pages_spanned(offset: u64, end: u64, page: u64) -> u64 {
    if end <= offset {
        return 0;
    }
    end.div_ceil(page) * page - offset / page * page
}

/// Bytes of memory the memfd has allocated (its block count, in 512-byte units).
fn allocated(f: &File) -> std::io::Result<u64> {
    Ok(f.metadata()?.blocks().saturating_mul(512))
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(4096)
}

fn memfd(size: u64) -> std::io::Result<File> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let fd = memfd_create(c"bulkhead-shm", MemFdCreateFlag::MFD_CLOEXEC)?;
    let f = File::from(fd);
    f.set_len(size)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_spanned_counts_every_page_touched() {
        assert_eq!(pages_spanned(0, 0, 4096), 0);
        assert_eq!(pages_spanned(0, 1, 4096), 4096);
        assert_eq!(pages_spanned(4095, 4097, 4096), 8192);
        assert_eq!(pages_spanned(4096, 8192, 4096), 4096);
    }

    #[test]
    fn a_memfd_reports_what_was_written_not_its_size() {
        use std::os::unix::fs::FileExt;
        let f = memfd(64 << 20).unwrap();
        assert_eq!(allocated(&f).unwrap(), 0);
        f.write_all_at(&[1; 8192], 1 << 20).unwrap();
        let n = allocated(&f).unwrap();
        assert!((8192..=2 << 20).contains(&n), "{n}");
    }
}
