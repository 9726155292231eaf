//! Backends: how composed frames reach a screen (or a buffer) and where input comes from.
//! `headless` renders with pixman into memory (tests, screenshots, benchmarks); `winit` runs
//! nested in an existing desktop; `drm` runs the session itself on a GPU from a TTY (DRM/KMS,
//! libseat, libinput), with its decisions in `drm_policy`.

pub mod drm;
pub mod drm_policy;
pub mod headless;
pub mod winit;

use std::time::Duration;

use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::{
    Bind, ExportMem, ImportAll, ImportMem, Offscreen, Renderer, Texture, TextureMapping,
};
use smithay::desktop::layer_map_for_output;
use smithay::desktop::utils::{send_frames_surface_tree, OutputPresentationFeedback};
use smithay::input::pointer::CursorImageStatus;
use smithay::output::Output;
use smithay::reexports::wayland_protocols::wp::presentation_time::server::wp_presentation_feedback;
use smithay::utils::{Rectangle, Transform};
use smithay::wayland::presentation::Refresh;

use crate::render::output_elements;
use crate::state::{Desktop, State};

/// Which backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The session's own screens from a TTY (drm) when not inside a desktop, nested in a
    /// running Wayland or X11 desktop (winit) when inside one, else headless.
    Auto,
    Headless,
    Winit,
    /// DRM/KMS on the seat's GPU, input from libinput, devices through libseat.
    Drm,
}

/// What the `auto` choice looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoEnv {
    /// WAYLAND_DISPLAY is set and not empty.
    pub wayland_display: bool,
    /// DISPLAY is set and not empty.
    pub x11_display: bool,
    /// Standard input is a virtual terminal (/dev/ttyN).
    pub stdin_is_vt: bool,
    /// XDG_SESSION_TYPE is `tty` (logind's session on a VT).
    pub session_type_tty: bool,
}

impl AutoEnv {
    /// Reads the environment of this process.
    pub fn current() -> AutoEnv {
        let has = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
        let stdin = std::fs::read_link("/proc/self/fd/0").ok();
        AutoEnv {
            wayland_display: has("WAYLAND_DISPLAY"),
            x11_display: has("DISPLAY"),
            stdin_is_vt: stdin.as_deref().is_some_and(is_vt_path),
            session_type_tty: std::env::var_os("XDG_SESSION_TYPE").is_some_and(|t| t == "tty"),
        }
    }
}

/// Whether `path` names a virtual terminal (`/dev/tty1`, not `/dev/tty` or `/dev/ttyS0`).
pub fn is_vt_path(path: &std::path::Path) -> bool {
    path.to_str()
        .and_then(|p| p.strip_prefix("/dev/tty"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl BackendKind {
    pub fn resolve(self) -> BackendKind {
        self.resolve_in(AutoEnv::current())
    }

    /// `Auto` in `env`: inside a desktop, a window in it; on a VT (or in a tty session), the
    /// screens themselves; otherwise (SSH, CI) headless. Any explicit choice stays as it is.
    pub fn resolve_in(self, env: AutoEnv) -> BackendKind {
        match self {
            BackendKind::Auto => {
                if env.wayland_display || env.x11_display {
                    BackendKind::Winit
                } else if env.stdin_is_vt || env.session_type_tty {
                    BackendKind::Drm
                } else {
                    BackendKind::Headless
                }
            }
            other => other,
        }
    }
}

pub enum Backend {
    Headless(headless::Headless),
    Winit(Box<winit::Winit>),
    Drm(Box<drm::Drm>),
}

/// A change to one output asked for by a host tool (wlr-randr, kanshi) or the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputChange {
    /// Width, height and refresh in mHz (0: any).
    pub mode: Option<(i32, i32, i32)>,
    pub position: Option<(i32, i32)>,
    pub transform: Option<Transform>,
    pub scale: Option<f64>,
}

impl OutputChange {
    /// The change an `[[output]]` block asks for.
    pub fn from_config(c: &bulkhead_config::desktop::OutputConfig) -> OutputChange {
        OutputChange {
            mode: c
                .mode
                .map(|m| (m.width, m.height, m.refresh_mhz.unwrap_or(0))),
            position: c.position.map(|p| (p.x, p.y)),
            transform: Some(transform_from_config(c.transform)),
            scale: c.scale,
        }
    }
}

pub fn transform_from_config(t: bulkhead_config::desktop::OutputTransform) -> Transform {
    use bulkhead_config::desktop::OutputTransform as T;
    match t {
        T::Normal => Transform::Normal,
        T::Rotate90 => Transform::_90,
        T::Rotate180 => Transform::_180,
        T::Rotate270 => Transform::_270,
        T::Flipped => Transform::Flipped,
        T::Flipped90 => Transform::Flipped90,
        T::Flipped180 => Transform::Flipped180,
        T::Flipped270 => Transform::Flipped270,
    }
}

/// Checks a change against what every backend can show: sizes, scales, and at least one
/// output left on. `names` are the backend's outputs with whether each is on now.
pub fn check_output_changes(
    names: &[(String, bool)],
    changes: &[(String, Option<OutputChange>)],
) -> Result<(), String> {
    for (name, change) in changes {
        if !names.iter().any(|(n, _)| n == name) {
            return Err(format!("there is no output {name:?}"));
        }
        if let Some(c) = change {
            if let Some((w, h, r)) = c.mode {
                if !(64..=8192).contains(&w)
                    || !(64..=8192).contains(&h)
                    || !(0..=1_000_000).contains(&r)
                {
                    return Err(format!("{name}: mode {w}x{h}@{r}mHz is out of range"));
                }
            }
            if let Some(s) = c.scale {
                if !(s.is_finite() && (0.5..=4.0).contains(&s)) {
                    return Err(format!("{name}: scale {s} is not between 0.5 and 4"));
                }
            }
        }
    }
    let on = names
        .iter()
        .filter(|(n, on)| {
            changes
                .iter()
                .find(|(c, _)| c == n)
                .map_or(*on, |(_, c)| c.is_some())
        })
        .count();
    if on == 0 {
        return Err("at least one output must stay on".into());
    }
    Ok(())
}

/// An RGBA image of everything composed.
pub struct Screenshot {
    pub width: u32,
    pub height: u32,
    /// Tightly packed RGBA8, rows top to bottom.
    pub rgba: Vec<u8>,
}

impl Backend {
    /// Whether every output shows the locker on screen (only the DRM session can tell).
    pub fn lock_presented(&self) -> bool {
        match self {
            Backend::Drm(d) => d.lock_presented(),
            Backend::Headless(_) | Backend::Winit(_) => false,
        }
    }

    /// What draws the outputs: "gles" or "pixman".
    pub fn renderer_name(&self) -> &'static str {
        match self {
            Backend::Headless(_) => "pixman",
            Backend::Winit(_) => "gles",
            Backend::Drm(d) => d.renderer_name(),
        }
    }

    pub fn screenshot(&mut self, desk: &Desktop) -> Result<Screenshot, String> {
        match self {
            Backend::Headless(b) => screenshot_with::<
                _,
                smithay::reexports::pixman::Image<'static, 'static>,
            >(b.renderer(), desk, Transform::Normal),
            Backend::Winit(b) => {
                screenshot_with::<_, smithay::backend::renderer::gles::GlesTexture>(
                    b.renderer(),
                    desk,
                    Transform::Flipped180,
                )
            }
            Backend::Drm(b) => b.screenshot(desk),
        }
    }

    pub fn is_headless(&self) -> bool {
        matches!(self, Backend::Headless(_))
    }

    /// Every output the backend drives, on or off (wlr-output-management's heads).
    pub fn heads(&self, desk: &Desktop) -> Vec<crate::handlers::output_management::HeadState> {
        use crate::handlers::output_management::HeadState;
        let mapped = |output: &Output, enabled: bool| HeadState {
            output: output.clone(),
            enabled,
            position: desk
                .space
                .output_geometry(output)
                .map_or((0, 0), |g| (g.loc.x, g.loc.y)),
        };
        match self {
            Backend::Headless(b) => b.outputs().map(|(o, on)| mapped(o, on)).collect(),
            Backend::Winit(b) => vec![mapped(b.output(), true)],
            Backend::Drm(b) => b.outputs().map(|o| mapped(o, true)).collect(),
        }
    }

    /// Whether frames are drawn when something changed rather than by the backend's own clock
    /// or window events: the event loop then renders after dispatching when the scene is dirty.
    pub fn renders_on_demand(&self) -> bool {
        matches!(self, Backend::Drm(_))
    }
}

impl State {
    /// Tests or applies output changes (`None`: turn that output off).
    pub fn apply_output_changes(
        &mut self,
        changes: &[(String, Option<OutputChange>)],
        test_only: bool,
    ) -> Result<(), String> {
        match &mut self.backend {
            Backend::Headless(b) => b.apply(&mut self.desk, changes, test_only)?,
            Backend::Winit(_) => {
                return Err("the nested window's output follows the window's size".into())
            }
            Backend::Drm(_) => {
                return Err(
                    "changing monitors while the session runs is not supported on DRM yet; \
                            set [[output]] in the config and log in again"
                        .into(),
                )
            }
        }
        if !test_only {
            self.desk.outputs_changed();
        }
        Ok(())
    }
}

impl State {
    /// Composes every output whose content changed.
    pub fn render(&mut self) {
        self.desk.notifications.expire(std::time::Instant::now());
        match &mut self.backend {
            Backend::Headless(b) => b.render(&mut self.desk),
            Backend::Winit(b) => b.render(&mut self.desk),
            Backend::Drm(b) => b.render(&mut self.desk),
        }
    }
}

/// Renders all outputs into one RGBA canvas, each output at its physical size, placed at
/// its logical position times its scale, with the same elements the screen shows.
///
/// `transform` is the render transform that makes rows come back top-down from this renderer's
/// offscreen buffers (GL's origin is bottom-left: `Flipped180`, as the nested window uses).
pub fn screenshot_with<R, T>(
    renderer: &mut R,
    desk: &Desktop,
    transform: Transform,
) -> Result<Screenshot, String>
where
    R: Renderer + ImportAll + ImportMem + Offscreen<T> + Bind<T> + ExportMem,
    R::TextureId: Texture + Clone + Send + 'static,
{
    struct Part {
        output: Output,
        x: usize,
        y: usize,
        size: smithay::utils::Size<i32, smithay::utils::Physical>,
        scale: f64,
    }
    let mut parts = Vec::new();
    let (mut cw, mut ch) = (0usize, 0usize);
    let origin = desk
        .output_rects()
        .into_iter()
        .reduce(|a, b| a.merge(b))
        .ok_or("there is no output to capture")?
        .loc;
    for output in desk.space.outputs() {
        let Some(geo) = desk.space.output_geometry(output) else {
            continue;
        };
        let scale = output.current_scale().fractional_scale();
        let size = geo.size.to_f64().to_physical(scale).to_i32_round::<i32>();
        let at = (geo.loc - origin)
            .to_f64()
            .to_physical(scale)
            .to_i32_round::<i32>();
        let (x, y) = (at.x.max(0) as usize, at.y.max(0) as usize);
        cw = cw.max(x + size.w as usize);
        ch = ch.max(y + size.h as usize);
        parts.push(Part {
            output: output.clone(),
            x,
            y,
            size,
            scale,
        });
    }
    let mut canvas = vec![0u8; cw * ch * 4];
    for part in parts {
        let buffer_size = (part.size.w, part.size.h).into();
        let mut buffer = renderer
            .create_buffer(Fourcc::Abgr8888, buffer_size)
            .map_err(|e| format!("cannot allocate a capture buffer: {e:?}"))?;
        let mut fb = renderer
            .bind(&mut buffer)
            .map_err(|e| format!("cannot bind the capture buffer: {e:?}"))?;
        let clear = desk.config.appearance.background.to_f32();
        let mut rendered = Err(String::new());
        // A client whose buffer faults while drawn is disconnected by that access; the second
        // attempt composes without it.
        for _ in 0..2 {
            let elements = output_elements(desk, renderer, &part.output, desk.pointer_seen);
            let mut tracker = OutputDamageTracker::new(part.size, part.scale, transform);
            rendered = tracker
                .render_output(renderer, &mut fb, 0, &elements, clear)
                .map(|_| ())
                .map_err(|e| format!("rendering the capture failed: {e:?}"));
            if rendered.is_ok() {
                break;
            }
        }
        rendered?;
        let mapping = renderer
            .copy_framebuffer(&fb, Rectangle::from_size(buffer_size), Fourcc::Abgr8888)
            .map_err(|e| format!("cannot read back the capture: {e:?}"))?;
        let flipped = mapping.flipped();
        let data = renderer
            .map_texture(&mapping)
            .map_err(|e| format!("cannot map the capture: {e:?}"))?;
        let (w, h) = (part.size.w as usize, part.size.h as usize);
        let stride = data.len() / h.max(1);
        for y in 0..h {
            let src_y = if flipped { h - 1 - y } else { y };
            let n = w * 4;
            let src = &data[src_y * stride..][..n];
            canvas[((part.y + y) * cw + part.x) * 4..][..n].copy_from_slice(src);
        }
    }
    Ok(Screenshot {
        width: cw as u32,
        height: ch as u32,
        rgba: canvas,
    })
}

/// After an output was composed: frame callbacks and presentation feedback for everything
/// shown on it.
pub fn post_render(desk: &mut Desktop, output: &Output, refresh: Duration) {
    let time = desk.clock.now();
    let elapsed = desk.elapsed();
    let on_output = |_: &_, _: &_| Some(output.clone());
    let mut feedback = OutputPresentationFeedback::new(output);
    for window in desk.space.elements() {
        if desk.space.outputs_for_element(window).contains(output) {
            window.send_frame(output, elapsed, Some(Duration::ZERO), on_output);
            window.take_presentation_feedback(&mut feedback, on_output, |_, _| {
                wp_presentation_feedback::Kind::empty()
            });
        }
    }
    // Windows not yet mapped still need frame callbacks to make progress.
    for window in &desk.pending_windows {
        window.send_frame(output, elapsed, Some(Duration::ZERO), on_output);
    }
    let map = layer_map_for_output(output);
    for layer in map.layers() {
        layer.send_frame(output, elapsed, Some(Duration::ZERO), on_output);
    }
    drop(map);
    if let Some(lock) = desk.lock.surface_for(output) {
        send_frames_surface_tree(
            lock.wl_surface(),
            output,
            elapsed,
            Some(Duration::ZERO),
            on_output,
        );
    }
    if let CursorImageStatus::Surface(s) = &desk.cursor_status {
        send_frames_surface_tree(s, output, elapsed, Some(Duration::ZERO), on_output);
    }
    desk.frame_seq += 1;
    feedback.presented(
        time,
        Refresh::Fixed(refresh),
        desk.frame_seq,
        wp_presentation_feedback::Kind::Vsync,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn auto_prefers_the_desktop_then_the_vt_then_headless() {
        let none = AutoEnv::default();
        let r = |env: AutoEnv| BackendKind::Auto.resolve_in(env);
        assert_eq!(r(none), BackendKind::Headless);
        let wl = AutoEnv {
            wayland_display: true,
            ..none
        };
        assert_eq!(r(wl), BackendKind::Winit);
        let x = AutoEnv {
            x11_display: true,
            ..none
        };
        assert_eq!(r(x), BackendKind::Winit);
        let vt = AutoEnv {
            stdin_is_vt: true,
            ..none
        };
        assert_eq!(r(vt), BackendKind::Drm);
        let tty = AutoEnv {
            session_type_tty: true,
            ..none
        };
        assert_eq!(r(tty), BackendKind::Drm);
        // A desktop wins over the VT (a nested start from a terminal in a desktop on a VT).
        let both = AutoEnv {
            wayland_display: true,
            stdin_is_vt: true,
            session_type_tty: true,
            ..none
        };
        assert_eq!(r(both), BackendKind::Winit);
    }

    #[test]
    fn explicit_choices_are_kept() {
        let vt = AutoEnv {
            stdin_is_vt: true,
            session_type_tty: true,
            ..AutoEnv::default()
        };
        for k in [BackendKind::Headless, BackendKind::Winit, BackendKind::Drm] {
            assert_eq!(k.resolve_in(vt), k);
            assert_eq!(k.resolve_in(AutoEnv::default()), k);
        }
    }

    #[test]
    fn vt_paths() {
        assert!(is_vt_path(Path::new("/dev/tty1")));
        assert!(is_vt_path(Path::new("/dev/tty12")));
        assert!(!is_vt_path(Path::new("/dev/tty")));
        assert!(!is_vt_path(Path::new("/dev/ttyS0")));
        assert!(!is_vt_path(Path::new("/dev/pts/3")));
        assert!(!is_vt_path(Path::new("/dev/null")));
    }
}
