//! xdg-shell and xdg-decoration: every toplevel gets server-side decorations, always.

use smithay::desktop::{
    find_popup_root_surface, get_popup_toplevel_coords, PopupKeyboardGrab, PopupKind, PopupPointerGrab,
    PopupUngrabStrategy,
};
use smithay::input::pointer::Focus;
use smithay::reexports::wayland_protocols::xdg::decoration::zv1::server::zxdg_toplevel_decoration_v1::Mode as DecorationMode;
use smithay::reexports::wayland_server::protocol::{wl_output, wl_seat};
use smithay::utils::{Rectangle, Serial};
use smithay::wayland::shell::xdg::decoration::XdgDecorationHandler;
use smithay::wayland::shell::xdg::{
    PopupSurface, PositionerState, ToplevelSurface, XdgShellHandler, XdgShellState,
};
use smithay::reexports::wayland_protocols_misc::server_decoration::server::org_kde_kwin_server_decoration::{
    Mode as KdeMode, OrgKdeKwinServerDecoration,
};
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::{Resource, WEnum};
use smithay::wayland::shell::kde::decoration::{KdeDecorationHandler, KdeDecorationState};
use smithay::{delegate_kde_decoration, delegate_xdg_decoration, delegate_xdg_shell};

use crate::domain::client_domain;
use crate::input::GrabStart;
use crate::shell::meta;
use crate::state::State;

impl XdgShellHandler for State {
    fn xdg_shell_state(&mut self) -> &mut XdgShellState {
        &mut self.desk.xdg_shell_state
    }

    fn new_toplevel(&mut self, surface: ToplevelSurface) {
        self.desk.add_toplevel(surface);
    }

    fn toplevel_destroyed(&mut self, surface: ToplevelSurface) {
        self.remove_window(surface.wl_surface());
    }

    fn new_popup(&mut self, surface: PopupSurface, positioner: PositionerState) {
        let geometry = self.constrained_popup_geometry(&surface, &positioner);
        surface.with_pending_state(|s| {
            s.geometry = geometry;
            s.positioner = positioner;
        });
        if let Err(e) = self.desk.popups.track_popup(PopupKind::Xdg(surface)) {
            tracing::warn!("popup not tracked: {e}");
        }
    }

    fn reposition_request(
        &mut self,
        surface: PopupSurface,
        positioner: PositionerState,
        token: u32,
    ) {
        let geometry = self.constrained_popup_geometry(&surface, &positioner);
        surface.with_pending_state(|s| {
            s.geometry = geometry;
            s.positioner = positioner;
        });
        surface.send_repositioned(token);
    }

    fn grab(&mut self, surface: PopupSurface, _seat: wl_seat::WlSeat, serial: Serial) {
        let kind = PopupKind::Xdg(surface.clone());
        let Some(client) = surface.wl_surface().client() else {
            return;
        };
        let domain = client_domain(&client);
        // No grab while locked or while the launcher is open; a VM's only with its own latest
        // input serial, while its domain holds the keyboard, from a focused, mapped parent.
        let allowed = !self.desk.lock.is_locked()
            && self.desk.launcher.is_none()
            && (domain.is_host() || self.vm_popup_grab_allowed(&kind, &client, serial));
        if !allowed {
            tracing::info!(domain = domain.name(), "refused a popup grab");
            surface.send_popup_done();
            return;
        }
        let Ok(root) = find_popup_root_surface(&kind) else {
            return;
        };
        let seat = self.desk.seat.clone();
        let Ok(mut grab) = self
            .desk
            .popups
            .grab_popup::<State>(root, kind, &seat, serial)
        else {
            return;
        };
        if let Some(keyboard) = seat.get_keyboard() {
            if keyboard.is_grabbed()
                && !(keyboard.has_grab(serial)
                    || keyboard.has_grab(grab.previous_serial().unwrap_or(serial)))
            {
                grab.ungrab(PopupUngrabStrategy::All);
                return;
            }
            keyboard.set_focus(self, grab.current_grab(), serial);
            keyboard.set_grab(self, PopupKeyboardGrab::new(&grab), serial);
        }
        if let Some(pointer) = seat.get_pointer() {
            if pointer.is_grabbed()
                && !(pointer.has_grab(serial)
                    || pointer.has_grab(grab.previous_serial().unwrap_or_else(|| grab.serial())))
            {
                grab.ungrab(PopupUngrabStrategy::All);
                return;
            }
            pointer.set_grab(self, PopupPointerGrab::new(&grab), serial, Focus::Keep);
        }
        self.desk.popup_grab = Some(grab);
    }

    fn move_request(&mut self, surface: ToplevelSurface, _seat: wl_seat::WlSeat, serial: Serial) {
        self.start_client_grab(surface.wl_surface(), serial, GrabStart::Move);
    }

    fn resize_request(
        &mut self,
        surface: ToplevelSurface,
        _seat: wl_seat::WlSeat,
        serial: Serial,
        edges: smithay::reexports::wayland_protocols::xdg::shell::server::xdg_toplevel::ResizeEdge,
    ) {
        self.start_client_grab(
            surface.wl_surface(),
            serial,
            GrabStart::Resize(edges.into()),
        );
    }

    fn maximize_request(&mut self, surface: ToplevelSurface) {
        match self.desk.window_for_surface(surface.wl_surface()) {
            Some(w) => self.desk.set_maximized(&w, true),
            None => {
                surface.send_configure();
            }
        }
    }

    fn unmaximize_request(&mut self, surface: ToplevelSurface) {
        if let Some(w) = self.desk.window_for_surface(surface.wl_surface()) {
            self.desk.set_maximized(&w, false);
        }
    }

    fn fullscreen_request(
        &mut self,
        surface: ToplevelSurface,
        output: Option<wl_output::WlOutput>,
    ) {
        let output = output
            .as_ref()
            .and_then(smithay::output::Output::from_resource);
        match self.desk.window_for_surface(surface.wl_surface()) {
            Some(w) if meta(&w).state.borrow().mapped => self.desk.set_fullscreen(&w, true, output),
            Some(w) => {
                // Not mapped yet: remember the wish, apply it when it maps.
                meta(&w).state.borrow_mut().wants_fullscreen = true;
                surface.send_configure();
            }
            None => {}
        }
    }

    fn unfullscreen_request(&mut self, surface: ToplevelSurface) {
        if let Some(w) = self.desk.window_for_surface(surface.wl_surface()) {
            meta(&w).state.borrow_mut().wants_fullscreen = false;
            self.desk.set_fullscreen(&w, false, None);
        }
    }

    fn minimize_request(&mut self, surface: ToplevelSurface) {
        if let Some(w) = self.desk.window_for_surface(surface.wl_surface()) {
            self.minimize_window(&w);
        }
    }

    fn title_changed(&mut self, surface: ToplevelSurface) {
        if let Some(w) = self.desk.window_for_surface(surface.wl_surface()) {
            crate::shell::update_foreign(&w);
        }
        self.desk.request_redraw();
    }

    fn app_id_changed(&mut self, surface: ToplevelSurface) {
        self.title_changed(surface);
    }
}

impl State {
    /// The popup's geometry, moved so that it stays on its parent's output.
    fn constrained_popup_geometry(
        &self,
        surface: &PopupSurface,
        positioner: &PositionerState,
    ) -> Rectangle<i32, smithay::utils::Logical> {
        let kind = PopupKind::Xdg(surface.clone());
        let fallback = positioner.get_geometry();
        let Ok(root) = find_popup_root_surface(&kind) else {
            return fallback;
        };
        let Some(window) = self.desk.window_for_surface(&root) else {
            return fallback;
        };
        let Some(win_loc) = self.desk.space.element_location(&window) else {
            return fallback;
        };
        let Some(output) = self.desk.window_output(&window) else {
            return fallback;
        };
        let Some(out_geo) = self.desk.space.output_geometry(&output) else {
            return fallback;
        };
        // The positioner works relative to the popup's parent: move the output's rectangle
        // into that coordinate system (window content origin, then nested popup offsets).
        let mut target = out_geo;
        target.loc -= win_loc;
        target.loc -= get_popup_toplevel_coords(&kind);
        let mut geo = positioner.get_unconstrained_geometry(target);
        // As Qubes does with override-redirect windows: no popup may cover the whole screen.
        geo.size.w = geo.size.w.min(out_geo.size.w * 9 / 10).max(1);
        geo.size.h = geo.size.h.min(out_geo.size.h * 9 / 10).max(1);
        geo
    }
}

impl XdgDecorationHandler for State {
    fn new_decoration(&mut self, toplevel: ToplevelSurface) {
        toplevel.with_pending_state(|s| s.decoration_mode = Some(DecorationMode::ServerSide));
        if toplevel.is_initial_configure_sent() {
            toplevel.send_pending_configure();
        }
    }

    fn request_mode(&mut self, toplevel: ToplevelSurface, mode: DecorationMode) {
        // Whatever the client asks, the compositor draws the frame.
        record_wish(toplevel.wl_surface(), mode == DecorationMode::ClientSide);
        XdgDecorationHandler::new_decoration(self, toplevel);
    }

    fn unset_mode(&mut self, toplevel: ToplevelSurface) {
        record_wish(toplevel.wl_surface(), false);
        XdgDecorationHandler::new_decoration(self, toplevel);
    }
}

impl KdeDecorationHandler for State {
    fn kde_decoration_state(&self) -> &KdeDecorationState {
        &self.desk.kde_decoration_state
    }

    fn new_decoration(&mut self, _surface: &WlSurface, decoration: &OrgKdeKwinServerDecoration) {
        decoration.mode(KdeMode::Server);
    }

    fn request_mode(
        &mut self,
        surface: &WlSurface,
        decoration: &OrgKdeKwinServerDecoration,
        mode: WEnum<KdeMode>,
    ) {
        record_wish(surface, mode == WEnum::Value(KdeMode::Client));
        // Whatever the client asks, the compositor draws the frame. It says so once per
        // surface: GTK 3 asks for client mode again on every answer, and an answer to each
        // request made an endless exchange (found recording gtk3-demo for the fuzz corpus).
        let first = smithay::wayland::compositor::with_states(surface, |s| {
            s.data_map
                .insert_if_missing_threadsafe(KdeModeAnswered::default);
            s.data_map
                .get::<KdeModeAnswered>()
                .is_some_and(|a| !a.0.swap(true, std::sync::atomic::Ordering::Relaxed))
        });
        if first {
            decoration.mode(KdeMode::Server);
        }
    }
}

/// Whether a toplevel's client last asked to draw its own decorations (xdg-decoration or
/// KDE client mode): such an app draws a title bar inside our frame (`bulkhead msg windows`
/// says so).
#[derive(Default)]
struct DecorationWish(std::sync::atomic::AtomicBool);

fn record_wish(surface: &WlSurface, client_side: bool) {
    smithay::wayland::compositor::with_states(surface, |s| {
        s.data_map
            .insert_if_missing_threadsafe(DecorationWish::default);
        if let Some(w) = s.data_map.get::<DecorationWish>() {
            w.0.store(client_side, std::sync::atomic::Ordering::Relaxed);
        }
    });
}

/// Whether the client of `surface` last asked to draw its own decorations.
pub fn wants_client_decorations(surface: &WlSurface) -> bool {
    smithay::wayland::compositor::with_states(surface, |s| {
        s.data_map
            .get::<DecorationWish>()
            .is_some_and(|w| w.0.load(std::sync::atomic::Ordering::Relaxed))
    })
}

/// Marks a surface whose KDE decoration request was answered.
#[derive(Default)]
struct KdeModeAnswered(std::sync::atomic::AtomicBool);

delegate_kde_decoration!(State);
delegate_xdg_shell!(State);
delegate_xdg_decoration!(State);
