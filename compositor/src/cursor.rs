//! Named cursors (cursor-shape-v1, and the compositor's own default) drawn from the host's
//! xcursor theme: `XCURSOR_THEME` (else `default`, which distributions point at their theme)
//! at `XCURSOR_SIZE` (else 24) times the output's scale. A shape the theme lacks, or no theme
//! at all, draws the compositor's built-in arrow. The theme is host data; VM apps only pick a
//! shape from cursor-shape-v1's fixed list.

use std::collections::HashMap;

use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::element::memory::MemoryRenderBuffer;
use smithay::input::pointer::CursorIcon;
use smithay::utils::{Logical, Point, Transform};

/// Largest cursor file read (Adwaita's are up to about 1 MiB with every size and frame).
const MAX_FILE: u64 = 8 * 1024 * 1024;

/// One cursor image: its pixels and the point of it that is the pointer.
#[derive(Clone)]
pub struct Cursor {
    pub buffer: MemoryRenderBuffer,
    pub hotspot: Point<i32, Logical>,
}

pub struct Cursors {
    theme: xcursor::CursorTheme,
    size: u32,
    /// Loaded cursors by shape and scale (`None`: the theme has no such shape).
    cache: HashMap<(CursorIcon, u32), Option<Cursor>>,
    arrow: Cursor,
}

impl Cursors {
    /// The theme and size the environment names.
    pub fn from_env() -> Cursors {
        let theme = std::env::var("XCURSOR_THEME")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "default".into());
        let size = std::env::var("XCURSOR_SIZE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s| (8..=256).contains(s))
            .unwrap_or(24);
        Cursors::new(&theme, size)
    }

    pub fn new(theme: &str, size: u32) -> Cursors {
        Cursors {
            theme: xcursor::CursorTheme::load(theme),
            size,
            cache: HashMap::new(),
            arrow: Cursor {
                buffer: crate::render::default_cursor_buffer(),
                hotspot: Point::from((0, 0)),
            },
        }
    }

    /// The cursor for `icon` at an output scale of `scale` (the theme's, else the arrow).
    pub fn get(&mut self, icon: CursorIcon, scale: u32) -> &Cursor {
        let scale = scale.clamp(1, 8);
        let (theme, size) = (&self.theme, self.size);
        let found = self
            .cache
            .entry((icon, scale))
            .or_insert_with(|| load(theme, icon, size * scale, scale));
        found.as_ref().unwrap_or(&self.arrow)
    }
}

/// `icon` from `theme` at the image size nearest `pixels`, first frame, as a buffer of
/// buffer scale `scale`.
fn load(theme: &xcursor::CursorTheme, icon: CursorIcon, pixels: u32, scale: u32) -> Option<Cursor> {
    use std::io::Read;
    let path = std::iter::once(icon.name())
        .chain(icon.alt_names().iter().copied())
        .find_map(|name| theme.load_icon(name))?;
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_FILE).read_to_end(&mut bytes))
        .ok()?;
    let images = xcursor::parser::parse_xcursor(&bytes)?;
    let nearest = images
        .iter()
        .min_by_key(|i| (i.size.abs_diff(pixels), i.delay))?
        .size;
    let image = images.iter().find(|i| i.size == nearest)?;
    let (w, h) = (
        i32::try_from(image.width).ok()?,
        i32::try_from(image.height).ok()?,
    );
    if image.pixels_rgba.len() != (image.width as usize) * (image.height as usize) * 4 {
        return None;
    }
    let s = scale as i32;
    Some(Cursor {
        // The file's pixels are little-endian ARGB words: DRM's ARGB8888.
        buffer: MemoryRenderBuffer::from_slice(
            &image.pixels_rgba,
            Fourcc::Argb8888,
            (w, h),
            s,
            Transform::Normal,
            None,
        ),
        hotspot: Point::from((image.xhot as i32 / s, image.yhot as i32 / s)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_theme_or_shape_draws_the_arrow() {
        let mut c = Cursors::new("no-such-theme-anywhere", 24);
        let arrow = c.get(CursorIcon::Text, 1).hotspot;
        assert_eq!(arrow, Point::from((0, 0)));
    }
}
