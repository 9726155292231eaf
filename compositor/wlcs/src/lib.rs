//! wlcs integration: the C ABI wlcs expects, implemented with the `wlcs` crate's helpers.
//!
//! wlcs calls into this library from its own threads; every request is forwarded over a
//! calloop channel to the compositor's thread, which owns all state.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use bulkhead_compositor::domain::{ClientState, Domain};
use smithay_reexports::calloop::channel::{channel, Channel, Event, Sender};
use smithay_reexports::wayland_server::backend::ClientId;
use smithay_reexports::wayland_server::Resource;
use wayland_sys::client::{wl_display, wl_proxy};
use wayland_sys::common::{wl_fixed_t, wl_fixed_to_double};
use wayland_sys::ffi_dispatch;
use wlcs::ffi_display_server_api::{
    WlcsExtensionDescriptor, WlcsIntegrationDescriptor, WlcsServerIntegration,
};
use wlcs::ffi_wrappers::wlcs_server;
use wlcs::{extension_list, wlcs_server_integration, Wlcs};

use bulkhead_compositor::smithay_reexports;

wlcs_server_integration!(BulkheadServer);

/// The globals (and versions) Bulkhead offers a host client; wlcs skips tests that need others.
static SUPPORTED_EXTENSIONS: &[WlcsExtensionDescriptor] = extension_list!(
    ("wl_compositor", 6),
    ("wl_subcompositor", 1),
    ("wl_shm", 1),
    ("wl_data_device_manager", 3),
    ("wl_seat", 9),
    ("wl_output", 4),
    ("xdg_wm_base", 6),
    ("zxdg_output_manager_v1", 3),
    ("zxdg_decoration_manager_v1", 1),
    ("zwp_primary_selection_device_manager_v1", 1),
    ("zwlr_layer_shell_v1", 4),
    ("wp_viewporter", 1),
    ("xdg_activation_v1", 1),
    ("zwp_virtual_keyboard_manager_v1", 1),
    ("zwp_relative_pointer_manager_v1", 1),
    ("zwp_pointer_constraints_v1", 1),
);

static DESCRIPTOR: WlcsIntegrationDescriptor = WlcsIntegrationDescriptor {
    version: 1,
    num_extensions: SUPPORTED_EXTENSIONS.len(),
    supported_extensions: SUPPORTED_EXTENSIONS.as_ptr(),
};

static NEXT_DEVICE: AtomicU32 = AtomicU32::new(0);

/// What wlcs asks the compositor thread to do.
enum Request {
    Exit,
    NewClient {
        stream: UnixStream,
        key: i32,
    },
    PositionWindow {
        key: i32,
        surface_id: u32,
        x: i32,
        y: i32,
    },
    PointerAbsolute {
        x: f64,
        y: f64,
    },
    PointerRelative {
        dx: f64,
        dy: f64,
    },
    PointerButton {
        button: u32,
        pressed: bool,
    },
    TouchDown {
        x: f64,
        y: f64,
    },
    TouchMove {
        x: f64,
        y: f64,
    },
    TouchUp,
}

struct BulkheadServer {
    server: Option<(Sender<Request>, JoinHandle<()>)>,
}

impl Wlcs for BulkheadServer {
    type Pointer = PointerHandle;
    type Touch = TouchHandle;

    fn new() -> Self {
        BulkheadServer { server: None }
    }

    fn start(&mut self) {
        let (tx, rx) = channel();
        let join = std::thread::spawn(move || {
            if let Err(e) = serve(rx) {
                eprintln!("bulkhead-wlcs: the compositor failed: {e}");
            }
        });
        self.server = Some((tx, join));
    }

    fn stop(&mut self) {
        if let Some((tx, join)) = self.server.take() {
            let _ = tx.send(Request::Exit);
            let _ = join.join();
        }
    }

    fn create_client_socket(&self) -> io::Result<OwnedFd> {
        let (tx, _) = self
            .server
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let (client, server) = UnixStream::pair()?;
        // wlcs later names the client by its wl_display, whose fd is this one.
        let key = client.as_raw_fd();
        tx.send(Request::NewClient {
            stream: server,
            key,
        })
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, e.to_string()))?;
        Ok(client.into())
    }

    fn position_window_absolute(
        &self,
        display: *mut wl_display,
        surface: *mut wl_proxy,
        x: i32,
        y: i32,
    ) {
        // SAFETY: wlcs passes a live wl_display and a wl_surface proxy of that display; both
        // functions only read them.
        let key = unsafe {
            ffi_dispatch!(
                wayland_sys::client::wayland_client_handle(),
                wl_display_get_fd,
                display
            )
        };
        // SAFETY: as above.
        let surface_id = unsafe {
            ffi_dispatch!(
                wayland_sys::client::wayland_client_handle(),
                wl_proxy_get_id,
                surface
            )
        };
        if let Some((tx, _)) = &self.server {
            let _ = tx.send(Request::PositionWindow {
                key,
                surface_id,
                x,
                y,
            });
        }
    }

    fn create_pointer(&mut self) -> Option<Self::Pointer> {
        let (tx, _) = self.server.as_ref()?;
        NEXT_DEVICE.fetch_add(1, Ordering::Relaxed);
        Some(PointerHandle { tx: tx.clone() })
    }

    fn create_touch(&mut self) -> Option<Self::Touch> {
        let (tx, _) = self.server.as_ref()?;
        Some(TouchHandle { tx: tx.clone() })
    }

    fn get_descriptor(&self) -> &WlcsIntegrationDescriptor {
        &DESCRIPTOR
    }
}

struct PointerHandle {
    tx: Sender<Request>,
}

impl wlcs::Pointer for PointerHandle {
    fn move_absolute(&mut self, x: wl_fixed_t, y: wl_fixed_t) {
        let _ = self.tx.send(Request::PointerAbsolute {
            x: wl_fixed_to_double(x),
            y: wl_fixed_to_double(y),
        });
    }

    fn move_relative(&mut self, dx: wl_fixed_t, dy: wl_fixed_t) {
        let _ = self.tx.send(Request::PointerRelative {
            dx: wl_fixed_to_double(dx),
            dy: wl_fixed_to_double(dy),
        });
    }

    fn button_up(&mut self, button: i32) {
        let _ = self.tx.send(Request::PointerButton {
            button: button as u32,
            pressed: false,
        });
    }

    fn button_down(&mut self, button: i32) {
        let _ = self.tx.send(Request::PointerButton {
            button: button as u32,
            pressed: true,
        });
    }
}

/// One finger (wlcs drives a single touch point per device).
///
/// wlcs 1.5 hands touch positions over as plain integers in the `wl_fixed_t` slots (its
/// `down_at(int, int)` passes them straight through), unlike pointer positions.
struct TouchHandle {
    tx: Sender<Request>,
}

impl wlcs::Touch for TouchHandle {
    fn touch_down(&mut self, x: wl_fixed_t, y: wl_fixed_t) {
        let _ = self.tx.send(Request::TouchDown {
            x: f64::from(x),
            y: f64::from(y),
        });
    }

    fn touch_move(&mut self, x: wl_fixed_t, y: wl_fixed_t) {
        let _ = self.tx.send(Request::TouchMove {
            x: f64::from(x),
            y: f64::from(y),
        });
    }

    fn touch_up(&mut self) {
        let _ = self.tx.send(Request::TouchUp);
    }
}

/// The compositor thread: the real state on the headless backend, fed by wlcs's requests.
fn serve(rx: Channel<Request>) -> Result<(), String> {
    let (mut event_loop, mut state) = bulkhead_compositor::backend::headless::headless_state(
        bulkhead_config::Config::builtin_default(),
    )?;
    let mut clients: HashMap<i32, ClientId> = HashMap::new();
    let signal = event_loop.get_signal();
    event_loop
        .handle()
        .insert_source(rx, move |event, _, state| {
            let Event::Msg(req) = event else { return };
            let time = state.desk.elapsed().as_millis() as u32;
            match req {
                Request::Exit => signal.stop(),
                Request::NewClient { stream, key } => {
                    if let Some(id) = state
                        .desk
                        .insert_client(stream, ClientState::new(Domain::Host))
                    {
                        clients.insert(key, id);
                    }
                }
                Request::PositionWindow {
                    key,
                    surface_id,
                    x,
                    y,
                } => {
                    let Some(client) = clients.get(&key) else {
                        return;
                    };
                    let window = state.desk.all_windows().into_iter().find(|w| {
                        w.toplevel().is_some_and(|t| {
                            let s = t.wl_surface();
                            s.id().protocol_id() == surface_id
                                && s.client().is_some_and(|c| &c.id() == client)
                        })
                    });
                    if let Some(w) = window {
                        state.desk.space.map_element(w, (x, y), false);
                    }
                }
                Request::PointerAbsolute { x, y } => state.on_pointer_motion((x, y).into(), time),
                Request::PointerRelative { dx, dy } => {
                    let delta: bulkhead_compositor::Point<f64, bulkhead_compositor::Logical> =
                        (dx, dy).into();
                    state.on_pointer_motion_relative(delta, delta, u64::from(time) * 1000);
                }
                Request::PointerButton { button, pressed } => {
                    state.on_pointer_button(button, pressed, time)
                }
                Request::TouchDown { x, y } => {
                    state.on_touch_down(Some(0).into(), (x, y).into(), time)
                }
                Request::TouchMove { x, y } => {
                    state.on_touch_motion(Some(0).into(), (x, y).into(), time)
                }
                Request::TouchUp => state.on_touch_up(Some(0).into(), time),
            }
        })
        .map_err(|e| e.to_string())?;
    event_loop
        .run(None, &mut state, |state| {
            state.refresh_pointer_focus();
            state.desk.space.refresh();
            state.desk.popups.cleanup();
            let _ = state.desk.display_handle.flush_clients();
        })
        .map_err(|e| e.to_string())
}
