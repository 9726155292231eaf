//! The small protocols: outputs, viewporter, fractional scale, presentation time,
//! xdg-activation (never across domains), cursor shape, idle inhibit, virtual keyboard and
//! security context (both host-only through their global filters).

use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Resource;
use smithay::wayland::compositor::with_states;
use smithay::wayland::fractional_scale::{with_fractional_scale, FractionalScaleHandler};
use smithay::wayland::idle_inhibit::IdleInhibitHandler;
use smithay::wayland::output::OutputHandler;
use smithay::wayland::security_context::{
    SecurityContext, SecurityContextHandler, SecurityContextListenerSource,
};
use smithay::wayland::tablet_manager::TabletSeatHandler;
use smithay::wayland::xdg_activation::{
    XdgActivationHandler, XdgActivationState, XdgActivationToken, XdgActivationTokenData,
};
use smithay::{
    delegate_cursor_shape, delegate_fractional_scale, delegate_idle_inhibit, delegate_output,
    delegate_presentation, delegate_security_context, delegate_viewporter,
    delegate_virtual_keyboard_manager, delegate_xdg_activation,
};

use crate::domain::{client_id_domain, ClientState, Domain, SerialUse};
use crate::focus::LaunchToken;
use crate::shell::meta;
use crate::shell::root_surface;
use crate::state::State;

impl OutputHandler for State {}
delegate_output!(State);
smithay::delegate_relative_pointer!(State);
delegate_viewporter!(State);
delegate_presentation!(State);
// Solid-colour buffers (GTK 4 and browsers draw backgrounds with them), and content-type
// hints (stored by smithay, not acted on): both carry only values, no memory of the client's.
smithay::delegate_single_pixel_buffer!(State);
smithay::delegate_content_type!(State);
delegate_virtual_keyboard_manager!(State);

impl FractionalScaleHandler for State {
    fn new_fractional_scale(&mut self, surface: WlSurface) {
        // Tell the client the scale of the output its window is on.
        let root = root_surface(&surface);
        let scale = self
            .desk
            .window_for_any_surface(&root)
            .and_then(|w| self.desk.window_output(&w))
            .or_else(|| self.desk.active_output())
            .map_or(1.0, |o| o.current_scale().fractional_scale());
        with_states(&surface, |states| {
            with_fractional_scale(states, |fs| fs.set_preferred_scale(scale));
        });
    }
}
delegate_fractional_scale!(State);

/// How long an activation token without a seat serial stays valid.
const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10);

impl XdgActivationHandler for State {
    fn activation_state(&mut self) -> &mut XdgActivationState {
        &mut self.desk.xdg_activation_state
    }

    fn token_created(&mut self, _token: XdgActivationToken, data: XdgActivationTokenData) -> bool {
        // Only a client that has keyboard focus (proved by a serial of ours) may mint tokens,
        // so a background VM app cannot steal focus. A VM's must be its own latest input
        // serial (or keyboard enter), exactly.
        let Some((serial, _seat)) = data.serial else {
            return false;
        };
        let dh = &self.desk.display_handle;
        let vm_client = data
            .client_id
            .as_ref()
            .filter(|id| !client_id_domain(dh, id).is_host());
        if let Some(id) = vm_client {
            return self.serial_allows_id(id, serial, SerialUse::Input);
        }
        let Some(kb) = self.desk.keyboard() else {
            return false;
        };
        let focused_client = self
            .desk
            .keyboard_focus
            .as_ref()
            .and_then(|s| self.desk.display_handle.get_client(s.id()).ok())
            .map(|c| c.id());
        kb.last_enter()
            .is_some_and(|last| serial.is_no_older_than(&last))
            && focused_client == data.client_id
    }

    fn request_activation(
        &mut self,
        token: XdgActivationToken,
        data: XdgActivationTokenData,
        surface: WlSurface,
    ) {
        if let Some(LaunchToken(domain)) = data.user_data.get::<LaunchToken>() {
            self.launch_activation(&token, domain.clone(), &surface);
            return;
        }
        if data.timestamp.elapsed() > TOKEN_LIFETIME {
            return;
        }
        // Never across domains: the token's domain must be the surface's domain.
        let token_domain = data
            .client_id
            .as_ref()
            .map(|id| client_id_domain(&self.desk.display_handle, id));
        let surface_domain = self.desk.surface_domain(&surface);
        if token_domain.as_ref() != Some(&surface_domain) {
            tracing::info!(
                from = token_domain.as_ref().map_or("unknown", Domain::name),
                to = surface_domain.name(),
                "refused cross-domain activation"
            );
            return;
        }
        // A VM's token works only while its domain holds the keyboard (tokens of a domain
        // also die when it loses it: `focus_changed`), and never on an unmapped window.
        if !surface_domain.is_host() && self.desk.focused_domain() != Some(surface_domain) {
            return;
        }
        if let Some(w) = self.desk.window_for_surface(&surface) {
            if meta(&w).state.borrow().mapped {
                self.focus_window(&w);
            }
        }
    }
}
delegate_xdg_activation!(State);

impl State {
    /// An app activates `surface` with its launch's token: once, in the launch's own domain,
    /// while the launch's grant is alive (the user has not clicked, typed elsewhere or switched
    /// windows since, and it has not run out). It spends the grant, so the launch gives focus
    /// once, to the window the app chose or to its first window, whichever comes first.
    fn launch_activation(
        &mut self,
        token: &XdgActivationToken,
        domain: Domain,
        surface: &WlSurface,
    ) {
        let surface_domain = self.desk.surface_domain(surface);
        if surface_domain != domain {
            tracing::info!(
                from = domain.name(),
                to = surface_domain.name(),
                "refused cross-domain activation"
            );
            return;
        }
        let Some(w) = self
            .desk
            .window_for_surface(surface)
            .filter(|w| meta(w).state.borrow().mapped)
        else {
            return;
        };
        let lifetime = self.desk.launch_focus();
        if self
            .desk
            .launch_grants
            .take(&domain, std::time::Instant::now(), lifetime)
        {
            self.desk.xdg_activation_state.remove_token(token);
            self.focus_window(&w);
        }
    }
}

impl smithay::wayland::foreign_toplevel_list::ForeignToplevelListHandler for State {
    fn foreign_toplevel_list_state(
        &mut self,
    ) -> &mut smithay::wayland::foreign_toplevel_list::ForeignToplevelListState {
        &mut self.desk.foreign_toplevel_state
    }
}
smithay::delegate_foreign_toplevel_list!(State);

impl TabletSeatHandler for State {}
delegate_cursor_shape!(State);

impl IdleInhibitHandler for State {
    fn inhibit(&mut self, surface: WlSurface) {
        self.desk.idle_inhibitors.retain(|s| s.is_alive());
        self.desk.idle_inhibitors.push(surface);
        self.update_idle_inhibit();
    }

    fn uninhibit(&mut self, surface: WlSurface) {
        self.desk
            .idle_inhibitors
            .retain(|s| s != &surface && s.is_alive());
        self.update_idle_inhibit();
    }
}
delegate_idle_inhibit!(State);

impl SecurityContextHandler for State {
    fn context_created(&mut self, source: SecurityContextListenerSource, context: SecurityContext) {
        // Only privileged host clients can create contexts (global filter). Clients that come
        // through the context's listener are host clients without privileged globals.
        let inserted = self
            .desk
            .loop_handle
            .insert_source(source, move |stream, _, state| {
                let domain = Domain::Host;
                let mut data = ClientState::new(domain);
                data.security_context = Some(context.clone());
                state.desk.insert_client(stream, data);
            });
        if let Err(e) = inserted {
            tracing::warn!("cannot listen for a security context: {e}");
        }
    }
}
delegate_security_context!(State);
