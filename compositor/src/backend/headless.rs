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

use crate::backend::post_render;
use crate::render::output_elements;
use crate::state::{Desktop, State};

struct HeadlessOutput {
    output: Output,
    image: pixman::Image<'static, 'static>,
    damage: OutputDamageTracker,
    /// Age of `image` as a buffer: 0 before the first frame, then 1 (always the same image).
    age: usize,
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
        Ok(Headless {
            renderer,
            outputs,
            refresh,
        })
    }

    pub fn renderer(&mut self) -> &mut PixmanRenderer {
        &mut self.renderer
    }

    /// Composes every output (the damage tracker makes unchanged frames cheap) and answers
    /// frame callbacks.
    pub fn render(&mut self, desk: &mut Desktop) {
        let clear = desk.config.appearance.background.to_f32();
        for out in &mut self.outputs {
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
