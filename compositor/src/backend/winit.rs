//! The nested backend: Bulkhead in a window of an existing Wayland or X11 desktop, rendered
//! with GLES. For trying Bulkhead out and for the demo.

use std::time::Duration;

use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::gles::GlesRenderer;
use smithay::backend::winit::{self, WinitEvent, WinitGraphicsBackend};
use smithay::output::{Mode, Output, PhysicalProperties, Subpixel};
use smithay::utils::Transform;

use crate::backend::post_render;
use crate::render::output_elements;
use crate::state::{Desktop, State};

pub struct Winit {
    backend: WinitGraphicsBackend<GlesRenderer>,
    output: Output,
    damage: OutputDamageTracker,
}

const REFRESH_MHZ: i32 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum WinitError {
    #[error(
        "cannot open a window in the current desktop (is WAYLAND_DISPLAY or DISPLAY right?): {0}"
    )]
    Init(String),
    #[error("cannot add the window's events to the event loop: {0}")]
    EventLoop(String),
}

impl Winit {
    pub fn new(desk: &mut Desktop) -> Result<Winit, WinitError> {
        let (backend, events) =
            winit::init::<GlesRenderer>().map_err(|e| WinitError::Init(e.to_string()))?;
        backend.window().set_title("Bulkhead");
        backend.window().set_cursor_visible(false);
        let mode = Mode {
            size: backend.window_size(),
            refresh: REFRESH_MHZ,
        };
        let output = Output::new(
            "WINIT-1".into(),
            PhysicalProperties {
                size: (0, 0).into(),
                subpixel: Subpixel::Unknown,
                make: "Bulkhead".into(),
                model: "Nested".into(),
            },
        );
        output.create_global::<State>(&desk.display_handle);
        output.change_current_state(
            Some(mode),
            Some(Transform::Flipped180),
            None,
            Some((0, 0).into()),
        );
        output.set_preferred(mode);
        desk.space.map_output(&output, (0, 0));
        let damage = OutputDamageTracker::from_output(&output);
        desk.loop_handle
            .insert_source(events, |event, _, state: &mut State| match event {
                WinitEvent::Resized { size, .. } => {
                    if let crate::backend::Backend::Winit(w) = &mut state.backend {
                        w.output.change_current_state(
                            Some(Mode {
                                size,
                                refresh: REFRESH_MHZ,
                            }),
                            None,
                            None,
                            None,
                        );
                    }
                    state.desk.request_redraw();
                }
                WinitEvent::Input(event) => state.process_input_event(event),
                WinitEvent::Redraw => state.render(),
                WinitEvent::CloseRequested => state.desk.loop_signal.stop(),
                WinitEvent::Focus(_) => {}
            })
            .map_err(|e| WinitError::EventLoop(e.to_string()))?;
        Ok(Winit {
            backend,
            output,
            damage,
        })
    }

    pub fn output(&self) -> &Output {
        &self.output
    }

    pub fn renderer(&mut self) -> &mut GlesRenderer {
        self.backend.renderer()
    }

    pub fn render(&mut self, desk: &mut Desktop) {
        let age = self.backend.buffer_age().unwrap_or(0);
        let clear = desk.config.appearance.background.to_f32();
        let damage = match self.backend.bind() {
            Ok((renderer, mut fb)) => {
                let elements = output_elements(desk, renderer, &self.output, true);
                match self
                    .damage
                    .render_output(renderer, &mut fb, age, &elements, clear)
                {
                    Ok(r) => {
                        if r.damage.is_some_and(|d| !d.is_empty()) {
                            desk.frames_composed += 1;
                        }
                        r.damage.cloned()
                    }
                    Err(e) => {
                        tracing::error!("rendering failed: {e:?}");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::error!("cannot bind the window: {e}");
                None
            }
        };
        if let Some(damage) = damage {
            if let Err(e) = self.backend.submit(Some(&damage)) {
                tracing::error!("cannot present the frame: {e}");
            }
        }
        post_render(
            desk,
            &self.output,
            Duration::from_micros(1_000_000_000 / REFRESH_MHZ as u64),
        );
        desk.dirty = false;
        self.backend.window().request_redraw();
    }
}
