//! SVG icons: parsed without a DTD and within node and `<use>` caps, then checked for what
//! drawing them would cost ([`check_costs`]) before resvg draws them at the icon's size.

use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg;

use super::{IconError, SIZE};

pub const MAX_SVG_NODES: u32 = 20_000;
pub const MAX_SVG_USES: usize = 16;

/// The SVG drawn at [`SIZE`]×[`SIZE`], centred, aspect kept.
pub(super) fn pixmap(bytes: &[u8]) -> Result<Pixmap, IconError> {
    let text = std::str::from_utf8(bytes).map_err(|_| IconError::NotAnImage)?;
    let doc = roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_SVG_NODES,
            ..Default::default()
        },
    )?;
    let uses = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "use")
        .count();
    if uses > MAX_SVG_USES {
        return Err(IconError::TooManyUses);
    }
    let options = usvg::Options {
        resources_dir: None,
        // Nothing outside the file: no referenced image is loaded, embedded or not.
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: Box::new(|_, _, _| None),
            resolve_string: Box::new(|_, _| None),
        },
        ..Default::default()
    };
    let tree = usvg::Tree::from_xmltree(&doc, &options)?;
    let size = tree.size();
    let (w, h) = (size.width(), size.height());
    if !(w > 0.0 && h > 0.0) {
        return Err(IconError::Empty);
    }
    let scale = SIZE as f32 / w.max(h);
    let (dx, dy) = (
        (SIZE as f32 - w * scale) / 2.0,
        (SIZE as f32 - h * scale) / 2.0,
    );
    let device = Transform::from_row(scale, 0.0, 0.0, scale, dx, dy);
    check_costs(&tree, device)?;
    let mut out = Pixmap::new(SIZE, SIZE).ok_or(IconError::Empty)?;
    resvg::render(&tree, device, &mut out.as_mut());
    Ok(out)
}

/// How far, in the icon's pixels, a shape or clip may reach outside it. The rasteriser's
/// fixed-point edges overflow (and its debug checks panic) near 32768 pixels.
pub const MAX_SHAPE_REACH: f32 = 4096.0;
/// How far a filtered group's region may reach outside the icon: a filter works on every
/// pixel of its region, some at a cost that grows with the region's area squared.
pub const MAX_FILTER_REACH: f32 = SIZE as f32;
/// The largest pattern tile drawn, in the icon's pixels a side (a tile is a pixmap of its own).
pub const MAX_PATTERN_TILE: f32 = 4.0 * SIZE as f32;
/// Filter primitives in the whole image.
pub const MAX_FILTER_PRIMITIVES: usize = 64;
/// Octaves of one `feTurbulence` (each is a pass over the region).
pub const MAX_TURBULENCE_OCTAVES: u32 = 16;
/// Entries of one `feConvolveMatrix` kernel (each is a read per pixel).
pub const MAX_KERNEL_ENTRIES: usize = 1024;

/// Refuses an SVG whose drawing would cost more than an icon should, before it is drawn:
/// shapes, clips and masks far outside the icon, filter regions beyond
/// [`MAX_FILTER_REACH`], large pattern tiles, and too many or too costly filter primitives.
/// Every group is checked, including those of clip paths, masks, patterns and `feImage`,
/// each in the pixels it is drawn at (`device` for the image itself).
fn check_costs(tree: &usvg::Tree, device: Transform) -> Result<(), IconError> {
    use usvg::{Node, Paint};
    let mut todo: Vec<(&usvg::Group, Transform)> = vec![(tree.root(), device)];
    let mut primitives = 0usize;
    while let Some((group, base)) = todo.pop() {
        let at = base.pre_concat(group.abs_transform());
        if !group.filters().is_empty() {
            reach(
                base,
                group.abs_layer_bounding_box().to_rect(),
                MAX_FILTER_REACH,
            )?;
        }
        for filter in group.filters() {
            for primitive in filter.primitives() {
                primitives += 1;
                if primitives > MAX_FILTER_PRIMITIVES {
                    return Err(IconError::TooCostly("too many filter primitives"));
                }
                check_primitive(primitive.kind())?;
                if let usvg::filter::Kind::Image(image) = primitive.kind() {
                    todo.push((image.root(), at));
                }
            }
        }
        if let Some(clip) = group.clip_path() {
            let mut clip = Some(clip);
            while let Some(c) = clip {
                todo.push((c.root(), at.pre_concat(c.transform())));
                clip = c.clip_path();
            }
        }
        let mut mask = group.mask();
        while let Some(m) = mask {
            reach(at, m.rect().to_rect(), MAX_SHAPE_REACH)?;
            todo.push((m.root(), at));
            mask = m.mask();
        }
        for child in group.children() {
            match child {
                Node::Group(g) => todo.push((g, base)),
                Node::Path(path) => {
                    reach(base, path.abs_stroke_bounding_box(), MAX_SHAPE_REACH)?;
                    let paints = [
                        path.fill().map(|f| f.paint()),
                        path.stroke().map(|s| s.paint()),
                    ];
                    for paint in paints.into_iter().flatten() {
                        if let Paint::Pattern(pattern) = paint {
                            let ts = base
                                .pre_concat(path.abs_transform())
                                .pre_concat(pattern.transform());
                            let (sx, sy) = ts.get_scale();
                            let (w, h) =
                                (pattern.rect().width() * sx, pattern.rect().height() * sy);
                            if !(w <= MAX_PATTERN_TILE && h <= MAX_PATTERN_TILE) {
                                return Err(IconError::TooCostly("a pattern tile is too large"));
                            }
                            todo.push((pattern.root(), Transform::from_scale(sx, sy)));
                        }
                    }
                }
                Node::Image(image) => reach(base, image.abs_bounding_box(), MAX_SHAPE_REACH)?,
                Node::Text(text) => {
                    reach(base, text.abs_stroke_bounding_box(), MAX_SHAPE_REACH)?;
                    todo.push((text.flattened(), base));
                }
            }
        }
    }
    Ok(())
}

/// `rect` (in the units `ts` maps to the icon's pixels) lies within `limit` pixels of the icon.
fn reach(ts: Transform, rect: usvg::Rect, limit: f32) -> Result<(), IconError> {
    let inside = rect.transform(ts).is_some_and(|r| {
        let (lo, hi) = (-limit, SIZE as f32 + limit);
        r.left() >= lo && r.top() >= lo && r.right() <= hi && r.bottom() <= hi
    });
    if inside {
        Ok(())
    } else {
        Err(IconError::TooCostly(
            "a shape or filter reaches far outside the image",
        ))
    }
}

fn check_primitive(kind: &usvg::filter::Kind) -> Result<(), IconError> {
    use usvg::filter::Kind;
    match kind {
        Kind::Turbulence(t) if t.num_octaves() > MAX_TURBULENCE_OCTAVES => {
            Err(IconError::TooCostly("feTurbulence has too many octaves"))
        }
        Kind::ConvolveMatrix(c) if c.matrix().data().len() > MAX_KERNEL_ENTRIES => Err(
            IconError::TooCostly("an feConvolveMatrix kernel is too large"),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, IconError};

    fn svg(body: &str) -> Vec<u8> {
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16">{body}</svg>"#)
            .into_bytes()
    }

    fn refused(body: &str, why: &str) {
        match decode(&svg(body)) {
            Err(IconError::TooCostly(w)) => assert!(w.contains(why), "{w} for {body}"),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn what_would_cost_too_much_to_draw_is_refused() {
        // A billion octaves of noise: a pass over the region each.
        refused(
            r#"<filter id="t"><feTurbulence baseFrequency="0.1" numOctaves="1000000000"/></filter>
               <rect width="16" height="16" filter="url(#t)"/>"#,
            "octaves",
        );
        // A filter region a million units wide around a small shape.
        refused(
            r#"<filter id="b" filterUnits="userSpaceOnUse" x="-500000" y="-500000" width="1000000" height="1000000">
               <feGaussianBlur stdDeviation="1"/></filter><rect width="16" height="16" filter="url(#b)"/>"#,
            "reaches far outside",
        );
        // A pattern tile of 10⁵ units a side: a pixmap of its own.
        refused(
            r#"<pattern id="p" patternUnits="userSpaceOnUse" width="100000" height="100000">
               <rect width="4" height="4" fill="red"/></pattern><rect width="16" height="16" fill="url(#p)"/>"#,
            "pattern tile",
        );
        // A stroke as wide as a city.
        refused(
            r#"<path d="M0 8 H16" stroke="black" stroke-width="1e7"/>"#,
            "reaches far outside",
        );
        // A clip path drawn with a shape of astronomic size.
        refused(
            r#"<clipPath id="c"><circle cx="8" cy="8" r="1e20"/></clipPath>
               <rect width="16" height="16" clip-path="url(#c)"/>"#,
            "reaches far outside",
        );
        // A 40×40 convolution kernel: 1600 reads per pixel.
        let kernel = vec!["1"; 1600].join(" ");
        refused(
            &format!(
                r#"<filter id="k"><feConvolveMatrix order="40" kernelMatrix="{kernel}"/></filter>
                   <rect width="16" height="16" filter="url(#k)"/>"#
            ),
            "kernel",
        );
        // Too many primitives.
        let floods = r##"<feFlood flood-color="#f00"/>"##.repeat(super::MAX_FILTER_PRIMITIVES + 1);
        refused(
            &format!(
                r#"<filter id="f">{floods}</filter><rect width="16" height="16" filter="url(#f)"/>"#
            ),
            "too many filter primitives",
        );
    }

    #[test]
    fn ordinary_filters_patterns_and_clips_are_drawn() {
        let icon = decode(&svg(
            r##"<filter id="s"><feGaussianBlur stdDeviation="0.5"/></filter>
                <pattern id="p" patternUnits="userSpaceOnUse" width="4" height="4">
                  <rect width="2" height="2" fill="#00f"/></pattern>
                <clipPath id="c"><circle cx="8" cy="8" r="7"/></clipPath>
                <g clip-path="url(#c)"><rect width="16" height="16" fill="url(#p)"/>
                  <circle cx="8" cy="8" r="3" fill="#f00" filter="url(#s)"/></g>"##,
        ))
        .unwrap();
        let px = |x: u32, y: u32| {
            let i = ((y * super::SIZE + x) * 4) as usize;
            [
                icon.bgra[i],
                icon.bgra[i + 1],
                icon.bgra[i + 2],
                icon.bgra[i + 3],
            ]
        };
        // The red blurred centre, the blue pattern inside the clip, nothing in the corner.
        assert!(px(10, 10)[2] > 0xc0, "{:?}", px(10, 10));
        assert!((0..20).any(|x| px(x, 6)[0] > 0xc0), "no pattern");
        assert_eq!(px(0, 0), [0, 0, 0, 0]);
    }
}
