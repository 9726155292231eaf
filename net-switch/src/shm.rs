//! Shared memory regions: a memfd mapped read-write in every process that holds its fd.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("creating the memfd")]
    Create(#[source] nix::Error),
    #[error("sizing the memfd to {0} bytes")]
    Size(usize, #[source] nix::Error),
    #[error("mapping {0} bytes")]
    Map(usize, #[source] nix::Error),
    #[error("the shared file has {actual} bytes; at least {wanted} are needed")]
    TooSmall { wanted: usize, actual: u64 },
    #[error("reading the shared file's size")]
    Stat(#[source] nix::Error),
    #[error("a region of {0} bytes is not possible")]
    BadLength(usize),
}

/// A mapping of a whole memfd. Unmapped on drop; the fd stays with the region so that it can be
/// handed to another process.
#[derive(Debug)]
pub struct SharedRegion {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the region is plain shared memory; every access goes through raw pointers with the
// synchronisation chosen by the user (atomics for indices), never through references that
// assume exclusivity.
unsafe impl Send for SharedRegion {}
// SAFETY: as above; `&SharedRegion` only hands out the base pointer and length.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// A new zero-filled region of `len` bytes.
    pub fn create(name: &str, len: usize) -> Result<SharedRegion, ShmError> {
        if len == 0 || len > isize::MAX as usize {
            return Err(ShmError::BadLength(len));
        }
        let cname = std::ffi::CString::new(name.replace('\0', "_"))
            .map_err(|_| ShmError::BadLength(len))?;
        let fd = memfd_create(&cname, MemFdCreateFlag::MFD_CLOEXEC).map_err(ShmError::Create)?;
        let size = libc::off_t::try_from(len).map_err(|_| ShmError::BadLength(len))?;
        nix::unistd::ftruncate(&fd, size).map_err(|e| ShmError::Size(len, e))?;
        SharedRegion::map(fd, len)
    }

    /// Maps `len` bytes of a region another process created. The file must be at least that
    /// long (a shorter file would fault on access rather than fail here).
    pub fn from_fd(fd: OwnedFd, len: usize) -> Result<SharedRegion, ShmError> {
        if len == 0 || len > isize::MAX as usize {
            return Err(ShmError::BadLength(len));
        }
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(ShmError::Stat)?;
        let actual = u64::try_from(st.st_size).unwrap_or(0);
        if actual < len as u64 {
            return Err(ShmError::TooSmall {
                wanted: len,
                actual,
            });
        }
        SharedRegion::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<SharedRegion, ShmError> {
        let nz = std::num::NonZeroUsize::new(len).ok_or(ShmError::BadLength(len))?;
        // SAFETY: a fresh shared mapping of a file we hold; no existing memory is affected.
        let ptr = unsafe {
            mmap(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| ShmError::Map(len, e))?;
        Ok(SharedRegion {
            ptr: ptr.cast(),
            len,
            fd,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A second descriptor for the same memory, to send to another process.
    pub fn dup_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl AsFd for SharedRegion {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`, and nothing borrowed from
        // it outlives `self` (all accessors return raw pointers or copies).
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}
