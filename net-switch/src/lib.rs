//! bulkhead-switch: one process per VM network, a vhost-user net backend per VM port.
//!
//! - [`policy`]: which frames a port may send and where they go (pure code);
//! - [`ring`]: single-producer single-consumer frame rings in shared memory between ports;
//! - [`counters`]: per-port counters in a shared page;
//! - [`shm`]: the memfd mappings under both.

pub mod backend;
pub mod child;
pub mod control;
pub mod counters;
pub mod fuzzing;
pub mod harness;
pub mod policy;
pub mod relay;
pub mod ring;
pub mod sandbox;
pub mod shm;
pub mod supervisor;
