//! The guest side of Bulkhead: the agent that runs commands for the host (and, with the
//! graphics work, the Wayland proxy).

pub mod agent;
pub mod passwd;
pub mod wire;
pub mod wlproxy;
