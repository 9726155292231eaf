//! The seat, and selections kept inside their domain.
//!
//! smithay keeps one clipboard and one primary selection per seat. Until the two-level
//! clipboard, the rule is enforced here: a selection is only ever offered to clients of the
//! domain that set it. When keyboard focus moves to a client of another domain, that client's
//! data devices get no focus (so no offer); a client can still set its own selection (it has
//! keyboard focus), which then becomes the selection of its domain.

use smithay::input::pointer::CursorImageStatus;
use smithay::input::{Seat, SeatHandler, SeatState};
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Resource;
use smithay::wayland::selection::data_device::{
    set_data_device_focus, ClientDndGrabHandler, DataDeviceHandler, DataDeviceState,
    ServerDndGrabHandler,
};
use smithay::wayland::selection::primary_selection::{
    set_primary_focus, PrimarySelectionHandler, PrimarySelectionState,
};
use smithay::wayland::selection::{SelectionHandler, SelectionSource, SelectionTarget};
use smithay::{delegate_data_device, delegate_primary_selection, delegate_seat};

use crate::clipboard::SelectionData;
use crate::domain::{client_domain, Domain};
use crate::state::State;

impl SeatHandler for State {
    type KeyboardFocus = WlSurface;
    type PointerFocus = WlSurface;
    type TouchFocus = WlSurface;

    fn seat_state(&mut self) -> &mut SeatState<State> {
        &mut self.desk.seat_state
    }

    fn cursor_image(&mut self, _seat: &Seat<Self>, image: CursorImageStatus) {
        self.desk.cursor_status = image;
        self.desk.request_redraw();
    }

    fn focus_changed(&mut self, _seat: &Seat<Self>, focused: Option<&WlSurface>) {
        // Called with the keyboard's lock held: never query the keyboard from here.
        let dh = self.desk.display_handle.clone();
        let client_of = |s: Option<&WlSurface>| s.and_then(|s| dh.get_client(s.id()).ok());
        let old = client_of(self.desk.keyboard_focus.as_ref());
        let new = client_of(focused);
        if let Some(old) = old.filter(|o| Some(o.id()) != new.as_ref().map(|n| n.id())) {
            // The serials it was sent no longer prove anything: it lost the keyboard.
            if let Some(data) = old.get_data::<crate::domain::ClientState>() {
                data.serials.clear();
            }
        }
        // Activation tokens die when their domain loses the keyboard.
        let new_domain = new.as_ref().map(client_domain);
        self.desk.xdg_activation_state.retain_tokens(|_, data| {
            let token_domain = data
                .client_id
                .as_ref()
                .map(|id| crate::domain::client_id_domain(&dh, id));
            token_domain.is_some_and(|d| d.is_host() || Some(&d) == new_domain.as_ref())
        });
        self.desk.keyboard_focus = focused.cloned();
        self.update_selection_focus();
        self.desk.request_redraw();
    }
}

impl State {
    /// Offers the clipboard and primary selection to the focused client only when it is of
    /// the domain that owns them.
    pub fn update_selection_focus(&mut self) {
        let dh = self.desk.display_handle.clone();
        let focused = self.desk.keyboard_focus.clone();
        let client = focused.as_ref().and_then(|s| dh.get_client(s.id()).ok());
        let domain = client.as_ref().map(client_domain);
        let allowed = |owner: &Option<Domain>| match (owner, &domain) {
            (None, _) => true,
            (Some(o), Some(d)) => o == d,
            (Some(_), None) => false,
        };
        let clip = if allowed(&self.desk.clipboard_domain) {
            client.clone()
        } else {
            None
        };
        let primary = if allowed(&self.desk.primary_domain) {
            client
        } else {
            None
        };
        let seat = self.desk.seat.clone();
        set_data_device_focus(&dh, &seat, clip);
        set_primary_focus(&dh, &seat, primary);
    }
}

impl SelectionHandler for State {
    /// Selections the compositor holds: pastes, and host clipboard managers' sources.
    type SelectionUserData = SelectionData;

    fn new_selection(
        &mut self,
        ty: SelectionTarget,
        source: Option<SelectionSource>,
        _seat: Seat<Self>,
    ) {
        // Only the focused client can set a selection, so the owner is the focused domain.
        let owner = source.is_some().then(|| {
            self.desk
                .keyboard_focus
                .as_ref()
                .and_then(|s| self.desk.display_handle.get_client(s.id()).ok())
                .map_or(Domain::Unknown(None), |c| client_domain(&c))
        });
        match ty {
            SelectionTarget::Clipboard => {
                self.desk.clipboard_domain = owner;
                self.desk.clipboard.pasted = None;
                self.desk.clipboard.client_types =
                    source.map(|s| s.mime_types()).unwrap_or_default();
            }
            SelectionTarget::Primary => {
                self.desk.primary_domain = owner;
                self.desk.clipboard.primary_types =
                    source.map(|s| s.mime_types()).unwrap_or_default();
            }
        }
        self.data_control_replaced(ty);
        // smithay stores the new selection right after this call; re-evaluate the offer
        // focus once it has, so the old domain's data is never sent to the new one.
        self.desk.loop_handle.insert_idle(move |state| {
            state.update_selection_focus();
            state.data_control_broadcast(ty);
        });
    }

    fn send_selection(
        &mut self,
        _ty: SelectionTarget,
        mime_type: String,
        fd: std::os::fd::OwnedFd,
        _seat: Seat<Self>,
        user_data: &SelectionData,
    ) {
        // Only offered to the focused client, and only when its domain owns the selection
        // (update_selection_focus): the domain the user pasted into, or the host.
        crate::clipboard::serve_selection(user_data, &mime_type, fd);
    }
}

impl DataDeviceHandler for State {
    fn data_device_state(&self) -> &DataDeviceState {
        &self.desk.data_device_state
    }
}

impl ClientDndGrabHandler for State {
    fn started(
        &mut self,
        source: Option<smithay::reexports::wayland_server::protocol::wl_data_source::WlDataSource>,
        _icon: Option<WlSurface>,
        _seat: Seat<Self>,
    ) {
        let dh = &self.desk.display_handle;
        self.desk.dnd_domain = Some(
            source
                .and_then(|s| dh.get_client(s.id()).ok())
                .map_or(Domain::Unknown(None), |c| client_domain(&c)),
        );
    }

    fn dropped(&mut self, _target: Option<WlSurface>, _validated: bool, _seat: Seat<Self>) {
        self.desk.dnd_domain = None;
    }
}

impl ServerDndGrabHandler for State {}

impl PrimarySelectionHandler for State {
    fn primary_selection_state(&self) -> &PrimarySelectionState {
        &self.desk.primary_selection_state
    }
}

delegate_seat!(State);
delegate_data_device!(State);
delegate_primary_selection!(State);
