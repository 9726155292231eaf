//! The compositor's state: `State { backend, desk }`, where `desk` holds everything that does
//! not depend on how pixels reach a screen.

use std::cell::RefCell;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_config::{Color, Config};
use smithay::desktop::{PopupManager, Space, Window};
use smithay::input::pointer::CursorImageStatus;
use smithay::input::{Seat, SeatState};
use smithay::output::Output;
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::{Interest, LoopHandle, LoopSignal, Mode, PostAction};
use smithay::reexports::wayland_server::backend::{ClientId, ObjectId};
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::{Display, DisplayHandle, ListeningSocket, Resource};
use smithay::utils::{Clock, ClockSource, Logical, Monotonic, Point, Rectangle};
use smithay::wayland::compositor::CompositorState;
use smithay::wayland::cursor_shape::CursorShapeManagerState;
use smithay::wayland::fractional_scale::FractionalScaleManagerState;
use smithay::wayland::idle_inhibit::IdleInhibitManagerState;
use smithay::wayland::output::OutputManagerState;
use smithay::wayland::presentation::PresentationState;
use smithay::wayland::security_context::SecurityContextState;
use smithay::wayland::selection::data_device::DataDeviceState;
use smithay::wayland::selection::primary_selection::PrimarySelectionState;
use smithay::wayland::session_lock::SessionLockManagerState;
use smithay::wayland::shell::wlr_layer::WlrLayerShellState;
use smithay::wayland::shell::xdg::decoration::XdgDecorationState;
use smithay::wayland::shell::xdg::XdgShellState;
use smithay::wayland::shm::ShmState;
use smithay::wayland::viewporter::ViewporterState;
use smithay::wayland::virtual_keyboard::VirtualKeyboardManagerState;
use smithay::wayland::xdg_activation::XdgActivationState;

use crate::backend::Backend;
use crate::domain::{self, ClientState, Domain, DomainSocket};
use crate::frame::FrameMetrics;
use crate::lock::LockState;

/// Everything the event loop owns.
pub struct State {
    pub backend: Backend,
    pub desk: Desktop,
    pub ipc: Option<crate::ipc::IpcServer>,
    /// The VM manager (absent in the wlcs plug-in, which runs no VMs).
    pub vms: Option<std::sync::Arc<bulkhead_vmm::Manager>>,
}

/// A configured VM domain with its listening socket.
pub struct VmDomain {
    pub domain: Domain,
    pub color: Color,
    pub socket: DomainSocket,
    /// What its clients hold together (`crate::limits`).
    pub usage: Arc<crate::limits::DomainUsage>,
}

/// The backend-independent compositor state.
pub struct Desktop {
    pub config: Config,
    pub display_handle: DisplayHandle,
    /// The display, for cleaning up clients the compositor disconnects itself.
    pub display: Rc<RefCell<Display<State>>>,
    pub loop_handle: LoopHandle<'static, State>,
    pub loop_signal: LoopSignal,
    pub start_time: Instant,
    pub runtime_dir: PathBuf,
    pub host_socket: OsString,
    pub vms: Vec<Arc<VmDomain>>,
    /// Clients inserted so far, minus those found gone (`bulkhead msg clients`).
    pub clients: Vec<ClientId>,

    pub space: Space<Window>,
    pub popups: PopupManager,
    /// Minimised windows, unmapped from the space, with where they were.
    pub minimized: Vec<(Window, Point<i32, Logical>)>,
    /// Toplevels that have not committed a buffer yet (not shown, not focusable).
    pub pending_windows: Vec<Window>,
    /// Most recently focused first: the order of focus-next.
    pub focus_order: Vec<Window>,
    pub next_window_id: u64,
    pub seat: Seat<State>,
    /// The keyboard focus as last reported to `focus_changed` (the keyboard's own lock may be
    /// held when we need it).
    pub keyboard_focus: Option<WlSurface>,
    pub pointer_location: Point<f64, Logical>,
    /// False until the pointer first moves: the headless backend then draws no cursor.
    pub pointer_seen: bool,
    pub cursor_status: CursorImageStatus,
    /// The client under the pointer (its cursor image is reset when this changes).
    pub pointer_client: Option<ClientId>,
    /// Global origin of the surface under the pointer when focus was last picked.
    pub pointer_focus_origin: Option<Point<f64, Logical>>,
    /// The surface whose pointer lock or confinement holds now (`handlers::pointer_constraints`).
    pub constrained_surface: Option<WlSurface>,
    /// The window whose constraint the compositor took back: none holds there until the user
    /// clicks in it again.
    pub pointer_released: Option<Window>,
    /// Named cursors from the host's xcursor theme (loaded when first drawn).
    pub cursors: std::cell::RefCell<crate::cursor::Cursors>,
    /// The domain a running drag-and-drop came from: only its surfaces are offered the drop.
    pub dnd_domain: Option<Domain>,
    /// Every domain's own clipboard and primary selection.
    pub selections: crate::selections::Selections,
    /// The global clipboard and copies under way.
    pub clipboard: crate::clipboard::Clipboards,
    /// Host clipboard managers (wlr-data-control), host domain only.
    pub data_control: crate::handlers::data_control::DataControl,
    /// The last input, and whether the idle lock already ran since.
    pub last_activity: Instant,
    pub idle_locked: bool,
    /// Programs the session started (autostart, launcher, lock), reaped as they exit.
    pub children: Vec<std::process::Child>,
    /// The logind sleep inhibitor and whether a sleep waits for the lock (`crate::sleep`).
    pub sleep: crate::sleep::Sleep,
    /// A config reload is scheduled (the file changed).
    pub reload_pending: bool,
    /// The launcher, while open.
    pub launcher: Option<crate::launcher::Launcher>,
    /// The apps' icons decoded so far (`crate::icons`), and where the decoder sends them.
    pub icons: crate::icons::Icons,
    pub icon_results: smithay::reexports::calloop::channel::Sender<crate::icons::Decoded>,
    /// The Super key while it is held alone (a tap opens the launcher).
    pub super_tap: Option<smithay::input::keyboard::Keycode>,
    /// Notifications from worker threads (apps the launcher could not start).
    pub notices: smithay::reexports::calloop::channel::Sender<(Domain, String)>,
    pub lock: LockState,
    pub notifications: crate::notify::Notifications,
    /// Sender handed to each client, for reporting protocol-error disconnects.
    pub disconnects: smithay::reexports::calloop::channel::Sender<(Domain, String)>,
    pub dirty: bool,
    /// Keys whose press ran a binding: their release is not sent to clients either.
    pub suppressed_keys: Vec<smithay::input::keyboard::Keycode>,
    pub clock: Clock<Monotonic>,
    /// Frames composed per output so far (presentation sequence numbers).
    pub frame_seq: u64,
    /// Output frames whose composition changed pixels.
    pub frames_composed: u64,
    /// Key presses and releases handled (a harness typing through a virtual keyboard waits on
    /// it, so it never outruns the kernel's event buffer).
    pub keys_handled: u64,

    pub compositor_state: CompositorState,
    pub xdg_shell_state: XdgShellState,
    pub xdg_decoration_state: XdgDecorationState,
    pub kde_decoration_state: smithay::wayland::shell::kde::decoration::KdeDecorationState,
    pub shm_state: ShmState,
    pub output_manager_state: OutputManagerState,
    pub seat_state: SeatState<State>,
    pub data_device_state: DataDeviceState,
    pub primary_selection_state: PrimarySelectionState,
    pub layer_shell_state: WlrLayerShellState,
    pub viewporter_state: ViewporterState,
    pub single_pixel_buffer_state: smithay::wayland::single_pixel_buffer::SinglePixelBufferState,
    pub content_type_state: smithay::wayland::content_type::ContentTypeState,
    pub fractional_scale_state: FractionalScaleManagerState,
    pub presentation_state: PresentationState,
    pub xdg_activation_state: XdgActivationState,
    pub cursor_shape_state: CursorShapeManagerState,
    pub idle_inhibit_state: IdleInhibitManagerState,
    pub idle_notifier_state: smithay::wayland::idle_notify::IdleNotifierState<State>,
    pub relative_pointer_state: smithay::wayland::relative_pointer::RelativePointerManagerState,
    pub pointer_constraints_state: smithay::wayland::pointer_constraints::PointerConstraintsState,
    pub virtual_keyboard_state: VirtualKeyboardManagerState,
    pub security_context_state: SecurityContextState,
    pub session_lock_state: SessionLockManagerState,
    pub foreign_toplevel_state: smithay::wayland::foreign_toplevel_list::ForeignToplevelListState,
    /// Surfaces that currently inhibit idling (kept for the idle logic of the DRM session).
    pub idle_inhibitors: Vec<WlSurface>,
    /// The popup grab the compositor honoured last (ended by bindings, the lock and clicks
    /// elsewhere: see `crate::focus`).
    pub popup_grab: Option<smithay::desktop::PopupGrab<State>>,
    /// Launches waiting for their first window: each may take keyboard focus once.
    pub launch_grants: crate::focus::LaunchGrants,
    /// Xwayland and its window manager (host X11 apps).
    pub xwayland: crate::xwayland::Xwayland,
    /// Host tools' view of the outputs (wlr-output-management).
    pub output_management: crate::handlers::output_management::OutputManagement,
    /// Rectangles added to each VM client's region so far (`crate::handlers::bounded`).
    pub region_rects: std::collections::HashMap<ObjectId, usize>,
    /// The charge of each VM client's shm pool, held by the pool and each of its buffers.
    pub shm_charges: std::collections::HashMap<ObjectId, Arc<crate::limits::ShmCharge>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("XDG_RUNTIME_DIR is not set; log in through a session manager or set it to a private directory")]
    NoRuntimeDir,
    #[error("{0}")]
    Config(#[from] bulkhead_config::ConfigError),
    #[error("cannot set up the Wayland socket of VM {vm:?}")]
    VmSocket {
        vm: String,
        #[source]
        source: domain::SocketError,
    },
    #[error("cannot create the host Wayland socket in XDG_RUNTIME_DIR")]
    HostSocket(#[source] smithay::reexports::wayland_server::BindError),
    #[error("cannot register a socket with the event loop: {0}")]
    EventLoop(String),
    #[error("cannot set up the seat's keyboard (check the [keyboard] section of the config)")]
    Keyboard(#[source] smithay::input::keyboard::Error),
}

impl Desktop {
    /// Creates the display state, the host socket and one socket per configured VM.
    pub fn new(
        config: Config,
        display: Display<State>,
        loop_handle: LoopHandle<'static, State>,
        loop_signal: LoopSignal,
        seat_name: &str,
    ) -> Result<Desktop, StartError> {
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .ok_or(StartError::NoRuntimeDir)?;
        config.check_socket_paths(&runtime_dir)?;

        let dh = display.handle();
        let privileged = domain::is_privileged;

        let compositor_state = CompositorState::new::<State>(&dh);
        let xdg_shell_state = XdgShellState::new::<State>(&dh);
        let xdg_decoration_state = XdgDecorationState::new::<State>(&dh);
        // GTK3 only knows the KDE protocol for server-side decorations.
        let kde_decoration_state = smithay::wayland::shell::kde::decoration::KdeDecorationState::new::<State>(
            &dh,
            smithay::reexports::wayland_protocols_misc::server_decoration::server::org_kde_kwin_server_decoration_manager::Mode::Server,
        );
        let shm_state = ShmState::new::<State>(&dh, vec![]);
        let output_manager_state = OutputManagerState::new_with_xdg_output::<State>(&dh);
        let mut seat_state = SeatState::new();
        let data_device_state = DataDeviceState::new::<State>(&dh);
        let primary_selection_state = PrimarySelectionState::new::<State>(&dh);
        crate::handlers::data_control::init(&dh);
        crate::handlers::screencopy::init(&dh);
        crate::handlers::output_management::init(&dh);
        let layer_shell_state = WlrLayerShellState::new_with_filter::<State, _>(&dh, privileged);
        let viewporter_state = ViewporterState::new::<State>(&dh);
        let single_pixel_buffer_state =
            smithay::wayland::single_pixel_buffer::SinglePixelBufferState::new::<State>(&dh);
        let content_type_state =
            smithay::wayland::content_type::ContentTypeState::new::<State>(&dh);
        let fractional_scale_state = FractionalScaleManagerState::new::<State>(&dh);
        let presentation_state = PresentationState::new::<State>(&dh, Monotonic::ID as u32);
        let xdg_activation_state = XdgActivationState::new::<State>(&dh);
        let cursor_shape_state = CursorShapeManagerState::new::<State>(&dh);
        let idle_inhibit_state = IdleInhibitManagerState::new::<State>(&dh);
        let idle_notifier_state = smithay::wayland::idle_notify::IdleNotifierState::<State>::new(
            &dh,
            loop_handle.clone(),
        );
        let relative_pointer_state =
            smithay::wayland::relative_pointer::RelativePointerManagerState::new::<State>(&dh);
        // Offered to every domain; when a constraint may hold is the compositor's decision
        // (`handlers::pointer_constraints`).
        let pointer_constraints_state =
            smithay::wayland::pointer_constraints::PointerConstraintsState::new::<State>(&dh);
        let virtual_keyboard_state = VirtualKeyboardManagerState::new::<State, _>(&dh, privileged);
        let security_context_state = SecurityContextState::new::<State, _>(&dh, privileged);
        let session_lock_state = SessionLockManagerState::new::<State, _>(&dh, privileged);
        let foreign_toplevel_state =
            smithay::wayland::foreign_toplevel_list::ForeignToplevelListState::new_with_filter::<
                State,
            >(&dh, privileged);

        let xwayland_shell =
            smithay::wayland::xwayland_shell::XWaylandShellState::new::<State>(&dh);
        let mut seat: Seat<State> = seat_state.new_wl_seat(&dh, seat_name);
        let kb = &config.keyboard;
        seat.add_keyboard(xkb_config(kb), kb.repeat_delay, kb.repeat_rate)
            .map_err(StartError::Keyboard)?;
        seat.add_pointer();
        seat.add_touch();

        // The display itself: dispatch client requests when their sockets are readable. It is
        // shared with `Desktop::display` so a killed client can be cleaned up at once.
        let mut display = display;
        let poll_fd = display
            .backend()
            .poll_fd()
            .try_clone_to_owned()
            .map_err(|e| StartError::EventLoop(format!("cannot watch the display: {e}")))?;
        let display = Rc::new(RefCell::new(display));
        let dispatch_display = display.clone();
        loop_handle
            .insert_source(
                Generic::new(poll_fd, Interest::READ, Mode::Level),
                move |_, _, state| {
                    if let Err(e) = dispatch_display.borrow_mut().dispatch_clients(state) {
                        tracing::error!("dispatching Wayland clients failed: {e}");
                    }
                    Ok(PostAction::Continue)
                },
            )
            .map_err(|e| StartError::EventLoop(e.to_string()))?;

        // Clients that break the protocol or go over a limit are disconnected; tell the user
        // which domain's app it was and why (never silently for a VM).
        let (disconnects, disconnect_events) =
            smithay::reexports::calloop::channel::channel::<(Domain, String)>();
        loop_handle
            .insert_source(disconnect_events, |event, _, state| {
                if let smithay::reexports::calloop::channel::Event::Msg((domain, why)) = event {
                    let what = crate::sanitize::sanitize_title(&why);
                    let prefix = if domain.is_host() {
                        String::new()
                    } else {
                        format!("[{}] ", domain.name())
                    };
                    let text = format!("{prefix}app disconnected: {what}");
                    tracing::warn!(domain = domain.name(), "{text}");
                    state.desk.notify(&domain, text);
                }
            })
            .map_err(|e| StartError::EventLoop(e.to_string()))?;

        // App icons arrive from their decoder thread; the open launcher shows each at once.
        let (icon_results, icon_events) = smithay::reexports::calloop::channel::channel();
        loop_handle
            .insert_source(icon_events, |event, _, state| {
                if let smithay::reexports::calloop::channel::Event::Msg((
                    generation,
                    path,
                    result,
                )) = event
                {
                    if !state.desk.icons.is_current(generation) {
                        return; // of a config since replaced
                    }
                    match result {
                        Ok(icon) => {
                            state.desk.icons.insert(path, icon);
                            state.launcher_redraw();
                        }
                        Err(e) => tracing::warn!("app icon {}: {e}", path.display()),
                    }
                }
            })
            .map_err(|e| StartError::EventLoop(e.to_string()))?;

        let (notices, notice_events) =
            smithay::reexports::calloop::channel::channel::<(Domain, String)>();
        loop_handle
            .insert_source(notice_events, |event, _, state| {
                if let smithay::reexports::calloop::channel::Event::Msg((domain, text)) = event {
                    tracing::info!(domain = domain.name(), "{text}");
                    state
                        .desk
                        .notify_for_user(&domain, crate::sanitize::sanitize_title(&text));
                }
            })
            .map_err(|e| StartError::EventLoop(e.to_string()))?;

        // The host socket: wayland-N in XDG_RUNTIME_DIR, as any compositor.
        let host = ListeningSocket::bind_auto("wayland", 1..33).map_err(StartError::HostSocket)?;
        let host_socket = host
            .socket_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let fd = dup_fd(host.as_fd())?;
        crate::accept::watch(
            &loop_handle,
            host_socket.to_string_lossy().into_owned(),
            fd,
            move || host.accept(),
            |state, stream| state.desk.accept_client(stream, Domain::Host, None),
        )
        .map_err(StartError::EventLoop)?;

        // One socket per VM: the socket is what decides a client's domain.
        let mut vms = Vec::new();
        for vm in &config.vms {
            let path = Config::vm_socket_path(&runtime_dir, &vm.name);
            let socket = DomainSocket::bind(&path).map_err(|source| StartError::VmSocket {
                vm: vm.name.clone(),
                source,
            })?;
            let vm = Arc::new(VmDomain {
                domain: Domain::Vm(vm.name.as_str().into()),
                color: vm.color,
                socket,
                usage: Default::default(),
            });
            let fd = dup_fd(vm.socket.listener().as_fd())?;
            let (this, listening) = (vm.clone(), vm.clone());
            crate::accept::watch(
                &loop_handle,
                path.display().to_string(),
                fd,
                move || listening.socket.accept(),
                move |state, stream| state.accept_vm_client(stream, &this),
            )
            .map_err(StartError::EventLoop)?;
            tracing::info!("VM {} listens on {}", vm.domain.name(), path.display());
            vms.push(vm);
        }

        let mut desk = Desktop {
            config,
            display_handle: dh,
            display,
            loop_handle,
            loop_signal,
            start_time: Instant::now(),
            runtime_dir,
            host_socket,
            vms,
            clients: Vec::new(),
            space: Space::default(),
            popups: PopupManager::default(),
            minimized: Vec::new(),
            pending_windows: Vec::new(),
            focus_order: Vec::new(),
            next_window_id: 1,
            seat,
            keyboard_focus: None,
            pointer_location: (0.0, 0.0).into(),
            pointer_seen: false,
            cursor_status: CursorImageStatus::default_named(),
            pointer_client: None,
            pointer_focus_origin: None,
            constrained_surface: None,
            pointer_released: None,
            cursors: std::cell::RefCell::new(crate::cursor::Cursors::from_env()),
            dnd_domain: None,
            selections: Default::default(),
            clipboard: Default::default(),
            launcher: None,
            icons: Default::default(),
            icon_results,
            reload_pending: false,
            last_activity: Instant::now(),
            idle_locked: false,
            children: Vec::new(),
            sleep: Default::default(),
            data_control: Default::default(),
            super_tap: None,
            notices,
            lock: LockState::Unlocked,
            notifications: crate::notify::Notifications::default(),
            disconnects,
            dirty: true,
            suppressed_keys: Vec::new(),
            clock: Clock::new(),
            frame_seq: 0,
            frames_composed: 0,
            keys_handled: 0,
            compositor_state,
            xdg_shell_state,
            xdg_decoration_state,
            kde_decoration_state,
            shm_state,
            output_manager_state,
            seat_state,
            data_device_state,
            primary_selection_state,
            layer_shell_state,
            viewporter_state,
            single_pixel_buffer_state,
            content_type_state,
            fractional_scale_state,
            presentation_state,
            xdg_activation_state,
            cursor_shape_state,
            idle_inhibit_state,
            idle_notifier_state,
            relative_pointer_state,
            pointer_constraints_state,
            virtual_keyboard_state,
            security_context_state,
            session_lock_state,
            foreign_toplevel_state,
            idle_inhibitors: Vec::new(),
            popup_grab: None,
            launch_grants: Default::default(),
            xwayland: crate::xwayland::Xwayland::new(xwayland_shell),
            output_management: Default::default(),
            region_rects: Default::default(),
            shm_charges: Default::default(),
        };
        desk.load_icons();
        Ok(desk)
    }

    /// Decodes the icons of the config's apps in the background (`crate::icons`), forgetting
    /// those it no longer names.
    pub fn load_icons(&mut self) {
        let files = crate::icons::files(&self.config);
        self.icons.retain(&files);
        crate::icons::decode_in_background(&self.icons, files, self.icon_results.clone());
    }

    /// Registers a freshly accepted connection as a client of `domain`, counted in `usage`
    /// (VM domains).
    pub fn accept_client(
        &mut self,
        stream: std::os::unix::net::UnixStream,
        domain: Domain,
        usage: Option<Arc<crate::limits::DomainUsage>>,
    ) {
        self.accept_client_from(stream, domain, usage, None, bulkhead_ipc::Arrival::Direct);
    }

    /// [`Desktop::accept_client`] with the peer and arrival already known (a VM's socket).
    pub fn accept_client_from(
        &mut self,
        stream: std::os::unix::net::UnixStream,
        domain: Domain,
        usage: Option<Arc<crate::limits::DomainUsage>>,
        peer: Option<crate::domain::Peer>,
        arrival: bulkhead_ipc::Arrival,
    ) {
        let mut data = ClientState::new(domain);
        data.peer = peer;
        data.arrival = arrival;
        data.on_disconnect = Some(self.disconnects.clone());
        data.usage = usage.map(|u| Arc::new(crate::limits::ClientUsage::new(u)));
        self.insert_client(stream, data);
    }

    /// A connection on a VM's socket: a client of that VM, unless the VM already has
    /// [`crate::limits::CLIENTS_PER_VM`] (then it is closed, and the user told). `arrival`
    /// tells how an accepted one came (its peer, read only once it is accepted).
    pub fn accept_vm_client(
        &mut self,
        stream: std::os::unix::net::UnixStream,
        vm: &VmDomain,
        arrival: impl FnOnce(
            &std::os::unix::net::UnixStream,
        ) -> (Option<crate::domain::Peer>, bulkhead_ipc::Arrival),
    ) {
        if vm.usage.clients() >= crate::limits::CLIENTS_PER_VM {
            drop(stream);
            let name = vm.domain.name().to_string();
            tracing::warn!(domain = name, "refused a connection: too many apps");
            let color = vm.color;
            self.notifications
                .push_counted(Some(&name), format!("clients:{name}"), color, |n| {
                    format!(
                        "[{name}] refused {n} connection{}: more than {} apps",
                        if n == 1 { "" } else { "s" },
                        crate::limits::CLIENTS_PER_VM
                    )
                });
            self.request_redraw();
            return;
        }
        let (peer, arrival) = arrival(&stream);
        self.accept_client_from(
            stream,
            vm.domain.clone(),
            Some(vm.usage.clone()),
            peer,
            arrival,
        );
    }

    /// Shows a notification in the compositor's reserved top layer about something `domain`
    /// did: a VM's notices take one place and come at a limited rate (`crate::notify`).
    pub fn notify(&mut self, domain: &Domain, text: String) {
        let color = self.domain_color(domain);
        let owner = match domain {
            Domain::Host => None,
            d => Some(d.name()),
        };
        self.notifications.push(owner, text, color);
        self.request_redraw();
    }

    /// A notice about something the user just did in `domain` (a launch, a copy, a paste):
    /// the place and rate of a VM are for what the VM causes by itself.
    pub fn notify_for_user(&mut self, domain: &Domain, text: String) {
        let color = self.domain_color(domain);
        self.notifications.push(None, text, color);
        self.request_redraw();
    }

    pub fn insert_client(
        &mut self,
        stream: std::os::unix::net::UnixStream,
        mut data: ClientState,
    ) -> Option<ClientId> {
        if data.peer.is_none() {
            data.peer = crate::domain::Peer::of(&stream);
        }
        let name = data.domain.name().to_string();
        let (arrival, peer) = (data.arrival, data.peer.clone());
        match self.display_handle.insert_client(stream, Arc::new(data)) {
            Ok(client) => {
                tracing::debug!(
                    domain = name,
                    pid = peer.as_ref().map(|p| p.pid),
                    program = peer.as_ref().and_then(|p| p.program.as_deref()),
                    "new client ({arrival})"
                );
                // The list `bulkhead msg clients` reads; clients that have gone are dropped
                // here, so it holds no more than the live ones and this one.
                let dh = self.display_handle.clone();
                self.clients
                    .retain(|id| dh.backend_handle().get_client_data(id.clone()).is_ok());
                self.clients.push(client.id());
                Some(client.id())
            }
            Err(e) => {
                tracing::warn!("could not add a {name} client: {e}");
                None
            }
        }
    }

    pub fn metrics(&self) -> FrameMetrics {
        FrameMetrics {
            border: self.config.appearance.border_width,
            title: self.config.appearance.title_height,
        }
    }

    /// The frame colour of a domain (a warning red for an unknown one).
    pub fn domain_color(&self, domain: &Domain) -> Color {
        match domain {
            Domain::Host => self.config.appearance.host_color,
            Domain::Vm(name) => self
                .vms
                .iter()
                .find(|v| v.domain.name() == &**name)
                .map_or(UNKNOWN_COLOR, |v| v.color),
            Domain::Unknown(_) => UNKNOWN_COLOR,
        }
    }

    /// The domain of the client owning `surface`; unknown once that client is gone.
    pub fn surface_domain(&self, surface: &WlSurface) -> Domain {
        match self.display_handle.get_client(surface.id()) {
            Ok(c) => domain::client_domain(&c),
            Err(_) => Domain::Unknown(None),
        }
    }

    /// Output geometries in the global space.
    pub fn output_rects(&self) -> Vec<Rectangle<i32, Logical>> {
        self.space
            .outputs()
            .filter_map(|o| self.space.output_geometry(o))
            .collect()
    }

    /// The output under the pointer, else the first one.
    pub fn active_output(&self) -> Option<Output> {
        self.space
            .output_under(self.pointer_location)
            .next()
            .or_else(|| self.space.outputs().next())
            .cloned()
    }

    pub fn elapsed(&self) -> Duration {
        self.start_time.elapsed()
    }

    pub fn request_redraw(&mut self) {
        self.dirty = true;
    }

    /// Collects the exit status of every started program that has ended.
    pub fn reap_children(&mut self) {
        self.children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }
}

/// The frame colour of windows whose domain is unknown (no configured VM, not the host).
const UNKNOWN_COLOR: Color = Color::rgb(0xd0, 0x10, 0x10);

/// The xkb keymap settings of `[keyboard]`.
pub fn xkb_config(kb: &bulkhead_config::KeyboardConfig) -> smithay::input::keyboard::XkbConfig<'_> {
    smithay::input::keyboard::XkbConfig {
        rules: &kb.rules,
        model: &kb.model,
        layout: &kb.layout,
        variant: &kb.variant,
        options: (!kb.options.is_empty()).then(|| kb.options.clone()),
    }
}

/// A duplicate of a listening socket's fd, for the event loop to watch.
fn dup_fd(fd: std::os::fd::BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, StartError> {
    fd.try_clone_to_owned()
        .map_err(|e| StartError::EventLoop(format!("cannot watch a listening socket: {e}")))
}
