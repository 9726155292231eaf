//! Pointer lock and confinement (zwp_pointer_constraints_v1), under the input rules of the
//! threat model: the pointer is the user's, so a constraint holds only while its surface is
//! under the pointer in the window that holds the keyboard, with the session unlocked, the
//! launcher closed and no compositor grab running.
//!
//! The compositor takes a constraint back on every binding (`Super+Escape`, the fullscreen
//! escape, is the documented one; no client can inhibit bindings), on the session lock and on
//! every click elsewhere, as it ends grabs (`State::end_grabs`). A constraint taken back stays
//! off until the user clicks in its window again, so a VM cannot re-lock the pointer the moment
//! it is released. Leaving the surface with an absolute device ends it too (smithay sends the
//! `unlocked`/`unconfined` on leave).

use smithay::desktop::Window;
use smithay::input::pointer::PointerHandle;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::{Logical, Point};
use smithay::wayland::compositor::RegionAttributes;
use smithay::wayland::pointer_constraints::{
    with_pointer_constraint, PointerConstraint, PointerConstraintsHandler,
};

use crate::state::State;

impl PointerConstraintsHandler for State {
    fn new_constraint(&mut self, _surface: &WlSurface, _pointer: &PointerHandle<Self>) {
        self.update_pointer_constraint();
    }

    fn cursor_position_hint(
        &mut self,
        _surface: &WlSurface,
        _pointer: &PointerHandle<Self>,
        _location: Point<f64, Logical>,
    ) {
        // The hint is where the app draws its own cursor while locked. The compositor never
        // moves the pointer for an app, so it is not used to warp on unlock.
    }
}
smithay::delegate_pointer_constraints!(State);

/// What an active constraint does to relative motion.
pub enum Constrained {
    /// The pointer stays where it is; only relative motion reaches the app.
    Locked(WlSurface),
    /// The pointer moves only inside the surface (and its region, when it set one).
    Confined {
        surface: WlSurface,
        origin: Point<f64, Logical>,
        region: Option<RegionAttributes>,
    },
}

impl State {
    /// The surface under the pointer whose constraint may hold now, if any (module docs).
    fn constraint_allowed_on(&self, pointer: &PointerHandle<State>) -> Option<WlSurface> {
        // A move or resize clears the pointer focus for its length (so no constraint holds),
        // and a held button's implicit grab keeps it: a game's lock survives its fire button.
        if self.desk.lock.is_locked()
            || self.desk.launcher.is_some()
            || self.desk.dnd_domain.is_some()
        {
            return None;
        }
        let surface = pointer.current_focus()?;
        let window = self.desk.window_for_any_surface(&surface)?;
        let focused = self.desk.focused_window()?;
        if window != focused || self.desk.pointer_released.as_ref() == Some(&window) {
            return None;
        }
        Some(surface)
    }

    /// Activates the constraint of the surface under the pointer when the rules allow it, and
    /// deactivates the one that held so far when they no longer do. Called after every pointer
    /// motion, keyboard focus change and new constraint.
    pub fn update_pointer_constraint(&mut self) {
        let Some(pointer) = self.desk.seat.get_pointer() else {
            return;
        };
        let allowed = self.constraint_allowed_on(&pointer);
        if let Some(old) = self.desk.constrained_surface.take() {
            if Some(&old) != allowed.as_ref() {
                deactivate(&old, &pointer);
            } else {
                self.desk.constrained_surface = Some(old);
            }
        }
        let Some(surface) = allowed else {
            return;
        };
        let local = self.desk.pointer_location - self.desk.pointer_focus_origin.unwrap_or_default();
        let active = with_pointer_constraint(&surface, &pointer, |c| {
            let Some(c) = c else {
                return false;
            };
            if !c.is_active() {
                // A lock or confinement with a region starts only inside that region.
                if !c
                    .region()
                    .is_none_or(|r| r.contains(local.to_i32_floor::<i32>()))
                {
                    return false;
                }
                c.activate();
            }
            true
        });
        if active {
            self.desk.constrained_surface = Some(surface);
            self.desk.request_redraw();
        }
    }

    /// Takes back the constraint that holds, if any: it stays off until the user clicks in
    /// its window again.
    pub fn release_pointer_constraint(&mut self) {
        let Some(surface) = self.desk.constrained_surface.take() else {
            return;
        };
        if let Some(pointer) = self.desk.seat.get_pointer() {
            deactivate(&surface, &pointer);
        }
        self.desk.pointer_released = self.desk.window_for_any_surface(&surface);
        self.desk.request_redraw();
    }

    /// A press in `window` by the user: a constraint taken back from it may hold again.
    pub fn pointer_pressed_in(&mut self, window: &Window) {
        if self.desk.pointer_released.as_ref() == Some(window) {
            self.desk.pointer_released = None;
        }
    }

    /// The constraint that holds now, as relative motion must obey it.
    pub fn active_constraint(&self) -> Option<Constrained> {
        let surface = self.desk.constrained_surface.clone()?;
        let pointer = self.desk.seat.get_pointer()?;
        let origin = self.desk.pointer_focus_origin?;
        with_pointer_constraint(&surface, &pointer, |c| {
            let c = c.filter(|c| c.is_active())?;
            Some(match &*c {
                PointerConstraint::Locked(_) => Constrained::Locked(surface.clone()),
                PointerConstraint::Confined(confined) => Constrained::Confined {
                    surface: surface.clone(),
                    origin,
                    region: confined.region().cloned(),
                },
            })
        })
    }

    /// Where a confined pointer goes when asked to move from `from` to `to`: there if that is
    /// still on the surface (and in its region), else as far along one axis as allowed, else
    /// nowhere.
    pub fn confine_motion(
        &self,
        from: Point<f64, Logical>,
        to: Point<f64, Logical>,
        surface: &WlSurface,
        origin: Point<f64, Logical>,
        region: Option<&RegionAttributes>,
    ) -> Point<f64, Logical> {
        let inside = |p: Point<f64, Logical>| {
            self.pointer_focus(p).is_some_and(|(s, _)| &s == surface)
                && region.is_none_or(|r| r.contains((p - origin).to_i32_floor::<i32>()))
        };
        [to, (to.x, from.y).into(), (from.x, to.y).into()]
            .into_iter()
            .find(|p| inside(*p))
            .unwrap_or(from)
    }
}

fn deactivate(surface: &WlSurface, pointer: &PointerHandle<State>) {
    with_pointer_constraint(surface, pointer, |c| {
        if let Some(c) = c.filter(|c| c.is_active()) {
            c.deactivate();
        }
    });
}
