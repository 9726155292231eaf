//! The virtio-gpu device as the cross-domain transport uses it, behind one trait shaped like
//! the kernel's `DRM_IOCTL_VIRTGPU_*` ioctls. [`drm::DrmGpu`] is the real one (a guest's
//! `/dev/dri/renderD*`); [`loopback::LoopbackGpu`] runs the host side in this process with
//! `rutabaga_gfx` (the code crosvm runs), for tests, benchmarks and trying the proxy on a host.
//! Everything above the trait is the same for both.

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

pub mod drm;
pub mod loopback;

/// The cross-domain capability set (context type).
pub const CAPSET_CROSS_DOMAIN: u32 = 5;

/// `blob_mem`: memory the guest owns (the rings).
pub const BLOB_MEM_GUEST: u32 = 1;
/// `blob_mem`: memory the host allocates (image buffers, blobs of host fds).
pub const BLOB_MEM_HOST3D: u32 = 2;
/// `blob_flags`.
pub const BLOB_FLAG_USE_MAPPABLE: u32 = 1;
pub const BLOB_FLAG_USE_SHAREABLE: u32 = 2;

/// The size of the guest pages blobs are made of.
pub const PAGE: u64 = 4096;

/// A buffer object of this context: the guest's handle and the device's resource id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob {
    pub bo_handle: u32,
    pub res_handle: u32,
}

/// What `DRM_IOCTL_VIRTGPU_RESOURCE_INFO` says about a buffer object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    pub res_handle: u32,
    pub size: u32,
    pub blob_mem: u32,
}

/// One opened virtio-gpu device file: one context. Shared by the threads of one app's relay.
pub trait VirtGpu: Send + Sync {
    /// `DRM_IOCTL_VIRTGPU_CONTEXT_INIT`: the context type, its number of fence rings, and the
    /// rings whose fences post an event on [`VirtGpu::event_fd`].
    fn context_init(&self, capset_id: u32, num_rings: u32, poll_rings_mask: u64) -> io::Result<()>;
    /// `DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB`.
    fn create_blob(
        &self,
        blob_mem: u32,
        blob_flags: u32,
        size: u64,
        blob_id: u64,
    ) -> io::Result<Blob>;
    /// `DRM_IOCTL_VIRTGPU_MAP` and the mmap of the offset it gives.
    fn map(&self, bo_handle: u32, size: usize) -> io::Result<Mapping>;
    /// `DRM_IOCTL_VIRTGPU_EXECBUFFER` with `VIRTGPU_EXECBUF_RING_IDX`: the command goes to the
    /// context; its fence is attached to `bo_handles` and signals on ring `ring_idx`.
    fn execbuffer(&self, cmd: &[u8], bo_handles: &[u32], ring_idx: u32) -> io::Result<()>;
    /// `DRM_IOCTL_VIRTGPU_WAIT`: until every fence attached to the buffer object signalled.
    fn wait(&self, bo_handle: u32) -> io::Result<()>;
    /// `DRM_IOCTL_VIRTGPU_RESOURCE_INFO`.
    fn resource_info(&self, bo_handle: u32) -> io::Result<ResourceInfo>;
    /// `DRM_IOCTL_GEM_CLOSE`: the buffer object is gone (mappings of it must be dropped first).
    fn close(&self, bo_handle: u32) -> io::Result<()>;
    /// The device file: readable when a fence of a polled ring signalled.
    fn event_fd(&self) -> BorrowedFd<'_>;
    /// read() on the device file: how many fence events were pending (blocks until one is).
    fn read_events(&self) -> io::Result<usize>;
}

/// A mapping of a buffer object into this process.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Whether dropping it unmaps (our own mmap) or the device owns the memory.
    owned: bool,
}

// SAFETY: a Mapping is plain memory shared with the device; it is only accessed through
// copies (`read`, `write`, `fill_from`) that take `&self` and bounds-check, and the memory
// stays mapped for the Mapping's lifetime.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent copies into distinct or the same bytes are data races only on
// memory the other side (the host) writes too, which the protocol orders with fences.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// # Safety
    /// `ptr` must point at `len` bytes that stay mapped and writable until the Mapping is
    /// dropped; with `owned`, they must come from one `mmap` that nothing else unmaps.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize, owned: bool) -> Mapping {
        Mapping { ptr, len, owned }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, n: usize) -> io::Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{n} bytes at {offset} are outside a mapping of {}",
                    self.len
                ),
            )),
        }
    }

    /// Copies `out.len()` bytes at `offset` out of the mapping.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> io::Result<()> {
        self.check(offset, out.len())?;
        // SAFETY: the range is inside the mapping (checked above), which is valid for the
        // Mapping's lifetime; `out` is a distinct Rust buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        Ok(())
    }

    /// Copies `data` into the mapping at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        self.check(offset, data.len())?;
        // SAFETY: as in `read`, the other way.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    /// Fills `n` bytes at `offset` from `file` at `file_offset` (pread straight into the
    /// mapping: no copy in between). Returns how many bytes the file had there.
    pub fn fill_from(
        &self,
        offset: usize,
        n: usize,
        file: &std::fs::File,
        file_offset: u64,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        self.check(offset, n)?;
        let mut done = 0usize;
        while done < n {
            // SAFETY: the destination range is inside the mapping (checked above); pread
            // writes at most `n - done` bytes there.
            let r = unsafe {
                libc::pread(
                    file.as_raw_fd(),
                    self.ptr.as_ptr().add(offset + done).cast(),
                    n - done,
                    (file_offset + done as u64) as libc::off_t,
                )
            };
            match r {
                0 => break,
                r if r > 0 => done += r as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(done)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: `owned` mappings come from one mmap of exactly `len` bytes (see `new`).
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// `size` rounded up to whole pages.
pub fn page_align(size: u64) -> Option<u64> {
    size.checked_add(PAGE - 1).map(|s| s & !(PAGE - 1))
}
