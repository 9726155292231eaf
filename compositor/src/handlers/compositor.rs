//! wl_compositor, wl_shm, wl_subcompositor: commits drive mapping, popups and layer surfaces.

use smithay::backend::renderer::utils::on_commit_buffer_handler;
use smithay::desktop::{layer_map_for_output, PopupKind, WindowSurfaceType};
use smithay::reexports::wayland_server::protocol::{wl_buffer, wl_surface::WlSurface};
use smithay::reexports::wayland_server::{Client, Resource};
use smithay::wayland::buffer::BufferHandler;
use smithay::wayland::compositor::{
    is_sync_subsurface, CompositorClientState, CompositorHandler, CompositorState,
};
use smithay::wayland::shell::wlr_layer::LayerSurfaceAttributes;
use smithay::wayland::shell::xdg::XdgPopupSurfaceRoleAttributes;
use smithay::wayland::shm::{ShmHandler, ShmState};

use crate::domain::ClientState;
use crate::shell::{meta, root_surface, with_role_attributes};
use crate::state::State;

/// The compositor state of clients inserted by neither us nor smithay's Xwayland (none are).
static UNKNOWN_CLIENT_STATE: std::sync::LazyLock<CompositorClientState> =
    std::sync::LazyLock::new(CompositorClientState::default);

impl CompositorHandler for State {
    fn compositor_state(&mut self) -> &mut CompositorState {
        &mut self.desk.compositor_state
    }

    fn client_compositor_state<'a>(&self, client: &'a Client) -> &'a CompositorClientState {
        match client.get_data::<ClientState>() {
            Some(c) => &c.compositor_state,
            // Every client is inserted with ClientState except Xwayland, which smithay inserts.
            None => match client.get_data::<smithay::xwayland::XWaylandClientData>() {
                Some(x) => &x.compositor_state,
                // Fail closed, never panic: a client of an unknown domain shares this state.
                None => &UNKNOWN_CLIENT_STATE,
            },
        }
    }

    fn commit(&mut self, surface: &WlSurface) {
        crate::handlers::bounded::damage_committed(surface);
        on_commit_buffer_handler::<Self>(surface);
        probe_shm_buffer(surface);
        self.desk.request_redraw();
        if is_sync_subsurface(surface) {
            return;
        }
        let root = root_surface(surface);
        if let Some(window) = self.desk.window_for_surface(&root) {
            if meta(&window).state.borrow().mapped {
                // Clients cannot move themselves in xdg-shell; placement and moves clamp the
                // position, and sizes are clamped where they are used.
                window.on_commit();
            } else if &root == surface {
                self.ensure_initial_configure(surface);
                self.map_if_ready(surface);
            }
        }
        self.popup_commit(surface);
        self.layer_commit(surface);
    }
}

impl State {
    fn ensure_initial_configure(&mut self, surface: &WlSurface) {
        let Some(window) = self.desk.window_for_surface(surface) else {
            return;
        };
        let Some(toplevel) = window.toplevel() else {
            return;
        };
        if !toplevel.is_initial_configure_sent() {
            toplevel.send_configure();
        }
    }

    fn popup_commit(&mut self, surface: &WlSurface) {
        self.desk.popups.commit(surface);
        if let Some(PopupKind::Xdg(popup)) = self.desk.popups.find_popup(surface) {
            let sent = with_role_attributes(surface, |d: &XdgPopupSurfaceRoleAttributes| {
                d.initial_configure_sent
            })
            .unwrap_or(true);
            if !sent {
                // A popup whose configure fails to send is dead anyway.
                let _ = popup.send_configure();
            }
        }
    }

    fn layer_commit(&mut self, surface: &WlSurface) {
        let outputs: Vec<_> = self.desk.space.outputs().cloned().collect();
        for output in outputs {
            let mut map = layer_map_for_output(&output);
            let Some(layer) = map
                .layer_for_surface(surface, WindowSurfaceType::TOPLEVEL)
                .cloned()
            else {
                continue;
            };
            let initial_sent = with_role_attributes(surface, |d: &LayerSurfaceAttributes| {
                d.initial_configure_sent
            })
            .unwrap_or(true);
            map.arrange();
            if !initial_sent {
                layer.layer_surface().send_configure();
            }
            drop(map);
            self.desk.refresh_maximized(&output);
            self.layer_keyboard_focus(&layer);
            return;
        }
    }

    /// Keyboard focus rules of layer-shell: an exclusive top/overlay surface takes it (and
    /// keeps it); a surface that drops its interactivity gives it back to the last window.
    fn layer_keyboard_focus(&mut self, layer: &smithay::desktop::LayerSurface) {
        use smithay::wayland::shell::wlr_layer::{KeyboardInteractivity, Layer};
        let Some(kb) = self.desk.keyboard() else {
            return;
        };
        let state = layer.cached_state();
        let surface = layer.wl_surface().clone();
        let has_focus = self.desk.keyboard_focus.as_ref() == Some(&surface);
        let exclusive = state.keyboard_interactivity == KeyboardInteractivity::Exclusive
            && matches!(state.layer, Layer::Top | Layer::Overlay);
        if exclusive && !has_focus && !self.desk.lock.is_locked() {
            let serial = self.desk.next_serial();
            kb.set_focus(self, Some(surface), serial);
        } else if has_focus && state.keyboard_interactivity == KeyboardInteractivity::None {
            self.focus_after_removal();
        }
    }
}

/// Touches the last byte of a newly attached shm buffer, so that a pool whose file is shorter
/// than it claims (reading it would fault) disconnects its client now, through smithay's SIGBUS
/// guard, instead of failing a frame that other clients share.
fn probe_shm_buffer(surface: &WlSurface) {
    let buffer = smithay::backend::renderer::utils::with_renderer_surface_state(surface, |s| {
        s.buffer().map(|b| (**b).clone())
    })
    .flatten();
    let Some(buffer) = buffer else { return };
    let result = smithay::wayland::shm::with_buffer_contents(&buffer, |ptr, len, data| {
        let end = data.offset as usize + data.stride as usize * data.height as usize;
        if end == 0 || end > len {
            return false;
        }
        // SAFETY: `end - 1 < len`, so the byte lies inside the pool's mapping, which is valid
        // for the duration of this callback; a read past the file's end raises SIGBUS, which
        // smithay's guard turns into an error for this client.
        unsafe { std::ptr::read_volatile(ptr.add(end - 1)) };
        true
    });
    if let Ok(false) = result {
        buffer.post_error(
            smithay::reexports::wayland_server::protocol::wl_shm::Error::InvalidStride,
            "buffer exceeds its pool",
        );
    }
}

impl BufferHandler for State {
    fn buffer_destroyed(&mut self, _buffer: &wl_buffer::WlBuffer) {}
}

impl ShmHandler for State {
    fn shm_state(&self) -> &ShmState {
        &self.desk.shm_state
    }
}

// wl_compositor and wl_shm are delegated to smithay in `super::bounded`, which bounds what
// a VM client can pile up through them.
