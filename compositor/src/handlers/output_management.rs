//! wlr-output-management for host tools (wlr-randr, kanshi): every output as a head with its
//! modes and state, and configurations that change mode, position, scale, transform or
//! enable/disable, tested or applied by the backend as one change. Unsandboxed host clients
//! only: a VM can neither see the monitor layout nor change it.

use std::sync::{Arc, Mutex};

use smithay::output::{Mode, Output};
use smithay::reexports::wayland_protocols_wlr::output_management::v1::server::{
    zwlr_output_configuration_head_v1::{self, ZwlrOutputConfigurationHeadV1},
    zwlr_output_configuration_v1::{self, ZwlrOutputConfigurationV1},
    zwlr_output_head_v1::{self, ZwlrOutputHeadV1},
    zwlr_output_manager_v1::{self, ZwlrOutputManagerV1},
    zwlr_output_mode_v1::{self, ZwlrOutputModeV1},
};
use smithay::reexports::wayland_server::protocol::wl_output;
use smithay::reexports::wayland_server::{
    Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource, WEnum,
};
use smithay::utils::Transform;

use crate::backend::OutputChange;
use crate::domain::is_privileged;
use crate::state::State;

const VERSION: u32 = 4;

pub fn init(dh: &DisplayHandle) {
    dh.create_global::<State, ZwlrOutputManagerV1, ()>(VERSION, ());
}

/// What the compositor keeps of the bound managers.
pub struct OutputManagement {
    /// Bumped on every change; a configuration made against an older one is cancelled.
    /// Never 0: tools such as wlr-randr wait for a non-zero serial.
    serial: u32,
    managers: Vec<Manager>,
}

impl Default for OutputManagement {
    fn default() -> Self {
        OutputManagement {
            serial: 1,
            managers: Vec::new(),
        }
    }
}

struct Manager {
    resource: ZwlrOutputManagerV1,
    heads: Vec<Head>,
}

struct Head {
    name: String,
    resource: ZwlrOutputHeadV1,
    modes: Vec<ZwlrOutputModeV1>,
}

/// A head as the backend describes it: the output and whether it is shown.
pub struct HeadState {
    pub output: Output,
    pub enabled: bool,
    /// Where it is in the global space (when enabled).
    pub position: (i32, i32),
}

/// A configuration being built: per head, `None` to disable it or the changes to enable it with.
pub struct Pending {
    serial: u32,
    used: bool,
    heads: Vec<(String, Option<Arc<Mutex<OutputChange>>>)>,
}

type PendingConfig = Mutex<Pending>;

fn wl_transform(t: Transform) -> wl_output::Transform {
    match t {
        Transform::Normal => wl_output::Transform::Normal,
        Transform::_90 => wl_output::Transform::_90,
        Transform::_180 => wl_output::Transform::_180,
        Transform::_270 => wl_output::Transform::_270,
        Transform::Flipped => wl_output::Transform::Flipped,
        Transform::Flipped90 => wl_output::Transform::Flipped90,
        Transform::Flipped180 => wl_output::Transform::Flipped180,
        Transform::Flipped270 => wl_output::Transform::Flipped270,
    }
}

fn send_head(
    dh: &DisplayHandle,
    client: &Client,
    manager: &ZwlrOutputManagerV1,
    state: &HeadState,
) -> Option<Head> {
    let output = &state.output;
    let head = client
        .create_resource::<ZwlrOutputHeadV1, _, State>(dh, manager.version(), output.name())
        .ok()?;
    manager.head(&head);
    head.name(output.name());
    head.description(output.description());
    let phys = output.physical_properties();
    if phys.size.w > 0 && phys.size.h > 0 {
        head.physical_size(phys.size.w, phys.size.h);
    }
    let preferred = output.preferred_mode();
    let mut modes = Vec::new();
    for mode in output.modes() {
        let Ok(m) =
            client.create_resource::<ZwlrOutputModeV1, _, State>(dh, manager.version(), mode)
        else {
            continue;
        };
        head.mode(&m);
        m.size(mode.size.w, mode.size.h);
        m.refresh(mode.refresh);
        if preferred == Some(mode) {
            m.preferred();
        }
        modes.push(m);
    }
    if head.version() >= 2 {
        head.make(phys.make.clone());
        head.model(phys.model.clone());
    }
    let head = Head {
        name: output.name(),
        resource: head,
        modes,
    };
    send_state(&head, state);
    Some(head)
}

fn send_state(head: &Head, state: &HeadState) {
    let output = &state.output;
    head.resource.enabled(state.enabled as i32);
    if !state.enabled {
        return;
    }
    if let Some(current) = output.current_mode() {
        if let Some(m) = head
            .modes
            .iter()
            .find(|m| m.data::<Mode>() == Some(&current))
        {
            head.resource.current_mode(m);
        }
    }
    head.resource.position(state.position.0, state.position.1);
    head.resource
        .transform(wl_transform(output.current_transform()));
    head.resource
        .scale(output.current_scale().fractional_scale());
}

impl State {
    /// Tells every bound manager what changed: new heads, gone heads, the state of the rest.
    pub fn output_management_refresh(&mut self) {
        let heads = self.backend.heads(&self.desk);
        let dh = self.desk.display_handle.clone();
        let om = &mut self.desk.output_management;
        om.serial = om.serial.wrapping_add(1).max(1);
        let serial = om.serial;
        for manager in &mut om.managers {
            manager.heads.retain(|h| {
                let keep = heads.iter().any(|s| s.output.name() == h.name)
                    && h.modes.len()
                        == heads
                            .iter()
                            .find(|s| s.output.name() == h.name)
                            .map_or(0, |s| s.output.modes().len());
                if !keep {
                    for m in &h.modes {
                        m.finished();
                    }
                    h.resource.finished();
                }
                keep
            });
            let Some(client) = manager.resource.client() else {
                continue;
            };
            for state in &heads {
                match manager.heads.iter().find(|h| h.name == state.output.name()) {
                    Some(h) => send_state(h, state),
                    None => {
                        if let Some(h) = send_head(&dh, &client, &manager.resource, state) {
                            manager.heads.push(h);
                        }
                    }
                }
            }
            manager.resource.done(serial);
        }
    }
}

impl GlobalDispatch<ZwlrOutputManagerV1, ()> for State {
    fn bind(
        state: &mut State,
        dh: &DisplayHandle,
        client: &Client,
        resource: New<ZwlrOutputManagerV1>,
        _: &(),
        init: &mut DataInit<'_, State>,
    ) {
        let manager = init.init(resource, ());
        let heads = state.backend.heads(&state.desk);
        let mut sent = Vec::new();
        for h in &heads {
            if let Some(head) = send_head(dh, client, &manager, h) {
                sent.push(head);
            }
        }
        manager.done(state.desk.output_management.serial);
        state.desk.output_management.managers.push(Manager {
            resource: manager,
            heads: sent,
        });
    }

    fn can_view(client: Client, _: &()) -> bool {
        is_privileged(&client)
    }
}

impl Dispatch<ZwlrOutputManagerV1, ()> for State {
    fn request(
        state: &mut State,
        _: &Client,
        manager: &ZwlrOutputManagerV1,
        request: zwlr_output_manager_v1::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        match request {
            zwlr_output_manager_v1::Request::CreateConfiguration { id, serial } => {
                init.init(
                    id,
                    Mutex::new(Pending {
                        serial,
                        used: false,
                        heads: Vec::new(),
                    }),
                );
            }
            zwlr_output_manager_v1::Request::Stop => {
                manager.finished();
                state
                    .desk
                    .output_management
                    .managers
                    .retain(|m| &m.resource != manager);
            }
            _ => {}
        }
    }

    fn destroyed(
        state: &mut State,
        _: smithay::reexports::wayland_server::backend::ClientId,
        manager: &ZwlrOutputManagerV1,
        _: &(),
    ) {
        state
            .desk
            .output_management
            .managers
            .retain(|m| &m.resource != manager);
    }
}

impl Dispatch<ZwlrOutputHeadV1, String> for State {
    fn request(
        _: &mut State,
        _: &Client,
        _: &ZwlrOutputHeadV1,
        _: zwlr_output_head_v1::Request,
        _: &String,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        // Only `release`, a destructor.
    }
}

impl Dispatch<ZwlrOutputModeV1, Mode> for State {
    fn request(
        _: &mut State,
        _: &Client,
        _: &ZwlrOutputModeV1,
        _: zwlr_output_mode_v1::Request,
        _: &Mode,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
    }
}

fn lock(p: &PendingConfig) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts a head into a configuration (`None`: turn it off); a head configured twice is a
/// protocol error.
fn add_head(
    config: &ZwlrOutputConfigurationV1,
    data: &PendingConfig,
    head: &ZwlrOutputHeadV1,
    change: Option<Arc<Mutex<OutputChange>>>,
) {
    let Some(name) = head.data::<String>().cloned() else {
        return;
    };
    let mut p = lock(data);
    if p.heads.iter().any(|(n, _)| n == &name) {
        config.post_error(
            zwlr_output_configuration_v1::Error::AlreadyConfiguredHead,
            "head configured twice",
        );
        return;
    }
    p.heads.push((name, change));
}

impl Dispatch<ZwlrOutputConfigurationV1, PendingConfig> for State {
    fn request(
        state: &mut State,
        _: &Client,
        config: &ZwlrOutputConfigurationV1,
        request: zwlr_output_configuration_v1::Request,
        data: &PendingConfig,
        _: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        use zwlr_output_configuration_v1::Error;
        match request {
            zwlr_output_configuration_v1::Request::EnableHead { id, head } => {
                let change = Arc::new(Mutex::new(OutputChange::default()));
                init.init(id, change.clone());
                add_head(config, data, &head, Some(change));
            }
            zwlr_output_configuration_v1::Request::DisableHead { head } => {
                add_head(config, data, &head, None);
            }
            zwlr_output_configuration_v1::Request::Apply
            | zwlr_output_configuration_v1::Request::Test => {
                let test_only = matches!(request, zwlr_output_configuration_v1::Request::Test);
                let changes = {
                    let mut p = lock(data);
                    if p.used {
                        config.post_error(Error::AlreadyUsed, "configuration already used");
                        return;
                    }
                    p.used = true;
                    if p.serial != state.desk.output_management.serial {
                        config.cancelled();
                        return;
                    }
                    p.heads
                        .iter()
                        .map(|(n, c)| {
                            (
                                n.clone(),
                                c.as_ref()
                                    .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone()),
                            )
                        })
                        .collect::<Vec<_>>()
                };
                match state.apply_output_changes(&changes, test_only) {
                    Ok(()) => config.succeeded(),
                    Err(e) => {
                        tracing::info!("output configuration refused: {e}");
                        config.failed();
                    }
                }
                if !test_only {
                    state.output_management_refresh();
                }
            }
            _ => {}
        }
    }
}

impl Dispatch<ZwlrOutputConfigurationHeadV1, Arc<Mutex<OutputChange>>> for State {
    fn request(
        _: &mut State,
        _: &Client,
        head: &ZwlrOutputConfigurationHeadV1,
        request: zwlr_output_configuration_head_v1::Request,
        data: &Arc<Mutex<OutputChange>>,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        use zwlr_output_configuration_head_v1::Error;
        let mut c = data.lock().unwrap_or_else(|e| e.into_inner());
        match request {
            zwlr_output_configuration_head_v1::Request::SetMode { mode } => {
                if let Some(m) = mode.data::<Mode>() {
                    c.mode = Some((m.size.w, m.size.h, m.refresh));
                }
            }
            zwlr_output_configuration_head_v1::Request::SetCustomMode {
                width,
                height,
                refresh,
            } => {
                if width <= 0 || height <= 0 || refresh < 0 {
                    head.post_error(Error::InvalidCustomMode, "invalid custom mode");
                    return;
                }
                c.mode = Some((width, height, refresh));
            }
            zwlr_output_configuration_head_v1::Request::SetPosition { x, y } => {
                c.position = Some((x, y));
            }
            zwlr_output_configuration_head_v1::Request::SetTransform { transform } => {
                let WEnum::Value(t) = transform else {
                    head.post_error(Error::InvalidTransform, "unknown transform");
                    return;
                };
                c.transform = Some(t.into());
            }
            zwlr_output_configuration_head_v1::Request::SetScale { scale } => {
                if !(scale.is_finite() && scale > 0.0) {
                    head.post_error(Error::InvalidScale, "invalid scale");
                    return;
                }
                c.scale = Some(scale);
            }
            _ => {}
        }
    }
}
