//! SVG icons. Before usvg builds its tree, the document is parsed without a DTD, at most
//! [`MAX_SVG_NODES`] nodes and [`MAX_SVG_DEPTH`] deep, without markers, and what its
//! references would expand to is bounded ([`check_references`]: `<use>`, patterns, clip
//! paths, masks and filters each copy or redraw what they point at). After, what drawing the
//! tree would cost is checked ([`check_costs`]) before resvg draws it at the icon's size.

use std::collections::HashMap;

use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg;

use super::{IconError, SIZE};

pub const MAX_SVG_NODES: u32 = 20_000;
/// Nesting depth of elements (usvg and resvg recurse on it).
pub const MAX_SVG_DEPTH: usize = 64;
/// Nodes the document amounts to once every reference is expanded (each `url(#…)` or
/// `href="#…"` counts what it points at, again for every use).
pub const MAX_SVG_WORK: u64 = 100_000;

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
    check_references(&doc)?;
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

/// The ids one attribute value refers to: `url(#id)` anywhere in it, or all of it for an
/// `href` of `#id`.
fn referenced<'a>(name: &str, value: &'a str, out: &mut Vec<&'a str>) {
    if name == "href" {
        if let Some(id) = value.trim().strip_prefix('#') {
            out.push(id);
        }
        return;
    }
    let mut rest = value;
    while let Some(at) = rest.find("url(") {
        rest = &rest[at + 4..];
        let inner = rest.trim_start().trim_start_matches(['\'', '"']);
        if let Some(id) = inner.strip_prefix('#') {
            let end = id.find([')', '\'', '"']).unwrap_or(id.len());
            out.push(id[..end].trim());
        }
    }
}

/// Refuses documents that nest too deep, use markers (a copy of the marker per vertex),
/// style sheets that reference elements (a rule may apply to every element), reference
/// cycles, or whose references expand to more than [`MAX_SVG_WORK`] nodes.
pub(super) fn check_references(doc: &roxmltree::Document) -> Result<(), IconError> {
    let costly = |why| Err(IconError::TooCostly(why));
    let nodes: Vec<roxmltree::Node> = doc.descendants().filter(|n| n.is_element()).collect();
    // Each element's depth and, for those with ids, its index among them.
    let mut depth: HashMap<roxmltree::NodeId, usize> = HashMap::new();
    let mut targets: HashMap<&str, usize> = HashMap::new();
    let mut with_id: Vec<roxmltree::NodeId> = Vec::new();
    for n in &nodes {
        let d = n
            .parent()
            .and_then(|p| depth.get(&p.id()))
            .map_or(1, |d| d + 1);
        if d > MAX_SVG_DEPTH {
            return costly("elements nest too deep");
        }
        depth.insert(n.id(), d);
        let name = n.tag_name().name();
        if name == "marker" || n.attributes().any(|a| a.name().starts_with("marker")) {
            return costly("markers are not drawn in icons");
        }
        if name == "style" && n.text().is_some_and(|t| t.contains("url(")) {
            return costly("a style sheet references elements");
        }
        if let Some(id) = n.attribute("id") {
            targets.entry(id).or_insert_with(|| {
                with_id.push(n.id());
                with_id.len() - 1
            });
        }
    }
    // For each element with an id: its own size, and the references made inside it (an
    // element's references count for every ancestor with an id, and for the document).
    let mut own = vec![0u64; with_id.len()];
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); with_id.len()];
    let mut document = nodes.len() as u64;
    let mut document_refs: Vec<usize> = Vec::new();
    let index: HashMap<roxmltree::NodeId, usize> =
        with_id.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut refs = Vec::new();
    for n in &nodes {
        refs.clear();
        for a in n.attributes() {
            referenced(a.name(), a.value(), &mut refs);
        }
        let found: Vec<usize> = refs
            .iter()
            .filter_map(|r| targets.get(r).copied())
            .collect();
        for anc in n.ancestors() {
            if let Some(&i) = index.get(&anc.id()) {
                own[i] += 1;
                edges[i].extend_from_slice(&found);
                if edges[i].len() > MAX_SVG_WORK as usize {
                    return costly("too many references");
                }
            }
        }
        document_refs.extend_from_slice(&found);
        if document_refs.len() > MAX_SVG_WORK as usize {
            return costly("too many references");
        }
    }
    // Expanded sizes in dependency order (Kahn's algorithm); what is left over is a cycle.
    let mut pending: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); with_id.len()];
    for (from, to) in edges.iter().enumerate() {
        for &t in to {
            users[t].push(from);
        }
    }
    let mut ready: Vec<usize> = (0..with_id.len()).filter(|&i| pending[i] == 0).collect();
    let mut cost: Vec<Option<u64>> = vec![None; with_id.len()];
    while let Some(i) = ready.pop() {
        let c = edges[i]
            .iter()
            .try_fold(own[i], |sum, &t| cost[t].map(|c| sum.saturating_add(c)))
            .unwrap_or(u64::MAX);
        if c > MAX_SVG_WORK {
            return costly("its references expand to too much");
        }
        cost[i] = Some(c);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(u);
            }
        }
    }
    if cost.iter().any(Option::is_none) {
        return costly("its references form a cycle");
    }
    for t in document_refs {
        document = document.saturating_add(cost[t].unwrap_or(u64::MAX));
    }
    if document > MAX_SVG_WORK {
        return costly("its references expand to too much");
    }
    Ok(())
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

/// Refuses a tree whose drawing would cost more than an icon should: shapes, clips and masks
/// far outside the icon, filter regions beyond [`MAX_FILTER_REACH`], large pattern tiles,
/// and too many or too costly filter primitives. Every group is checked, including those of
/// clip paths, masks, patterns and `feImage`, at the transform resvg draws it with (built
/// here from each group's own transform, as resvg does: usvg's absolute transforms are not
/// updated inside every pattern).
fn check_costs(tree: &usvg::Tree, device: Transform) -> Result<(), IconError> {
    use usvg::{Node, Paint};
    // (group, the transform its children are drawn with)
    let mut todo: Vec<(&usvg::Group, Transform)> = vec![(tree.root(), device)];
    let mut primitives = 0usize;
    let mut visited = 0u64;
    while let Some((group, at)) = todo.pop() {
        for child in group.children() {
            visited += 1;
            if visited > MAX_SVG_WORK {
                return Err(IconError::TooCostly("too many shapes to draw"));
            }
            match child {
                Node::Group(g) => {
                    let at = at.pre_concat(g.transform());
                    check_group(g, at, &mut primitives, &mut todo)?;
                    todo.push((g, at));
                }
                Node::Path(path) => {
                    let stroke = path
                        .stroke()
                        .map_or(0.0, |s| s.width().get() * s.miterlimit().get().max(1.0));
                    let b = path.data().bounds();
                    let widened = usvg::Rect::from_ltrb(
                        b.left() - stroke,
                        b.top() - stroke,
                        b.right() + stroke,
                        b.bottom() + stroke,
                    )
                    .ok_or(IconError::TooCostly("a stroke of no finite size"))?;
                    reach(at, widened, MAX_SHAPE_REACH)?;
                    let paints = [
                        path.fill().map(|f| f.paint()),
                        path.stroke().map(|s| s.paint()),
                    ];
                    for paint in paints.into_iter().flatten() {
                        if let Paint::Pattern(pattern) = paint {
                            let (sx, sy) = at.pre_concat(pattern.transform()).get_scale();
                            let (w, h) =
                                (pattern.rect().width() * sx, pattern.rect().height() * sy);
                            if !(w <= MAX_PATTERN_TILE && h <= MAX_PATTERN_TILE) {
                                return Err(IconError::TooCostly("a pattern tile is too large"));
                            }
                            todo.push((pattern.root(), Transform::from_scale(sx, sy)));
                        }
                    }
                }
                Node::Image(image) => reach(at, image.bounding_box(), MAX_SHAPE_REACH)?,
                Node::Text(text) => {
                    let flat = text.flattened();
                    let at = at.pre_concat(flat.transform());
                    check_group(flat, at, &mut primitives, &mut todo)?;
                    todo.push((flat, at));
                }
            }
        }
    }
    Ok(())
}

/// A group drawn at `at`: its layer (with filters and strokes) within reach, its filters'
/// costs, and its clip paths, masks and `feImage`s queued to be checked.
fn check_group<'a>(
    group: &'a usvg::Group,
    at: Transform,
    primitives: &mut usize,
    todo: &mut Vec<(&'a usvg::Group, Transform)>,
) -> Result<(), IconError> {
    let limit = if group.filters().is_empty() {
        MAX_SHAPE_REACH
    } else {
        MAX_FILTER_REACH
    };
    reach(at, group.layer_bounding_box().to_rect(), limit)?;
    for filter in group.filters() {
        reach(at, filter.rect().to_rect(), MAX_FILTER_REACH)?;
        for primitive in filter.primitives() {
            *primitives += 1;
            if *primitives > MAX_FILTER_PRIMITIVES {
                return Err(IconError::TooCostly("too many filter primitives"));
            }
            check_primitive(primitive.kind())?;
            if let usvg::filter::Kind::Image(image) = primitive.kind() {
                todo.push((image.root(), at));
            }
        }
    }
    let mut clip = group.clip_path();
    while let Some(c) = clip {
        todo.push((c.root(), at.pre_concat(c.transform())));
        clip = c.clip_path();
    }
    let mut mask = group.mask();
    while let Some(m) = mask {
        reach(at, m.rect().to_rect(), MAX_SHAPE_REACH)?;
        todo.push((m.root(), at));
        mask = m.mask();
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
    fn references_that_multiply_or_loop_are_refused_before_the_tree_is_built() {
        // A cycle of three patterns (usvg breaks cycles of one or two only).
        refused(
            r#"<pattern id="a" width="1" height="1"><rect width="9" height="9" fill="url(#b)"/></pattern>
               <pattern id="b" width="1" height="1"><rect width="9" height="9" fill="url(#c)"/></pattern>
               <pattern id="c" width="1" height="1"><rect width="9" height="9" fill="url(#a)"/></pattern>
               <rect width="16" height="16" fill="url(#a)"/>"#,
            "cycle",
        );
        // A chain of patterns each drawing the next twice: 2^40 fills.
        let mut chain = String::from(
            r#"<pattern id="p0" width="1" height="1"><rect width="1" height="1"/></pattern>"#,
        );
        for i in 1..40 {
            chain.push_str(&format!(
                r#"<pattern id="p{i}" width="1" height="1"><rect width="1" height="1" fill="url(#p{p})"/><rect width="1" height="1" fill="url(#p{p})"/></pattern>"#,
                p = i - 1
            ));
        }
        chain.push_str(r#"<rect width="16" height="16" fill="url(#p39)"/>"#);
        refused(&chain, "expand to too much");
        // One pattern of 2,000 shapes, used by 2,000 shapes.
        let shapes = r#"<rect width="1" height="1"/>"#.repeat(2000);
        let users = r#"<rect width="1" height="1" fill="url(#big)"/>"#.repeat(2000);
        refused(
            &format!(r#"<pattern id="big" width="4" height="4">{shapes}</pattern>{users}"#),
            "expand to too much",
        );
        // A marker copied onto every vertex.
        refused(
            r#"<marker id="m"><rect width="1" height="1"/></marker><path d="M0 0h1h-1h1" marker-mid="url(#m)"/>"#,
            "markers",
        );
        // A style sheet's rule may apply to every element.
        refused(
            r#"<style>rect { fill: url(#g) }</style><linearGradient id="g"/><rect width="4" height="4"/>"#,
            "style sheet",
        );
        // Groups nested deeper than usvg and resvg should recurse.
        let deep = format!("{}{}", "<g>".repeat(100), "</g>".repeat(100));
        refused(&deep, "nest too deep");
    }

    #[test]
    fn a_pattern_whose_content_is_scaled_by_its_view_box_is_measured_as_drawn() {
        // usvg leaves the shapes' absolute transforms unscaled here: measured by them, the
        // ellipse would look 2,400 px tall, but it is drawn about 4·10²² px tall.
        refused(
            r#"<pattern id="p" width="1" height="1" viewBox="0 0 1e-18 1e-18">
               <ellipse cx="16" cy="8" rx="17" ry="7777" transform="rotate(10 16 8)"/></pattern>
               <rect width="16" height="16" fill="url(#p)"/>"#,
            "reaches far outside",
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
