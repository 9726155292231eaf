//! Bulkhead's VM manager, used inside the compositor: VM launch plans and the crosvm and QEMU
//! command lines they contain, the per-VM monitor process that outlives the compositor, the
//! guest agent client, and the manager that starts, stops, watches and re-adopts VMs.

pub mod agent;
pub mod bridge;
pub mod cli;
pub mod confine;
pub mod crosvm;
pub mod jail;
pub mod manager;
pub mod monitor;
pub mod paths;
pub mod plan;
pub mod qemu;
pub mod sandbox;
pub mod switch;
pub mod terminal;

pub use manager::{Manager, VmEvent};
pub use plan::{plan, HostEnv, LaunchPlan};
