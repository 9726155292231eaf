//! A scriptable Wayland client (wayland-client, in the test process) for hostile-input tests:
//! it connects to a domain socket like any app and does what a malicious VM app would.

#![allow(dead_code)]

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use wayland_client::globals::{registry_queue_init, GlobalListContents};
use wayland_client::protocol::{
    wl_buffer, wl_callback, wl_compositor, wl_data_device, wl_data_device_manager, wl_data_source,
    wl_keyboard, wl_output, wl_pointer, wl_registry, wl_seat, wl_shm, wl_shm_pool,
    wl_subcompositor, wl_subsurface, wl_surface,
};
use wayland_client::{delegate_noop, Connection, Dispatch, EventQueue, QueueHandle, WEnum};
use wayland_protocols::xdg::shell::client::{
    xdg_popup, xdg_positioner, xdg_surface, xdg_toplevel, xdg_wm_base,
};

pub const MAGENTA: [u8; 3] = [0xff, 0x00, 0xff];
pub const WHITE: [u8; 3] = [0xff, 0xff, 0xff];

/// What the compositor told us.
#[derive(Default)]
pub struct Events {
    /// Latest toplevel configure size (0 = client decides) and states.
    pub configured: Option<(i32, i32)>,
    pub states: Vec<u32>,
    pub configure_serial: Option<u32>,
    pub popup_configured: Option<(i32, i32, i32, i32)>,
    pub pointer_enter: Option<u32>,
    pub button_serial: Option<u32>,
    /// Drag-and-drop enters seen by this client's data device.
    pub dnd_enters: usize,
    /// Surface-local position of the last touch down.
    pub touch_down: Option<(f64, f64)>,
    pub closed: bool,
    /// Keys this client was sent (evdev codes of presses), in order.
    pub keys: Vec<u32>,
    /// The serial of the latest key press it was sent.
    pub key_serial: Option<u32>,
    /// Whether this client holds the keyboard (between enter and leave), and the serial of
    /// the latest enter.
    pub has_keyboard: bool,
    pub keyboard_enter: Option<u32>,
    /// The compositor dismissed a popup of this client.
    pub popup_done: bool,
    /// MIME types of every data offer this client was given (selections and drags).
    pub offered: Vec<String>,
    /// The offer of the latest selection this client was given (`None`: no selection).
    pub selection: Option<wayland_client::protocol::wl_data_offer::WlDataOffer>,
    /// What this client's data sources do when asked for their data.
    pub source_mode: SourceMode,
    /// Pipes a `Hold` source was given and never writes to.
    pub held: Vec<std::os::fd::OwnedFd>,
    /// Surface-local positions of the pointer enters and motions this client was sent, in
    /// order.
    pub motions: Vec<(f64, f64)>,
    /// Relative motions (zwp_relative_pointer_v1) it was sent, unaccelerated.
    pub relative: Vec<(f64, f64)>,
    /// Its pointer constraints' events in order: "locked", "unlocked", "confined",
    /// "unconfined".
    pub constraint: Vec<&'static str>,
    /// The latest preferred scale (wp_fractional_scale_v1, in 120ths).
    pub preferred_scale: Option<u32>,
}

/// A data source's answer to `send`.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub enum SourceMode {
    /// Close the pipe at once (no data).
    #[default]
    Close,
    /// Keep the pipe open and never write.
    Hold,
    /// Write zeros until the reader goes away.
    Flood,
}

pub struct Client {
    pub conn: Connection,
    pub queue: EventQueue<Events>,
    pub qh: QueueHandle<Events>,
    pub events: Events,
    pub compositor: wl_compositor::WlCompositor,
    pub subcompositor: wl_subcompositor::WlSubcompositor,
    pub shm: wl_shm::WlShm,
    pub wm_base: xdg_wm_base::XdgWmBase,
    pub seat: wl_seat::WlSeat,
    pub ddm: wl_data_device_manager::WlDataDeviceManager,
    pub globals: wayland_client::globals::GlobalList,
}

/// A surface with an xdg toplevel.
pub struct Toplevel {
    pub surface: wl_surface::WlSurface,
    pub xdg: xdg_surface::XdgSurface,
    pub toplevel: xdg_toplevel::XdgToplevel,
}

impl Client {
    pub fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        let conn = Connection::from_socket(stream).expect("wayland connection");
        let (globals, queue) = registry_queue_init::<Events>(&conn).expect("registry");
        let qh = queue.handle();
        let compositor = globals.bind(&qh, 4..=6, ()).expect("wl_compositor");
        let subcompositor = globals.bind(&qh, 1..=1, ()).expect("wl_subcompositor");
        let shm = globals.bind(&qh, 1..=1, ()).expect("wl_shm");
        let wm_base = globals.bind(&qh, 1..=6, ()).expect("xdg_wm_base");
        let seat = globals.bind(&qh, 1..=7, ()).expect("wl_seat");
        let ddm = globals
            .bind(&qh, 3..=3, ())
            .expect("wl_data_device_manager");
        let mut c = Client {
            conn,
            queue,
            qh,
            events: Events::default(),
            compositor,
            subcompositor,
            shm,
            wm_base,
            seat,
            ddm,
            globals,
        };
        c.roundtrip();
        c
    }

    /// Binds another global of the compositor (the protocols only some tests use).
    pub fn bind<I>(&self, version: u32) -> I
    where
        I: wayland_client::Proxy + 'static,
        Events: Dispatch<I, ()>,
    {
        self.globals
            .bind(&self.qh, version..=version, ())
            .unwrap_or_else(|e| panic!("{}: {e}", I::interface().name))
    }

    pub fn roundtrip(&mut self) {
        self.queue.roundtrip(&mut self.events).expect("roundtrip");
    }

    /// A roundtrip that may fail (the compositor disconnected us).
    pub fn try_roundtrip(&mut self) -> Result<(), String> {
        self.queue
            .roundtrip(&mut self.events)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// A buffer of `w`×`h` filled with one opaque colour.
    pub fn buffer(&self, w: i32, h: i32, rgb: [u8; 3]) -> wl_buffer::WlBuffer {
        self.buffer_from(w, h, |_, _| rgb)
    }

    /// A buffer of `w`×`h` whose pixel at x, y is `rgb(x, y)`, opaque.
    pub fn buffer_from(
        &self,
        w: i32,
        h: i32,
        rgb: impl Fn(i32, i32) -> [u8; 3],
    ) -> wl_buffer::WlBuffer {
        let mut file = tempfile::tempfile().expect("shm file");
        for y in 0..h {
            let row: Vec<u8> = (0..w)
                .flat_map(|x| {
                    let c = rgb(x, y);
                    [c[2], c[1], c[0], 0xff]
                })
                .collect();
            file.write_all(&row).expect("write shm");
        }
        let pool = self.shm.create_pool(file.as_fd(), w * h * 4, &self.qh, ());
        let buf = pool.create_buffer(0, w, h, w * 4, wl_shm::Format::Argb8888, &self.qh, ());
        pool.destroy();
        buf
    }

    pub fn surface(&self) -> wl_surface::WlSurface {
        self.compositor.create_surface(&self.qh, ())
    }

    /// Creates a toplevel and does the initial commit; call [`Client::map`] to show it.
    pub fn toplevel(&mut self, title: &str) -> Toplevel {
        let surface = self.surface();
        let xdg = self.wm_base.get_xdg_surface(&surface, &self.qh, ());
        let toplevel = xdg.get_toplevel(&self.qh, ());
        toplevel.set_title(title.into());
        toplevel.set_app_id("hostile".into());
        surface.commit();
        self.roundtrip();
        Toplevel {
            surface,
            xdg,
            toplevel,
        }
    }

    /// Listens to the keyboard (keys, enter, leave end up in `events`).
    pub fn keyboard(&mut self) -> wl_keyboard::WlKeyboard {
        let kb = self.seat.get_keyboard(&self.qh, ());
        self.roundtrip();
        kb
    }

    /// A `w`×`h` popup of `parent` at its top-left corner, configured and mapped in `rgb`;
    /// `grab` asks for a grab with that serial before the first commit.
    pub fn popup(
        &mut self,
        parent: &Toplevel,
        w: i32,
        h: i32,
        rgb: [u8; 3],
        grab: Option<u32>,
    ) -> (wl_surface::WlSurface, xdg_popup::XdgPopup) {
        let positioner = self.wm_base.create_positioner(&self.qh, ());
        positioner.set_size(w, h);
        positioner.set_anchor_rect(0, 0, 1, 1);
        let surface = self.surface();
        let xdg = self.wm_base.get_xdg_surface(&surface, &self.qh, ());
        let popup = xdg.get_popup(Some(&parent.xdg), &positioner, &self.qh, ());
        if let Some(serial) = grab {
            popup.grab(&self.seat, serial);
        }
        surface.commit();
        self.roundtrip();
        if let Some(serial) = self.events.configure_serial.take() {
            xdg.ack_configure(serial);
        }
        let buf = self.buffer(w, h, rgb);
        surface.attach(Some(&buf), 0, 0);
        surface.commit();
        self.roundtrip();
        (surface, popup)
    }

    /// Sets this client's clipboard to a source offering `mime`, answering as `mode` says.
    pub fn set_selection(&mut self, mime: &str, mode: SourceMode) -> wl_data_source::WlDataSource {
        self.events.source_mode = mode;
        let source = self.ddm.create_data_source(&self.qh, ());
        source.offer(mime.into());
        let device = self.ddm.get_data_device(&self.seat, &self.qh, ());
        device.set_selection(Some(&source), 0);
        self.roundtrip();
        source
    }

    /// Acks the last configure and attaches a buffer of `w`×`h` in `rgb`.
    pub fn map(&mut self, t: &Toplevel, w: i32, h: i32, rgb: [u8; 3]) {
        if let Some(serial) = self.events.configure_serial.take() {
            t.xdg.ack_configure(serial);
        }
        let buf = self.buffer(w, h, rgb);
        t.surface.attach(Some(&buf), 0, 0);
        t.surface.damage_buffer(0, 0, w, h);
        t.surface.commit();
        self.roundtrip();
    }
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for Events {
    fn event(
        _: &mut Self,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for Events {
    fn event(
        _: &mut Self,
        wm: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm.pong(serial);
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for Events {
    fn event(
        state: &mut Self,
        _: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = event {
            state.configure_serial = Some(serial);
        }
    }
}

impl Dispatch<xdg_toplevel::XdgToplevel, ()> for Events {
    fn event(
        state: &mut Self,
        _: &xdg_toplevel::XdgToplevel,
        event: xdg_toplevel::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            xdg_toplevel::Event::Configure {
                width,
                height,
                states,
            } => {
                state.configured = Some((width, height));
                state.states = states
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
            }
            xdg_toplevel::Event::Close => state.closed = true,
            _ => {}
        }
    }
}

impl Dispatch<xdg_popup::XdgPopup, ()> for Events {
    fn event(
        state: &mut Self,
        _: &xdg_popup::XdgPopup,
        event: xdg_popup::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            xdg_popup::Event::Configure {
                x,
                y,
                width,
                height,
            } => state.popup_configured = Some((x, y, width, height)),
            xdg_popup::Event::PopupDone => state.popup_done = true,
            _ => {}
        }
    }
}

impl Dispatch<wl_pointer::WlPointer, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wl_pointer::WlPointer,
        event: wl_pointer::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wl_pointer::Event::Enter {
                serial,
                surface_x,
                surface_y,
                ..
            } => {
                state.pointer_enter = Some(serial);
                state.motions.push((surface_x, surface_y));
            }
            wl_pointer::Event::Motion {
                surface_x,
                surface_y,
                ..
            } => state.motions.push((surface_x, surface_y)),
            wl_pointer::Event::Button {
                serial,
                state: WEnum::Value(wl_pointer::ButtonState::Pressed),
                ..
            } => state.button_serial = Some(serial),
            _ => {}
        }
    }
}

impl Dispatch<wl_keyboard::WlKeyboard, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wl_keyboard::WlKeyboard,
        event: wl_keyboard::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wl_keyboard::Event::Enter { serial, .. } => {
                state.has_keyboard = true;
                state.keyboard_enter = Some(serial);
            }
            wl_keyboard::Event::Leave { .. } => state.has_keyboard = false,
            wl_keyboard::Event::Key {
                serial,
                key,
                state: WEnum::Value(wl_keyboard::KeyState::Pressed),
                ..
            } => {
                state.keys.push(key);
                state.key_serial = Some(serial);
            }
            _ => {}
        }
    }
}

impl Dispatch<wayland_client::protocol::wl_touch::WlTouch, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wayland_client::protocol::wl_touch::WlTouch,
        event: wayland_client::protocol::wl_touch::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wayland_client::protocol::wl_touch::Event::Down { x, y, .. } = event {
            state.touch_down = Some((x, y));
        }
    }
}

impl Dispatch<wl_seat::WlSeat, ()> for Events {
    fn event(
        _: &mut Self,
        _: &wl_seat::WlSeat,
        _: wl_seat::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<wl_data_device::WlDataDevice, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wl_data_device::WlDataDevice,
        event: wl_data_device::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wl_data_device::Event::Enter { .. } => state.dnd_enters += 1,
            wl_data_device::Event::Selection { id } => state.selection = id,
            _ => {}
        }
    }

    wayland_client::event_created_child!(Events, wl_data_device::WlDataDevice, [
        wl_data_device::EVT_DATA_OFFER_OPCODE => (wayland_client::protocol::wl_data_offer::WlDataOffer, ()),
    ]);
}

delegate_noop!(Events: ignore wl_compositor::WlCompositor);
delegate_noop!(Events: ignore wl_subcompositor::WlSubcompositor);
delegate_noop!(Events: ignore wl_subsurface::WlSubsurface);
delegate_noop!(Events: ignore wl_surface::WlSurface);
delegate_noop!(Events: ignore wayland_client::protocol::wl_region::WlRegion);
delegate_noop!(Events: ignore wl_shm::WlShm);
delegate_noop!(Events: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Events: ignore wl_buffer::WlBuffer);
delegate_noop!(Events: ignore wl_callback::WlCallback);
delegate_noop!(Events: ignore wl_output::WlOutput);
delegate_noop!(Events: ignore xdg_positioner::XdgPositioner);
delegate_noop!(Events: ignore wl_data_device_manager::WlDataDeviceManager);
delegate_noop!(Events: ignore wayland_protocols::wp::presentation_time::client::wp_presentation::WpPresentation);
delegate_noop!(Events: ignore wayland_protocols::wp::presentation_time::client::wp_presentation_feedback::WpPresentationFeedback);
delegate_noop!(Events: ignore wayland_protocols::wp::idle_inhibit::zv1::client::zwp_idle_inhibit_manager_v1::ZwpIdleInhibitManagerV1);
delegate_noop!(Events: ignore wayland_protocols::wp::cursor_shape::v1::client::wp_cursor_shape_manager_v1::WpCursorShapeManagerV1);
delegate_noop!(Events: ignore wayland_protocols::wp::single_pixel_buffer::v1::client::wp_single_pixel_buffer_manager_v1::WpSinglePixelBufferManagerV1);
delegate_noop!(Events: ignore wayland_protocols::wp::viewporter::client::wp_viewporter::WpViewporter);
delegate_noop!(Events: ignore wayland_protocols::wp::viewporter::client::wp_viewport::WpViewport);
delegate_noop!(Events: ignore wayland_protocols::wp::cursor_shape::v1::client::wp_cursor_shape_device_v1::WpCursorShapeDeviceV1);
delegate_noop!(Events: ignore wayland_protocols::wp::idle_inhibit::zv1::client::zwp_idle_inhibitor_v1::ZwpIdleInhibitorV1);

delegate_noop!(Events: ignore wayland_protocols::wp::pointer_constraints::zv1::client::zwp_pointer_constraints_v1::ZwpPointerConstraintsV1);
delegate_noop!(Events: ignore wayland_protocols::wp::relative_pointer::zv1::client::zwp_relative_pointer_manager_v1::ZwpRelativePointerManagerV1);

impl Dispatch<wayland_protocols::wp::pointer_constraints::zv1::client::zwp_locked_pointer_v1::ZwpLockedPointerV1, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wayland_protocols::wp::pointer_constraints::zv1::client::zwp_locked_pointer_v1::ZwpLockedPointerV1,
        event: wayland_protocols::wp::pointer_constraints::zv1::client::zwp_locked_pointer_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use wayland_protocols::wp::pointer_constraints::zv1::client::zwp_locked_pointer_v1::Event;
        match event {
            Event::Locked => state.constraint.push("locked"),
            Event::Unlocked => state.constraint.push("unlocked"),
            _ => {}
        }
    }
}

impl Dispatch<wayland_protocols::wp::pointer_constraints::zv1::client::zwp_confined_pointer_v1::ZwpConfinedPointerV1, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wayland_protocols::wp::pointer_constraints::zv1::client::zwp_confined_pointer_v1::ZwpConfinedPointerV1,
        event: wayland_protocols::wp::pointer_constraints::zv1::client::zwp_confined_pointer_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use wayland_protocols::wp::pointer_constraints::zv1::client::zwp_confined_pointer_v1::Event;
        match event {
            Event::Confined => state.constraint.push("confined"),
            Event::Unconfined => state.constraint.push("unconfined"),
            _ => {}
        }
    }
}

impl Dispatch<wayland_protocols::wp::relative_pointer::zv1::client::zwp_relative_pointer_v1::ZwpRelativePointerV1, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wayland_protocols::wp::relative_pointer::zv1::client::zwp_relative_pointer_v1::ZwpRelativePointerV1,
        event: wayland_protocols::wp::relative_pointer::zv1::client::zwp_relative_pointer_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use wayland_protocols::wp::relative_pointer::zv1::client::zwp_relative_pointer_v1::Event;
        if let Event::RelativeMotion {
            dx_unaccel,
            dy_unaccel,
            ..
        } = event
        {
            state.relative.push((dx_unaccel, dy_unaccel));
        }
    }
}

delegate_noop!(Events: ignore wayland_protocols::wp::fractional_scale::v1::client::wp_fractional_scale_manager_v1::WpFractionalScaleManagerV1);

impl Dispatch<wayland_protocols::wp::fractional_scale::v1::client::wp_fractional_scale_v1::WpFractionalScaleV1, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wayland_protocols::wp::fractional_scale::v1::client::wp_fractional_scale_v1::WpFractionalScaleV1,
        event: wayland_protocols::wp::fractional_scale::v1::client::wp_fractional_scale_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use wayland_protocols::wp::fractional_scale::v1::client::wp_fractional_scale_v1::Event;
        if let Event::PreferredScale { scale } = event {
            state.preferred_scale = Some(scale);
        }
    }
}

impl Dispatch<wl_data_source::WlDataSource, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wl_data_source::WlDataSource,
        event: wl_data_source::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_data_source::Event::Send { fd, .. } = event {
            match state.source_mode {
                SourceMode::Close => drop(fd),
                SourceMode::Hold => state.held.push(fd),
                SourceMode::Flood => {
                    std::thread::spawn(move || {
                        let mut f = std::fs::File::from(fd);
                        let zeros = vec![0u8; 64 * 1024];
                        while f.write_all(&zeros).is_ok() {}
                    });
                }
            }
        }
    }
}
impl Dispatch<wayland_client::protocol::wl_data_offer::WlDataOffer, ()> for Events {
    fn event(
        state: &mut Self,
        _: &wayland_client::protocol::wl_data_offer::WlDataOffer,
        event: wayland_client::protocol::wl_data_offer::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wayland_client::protocol::wl_data_offer::Event::Offer { mime_type } = event {
            state.offered.push(mime_type);
        }
    }
}

/// What a host taskbar sees through ext-foreign-toplevel-list: (title, app id) of each window.
pub fn foreign_toplevels(socket: &Path) -> Result<Vec<(String, String)>, String> {
    use wayland_protocols::ext::foreign_toplevel_list::v1::client::{
        ext_foreign_toplevel_handle_v1 as handle, ext_foreign_toplevel_list_v1 as list,
    };

    #[derive(Default)]
    struct Seen(Vec<(String, String)>);
    impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for Seen {
        fn event(
            _: &mut Self,
            _: &wl_registry::WlRegistry,
            _: wl_registry::Event,
            _: &GlobalListContents,
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }
    impl Dispatch<list::ExtForeignToplevelListV1, ()> for Seen {
        fn event(
            s: &mut Self,
            _: &list::ExtForeignToplevelListV1,
            event: list::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
            if let list::Event::Toplevel { .. } = event {
                s.0.push((String::new(), String::new()));
            }
        }
        wayland_client::event_created_child!(Seen, list::ExtForeignToplevelListV1, [
            list::EVT_TOPLEVEL_OPCODE => (handle::ExtForeignToplevelHandleV1, ()),
        ]);
    }
    impl Dispatch<handle::ExtForeignToplevelHandleV1, ()> for Seen {
        fn event(
            s: &mut Self,
            h: &handle::ExtForeignToplevelHandleV1,
            event: handle::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
            // Handles arrive in order; their protocol ids grow with them.
            let _ = h;
            let Some(last) = s.0.last_mut() else { return };
            match event {
                handle::Event::Title { title } => last.0 = title,
                handle::Event::AppId { app_id } => last.1 = app_id,
                _ => {}
            }
        }
    }
    let stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    let conn = Connection::from_socket(stream).map_err(|e| e.to_string())?;
    let (globals, mut queue) = registry_queue_init::<Seen>(&conn).map_err(|e| e.to_string())?;
    let qh = queue.handle();
    let _list: list::ExtForeignToplevelListV1 =
        globals.bind(&qh, 1..=1, ()).map_err(|e| e.to_string())?;
    let mut seen = Seen::default();
    queue.roundtrip(&mut seen).map_err(|e| e.to_string())?;
    queue.roundtrip(&mut seen).map_err(|e| e.to_string())?;
    Ok(seen.0)
}
