//! Frame geometry: where the compositor draws each window's border and title bar, and the
//! limits every client-chosen size and position is clamped to. Pure functions, unit-tested.

use smithay::utils::{Logical, Point, Rectangle, Size};

/// Largest window content a client may have (as Qubes' GUI daemon).
pub const MAX_WINDOW_SIZE: (i32, i32) = (16384, 6144);
/// How much of a frame's title bar stays on some output, horizontally, when clamping.
pub const MIN_VISIBLE: i32 = 64;

/// What is drawn around a window's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Title bar on top, borders on the other sides.
    Full,
    /// Fullscreen VM window: only the title strip, above the content.
    Strip,
    /// Fullscreen host window: nothing.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMetrics {
    pub border: i32,
    pub title: i32,
}

impl FrameMetrics {
    /// The frame's outer rectangle around `content`.
    pub fn outer(
        &self,
        content: Rectangle<i32, Logical>,
        kind: FrameKind,
    ) -> Rectangle<i32, Logical> {
        let (l, t, r, b) = self.insets(kind);
        Rectangle::new(
            (content.loc.x - l, content.loc.y - t).into(),
            (content.size.w + l + r, content.size.h + t + b).into(),
        )
    }

    /// The title bar's rectangle (empty for `FrameKind::None`).
    pub fn title_bar(
        &self,
        content: Rectangle<i32, Logical>,
        kind: FrameKind,
    ) -> Rectangle<i32, Logical> {
        let outer = self.outer(content, kind);
        match kind {
            FrameKind::None => Rectangle::new(outer.loc, (0, 0).into()),
            _ => Rectangle::new(outer.loc, (outer.size.w, self.title).into()),
        }
    }

    /// (left, top, right, bottom) widths of the frame.
    pub fn insets(&self, kind: FrameKind) -> (i32, i32, i32, i32) {
        match kind {
            FrameKind::Full => (self.border, self.title, self.border, self.border),
            FrameKind::Strip => (0, self.title, 0, 0),
            FrameKind::None => (0, 0, 0, 0),
        }
    }

    /// The content area that fits in `area` with this frame around it (maximize, fullscreen).
    pub fn content_in(
        &self,
        area: Rectangle<i32, Logical>,
        kind: FrameKind,
    ) -> Rectangle<i32, Logical> {
        let (l, t, r, b) = self.insets(kind);
        Rectangle::new(
            (area.loc.x + l, area.loc.y + t).into(),
            ((area.size.w - l - r).max(1), (area.size.h - t - b).max(1)).into(),
        )
    }
}

/// Clamps a client-chosen size to 1..=MAX_WINDOW_SIZE.
pub fn clamp_size(size: Size<i32, Logical>) -> Size<i32, Logical> {
    Size::from((
        size.w.clamp(1, MAX_WINDOW_SIZE.0),
        size.h.clamp(1, MAX_WINDOW_SIZE.1),
    ))
}

/// Moves `content` so that its frame's title bar can still be grabbed: the title bar's top
/// edge inside the output area vertically, at least [`MIN_VISIBLE`] pixels of it horizontally.
pub fn clamp_position(
    content: Rectangle<i32, Logical>,
    metrics: FrameMetrics,
    kind: FrameKind,
    outputs: &[Rectangle<i32, Logical>],
) -> Point<i32, Logical> {
    let Some(bounds) = outputs.iter().copied().reduce(|a, b| a.merge(b)) else {
        return content.loc;
    };
    let bar = metrics.title_bar(content, kind);
    let offset = content.loc - bar.loc;
    let min_x = bounds.loc.x - bar.size.w + MIN_VISIBLE.min(bar.size.w);
    let max_x = bounds.loc.x + bounds.size.w - MIN_VISIBLE.min(bar.size.w);
    let min_y = bounds.loc.y;
    let max_y = (bounds.loc.y + bounds.size.h - metrics.title).max(min_y);
    let x = bar.loc.x.clamp(min_x, max_x.max(min_x));
    let y = bar.loc.y.clamp(min_y, max_y);
    Point::from((x, y)) + offset
}

/// Where a new window of `size` goes, as floating window managers place them: centred on
/// `output` when that hides nothing, else at the position (cascade steps from the centre, or a
/// grid over the output) that hides the least of the windows already there (`taken`: their
/// outer frames) and of itself (off the output), never with its frame's corner on another's
/// (so every title bar stays in sight), and the nearest to the centre among equals.
pub fn place_new(
    size: Size<i32, Logical>,
    metrics: FrameMetrics,
    output: Rectangle<i32, Logical>,
    taken: &[Rectangle<i32, Logical>],
) -> Point<i32, Logical> {
    let outer_at = |p: Point<i32, Logical>| metrics.outer(Rectangle::new(p, size), FrameKind::Full);
    let outer = outer_at((0, 0).into());
    let centre = Point::from((
        output.loc.x + (output.size.w - outer.size.w).max(0) / 2 + metrics.border,
        output.loc.y + (output.size.h - outer.size.h).max(0) / 2 + metrics.title,
    ));
    let step = metrics.title.max(8);
    let mut candidates = vec![centre];
    candidates.extend((1..32).map(|k| centre + Point::from((k * step, k * step))));
    let mut y = output.loc.y;
    while y < output.loc.y + output.size.h {
        let mut x = output.loc.x;
        while x < output.loc.x + output.size.w {
            candidates.push(Point::from((x + metrics.border, y + metrics.title)));
            x += step;
        }
        y += step;
    }
    let area = |r: Rectangle<i32, Logical>| r.size.w as i64 * r.size.h as i64;
    candidates
        .into_iter()
        .map(|p| clamp_position(Rectangle::new(p, size), metrics, FrameKind::Full, &[output]))
        .min_by_key(|&p| {
            let o = outer_at(p);
            let corner_on_another = taken
                .iter()
                .any(|t| (t.loc.x - o.loc.x).abs() < step && (t.loc.y - o.loc.y).abs() < step);
            let covered: i64 = taken
                .iter()
                .filter_map(|t| t.intersection(o))
                .map(area)
                .sum();
            let off_output = area(o) - o.intersection(output).map_or(0, area);
            let distance = (p.x - centre.x).abs() as i64 + (p.y - centre.y).abs() as i64;
            (corner_on_another, covered + off_output, distance)
        })
        .unwrap_or(centre)
}

/// The size an interactive resize asks for: `want`, within the client's min and max sizes
/// (0 = no bound) and the compositor's own limits. The client's values are its own to choose,
/// so nonsense (negative, min above max) is tolerated: min is cut to the limits first, then
/// max to no less than min.
pub fn resize_to(want: (i32, i32), min: (i32, i32), max: (i32, i32)) -> Size<i32, Logical> {
    let axis = |want: i32, min: i32, max: i32, limit: i32| {
        let lo = min.clamp(1, limit);
        let hi = if max > 0 { max.clamp(lo, limit) } else { limit };
        want.clamp(lo, hi)
    };
    Size::from((
        axis(want.0, min.0, max.0, MAX_WINDOW_SIZE.0),
        axis(want.1, min.1, max.1, MAX_WINDOW_SIZE.1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: FrameMetrics = FrameMetrics {
        border: 4,
        title: 24,
    };

    fn rect(x: i32, y: i32, w: i32, h: i32) -> Rectangle<i32, Logical> {
        Rectangle::new((x, y).into(), (w, h).into())
    }

    #[test]
    fn outer_and_title_bar() {
        let c = rect(100, 100, 200, 150);
        assert_eq!(M.outer(c, FrameKind::Full), rect(96, 76, 208, 178));
        assert_eq!(M.title_bar(c, FrameKind::Full), rect(96, 76, 208, 24));
        assert_eq!(M.outer(c, FrameKind::Strip), rect(100, 76, 200, 174));
        assert_eq!(M.outer(c, FrameKind::None), c);
        let out = rect(0, 0, 1280, 800);
        let inner = M.content_in(out, FrameKind::Full);
        assert_eq!(M.outer(inner, FrameKind::Full), out);
        assert_eq!(M.content_in(out, FrameKind::Strip), rect(0, 24, 1280, 776));
    }

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(clamp_size((i32::MAX, 0).into()), Size::from((16384, 1)));
        assert_eq!(clamp_size((640, 480).into()), Size::from((640, 480)));
    }

    #[test]
    fn positions_keep_the_title_bar_reachable() {
        let outs = [rect(0, 0, 1280, 800), rect(1280, 0, 1280, 800)];
        // Far away: pulled back.
        let p = clamp_position(rect(-100_000, 99_999, 300, 200), M, FrameKind::Full, &outs);
        let bar = M.title_bar(rect(p.x, p.y, 300, 200), FrameKind::Full);
        assert!(bar.loc.y >= 0 && bar.loc.y <= 800 - 24);
        assert!(bar.loc.x + bar.size.w >= MIN_VISIBLE);
        // Title bar above the top edge: pulled down.
        let p = clamp_position(rect(10, 0, 300, 200), M, FrameKind::Full, &outs);
        assert_eq!(p, Point::from((10, 24)));
        // Already fine: untouched.
        let p = clamp_position(rect(1500, 300, 300, 200), M, FrameKind::Full, &outs);
        assert_eq!(p, Point::from((1500, 300)));
    }

    /// Places windows of `sizes` one after the other; their outer frames.
    fn place_all(
        out: Rectangle<i32, Logical>,
        sizes: &[(i32, i32)],
    ) -> Vec<Rectangle<i32, Logical>> {
        let mut placed = Vec::new();
        for &(w, h) in sizes {
            let p = place_new((w, h).into(), M, out, &placed);
            placed.push(M.outer(rect(p.x, p.y, w, h), FrameKind::Full));
        }
        placed
    }

    #[test]
    fn new_windows_hide_no_other_window_while_there_is_room() {
        let out = rect(0, 0, 1280, 800);
        // The first one centred.
        let first = place_new((400, 300).into(), M, out, &[]);
        assert_eq!(
            M.outer(rect(first.x, first.y, 400, 300), FrameKind::Full),
            rect(436, 236, 408, 328)
        );
        // Different sizes (today's bug: all centred on one point, the big one hiding the small).
        let placed = place_all(out, &[(400, 300), (300, 200), (200, 150), (300, 200)]);
        for (i, a) in placed.iter().enumerate() {
            assert!(out.contains_rect(*a), "window {i} leaves the output: {a:?}");
            for b in &placed[..i] {
                assert!(a.intersection(*b).is_none(), "{a:?} overlaps {b:?}");
            }
        }
        // No room left for a big one: it overlaps, but no title bar goes out of sight.
        let placed = place_all(out, &[(400, 300), (600, 400), (640, 480)]);
        for (i, later) in placed.iter().enumerate() {
            for earlier in &placed[..i] {
                let bar = rect(earlier.loc.x, earlier.loc.y, earlier.size.w, M.title);
                assert!(
                    !later.contains_rect(bar),
                    "{later:?} hides the title bar of {earlier:?}"
                );
            }
        }
        // Bigger than the output: still starts with its title bar on it.
        let big = place_new((5000, 5000).into(), M, out, &[]);
        assert_eq!(big, Point::from((4, 24)));
    }

    #[test]
    fn windows_near_the_output_size_keep_every_title_bar_in_sight() {
        let out = rect(0, 0, 1280, 800);
        let placed = place_all(out, &[(1200, 700), (1200, 700), (1200, 700)]);
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[..i] {
                assert!(
                    (a.loc.x - b.loc.x).abs() >= M.title || (a.loc.y - b.loc.y).abs() >= M.title,
                    "{a:?} sits on {b:?}"
                );
            }
        }
    }

    #[test]
    fn resizes_respect_sane_bounds_and_survive_nonsense() {
        assert_eq!(
            resize_to((500, 400), (100, 100), (600, 300)),
            Size::from((500, 300))
        );
        assert_eq!(
            resize_to((500, 400), (0, 0), (0, 0)),
            Size::from((500, 400))
        );
        // min above max (the crash of a hostile client): min wins, within the limits.
        assert_eq!(
            resize_to((150, 100), (20_000, 20_000), (100, 100)),
            Size::from((16384, 6144))
        );
        assert_eq!(
            resize_to((-5, i32::MIN), (-1, -1), (-1, -1)),
            Size::from((1, 1))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Wherever a window is and however big, after clamping its title bar can be grabbed.
        #[test]
        fn clamped_title_bars_are_reachable(x in -100_000i32..100_000, y in -100_000i32..100_000, w in 0i32..20_000, h in 0i32..20_000) {
            let outs = [rect(0, 0, 1280, 800), rect(1280, 0, 1920, 1080)];
            let size = clamp_size((w, h).into());
            let p = clamp_position(Rectangle::new((x, y).into(), size), M, FrameKind::Full, &outs);
            let bar = M.title_bar(Rectangle::new(p, size), FrameKind::Full);
            let bounds = outs[0].merge(outs[1]);
            proptest::prop_assert!(bar.loc.y >= bounds.loc.y && bar.loc.y + M.title <= bounds.loc.y + bounds.size.h);
            let visible = (bar.loc.x + bar.size.w).min(bounds.loc.x + bounds.size.w) - bar.loc.x.max(bounds.loc.x);
            proptest::prop_assert!(visible >= MIN_VISIBLE.min(bar.size.w), "visible {}", visible);
        }
    }
}
