//! Floating window management: mapping, focus, stacking, maximize/fullscreen/minimize, close.

use std::cell::RefCell;

use smithay::desktop::{find_popup_root_surface, layer_map_for_output, Window};
use smithay::input::keyboard::KeyboardHandle;
use smithay::output::Output;
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_toplevel;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Resource;
use smithay::utils::{IsAlive, Logical, Point, Rectangle, SERIAL_COUNTER};
use smithay::wayland::compositor::with_states;
use smithay::wayland::seat::WaylandFocus;
use smithay::wayland::shell::xdg::{
    ToplevelSurface, XdgPopupSurfaceRoleAttributes, XdgToplevelSurfaceRoleAttributes,
};

use crate::domain::Domain;
use crate::frame::{self, FrameKind};
use crate::sanitize::sanitize_title;
use crate::state::{Desktop, State};
use smithay::wayland::foreign_toplevel_list::ForeignToplevelHandle;

/// What the compositor keeps about each toplevel, in the window's user data.
pub struct WindowMeta {
    pub id: u64,
    pub domain: Domain,
    pub state: RefCell<WindowState>,
    /// The window as host taskbars see it (ext-foreign-toplevel-list, host clients only).
    pub foreign: RefCell<Option<ForeignToplevelHandle>>,
}

/// The title as the compositor shows it: `[vm] title` for VM windows, `title` for the host.
pub fn labelled_title(domain: &Domain, title: &str) -> String {
    if domain.is_host() {
        title.to_string()
    } else {
        format!("[{}] {}", domain.name(), title)
    }
}

#[derive(Debug, Default, Clone)]
pub struct WindowState {
    /// Where the window was before maximize/fullscreen, to go back to.
    pub restore: Option<Rectangle<i32, Logical>>,
    pub maximized: bool,
    pub fullscreen: bool,
    /// Mapped into the space yet (after its first buffer commit).
    pub mapped: bool,
    /// Asked for fullscreen before it was mapped.
    pub wants_fullscreen: bool,
    /// Opened without focus: its title bar asks for the user's attention until focused.
    pub attention: bool,
}

pub fn meta(window: &Window) -> &WindowMeta {
    // Every window we create gets its meta before it is stored anywhere.
    window
        .user_data()
        .get::<WindowMeta>()
        .unwrap_or_else(|| unreachable!("window without WindowMeta"))
}

/// Reads the role attributes smithay keeps for `surface` behind a `Mutex<A>` (xdg toplevel,
/// xdg popup, layer surface). `None` when the surface has no such role.
pub fn with_role_attributes<A: 'static, R>(
    surface: &WlSurface,
    f: impl FnOnce(&A) -> R,
) -> Option<R> {
    with_states(surface, |states| {
        states
            .data_map
            .get::<std::sync::Mutex<A>>()
            .map(|d| f(&d.lock().unwrap_or_else(|p| p.into_inner())))
    })
}

/// Sanitised title and app id of a toplevel.
pub fn title_and_app_id(window: &Window) -> (String, String) {
    if let Some(x11) = window.x11_surface() {
        return (sanitize_title(&x11.title()), sanitize_title(&x11.class()));
    }
    let Some(toplevel) = window.toplevel() else {
        return (String::new(), String::new());
    };
    with_role_attributes(
        toplevel.wl_surface(),
        |d: &XdgToplevelSurfaceRoleAttributes| {
            (
                sanitize_title(d.title.as_deref().unwrap_or("")),
                sanitize_title(d.app_id.as_deref().unwrap_or("")),
            )
        },
    )
    .unwrap_or_default()
}

impl Desktop {
    /// A new xdg toplevel: remember it, map it when it has content.
    pub fn add_toplevel(&mut self, toplevel: ToplevelSurface) {
        let domain = self.surface_domain(toplevel.wl_surface());
        let window = Window::new_wayland_window(toplevel.clone());
        toplevel.with_pending_state(|s| {
            s.decoration_mode = Some(smithay::reexports::wayland_protocols::xdg::decoration::zv1::server::zxdg_toplevel_decoration_v1::Mode::ServerSide);
            s.states.set(xdg_toplevel::State::TiledLeft);
            s.states.set(xdg_toplevel::State::TiledRight);
            s.states.set(xdg_toplevel::State::TiledTop);
            s.states.set(xdg_toplevel::State::TiledBottom);
            if let Some(out) = self.active_output().and_then(|o| self.space.output_geometry(&o)) {
                let inner = self.metrics().content_in(out, FrameKind::Full);
                s.bounds = Some(inner.size);
            }
        });
        self.add_window(window, domain);
    }

    /// A new window of `domain` (an xdg toplevel or a managed X11 window): remembered, and
    /// shown on its first commit with a buffer, which decides its size.
    pub fn add_window(&mut self, window: Window, domain: Domain) {
        let id = self.next_window_id;
        self.next_window_id += 1;
        window.user_data().insert_if_missing(|| WindowMeta {
            id,
            domain,
            state: RefCell::new(WindowState::default()),
            foreign: RefCell::new(None),
        });
        self.pending_windows.push(window);
    }

    /// The window whose toplevel is `surface`, mapped, pending or minimised.
    pub fn window_for_surface(&self, surface: &WlSurface) -> Option<Window> {
        self.space
            .elements()
            .chain(self.pending_windows.iter())
            .chain(self.minimized.iter().map(|(w, _)| w))
            .find(|w| w.wl_surface().as_deref() == Some(surface))
            .cloned()
    }

    /// The window containing `surface` anywhere in its tree (subsurfaces, popups).
    pub fn window_for_any_surface(&self, surface: &WlSurface) -> Option<Window> {
        let mut root = root_surface(surface);
        if let Some(popup) = self.popups.find_popup(&root) {
            root = find_popup_root_surface(&popup).ok()?;
        }
        self.window_for_surface(&root)
    }

    pub fn window_by_id(&self, id: u64) -> Option<Window> {
        self.all_windows().into_iter().find(|w| meta(w).id == id)
    }

    /// Every toplevel: mapped (bottom to top), then minimised.
    pub fn all_windows(&self) -> Vec<Window> {
        self.space
            .elements()
            .cloned()
            .chain(self.minimized.iter().map(|(w, _)| w.clone()))
            .collect()
    }

    pub fn keyboard(&self) -> Option<KeyboardHandle<State>> {
        self.seat.get_keyboard()
    }

    /// The window with keyboard focus.
    pub fn focused_window(&self) -> Option<Window> {
        let focus = self.keyboard_focus.as_ref()?;
        self.space
            .elements()
            .find(|w| w.wl_surface().as_deref() == Some(focus))
            .cloned()
    }

    pub fn close_window(&mut self, window: &Window) {
        if let Some(t) = window.toplevel() {
            t.send_close();
        } else if let Some(x11) = window.x11_surface() {
            if let Err(e) = x11.close() {
                tracing::debug!("cannot close an X11 window: {e}");
            }
        }
    }

    /// The output a window is mostly on.
    pub fn window_output(&self, window: &Window) -> Option<Output> {
        let geo = self.space.element_geometry(window)?;
        self.space
            .outputs()
            .filter_map(|o| {
                let og = self.space.output_geometry(o)?;
                let i = og.intersection(geo)?;
                Some((o.clone(), i.size.w as i64 * i.size.h as i64))
            })
            .max_by_key(|(_, area)| *area)
            .map(|(o, _)| o)
            .or_else(|| self.active_output())
    }

    pub fn frame_kind(&self, window: &Window) -> FrameKind {
        let m = meta(window);
        match (m.state.borrow().fullscreen, m.domain.is_host()) {
            (false, _) => FrameKind::Full,
            (true, false) => FrameKind::Strip,
            (true, true) => FrameKind::None,
        }
    }

    pub fn set_fullscreen(&mut self, window: &Window, on: bool, output: Option<Output>) {
        let Some(toplevel) = window.toplevel().cloned() else {
            return;
        };
        let m = meta(window);
        let mut st = m.state.borrow_mut();
        if st.fullscreen == on {
            drop(st);
            toplevel.send_pending_configure();
            return;
        }
        let current = self.space.element_geometry(window);
        if on {
            let Some(out) = output.or_else(|| self.window_output(window)) else {
                return;
            };
            let Some(area) = self.space.output_geometry(&out) else {
                return;
            };
            if !st.maximized {
                st.restore = current;
            }
            st.fullscreen = true;
            let kind = if m.domain.is_host() {
                FrameKind::None
            } else {
                FrameKind::Strip
            };
            let content = self.metrics().content_in(area, kind);
            drop(st);
            toplevel.with_pending_state(|s| {
                s.states.set(xdg_toplevel::State::Fullscreen);
                s.size = Some(content.size);
                s.fullscreen_output = toplevel
                    .wl_surface()
                    .client()
                    .and_then(|c| out.client_outputs(&c).next());
            });
            self.relocate(window, content.loc);
        } else {
            st.fullscreen = false;
            let maximized = st.maximized;
            let restore = st.restore;
            drop(st);
            toplevel.with_pending_state(|s| {
                s.states.unset(xdg_toplevel::State::Fullscreen);
                s.fullscreen_output = None;
            });
            if maximized {
                self.apply_maximized(window);
            } else if let Some(r) = restore {
                toplevel.with_pending_state(|s| s.size = Some(r.size));
                self.relocate(window, r.loc);
            } else {
                toplevel.with_pending_state(|s| s.size = None);
            }
        }
        toplevel.send_pending_configure();
        self.request_redraw();
    }

    pub fn set_maximized(&mut self, window: &Window, on: bool) {
        let Some(toplevel) = window.toplevel().cloned() else {
            return;
        };
        let m = meta(window);
        let mut st = m.state.borrow_mut();
        if st.maximized == on || st.fullscreen {
            st.maximized = on;
            drop(st);
            toplevel.send_pending_configure();
            return;
        }
        st.maximized = on;
        if on {
            st.restore = self.space.element_geometry(window);
            drop(st);
            self.apply_maximized(window);
        } else {
            let restore = st.restore.take();
            drop(st);
            toplevel.with_pending_state(|s| {
                s.states.unset(xdg_toplevel::State::Maximized);
                s.size = restore.map(|r| r.size);
            });
            if let Some(r) = restore {
                self.relocate(window, r.loc);
            }
        }
        toplevel.send_pending_configure();
        self.request_redraw();
    }

    fn apply_maximized(&mut self, window: &Window) {
        let Some(toplevel) = window.toplevel() else {
            return;
        };
        let Some(out) = self.window_output(window) else {
            return;
        };
        let Some(area) = self.usable_area(&out) else {
            return;
        };
        let content = self.metrics().content_in(area, FrameKind::Full);
        toplevel.with_pending_state(|s| {
            s.states.set(xdg_toplevel::State::Maximized);
            s.size = Some(content.size);
        });
        self.relocate(window, content.loc);
    }

    /// Moves `window` to `loc` for a maximize, fullscreen or restore. The window with the
    /// keyboard is raised as before; any other keeps its place in the stack and nobody's
    /// activation changes, so no client can put itself over the focused window this way.
    fn relocate(&mut self, window: &Window, loc: Point<i32, Logical>) {
        if self.focused_window().as_ref() == Some(window) {
            self.space.map_element(window.clone(), loc, true);
            return;
        }
        let above: Vec<Window> = self
            .space
            .elements()
            .skip_while(|w| *w != window)
            .skip(1)
            .cloned()
            .collect();
        self.space.map_element(window.clone(), loc, false);
        for w in &above {
            self.space.raise_element(w, false);
        }
    }

    /// Whether the keyboard is on a top/overlay layer surface that asked for exclusive focus.
    pub fn exclusive_layer_focused(&self) -> bool {
        use smithay::wayland::shell::wlr_layer::{KeyboardInteractivity, Layer};
        let Some(focus) = self.keyboard_focus.as_ref() else {
            return false;
        };
        self.space.outputs().any(|o| {
            let map = smithay::desktop::layer_map_for_output(o);
            map.layer_for_surface(focus, smithay::desktop::WindowSurfaceType::TOPLEVEL)
                .is_some_and(|l| {
                    let s = l.cached_state();
                    s.keyboard_interactivity == KeyboardInteractivity::Exclusive
                        && matches!(s.layer, Layer::Top | Layer::Overlay)
                })
        })
    }

    /// Re-fits maximized windows on `output` after its usable area changed.
    pub fn refresh_maximized(&mut self, output: &smithay::output::Output) {
        let windows: Vec<Window> = self
            .space
            .elements()
            .filter(|w| {
                let st = meta(w).state.borrow();
                st.maximized && !st.fullscreen
            })
            .filter(|w| self.window_output(w).as_ref() == Some(output))
            .cloned()
            .collect();
        for w in windows {
            self.apply_maximized(&w);
            if let Some(t) = w.toplevel() {
                t.send_pending_configure();
            }
        }
    }

    /// After outputs changed (mode, scale, position, on/off): panels rearranged, maximised
    /// windows refitted, and every window brought back onto an output if its one went away.
    pub fn outputs_changed(&mut self) {
        let outputs: Vec<Output> = self.space.outputs().cloned().collect();
        for o in &outputs {
            layer_map_for_output(o).arrange();
        }
        let rects = self.output_rects();
        let metrics = self.metrics();
        let windows: Vec<Window> = self.space.elements().cloned().collect();
        for w in &windows {
            let Some(loc) = self.space.element_location(w) else {
                continue;
            };
            let content = Rectangle::new(loc, frame::clamp_size(w.geometry().size));
            let kind = self.frame_kind(w);
            let fixed = frame::clamp_position(content, metrics, kind, &rects);
            if fixed != loc {
                self.relocate(w, fixed);
                crate::xwayland::sync_position(self, w);
            }
        }
        for o in &outputs {
            self.refresh_maximized(o);
        }
        self.request_redraw();
    }

    /// The output's area not reserved by layer-shell panels, in global coordinates.
    pub fn usable_area(&self, output: &Output) -> Option<Rectangle<i32, Logical>> {
        let geo = self.space.output_geometry(output)?;
        let zone = smithay::desktop::layer_map_for_output(output).non_exclusive_zone();
        Some(Rectangle::new(geo.loc + zone.loc, zone.size))
    }

    /// A fresh serial for compositor-initiated events.
    pub fn next_serial(&self) -> smithay::utils::Serial {
        SERIAL_COUNTER.next_serial()
    }
}

impl State {
    /// Called on a toplevel's commit: maps it on its first buffer.
    pub fn map_if_ready(&mut self, surface: &WlSurface) {
        let Some(pos) = self
            .desk
            .pending_windows
            .iter()
            .position(|w| w.wl_surface().as_deref() == Some(surface))
        else {
            return;
        };
        let window = self.desk.pending_windows[pos].clone();
        let has_buffer =
            smithay::backend::renderer::utils::with_renderer_surface_state(surface, |s| {
                s.buffer().is_some()
            })
            .unwrap_or(false);
        if !has_buffer {
            return;
        }
        self.desk.pending_windows.remove(pos);
        window.on_commit();
        let size = frame::clamp_size(window.geometry().size);
        let out = self
            .desk
            .active_output()
            .and_then(|o| self.desk.space.output_geometry(&o))
            .unwrap_or_else(|| Rectangle::new((0, 0).into(), (1280, 800).into()));
        let metrics = self.desk.metrics();
        let taken: Vec<Rectangle<i32, Logical>> = self
            .desk
            .space
            .elements()
            .filter_map(|w| {
                let loc = self.desk.space.element_location(w)?;
                let content = Rectangle::new(loc, frame::clamp_size(w.geometry().size));
                Some(metrics.outer(content, self.desk.frame_kind(w)))
            })
            .collect();
        let loc = frame::place_new(size, self.desk.metrics(), out, &taken);
        meta(&window).state.borrow_mut().mapped = true;
        let (title, app_id) = title_and_app_id(&window);
        let m = meta(&window);
        let handle = self
            .desk
            .foreign_toplevel_state
            .new_toplevel::<State>(labelled_title(&m.domain, &title), app_id);
        *m.foreign.borrow_mut() = Some(handle);
        let domain = m.domain.clone();
        if self.new_window_takes_focus(&domain) {
            self.desk.space.map_element(window.clone(), loc, true);
            crate::xwayland::sync_position(&self.desk, &window);
            if meta(&window).state.borrow().wants_fullscreen {
                self.desk.set_fullscreen(&window, true, None);
            }
            self.focus_window(&window);
        } else {
            // Behind the focused window, wanting attention; a fullscreen wish waits for the
            // user to focus it.
            self.open_unfocused(&window, loc);
            crate::xwayland::sync_position(&self.desk, &window);
        }
        // An inhibitor set before the window showed counts from now on.
        self.update_idle_inhibit();
        self.desk.request_redraw();
    }

    /// Raises, activates and gives keyboard focus to `window` (restoring it if minimised).
    pub fn focus_window(&mut self, window: &Window) {
        if self.desk.lock.is_locked() || !meta(window).state.borrow().mapped {
            return;
        }
        // A grab of another window would keep the keyboard: it ends here.
        if self.desk.popup_grab.is_some()
            && self.desk.focused_root_window().as_ref() != Some(window)
        {
            self.end_grabs();
        }
        let wants_fullscreen = {
            let mut st = meta(window).state.borrow_mut();
            std::mem::take(&mut st.attention) && st.wants_fullscreen && !st.fullscreen
        };
        if let Some(pos) = self.desk.minimized.iter().position(|(w, _)| w == window) {
            let (w, loc) = self.desk.minimized.remove(pos);
            self.desk.space.map_element(w, loc, false);
        }
        self.desk.space.raise_element(window, true);
        for w in self.desk.space.elements() {
            w.set_activated(w == window);
            // Mapping may already have set the state; send whatever the client has not seen.
            if let Some(t) = w.toplevel() {
                t.send_pending_configure();
            }
        }
        if let (Some(x11), Some(wm)) = (window.x11_surface(), self.desk.xwayland.wm.as_mut()) {
            if let Err(e) = wm.raise_window(x11) {
                tracing::debug!("cannot raise an X11 window: {e}");
            }
        }
        self.desk.focus_order.retain(|w| w != window && w.alive());
        self.desk.focus_order.insert(0, window.clone());
        if self.desk.exclusive_layer_focused() {
            // An exclusive layer surface (a launcher, a lock-like overlay) keeps the keyboard.
            self.desk.request_redraw();
            return;
        }
        if let (Some(kb), Some(surface)) = (self.desk.keyboard(), window.wl_surface()) {
            let serial = self.desk.next_serial();
            kb.set_focus(self, Some(surface.into_owned()), serial);
        }
        if wants_fullscreen {
            self.desk.set_fullscreen(window, true, None);
        }
        self.desk.request_redraw();
    }

    /// Moves focus along the most-recently-used order (`forward` = next older window).
    pub fn focus_cycle(&mut self, forward: bool) {
        self.desk.focus_order.retain(|w| w.alive());
        for w in self.desk.all_windows() {
            if !self.desk.focus_order.contains(&w) {
                self.desk.focus_order.push(w);
            }
        }
        if self.desk.focus_order.len() < 2 {
            if let Some(w) = self.desk.focus_order.first().cloned() {
                self.focus_window(&w);
            }
            return;
        }
        let target = if forward {
            // Bring the second most recent to front; the old front becomes second.
            self.desk.focus_order[1].clone()
        } else {
            self.desk.focus_order[self.desk.focus_order.len() - 1].clone()
        };
        self.focus_window(&target);
    }

    /// After a window went away: focus the next one in MRU order.
    pub fn focus_after_removal(&mut self) {
        self.desk
            .focus_order
            .retain(|w| w.alive() && self.desk.space.elements().any(|e| e == w));
        let next = self.desk.focus_order.first().cloned();
        match next {
            Some(w) => self.focus_window(&w),
            None => {
                if let Some(kb) = self.desk.keyboard() {
                    let serial = self.desk.next_serial();
                    kb.set_focus(self, None, serial);
                }
            }
        }
    }

    pub fn remove_window(&mut self, surface: &WlSurface) {
        self.remove_window_where(|w| w.wl_surface().as_deref() == Some(surface));
    }

    /// Forgets the window `is_it` picks, wherever it is, and moves focus on if it had it.
    pub fn remove_window_where(&mut self, is_it: impl Fn(&Window) -> bool) {
        let all = self.desk.all_windows();
        for w in all.iter().chain(self.desk.pending_windows.iter()) {
            if is_it(w) {
                if let Some(handle) = meta(w).foreign.borrow_mut().take() {
                    self.desk.foreign_toplevel_state.remove_toplevel(&handle);
                }
            }
        }
        self.desk.pending_windows.retain(|w| !is_it(w));
        self.desk.minimized.retain(|(w, _)| !is_it(w));
        let window = self.desk.space.elements().find(|w| is_it(w)).cloned();
        if let Some(w) = window {
            let was_focused = self.desk.focused_window().as_ref() == Some(&w);
            self.desk.space.unmap_elem(&w);
            self.desk.focus_order.retain(|x| x != &w);
            if was_focused {
                self.focus_after_removal();
            }
        }
        self.desk.request_redraw();
    }

    pub fn minimize_window(&mut self, window: &Window) {
        let Some(loc) = self.desk.space.element_location(window) else {
            return;
        };
        let was_focused = self.desk.focused_window().as_ref() == Some(window);
        self.desk.space.unmap_elem(window);
        self.desk.minimized.push((window.clone(), loc));
        self.desk.focus_order.retain(|w| w != window);
        self.desk.focus_order.push(window.clone());
        if was_focused {
            self.focus_after_removal();
        }
        // A minimised window's inhibitor no longer counts.
        self.update_idle_inhibit();
        self.desk.request_redraw();
    }
}

/// The size the compositor configured for a popup: all of it that is ever shown, whatever
/// buffer the client attaches.
pub fn popup_configured_size(
    popup: &smithay::desktop::PopupKind,
) -> smithay::utils::Size<i32, Logical> {
    with_role_attributes(popup.wl_surface(), |d: &XdgPopupSurfaceRoleAttributes| {
        d.current.geometry.size
    })
    .unwrap_or_default()
}

/// Tells host taskbars a window's new title and app id.
pub fn update_foreign(window: &Window) {
    let m = meta(window);
    if let Some(handle) = m.foreign.borrow().as_ref() {
        let (title, app_id) = title_and_app_id(window);
        handle.send_title(&labelled_title(&m.domain, &title));
        handle.send_app_id(&app_id);
        handle.send_done();
    }
}

/// The root of a surface tree (the toplevel of a subsurface).
pub fn root_surface(surface: &WlSurface) -> WlSurface {
    let mut root = surface.clone();
    while let Some(parent) = smithay::wayland::compositor::get_parent(&root) {
        root = parent;
    }
    root
}
