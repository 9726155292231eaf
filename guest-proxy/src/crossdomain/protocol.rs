//! The cross-domain wire format: rutabaga_gfx's `cross_domain_protocol`, as commands and ring
//! messages of at most 4096 bytes.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub(super) const CMD_INIT: u8 = 1;
pub(super) const CMD_GET_IMAGE_REQUIREMENTS: u8 = 2;
pub(super) const CMD_POLL: u8 = 3;
pub(super) const CMD_SEND: u8 = 4;
pub(super) const CMD_RECEIVE: u8 = 5;
pub(super) const CMD_READ: u8 = 6;
pub(super) const CMD_WRITE: u8 = 7;
pub(super) const CHANNEL_TYPE_WAYLAND: u32 = 1;
pub(super) const MAX_IDENTIFIERS: usize = 28;
pub(super) const ID_TYPE_VIRTGPU_BLOB: u32 = 1;
pub(super) const ID_TYPE_READ_PIPE: u32 = 3;
pub(super) const ID_TYPE_WRITE_PIPE: u32 = 4;
pub(super) const QUERY_RING: u32 = 0;
pub(super) const CHANNEL_RING: u32 = 1;
/// The host numbers the read pipes of a context from here, one up for each; the guest names
/// the id in its SEND.
pub(super) const PIPE_READ_START: u32 = 0x8000_0000;
/// Every command and every ring message fits in this.
pub(super) const MAX_COMMAND: usize = 4096;
pub(super) const RING_SIZE: u64 = 4096;
pub(super) const DRM_FORMAT_R8: u32 = u32::from_le_bytes(*b"R8  ");
/// Gralloc use flags: linear, read and written by the CPU.
pub(super) const GRALLOC_LINEAR_SW: u32 = (1 << 4) | (1 << 9) | (1 << 11);

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(super) struct Header {
    pub(super) cmd: u8,
    pub(super) ring_idx: u8,
    pub(super) cmd_size: u16,
    pub(super) pad: u32,
}

impl Header {
    pub(super) fn new<T>(cmd: u8, ring: u32, extra: usize) -> Header {
        Header {
            cmd,
            ring_idx: ring as u8,
            cmd_size: (std::mem::size_of::<T>() + extra) as u16,
            pad: 0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(super) struct Init {
    pub(super) hdr: Header,
    pub(super) query_ring_id: u32,
    pub(super) channel_ring_id: u32,
    pub(super) channel_type: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(super) struct GetImageRequirements {
    pub(super) hdr: Header,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) drm_format: u32,
    pub(super) flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(super) struct ImageRequirements {
    pub(super) strides: [u32; 4],
    pub(super) offsets: [u32; 4],
    pub(super) modifier: u64,
    pub(super) size: u64,
    pub(super) blob_id: u32,
    pub(super) map_info: u32,
    pub(super) memory_idx: i32,
    pub(super) physical_device_idx: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(super) struct SendReceive {
    pub(super) hdr: Header,
    pub(super) num_identifiers: u32,
    pub(super) opaque_data_size: u32,
    pub(super) identifiers: [u32; MAX_IDENTIFIERS],
    pub(super) identifier_types: [u32; MAX_IDENTIFIERS],
    pub(super) identifier_sizes: [u32; MAX_IDENTIFIERS],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub(super) struct ReadWrite {
    pub(super) hdr: Header,
    pub(super) identifier: u32,
    pub(super) hang_up: u32,
    pub(super) opaque_data_size: u32,
    pub(super) pad: u32,
}
