//! Title-bar text: the compositor's own font rasteriser (fontdue with the embedded Hack font),
//! so what a frame says never depends on anything a client sends but the sanitised string.

use std::sync::OnceLock;

use bulkhead_config::Color;
use fontdue::{Font, FontSettings};

/// Bytes of one ARGB8888 pixel.
const BPP: usize = 4;

fn font() -> Option<&'static Font> {
    static FONT: OnceLock<Option<Font>> = OnceLock::new();
    FONT.get_or_init(|| {
        match Font::from_bytes(epaint_default_fonts::HACK_REGULAR, FontSettings::default()) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!("embedded title font failed to load: {e}");
                None
            }
        }
    })
    .as_ref()
}

/// A rendered line of text on an opaque background, ARGB8888 little-endian (`[b, g, r, a]`).
pub struct TextImage {
    pub width: i32,
    pub height: i32,
    pub pixels: Vec<u8>,
}

/// Renders `text` left-aligned (after `pad` pixels) into a `width` × `height` image filled with
/// `bg`; text that does not fit ends with an ellipsis. `dim` draws the text at reduced
/// contrast (unfocused windows).
pub fn render_line(
    text: &str,
    width: i32,
    height: i32,
    pad: i32,
    fg: Color,
    bg: Color,
    dim: bool,
) -> TextImage {
    let (w, h) = (width.max(1) as usize, height.max(1) as usize);
    let mut pixels = vec![0u8; w * h * BPP];
    for px in pixels.chunks_exact_mut(BPP) {
        px.copy_from_slice(&[bg.b, bg.g, bg.r, 0xff]);
    }
    let Some(font) = font() else {
        return TextImage {
            width: w as i32,
            height: h as i32,
            pixels,
        };
    };
    let size = (h as f32 * 0.58).round().max(8.0);
    let Some(lm) = font.horizontal_line_metrics(size) else {
        return TextImage {
            width: w as i32,
            height: h as i32,
            pixels,
        };
    };
    let baseline = ((h as f32 + lm.ascent + lm.descent) / 2.0).round() as i32;
    let glyphs = fit_text(font, text, size, (w as i32 - 2 * pad).max(0) as f32);
    let strength = if dim { 0.6 } else { 1.0 };
    let mut pen = pad as f32;
    for c in glyphs.chars() {
        let (m, bitmap) = font.rasterize(c, size);
        let gx = pen.round() as i32 + m.xmin;
        let gy = baseline - m.ymin - m.height as i32;
        for row in 0..m.height {
            let y = gy + row as i32;
            if y < 0 || y >= h as i32 {
                continue;
            }
            for col in 0..m.width {
                let x = gx + col as i32;
                if x < 0 || x >= w as i32 {
                    continue;
                }
                let cov = bitmap[row * m.width + col] as f32 / 255.0 * strength;
                if cov <= 0.0 {
                    continue;
                }
                let i = (y as usize * w + x as usize) * BPP;
                let blend = |f: u8, b: u8| (f as f32 * cov + b as f32 * (1.0 - cov)).round() as u8;
                pixels[i] = blend(fg.b, bg.b);
                pixels[i + 1] = blend(fg.g, bg.g);
                pixels[i + 2] = blend(fg.r, bg.r);
            }
        }
        pen += m.advance_width;
    }
    TextImage {
        width: w as i32,
        height: h as i32,
        pixels,
    }
}

/// Advance width of `text` at `size`.
pub fn text_width(text: &str, size: f32) -> f32 {
    font().map_or(0.0, |f| {
        text.chars().map(|c| f.metrics(c, size).advance_width).sum()
    })
}

/// The longest prefix of `text` (plus "…" when cut) whose advance fits in `max`.
fn fit_text(font: &Font, text: &str, size: f32, max: f32) -> String {
    let adv = |c: char| font.metrics(c, size).advance_width;
    let total: f32 = text.chars().map(adv).sum();
    if total <= max {
        return text.to_string();
    }
    let ell = adv('…');
    let mut out = String::new();
    let mut used = 0.0;
    for c in text.chars() {
        let a = adv(c);
        if used + a + ell > max {
            break;
        }
        used += a;
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BG: Color = Color::rgb(0x30, 0x60, 0xff);
    const FG: Color = Color::rgb(255, 255, 255);

    fn fg_pixels(img: &TextImage) -> usize {
        img.pixels
            .chunks_exact(4)
            .filter(|p| p[0] > 0xf0 && p[1] > 0xf0 && p[2] > 0xf0)
            .count()
    }

    #[test]
    fn text_is_drawn_on_an_opaque_background() {
        let img = render_line("[work] foot", 300, 24, 8, FG, BG, false);
        assert_eq!(img.pixels.len(), 300 * 24 * 4);
        assert!(img.pixels.chunks_exact(4).all(|p| p[3] == 0xff));
        assert!(fg_pixels(&img) > 40, "no text pixels");
        // The corner stays background.
        assert_eq!(&img.pixels[0..4], &[BG.b, BG.g, BG.r, 0xff]);
    }

    #[test]
    fn long_text_is_cut_inside_the_bar() {
        let img = render_line(&"W".repeat(500), 120, 24, 8, FG, BG, false);
        // Nothing drawn in the right padding.
        for y in 0..24 {
            for x in 113..120 {
                let i = (y * 120 + x) * 4;
                assert_eq!(&img.pixels[i..i + 3], &[BG.b, BG.g, BG.r], "pixel {x},{y}");
            }
        }
        assert!(text_width("abc", 14.0) > 0.0);
    }

    #[test]
    fn tiny_and_empty_sizes_do_not_panic() {
        let img = render_line("x", 0, 0, 8, FG, BG, true);
        assert_eq!((img.width, img.height), (1, 1));
        render_line("", 10, 10, 100, FG, BG, false);
    }
}
