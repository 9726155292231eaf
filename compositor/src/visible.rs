//! Large shm buffers are uploaded only where they are seen.
//!
//! The renderer's own import copies a whole shm buffer into a texture of the buffer's size:
//! a VM's 16384×16384 buffer would become a 1 GiB texture (or fail the import and vanish),
//! however little of it is on screen. Buffers over [`FULL_UPLOAD_MAX_PIXELS`] or
//! [`FULL_UPLOAD_MAX_SIDE`] instead get, per output, a copy of only the part inside the
//! window's clip and the output. That part is bounded by the output's size; where a viewport
//! scales a huge source down into it, the copy samples every k-th pixel so that it stays
//! under [`FULL_UPLOAD_MAX_PIXELS`] too. The buffer's bytes are guest data: every row is
//! bounds-checked against the pool before it is read.

use std::cell::{Cell, RefCell};

use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::element::memory::{
    MemoryRenderBuffer, MemoryRenderBufferRenderElement,
};
use smithay::backend::renderer::element::Kind;
use smithay::backend::renderer::utils::{CommitCounter, RendererSurfaceStateUserData};
use smithay::backend::renderer::{ImportMem, Renderer};
use smithay::utils::{Buffer, Logical, Physical, Point, Rectangle, Scale, Size, Transform};
use smithay::wayland::compositor::SurfaceData;
use smithay::wayland::shm::{self, BufferData};

/// Buffers with more pixels than this are uploaded only where visible (a 4096×4096 buffer
/// is a 64 MiB texture).
pub const FULL_UPLOAD_MAX_PIXELS: i64 = 4096 * 4096;
/// Buffers wider or taller than this are uploaded only where visible (some GPUs cannot make
/// textures larger than 8192 on a side).
pub const FULL_UPLOAD_MAX_SIDE: i32 = 8192;
/// Outputs one surface keeps a visible copy for.
const SLOTS: usize = 4;
const BPP: usize = 4;

/// Whether a shm buffer of `size` is drawn through this module.
pub fn is_large(size: Size<i32, Buffer>) -> bool {
    i64::from(size.w) * i64::from(size.h) > FULL_UPLOAD_MAX_PIXELS
        || size.w > FULL_UPLOAD_MAX_SIDE
        || size.h > FULL_UPLOAD_MAX_SIDE
}

/// Whether `states` holds a large shm buffer (see [`is_large`]).
pub fn holds_large_shm(states: &SurfaceData) -> bool {
    let Some(data) = states.data_map.get::<RendererSurfaceStateUserData>() else {
        return false;
    };
    let Ok(data) = data.lock() else {
        return false;
    };
    let Some(buffer) = data.buffer() else {
        return false;
    };
    shm::with_buffer_contents(buffer, |_, _, d| is_large((d.width, d.height).into()))
        .unwrap_or(false)
}

/// What a slot's copy was made from.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Key {
    commit: CommitCounter,
    /// The copied rectangle of the client's buffer, and the sampling step.
    rect: Rectangle<i32, Buffer>,
    step: i32,
    format: Fourcc,
    /// The buffer's transform, which the copy is drawn with.
    transform: Transform,
}

struct Slot {
    output: String,
    /// What the copy holds; `None` before the first copy.
    key: Option<Key>,
    buffer: MemoryRenderBuffer,
}

/// The visible copies of one surface, one per output, in its data map.
#[derive(Default)]
struct Slots {
    slots: RefCell<Vec<Slot>>,
    announced: Cell<bool>,
}

/// Where a surface is drawn and what may be seen of it.
pub struct Placement<'a> {
    /// The output's name (each output keeps its own copy).
    pub output: &'a str,
    /// The output's origin in the global space and its scale.
    pub output_origin: Point<i32, Logical>,
    pub scale: Scale<f64>,
    /// The surface's position on the output, physical (as the surface tree walk gives it).
    pub location: Point<f64, Physical>,
    /// What may be drawn, in global logical coordinates (the window's content ∩ the output).
    pub clip: Rectangle<i32, Logical>,
}

/// The part of a buffer to copy, in buffer pixels, and how to draw it.
#[derive(Debug, PartialEq)]
struct Plan {
    /// Copied from the client's buffer, every `step`-th pixel in both directions.
    rect: Rectangle<i32, Buffer>,
    step: i32,
    /// The copy's size in pixels.
    copy: Size<i32, Buffer>,
    /// The part of the copy to draw, in the copy's logical space (scale 1, the buffer's
    /// transform).
    src: Rectangle<f64, Logical>,
    /// Where it goes relative to the surface's origin, logical.
    dst: Rectangle<f64, Logical>,
}

/// Which part of a `dims` buffer (scale `buffer_scale`, `transform`) shown through `view_src`
/// → `view_dst` is seen through `visible` (surface-local logical coordinates).
fn plan(
    dims: Size<i32, Buffer>,
    buffer_scale: i32,
    transform: Transform,
    view_src: Rectangle<f64, Logical>,
    view_dst: Size<i32, Logical>,
    visible: Rectangle<f64, Logical>,
) -> Option<Plan> {
    if view_dst.w <= 0 || view_dst.h <= 0 || buffer_scale <= 0 {
        return None;
    }
    let dst = visible.intersection(Rectangle::from_size(view_dst.to_f64()))?;
    let (sx, sy) = (
        view_src.size.w / f64::from(view_dst.w),
        view_src.size.h / f64::from(view_dst.h),
    );
    let src = Rectangle::<f64, Logical>::new(
        (
            view_src.loc.x + dst.loc.x * sx,
            view_src.loc.y + dst.loc.y * sy,
        )
            .into(),
        (dst.size.w * sx, dst.size.h * sy).into(),
    );
    let area = dims.to_logical(buffer_scale, transform).to_f64();
    let in_buffer = src.to_buffer(f64::from(buffer_scale), transform, &area);
    let rect = in_buffer
        .to_i32_up::<i32>()
        .intersection(Rectangle::from_size(dims))?;
    if rect.size.w <= 0 || rect.size.h <= 0 {
        return None;
    }
    // Sampling step: the copy stays under the full-upload limit however a viewport scales.
    let pixels = i64::from(rect.size.w) * i64::from(rect.size.h);
    let mut step = 1i32;
    while pixels / i64::from(step).pow(2) > FULL_UPLOAD_MAX_PIXELS {
        step += 1;
    }
    let copy = Size::<i32, Buffer>::from((
        (rect.size.w + step - 1) / step,
        (rect.size.h + step - 1) / step,
    ));
    let k = f64::from(step);
    let rel = Rectangle::<f64, Buffer>::new(
        (
            (in_buffer.loc.x - f64::from(rect.loc.x)).max(0.0) / k,
            (in_buffer.loc.y - f64::from(rect.loc.y)).max(0.0) / k,
        )
            .into(),
        (
            in_buffer.size.w.min(f64::from(rect.size.w)) / k,
            in_buffer.size.h.min(f64::from(rect.size.h)) / k,
        )
            .into(),
    );
    let src = rel.to_logical(1.0, transform, &copy.to_f64());
    Some(Plan {
        rect,
        step,
        copy,
        src,
        dst,
    })
}

/// Copies `rect` of a shm buffer (every `step`-th pixel) into `out`, `copy.w * BPP` bytes per
/// row. Rows outside the pool are left as they were and reported.
fn copy_rect(
    pool: &[u8],
    data: &BufferData,
    rect: Rectangle<i32, Buffer>,
    step: i32,
    copy: Size<i32, Buffer>,
    out: &mut [u8],
) -> Result<(), &'static str> {
    let (Ok(stride), Ok(offset)) = (usize::try_from(data.stride), usize::try_from(data.offset))
    else {
        return Err("negative stride or offset");
    };
    let (cw, ch) = (
        usize::try_from(copy.w).map_err(|_| "bad size")?,
        usize::try_from(copy.h).map_err(|_| "bad size")?,
    );
    let (x0, y0, step) = (
        usize::try_from(rect.loc.x).map_err(|_| "bad rectangle")?,
        usize::try_from(rect.loc.y).map_err(|_| "bad rectangle")?,
        usize::try_from(step).map_err(|_| "bad step")?,
    );
    let row_out = cw * BPP;
    if out.len() < row_out * ch {
        return Err("copy buffer too small");
    }
    for (row, dst) in out.chunks_exact_mut(row_out).take(ch).enumerate() {
        let y = y0 + row * step;
        let start = offset + y * stride + x0 * BPP;
        if step == 1 {
            let src = pool
                .get(start..start + row_out)
                .ok_or("row outside the pool")?;
            dst.copy_from_slice(src);
        } else {
            for (col, px) in dst.chunks_exact_mut(BPP).enumerate() {
                let at = start + col * step * BPP;
                let src = pool.get(at..at + BPP).ok_or("pixel outside the pool")?;
                px.copy_from_slice(src);
            }
        }
    }
    Ok(())
}

fn supported(format: Fourcc) -> bool {
    matches!(
        format,
        Fourcc::Argb8888 | Fourcc::Xrgb8888 | Fourcc::Abgr8888 | Fourcc::Xbgr8888
    )
}

/// The element showing what is visible of a surface with a large shm buffer, or `None` when
/// nothing of it is visible (or it cannot be read: then it is not drawn at all).
pub fn element<R>(
    renderer: &mut R,
    states: &SurfaceData,
    at: &Placement<'_>,
) -> Option<MemoryRenderBufferRenderElement<R>>
where
    R: Renderer + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    let state = states.data_map.get::<RendererSurfaceStateUserData>()?;
    let (buffer, view, commit, buffer_scale, transform) = {
        let s = state.lock().ok()?;
        (
            s.buffer()?.clone(),
            s.view()?,
            s.current_commit(),
            s.buffer_scale(),
            s.buffer_transform(),
        )
    };
    states.data_map.insert_if_missing(Slots::default);
    let slots = states.data_map.get::<Slots>()?;

    let origin = at.output_origin.to_f64() + at.location.to_logical(at.scale);
    let visible =
        Rectangle::<f64, Logical>::new(at.clip.loc.to_f64() - origin, at.clip.size.to_f64());
    let copied = shm::with_buffer_contents(&buffer, |ptr, len, data| {
        let format = shm::shm_format_to_fourcc(data.format).filter(|f| supported(*f))?;
        let dims = Size::<i32, Buffer>::from((data.width, data.height));
        if !slots.announced.replace(true) {
            tracing::info!(
                "a {}×{} buffer: uploading only what is visible of it",
                dims.w,
                dims.h
            );
        }
        let plan = plan(dims, buffer_scale, transform, view.src, view.dst, visible)?;
        let key = Key {
            commit,
            rect: plan.rect,
            step: plan.step,
            format,
            transform,
        };
        let mut slots = slots.slots.borrow_mut();
        let index = match slots.iter().position(|s| s.output == at.output) {
            Some(i) => i,
            None => {
                if slots.len() >= SLOTS {
                    slots.remove(0);
                }
                slots.push(Slot {
                    output: at.output.to_owned(),
                    key: None,
                    buffer: MemoryRenderBuffer::new(format, plan.copy, 1, transform, None),
                });
                slots.len() - 1
            }
        };
        let slot = &mut slots[index];
        if slot.key != Some(key) {
            let same_shape = slot.key.is_some_and(|k| {
                k.rect.size == key.rect.size
                    && k.step == key.step
                    && k.format == key.format
                    && k.transform == key.transform
            });
            if slot.key.is_some() && !same_shape {
                slot.buffer = MemoryRenderBuffer::new(format, plan.copy, 1, transform, None);
            }
            // SAFETY: `with_buffer_contents` hands out the pool's mapping, valid for `len`
            // bytes for the duration of this closure (smithay guards it against SIGBUS from
            // a client shrinking its file).
            let pool = unsafe { std::slice::from_raw_parts(ptr, len) };
            let opaque = matches!(format, Fourcc::Xrgb8888 | Fourcc::Xbgr8888)
                .then(|| vec![Rectangle::from_size(plan.copy)]);
            let mut ctx = slot.buffer.render();
            let drawn = ctx.draw(|mem| {
                copy_rect(pool, &data, plan.rect, plan.step, plan.copy, mem)
                    .map(|()| vec![Rectangle::from_size(plan.copy)])
            });
            ctx.update_opaque_regions(opaque);
            drop(ctx);
            if let Err(e) = drawn {
                tracing::warn!("a large shm buffer could not be read ({e}); not drawn");
                slot.key = None;
                return None;
            }
            slot.key = Some(key);
        }
        Some((slot.buffer.clone(), plan))
    })
    .ok()??;
    let (buffer, plan) = copied;
    let location = at.location + plan.dst.loc.to_physical(at.scale);
    let size = plan.dst.size.to_i32_round();
    MemoryRenderBufferRenderElement::from_buffer(
        renderer,
        location,
        &buffer,
        None,
        Some(plan.src),
        Some(size),
        Kind::Unspecified,
    )
    .map_err(|_| tracing::warn!("could not upload the visible part of a large buffer"))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: f64, y: f64, w: f64, h: f64) -> Rectangle<f64, Logical> {
        Rectangle::new((x, y).into(), (w, h).into())
    }

    #[test]
    fn only_the_visible_part_of_a_huge_buffer_is_planned() {
        let dims = Size::from((16384, 16384));
        let p = plan(
            dims,
            1,
            Transform::Normal,
            r(0.0, 0.0, 16384.0, 16384.0),
            (16384, 16384).into(),
            r(-100.0, 50.0, 1280.0, 800.0),
        )
        .expect("visible");
        assert_eq!(p.rect, Rectangle::new((0, 50).into(), (1180, 800).into()));
        assert_eq!(p.step, 1);
        assert_eq!(p.copy, Size::from((1180, 800)));
        assert_eq!(p.dst, r(0.0, 50.0, 1180.0, 800.0));
        assert_eq!(p.src, r(0.0, 0.0, 1180.0, 800.0));
    }

    #[test]
    fn a_buffer_scale_maps_to_buffer_pixels() {
        let p = plan(
            Size::from((20000, 200)),
            2,
            Transform::Normal,
            r(0.0, 0.0, 10000.0, 100.0),
            (10000, 100).into(),
            r(10.0, 10.0, 100.0, 20.0),
        )
        .expect("visible");
        assert_eq!(p.rect, Rectangle::new((20, 20).into(), (200, 40).into()));
        assert_eq!(p.dst, r(10.0, 10.0, 100.0, 20.0));
        assert_eq!(p.src, r(0.0, 0.0, 200.0, 40.0));
    }

    #[test]
    fn a_viewport_scaling_a_huge_source_down_is_sampled_under_the_limit() {
        let p = plan(
            Size::from((16384, 16384)),
            1,
            Transform::Normal,
            r(0.0, 0.0, 16384.0, 16384.0),
            (100, 100).into(),
            r(0.0, 0.0, 100.0, 100.0),
        )
        .expect("visible");
        assert_eq!(p.rect, Rectangle::from_size((16384, 16384).into()));
        assert!(p.step > 1);
        assert!(
            i64::from(p.copy.w) * i64::from(p.copy.h) <= FULL_UPLOAD_MAX_PIXELS,
            "{p:?}"
        );
    }

    #[test]
    fn nothing_visible_plans_nothing() {
        assert_eq!(
            plan(
                Size::from((16384, 16384)),
                1,
                Transform::Normal,
                r(0.0, 0.0, 16384.0, 16384.0),
                (16384, 16384).into(),
                r(-2000.0, -2000.0, 100.0, 100.0),
            ),
            None
        );
    }

    /// A 4×4 ARGB buffer at the start of its pool.
    fn argb_4x4() -> BufferData {
        BufferData {
            offset: 0,
            width: 4,
            height: 4,
            stride: 16,
            format: smithay::reexports::wayland_server::protocol::wl_shm::Format::Argb8888,
        }
    }

    #[test]
    fn rows_outside_the_pool_are_refused_not_read() {
        let data = argb_4x4();
        let pool = vec![7u8; 16 * 3];
        let mut out = vec![0u8; 16 * 4];
        let rect = Rectangle::from_size((4, 4).into());
        assert!(copy_rect(&pool, &data, rect, 1, (4, 4).into(), &mut out).is_err());
        let rect = Rectangle::from_size((4, 3).into());
        copy_rect(&pool, &data, rect, 1, (4, 3).into(), &mut out).expect("inside");
        assert!(out[..48].iter().all(|b| *b == 7));
    }

    #[test]
    fn sampling_takes_every_kth_pixel() {
        let data = argb_4x4();
        let pool: Vec<u8> = (0..16u8).flat_map(|i| [i; 4]).collect();
        let mut out = vec![0u8; 2 * 2 * 4];
        copy_rect(
            &pool,
            &data,
            Rectangle::from_size((4, 4).into()),
            2,
            (2, 2).into(),
            &mut out,
        )
        .expect("inside");
        let firsts: Vec<u8> = out.chunks(4).map(|p| p[0]).collect();
        assert_eq!(firsts, [0, 2, 8, 10]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Whatever a client sets (buffer size, scale, transform, viewport) and wherever its
        /// window is, a plan stays inside the buffer and its copy under the full-upload limit.
        #[test]
        fn plans_stay_inside_the_buffer_and_under_the_limit(
            w in 1i32..40_000, h in 1i32..40_000, scale in 1i32..4, t in 0usize..8,
            sx in -100.0f64..40_000.0, sy in -100.0f64..40_000.0,
            sw in 0.0f64..40_000.0, sh in 0.0f64..40_000.0,
            dw in 1i32..20_000, dh in 1i32..20_000,
            vx in -20_000.0f64..20_000.0, vy in -20_000.0f64..20_000.0,
        ) {
            let transforms = [
                Transform::Normal, Transform::_90, Transform::_180, Transform::_270,
                Transform::Flipped, Transform::Flipped90, Transform::Flipped180, Transform::Flipped270,
            ];
            let dims = Size::from((w, h));
            if let Some(p) = plan(dims, scale, transforms[t], r(sx, sy, sw, sh), (dw, dh).into(), r(vx, vy, 1920.0, 1080.0)) {
                proptest::prop_assert!(Rectangle::from_size(dims).contains_rect(p.rect), "{:?}", p);
                proptest::prop_assert!(i64::from(p.copy.w) * i64::from(p.copy.h) <= FULL_UPLOAD_MAX_PIXELS, "{:?}", p);
                proptest::prop_assert!(p.copy.w >= 1 && p.copy.h >= 1, "{:?}", p);
            }
        }
    }
}
