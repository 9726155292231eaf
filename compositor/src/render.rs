//! What is drawn on an output, front to back. The rule this file exists to keep: every pixel
//! of a window's surface tree is cropped to the inside of the frame the compositor draws in
//! the window's domain colour; popups get a frame of their own and stay on their output;
//! a VM's cursor surface is capped in size and only drawn over that VM's own window.

use std::cell::RefCell;

use bulkhead_config::Color;
use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::element::memory::{
    MemoryRenderBuffer, MemoryRenderBufferRenderElement,
};
use smithay::backend::renderer::element::solid::{SolidColorBuffer, SolidColorRenderElement};
use smithay::backend::renderer::element::surface::WaylandSurfaceRenderElement;
use smithay::backend::renderer::element::utils::CropRenderElement;
use smithay::backend::renderer::element::{render_elements, Kind};
use smithay::backend::renderer::utils::RendererSurfaceStateUserData;
use smithay::backend::renderer::{ImportAll, ImportMem, Renderer};
use smithay::desktop::{layer_map_for_output, PopupManager, Window};
use smithay::input::pointer::{CursorImageStatus, CursorImageSurfaceData};
use smithay::output::Output;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::{Logical, Physical, Point, Rectangle, Scale, Transform};
use smithay::wayland::compositor::{
    with_states, with_surface_tree_downward, SurfaceData, TraversalAction,
};
use smithay::wayland::seat::WaylandFocus;
use smithay::wayland::shell::wlr_layer::Layer;

use crate::frame::FrameKind;
use crate::shell::{meta, title_and_app_id};
use crate::state::Desktop;
use crate::text;

render_elements! {
    /// One surface of a client's tree: imported by the renderer, or, for a large shm
    /// buffer, only its visible part (see [`crate::visible`]).
    pub TreeElement<R> where R: ImportAll + ImportMem;
    Surface=WaylandSurfaceRenderElement<R>,
    Visible=MemoryRenderBufferRenderElement<R>,
}

render_elements! {
    pub OutputElement<R> where R: ImportAll + ImportMem;
    Surface=TreeElement<R>,
    Cropped=CropRenderElement<TreeElement<R>>,
    Solid=SolidColorRenderElement,
    Memory=MemoryRenderBufferRenderElement<R>,
}

/// Largest cursor surface a client may show, in logical pixels from the hotspot's box.
pub const MAX_CURSOR: i32 = 64;
/// Width of the frame drawn around a VM's popups.
pub const POPUP_BORDER: i32 = 2;

/// Per-window render resources, kept in the window's user data so damage tracking sees
/// stable element ids.
#[derive(Default)]
struct FrameBuffers {
    borders: RefCell<[SolidColorBuffer; 3]>,
    title: RefCell<Option<(TitleKey, MemoryRenderBuffer)>>,
    /// The title bar right of [`TITLE_IMAGE_MAX`]: plain background.
    title_rest: RefCell<[SolidColorBuffer; 1]>,
}

/// Widest title bar drawn as an image; a wider bar (a window up to 16384 wide) goes on in
/// its background colour. A bar image as wide as the window failed to upload on GLES (16392
/// is over llvmpipe's texture limit, and 8192 is the limit of some GPUs), leaving a VM's
/// window with no title bar at all.
pub const TITLE_IMAGE_MAX: i32 = 4096;

#[derive(PartialEq, Clone)]
struct TitleKey {
    text: String,
    size: (i32, i32),
    bg: Color,
    focused: bool,
    /// Opened without focus: drawn inverted (domain-coloured text on the text colour).
    attention: bool,
}

/// Per-popup frame buffers (in the popup surface's data map).
#[derive(Default)]
struct PopupFrame(RefCell<[SolidColorBuffer; 4]>);

/// Context shared by the element builders of one output.
struct Ctx<'a> {
    desk: &'a Desktop,
    output_name: String,
    /// The window with keyboard focus, looked up once per output.
    focused: Option<Window>,
    output_geo: Rectangle<i32, Logical>,
    scale: Scale<f64>,
}

impl Ctx<'_> {
    fn to_phys(&self, global: Point<i32, Logical>) -> Point<i32, Physical> {
        (global - self.output_geo.loc).to_physical_precise_round(self.scale)
    }

    fn rect_to_phys(&self, r: Rectangle<i32, Logical>) -> Rectangle<i32, Physical> {
        let loc = self.to_phys(r.loc);
        let end = self.to_phys(r.loc + Point::from((r.size.w, r.size.h)));
        Rectangle::new(loc, (end.x - loc.x, end.y - loc.y).into())
    }
}

/// Builds the elements of `output`, front-most first.
pub fn output_elements<R>(
    desk: &Desktop,
    renderer: &mut R,
    output: &Output,
    draw_cursor: bool,
) -> Vec<OutputElement<R>>
where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    let Some(output_geo) = desk.space.output_geometry(output) else {
        return Vec::new();
    };
    let scale = Scale::from(output.current_scale().fractional_scale());
    let ctx = Ctx {
        desk,
        output_name: output.name(),
        focused: desk.focused_window(),
        output_geo,
        scale,
    };
    let mut out = Vec::new();

    if desk.lock.is_locked() {
        // Locked: the locker's surface for this output, over black. Nothing else at all.
        if let Some(lock) = desk.lock.surface_for(output) {
            out.extend(surface_tree(
                &ctx,
                renderer,
                lock.wl_surface(),
                output_geo.loc,
            ));
        }
        return out;
    }

    if draw_cursor {
        cursor_elements(&ctx, renderer, &mut out);
    }

    // The compositor's reserved layer: above every client, fullscreen included.
    // Notifications go on the output under the pointer.
    if desk.active_output().as_ref() == Some(output) {
        notification_elements(&ctx, renderer, &mut out);
    }
    if let (Some(l), Some(geo)) = (&desk.launcher, crate::launcher::geometry(desk)) {
        if geo.intersection(ctx.output_geo).is_some() {
            match MemoryRenderBufferRenderElement::from_buffer(
                renderer,
                ctx.to_phys(geo.loc).to_f64(),
                &l.buffer,
                None,
                None,
                None,
                Kind::Unspecified,
            ) {
                Ok(e) => out.push(OutputElement::Memory(e)),
                Err(_) => tracing::warn!("could not upload the launcher"),
            }
        }
    }

    let layers = layer_map_for_output(output);
    let top_fullscreen = desk.space.elements().next_back().is_some_and(|w| {
        meta(w).state.borrow().fullscreen && desk.window_output(w).as_ref() == Some(output)
    });
    for layer in [Layer::Overlay, Layer::Top] {
        if layer == Layer::Top && top_fullscreen {
            continue;
        }
        layer_elements(&ctx, renderer, &layers, layer, &mut out);
    }

    // X11 menus and tooltips (host only: Xwayland is a host client), where X placed them.
    for x11 in desk.xwayland.overrides.iter().rev() {
        if let Some(surface) = x11.wl_surface() {
            let geo = x11.geometry();
            if geo.intersection(ctx.output_geo).is_some() {
                out.extend(surface_tree(&ctx, renderer, &surface, geo.loc));
            }
        }
    }

    for window in desk.space.elements().rev() {
        window_elements(&ctx, renderer, window, &mut out);
    }

    for layer in [Layer::Bottom, Layer::Background] {
        layer_elements(&ctx, renderer, &layers, layer, &mut out);
    }
    out
}

fn surface_tree<R>(
    ctx: &Ctx<'_>,
    renderer: &mut R,
    surface: &WlSurface,
    global: Point<i32, Logical>,
) -> Vec<OutputElement<R>>
where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    tree_elements(ctx, renderer, surface, global, ctx.output_geo)
        .into_iter()
        .map(OutputElement::Surface)
        .collect()
}

/// The elements of a surface tree whose origin is at `global`, of which only what lies in
/// `clip` (global, logical) will be seen. Walks the tree as smithay's
/// `render_elements_from_surface_tree` does, but a surface holding a large shm buffer is
/// drawn from a copy of its visible part instead of a whole-buffer import.
fn tree_elements<R>(
    ctx: &Ctx<'_>,
    renderer: &mut R,
    surface: &WlSurface,
    global: Point<i32, Logical>,
    clip: Rectangle<i32, Logical>,
) -> Vec<TreeElement<R>>
where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    let Some(clip) = clip.intersection(ctx.output_geo) else {
        return Vec::new();
    };
    let scale = ctx.scale;
    let view_offset = |states: &SurfaceData| {
        let data = states.data_map.get::<RendererSurfaceStateUserData>()?;
        let view = data.lock().ok()?.view()?;
        Some(view.offset.to_f64().to_physical(scale))
    };
    let mut out = Vec::new();
    with_surface_tree_downward(
        surface,
        ctx.to_phys(global).to_f64(),
        |_, states, location| match view_offset(states) {
            Some(offset) => TraversalAction::DoChildren(*location + offset),
            None => TraversalAction::SkipChildren,
        },
        |surface, states, location| {
            let Some(offset) = view_offset(states) else {
                return;
            };
            let location = *location + offset;
            if crate::visible::holds_large_shm(states) {
                let at = crate::visible::Placement {
                    output: &ctx.output_name,
                    output_origin: ctx.output_geo.loc,
                    scale,
                    location,
                    clip,
                };
                if let Some(e) = crate::visible::element(renderer, states, &at) {
                    out.push(TreeElement::Visible(e));
                }
                return;
            }
            match WaylandSurfaceRenderElement::from_surface(
                renderer,
                surface,
                states,
                location,
                1.0,
                Kind::Unspecified,
            ) {
                Ok(Some(e)) => out.push(TreeElement::Surface(e)),
                Ok(None) => {}
                Err(e) => tracing::warn!("could not import a surface's buffer: {e:?}"),
            }
        },
        |_, _, _| true,
    );
    out
}

fn cropped_tree<R>(
    ctx: &Ctx<'_>,
    renderer: &mut R,
    surface: &WlSurface,
    global: Point<i32, Logical>,
    clip: Rectangle<i32, Logical>,
    out: &mut Vec<OutputElement<R>>,
) where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    let elements = tree_elements(ctx, renderer, surface, global, clip);
    let clip = ctx.rect_to_phys(clip);
    out.extend(
        elements
            .into_iter()
            .filter_map(|e| CropRenderElement::from_element(e, ctx.scale, clip))
            .map(OutputElement::Cropped),
    );
}

fn layer_elements<R>(
    ctx: &Ctx<'_>,
    renderer: &mut R,
    layers: &smithay::desktop::LayerMap,
    layer: Layer,
    out: &mut Vec<OutputElement<R>>,
) where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    for surface in layers.layers_on(layer).rev() {
        let Some(geo) = layers.layer_geometry(surface) else {
            continue;
        };
        let origin = ctx.output_geo.loc + geo.loc;
        for (popup, offset) in PopupManager::popups_for_surface(surface.wl_surface()) {
            let loc = origin + offset - popup.geometry().loc;
            out.extend(surface_tree(ctx, renderer, popup.wl_surface(), loc));
        }
        out.extend(surface_tree(ctx, renderer, surface.wl_surface(), origin));
    }
}

fn window_elements<R>(
    ctx: &Ctx<'_>,
    renderer: &mut R,
    window: &Window,
    out: &mut Vec<OutputElement<R>>,
) where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    let desk = ctx.desk;
    let Some(loc) = desk.space.element_location(window) else {
        return;
    };
    let Some(surface) = window.wl_surface().map(|s| s.into_owned()) else {
        return;
    };
    let m = meta(window);
    let metrics = desk.metrics();
    let kind = desk.frame_kind(window);
    let geometry = window.geometry();
    let content = Rectangle::new(loc, crate::frame::clamp_size(geometry.size));
    let outer = metrics.outer(content, kind);
    if outer.intersection(ctx.output_geo).is_none() {
        return;
    }
    let color = desk.domain_color(&m.domain);
    let focused = ctx.focused.as_ref() == Some(window);
    let buffers = window.user_data().get_or_insert(FrameBuffers::default);

    // Popups: above their window, each cropped to its own geometry and the output, framed
    // in the domain colour.
    for (popup, offset) in PopupManager::popups_for_surface(&surface) {
        let popup_geo = Rectangle::new(loc + offset, crate::shell::popup_configured_size(&popup));
        let surface_origin = popup_geo.loc - popup.geometry().loc;
        // Inside the output with room for the frame, so a popup can never cover the whole
        // screen without a visible border in its domain's colour.
        let inner = Rectangle::new(
            ctx.output_geo.loc + Point::from((POPUP_BORDER, POPUP_BORDER)),
            (
                ctx.output_geo.size.w - 2 * POPUP_BORDER,
                ctx.output_geo.size.h - 2 * POPUP_BORDER,
            )
                .into(),
        );
        let Some(clip) = popup_geo.intersection(inner) else {
            continue;
        };
        let b = POPUP_BORDER;
        let r = clip;
        let rects = [
            Rectangle::new(
                (r.loc.x - b, r.loc.y - b).into(),
                (r.size.w + 2 * b, b).into(),
            ),
            Rectangle::new(
                (r.loc.x - b, r.loc.y + r.size.h).into(),
                (r.size.w + 2 * b, b).into(),
            ),
            Rectangle::new((r.loc.x - b, r.loc.y).into(), (b, r.size.h).into()),
            Rectangle::new((r.loc.x + r.size.w, r.loc.y).into(), (b, r.size.h).into()),
        ];
        // The popup's content goes in front of its frame. (Not inside `with_states`: drawing
        // the tree takes the same surface's lock.)
        cropped_tree(ctx, renderer, popup.wl_surface(), surface_origin, clip, out);
        with_states(popup.wl_surface(), |s| {
            s.data_map.insert_if_missing(PopupFrame::default);
            if let Some(f) = s.data_map.get::<PopupFrame>() {
                push_solids(ctx, &mut *f.0.borrow_mut(), &rects, color, out);
            }
        });
    }

    // Title bar: compositor text on the domain colour.
    if kind != FrameKind::None {
        let bar = metrics.title_bar(content, kind);
        let (title, _) = title_and_app_id(window);
        let label = crate::shell::labelled_title(&m.domain, &title);
        let attention = m.state.borrow().attention;
        let image_w = bar.size.w.clamp(1, TITLE_IMAGE_MAX);
        let key = TitleKey {
            text: label,
            size: (image_w, bar.size.h.max(1)),
            bg: color,
            focused,
            attention,
        };
        let (fg, bg) = if attention {
            (color, color.text_color())
        } else {
            (color.text_color(), color)
        };
        if bar.size.w > image_w {
            let rest = Rectangle::new(
                (bar.loc.x + image_w, bar.loc.y).into(),
                (bar.size.w - image_w, bar.size.h).into(),
            );
            push_solids(ctx, &mut *buffers.title_rest.borrow_mut(), &[rest], bg, out);
        }
        let mut cached = buffers.title.borrow_mut();
        if cached.as_ref().map(|(k, _)| k) != Some(&key) {
            let img = text::render_line(
                &key.text,
                key.size.0,
                key.size.1,
                8,
                fg,
                bg,
                !focused && !attention,
            );
            let opaque = Rectangle::from_size((img.width, img.height).into());
            let buf = MemoryRenderBuffer::from_slice(
                &img.pixels,
                Fourcc::Argb8888,
                (img.width, img.height),
                1,
                Transform::Normal,
                Some(vec![opaque]),
            );
            *cached = Some((key, buf));
        }
        if let Some((_, buf)) = cached.as_ref() {
            match MemoryRenderBufferRenderElement::from_buffer(
                renderer,
                ctx.to_phys(bar.loc).to_f64(),
                buf,
                None,
                None,
                Some((image_w, bar.size.h).into()),
                Kind::Unspecified,
            ) {
                Ok(e) => out.push(OutputElement::Memory(e)),
                Err(_) => tracing::warn!("could not upload a title bar"),
            }
        }
    }

    // The client's surfaces, cropped to the content area: nothing outside the frame.
    let render_origin = loc - geometry.loc;
    cropped_tree(ctx, renderer, &surface, render_origin, content, out);

    // Borders: left, right, bottom.
    if kind == FrameKind::Full {
        let b = metrics.border;
        let rects = [
            Rectangle::new(
                (outer.loc.x, content.loc.y).into(),
                (b, content.size.h + b).into(),
            ),
            Rectangle::new(
                (content.loc.x + content.size.w, content.loc.y).into(),
                (b, content.size.h + b).into(),
            ),
            Rectangle::new(
                (content.loc.x, content.loc.y + content.size.h).into(),
                (content.size.w, b).into(),
            ),
        ];
        push_solids(ctx, &mut *buffers.borders.borrow_mut(), &rects, color, out);
    }
}

/// Notifications, newest at the top, in the output's top-right corner.
fn notification_elements<R>(ctx: &Ctx<'_>, renderer: &mut R, out: &mut Vec<OutputElement<R>>)
where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    use crate::notify::{HEIGHT, MARGIN, WIDTH};
    let x = ctx.output_geo.loc.x + ctx.output_geo.size.w - WIDTH - MARGIN;
    for (i, notice) in ctx.desk.notifications.shown.iter().rev().enumerate() {
        let y = ctx.output_geo.loc.y + MARGIN + i as i32 * (HEIGHT + MARGIN / 2);
        match MemoryRenderBufferRenderElement::from_buffer(
            renderer,
            ctx.to_phys((x, y).into()).to_f64(),
            &notice.buffer,
            None,
            None,
            None,
            Kind::Unspecified,
        ) {
            Ok(e) => out.push(OutputElement::Memory(e)),
            Err(_) => tracing::warn!("could not upload a notification"),
        }
    }
}

/// Solid rectangles of `color` (frame parts), each from its own stable buffer.
fn push_solids<R>(
    ctx: &Ctx<'_>,
    buffers: &mut [SolidColorBuffer],
    rects: &[Rectangle<i32, Logical>],
    color: Color,
    out: &mut Vec<OutputElement<R>>,
) where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    for (buf, rect) in buffers.iter_mut().zip(rects) {
        buf.update(rect.size, color.to_f32());
        out.push(OutputElement::Solid(SolidColorRenderElement::from_buffer(
            buf,
            ctx.to_phys(rect.loc),
            ctx.scale,
            1.0,
            Kind::Unspecified,
        )));
    }
}

fn cursor_elements<R>(ctx: &Ctx<'_>, renderer: &mut R, out: &mut Vec<OutputElement<R>>)
where
    R: Renderer + ImportAll + ImportMem,
    R::TextureId: Clone + Send + 'static,
{
    let desk = ctx.desk;
    let pos = desk.pointer_location.to_i32_round::<i32>();
    if !ctx.output_geo.contains(pos) {
        return;
    }
    match &desk.cursor_status {
        CursorImageStatus::Hidden => {}
        CursorImageStatus::Named(icon) => {
            let scale = ctx.scale.x.ceil() as u32;
            let cursor = desk.cursors.borrow_mut().get(*icon, scale).clone();
            if let Ok(e) = MemoryRenderBufferRenderElement::from_buffer(
                renderer,
                ctx.to_phys(pos - cursor.hotspot).to_f64(),
                &cursor.buffer,
                None,
                None,
                None,
                Kind::Cursor,
            ) {
                out.push(OutputElement::Memory(e));
            }
        }
        CursorImageStatus::Surface(surface) => {
            let hotspot = with_states(surface, |s| {
                s.data_map
                    .get::<CursorImageSurfaceData>()
                    .map(|d| d.lock().map(|d| d.hotspot).unwrap_or_default())
                    .unwrap_or_default()
            });
            let origin = pos - hotspot;
            let mut clip = Rectangle::new(origin, (MAX_CURSOR, MAX_CURSOR).into());
            let domain = desk.surface_domain(surface);
            if !domain.is_host() {
                // A VM's cursor is drawn only over that VM's window under the pointer.
                let Some(content) = desk.content_rect_under(desk.pointer_location, &domain) else {
                    return;
                };
                let Some(c) = clip.intersection(content) else {
                    return;
                };
                clip = c;
            }
            cropped_tree(ctx, renderer, surface, origin, clip, out);
        }
    }
}

/// A small arrow cursor drawn by the compositor (ARGB8888), for named cursors the host's
/// theme does not have.
pub fn default_cursor_buffer() -> MemoryRenderBuffer {
    const W: usize = 12;
    const H: usize = 19;
    let mut px = vec![0u8; W * H * 4];
    for y in 0..H {
        for x in 0..W {
            // An arrow: a right triangle plus a stem, outlined in black.
            let inside = |x: i32, y: i32| -> bool {
                (x >= 0 && y >= 0 && x <= y && y < 13 && x < 12)
                    || ((4..8).contains(&x) && (11..19).contains(&y) && x <= y - 7)
            };
            let (xi, yi) = (x as i32, y as i32);
            if !inside(xi, yi) {
                continue;
            }
            let edge = !inside(xi - 1, yi)
                || !inside(xi + 1, yi)
                || !inside(xi, yi - 1)
                || !inside(xi, yi + 1);
            let v = if edge { 0 } else { 0xff };
            px[(y * W + x) * 4..][..4].copy_from_slice(&[v, v, v, 0xff]);
        }
    }
    MemoryRenderBuffer::from_slice(
        &px,
        Fourcc::Argb8888,
        (W as i32, H as i32),
        1,
        Transform::Normal,
        None,
    )
}

impl Desktop {
    /// The content rectangle of the topmost window of `domain` under `pos`.
    pub fn content_rect_under(
        &self,
        pos: Point<f64, Logical>,
        domain: &crate::domain::Domain,
    ) -> Option<Rectangle<i32, Logical>> {
        let metrics = self.metrics();
        for w in self.space.elements().rev() {
            let loc = self.space.element_location(w)?;
            let content = Rectangle::new(loc, crate::frame::clamp_size(w.geometry().size));
            let outer = metrics.outer(content, self.frame_kind(w));
            if outer.to_f64().contains(pos) {
                return (&meta(w).domain == domain && content.to_f64().contains(pos))
                    .then_some(content);
            }
        }
        None
    }
}
