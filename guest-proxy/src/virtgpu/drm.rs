//! The real device: ioctls on a guest's virtio-gpu render node. A thin layer: each trait
//! method is one ioctl (map adds the mmap). The structures follow the kernel's
//! `include/uapi/drm/virtgpu_drm.h`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::{Blob, Mapping, ResourceInfo, VirtGpu, CAPSET_CROSS_DOMAIN};

#[repr(C)]
#[derive(Default)]
struct Map {
    offset: u64,
    handle: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct Execbuffer {
    flags: u32,
    size: u32,
    command: u64,
    bo_handles: u64,
    num_bo_handles: u32,
    fence_fd: i32,
    ring_idx: u32,
    syncobj_stride: u32,
    num_in_syncobjs: u32,
    num_out_syncobjs: u32,
    in_syncobjs: u64,
    out_syncobjs: u64,
}

#[repr(C)]
#[derive(Default)]
struct GetParam {
    param: u64,
    value: u64,
}

#[repr(C)]
#[derive(Default)]
struct ResourceInfoArg {
    bo_handle: u32,
    res_handle: u32,
    size: u32,
    blob_mem: u32,
}

#[repr(C)]
#[derive(Default)]
struct Wait {
    handle: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct CreateBlob {
    blob_mem: u32,
    blob_flags: u32,
    bo_handle: u32,
    res_handle: u32,
    size: u64,
    pad: u32,
    cmd_size: u32,
    cmd: u64,
    blob_id: u64,
}

#[repr(C)]
struct SetParam {
    param: u64,
    value: u64,
}

#[repr(C)]
#[derive(Default)]
struct ContextInit {
    num_params: u32,
    pad: u32,
    ctx_set_params: u64,
}

#[repr(C)]
#[derive(Default)]
struct GemClose {
    handle: u32,
    pad: u32,
}

const DRM: u8 = b'd';
const CMD: u8 = 0x40;
nix::ioctl_readwrite!(virtgpu_map, DRM, CMD + 0x01, Map);
nix::ioctl_readwrite!(virtgpu_execbuffer, DRM, CMD + 0x02, Execbuffer);
nix::ioctl_readwrite!(virtgpu_getparam, DRM, CMD + 0x03, GetParam);
nix::ioctl_readwrite!(virtgpu_resource_info, DRM, CMD + 0x05, ResourceInfoArg);
nix::ioctl_readwrite!(virtgpu_wait, DRM, CMD + 0x08, Wait);
nix::ioctl_readwrite!(virtgpu_create_blob, DRM, CMD + 0x0a, CreateBlob);
nix::ioctl_readwrite!(virtgpu_context_init, DRM, CMD + 0x0b, ContextInit);
nix::ioctl_write_ptr!(gem_close, DRM, 0x09, GemClose);

const EXECBUF_RING_IDX: u32 = 0x04;
const PARAM_CONTEXT_INIT: u64 = 6;
const PARAM_SUPPORTED_CAPSET_IDS: u64 = 7;
const CONTEXT_PARAM_CAPSET_ID: u64 = 1;
const CONTEXT_PARAM_NUM_RINGS: u64 = 2;
const CONTEXT_PARAM_POLL_RINGS_MASK: u64 = 3;
const EVENT_FENCE_SIGNALED: u32 = 0x9000_0000;

/// A virtio-gpu render node, opened.
pub struct DrmGpu {
    file: File,
}

fn err(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// The render nodes of the virtio-gpu driver, found through sysfs under `sys_drm`
/// (`/sys/class/drm`).
pub fn virtio_gpu_nodes() -> Vec<PathBuf> {
    virtio_gpu_nodes_in(Path::new("/sys/class/drm"))
        .into_iter()
        .map(|n| Path::new("/dev/dri").join(n))
        .collect()
}

/// The names of the render nodes under `sys_drm` whose device is driven by virtio_gpu. On
/// virtio-mmio the node's device is the virtio device itself; on PCI (QEMU's and crosvm's
/// virtio-gpu-pci) it is the PCI function, driven by virtio-pci, with the virtio device
/// (`virtioN`, driven by virtio_gpu) under it.
fn virtio_gpu_nodes_in(sys_drm: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(sys_drm) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("renderD"))
        .collect();
    names.sort();
    let is_virtio_gpu = |dev: &Path| {
        std::fs::read_link(dev.join("driver"))
            .ok()
            .is_some_and(|d| d.file_name().is_some_and(|f| f == "virtio_gpu"))
    };
    names
        .into_iter()
        .filter(|n| {
            let dev = sys_drm.join(n).join("device");
            is_virtio_gpu(&dev)
                || std::fs::read_dir(&dev).is_ok_and(|entries| {
                    entries.flatten().any(|e| {
                        e.file_name().to_string_lossy().starts_with("virtio")
                            && is_virtio_gpu(&e.path())
                    })
                })
        })
        .collect()
}

impl DrmGpu {
    pub fn open(path: &Path) -> io::Result<DrmGpu> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        Ok(DrmGpu { file })
    }

    /// The first virtio-gpu render node whose device offers cross-domain contexts.
    pub fn find_cross_domain() -> io::Result<PathBuf> {
        let nodes = virtio_gpu_nodes();
        for n in &nodes {
            if let Ok(g) = DrmGpu::open(n) {
                if g.param(PARAM_CONTEXT_INIT).unwrap_or(0) != 0
                    && g.param(PARAM_SUPPORTED_CAPSET_IDS).unwrap_or(0) & (1 << CAPSET_CROSS_DOMAIN)
                        != 0
                {
                    return Ok(n.clone());
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            if nodes.is_empty() {
                "no virtio-gpu render node".to_string()
            } else {
                format!("no cross-domain context type on {nodes:?}")
            },
        ))
    }

    fn param(&self, param: u64) -> io::Result<u64> {
        let mut value: u64 = 0;
        let mut arg = GetParam {
            param,
            value: &mut value as *mut u64 as u64,
        };
        // SAFETY: `arg` is a valid drm_virtgpu_getparam; the kernel writes an int into `value`,
        // which is 8 bytes and lives through the call.
        unsafe { virtgpu_getparam(self.file.as_raw_fd(), &mut arg) }.map_err(err)?;
        Ok(value)
    }
}

impl VirtGpu for DrmGpu {
    fn context_init(&self, capset_id: u32, num_rings: u32, poll_rings_mask: u64) -> io::Result<()> {
        let params = [
            SetParam {
                param: CONTEXT_PARAM_CAPSET_ID,
                value: capset_id as u64,
            },
            SetParam {
                param: CONTEXT_PARAM_NUM_RINGS,
                value: num_rings as u64,
            },
            SetParam {
                param: CONTEXT_PARAM_POLL_RINGS_MASK,
                value: poll_rings_mask,
            },
        ];
        let mut arg = ContextInit {
            num_params: params.len() as u32,
            pad: 0,
            ctx_set_params: params.as_ptr() as u64,
        };
        // SAFETY: `arg` points at `params`, an array of `num_params` set-param structs that
        // outlives the call; the kernel only reads it.
        unsafe { virtgpu_context_init(self.file.as_raw_fd(), &mut arg) }.map_err(err)?;
        Ok(())
    }

    fn create_blob(
        &self,
        blob_mem: u32,
        blob_flags: u32,
        size: u64,
        blob_id: u64,
    ) -> io::Result<Blob> {
        let mut arg = CreateBlob {
            blob_mem,
            blob_flags,
            size,
            blob_id,
            ..Default::default()
        };
        // SAFETY: `arg` is a valid drm_virtgpu_resource_create_blob with no command attached.
        unsafe { virtgpu_create_blob(self.file.as_raw_fd(), &mut arg) }.map_err(err)?;
        Ok(Blob {
            bo_handle: arg.bo_handle,
            res_handle: arg.res_handle,
        })
    }

    fn map(&self, bo_handle: u32, size: usize) -> io::Result<Mapping> {
        let mut arg = Map {
            handle: bo_handle,
            ..Default::default()
        };
        // SAFETY: `arg` is a valid drm_virtgpu_map; the kernel fills in `offset`.
        unsafe { virtgpu_map(self.file.as_raw_fd(), &mut arg) }.map_err(err)?;
        // SAFETY: a fresh shared mapping of the device file at the offset the kernel gave for
        // this buffer object; nothing else refers to the address range we get back.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                arg.offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        // SAFETY: `ptr` is our own mapping of `size` bytes, unmapped only by the Mapping.
        Ok(unsafe { Mapping::new(ptr, size, true) })
    }

    fn execbuffer(&self, cmd: &[u8], bo_handles: &[u32], ring_idx: u32) -> io::Result<()> {
        let mut arg = Execbuffer {
            flags: EXECBUF_RING_IDX,
            size: cmd.len() as u32,
            command: cmd.as_ptr() as u64,
            bo_handles: bo_handles.as_ptr() as u64,
            num_bo_handles: bo_handles.len() as u32,
            fence_fd: -1,
            ring_idx,
            ..Default::default()
        };
        // SAFETY: `command` and `bo_handles` point at live slices of the given lengths; the
        // kernel copies them during the call.
        unsafe { virtgpu_execbuffer(self.file.as_raw_fd(), &mut arg) }.map_err(err)?;
        Ok(())
    }

    fn wait(&self, bo_handle: u32) -> io::Result<()> {
        let mut arg = Wait {
            handle: bo_handle,
            flags: 0,
        };
        loop {
            // SAFETY: `arg` is a valid drm_virtgpu_3d_wait.
            match unsafe { virtgpu_wait(self.file.as_raw_fd(), &mut arg) } {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EBUSY) => continue,
                Err(e) => return Err(err(e)),
            }
        }
    }

    fn resource_info(&self, bo_handle: u32) -> io::Result<ResourceInfo> {
        let mut arg = ResourceInfoArg {
            bo_handle,
            ..Default::default()
        };
        // SAFETY: `arg` is a valid drm_virtgpu_resource_info; the kernel fills it in.
        unsafe { virtgpu_resource_info(self.file.as_raw_fd(), &mut arg) }.map_err(err)?;
        Ok(ResourceInfo {
            res_handle: arg.res_handle,
            size: arg.size,
            blob_mem: arg.blob_mem,
        })
    }

    fn close(&self, bo_handle: u32) -> io::Result<()> {
        let arg = GemClose {
            handle: bo_handle,
            pad: 0,
        };
        // SAFETY: `arg` is a valid drm_gem_close; the kernel only reads it.
        unsafe { gem_close(self.file.as_raw_fd(), &arg) }.map_err(err)?;
        Ok(())
    }

    fn event_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn read_events(&self) -> io::Result<usize> {
        let mut buf = [0u8; 256];
        let n = (&self.file).read(&mut buf)?;
        let mut at = 0usize;
        let mut fences = 0;
        // struct drm_event { u32 type; u32 length; } followed by the rest of the event.
        while at + 8 <= n {
            let kind = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            let len =
                u32::from_ne_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]) as usize;
            if kind == EVENT_FENCE_SIGNALED {
                fences += 1;
            }
            if len < 8 {
                break;
            }
            at += len;
        }
        Ok(fences)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_match_the_kernel_abi() {
        use std::mem::size_of;
        assert_eq!(size_of::<Map>(), 16);
        assert_eq!(size_of::<Execbuffer>(), 64);
        assert_eq!(size_of::<GetParam>(), 16);
        assert_eq!(size_of::<ResourceInfoArg>(), 16);
        assert_eq!(size_of::<Wait>(), 8);
        assert_eq!(size_of::<CreateBlob>(), 48);
        assert_eq!(size_of::<ContextInit>(), 16);
        assert_eq!(size_of::<SetParam>(), 16);
        assert_eq!(size_of::<GemClose>(), 8);
        // DRM_IOWR('d', 0x42, 64 bytes): what libdrm calls DRM_IOCTL_VIRTGPU_EXECBUFFER.
        assert_eq!(
            nix::request_code_readwrite!(DRM, CMD + 0x02, 64),
            0xc040_6442
        );
        assert_eq!(
            nix::request_code_readwrite!(DRM, CMD + 0x0a, 48),
            0xc030_644a
        );
    }

    /// The sysfs layouts a guest kernel shows (as read in a Debian 6.12 guest on QEMU's
    /// virtio-gpu-rutabaga-pci): a PCI function driven by virtio-pci with the virtio_gpu
    /// device under it, and virtio-mmio's node whose device is the virtio device itself; other
    /// drivers' nodes are not taken.
    #[test]
    fn virtio_gpu_render_nodes_are_found_on_pci_and_mmio() {
        use std::os::unix::fs::symlink;
        let sys = tempfile::tempdir().expect("tempdir");
        let root = sys.path();
        let drivers = root.join("bus");
        for d in ["virtio-pci", "virtio_gpu", "i915"] {
            std::fs::create_dir_all(drivers.join(d)).expect("driver dir");
        }
        let drm = root.join("class/drm");
        // renderD128: PCI, the virtio device below the PCI function.
        let pci = root.join("devices/pci0000:00/0000:01:00.0");
        std::fs::create_dir_all(pci.join("virtio4")).expect("pci dirs");
        symlink(drivers.join("virtio-pci"), pci.join("driver")).expect("link");
        symlink(drivers.join("virtio_gpu"), pci.join("virtio4/driver")).expect("link");
        // renderD129: virtio-mmio, the virtio device itself.
        let mmio = root.join("devices/platform/virtio-mmio.0/virtio0");
        std::fs::create_dir_all(&mmio).expect("mmio dirs");
        symlink(drivers.join("virtio_gpu"), mmio.join("driver")).expect("link");
        // renderD130: another GPU.
        let other = root.join("devices/pci0000:00/0000:00:02.0");
        std::fs::create_dir_all(&other).expect("other dirs");
        symlink(drivers.join("i915"), other.join("driver")).expect("link");
        for (node, dev) in [
            ("renderD128", &pci),
            ("renderD129", &mmio),
            ("renderD130", &other),
        ] {
            std::fs::create_dir_all(drm.join(node)).expect("node dir");
            symlink(dev, drm.join(node).join("device")).expect("link");
        }
        std::fs::create_dir_all(drm.join("card0")).expect("card dir");
        assert_eq!(virtio_gpu_nodes_in(&drm), ["renderD128", "renderD129"]);
    }

    #[test]
    fn no_render_node_is_a_clear_error() {
        // This machine (and CI) has no virtio-gpu; the proxy then says why it falls back.
        if virtio_gpu_nodes().is_empty() {
            let e = DrmGpu::find_cross_domain().unwrap_err();
            assert!(e.to_string().contains("virtio-gpu"), "{e}");
        }
    }
}
