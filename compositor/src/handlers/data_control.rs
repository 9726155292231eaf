//! wlr-data-control for host clipboard managers (cliphist, clipman, wl-clipboard), which see
//! the host domain's clipboard and primary selection only.
//!
//! Implemented here rather than with smithay's: smithay's data-control devices are sent the
//! seat's selection whichever domain set it, which would hand every VM's clipboard to host
//! tools. Here a device is offered a selection only while the host domain owns it; anything
//! else is "no selection". A clipboard manager's own source becomes a compositor-owned
//! selection of the host domain. Only unsandboxed host clients see the global.

use std::sync::Mutex;

use smithay::reexports::wayland_protocols_wlr::data_control::v1::server::{
    zwlr_data_control_device_v1::{self, ZwlrDataControlDeviceV1},
    zwlr_data_control_manager_v1::{self, ZwlrDataControlManagerV1},
    zwlr_data_control_offer_v1::{self, ZwlrDataControlOfferV1},
    zwlr_data_control_source_v1::{self, ZwlrDataControlSourceV1},
};
use smithay::reexports::wayland_server::{
    Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource,
};
use smithay::wayland::selection::SelectionTarget;

use crate::domain::{client_domain, is_privileged, Domain};
use crate::selections::slot;
use crate::state::State;

/// The data-control devices of host clients and the selections clipboard managers set.
#[derive(Default)]
pub struct DataControl {
    devices: Vec<ZwlrDataControlDeviceV1>,
    /// Bumped at every change of each selection: offers of an older one read nothing.
    generation: [u64; 2],
}

/// What a clipboard manager's source offers.
#[derive(Default)]
pub struct SourceData {
    mimes: Mutex<Vec<String>>,
    used: Mutex<bool>,
}

impl SourceData {
    pub fn mime_types(&self) -> Vec<String> {
        self.mimes.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Which selection an offer stands for, and at which change.
pub struct OfferData {
    target: SelectionTarget,
    generation: u64,
}

/// Creates the global (host, unsandboxed clients only).
pub fn init(dh: &DisplayHandle) {
    dh.create_global::<State, ZwlrDataControlManagerV1, ()>(2, ());
}

impl State {
    /// The types the host domain's `target` selection offers, if it has one.
    fn host_selection_types(&self, target: SelectionTarget) -> Option<Vec<String>> {
        self.desk
            .selections
            .get(&Domain::Host, target)
            .map(|h| h.types.clone())
    }

    /// Tells every host data-control device what the `target` selection is now.
    pub fn data_control_broadcast(&mut self, target: SelectionTarget) {
        let i = slot(target);
        self.desk.data_control.generation[i] += 1;
        let generation = self.desk.data_control.generation[i];
        self.desk.data_control.devices.retain(|d| d.is_alive());
        let types = self.host_selection_types(target);
        let dh = self.desk.display_handle.clone();
        for device in self.desk.data_control.devices.clone() {
            if target == SelectionTarget::Primary && device.version() < 2 {
                continue;
            }
            let offer = types.as_ref().and_then(|types| {
                let client = dh.get_client(device.id()).ok()?;
                let offer = client
                    .create_resource::<ZwlrDataControlOfferV1, OfferData, State>(
                        &dh,
                        device.version(),
                        OfferData { target, generation },
                    )
                    .ok()?;
                device.data_offer(&offer);
                for t in types {
                    offer.offer(t.clone());
                }
                Some(offer)
            });
            match target {
                SelectionTarget::Clipboard => device.selection(offer.as_ref()),
                SelectionTarget::Primary => device.primary_selection(offer.as_ref()),
            }
        }
    }

    /// A host clipboard manager sets (or clears) the host domain's `target` selection; the
    /// source it replaces is told (`crate::selections`).
    fn data_control_set(
        &mut self,
        target: SelectionTarget,
        source: Option<ZwlrDataControlSourceV1>,
    ) {
        let new = source.map(|src| {
            let types = src
                .data::<SourceData>()
                .map(SourceData::mime_types)
                .unwrap_or_default();
            (types, crate::clipboard::SelectionData::Control(src))
        });
        self.set_domain_selection(&Domain::Host, target, new);
    }
}

impl GlobalDispatch<ZwlrDataControlManagerV1, ()> for State {
    fn bind(
        _: &mut State,
        _: &DisplayHandle,
        _: &Client,
        resource: New<ZwlrDataControlManagerV1>,
        _: &(),
        init: &mut DataInit<'_, State>,
    ) {
        init.init(resource, ());
    }

    fn can_view(client: Client, _: &()) -> bool {
        is_privileged(&client)
    }
}

impl Dispatch<ZwlrDataControlManagerV1, ()> for State {
    fn request(
        state: &mut State,
        client: &Client,
        _: &ZwlrDataControlManagerV1,
        request: zwlr_data_control_manager_v1::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        match request {
            zwlr_data_control_manager_v1::Request::CreateDataSource { id } => {
                init.init(id, SourceData::default());
            }
            zwlr_data_control_manager_v1::Request::GetDataDevice { id, .. } => {
                let device = init.init(id, ());
                if client_domain(client) == Domain::Host && is_privileged(client) {
                    state.desk.data_control.devices.push(device);
                    state.data_control_broadcast(SelectionTarget::Clipboard);
                    state.data_control_broadcast(SelectionTarget::Primary);
                }
            }
            _ => {}
        }
    }
}

impl Dispatch<ZwlrDataControlDeviceV1, ()> for State {
    fn request(
        state: &mut State,
        _: &Client,
        device: &ZwlrDataControlDeviceV1,
        request: zwlr_data_control_device_v1::Request,
        _: &(),
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        let (target, source) = match request {
            zwlr_data_control_device_v1::Request::SetSelection { source } => {
                (SelectionTarget::Clipboard, source)
            }
            zwlr_data_control_device_v1::Request::SetPrimarySelection { source } => {
                (SelectionTarget::Primary, source)
            }
            zwlr_data_control_device_v1::Request::Destroy => {
                state.desk.data_control.devices.retain(|d| d != device);
                return;
            }
            _ => return,
        };
        if let Some(src) = &source {
            let used = src
                .data::<SourceData>()
                .map(|d| {
                    std::mem::replace(&mut *d.used.lock().unwrap_or_else(|e| e.into_inner()), true)
                })
                .unwrap_or(true);
            if used {
                device.post_error(
                    zwlr_data_control_device_v1::Error::UsedSource,
                    "this source was already used",
                );
                return;
            }
        }
        state.data_control_set(target, source);
    }

    fn destroyed(
        state: &mut State,
        _: smithay::reexports::wayland_server::backend::ClientId,
        device: &ZwlrDataControlDeviceV1,
        _: &(),
    ) {
        state.desk.data_control.devices.retain(|d| d != device);
    }
}

impl Dispatch<ZwlrDataControlSourceV1, SourceData> for State {
    fn request(
        state: &mut State,
        _: &Client,
        source: &ZwlrDataControlSourceV1,
        request: zwlr_data_control_source_v1::Request,
        data: &SourceData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        match request {
            zwlr_data_control_source_v1::Request::Offer { mime_type } => {
                if let Ok(mut m) = data.mimes.lock() {
                    if m.len() < 256 && mime_type.len() < 256 && !m.contains(&mime_type) {
                        m.push(mime_type);
                    }
                }
            }
            zwlr_data_control_source_v1::Request::Destroy => source_gone(state, source),
            _ => {}
        }
    }

    fn destroyed(
        state: &mut State,
        _: smithay::reexports::wayland_server::backend::ClientId,
        source: &ZwlrDataControlSourceV1,
        _: &SourceData,
    ) {
        source_gone(state, source);
    }
}

/// A clipboard manager's source went away: if it was a host selection, that is cleared.
fn source_gone(state: &mut State, source: &ZwlrDataControlSourceV1) {
    for target in [SelectionTarget::Clipboard, SelectionTarget::Primary] {
        let held = state.desk.selections.get(&Domain::Host, target);
        if matches!(held.map(|h| &h.data), Some(crate::clipboard::SelectionData::Control(s)) if s == source)
        {
            state.data_control_set(target, None);
        }
    }
}

impl Dispatch<ZwlrDataControlOfferV1, OfferData> for State {
    fn request(
        state: &mut State,
        _: &Client,
        _: &ZwlrDataControlOfferV1,
        request: zwlr_data_control_offer_v1::Request,
        data: &OfferData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        if let zwlr_data_control_offer_v1::Request::Receive { mime_type, fd } = request {
            // Only the host's current selection is ever read: an offer of an older one (the
            // selection may have moved to a VM since) gets its pipe closed.
            let current = state.desk.data_control.generation[slot(data.target)] == data.generation;
            let types = state.host_selection_types(data.target);
            if current && types.is_some_and(|t| t.contains(&mime_type)) {
                if let Err(e) =
                    state.serve_domain_selection(&Domain::Host, data.target, &mime_type, fd)
                {
                    tracing::debug!("data-control receive: {e}");
                }
            }
        }
    }
}
