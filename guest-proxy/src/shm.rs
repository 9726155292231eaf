//! Shared-memory bookkeeping common to both transports: which part of each app buffer the
//! host's copy lacks, and where those bytes are in the app's pool. Only damaged regions are
//! copied on commit.

use std::collections::HashMap;

use crate::wire::{int, object, Arg};

/// `[x0, y0, x1, y1)` in buffer pixels.
pub type Rect = [i64; 4];

fn union(a: Option<Rect>, b: Rect) -> Option<Rect> {
    Some(match a {
        None => b,
        Some(a) => [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ],
    })
}

/// Everything: what a buffer lacks before its first copy.
const ALL: Rect = [0, 0, i64::MAX, i64::MAX];

/// A wl_shm buffer's place in its pool, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub offset: i64,
    pub width: i64,
    pub height: i64,
    pub stride: i64,
    pub format: u32,
}

/// The bytes of a rectangle of a buffer: rows `start + k * stride + col` for `col` in
/// `[col0, col0 + len)`, `rows` of them, or one run `[start, end)` when whole rows are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub whole_rows: bool,
    pub stride: u64,
    pub col0: u64,
    pub len: u64,
    pub rows: u64,
}

impl Span {
    /// (pool offset, length) of each run of bytes, clipped to `[start, end)`.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let whole = self
            .whole_rows
            .then_some((self.start, self.end - self.start));
        // Rows go up the pool: the first that starts past the end ends the runs (a tall
        // buffer in a short pool must not cost a loop over all its rows).
        let rows = (!self.whole_rows)
            .then(|| {
                (0..self.rows)
                    .map(move |k| self.start + k * self.stride + self.col0)
                    .take_while(move |&at| at < self.end)
                    .map(move |at| (at, (at + self.len).min(self.end) - at))
            })
            .into_iter()
            .flatten();
        whole.into_iter().chain(rows)
    }
}

impl Layout {
    /// Checks a create_buffer's arguments (a later clamp must never see a negative size).
    pub fn new(
        offset: i64,
        width: i64,
        height: i64,
        stride: i64,
        format: u32,
    ) -> Result<Layout, String> {
        if offset < 0 || width <= 0 || height <= 0 || stride <= 0 {
            return Err(format!(
                "buffer {width}x{height} stride {stride} at {offset} is invalid"
            ));
        }
        Ok(Layout {
            offset,
            width,
            height,
            stride,
            format,
        })
    }

    /// Bytes per pixel of the formats whose damaged columns can be copied alone; others
    /// copy whole rows.
    fn bpp(&self) -> i64 {
        const ARGB: u32 = 0;
        const XRGB: u32 = 1;
        const AR24: u32 = 0x3432_5241;
        const XR24: u32 = 0x3432_5258;
        if matches!(self.format, ARGB | XRGB | AR24 | XR24) {
            4
        } else {
            0
        }
    }

    /// Where rectangle `r` (clamped to the buffer) is in a pool of `pool_size` bytes.
    pub fn span(&self, r: Rect, pool_size: u64) -> Option<Span> {
        let (x0, y0) = (r[0].clamp(0, self.width), r[1].clamp(0, self.height));
        let (x1, y1) = (r[2].clamp(0, self.width), r[3].clamp(0, self.height));
        if x0 >= x1 || y0 >= y1 {
            return None;
        }
        let bpp = self.bpp();
        // Damaged columns alone when they lie inside the stride; whole rows for other
        // formats, for wide damage, and for a buffer wider than its stride (which the host
        // refuses, but whose damage must not make an inverted run here).
        let (c0, c1) = (x0 * bpp, (x1 * bpp).min(self.stride));
        let (c0, c1) = if bpp == 0 || (x1 - x0).saturating_mul(bpp) >= self.stride || c0 >= c1 {
            (0, self.stride)
        } else {
            (c0, c1)
        };
        let start = self.offset.checked_add(y0.checked_mul(self.stride)?)?;
        let end = self
            .offset
            .checked_add((y1 - 1).checked_mul(self.stride)?)?
            .checked_add(c1)?
            .min(pool_size as i64);
        if start >= end {
            return None;
        }
        Some(Span {
            start: start as u64,
            end: end as u64,
            whole_rows: c0 == 0 && c1 == self.stride,
            stride: self.stride as u64,
            col0: c0 as u64,
            len: (c1 - c0) as u64,
            rows: (y1 - y0) as u64,
        })
    }
}

#[derive(Default)]
struct Surface {
    /// Buffers this surface has shown (their staleness follows its damage).
    seen: Vec<u32>,
    buffer: Option<u32>,
    damage: Vec<[i64; 4]>,
    buffer_damage: Vec<[i64; 4]>,
    scale: i64,
    transform: u32,
    /// A wp_viewport scales or crops it: surface damage no longer maps to buffer pixels.
    viewport: bool,
}

/// Damage of one app's surfaces and the staleness of its buffers.
#[derive(Default)]
pub struct Damage {
    surfaces: HashMap<u32, Surface>,
    /// wp_viewport objects and the surface each belongs to.
    viewports: HashMap<u32, u32>,
    /// What the host's copy of each buffer lacks: everything at first, then every damage
    /// committed (to any buffer of a surface that showed it) since it was last copied. Apps
    /// repaint exactly that into a buffer they reuse.
    stale: HashMap<u32, Option<Rect>>,
}

impl Damage {
    fn surface(&mut self, id: u32) -> &mut Surface {
        self.surfaces.entry(id).or_insert_with(|| Surface {
            scale: 1,
            ..Surface::default()
        })
    }

    pub fn add_buffer(&mut self, id: u32) {
        self.stale.insert(id, Some(ALL));
    }

    pub fn remove_buffer(&mut self, id: u32) {
        self.stale.remove(&id);
    }

    pub fn attach(&mut self, surface: u32, buffer: Option<u32>) {
        self.surface(surface).buffer = buffer;
    }

    /// wl_surface.damage (surface coordinates) or damage_buffer: `[x, y, width, height]`.
    pub fn damage(&mut self, surface: u32, r: [i64; 4], buffer_coords: bool) {
        let s = self.surface(surface);
        let list = if buffer_coords {
            &mut s.buffer_damage
        } else {
            &mut s.damage
        };
        if list.len() < 256 {
            list.push(r);
        } else {
            // Too many rectangles: one covering everything.
            list.clear();
            list.push([0, 0, i32::MAX as i64, i32::MAX as i64]);
        }
    }

    pub fn set_scale(&mut self, surface: u32, scale: i64) {
        self.surface(surface).scale = scale.clamp(1, 16);
    }

    pub fn set_transform(&mut self, surface: u32, transform: u32) {
        self.surface(surface).transform = transform;
    }

    pub fn destroy_surface(&mut self, surface: u32) {
        self.surfaces.remove(&surface);
        // Its viewports are inert now; a new surface under its id starts without them.
        self.viewports.retain(|_, s| *s != surface);
    }

    /// The bookkeeping of a request of `iface`: wl_surface's attach, damage, damage_buffer,
    /// buffer scale and transform and destroy, and the viewports that change how a surface
    /// maps to its buffer; false for the others (commit is the caller's).
    pub fn request(
        &mut self,
        iface: &str,
        sender: u32,
        request: &str,
        args: &[Arg],
    ) -> Result<bool, String> {
        match (iface, request) {
            ("wl_surface", "attach") => {
                let buffer = object(args, 0)?;
                self.attach(sender, (buffer != 0).then_some(buffer));
            }
            ("wl_surface", "damage" | "damage_buffer") => {
                let r = [int(args, 0)?, int(args, 1)?, int(args, 2)?, int(args, 3)?];
                self.damage(sender, r, request == "damage_buffer");
            }
            ("wl_surface", "set_buffer_scale") => self.set_scale(sender, int(args, 0)?),
            ("wl_surface", "set_buffer_transform") => {
                self.set_transform(sender, int(args, 0)? as u32)
            }
            ("wl_surface", "destroy") => self.destroy_surface(sender),
            ("wl_compositor", "create_surface") => {
                self.surface(object(args, 0)?);
            }
            ("wp_viewporter", "get_viewport") => {
                let (viewport, surface) = (object(args, 0)?, object(args, 1)?);
                // Only a surface the app made (any other id is the host's error to raise,
                // and must not grow this map).
                if let Some(s) = self.surfaces.get_mut(&surface) {
                    s.viewport = true;
                    self.viewports.insert(viewport, surface);
                }
            }
            ("wp_viewport", "destroy") => {
                if let Some(surface) = self.viewports.remove(&sender) {
                    if let Some(s) = self.surfaces.get_mut(&surface) {
                        s.viewport = false;
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// On commit: the attached buffer and the part of it the host must get first, if any.
    pub fn commit(&mut self, surface: u32) -> Option<(u32, Rect)> {
        let s = self.surfaces.get_mut(&surface)?;
        let damage = std::mem::take(&mut s.damage);
        let buffer_damage = std::mem::take(&mut s.buffer_damage);
        let id = s.buffer?;
        // This commit's damage in buffer pixels, as one bounding box. Surface damage maps by
        // the scale; with a transform or a viewport, take everything.
        let mut dmg: Option<Rect> = None;
        for r in buffer_damage {
            dmg = union(
                dmg,
                [
                    r[0],
                    r[1],
                    r[0].saturating_add(r[2]),
                    r[1].saturating_add(r[3]),
                ],
            );
        }
        let k = s.scale.max(1);
        for d in damage {
            dmg = union(
                dmg,
                if s.transform == 0 && !s.viewport {
                    [
                        d[0].saturating_mul(k),
                        d[1].saturating_mul(k),
                        d[0].saturating_add(d[2]).saturating_mul(k),
                        d[1].saturating_add(d[3]).saturating_mul(k),
                    ]
                } else {
                    ALL
                },
            );
        }
        if !s.seen.contains(&id) {
            s.seen.push(id);
        }
        // Forget buffers that are gone.
        let stale = &mut self.stale;
        s.seen.retain(|b| stale.contains_key(b));
        if let Some(d) = dmg {
            for b in &s.seen {
                if let Some(st) = stale.get_mut(b) {
                    *st = union(*st, d);
                }
            }
        }
        let r = stale.get_mut(&id)?.take()?;
        Some((id, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_take_damaged_columns_or_whole_rows() {
        let l = Layout::new(0, 16, 16, 64, 1).unwrap();
        let s = l.span([2, 3, 6, 5], 4096).unwrap();
        assert_eq!(
            s.runs().collect::<Vec<_>>(),
            [(3 * 64 + 8, 16), (4 * 64 + 8, 16)]
        );
        // Wide damage: whole rows in one run.
        let s = l.span([0, 1, 16, 3], 4096).unwrap();
        assert_eq!(s.runs().collect::<Vec<_>>(), [(64, 128)]);
        // Clipped to the pool, and to the buffer.
        let s = l.span([0, 0, 99, 99], 100).unwrap();
        assert_eq!(s.runs().collect::<Vec<_>>(), [(0, 100)]);
        assert_eq!(l.span([20, 20, 30, 30], 4096), None);
        // Unknown formats copy whole rows.
        let l = Layout::new(0, 16, 16, 64, 0x2020_3852).unwrap();
        assert!(l.span([2, 3, 6, 5], 4096).unwrap().whole_rows);
        assert!(Layout::new(0, 16, -1, 64, 1).is_err());
    }

    /// Found by the `wire` fuzz target (corpus/wire/regression-*): rows past a short pool
    /// made an inverted run (a subtraction overflow, a panic in debug builds), and a tall
    /// buffer looped over every row; damage past a too-narrow stride made a run of
    /// 2^64 - n bytes.
    #[test]
    fn runs_stay_inside_the_pool_and_the_stride() {
        let l = Layout::new(0, 16, 16, 64, 1).unwrap();
        let s = l.span([2, 0, 6, 16], 100).unwrap();
        assert_eq!(s.runs().collect::<Vec<_>>(), [(8, 16), (72, 16)]);
        let tall = Layout::new(0, 2, i32::MAX as i64, 64, 1).unwrap();
        let s = tall.span([0, 0, 1, i64::MAX], 256).unwrap();
        assert_eq!(s.runs().count(), 4);
        // 100 pixels in a 64-byte stride: columns 20.. start past the row's end.
        let wide = Layout::new(0, 100, 4, 64, 1).unwrap();
        let s = wide.span([20, 0, 22, 4], 4096).unwrap();
        assert!(s.whole_rows);
        assert_eq!(s.runs().collect::<Vec<_>>(), [(0, 256)]);
    }

    /// Surface damage on a surface with a viewport (scaled or cropped) cannot be mapped to
    /// buffer pixels: the whole buffer goes. Buffer damage stays exact, and a surface whose
    /// viewport went is exact again.
    #[test]
    fn a_viewport_makes_surface_damage_take_the_whole_buffer() {
        let mut d = Damage::default();
        let req = |d: &mut Damage, iface, sender, name, args: &[Arg]| {
            assert!(
                d.request(iface, sender, name, args).unwrap(),
                "{iface}.{name}"
            );
        };
        // Damage of 2x2 pixels at the origin, in surface or buffer coordinates, committed.
        let damage = |d: &mut Damage, request| {
            let r = [Arg::Int(0), Arg::Int(0), Arg::Int(2), Arg::Int(2)];
            assert!(d.request("wl_surface", 10, request, &r).unwrap());
            d.commit(10)
        };
        req(
            &mut d,
            "wl_compositor",
            3,
            "create_surface",
            &[Arg::NewId(10)],
        );
        req(
            &mut d,
            "wp_viewporter",
            4,
            "get_viewport",
            &[Arg::NewId(11), Arg::Object(10)],
        );
        d.add_buffer(1);
        req(
            &mut d,
            "wl_surface",
            10,
            "attach",
            &[Arg::Object(1), Arg::Int(0), Arg::Int(0)],
        );
        d.commit(10);
        assert_eq!(damage(&mut d, "damage"), Some((1, ALL)));
        assert_eq!(damage(&mut d, "damage_buffer"), Some((1, [0, 0, 2, 2])));
        req(&mut d, "wp_viewport", 11, "destroy", &[]);
        assert_eq!(damage(&mut d, "damage"), Some((1, [0, 0, 2, 2])));
        // A viewport of an id that is no surface of the app's changes nothing, keeps nothing.
        for bogus in 1000..1100 {
            req(
                &mut d,
                "wp_viewporter",
                4,
                "get_viewport",
                &[Arg::NewId(12), Arg::Object(bogus)],
            );
            req(&mut d, "wp_viewport", 12, "destroy", &[]);
        }
        assert_eq!(d.surfaces.len(), 1);
        assert!(d.viewports.is_empty());
    }

    #[test]
    fn a_reused_buffer_gets_what_it_missed() {
        let mut d = Damage::default();
        d.add_buffer(1);
        d.add_buffer(2);
        d.attach(10, Some(1));
        d.damage(10, [0, 0, 4, 4], true);
        assert_eq!(d.commit(10), Some((1, ALL)));
        d.attach(10, Some(2));
        d.damage(10, [8, 8, 2, 2], true);
        assert_eq!(d.commit(10), Some((2, ALL)));
        // Back to buffer 1: it lacks what was drawn into 2 since.
        d.attach(10, Some(1));
        d.damage(10, [0, 0, 1, 1], true);
        assert_eq!(d.commit(10), Some((1, [0, 0, 10, 10])));
        // Nothing new: nothing to copy.
        assert_eq!(d.commit(10), None);
    }
}
