//! The seat, and selections kept inside their domain: an app's `set_selection` makes its
//! source the selection of its own domain (`crate::selections`), and the seat offers only the
//! focused domain's selections, only to clients of that domain.

use smithay::delegate_seat;
use smithay::input::pointer::CursorImageStatus;
use smithay::input::{Seat, SeatHandler, SeatState};
use smithay::reexports::wayland_protocols::wp::primary_selection::zv1::server::{
    zwp_primary_selection_device_manager_v1::ZwpPrimarySelectionDeviceManagerV1,
    zwp_primary_selection_device_v1::{self as primary_device, ZwpPrimarySelectionDeviceV1},
    zwp_primary_selection_source_v1::{self as primary_source, ZwpPrimarySelectionSourceV1},
};
use smithay::reexports::wayland_server::backend::ClientId;
use smithay::reexports::wayland_server::protocol::wl_data_device::{self, WlDataDevice};
use smithay::reexports::wayland_server::protocol::wl_data_device_manager::WlDataDeviceManager;
use smithay::reexports::wayland_server::protocol::wl_data_source::WlDataSource;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Resource;
use smithay::reexports::wayland_server::{
    delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch, DisplayHandle,
};
use smithay::wayland::selection::data_device::{
    set_data_device_focus, with_source_metadata, ClientDndGrabHandler, DataDeviceHandler,
    DataDeviceState, DataDeviceUserData, DataSourceUserData, ServerDndGrabHandler,
};
use smithay::wayland::selection::primary_selection::{
    set_primary_focus, PrimaryDeviceManagerGlobalData, PrimaryDeviceUserData,
    PrimarySelectionHandler, PrimarySelectionState, PrimarySourceUserData,
};
use smithay::wayland::selection::{SelectionHandler, SelectionTarget};

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
            // A launch's token lives as long as the launch's grant (`focus::LaunchToken`).
            if data.user_data.get::<crate::focus::LaunchToken>().is_some() {
                return true;
            }
            let token_domain = data
                .client_id
                .as_ref()
                .map(|id| crate::domain::client_id_domain(&dh, id));
            token_domain.is_some_and(|d| d.is_host() || Some(&d) == new_domain.as_ref())
        });
        self.desk.keyboard_focus = focused.cloned();
        // The seat offers the newly focused domain's own selections, to it alone.
        self.install_selections();
        // A pointer constraint holds only in the window that has the keyboard.
        self.update_pointer_constraint();
        self.desk.request_redraw();
    }
}

impl State {
    /// Gives selection focus to the keyboard's client when the seat offers its domain's
    /// selections (`crate::selections`), to nobody otherwise.
    pub fn update_selection_focus(&mut self) {
        let dh = self.desk.display_handle.clone();
        let focused = self.desk.keyboard_focus.clone();
        let client = focused.as_ref().and_then(|s| dh.get_client(s.id()).ok());
        let domain = client.as_ref().map(client_domain);
        let sel = &self.desk.selections;
        let allowed = |target| match (sel.installed_domain(target), &domain) {
            (None, _) => true,
            (Some(o), Some(d)) => o == d,
            (Some(_), None) => false,
        };
        let clip = allowed(SelectionTarget::Clipboard)
            .then(|| client.clone())
            .flatten();
        let primary = allowed(SelectionTarget::Primary)
            .then_some(client)
            .flatten();
        let seat = self.desk.seat.clone();
        set_data_device_focus(&dh, &seat, clip);
        set_primary_focus(&dh, &seat, primary);
    }

    /// No client has selection focus (so none is offered a selection being replaced).
    pub fn hide_selections(&mut self) {
        let dh = self.desk.display_handle.clone();
        let seat = self.desk.seat.clone();
        set_data_device_focus(&dh, &seat, None);
        set_primary_focus(&dh, &seat, None);
    }

    /// An app sets its clipboard or primary selection (`set_selection` on its device). As
    /// smithay would, only the client with the keyboard may; the source becomes the selection
    /// of that client's domain (never of whoever has focus later).
    fn client_sets_selection(
        &mut self,
        client: &Client,
        device: &smithay::reexports::wayland_server::backend::ObjectId,
        target: SelectionTarget,
        source: Option<SelectionData>,
    ) {
        let focused = self
            .desk
            .keyboard()
            .is_some_and(|k| k.client_of_object_has_focus(device));
        if !focused {
            tracing::debug!("refused a selection from a client without the keyboard");
            return;
        }
        let new = source.map(|data| {
            let types = match &data {
                SelectionData::Client(src) => {
                    with_source_metadata(src, |m| m.mime_types.clone()).unwrap_or_default()
                }
                SelectionData::PrimaryClient(src) => self.desk.selections.primary_types(&src.id()),
                SelectionData::Pasted(_) | SelectionData::Control(_) => Vec::new(),
            };
            let mut types = types;
            types.truncate(crate::clipboard::MAX_TYPES);
            (types, data)
        });
        let domain = client_domain(client);
        self.set_domain_selection(&domain, target, new);
    }
}

impl SelectionHandler for State {
    /// What the seat offers: always the compositor's own (`crate::selections`).
    type SelectionUserData = SelectionData;

    fn send_selection(
        &mut self,
        _ty: SelectionTarget,
        mime_type: String,
        fd: std::os::fd::OwnedFd,
        _seat: Seat<Self>,
        user_data: &SelectionData,
    ) {
        // Only offered to clients of the domain whose selection it is (update_selection_focus).
        crate::clipboard::serve_selection(self, user_data, &mime_type, fd);
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

// The data device and primary selection as smithay implements them, except `set_selection`,
// which `client_sets_selection` takes (so the seat never holds an app's source, which smithay
// would cancel when another domain copies), and the primary sources' offered types, which
// smithay keeps private.
delegate_global_dispatch!(State: [WlDataDeviceManager: ()] => DataDeviceState);
delegate_dispatch!(State: [WlDataDeviceManager: ()] => DataDeviceState);

impl Dispatch<WlDataSource, DataSourceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WlDataSource,
        request: <WlDataSource as smithay::reexports::wayland_server::Resource>::Request,
        data: &DataSourceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if matches!(
            request,
            smithay::reexports::wayland_server::protocol::wl_data_source::Request::Offer { .. }
        ) {
            let offered =
                smithay::wayland::selection::data_device::with_source_metadata(resource, |m| {
                    m.mime_types.len()
                })
                .unwrap_or(0);
            if !mime_type_allowed(state, client, resource, offered) {
                return;
            }
        }
        <DataDeviceState as Dispatch<WlDataSource, DataSourceUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(
        state: &mut Self,
        client: ClientId,
        resource: &WlDataSource,
        data: &DataSourceUserData,
    ) {
        // A domain whose selection this was has none now (as smithay does for the seat's).
        state.selection_source_gone(&SelectionData::Client(resource.clone()));
        <DataDeviceState as Dispatch<WlDataSource, DataSourceUserData, State>>::destroyed(
            state, client, resource, data,
        );
    }
}
delegate_global_dispatch!(State: [ZwpPrimarySelectionDeviceManagerV1: PrimaryDeviceManagerGlobalData] => PrimarySelectionState);
delegate_dispatch!(State: [ZwpPrimarySelectionDeviceManagerV1: ()] => PrimarySelectionState);

impl Dispatch<WlDataDevice, DataDeviceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WlDataDevice,
        request: wl_data_device::Request,
        data: &DataDeviceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let wl_data_device::Request::SetSelection { source, .. } = request {
            let source = source.map(SelectionData::Client);
            state.client_sets_selection(client, &resource.id(), SelectionTarget::Clipboard, source);
            return;
        }
        <DataDeviceState as Dispatch<WlDataDevice, DataDeviceUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(
        state: &mut Self,
        client: ClientId,
        resource: &WlDataDevice,
        data: &DataDeviceUserData,
    ) {
        <DataDeviceState as Dispatch<WlDataDevice, DataDeviceUserData, State>>::destroyed(
            state, client, resource, data,
        );
    }
}

impl Dispatch<ZwpPrimarySelectionDeviceV1, PrimaryDeviceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &ZwpPrimarySelectionDeviceV1,
        request: primary_device::Request,
        data: &PrimaryDeviceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let primary_device::Request::SetSelection { source, .. } = request {
            let source = source.map(SelectionData::PrimaryClient);
            state.client_sets_selection(client, &resource.id(), SelectionTarget::Primary, source);
            return;
        }
        <PrimarySelectionState as Dispatch<
            ZwpPrimarySelectionDeviceV1,
            PrimaryDeviceUserData,
            State,
        >>::request(state, client, resource, request, data, dh, init);
    }

    fn destroyed(
        state: &mut Self,
        client: ClientId,
        resource: &ZwpPrimarySelectionDeviceV1,
        data: &PrimaryDeviceUserData,
    ) {
        <PrimarySelectionState as Dispatch<
            ZwpPrimarySelectionDeviceV1,
            PrimaryDeviceUserData,
            State,
        >>::destroyed(state, client, resource, data);
    }
}

impl Dispatch<ZwpPrimarySelectionSourceV1, PrimarySourceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &ZwpPrimarySelectionSourceV1,
        request: primary_source::Request,
        data: &PrimarySourceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let primary_source::Request::Offer { mime_type } = &request {
            let offered = state.desk.selections.primary_offer_count(&resource.id());
            if !mime_type_allowed(state, client, resource, offered) {
                return;
            }
            state
                .desk
                .selections
                .primary_offered(resource.id(), mime_type.clone());
        }
        <PrimarySelectionState as Dispatch<
            ZwpPrimarySelectionSourceV1,
            PrimarySourceUserData,
            State,
        >>::request(state, client, resource, request, data, dh, init);
    }

    fn destroyed(
        state: &mut Self,
        client: ClientId,
        resource: &ZwpPrimarySelectionSourceV1,
        data: &PrimarySourceUserData,
    ) {
        state.desk.selections.primary_source_gone(&resource.id());
        state.selection_source_gone(&SelectionData::PrimaryClient(resource.clone()));
        <PrimarySelectionState as Dispatch<
            ZwpPrimarySelectionSourceV1,
            PrimarySourceUserData,
            State,
        >>::destroyed(state, client, resource, data);
    }
}

/// Whether a data source that already offers `offered` MIME types may offer one more: a VM
/// client over [`crate::limits::MIME_TYPES_PER_SOURCE`] is disconnected.
fn mime_type_allowed(
    state: &State,
    client: &Client,
    source: &impl Resource,
    offered: usize,
) -> bool {
    let vm = crate::handlers::bounded::vm_client(client).is_some();
    if vm && offered >= crate::limits::MIME_TYPES_PER_SOURCE {
        let e = crate::limits::Exceeded::MimeTypes {
            limit: crate::limits::MIME_TYPES_PER_SOURCE,
        };
        crate::handlers::bounded::disconnect_over_limit(
            &state.desk.display_handle,
            client,
            source,
            e,
        );
        return false;
    }
    true
}
