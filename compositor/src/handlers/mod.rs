//! One file per protocol handler, each `impl` next to its `delegate_*!`.

pub mod bounded;
mod compositor;
pub mod data_control;
mod idle;
mod layer_shell;
mod misc;
pub mod output_management;
pub mod pointer_constraints;
pub mod screencopy;
mod seat;
mod session_lock;
pub mod xdg_shell;
