//! The guest side of Bulkhead: the agent that runs commands for the host, and the Wayland
//! proxy that forwards guest apps to the compositor over cross-domain or vsock.

pub mod agent;
pub mod crossdomain;
pub mod passwd;
pub mod shm;
pub mod virtgpu;
pub mod wire;
pub mod wlproxy;
