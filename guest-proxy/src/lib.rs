//! The guest side of Bulkhead: the agent that runs commands for the host, and the Wayland
//! proxy that forwards guest apps to the compositor over cross-domain or vsock.

pub mod agent;
pub mod crossdomain;
/// The invariants of the `wire` fuzz target (`guest-proxy/fuzz`), for it and the corpus test.
#[doc(hidden)]
pub mod fuzzing;
pub mod passwd;
pub mod shm;
pub mod virtgpu;
pub mod wire;
pub mod wlproxy;
pub mod xselection;
pub mod xwayland;
pub mod xwm;
