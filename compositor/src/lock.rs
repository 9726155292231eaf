//! ext-session-lock: while locked, only the locker's surfaces are drawn and get input. A
//! locker that dies leaves the session locked (black) until a new locker unlocks it.

use smithay::output::Output;
use smithay::wayland::session_lock::LockSurface;

#[derive(Default)]
pub enum LockState {
    #[default]
    Unlocked,
    Locked {
        /// One lock surface per output, as the locker created them.
        surfaces: Vec<(Output, LockSurface)>,
    },
}

impl LockState {
    pub fn is_locked(&self) -> bool {
        matches!(self, LockState::Locked { .. })
    }

    /// The lock surface shown on `output`, if the locker made one that is still alive.
    pub fn surface_for(&self, output: &Output) -> Option<&LockSurface> {
        match self {
            LockState::Locked { surfaces } => surfaces
                .iter()
                .find(|(o, s)| o == output && s.alive())
                .map(|(_, s)| s),
            LockState::Unlocked => None,
        }
    }
}
