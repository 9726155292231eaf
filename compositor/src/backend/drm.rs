//! The DRM/KMS session backend: Bulkhead as the session on a VT. Devices come through libseat
//! (seatd or logind), the primary GPU is found with udev, frames are composed with GLES (or
//! pixman into dumb buffers when EGL is unavailable) by one `DrmCompositor` per connected
//! monitor, input comes from libinput. Every decision (modes, layout, hotplug, VT switches,
//! DPMS, per-device input settings) is made by `drm_policy`; this file only applies them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use smithay::backend::allocator::dumb::DumbAllocator;
use smithay::backend::allocator::gbm::{GbmAllocator, GbmBufferFlags, GbmDevice};
use smithay::backend::allocator::Fourcc;
use smithay::backend::drm::compositor::{
    DrmCompositor, FrameFlags, PrimaryPlaneElement, RenderFrameResult,
};
use smithay::backend::drm::exporter::gbm::GbmFramebufferExporter;
use smithay::backend::drm::{DrmDevice, DrmDeviceFd, DrmEvent, DrmNode, NodeType};
use smithay::backend::egl::{EGLContext, EGLDisplay};
use smithay::backend::input::{InputEvent, KeyboardKeyEvent};
use smithay::backend::libinput::{LibinputInputBackend, LibinputSessionInterface};
use smithay::backend::renderer::gles::{GlesRenderer, GlesTexture};
use smithay::backend::renderer::pixman::PixmanRenderer;
use smithay::backend::renderer::Bind;
use smithay::backend::session::libseat::LibSeatSession;
use smithay::backend::session::{Event as SeatEvent, Session};
use smithay::backend::udev::{self, UdevBackend, UdevEvent};
use smithay::output::{Mode, Output, PhysicalProperties, Scale, Subpixel};
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::drm::control::{connector, crtc, Device as _, ModeTypeFlags};
use smithay::reexports::input::{self as libinput, Libinput};
use smithay::reexports::rustix::fs::OFlags;
use smithay::reexports::wayland_server::backend::GlobalId;
use smithay::utils::{DeviceFd, Transform};

use bulkhead_config::desktop::OutputTransform;
use bulkhead_config::Renderer;

use crate::backend::drm_policy::{
    self, DeviceKind, InputSettings, LayoutEntry, ModeInfo, SessionAction, SessionEvent,
    SessionPhase,
};
use crate::backend::{post_render, screenshot_with, Backend, Screenshot};
use crate::domain::Domain;
use crate::render::output_elements;
use crate::state::{Desktop, State};

/// Primary plane formats, tried in order (every scan-out engine does 8-bit RGB).
const COLOR_FORMATS: [Fourcc; 2] = [Fourcc::Argb8888, Fourcc::Xrgb8888];
/// A page flip not done this long after its frame was queued is logged (virtio-gpu and real
/// GPUs flip within a few refreshes).
const FLIP_OVERDUE: Duration = Duration::from_secs(2);

type GbmCompositor =
    DrmCompositor<GbmAllocator<DrmDeviceFd>, GbmFramebufferExporter<DrmDeviceFd>, (), DrmDeviceFd>;
type DumbCompositor = DrmCompositor<DumbAllocator, DrmDeviceFd, (), DrmDeviceFd>;

#[derive(Debug, thiserror::Error)]
pub enum DrmBackendError {
    #[error("no DRM device found (is this a VT or display manager session with a GPU? {0})")]
    NoDriDevice(String),
    #[error(
        "cannot open a seat session through libseat: start Bulkhead from a text console (VT) \
         with seatd running (and your user in its group) or under systemd-logind; over SSH or \
         inside a desktop use --backend winit or --backend headless"
    )]
    Session(#[source] smithay::backend::session::libseat::Error),
    #[error("cannot list the GPUs of seat {seat} through udev")]
    Udev {
        seat: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no DRM device found on seat {0} (is this a VT or display manager session with a GPU?)"
    )]
    NoGpu(String),
    #[error("cannot open the GPU {path} through the seat (is another compositor or X server running on this VT?)")]
    OpenGpu {
        path: PathBuf,
        #[source]
        source: smithay::backend::session::libseat::Error,
    },
    #[error("cannot set up the GPU {path} for mode setting")]
    Device {
        path: PathBuf,
        #[source]
        source: smithay::backend::drm::DrmError,
    },
    #[error("cannot create a renderer: GLES failed ({gles}) and pixman failed ({pixman})")]
    Renderer { gles: String, pixman: String },
    #[error("cannot open input devices of seat {0} through libinput")]
    Libinput(String),
    #[error("cannot add the {what} to the event loop: {error}")]
    EventLoop { what: &'static str, error: String },
    #[error("the GPU {0} has no connected monitor that is enabled in the config")]
    NoOutput(PathBuf),
}

/// How frames are drawn: GLES into GBM buffers, or pixman into dumb buffers.
enum Pipeline {
    Gles {
        renderer: Box<GlesRenderer>,
        allocator: GbmAllocator<DrmDeviceFd>,
        exporter: GbmFramebufferExporter<DrmDeviceFd>,
    },
    Pixman {
        renderer: PixmanRenderer,
    },
}

enum SurfaceCompositor {
    Gles(Box<GbmCompositor>),
    Pixman(Box<DumbCompositor>),
}

/// Runs `$body` with `$c` bound to the compositor of either kind.
macro_rules! with_compositor {
    ($compositor:expr, $c:ident => $body:expr) => {
        match $compositor {
            SurfaceCompositor::Gles($c) => $body,
            SurfaceCompositor::Pixman($c) => $body,
        }
    };
}

/// One lit monitor: a connector driven by a CRTC, and the Wayland output for it.
struct Surface {
    name: String,
    /// Index of the connector in the device's list (the layout's order).
    order: usize,
    crtc: crtc::Handle,
    output: Output,
    global: GlobalId,
    compositor: SurfaceCompositor,
    refresh: Duration,
    /// A frame is queued and its page flip has not completed.
    waiting_vblank: bool,
    /// When the frame waiting for its flip was queued, and whether its lateness was logged.
    queued_at: Instant,
    flip_overdue_logged: bool,
    /// Something changed while waiting: draw again on the flip.
    redraw: bool,
    /// A timer will send frame callbacks for a frame that had no damage.
    idle_timer: bool,
    /// The queued frame shows the locker's surface; the one on screen does.
    queued_shows_lock: bool,
    shows_lock: bool,
}

pub struct Drm {
    // Dropped first: surfaces hold the device's CRTCs and GBM buffers.
    surfaces: Vec<Surface>,
    pipeline: Pipeline,
    gbm: Option<GbmDevice<DrmDeviceFd>>,
    fd: DrmDeviceFd,
    device: DrmDevice,
    device_id: u64,
    path: PathBuf,
    libinput: Libinput,
    session: LibSeatSession,
    phase: SessionPhase,
    screens_on: bool,
    /// The input devices libinput has added (for applying `[[input]]` again on reload).
    devices: Vec<libinput::Device>,
}

/// The DRM backend and the desktop, borrowed together from the state.
fn split(state: &mut State) -> Option<(&mut Drm, &mut Desktop)> {
    match &mut state.backend {
        Backend::Drm(d) => Some((d, &mut state.desk)),
        _ => None,
    }
}

/// Turns a failed event source registration into an error naming the source.
fn loop_err<T>(
    what: &'static str,
) -> impl Fn(smithay::reexports::calloop::error::InsertError<T>) -> DrmBackendError {
    move |e| DrmBackendError::EventLoop {
        what,
        error: e.error.to_string(),
    }
}

/// Fails at once when the machine has no DRM nodes at all, before asking for a seat.
fn check_dri(dir: &Path) -> Result<(), DrmBackendError> {
    match std::fs::read_dir(dir) {
        Err(_) => Err(DrmBackendError::NoDriDevice(format!(
            "{} does not exist",
            dir.display()
        ))),
        Ok(entries) => {
            let has_card = entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("card"));
            if has_card {
                Ok(())
            } else {
                Err(DrmBackendError::NoDriDevice(format!(
                    "{} is empty",
                    dir.display()
                )))
            }
        }
    }
}

impl Drm {
    pub fn new(desk: &mut Desktop) -> Result<Drm, DrmBackendError> {
        check_dri(Path::new("/dev/dri"))?;
        let (mut session, seat_events) = LibSeatSession::new().map_err(DrmBackendError::Session)?;
        let seat = session.seat();
        let path = match udev::primary_gpu(&seat) {
            Ok(Some(p)) => p,
            Ok(None) => udev::all_gpus(&seat)
                .map_err(|source| DrmBackendError::Udev {
                    seat: seat.clone(),
                    source,
                })?
                .into_iter()
                .next()
                .ok_or_else(|| DrmBackendError::NoGpu(seat.clone()))?,
            Err(source) => {
                return Err(DrmBackendError::Udev {
                    seat: seat.clone(),
                    source,
                })
            }
        };
        tracing::info!("using GPU {} on seat {seat}", path.display());
        let owned = session
            .open(
                &path,
                OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            )
            .map_err(|source| DrmBackendError::OpenGpu {
                path: path.clone(),
                source,
            })?;
        let fd = DrmDeviceFd::new(DeviceFd::from(owned));
        let (device, drm_events) =
            DrmDevice::new(fd.clone(), true).map_err(|source| DrmBackendError::Device {
                path: path.clone(),
                source,
            })?;
        let device_id = device.device_id();
        let gbm = match GbmDevice::new(fd.clone()) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(
                    "no GBM on {}: {e}; no GLES and no cursor plane",
                    path.display()
                );
                None
            }
        };
        let pipeline = make_pipeline(&fd, gbm.as_ref(), desk.config.session.renderer)?;

        // Input: libinput opens the seat's devices through the same session.
        let mut libinput = Libinput::new_with_udev(LibinputSessionInterface::from(session.clone()));
        libinput
            .udev_assign_seat(&seat)
            .map_err(|()| DrmBackendError::Libinput(seat.clone()))?;

        let lh = desk.loop_handle.clone();
        lh.insert_source(
            LibinputInputBackend::new(libinput.clone()),
            |event, _, state| on_input(state, event),
        )
        .map_err(loop_err("input devices"))?;
        lh.insert_source(seat_events, |event, _, state| {
            let event = match event {
                SeatEvent::PauseSession => SessionEvent::Pause,
                SeatEvent::ActivateSession => SessionEvent::Resume,
            };
            on_session_event(state, event);
        })
        .map_err(loop_err("seat session"))?;
        lh.insert_source(drm_events, |event, _, state| match event {
            DrmEvent::VBlank(crtc) => on_vblank(state, crtc),
            DrmEvent::Error(e) => tracing::error!("DRM device error: {e}"),
        })
        .map_err(loop_err("DRM device"))?;
        let udev = UdevBackend::new(&seat).map_err(|source| DrmBackendError::Udev {
            seat: seat.clone(),
            source,
        })?;
        lh.insert_source(udev, move |event, _, state| match event {
            UdevEvent::Changed { device_id: id } => {
                if split(state).is_some_and(|(d, _)| d.device_id == id) {
                    on_session_event(state, SessionEvent::Hotplug);
                }
            }
            UdevEvent::Added { path, .. } => {
                tracing::info!(
                    "GPU {} added; Bulkhead drives only its first GPU",
                    path.display()
                );
            }
            UdevEvent::Removed { device_id: id } => {
                if split(state).is_some_and(|(d, _)| d.device_id == id) {
                    tracing::error!("the GPU was removed; nothing can be shown any more");
                }
            }
        })
        .map_err(loop_err("udev monitor"))?;
        // DPMS and expiring notifications are checked once a second.
        lh.insert_source(
            Timer::from_duration(Duration::from_secs(1)),
            |_, _, state| {
                on_tick(state, Instant::now());
                TimeoutAction::ToDuration(Duration::from_secs(1))
            },
        )
        .map_err(loop_err("DPMS timer"))?;

        let phase = SessionPhase::initial(session.is_active());
        let mut drm = Drm {
            surfaces: Vec::new(),
            pipeline,
            gbm,
            fd,
            device,
            device_id,
            path,
            libinput,
            session,
            phase,
            screens_on: true,
            devices: Vec::new(),
        };
        drm.scan_connectors(desk);
        if drm.surfaces.is_empty() {
            return Err(DrmBackendError::NoOutput(drm.path.clone()));
        }
        desk.request_redraw();
        Ok(drm)
    }

    /// Applies `[[input]]` again to every device (after a config reload).
    pub fn reconfigure_inputs(&mut self, inputs: &[bulkhead_config::desktop::InputConfig]) {
        for d in &mut self.devices {
            configure_device(inputs, d);
        }
    }

    /// The lit outputs.
    pub fn outputs(&self) -> impl Iterator<Item = &Output> {
        self.surfaces.iter().map(|s| &s.output)
    }

    /// Whether every lit output shows the locker on screen (its last page flip had it).
    pub fn lock_presented(&self) -> bool {
        !self.surfaces.is_empty() && self.surfaces.iter().all(|s| s.shows_lock)
    }

    /// What draws the outputs: "gles" or "pixman".
    pub fn renderer_name(&self) -> &'static str {
        match self.pipeline {
            Pipeline::Gles { .. } => "gles",
            Pipeline::Pixman { .. } => "pixman",
        }
    }

    pub fn screenshot(&mut self, desk: &Desktop) -> Result<Screenshot, String> {
        match &mut self.pipeline {
            // GL's origin is bottom-left: Flipped180 gives top-down rows (as for winit).
            Pipeline::Gles { renderer, .. } => {
                screenshot_with::<_, GlesTexture>(renderer.as_mut(), desk, Transform::Flipped180)
            }
            Pipeline::Pixman { renderer } => screenshot_with::<
                _,
                smithay::reexports::pixman::Image<'static, 'static>,
            >(renderer, desk, Transform::Normal),
        }
    }

    /// Composes every output that is not waiting for a page flip (those redraw on the flip).
    pub fn render(&mut self, desk: &mut Desktop) {
        desk.dirty = false;
        // While paused nothing is drawn: every surface is reset and redrawn on resume.
        if self.phase.on(SessionEvent::Render).1 != SessionAction::Render || !self.screens_on {
            return;
        }
        for i in 0..self.surfaces.len() {
            let s = &mut self.surfaces[i];
            if s.waiting_vblank {
                s.redraw = true;
                if !s.flip_overdue_logged && s.queued_at.elapsed() > FLIP_OVERDUE {
                    s.flip_overdue_logged = true;
                    tracing::warn!(
                        "{}: the page flip queued {} ms ago has not completed; nothing new is drawn on it until it does",
                        s.name,
                        s.queued_at.elapsed().as_millis()
                    );
                }
            } else {
                self.render_surface(i, desk);
            }
        }
    }

    fn render_surface(&mut self, i: usize, desk: &mut Desktop) {
        let clear = desk.config.appearance.background.to_f32();
        let Some(s) = self.surfaces.get_mut(i) else {
            return;
        };
        let result = match (&mut self.pipeline, &mut s.compositor) {
            (Pipeline::Gles { renderer, .. }, SurfaceCompositor::Gles(c)) => {
                let r = renderer.as_mut();
                let elements = output_elements(desk, r, &s.output, true);
                match c.render_frame(r, &elements, clear, FrameFlags::DEFAULT) {
                    Ok(f) if f.is_empty => Ok(false),
                    Ok(f) => {
                        rendering_done(&f);
                        c.queue_frame(()).map(|()| true).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            (Pipeline::Pixman { renderer }, SurfaceCompositor::Pixman(c)) => {
                let elements = output_elements(desk, renderer, &s.output, true);
                match c.render_frame(renderer, &elements, clear, FrameFlags::DEFAULT) {
                    Ok(f) if f.is_empty => Ok(false),
                    Ok(f) => {
                        rendering_done(&f);
                        c.queue_frame(()).map(|()| true).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => Err("the output's compositor does not match the renderer".into()),
        };
        match result {
            Ok(true) => {
                s.waiting_vblank = true;
                s.queued_at = Instant::now();
                s.flip_overdue_logged = false;
                s.queued_shows_lock = desk.lock.surface_for(&s.output).is_some();
                desk.frames_composed += 1;
            }
            Ok(false) => self.schedule_idle_frame(i, desk),
            Err(e) => {
                tracing::warn!("rendering {} failed: {e}", s.name);
                self.schedule_idle_frame(i, desk);
            }
        }
    }

    /// Nothing changed on screen: clients still get their frame callbacks, one refresh later
    /// (not at once, or a client redrawing the same content would spin).
    fn schedule_idle_frame(&mut self, i: usize, desk: &mut Desktop) {
        let Some(s) = self.surfaces.get_mut(i) else {
            return;
        };
        if s.idle_timer {
            return;
        }
        let crtc = s.crtc;
        let refresh = s.refresh;
        let inserted =
            desk.loop_handle
                .insert_source(Timer::from_duration(refresh), move |_, _, state| {
                    if let Some((drm, desk)) = split(state) {
                        if let Some(s) = drm.surfaces.iter_mut().find(|s| s.crtc == crtc) {
                            s.idle_timer = false;
                            let output = s.output.clone();
                            post_render(desk, &output, refresh);
                        }
                    }
                    TimeoutAction::Drop
                });
        match inserted {
            Ok(_) => s.idle_timer = true,
            Err(e) => tracing::warn!("cannot schedule frame callbacks: {}", e.error),
        }
    }

    /// Brings the set of lit outputs in line with the connected monitors and lays them out.
    fn scan_connectors(&mut self, desk: &mut Desktop) {
        let resources = match self.device.resource_handles() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read the GPU's connectors: {e}");
                return;
            }
        };
        let mut connected = Vec::new();
        for (order, &handle) in resources.connectors().iter().enumerate() {
            let info = match self.device.get_connector(handle, true) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!("cannot read connector {handle:?}: {e}");
                    continue;
                }
            };
            if info.state() != connector::State::Connected {
                continue;
            }
            let name = format!("{}-{}", info.interface().as_str(), info.interface_id());
            let enabled =
                drm_policy::output_config(&desk.config.outputs, &name).is_none_or(|c| c.enable);
            if enabled {
                connected.push((name, order, handle, info));
            } else {
                tracing::info!("output {name} is disabled in the config");
            }
        }
        let previous: Vec<String> = self.surfaces.iter().map(|s| s.name.clone()).collect();
        let current: Vec<String> = connected.iter().map(|c| c.0.clone()).collect();
        let (added, removed) = drm_policy::connector_changes(&previous, &current);
        for name in removed {
            if let Some(i) = self.surfaces.iter().position(|s| s.name == name) {
                let s = self.surfaces.remove(i);
                tracing::info!("output {name} disconnected");
                desk.space.unmap_output(&s.output);
                desk.display_handle.remove_global::<State>(s.global);
            }
        }
        for (name, order, handle, info) in connected {
            if !added.contains(&name) {
                continue;
            }
            if let Err(e) = self.add_output(desk, name.clone(), order, handle, &info) {
                tracing::error!("cannot light output {name}: {e}");
                desk.notify(&Domain::Host, format!("Output {name} cannot be used: {e}"));
            }
        }
        self.surfaces.sort_by_key(|s| s.order);
        self.relayout(desk);
        desk.request_redraw();
    }

    fn add_output(
        &mut self,
        desk: &mut Desktop,
        name: String,
        order: usize,
        handle: connector::Handle,
        info: &connector::Info,
    ) -> Result<(), String> {
        let cfg = drm_policy::output_config(&desk.config.outputs, &name).cloned();
        let modes: Vec<ModeInfo> = info
            .modes()
            .iter()
            .map(|m| {
                let mode = Mode::from(*m);
                ModeInfo {
                    width: mode.size.w,
                    height: mode.size.h,
                    refresh_mhz: mode.refresh,
                    preferred: m.mode_type().contains(ModeTypeFlags::PREFERRED),
                }
            })
            .collect();
        let choice =
            drm_policy::choose_mode(&name, &modes, cfg.as_ref().and_then(|c| c.mode.as_ref()))
                .ok_or("the monitor reports no modes")?;
        if let Some(w) = choice.warning {
            tracing::warn!("{w}");
            desk.notify(&Domain::Host, w);
        }
        let drm_mode = *info
            .modes()
            .get(choice.index)
            .ok_or("the chosen mode is not in the list")?;
        let crtc = self.free_crtc(info).ok_or("no free CRTC can drive it")?;
        let surface = self
            .device
            .create_surface(crtc, drm_mode, &[handle])
            .map_err(|e| format!("cannot create a DRM surface: {e}"))?;

        let (w_mm, h_mm) = info.size().unwrap_or((0, 0));
        let output = Output::new(
            name.clone(),
            PhysicalProperties {
                size: (w_mm as i32, h_mm as i32).into(),
                subpixel: subpixel(info.subpixel()),
                make: "Unknown".into(),
                model: "Unknown".into(),
            },
        );
        let global = output.create_global::<State>(&desk.display_handle);
        let mode = Mode::from(drm_mode);
        let scale = cfg.as_ref().and_then(|c| c.scale).unwrap_or(1.0);
        let transform = cfg
            .as_ref()
            .map_or(OutputTransform::Normal, |c| c.transform);
        output.change_current_state(
            Some(mode),
            Some(to_transform(transform)),
            Some(Scale::Fractional(scale)),
            None,
        );
        output.set_preferred(mode);

        let cursor_size = self.device.cursor_size();
        let compositor = match &mut self.pipeline {
            Pipeline::Gles {
                renderer,
                allocator,
                exporter,
            } => {
                let formats = renderer.egl_context().dmabuf_render_formats().clone();
                DrmCompositor::new(
                    &output,
                    surface,
                    None,
                    allocator.clone(),
                    exporter.clone(),
                    COLOR_FORMATS,
                    formats,
                    cursor_size,
                    self.gbm.clone(),
                )
                .map(|c| SurfaceCompositor::Gles(Box::new(c)))
                .map_err(|e| e.to_string())
            }
            Pipeline::Pixman { renderer } => {
                let formats =
                    Bind::<smithay::backend::allocator::dmabuf::Dmabuf>::supported_formats(
                        renderer,
                    )
                    .unwrap_or_default();
                DrmCompositor::new(
                    &output,
                    surface,
                    None,
                    DumbAllocator::new(self.fd.clone()),
                    self.fd.clone(),
                    COLOR_FORMATS,
                    formats,
                    cursor_size,
                    self.gbm.clone(),
                )
                .map(|c| SurfaceCompositor::Pixman(Box::new(c)))
                .map_err(|e| e.to_string())
            }
        };
        let compositor = match compositor {
            Ok(c) => c,
            Err(e) => {
                desk.display_handle.remove_global::<State>(global);
                return Err(format!("cannot set up composition: {e}"));
            }
        };
        let refresh_mhz = u64::try_from(mode.refresh).unwrap_or(0).max(1_000);
        tracing::info!(
            "output {name}: {}x{}@{}.{:03} scale {scale} transform {transform:?}",
            mode.size.w,
            mode.size.h,
            mode.refresh / 1000,
            mode.refresh % 1000
        );
        self.surfaces.push(Surface {
            name,
            order,
            crtc,
            output,
            global,
            compositor,
            refresh: Duration::from_micros(1_000_000_000 / refresh_mhz),
            waiting_vblank: false,
            queued_at: Instant::now(),
            flip_overdue_logged: false,
            redraw: false,
            idle_timer: false,
            queued_shows_lock: false,
            shows_lock: false,
        });
        Ok(())
    }

    /// A CRTC that can drive the connector through one of its encoders and is not in use.
    fn free_crtc(&self, info: &connector::Info) -> Option<crtc::Handle> {
        let resources = self.device.resource_handles().ok()?;
        let used: Vec<crtc::Handle> = self.surfaces.iter().map(|s| s.crtc).collect();
        info.encoders()
            .iter()
            .filter_map(|&e| self.device.get_encoder(e).ok())
            .flat_map(|e| resources.filter_crtcs(e.possible_crtcs()))
            .find(|c| !used.contains(c))
    }

    /// Places every lit output as `drm_policy::layout` says and maps it into the space.
    fn relayout(&mut self, desk: &mut Desktop) {
        let entries: Vec<LayoutEntry> = self
            .surfaces
            .iter()
            .map(|s| {
                let cfg = drm_policy::output_config(&desk.config.outputs, &s.name);
                let size = s
                    .output
                    .current_mode()
                    .map_or((0, 0), |m| (m.size.w, m.size.h));
                LayoutEntry {
                    size: drm_policy::logical_size(
                        size,
                        cfg.and_then(|c| c.scale).unwrap_or(1.0),
                        cfg.map_or(OutputTransform::Normal, |c| c.transform),
                    ),
                    configured: cfg.and_then(|c| c.position).map(|p| (p.x, p.y)),
                    enabled: true,
                }
            })
            .collect();
        for (s, at) in self.surfaces.iter().zip(drm_policy::layout(&entries)) {
            match at {
                Some(at) => {
                    s.output
                        .change_current_state(None, None, None, Some(at.into()));
                    desk.space.map_output(&s.output, at);
                }
                None => desk.space.unmap_output(&s.output),
            }
        }
    }

    /// Leaves the VT: no rendering, no input, the device given back; outputs stay mapped.
    fn suspend(&mut self) {
        self.libinput.suspend();
        self.device.pause();
        for s in &mut self.surfaces {
            s.waiting_vblank = false;
            s.redraw = false;
        }
    }

    /// Back on the VT: input and device again, and every surface redrawn from scratch (another
    /// DRM master may have changed the CRTCs meanwhile).
    fn reactivate(&mut self, desk: &mut Desktop, rescan: bool) {
        if self.libinput.resume().is_err() {
            tracing::error!("cannot resume input devices");
        }
        if let Err(e) = self.device.activate(false) {
            tracing::error!("cannot reactivate the GPU: {e}");
        }
        // Coming back to the VT is the user's doing: light the monitors even if they were
        // blanked before the switch, and restart the DPMS countdown.
        self.screens_on = true;
        desk.last_activity = Instant::now();
        self.reset_surfaces();
        if rescan {
            self.scan_connectors(desk);
        }
        self.render(desk);
    }

    fn reset_surfaces(&mut self) {
        for s in &mut self.surfaces {
            s.waiting_vblank = false;
            s.redraw = false;
            s.shows_lock = false;
            if let Err(e) = with_compositor!(&mut s.compositor, c => c.reset_state()) {
                tracing::warn!("cannot reset output {}: {e}", s.name);
            }
        }
    }

    /// Turns the monitors off (DPMS) or back on.
    fn set_screens_on(&mut self, on: bool, desk: &mut Desktop) {
        if on == self.screens_on {
            return;
        }
        self.screens_on = on;
        if on {
            tracing::info!("input: turning the monitors on");
            self.reset_surfaces();
            self.render(desk);
        } else {
            tracing::info!("idle: turning the monitors off");
            for s in &mut self.surfaces {
                s.waiting_vblank = false;
                s.redraw = false;
                if let Err(e) = with_compositor!(&mut s.compositor, c => c.clear()) {
                    tracing::warn!("cannot turn off output {}: {e}", s.name);
                }
            }
        }
    }

    /// Switches to another VT (Ctrl+Alt+F`n`).
    fn change_vt(&mut self, vt: i32) {
        if let Err(e) = self.session.change_vt(vt) {
            tracing::warn!("cannot switch to VT {vt}: {e}");
        }
    }
}

fn make_pipeline(
    fd: &DrmDeviceFd,
    gbm: Option<&GbmDevice<DrmDeviceFd>>,
    choice: Renderer,
) -> Result<Pipeline, DrmBackendError> {
    let gles = match (choice, gbm) {
        (Renderer::Pixman, _) => Err("the config asks for pixman ([session] renderer)".to_string()),
        (Renderer::Auto, Some(gbm)) => make_gles(fd, gbm),
        (Renderer::Auto, None) => Err("GBM is unavailable".to_string()),
    };
    match gles {
        Ok(p) => Ok(p),
        Err(gles) => {
            if choice == Renderer::Auto {
                tracing::warn!("GLES rendering is unavailable ({gles}); drawing with pixman into dumb buffers (slower)");
            }
            tracing::info!("renderer: pixman into dumb buffers");
            PixmanRenderer::new()
                .map(|renderer| Pipeline::Pixman { renderer })
                .map_err(|e| DrmBackendError::Renderer {
                    gles,
                    pixman: e.to_string(),
                })
        }
    }
}

fn make_gles(fd: &DrmDeviceFd, gbm: &GbmDevice<DrmDeviceFd>) -> Result<Pipeline, String> {
    // SAFETY: this is the only EGL display created for this GBM device, and nothing outside
    // smithay calls eglGetPlatformDisplay/eglTerminate in this process.
    let display = unsafe { EGLDisplay::new(gbm.clone()) }
        .map_err(|e| format!("cannot create an EGL display: {e}"))?;
    let context =
        EGLContext::new(&display).map_err(|e| format!("cannot create an EGL context: {e}"))?;
    // SAFETY: the context was just created and is only ever used on this (the event loop's)
    // thread.
    let mut renderer = unsafe { GlesRenderer::new(context) }
        .map_err(|e| format!("cannot create the GLES renderer: {e}"))?;
    let name = renderer
        .with_context(|gl| {
            // SAFETY: the context is current inside with_context; glGetString returns a
            // static NUL-terminated string or null.
            unsafe {
                let p = gl.GetString(smithay::backend::renderer::gles::ffi::RENDERER);
                (!p.is_null()).then(|| {
                    std::ffi::CStr::from_ptr(p.cast())
                        .to_string_lossy()
                        .into_owned()
                })
            }
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown".into());
    tracing::info!("renderer: GLES on {name}");
    let node = DrmNode::from_file(fd)
        .ok()
        .and_then(|n| n.node_with_type(NodeType::Render).and_then(Result::ok));
    Ok(Pipeline::Gles {
        renderer: Box::new(renderer),
        allocator: GbmAllocator::new(
            gbm.clone(),
            GbmBufferFlags::RENDERING | GbmBufferFlags::SCANOUT,
        ),
        exporter: GbmFramebufferExporter::new(gbm.clone(), node),
    })
}

fn to_transform(t: OutputTransform) -> Transform {
    match t {
        OutputTransform::Normal => Transform::Normal,
        OutputTransform::Rotate90 => Transform::_90,
        OutputTransform::Rotate180 => Transform::_180,
        OutputTransform::Rotate270 => Transform::_270,
        OutputTransform::Flipped => Transform::Flipped,
        OutputTransform::Flipped90 => Transform::Flipped90,
        OutputTransform::Flipped180 => Transform::Flipped180,
        OutputTransform::Flipped270 => Transform::Flipped270,
    }
}

fn subpixel(s: connector::SubPixel) -> Subpixel {
    match s {
        connector::SubPixel::HorizontalRgb => Subpixel::HorizontalRgb,
        connector::SubPixel::HorizontalBgr => Subpixel::HorizontalBgr,
        connector::SubPixel::VerticalRgb => Subpixel::VerticalRgb,
        connector::SubPixel::VerticalBgr => Subpixel::VerticalBgr,
        connector::SubPixel::None => Subpixel::None,
        _ => Subpixel::Unknown,
    }
}

/// Applies the session state machine to an event.
fn on_session_event(state: &mut State, event: SessionEvent) {
    let Some((drm, desk)) = split(state) else {
        return;
    };
    let (phase, action) = drm.phase.on(event);
    drm.phase = phase;
    let outputs_may_change = matches!(
        action,
        SessionAction::Rescan | SessionAction::Reactivate { .. }
    );
    match action {
        SessionAction::Nothing | SessionAction::FrameDone => {}
        SessionAction::Suspend => {
            tracing::info!("session paused (VT switched away)");
            drm.suspend();
        }
        SessionAction::Reactivate { rescan } => {
            tracing::info!("session active again");
            drm.reactivate(desk, rescan);
        }
        SessionAction::Rescan => drm.scan_connectors(desk),
        SessionAction::Render => drm.render(desk),
    }
    if outputs_may_change {
        // Windows of an unplugged monitor come back onto one; host tools hear of it.
        state.desk.outputs_changed();
        state.output_management_refresh();
    }
}

fn on_vblank(state: &mut State, crtc: crtc::Handle) {
    let Some((drm, desk)) = split(state) else {
        return;
    };
    let (phase, action) = drm.phase.on(SessionEvent::VBlank);
    drm.phase = phase;
    if action != SessionAction::FrameDone {
        return;
    }
    let Some(i) = drm.surfaces.iter().position(|s| s.crtc == crtc) else {
        return;
    };
    let s = &mut drm.surfaces[i];
    if let Err(e) = with_compositor!(&mut s.compositor, c => c.frame_submitted().map(|_| ()).map_err(|e| e.to_string()))
    {
        tracing::warn!("page flip on {} failed: {e}", s.name);
    }
    s.waiting_vblank = false;
    s.shows_lock = s.queued_shows_lock;
    let output = s.output.clone();
    let refresh = s.refresh;
    let redraw = std::mem::take(&mut s.redraw);
    post_render(desk, &output, refresh);
    if redraw && drm.screens_on {
        drm.render_surface(i, desk);
    }
    if desk.sleep.preparing() && drm.lock_presented() {
        state.lock_presented_everywhere();
    }
}

fn on_tick(state: &mut State, now: Instant) {
    if state.desk.notifications.expire(now) {
        state.desk.request_redraw();
    }
    let timeout = state
        .desk
        .config
        .session
        .dpms
        .map(|d| Duration::from_secs(d.0));
    let inhibited = state.desk.idle_inhibited();
    let on = drm_policy::outputs_should_be_on(state.desk.last_activity, now, timeout, inhibited);
    if let Some((drm, desk)) = split(state) {
        if drm.phase.is_active() {
            drm.set_screens_on(on, desk);
        }
    }
}

fn on_input(state: &mut State, mut event: InputEvent<LibinputInputBackend>) {
    match &mut event {
        InputEvent::DeviceAdded { device } => {
            configure_device(&state.desk.config.inputs, device);
            if let Some((drm, _)) = split(state) {
                drm.devices.push(device.clone());
            }
        }
        InputEvent::DeviceRemoved { device } => {
            if let Some((drm, _)) = split(state) {
                drm.devices.retain(|d| d != device);
            }
        }
        InputEvent::Keyboard { event } => {
            let code = event.key_code().raw().saturating_sub(8);
            let pressed = event.state() == smithay::backend::input::KeyState::Pressed;
            let mods = state.desk.seat.get_keyboard().map(|k| k.modifier_state());
            let vt = mods.and_then(|m| drm_policy::vt_for_key(code, m.ctrl, m.alt));
            if let (Some(vt), true) = (vt, pressed) {
                if let Some((drm, _)) = split(state) {
                    drm.change_vt(vt);
                }
                return;
            }
        }
        _ => {}
    }
    state.process_input_event(event);
    if let Some((drm, desk)) = split(state) {
        if drm.phase.is_active() && !drm.screens_on {
            drm.set_screens_on(true, desk);
        }
    }
}

/// Applies the matching `[[input]]` blocks to a device.
fn configure_device(
    inputs: &[bulkhead_config::desktop::InputConfig],
    device: &mut libinput::Device,
) {
    use libinput::DeviceCapability as Cap;
    let pointer = device.has_capability(Cap::Pointer);
    let touchpad = pointer && device.config_tap_finger_count() > 0;
    let kind = DeviceKind {
        keyboard: device.has_capability(Cap::Keyboard),
        pointer: pointer && !touchpad,
        touchpad,
        touch: device.has_capability(Cap::Touch),
    };
    let name = device.name().to_string();
    let s: InputSettings = drm_policy::resolve_input(inputs, &name, kind);
    tracing::info!("input device {name:?} ({kind:?}): {s:?}");
    let report = |what: &str, r: libinput::DeviceConfigResult| {
        if let Err(e) = r {
            tracing::warn!("input device {name:?}: cannot set {what}: {e:?}");
        }
    };
    if s.disabled {
        report(
            "disabled",
            device.config_send_events_set_mode(libinput::SendEventsMode::DISABLED),
        );
        return;
    }
    // A device a reload enables again.
    report(
        "enabled",
        device.config_send_events_set_mode(libinput::SendEventsMode::ENABLED),
    );
    if let Some(v) = s.tap {
        report("tap", device.config_tap_set_enabled(v));
    }
    if let Some(v) = s.natural_scroll {
        report(
            "natural-scroll",
            device.config_scroll_set_natural_scroll_enabled(v),
        );
    }
    if let Some(v) = s.left_handed {
        report("left-handed", device.config_left_handed_set(v));
    }
    if let Some(v) = s.disable_while_typing {
        report("disable-while-typing", device.config_dwt_set_enabled(v));
    }
    if let Some(v) = s.accel_speed {
        report("accel-speed", device.config_accel_set_speed(v));
    }
}

/// Waits until the renderer has finished drawing a frame when KMS cannot wait for it itself
/// (no fence the plane can take, as with llvmpipe): handing KMS a half-drawn buffer showed,
/// on virtio-gpu, only the top rows of each frame, since the host copies the buffer at the
/// flip and never again.
fn rendering_done<B, F, E>(frame: &RenderFrameResult<'_, B, F, E>)
where
    B: smithay::backend::allocator::Buffer,
    F: smithay::backend::drm::Framebuffer,
{
    if !frame.needs_sync() {
        return;
    }
    if let PrimaryPlaneElement::Swapchain(element) = &frame.primary_element {
        if let Err(e) = element.sync.wait() {
            tracing::warn!("waiting for the renderer to finish a frame: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_dri_fails_with_the_message() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("dri");
        let e = check_dri(&missing).err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.starts_with("no DRM device found"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
        std::fs::create_dir(&missing).unwrap_or_else(|e| panic!("{e}"));
        let e = check_dri(&missing).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.ends_with("dri is empty)")));
        std::fs::write(missing.join("renderD128"), b"").unwrap_or_else(|e| panic!("{e}"));
        assert!(check_dri(&missing).is_err());
        std::fs::write(missing.join("card0"), b"").unwrap_or_else(|e| panic!("{e}"));
        assert!(check_dri(&missing).is_ok());
    }

    #[test]
    fn transforms_map_one_to_one() {
        assert_eq!(to_transform(OutputTransform::Rotate90), Transform::_90);
        assert_eq!(
            to_transform(OutputTransform::Flipped270),
            Transform::Flipped270
        );
        assert_eq!(to_transform(OutputTransform::Normal), Transform::Normal);
    }

    /// Opening a seat must answer quickly, with a session or an error, never hang (ignored by
    /// default: on a machine with a seat it would take it).
    #[test]
    #[ignore]
    fn libseat_answers_quickly() {
        let started = Instant::now();
        let result = LibSeatSession::new();
        let took = started.elapsed();
        match &result {
            Ok(_) => eprintln!("libseat session opened in {took:?}"),
            Err(e) => eprintln!("libseat failed in {took:?}: {e}"),
        }
        assert!(took < Duration::from_secs(5), "libseat took {took:?}");
    }
}
