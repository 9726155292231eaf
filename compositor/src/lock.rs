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

    /// Whether `surface` is one of the locker's surfaces (the only ones that get input
    /// while locked).
    pub fn has_surface(
        &self,
        surface: Option<&smithay::reexports::wayland_server::protocol::wl_surface::WlSurface>,
    ) -> bool {
        match (self, surface) {
            (LockState::Locked { surfaces }, Some(s)) => {
                surfaces.iter().any(|(_, l)| l.wl_surface() == s)
            }
            _ => false,
        }
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
