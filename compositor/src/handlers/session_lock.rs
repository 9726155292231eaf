//! ext-session-lock for host lockers (swaylock). See `crate::lock` for the policy.

use smithay::delegate_session_lock;
use smithay::output::Output;
use smithay::reexports::wayland_server::protocol::wl_output::WlOutput;
use smithay::wayland::session_lock::{
    LockSurface, SessionLockHandler, SessionLockManagerState, SessionLocker,
};

use crate::lock::LockState;
use crate::state::State;

impl SessionLockHandler for State {
    fn lock_state(&mut self) -> &mut SessionLockManagerState {
        &mut self.desk.session_lock_state
    }

    fn lock(&mut self, confirmation: SessionLocker) {
        // From here on only lock surfaces are drawn and get input; confirm right away.
        if !self.desk.lock.is_locked() {
            self.desk.lock = LockState::Locked {
                surfaces: Vec::new(),
            };
        }
        // No grab survives the lock: a menu left open must not read the password; and no
        // inhibitor keeps a locked screen awake.
        self.end_grabs();
        self.update_idle_inhibit();
        if let Some(kb) = self.desk.keyboard() {
            let serial = self.desk.next_serial();
            kb.set_focus(self, None, serial);
        }
        confirmation.lock();
        self.desk.request_redraw();
    }

    fn unlock(&mut self) {
        self.desk.lock = LockState::Unlocked;
        self.update_idle_inhibit();
        if let Some(w) = self.desk.focus_order.first().cloned() {
            self.focus_window(&w);
        }
        self.desk.request_redraw();
    }

    fn new_surface(&mut self, surface: LockSurface, wl_output: WlOutput) {
        let Some(output) = Output::from_resource(&wl_output) else {
            return;
        };
        let Some(geo) = self.desk.space.output_geometry(&output) else {
            return;
        };
        surface
            .with_pending_state(|s| s.size = Some((geo.size.w as u32, geo.size.h as u32).into()));
        surface.send_configure();
        let focus = surface.wl_surface().clone();
        if let LockState::Locked { surfaces } = &mut self.desk.lock {
            surfaces.retain(|(o, s)| o != &output && s.alive());
            surfaces.push((output, surface));
        }
        if let Some(kb) = self.desk.keyboard() {
            let serial = self.desk.next_serial();
            kb.set_focus(self, Some(focus), serial);
        }
        self.desk.request_redraw();
    }
}

delegate_session_lock!(State);
