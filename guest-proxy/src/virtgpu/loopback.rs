//! The host side of cross-domain in this process: `rutabaga_gfx`, the library crosvm's
//! virtio-gpu device runs, driven the way crosvm drives it for a guest's ioctls. Its
//! cross-domain context connects to a Wayland socket on this machine (a VM's socket of the
//! compositor), exactly as crosvm's does. "Guest memory" (the rings) is memory of this process.
//!
//! Used by tests and the forwarding benchmark, and to try the proxy without a VM
//! (`bulkhead-wl-proxy --loopback-host SOCKET`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rutabaga_gfx::{
    ResourceCreateBlob, Rutabaga, RutabagaBuilder, RutabagaFence, RutabagaFenceHandler,
    RutabagaIovec, RutabagaPath, RUTABAGA_FLAG_FENCE, RUTABAGA_FLAG_INFO_RING_IDX,
    RUTABAGA_PATH_TYPE_WAYLAND,
};

use super::{page_align, Blob, Mapping, ResourceInfo, VirtGpu, BLOB_MEM_GUEST};

/// The context id: one device (one Rutabaga) per opened "file", as each guest open() gets one.
const CTX: u32 = 1;

/// Fences not yet signalled, by the buffer objects they are attached to.
#[derive(Default)]
struct FenceState {
    pending: HashMap<u32, usize>,
    attached: HashMap<u64, Vec<u32>>,
}

struct Fences {
    state: Mutex<FenceState>,
    cv: Condvar,
    poll_mask: Mutex<u64>,
    /// Written once per signalled fence of a polled ring: the "device file" event.
    events: Mutex<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fences {
    fn signalled(&self, fence: RutabagaFence) {
        {
            let mut st = lock(&self.state);
            if let Some(bos) = st.attached.remove(&fence.fence_id) {
                for bo in bos {
                    if let Some(n) = st.pending.get_mut(&bo) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            st.pending.remove(&bo);
                        }
                    }
                }
            }
        }
        self.cv.notify_all();
        if *lock(&self.poll_mask) & (1u64 << (fence.ring_idx as u64 & 63)) != 0 {
            let _ = lock(&self.events).write_all(&[1]);
        }
    }
}

/// Memory standing in for guest pages.
struct GuestMem {
    ptr: NonNull<u8>,
    len: usize,
}

impl GuestMem {
    fn new(len: usize) -> io::Result<GuestMem> {
        // SAFETY: a fresh private anonymous mapping; we own the returned range.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(GuestMem { ptr, len })
    }
}

impl Drop for GuestMem {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes (see `new`); rutabaga no longer refers to it
        // (the resource was unreferenced, or the device dropped, before this).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

struct Inner {
    rutabaga: Option<Rutabaga>,
    next_res: u32,
    guest: HashMap<u32, GuestMem>,
    info: HashMap<u32, ResourceInfo>,
    next_fence: u64,
}

// SAFETY: GuestMem is plain memory owned by this struct (raw pointers only because it is an
// mmap); everything in Inner is used under the device's mutex.
unsafe impl Send for Inner {}

/// One cross-domain "device file" backed by rutabaga_gfx in this process.
pub struct LoopbackGpu {
    inner: Mutex<Inner>,
    fences: Arc<Fences>,
    events: File,
}

fn rerr(e: rutabaga_gfx::RutabagaError) -> io::Error {
    io::Error::other(format!("rutabaga: {e}"))
}

impl LoopbackGpu {
    /// A device whose cross-domain Wayland channel connects to `wayland_socket`.
    pub fn open(wayland_socket: &Path) -> io::Result<LoopbackGpu> {
        let (r, w) = nix::unistd::pipe()?;
        let fences = Arc::new(Fences {
            state: Mutex::new(FenceState::default()),
            cv: Condvar::new(),
            poll_mask: Mutex::new(0),
            events: Mutex::new(File::from(w)),
        });
        let f2 = fences.clone();
        let handler = RutabagaFenceHandler::new(move |fence| f2.signalled(fence));
        let rutabaga = RutabagaBuilder::new(1 << super::CAPSET_CROSS_DOMAIN, handler)
            .set_rutabaga_paths(Some(vec![RutabagaPath {
                path: wayland_socket.to_path_buf(),
                path_type: RUTABAGA_PATH_TYPE_WAYLAND,
            }]))
            .build()
            .map_err(rerr)?;
        Ok(LoopbackGpu {
            inner: Mutex::new(Inner {
                rutabaga: Some(rutabaga),
                next_res: 1,
                guest: HashMap::new(),
                info: HashMap::new(),
                next_fence: 1,
            }),
            fences,
            events: File::from(r),
        })
    }
}

impl Inner {
    fn rutabaga(&mut self) -> io::Result<&mut Rutabaga> {
        self.rutabaga
            .as_mut()
            .ok_or_else(|| io::Error::other("the device is gone"))
    }
}

impl VirtGpu for LoopbackGpu {
    fn context_init(
        &self,
        capset_id: u32,
        _num_rings: u32,
        poll_rings_mask: u64,
    ) -> io::Result<()> {
        *lock(&self.fences.poll_mask) = poll_rings_mask;
        lock(&self.inner)
            .rutabaga()?
            .create_context(CTX, capset_id, None)
            .map_err(rerr)
    }

    fn create_blob(
        &self,
        blob_mem: u32,
        blob_flags: u32,
        size: u64,
        blob_id: u64,
    ) -> io::Result<Blob> {
        let mut inner = lock(&self.inner);
        let res = inner.next_res;
        inner.next_res += 1;
        let create = ResourceCreateBlob {
            blob_mem,
            blob_flags,
            blob_id,
            size,
        };
        if blob_mem == BLOB_MEM_GUEST {
            // As the kernel does for guest blobs: no context in the create command, then an
            // attach to the file's context.
            let len = page_align(size).ok_or_else(|| io::Error::other("blob too large"))? as usize;
            let mem = GuestMem::new(len)?;
            let iovec = RutabagaIovec {
                base: mem.ptr.as_ptr().cast(),
                len,
            };
            inner.guest.insert(res, mem);
            let r = inner.rutabaga()?;
            if let Err(e) = r.resource_create_blob(0, res, create, Some(vec![iovec]), None) {
                inner.guest.remove(&res);
                return Err(rerr(e));
            }
        } else {
            inner
                .rutabaga()?
                .resource_create_blob(CTX, res, create, None, None)
                .map_err(rerr)?;
        }
        inner
            .rutabaga()?
            .context_attach_resource(CTX, res)
            .map_err(rerr)?;
        inner.info.insert(
            res,
            ResourceInfo {
                res_handle: res,
                size: size.min(u32::MAX as u64) as u32,
                blob_mem,
            },
        );
        Ok(Blob {
            bo_handle: res,
            res_handle: res,
        })
    }

    fn map(&self, bo_handle: u32, size: usize) -> io::Result<Mapping> {
        let mut inner = lock(&self.inner);
        if let Some(mem) = inner.guest.get(&bo_handle) {
            if size > mem.len {
                return Err(io::Error::other("mapping beyond the blob"));
            }
            // SAFETY: guest memory stays mapped until the blob is closed, and the proxy drops
            // its mappings before it closes a blob.
            return Ok(unsafe { Mapping::new(mem.ptr, size, false) });
        }
        let raw = inner.rutabaga()?.map(bo_handle).map_err(rerr)?;
        let ptr = NonNull::new(raw.ptr as *mut u8).ok_or_else(|| io::Error::other("null map"))?;
        // SAFETY: rutabaga keeps this mapping until the resource is unreferenced (close), and
        // the proxy drops its mappings before it closes a blob.
        Ok(unsafe { Mapping::new(ptr, size.min(raw.size as usize), false) })
    }

    fn execbuffer(&self, cmd: &[u8], bo_handles: &[u32], ring_idx: u32) -> io::Result<()> {
        let mut inner = lock(&self.inner);
        let mut cmd = cmd.to_vec();
        inner
            .rutabaga()?
            .submit_command(CTX, &mut cmd, &[])
            .map_err(rerr)?;
        let polled = *lock(&self.fences.poll_mask) & (1u64 << (ring_idx as u64 & 63)) != 0;
        if bo_handles.is_empty() && !polled {
            return Ok(()); // the kernel makes no fence either
        }
        let fence_id = inner.next_fence;
        inner.next_fence += 1;
        {
            let mut st = lock(&self.fences.state);
            for bo in bo_handles {
                *st.pending.entry(*bo).or_insert(0) += 1;
            }
            st.attached.insert(fence_id, bo_handles.to_vec());
        }
        inner
            .rutabaga()?
            .create_fence(RutabagaFence {
                flags: RUTABAGA_FLAG_FENCE | RUTABAGA_FLAG_INFO_RING_IDX,
                fence_id,
                ctx_id: CTX,
                ring_idx: ring_idx as u8,
            })
            .map_err(rerr)
    }

    fn wait(&self, bo_handle: u32) -> io::Result<()> {
        let mut st = lock(&self.fences.state);
        while st.pending.contains_key(&bo_handle) {
            st = self.fences.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    fn resource_info(&self, bo_handle: u32) -> io::Result<ResourceInfo> {
        lock(&self.inner)
            .info
            .get(&bo_handle)
            .copied()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    fn close(&self, bo_handle: u32) -> io::Result<()> {
        let mut inner = lock(&self.inner);
        let r = inner.rutabaga()?;
        let _ = r.context_detach_resource(CTX, bo_handle);
        r.unref_resource(bo_handle).map_err(rerr)?;
        inner.info.remove(&bo_handle);
        inner.guest.remove(&bo_handle);
        Ok(())
    }

    fn event_fd(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    fn read_events(&self) -> io::Result<usize> {
        let mut buf = [0u8; 64];
        (&self.events).read(&mut buf)
    }
}

impl Drop for LoopbackGpu {
    fn drop(&mut self) {
        let mut inner = lock(&self.inner);
        // The context's worker thread writes into guest memory: stop it before freeing that.
        inner.rutabaga = None;
        inner.guest.clear();
    }
}
