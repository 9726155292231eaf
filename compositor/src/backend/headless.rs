//! The headless backend: pixman renders each output into an image in memory at the
//! configured refresh rate. Tests, screenshots and benchmarks run on it.

use std::time::Duration;

use bulkhead_config::HeadlessConfig;
use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::pixman::PixmanRenderer;
use smithay::backend::renderer::{Bind, Offscreen};
use smithay::output::{Mode, Output, PhysicalProperties, Scale, Subpixel};
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::pixman;
use smithay::utils::Transform;

use crate::backend::{check_output_changes, post_render, OutputChange};
use crate::render::output_elements;
use crate::state::{Desktop, State};

struct HeadlessOutput {
    output: Output,
    image: pixman::Image<'static, 'static>,
    damage: OutputDamageTracker,
    /// Age of `image` as a buffer: 0 before the first frame, then 1 (always the same image).
    age: usize,
    /// Shown (mapped into the space) or turned off.
    enabled: bool,
}

pub struct Headless {
    renderer: PixmanRenderer,
    outputs: Vec<HeadlessOutput>,
    refresh: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    #[error("cannot create the pixman renderer: {0}")]
    Renderer(String),
    #[error("cannot allocate a {0}x{1} output image")]
    Image(i32, i32),
    #[error("cannot add the frame timer to the event loop: {0}")]
    Timer(String),
    #[error("the [[output]] settings cannot be applied: {0}")]
    Outputs(String),
}

impl Headless {
    /// Creates the configured outputs, left to right, and starts the frame clock.
    pub fn new(desk: &mut Desktop, cfg: &HeadlessConfig) -> Result<Headless, HeadlessError> {
        let mut renderer =
            PixmanRenderer::new().map_err(|e| HeadlessError::Renderer(e.to_string()))?;
        let refresh_mhz = (cfg.refresh * 1000) as i32;
        let mut outputs = Vec::new();
        let mut x = 0;
        for i in 0..cfg.outputs {
            let output = Output::new(
                format!("HEADLESS-{}", i + 1),
                PhysicalProperties {
                    size: (0, 0).into(),
                    subpixel: Subpixel::Unknown,
                    make: "Bulkhead".into(),
                    model: "Headless".into(),
                },
            );
            let mode = Mode {
                size: (cfg.width, cfg.height).into(),
                refresh: refresh_mhz,
            };
            output.create_global::<State>(&desk.display_handle);
            output.change_current_state(
                Some(mode),
                Some(Transform::Normal),
                Some(Scale::Fractional(cfg.scale)),
                Some((x, 0).into()),
            );
            output.set_preferred(mode);
            desk.space.map_output(&output, (x, 0));
            x += (cfg.width as f64 / cfg.scale).round() as i32;
            let image = renderer
                .create_buffer(Fourcc::Argb8888, (cfg.width, cfg.height).into())
                .map_err(|_| HeadlessError::Image(cfg.width, cfg.height))?;
            let damage = OutputDamageTracker::from_output(&output);
            outputs.push(HeadlessOutput {
                output,
                image,
                damage,
                age: 0,
                enabled: true,
            });
        }
        let refresh = Duration::from_nanos(1_000_000_000 / cfg.refresh.max(1) as u64);
        desk.loop_handle
            .insert_source(
                Timer::from_duration(refresh),
                move |_, _, state: &mut State| {
                    state.render();
                    TimeoutAction::ToDuration(refresh)
                },
            )
            .map_err(|e| HeadlessError::Timer(e.to_string()))?;
        let mut headless = Headless {
            renderer,
            outputs,
            refresh,
        };
        // `[[output]]` blocks naming HEADLESS-N apply as they would to a monitor.
        let changes: Vec<_> = desk
            .config
            .outputs
            .iter()
            .filter(|c| headless.outputs.iter().any(|o| o.output.name() == c.name))
            .map(|c| {
                (
                    c.name.clone(),
                    c.enable.then(|| OutputChange::from_config(c)),
                )
            })
            .collect();
        if !changes.is_empty() {
            headless
                .apply(desk, &changes, false)
                .map_err(HeadlessError::Outputs)?;
        }
        Ok(headless)
    }

    /// The outputs with whether each is on.
    pub fn outputs(&self) -> impl Iterator<Item = (&Output, bool)> {
        self.outputs.iter().map(|o| (&o.output, o.enabled))
    }

    /// Tests or applies output changes: an output off leaves the space, a new mode gets a new
    /// image, scale/transform/position change the output's state.
    pub fn apply(
        &mut self,
        desk: &mut Desktop,
        changes: &[(String, Option<OutputChange>)],
        test_only: bool,
    ) -> Result<(), String> {
        let names: Vec<_> = self
            .outputs
            .iter()
            .map(|o| (o.output.name(), o.enabled))
            .collect();
        check_output_changes(&names, changes)?;
        if test_only {
            return Ok(());
        }
        for (name, change) in changes {
            let Some(out) = self.outputs.iter_mut().find(|o| &o.output.name() == name) else {
                continue;
            };
            let Some(c) = change else {
                desk.space.unmap_output(&out.output);
                out.enabled = false;
                continue;
            };
            if let Some((w, h, refresh)) = c.mode {
                let current = out.output.current_mode();
                let refresh = if refresh > 0 {
                    refresh
                } else {
                    current.map_or(60_000, |m| m.refresh)
                };
                let mode = Mode {
                    size: (w, h).into(),
                    refresh,
                };
                if current.map(|m| m.size) != Some(mode.size) {
                    out.image = self
                        .renderer
                        .create_buffer(Fourcc::Argb8888, (w, h).into())
                        .map_err(|_| format!("{name}: cannot allocate a {w}x{h} image"))?;
                }
                out.output.add_mode(mode);
                out.output
                    .change_current_state(Some(mode), None, None, None);
            }
            if let Some(t) = c.transform {
                out.output.change_current_state(None, Some(t), None, None);
            }
            if let Some(s) = c.scale {
                out.output
                    .change_current_state(None, None, Some(Scale::Fractional(s)), None);
            }
            let pos = c
                .position
                .map(|(x, y)| (x, y).into())
                .or_else(|| desk.space.output_geometry(&out.output).map(|g| g.loc))
                .unwrap_or_default();
            out.output.change_current_state(None, None, None, Some(pos));
            desk.space.map_output(&out.output, pos);
            out.enabled = true;
            out.damage = OutputDamageTracker::from_output(&out.output);
            out.age = 0;
        }
        Ok(())
    }

    pub fn renderer(&mut self) -> &mut PixmanRenderer {
        &mut self.renderer
    }

    /// Composes every output (the damage tracker makes unchanged frames cheap) and answers
    /// frame callbacks.
    pub fn render(&mut self, desk: &mut Desktop) {
        let clear = desk.config.appearance.background.to_f32();
        for out in self.outputs.iter_mut().filter(|o| o.enabled) {
            let elements =
                output_elements(desk, &mut self.renderer, &out.output, desk.pointer_seen);
            let result = match self.renderer.bind(&mut out.image) {
                Ok(mut fb) => out
                    .damage
                    .render_output(&mut self.renderer, &mut fb, out.age, &elements, clear)
                    .map(|r| r.damage.is_some_and(|d| !d.is_empty())),
                Err(e) => {
                    tracing::error!("cannot bind the headless output image: {e}");
                    continue;
                }
            };
            match result {
                Ok(true) => desk.frames_composed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!("rendering {} failed: {e:?}", out.output.name());
                    continue;
                }
            }
            out.age = 1;
            post_render(desk, &out.output, self.refresh);
        }
        desk.dirty = false;
    }
}

/// A compositor on the headless backend with no IPC, VMs or session (the wlcs plug-in and the
/// fuzz target): its event loop and state, ready to dispatch.
pub fn headless_state(
    config: bulkhead_config::Config,
) -> Result<
    (
        smithay::reexports::calloop::EventLoop<'static, State>,
        State,
    ),
    String,
> {
    let event_loop: smithay::reexports::calloop::EventLoop<'static, State> =
        smithay::reexports::calloop::EventLoop::try_new().map_err(|e| e.to_string())?;
    let display: smithay::reexports::wayland_server::Display<State> =
        smithay::reexports::wayland_server::Display::new().map_err(|e| e.to_string())?;
    let headless = config.headless.clone();
    let mut desk = crate::state::Desktop::new(
        config,
        display,
        event_loop.handle(),
        event_loop.get_signal(),
        "seat0",
    )
    .map_err(|e| e.to_string())?;
    let backend =
        super::Backend::Headless(Headless::new(&mut desk, &headless).map_err(|e| e.to_string())?);
    let state = State {
        backend,
        desk,
        ipc: None,
        vms: None,
    };
    Ok((event_loop, state))
}
