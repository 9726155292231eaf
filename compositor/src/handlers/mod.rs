//! One file per protocol handler, each `impl` next to its `delegate_*!`.

pub mod bounded;
mod compositor;
pub mod data_control;
mod idle;
mod layer_shell;
mod misc;
pub mod output_management;
pub mod screencopy;
mod seat;
mod session_lock;
mod xdg_shell;
