//! Input: key bindings (checked before any client sees a key, so no VM can inhibit them),
//! pointer focus and hit-testing against compositor frames, and move/resize grabs.

use bulkhead_config::Action;
use smithay::backend::input::{
    AbsolutePositionEvent, Axis, AxisSource, ButtonState, Event, InputBackend, InputEvent,
    KeyState, KeyboardKeyEvent, PointerAxisEvent, PointerButtonEvent, PointerMotionEvent,
    TouchEvent,
};
use smithay::desktop::{layer_map_for_output, PopupManager, Window, WindowSurfaceType};
use smithay::input::keyboard::{FilterResult, Keycode};
use smithay::input::pointer::{
    AxisFrame, ButtonEvent, Focus, GestureHoldBeginEvent, GestureHoldEndEvent,
    GesturePinchBeginEvent, GesturePinchEndEvent, GesturePinchUpdateEvent, GestureSwipeBeginEvent,
    GestureSwipeEndEvent, GestureSwipeUpdateEvent, GrabStartData, MotionEvent, PointerGrab,
    PointerInnerHandle, RelativeMotionEvent,
};
use smithay::reexports::wayland_protocols::xdg::shell::server::xdg_toplevel::{self, ResizeEdge};
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Resource;
use smithay::utils::{Logical, Point, Rectangle, Serial, SERIAL_COUNTER};
use smithay::wayland::seat::WaylandFocus;
use smithay::wayland::shell::wlr_layer::{KeyboardInteractivity, Layer};

use crate::domain::{client_domain, SerialUse};
use crate::frame::{self, FrameKind};
use crate::handlers::pointer_constraints::Constrained;
use crate::shell::meta;
use crate::state::State;

pub const BTN_LEFT: u32 = 0x110;
pub const BTN_RIGHT: u32 = 0x111;

/// Resize edges as a small bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Edges {
    pub left: bool,
    pub right: bool,
    pub top: bool,
    pub bottom: bool,
}

impl From<ResizeEdge> for Edges {
    fn from(e: ResizeEdge) -> Self {
        let v = e as u32;
        Edges {
            top: v & 1 != 0,
            bottom: v & 2 != 0,
            left: v & 4 != 0,
            right: v & 8 != 0,
        }
    }
}

/// What a grab does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrabStart {
    Move,
    Resize(Edges),
}

/// What is under a point of the global space.
pub enum Hit {
    /// A client surface, with its origin in global coordinates.
    Surface(WlSurface, Point<f64, Logical>),
    /// A compositor-drawn frame: title bar (move) or border (resize edges).
    Frame(Window, GrabStart),
    Nothing,
}

impl State {
    /// Hit-tests the scene at `pos`, in the order it is drawn.
    pub fn hit(&self, pos: Point<f64, Logical>) -> Hit {
        let desk = &self.desk;
        let output = desk.space.output_under(pos).next().cloned();
        if desk.lock.is_locked() {
            let Some(output) = output else {
                return Hit::Nothing;
            };
            let Some(lock) = desk.lock.surface_for(&output) else {
                return Hit::Nothing;
            };
            let origin = desk
                .space
                .output_geometry(&output)
                .map_or((0, 0).into(), |g| g.loc);
            return Hit::Surface(lock.wl_surface().clone(), origin.to_f64());
        }
        if let Some(o) = &output {
            if let Some(hit) = self.layer_hit(o, pos, &[Layer::Overlay, Layer::Top]) {
                return hit;
            }
        }
        for x11 in desk.xwayland.overrides.iter().rev() {
            let geo = x11.geometry();
            if let (true, Some(surface)) = (geo.to_f64().contains(pos), x11.wl_surface()) {
                if let Some((s, p)) = smithay::desktop::utils::under_from_surface_tree(
                    &surface,
                    pos,
                    geo.loc,
                    WindowSurfaceType::ALL,
                ) {
                    return Hit::Surface(s, p.to_f64());
                }
            }
        }
        let metrics = desk.metrics();
        for window in desk.space.elements().rev() {
            let Some(loc) = desk.space.element_location(window) else {
                continue;
            };
            let Some(toplevel_surface) = window.wl_surface() else {
                continue;
            };
            let geo = window.geometry();
            // Popups first: they are drawn above their window.
            for (popup, offset) in PopupManager::popups_for_surface(&toplevel_surface) {
                let rect =
                    Rectangle::new(loc + offset, crate::shell::popup_configured_size(&popup));
                if rect.to_f64().contains(pos) {
                    let origin = rect.loc - popup.geometry().loc;
                    if let Some((s, p)) = smithay::desktop::utils::under_from_surface_tree(
                        popup.wl_surface(),
                        pos,
                        origin,
                        WindowSurfaceType::ALL,
                    ) {
                        return Hit::Surface(s, p.to_f64());
                    }
                    return Hit::Nothing;
                }
            }
            let content = Rectangle::new(loc, frame::clamp_size(geo.size));
            let kind = desk.frame_kind(window);
            let outer = metrics.outer(content, kind);
            if !outer.to_f64().contains(pos) {
                continue;
            }
            if content.to_f64().contains(pos) {
                let render_loc = loc - geo.loc;
                let under = window.surface_under(
                    pos - render_loc.to_f64(),
                    WindowSurfaceType::TOPLEVEL | WindowSurfaceType::SUBSURFACE,
                );
                return match under {
                    Some((s, p)) => Hit::Surface(s, (p + render_loc).to_f64()),
                    // Inside the frame but not on an input region: nobody gets it.
                    None => Hit::Nothing,
                };
            }
            let bar = metrics.title_bar(content, kind);
            let grab = if bar.to_f64().contains(pos) && pos.y >= (bar.loc.y + metrics.border) as f64
            {
                GrabStart::Move
            } else {
                let p = pos.to_i32_round::<i32>();
                GrabStart::Resize(Edges {
                    left: p.x < content.loc.x,
                    right: p.x >= content.loc.x + content.size.w,
                    top: p.y < bar.loc.y + metrics.border,
                    bottom: p.y >= content.loc.y + content.size.h,
                })
            };
            return Hit::Frame(window.clone(), grab);
        }
        if let Some(o) = &output {
            if let Some(hit) = self.layer_hit(o, pos, &[Layer::Bottom, Layer::Background]) {
                return hit;
            }
        }
        Hit::Nothing
    }

    fn layer_hit(
        &self,
        output: &smithay::output::Output,
        pos: Point<f64, Logical>,
        layers: &[Layer],
    ) -> Option<Hit> {
        let out_geo = self.desk.space.output_geometry(output)?;
        let map = layer_map_for_output(output);
        for layer in layers {
            for surface in map.layers_on(*layer).rev() {
                let Some(geo) = map.layer_geometry(surface) else {
                    continue;
                };
                let origin = out_geo.loc + geo.loc;
                if let Some((s, p)) =
                    surface.surface_under(pos - origin.to_f64(), WindowSurfaceType::ALL)
                {
                    return Some(Hit::Surface(s, (p + origin).to_f64()));
                }
            }
        }
        None
    }

    /// The pointer focus for `pos`: the surface under it, except that a running drag only
    /// ever sees surfaces of its own domain.
    pub fn pointer_focus(
        &self,
        pos: Point<f64, Logical>,
    ) -> Option<(WlSurface, Point<f64, Logical>)> {
        match self.hit(pos) {
            Hit::Surface(s, p) => {
                if let Some(d) = &self.desk.dnd_domain {
                    if &self.desk.surface_domain(&s) != d {
                        return None;
                    }
                }
                Some((s, p))
            }
            _ => None,
        }
    }

    pub fn process_input_event<I: InputBackend>(&mut self, event: InputEvent<I>) {
        self.user_activity();
        match event {
            InputEvent::Keyboard { event } => {
                let pressed = event.state() == KeyState::Pressed;
                self.on_key(event.key_code(), pressed, event.time_msec());
            }
            InputEvent::PointerMotion { event } => {
                self.on_pointer_motion_relative(event.delta(), event.delta_unaccel(), event.time());
            }
            InputEvent::PointerMotionAbsolute { event } => {
                // An absolute device (a tablet, a VM's virtual tablet) spans the whole layout,
                // so every output can be reached with it, as with a mouse.
                let Some(geo) = self
                    .desk
                    .space
                    .outputs()
                    .filter_map(|o| self.desk.space.output_geometry(o))
                    .reduce(|a, b| a.merge(b))
                else {
                    return;
                };
                let pos = event.position_transformed(geo.size) + geo.loc.to_f64();
                self.on_pointer_motion(pos, event.time_msec());
            }
            InputEvent::PointerButton { event } => {
                self.on_pointer_button(
                    event.button_code(),
                    event.state() == ButtonState::Pressed,
                    event.time_msec(),
                );
            }
            InputEvent::TouchDown { event } => {
                let pos = self.touch_position(&event);
                self.on_touch_down(event.slot(), pos, event.time_msec());
            }
            InputEvent::TouchMotion { event } => {
                let pos = self.touch_position(&event);
                self.on_touch_motion(event.slot(), pos, event.time_msec());
            }
            InputEvent::TouchUp { event } => self.on_touch_up(event.slot(), event.time_msec()),
            InputEvent::PointerAxis { event } => {
                let source = event.source();
                let mut frame = AxisFrame::new(event.time_msec()).source(source);
                for axis in [Axis::Horizontal, Axis::Vertical] {
                    let amount = event
                        .amount(axis)
                        .or_else(|| event.amount_v120(axis).map(|v| v * 15.0 / 120.0))
                        .unwrap_or(0.0);
                    if amount != 0.0 {
                        frame = frame.value(axis, amount);
                        if let Some(v120) = event.amount_v120(axis) {
                            frame = frame.v120(axis, v120 as i32);
                        }
                    } else if source == AxisSource::Finger {
                        frame = frame.stop(axis);
                    }
                }
                if let Some(pointer) = self.desk.seat.get_pointer() {
                    pointer.axis(self, frame);
                    pointer.frame(self);
                }
            }
            _ => {}
        }
    }

    fn touch_position<E: AbsolutePositionEvent<I>, I: InputBackend>(
        &self,
        event: &E,
    ) -> Point<f64, Logical> {
        let geo = self
            .desk
            .space
            .outputs()
            .next()
            .and_then(|o| self.desk.space.output_geometry(o))
            .unwrap_or_default();
        event.position_transformed(geo.size) + geo.loc.to_f64()
    }

    fn clamp_to_outputs(&self, pos: Point<f64, Logical>) -> Point<f64, Logical> {
        let rects = self.desk.output_rects();
        if rects.iter().any(|r| r.to_f64().contains(pos)) {
            return pos;
        }
        // Clamp into the nearest output.
        rects
            .iter()
            .map(|r| {
                let x = pos.x.clamp(r.loc.x as f64, (r.loc.x + r.size.w - 1) as f64);
                let y = pos.y.clamp(r.loc.y as f64, (r.loc.y + r.size.h - 1) as f64);
                Point::from((x, y))
            })
            .min_by(|a, b| {
                let da = (a.x - pos.x).powi(2) + (a.y - pos.y).powi(2);
                let db = (b.x - pos.x).powi(2) + (b.y - pos.y).powi(2);
                da.total_cmp(&db)
            })
            .unwrap_or(pos)
    }

    /// One synthetic event (headless backend), through the same paths as real devices.
    pub fn synthetic_input(&mut self, event: bulkhead_ipc::InputEvent) {
        use bulkhead_ipc::InputEvent as E;
        self.user_activity();
        let time = self.desk.elapsed().as_millis() as u32;
        match event {
            E::PointerMotion { x, y } => {
                let pos = self.clamp_to_outputs((x, y).into());
                self.on_pointer_motion(pos, time);
            }
            E::PointerMove { dx, dy } => {
                let delta = Point::from((dx, dy));
                self.on_pointer_motion_relative(delta, delta, u64::from(time) * 1000);
            }
            E::PointerButton { button, pressed } => self.on_pointer_button(button, pressed, time),
            E::PointerAxis { dx, dy } => {
                let mut frame = AxisFrame::new(time).source(AxisSource::Wheel);
                if dx != 0.0 {
                    frame = frame.value(Axis::Horizontal, dx);
                }
                if dy != 0.0 {
                    frame = frame.value(Axis::Vertical, dy);
                }
                if let Some(pointer) = self.desk.seat.get_pointer() {
                    pointer.axis(self, frame);
                    pointer.frame(self);
                }
            }
            E::TouchDown { slot, x, y } => {
                let pos = self.clamp_to_outputs((x, y).into());
                self.on_touch_down(Some(slot).into(), pos, time);
            }
            E::TouchMotion { slot, x, y } => {
                let pos = self.clamp_to_outputs((x, y).into());
                self.on_touch_motion(Some(slot).into(), pos, time);
            }
            E::TouchUp { slot } => self.on_touch_up(Some(slot).into(), time),
            // evdev codes are offset by 8 in xkb.
            E::Key { code, pressed } => {
                self.on_key(Keycode::new(code.saturating_add(8)), pressed, time)
            }
        }
    }

    /// A key press or release, exactly as from a real keyboard.
    pub fn on_key(&mut self, keycode: Keycode, pressed: bool, time: u32) {
        self.desk.keys_handled += 1;
        let Some(kb) = self.desk.keyboard() else {
            return;
        };
        let serial = SERIAL_COUNTER.next_serial();
        let state = if pressed {
            KeyState::Pressed
        } else {
            KeyState::Released
        };
        let locked = self.desk.lock.is_locked();
        let action = kb.input::<Option<Action>, _>(
            self,
            keycode,
            state,
            serial,
            time,
            |st, mods, handle| {
                use smithay::input::keyboard::keysyms as k;
                let is_super = handle
                    .raw_syms()
                    .iter()
                    .any(|s| matches!(s.raw(), k::KEY_Super_L | k::KEY_Super_R));
                if !pressed {
                    // Super pressed and released with nothing in between: the Super binding.
                    let tapped = st.desk.super_tap.take() == Some(keycode) && !locked;
                    if let Some(pos) = st.desk.suppressed_keys.iter().position(|k| *k == keycode) {
                        st.desk.suppressed_keys.remove(pos);
                        return FilterResult::Intercept(None);
                    }
                    if tapped {
                        let b = st.desk.config.bindings.iter().find(|b| {
                            b.combo.keysym == k::KEY_Super_L && b.combo.mods == Default::default()
                        });
                        if let Some(b) = b {
                            // The release still goes to the client that saw the press.
                            let action = b.action.clone();
                            st.desk.loop_handle.insert_idle(move |state| {
                                if let Err(e) = state.run_action(&action) {
                                    tracing::info!("{action}: {e}");
                                }
                            });
                        }
                    }
                    return FilterResult::Forward;
                }
                st.desk.super_tap = (is_super && !locked).then_some(keycode);
                if locked {
                    // While locked, bindings are off and the locker alone gets keys.
                    return if st.desk.lock.has_surface(st.desk.keyboard_focus.as_ref()) {
                        FilterResult::Forward
                    } else {
                        st.desk.suppressed_keys.push(keycode);
                        FilterResult::Intercept(None)
                    };
                }
                if st.desk.launcher.is_some() && !is_super {
                    // The open launcher takes every key (Super closes it on release).
                    let sym = handle.modified_sym();
                    let (raw, ch) = (sym.raw(), sym.key_char());
                    st.desk.suppressed_keys.push(keycode);
                    st.desk
                        .loop_handle
                        .insert_idle(move |state| state.launcher_key(raw, ch));
                    return FilterResult::Intercept(None);
                }
                for sym in handle.raw_syms() {
                    let sym = bulkhead_config::lowercase_keysym(sym.raw());
                    let found = st.desk.config.bindings.iter().find(|b| {
                        b.combo.keysym == sym
                            && b.combo.mods.ctrl == mods.ctrl
                            && b.combo.mods.alt == mods.alt
                            && b.combo.mods.shift == mods.shift
                            && b.combo.mods.logo == mods.logo
                    });
                    if let Some(b) = found {
                        st.desk.suppressed_keys.push(keycode);
                        return FilterResult::Intercept(Some(b.action.clone()));
                    }
                }
                FilterResult::Forward
            },
        );
        match action {
            Some(Some(action)) => {
                if let Err(e) = self.run_action(&action) {
                    tracing::info!("{action}: {e}");
                }
            }
            // Forwarded: the serial the focused client may cite, and typing into a domain
            // voids the launches that were waiting to take the keyboard from it.
            None if pressed => {
                let focus = kb.current_focus();
                self.record_input_serial(focus.as_ref(), serial, SerialUse::Input);
                self.desk.launch_grants.void();
            }
            _ => {}
        }
    }

    pub fn on_pointer_motion(&mut self, pos: Point<f64, Logical>, time: u32) {
        self.desk.pointer_location = pos;
        self.desk.pointer_seen = true;
        let Some(pointer) = self.desk.seat.get_pointer() else {
            return;
        };
        let focus = self.pointer_focus(pos);
        self.desk.pointer_focus_origin = focus.as_ref().map(|(_, origin)| *origin);
        // A client's cursor image ends where its surfaces end: back to ours until the next
        // client sets one.
        let new_client = focus.as_ref().and_then(|(s, _)| s.client()).map(|c| c.id());
        if new_client != self.desk.pointer_client {
            self.desk.pointer_client = new_client;
            self.desk.cursor_status = smithay::input::pointer::CursorImageStatus::default_named();
        }
        let serial = SERIAL_COUNTER.next_serial();
        pointer.motion(
            self,
            focus,
            &MotionEvent {
                location: pos,
                serial,
                time,
            },
        );
        pointer.frame(self);
        self.update_pointer_constraint();
        self.desk.request_redraw();
    }

    /// Re-picks the pointer focus when the scene moved under a still pointer (a window mapped,
    /// moved, resized or closed under it), so enter/leave always match what is under it.
    pub fn refresh_pointer_focus(&mut self) {
        if !self.desk.pointer_seen {
            return;
        }
        let Some(pointer) = self.desk.seat.get_pointer() else {
            return;
        };
        if pointer.is_grabbed() {
            return;
        }
        let pos = self.desk.pointer_location;
        let focus = self.pointer_focus(pos);
        let current = pointer.current_focus();
        let same = match (&focus, &current) {
            (Some((a, _)), Some(b)) => a == b,
            (None, None) => true,
            _ => false,
        };
        // Same surface but moved: clients need the new surface-local position too.
        let moved = same
            && focus
                .as_ref()
                .is_some_and(|(_, origin)| Some(*origin) != self.desk.pointer_focus_origin);
        if same && !moved {
            return;
        }
        let time = self.desk.elapsed().as_millis() as u32;
        self.on_pointer_motion(pos, time);
    }

    /// A finger down at `pos`: focuses the window under it (as a click does) and tells the
    /// surface there.
    pub fn on_touch_down(
        &mut self,
        slot: smithay::backend::input::TouchSlot,
        pos: Point<f64, Logical>,
        time: u32,
    ) {
        let Some(touch) = self.desk.seat.get_touch() else {
            return;
        };
        let focus = self.pointer_focus(pos);
        self.desk.launch_grants.void();
        if let Some((surface, _)) = &focus {
            self.end_grabs_of_others(surface);
            if let Some(w) = self.desk.window_for_any_surface(surface) {
                if self.desk.focused_window().as_ref() != Some(&w) {
                    self.focus_window(&w);
                }
            }
        }
        let serial = SERIAL_COUNTER.next_serial();
        self.record_input_serial(focus.as_ref().map(|(s, _)| s), serial, SerialUse::Press);
        touch.down(
            self,
            focus,
            &smithay::input::touch::DownEvent {
                slot,
                location: pos,
                serial,
                time,
            },
        );
        touch.frame(self);
    }

    pub fn on_touch_motion(
        &mut self,
        slot: smithay::backend::input::TouchSlot,
        pos: Point<f64, Logical>,
        time: u32,
    ) {
        let Some(touch) = self.desk.seat.get_touch() else {
            return;
        };
        let focus = self.pointer_focus(pos);
        touch.motion(
            self,
            focus,
            &smithay::input::touch::MotionEvent {
                slot,
                location: pos,
                time,
            },
        );
        touch.frame(self);
    }

    pub fn on_touch_up(&mut self, slot: smithay::backend::input::TouchSlot, time: u32) {
        let Some(touch) = self.desk.seat.get_touch() else {
            return;
        };
        let serial = SERIAL_COUNTER.next_serial();
        touch.up(self, &smithay::input::touch::UpEvent { slot, serial, time });
        touch.frame(self);
    }

    /// A relative pointer movement (mouse, touchpad): moves the pointer and tells clients that
    /// listen to zwp_relative_pointer_v1.
    pub fn on_pointer_motion_relative(
        &mut self,
        delta: Point<f64, Logical>,
        delta_unaccel: Point<f64, Logical>,
        utime: u64,
    ) {
        let from = self.desk.pointer_location;
        let to = self.clamp_to_outputs(from + delta);
        // A pointer lock keeps the pointer still; a confinement keeps it on its surface.
        let pos = match self.active_constraint() {
            Some(Constrained::Locked(_)) => None,
            Some(Constrained::Confined {
                surface,
                origin,
                region,
            }) => Some(self.confine_motion(from, to, &surface, origin, region.as_ref())),
            None => Some(to),
        };
        if let Some(pos) = pos {
            self.on_pointer_motion(pos, (utime / 1000) as u32);
        }
        let Some(pointer) = self.desk.seat.get_pointer() else {
            return;
        };
        let focus = self.pointer_focus(self.desk.pointer_location);
        pointer.relative_motion(
            self,
            focus,
            &RelativeMotionEvent {
                delta,
                delta_unaccel,
                utime,
            },
        );
        pointer.frame(self);
    }

    pub fn on_pointer_button(&mut self, button: u32, pressed: bool, time: u32) {
        let Some(pointer) = self.desk.seat.get_pointer() else {
            return;
        };
        let serial = SERIAL_COUNTER.next_serial();
        if self.desk.launcher.is_some() && !self.desk.lock.is_locked() {
            // The launcher takes the click (and its release) wherever it lands.
            if pressed {
                let pos = self.desk.pointer_location;
                self.launcher_click(pos);
            }
            return;
        }
        if pressed {
            // The user acts: launches still waiting lose their claim on the keyboard, and a
            // click on another client's surface (or a frame, or nothing) ends every grab
            // before it can hand the keyboard back to the grabbing client.
            self.desk.launch_grants.void();
            match self.hit(self.desk.pointer_location) {
                Hit::Surface(surface, _) => self.end_grabs_of_others(&surface),
                Hit::Frame(..) | Hit::Nothing => {
                    if self.desk.popup_grab.is_some() {
                        self.end_grabs();
                    }
                }
            }
        }
        if pressed && !pointer.is_grabbed() {
            // Hit-tested again: ending a grab above may have dismissed the popup that was
            // under the pointer.
            let pos = self.desk.pointer_location;
            let super_held = self
                .desk
                .keyboard()
                .is_some_and(|k| k.modifier_state().logo);
            match self.hit(pos) {
                Hit::Frame(window, grab) => {
                    self.focus_window(&window);
                    if button == BTN_LEFT {
                        self.start_grab(&window, serial, pos, grab, button);
                    }
                    return;
                }
                Hit::Surface(surface, _) => {
                    let window = self.desk.window_for_any_surface(&surface);
                    if let Some(w) = &window {
                        if super_held && (button == BTN_LEFT || button == BTN_RIGHT) {
                            self.focus_window(w);
                            let grab = if button == BTN_LEFT {
                                GrabStart::Move
                            } else {
                                GrabStart::Resize(self.nearest_edges(w, pos))
                            };
                            self.start_grab(w, serial, pos, grab, button);
                            return;
                        }
                        if self.desk.focused_window().as_ref() != Some(w) {
                            self.focus_window(w);
                        }
                        self.pointer_pressed_in(w);
                    } else {
                        self.focus_layer_on_click(&surface);
                    }
                }
                Hit::Nothing => {}
            }
        }
        let state = if pressed {
            ButtonState::Pressed
        } else {
            ButtonState::Released
        };
        pointer.button(
            self,
            &ButtonEvent {
                button,
                state,
                serial,
                time,
            },
        );
        pointer.frame(self);
        if pressed {
            let focus = pointer.current_focus();
            self.record_input_serial(focus.as_ref(), serial, SerialUse::Press);
            // A click in a window whose constraint was taken back lets it hold again.
            self.update_pointer_constraint();
        }
    }

    fn focus_layer_on_click(&mut self, surface: &WlSurface) {
        let Some(output) = self.desk.active_output() else {
            return;
        };
        let map = layer_map_for_output(&output);
        let interactive = map
            .layer_for_surface(surface, WindowSurfaceType::ALL)
            .is_some_and(|l| {
                l.cached_state().keyboard_interactivity != KeyboardInteractivity::None
            });
        drop(map);
        if interactive {
            if let Some(kb) = self.desk.keyboard() {
                let serial = SERIAL_COUNTER.next_serial();
                kb.set_focus(self, Some(surface.clone()), serial);
            }
        }
    }

    fn nearest_edges(&self, window: &Window, pos: Point<f64, Logical>) -> Edges {
        let Some(geo) = self.desk.space.element_geometry(window) else {
            return Edges::default();
        };
        let rel = pos - geo.loc.to_f64();
        Edges {
            left: rel.x < geo.size.w as f64 / 2.0,
            right: rel.x >= geo.size.w as f64 / 2.0,
            top: rel.y < geo.size.h as f64 / 2.0,
            bottom: rel.y >= geo.size.h as f64 / 2.0,
        }
    }

    /// A client asked to be moved or resized (xdg_toplevel.move/resize): only honoured while
    /// the pointer button that started it is still held on that client.
    pub fn start_client_grab(&mut self, surface: &WlSurface, serial: Serial, grab: GrabStart) {
        let Some(pointer) = self.desk.seat.get_pointer() else {
            return;
        };
        if !pointer.has_grab(serial) {
            return;
        }
        // A VM client cites its own latest press, while its domain holds the keyboard.
        let Some(client) = surface.client() else {
            return;
        };
        if !client_domain(&client).is_host()
            && !self.serial_allows(&client, serial, SerialUse::Press)
        {
            tracing::info!(
                "refused a move/resize with a serial that is not the client's latest press"
            );
            return;
        }
        let Some(start) = pointer.grab_start_data() else {
            return;
        };
        let Some((focus, _)) = &start.focus else {
            return;
        };
        if !focus.id().same_client_as(&surface.id()) {
            return;
        }
        let Some(window) = self.desk.window_for_surface(surface) else {
            return;
        };
        self.start_grab(&window, serial, start.location, grab, start.button);
    }

    fn start_grab(
        &mut self,
        window: &Window,
        serial: Serial,
        location: Point<f64, Logical>,
        grab: GrabStart,
        button: u32,
    ) {
        let Some(pointer) = self.desk.seat.get_pointer() else {
            return;
        };
        let Some(initial) = self.desk.space.element_geometry(window) else {
            return;
        };
        {
            let st = meta(window).state.borrow();
            if st.fullscreen {
                return;
            }
        }
        if meta(window).state.borrow().maximized {
            self.desk.set_maximized(window, false);
        }
        let start_data = GrabStartData {
            focus: None,
            button,
            location,
        };
        let grab = WindowGrab {
            start_data,
            window: window.clone(),
            initial,
            mode: grab,
        };
        if let GrabStart::Resize(_) = grab.mode {
            if let Some(t) = window.toplevel() {
                t.with_pending_state(|s| s.states.set(xdg_toplevel::State::Resizing));
                t.send_pending_configure();
            }
        }
        pointer.set_grab(self, grab, serial, Focus::Clear);
    }

    /// Runs a named action (key binding or IPC).
    pub fn run_action(&mut self, action: &Action) -> Result<(), String> {
        // Every compositor binding wins over every client grab.
        self.end_grabs();
        let focused = self.desk.focused_window();
        let need_focus = || "no window has focus".to_string();
        if matches!(
            action,
            Action::FocusNext | Action::FocusPrev | Action::FocusWindow(_)
        ) {
            // The user switches windows: launches still waiting lose their claim.
            self.desk.launch_grants.void();
        }
        match action {
            Action::FocusNext => self.focus_cycle(true),
            Action::FocusPrev => self.focus_cycle(false),
            Action::FocusWindow(id) => {
                let w = self.desk.window_by_id(*id).ok_or_else(|| {
                    format!("no window with id {id} (see `bulkhead msg windows`)")
                })?;
                self.focus_window(&w);
            }
            Action::Close => {
                let w = focused.ok_or_else(need_focus)?;
                self.desk.close_window(&w);
            }
            Action::Fullscreen => {
                let w = focused.ok_or_else(need_focus)?;
                let on = !meta(&w).state.borrow().fullscreen;
                self.desk.set_fullscreen(&w, on, None);
            }
            Action::Maximize => {
                let w = focused.ok_or_else(need_focus)?;
                let on = !meta(&w).state.borrow().maximized;
                self.desk.set_maximized(&w, on);
            }
            Action::Minimize => {
                let w = focused.ok_or_else(need_focus)?;
                self.minimize_window(&w);
            }
            Action::Escape => {
                let w = focused.ok_or_else(need_focus)?;
                self.desk.set_fullscreen(&w, false, None);
            }
            Action::Quit => self.desk.loop_signal.stop(),
            Action::Spawn(cmd) => self.spawn_host(cmd)?,
            Action::Launcher => self.launcher_toggle(),
            Action::ReloadConfig => self.reload_and_tell(),
            Action::ClipboardCopy => self.clipboard_copy()?,
            Action::ClipboardPaste => self.clipboard_paste()?,
        }
        Ok(())
    }
}

/// Moving or resizing a window with the pointer.
pub struct WindowGrab {
    start_data: GrabStartData<State>,
    window: Window,
    initial: Rectangle<i32, Logical>,
    mode: GrabStart,
}

impl WindowGrab {
    fn update(&mut self, state: &mut State, location: Point<f64, Logical>) {
        let delta = (location - self.start_data.location).to_i32_round::<i32>();
        match self.mode {
            GrabStart::Move => {
                let loc = self.initial.loc + delta;
                let metrics = state.desk.metrics();
                let rect = Rectangle::new(loc, self.initial.size);
                let loc = frame::clamp_position(
                    rect,
                    metrics,
                    FrameKind::Full,
                    &state.desk.output_rects(),
                );
                state.desk.space.map_element(self.window.clone(), loc, true);
                crate::xwayland::sync_position(&state.desk, &self.window);
            }
            GrabStart::Resize(edges) => {
                let (min, max) =
                    self.window
                        .toplevel()
                        .map_or(((1, 1).into(), (0, 0).into()), |t| {
                            smithay::wayland::compositor::with_states(t.wl_surface(), |s| {
                                let mut cached =
                                    s.cached_state
                                        .get::<smithay::wayland::shell::xdg::SurfaceCachedState>();
                                let c = cached.current();
                                (c.min_size, c.max_size)
                            })
                        });
                let mut w = self.initial.size.w;
                let mut h = self.initial.size.h;
                if edges.left {
                    w -= delta.x;
                } else if edges.right {
                    w += delta.x;
                }
                if edges.top {
                    h -= delta.y;
                } else if edges.bottom {
                    h += delta.y;
                }
                let size = frame::resize_to((w, h), (min.w, min.h), (max.w, max.h));
                let mut loc = self.initial.loc;
                if edges.left {
                    loc.x = self.initial.loc.x + self.initial.size.w - size.w;
                }
                if edges.top {
                    loc.y = self.initial.loc.y + self.initial.size.h - size.h;
                }
                if let Some(t) = self.window.toplevel() {
                    t.with_pending_state(|s| s.size = Some(size));
                    t.send_pending_configure();
                }
                if let Some(x11) = self.window.x11_surface() {
                    if let Err(e) = x11.configure(Rectangle::new(loc, size)) {
                        tracing::debug!("cannot resize an X11 window: {e}");
                    }
                }
                state.desk.space.map_element(self.window.clone(), loc, true);
                crate::xwayland::sync_position(&state.desk, &self.window);
            }
        }
        state.desk.request_redraw();
    }

    fn finish(&mut self) {
        if let GrabStart::Resize(_) = self.mode {
            if let Some(t) = self.window.toplevel() {
                t.with_pending_state(|s| s.states.unset(xdg_toplevel::State::Resizing));
                t.send_pending_configure();
            }
        }
    }
}

impl PointerGrab<State> for WindowGrab {
    fn motion(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        _focus: Option<(WlSurface, Point<f64, Logical>)>,
        event: &MotionEvent,
    ) {
        handle.motion(data, None, event);
        self.update(data, event.location);
    }
    fn relative_motion(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        _focus: Option<(WlSurface, Point<f64, Logical>)>,
        event: &RelativeMotionEvent,
    ) {
        handle.relative_motion(data, None, event);
    }
    fn button(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &ButtonEvent,
    ) {
        handle.button(data, event);
        if !handle.current_pressed().contains(&self.start_data.button) {
            handle.unset_grab(self, data, event.serial, event.time, true);
        }
    }
    fn axis(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        details: AxisFrame,
    ) {
        handle.axis(data, details)
    }
    fn frame(&mut self, data: &mut State, handle: &mut PointerInnerHandle<'_, State>) {
        handle.frame(data);
    }
    fn gesture_swipe_begin(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &GestureSwipeBeginEvent,
    ) {
        handle.gesture_swipe_begin(data, event)
    }
    fn gesture_swipe_update(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &GestureSwipeUpdateEvent,
    ) {
        handle.gesture_swipe_update(data, event)
    }
    fn gesture_swipe_end(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &GestureSwipeEndEvent,
    ) {
        handle.gesture_swipe_end(data, event)
    }
    fn gesture_pinch_begin(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &GesturePinchBeginEvent,
    ) {
        handle.gesture_pinch_begin(data, event)
    }
    fn gesture_pinch_update(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &GesturePinchUpdateEvent,
    ) {
        handle.gesture_pinch_update(data, event)
    }
    fn gesture_pinch_end(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &GesturePinchEndEvent,
    ) {
        handle.gesture_pinch_end(data, event)
    }
    fn gesture_hold_begin(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &GestureHoldBeginEvent,
    ) {
        handle.gesture_hold_begin(data, event)
    }
    fn gesture_hold_end(
        &mut self,
        data: &mut State,
        handle: &mut PointerInnerHandle<'_, State>,
        event: &GestureHoldEndEvent,
    ) {
        handle.gesture_hold_end(data, event)
    }
    fn start_data(&self) -> &GrabStartData<State> {
        &self.start_data
    }
    fn unset(&mut self, _data: &mut State) {
        self.finish();
    }
}
