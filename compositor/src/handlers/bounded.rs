//! wl_surface, wl_region and wl_shm as smithay implements them, with the costs a VM client
//! can pile up that are not objects bounded first (`crate::limits`): damage rectangles
//! between commits, rectangles in a region, and the bytes and mappings of shm pools, which
//! last while the pool or any buffer made from it lives; and a `wl_shm_pool.resize` to zero
//! or less refused before smithay panics on it. Every other request goes to smithay
//! unchanged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use smithay::reexports::wayland_server::backend::protocol::ProtocolError;
use smithay::reexports::wayland_server::backend::ClientId;
use smithay::reexports::wayland_server::protocol::{
    wl_buffer::WlBuffer,
    wl_callback::WlCallback,
    wl_compositor::WlCompositor,
    wl_region::{self, WlRegion},
    wl_shm::{self, WlShm},
    wl_shm_pool::{self, WlShmPool},
    wl_subcompositor::WlSubcompositor,
    wl_subsurface::WlSubsurface,
    wl_surface::{self, WlSurface},
};
use smithay::reexports::wayland_server::{
    delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch, DisplayHandle,
    Resource,
};
use smithay::wayland::compositor::{
    with_states, CompositorState, RegionUserData, SubsurfaceUserData, SurfaceUserData,
};
use smithay::wayland::shm::{ShmBufferUserData, ShmPoolUserData, ShmState};

use crate::domain::ClientState;
use crate::limits::{Exceeded, ShmCharge, RECTS_PER_REGION};
use crate::state::State;

delegate_global_dispatch!(State: [WlCompositor: ()] => CompositorState);
delegate_global_dispatch!(State: [WlSubcompositor: ()] => CompositorState);
delegate_dispatch!(State: [WlCompositor: ()] => CompositorState);
delegate_dispatch!(State: [WlCallback: ()] => CompositorState);
delegate_dispatch!(State: [WlSubcompositor: ()] => CompositorState);
delegate_dispatch!(State: [WlSubsurface: SubsurfaceUserData] => CompositorState);
delegate_global_dispatch!(State: [WlShm: ()] => ShmState);

/// The limits of `client`, if it is a VM client (host clients are trusted).
pub fn vm_client(client: &Client) -> Option<&ClientState> {
    client
        .get_data::<ClientState>()
        .filter(|c| c.usage.is_some())
}

/// Disconnects a VM client that went over a limit; the notification names its VM and says
/// which limit (`ClientState::disconnected`).
pub fn disconnect_over_limit(
    dh: &DisplayHandle,
    client: &Client,
    object: &impl Resource,
    e: Exceeded,
) {
    let e = match client.get_data::<ClientState>() {
        Some(c) => c.exceeded(e),
        None => e,
    };
    tracing::warn!(
        domain = client
            .get_data::<ClientState>()
            .map_or("unknown", |c| c.domain.name()),
        "disconnecting a client: {e}"
    );
    client.kill(
        dh,
        ProtocolError {
            // wl_display.error.no_memory
            code: 2,
            object_id: object.id().protocol_id(),
            object_interface: object.id().interface().name.into(),
            message: e.to_string(),
        },
    );
}

/// Damage rectangles a surface received since its last commit.
#[derive(Default)]
struct PendingDamage(AtomicUsize);

/// Forgets the damage count of `surface` (it committed).
pub fn damage_committed(surface: &WlSurface) {
    with_states(surface, |s| {
        if let Some(d) = s.data_map.get::<PendingDamage>() {
            d.0.store(0, Ordering::Relaxed);
        }
    });
}

impl Dispatch<WlSurface, SurfaceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WlSurface,
        request: wl_surface::Request,
        data: &SurfaceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if matches!(
            request,
            wl_surface::Request::Damage { .. } | wl_surface::Request::DamageBuffer { .. }
        ) && vm_client(client).is_some()
        {
            let n = with_states(resource, |s| {
                s.data_map
                    .insert_if_missing_threadsafe(PendingDamage::default);
                s.data_map
                    .get::<PendingDamage>()
                    .map_or(0, |d| d.0.fetch_add(1, Ordering::Relaxed) + 1)
            });
            if n > RECTS_PER_REGION {
                let e = Exceeded::Rects {
                    what: "surface's damage",
                    limit: RECTS_PER_REGION,
                };
                disconnect_over_limit(dh, client, resource, e);
                return;
            }
        }
        <CompositorState as Dispatch<WlSurface, SurfaceUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(state: &mut Self, client: ClientId, resource: &WlSurface, data: &SurfaceUserData) {
        <CompositorState as Dispatch<WlSurface, SurfaceUserData, State>>::destroyed(
            state, client, resource, data,
        );
    }
}

impl Dispatch<WlRegion, RegionUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WlRegion,
        request: wl_region::Request,
        data: &RegionUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if matches!(
            request,
            wl_region::Request::Add { .. } | wl_region::Request::Subtract { .. }
        ) && vm_client(client).is_some()
        {
            let n = state.desk.region_rects.entry(resource.id()).or_insert(0);
            *n += 1;
            if *n > RECTS_PER_REGION {
                let e = Exceeded::Rects {
                    what: "region",
                    limit: RECTS_PER_REGION,
                };
                disconnect_over_limit(dh, client, resource, e);
                return;
            }
        }
        <CompositorState as Dispatch<WlRegion, RegionUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(state: &mut Self, client: ClientId, resource: &WlRegion, data: &RegionUserData) {
        state.desk.region_rects.remove(&resource.id());
        <CompositorState as Dispatch<WlRegion, RegionUserData, State>>::destroyed(
            state, client, resource, data,
        );
    }
}

impl Dispatch<WlShm, ()> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WlShm,
        request: wl_shm::Request,
        data: &(),
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        let size = match &request {
            wl_shm::Request::CreatePool { size, .. } => Some(*size),
            _ => None,
        };
        let charge = match (size, vm_client(client).and_then(|c| c.usage.clone())) {
            (Some(size), Some(usage)) if size > 0 => match usage.charge_shm(size as usize) {
                Ok(c) => Some(c),
                Err(e) => {
                    disconnect_over_limit(dh, client, resource, e);
                    return;
                }
            },
            _ => None,
        };
        <ShmState as Dispatch<WlShm, (), State>>::request(
            state, client, resource, request, data, dh, init,
        );
        // The pool the request just made (none if smithay refused it: the charge drops).
        let pool = client
            .get_data::<ClientState>()
            .and_then(ClientState::take_last_shm_object);
        if let (Some(charge), Some(pool)) = (charge, pool) {
            state.desk.shm_charges.insert(pool, Arc::new(charge));
        }
    }
}

impl Dispatch<WlShmPool, ShmPoolUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WlShmPool,
        request: wl_shm_pool::Request,
        data: &ShmPoolUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let wl_shm_pool::Request::Resize { size } = &request {
            if *size <= 0 {
                // smithay 0.7 posts this error but goes on to unwrap the size: a panic of the
                // session for any client (found by the fuzz target).
                resource.post_error(wl_shm::Error::InvalidFd, "invalid wl_shm_pool size");
                return;
            }
        }
        let charge = state.desk.shm_charges.get(&resource.id()).cloned();
        if let (wl_shm_pool::Request::Resize { size }, Some(charge)) = (&request, &charge) {
            if let Err(e) = charge.grow((*size).max(0) as usize) {
                disconnect_over_limit(dh, client, resource, e);
                return;
            }
        }
        let creates_buffer = matches!(request, wl_shm_pool::Request::CreateBuffer { .. });
        <ShmState as Dispatch<WlShmPool, ShmPoolUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
        if !creates_buffer {
            return;
        }
        // A buffer keeps its pool's mapping, so it holds the pool's charge.
        let buffer = client
            .get_data::<ClientState>()
            .and_then(ClientState::take_last_shm_object);
        if let (Some(charge), Some(buffer)) = (charge, buffer) {
            state.desk.shm_charges.insert(buffer, charge);
        }
    }

    fn destroyed(state: &mut Self, client: ClientId, resource: &WlShmPool, data: &ShmPoolUserData) {
        drop_charge(state, &resource.id());
        <ShmState as Dispatch<WlShmPool, ShmPoolUserData, State>>::destroyed(
            state, client, resource, data,
        );
    }
}

impl Dispatch<WlBuffer, ShmBufferUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WlBuffer,
        request: smithay::reexports::wayland_server::protocol::wl_buffer::Request,
        data: &ShmBufferUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        <ShmState as Dispatch<WlBuffer, ShmBufferUserData, State>>::request(
            state, client, resource, request, data, dh, init,
        );
    }

    fn destroyed(
        state: &mut Self,
        client: ClientId,
        resource: &WlBuffer,
        data: &ShmBufferUserData,
    ) {
        drop_charge(state, &resource.id());
        <ShmState as Dispatch<WlBuffer, ShmBufferUserData, State>>::destroyed(
            state, client, resource, data,
        );
    }
}

/// The pool or buffer `id` is gone: it no longer holds its pool's charge.
fn drop_charge(state: &mut State, id: &smithay::reexports::wayland_server::backend::ObjectId) {
    let _: Option<Arc<ShmCharge>> = state.desk.shm_charges.remove(id);
}
