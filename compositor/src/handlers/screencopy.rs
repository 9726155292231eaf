//! wlr-screencopy for host tools (grim): an output, or a region of it, copied into a wl_shm
//! buffer the tool provides, with the same elements the screen shows (frames, notifications,
//! the launcher). Unsandboxed host clients only: a VM never sees the global, so it can never
//! read another domain's pixels.

use smithay::output::Output;
use smithay::reexports::wayland_protocols_wlr::screencopy::v1::server::{
    zwlr_screencopy_frame_v1::{self, ZwlrScreencopyFrameV1},
    zwlr_screencopy_manager_v1::{self, ZwlrScreencopyManagerV1},
};
use smithay::reexports::wayland_server::protocol::{wl_buffer::WlBuffer, wl_shm};
use smithay::reexports::wayland_server::{
    Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource,
};
use smithay::utils::{Physical, Rectangle};
use smithay::wayland::shm::with_buffer_contents_mut;

use crate::domain::is_privileged;
use crate::state::State;

/// Creates the global (host, unsandboxed clients only).
pub fn init(dh: &DisplayHandle) {
    dh.create_global::<State, ZwlrScreencopyManagerV1, ()>(3, ());
}

/// What a frame copies: a rectangle of an output, in the output's physical pixels.
pub struct FrameData {
    /// None: the output is gone (the frame failed at once).
    output: Option<Output>,
    region: Rectangle<i32, Physical>,
}

impl GlobalDispatch<ZwlrScreencopyManagerV1, ()> for State {
    fn bind(
        _: &mut State,
        _: &DisplayHandle,
        _: &Client,
        resource: New<ZwlrScreencopyManagerV1>,
        _: &(),
        init: &mut DataInit<'_, State>,
    ) {
        init.init(resource, ());
    }

    fn can_view(client: Client, _: &()) -> bool {
        is_privileged(&client)
    }
}

impl Dispatch<ZwlrScreencopyManagerV1, ()> for State {
    fn request(
        state: &mut State,
        _: &Client,
        _: &ZwlrScreencopyManagerV1,
        request: zwlr_screencopy_manager_v1::Request,
        _: &(),
        _: &DisplayHandle,
        init: &mut DataInit<'_, State>,
    ) {
        let (frame, output, region) = match request {
            zwlr_screencopy_manager_v1::Request::CaptureOutput { frame, output, .. } => {
                (frame, output, None)
            }
            zwlr_screencopy_manager_v1::Request::CaptureOutputRegion {
                frame,
                output,
                x,
                y,
                width,
                height,
                ..
            } => (frame, output, Some((x, y, width, height))),
            _ => return,
        };
        let Some(output) = Output::from_resource(&output) else {
            let f = init.init(
                frame,
                FrameData {
                    output: None,
                    region: Rectangle::default(),
                },
            );
            f.failed();
            return;
        };
        let scale = output.current_scale().fractional_scale();
        let full = state
            .desk
            .space
            .output_geometry(&output)
            .map(|g| g.size.to_f64().to_physical(scale).to_i32_round::<i32>())
            .unwrap_or_default();
        let full = Rectangle::from_size(full);
        let region = match region {
            None => Some(full),
            Some((x, y, w, h)) => {
                let logical = Rectangle::<i32, smithay::utils::Logical>::new(
                    (x, y).into(),
                    (w.max(0), h.max(0)).into(),
                );
                logical
                    .to_f64()
                    .to_physical(scale)
                    .to_i32_round::<i32>()
                    .intersection(full)
            }
        };
        let region = region.filter(|r| r.size.w > 0 && r.size.h > 0);
        let f = init.init(
            frame,
            FrameData {
                output: Some(output),
                region: region.unwrap_or_default(),
            },
        );
        let Some(r) = region else {
            f.failed();
            return;
        };
        f.buffer(
            wl_shm::Format::Xrgb8888,
            r.size.w as u32,
            r.size.h as u32,
            r.size.w as u32 * 4,
        );
        if f.version() >= 3 {
            f.buffer_done();
        }
    }
}

impl Dispatch<ZwlrScreencopyFrameV1, FrameData> for State {
    fn request(
        state: &mut State,
        _: &Client,
        frame: &ZwlrScreencopyFrameV1,
        request: zwlr_screencopy_frame_v1::Request,
        data: &FrameData,
        _: &DisplayHandle,
        _: &mut DataInit<'_, State>,
    ) {
        let buffer = match request {
            zwlr_screencopy_frame_v1::Request::Copy { buffer }
            | zwlr_screencopy_frame_v1::Request::CopyWithDamage { buffer } => buffer,
            _ => return,
        };
        match state.screencopy(data, &buffer) {
            Ok(()) => {
                let t = state.desk.clock.now();
                let t: std::time::Duration = t.into();
                frame.flags(zwlr_screencopy_frame_v1::Flags::empty());
                let secs = t.as_secs();
                frame.ready((secs >> 32) as u32, secs as u32, t.subsec_nanos());
            }
            Err(e) => {
                tracing::info!("screencopy failed: {e}");
                frame.failed();
            }
        }
    }
}

impl State {
    /// Renders the frame's output and copies its region into `buffer` (XRGB8888 shm of the
    /// announced size).
    fn screencopy(&mut self, data: &FrameData, buffer: &WlBuffer) -> Result<(), String> {
        let r = data.region;
        let output = data.output.as_ref().ok_or("the output is gone")?;
        let shot = self.backend.screenshot(&self.desk)?;
        // Where the output is in the screenshot canvas (outputs side by side, as placed).
        let origin = self
            .desk
            .output_rects()
            .into_iter()
            .reduce(|a, b| a.merge(b))
            .ok_or("there is no output")?
            .loc;
        let geo = self
            .desk
            .space
            .output_geometry(output)
            .ok_or("the output is gone")?;
        let scale = output.current_scale().fractional_scale();
        let at = (geo.loc - origin)
            .to_f64()
            .to_physical(scale)
            .to_i32_round::<i32>();
        let (x0, y0) = (
            (at.x + r.loc.x).max(0) as usize,
            (at.y + r.loc.y).max(0) as usize,
        );
        let (w, h) = (r.size.w as usize, r.size.h as usize);
        with_buffer_contents_mut(buffer, |ptr, len, b| {
            if b.format != wl_shm::Format::Xrgb8888 && b.format != wl_shm::Format::Argb8888
                || b.width as usize != w
                || b.height as usize != h
                || (b.stride as usize) < w * 4
            {
                return Err("the buffer does not match the announced one".to_string());
            }
            let (offset, stride) = (b.offset as usize, b.stride as usize);
            let end = offset
                .checked_add(stride.checked_mul(h).ok_or("buffer too large")?)
                .ok_or("buffer too large")?;
            if end > len {
                return Err("the buffer is larger than its pool".into());
            }
            // SAFETY: smithay hands us the pool's mapping of `len` bytes for the duration of
            // this closure; [offset, end) is inside it (checked above) and nothing else in the
            // compositor touches client pool memory meanwhile.
            let dst = unsafe { std::slice::from_raw_parts_mut(ptr.add(offset), end - offset) };
            for y in 0..h {
                let row = &mut dst[y * stride..y * stride + w * 4];
                for x in 0..w {
                    let (sx, sy) = (x0 + x, y0 + y);
                    let px = if sx < shot.width as usize && sy < shot.height as usize {
                        let i = (sy * shot.width as usize + sx) * 4;
                        [shot.rgba[i + 2], shot.rgba[i + 1], shot.rgba[i], 0xff]
                    } else {
                        [0, 0, 0, 0xff]
                    };
                    row[x * 4..x * 4 + 4].copy_from_slice(&px);
                }
            }
            Ok(())
        })
        .map_err(|e| format!("{e:?}"))?
    }
}
