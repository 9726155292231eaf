//! App icons for the launcher: the PNG or SVG files the config names (`icon = "…"` of an app;
//! a VM image's come out of the guest through build-guest, so they are guest data).
//!
//! Decoding is bounded: a file of at most [`MAX_BYTES`], a PNG of at most [`MAX_SIDE`] pixels
//! a side (checked before its pixels are decoded), an SVG parsed without a DTD (no entities),
//! with at most [`MAX_SVG_NODES`] nodes, no markers, and references (`<use>`, patterns,
//! clips, masks, filters) that expand to at most [`MAX_SVG_WORK`] nodes, never loading a file
//! or image it references, and
//! drawn straight at the icon's size after what drawing it would cost was checked (`svg`).
//! Icons are decoded when the config is loaded, each in a confined process of its own
//! (`process`: a decoder that crashes or runs away loses that icon, not the session), driven
//! from a worker thread, so the compositor never waits on one; an icon that fails is logged
//! and not drawn.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use resvg::tiny_skia::{self, Pixmap, PixmapPaint, Transform};
use resvg::usvg;

mod process;
mod svg;
pub use process::{
    decode_isolated, decoder_main, finish, spawn_decoder, Limits, DECODER_COMMAND, DECODER_PROGRAM,
};
pub use svg::{
    MAX_FILTER_PRIMITIVES, MAX_FILTER_REACH, MAX_KERNEL_ENTRIES, MAX_PATTERN_TILE, MAX_SHAPE_REACH,
    MAX_SVG_DEPTH, MAX_SVG_NODES, MAX_SVG_WORK, MAX_TURBULENCE_OCTAVES,
};

/// Icons are drawn at this many pixels a side.
pub const SIZE: u32 = 20;
/// The largest icon file read.
pub const MAX_BYTES: u64 = 1 << 20;
/// The largest PNG side decoded.
pub const MAX_SIDE: u32 = 1024;
/// Apps whose icons are decoded at most (the rest are drawn without).
pub const MAX_ICONS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum IconError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("it is larger than {} KiB", MAX_BYTES / 1024)]
    TooLarge,
    #[error("it is neither a PNG nor an SVG file")]
    NotAnImage,
    #[error("PNG: {0}")]
    Png(#[from] png::DecodingError),
    #[error("the PNG is {0}×{1} pixels; at most {MAX_SIDE} a side is decoded")]
    PngTooLarge(u32, u32),
    #[error("SVG: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("SVG: {0}")]
    Svg(#[from] usvg::Error),
    #[error("SVG: {0}; such an image costs more to draw than an icon may")]
    TooCostly(&'static str),
    #[error("the image has no area")]
    Empty,
    #[error("cannot run the icon decoder: {0}")]
    Decoder(std::io::Error),
    /// What a decoder process said when it refused the icon (its [`IconError`], as text).
    #[error("{0}")]
    Refused(String),
    #[error("the icon decoder {0}")]
    DecoderDied(String),
}

/// An icon, [`SIZE`]×[`SIZE`], premultiplied B, G, R, A bytes (`Argb8888` in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icon {
    pub bgra: Vec<u8>,
}

/// Reads the icon file at `path`, at most [`MAX_BYTES`].
pub fn read(path: &Path) -> Result<Vec<u8>, IconError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(IconError::TooLarge);
    }
    Ok(bytes)
}

/// Decodes icon bytes (PNG or SVG) into an [`Icon`].
pub fn decode(bytes: &[u8]) -> Result<Icon, IconError> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    let pixmap = if bytes.starts_with(PNG) {
        fit(&png_pixmap(bytes)?)?
    } else if looks_like_svg(bytes) {
        svg::pixmap(bytes)?
    } else {
        return Err(IconError::NotAnImage);
    };
    // tiny-skia holds premultiplied R, G, B, A; the launcher's buffer wants B, G, R, A.
    let mut bgra = pixmap.take();
    for px in bgra.chunks_exact_mut(4) {
        px.swap(0, 2);
    }
    Ok(Icon { bgra })
}

fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    let text = String::from_utf8_lossy(head);
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<')
        && text.contains("<svg")
}

/// The PNG's pixels, premultiplied, after its size was checked.
fn png_pixmap(bytes: &[u8]) -> Result<Pixmap, IconError> {
    // The size, from the header (the first chunk, IHDR), before anything is decoded.
    if let (Some(b"IHDR"), Some(w), Some(h)) = (
        bytes.get(12..16),
        bytes
            .get(16..20)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes),
        bytes
            .get(20..24)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes),
    ) {
        if w > MAX_SIDE || h > MAX_SIDE {
            return Err(IconError::PngTooLarge(w, h));
        }
    }
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(bytes),
        png::Limits {
            bytes: (MAX_SIDE * MAX_SIDE * 8) as usize,
        },
    );
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(IconError::PngTooLarge(w, h));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf)?;
    // The first frame's own size: an animated PNG's may be smaller than the header's.
    let (w, h) = (frame.width, frame.height);
    let data = buf.get(..frame.buffer_size()).ok_or(IconError::Empty)?;
    let mut pixmap = Pixmap::new(w, h).ok_or(IconError::Empty)?;
    let channels = frame.color_type.samples();
    for (i, px) in pixmap.data_mut().chunks_exact_mut(4).enumerate() {
        let (x, y) = (i % w as usize, i / w as usize);
        let at = y * frame.line_size + x * channels;
        let s = data.get(at..at + channels).ok_or(IconError::Empty)?;
        let (r, g, b, a) = match *s {
            [v] => (v, v, v, 0xff),
            [v, a] => (v, v, v, a),
            [r, g, b] => (r, g, b, 0xff),
            [r, g, b, a, ..] => (r, g, b, a),
            [] => return Err(IconError::Empty),
        };
        let pre = |c: u8| ((c as u16 * a as u16 + 127) / 255) as u8;
        px.copy_from_slice(&[pre(r), pre(g), pre(b), a]);
    }
    Ok(pixmap)
}

/// `src` scaled to fit [`SIZE`]×[`SIZE`], centred, aspect kept.
fn fit(src: &Pixmap) -> Result<Pixmap, IconError> {
    let mut out = Pixmap::new(SIZE, SIZE).ok_or(IconError::Empty)?;
    let (w, h) = (src.width() as f32, src.height() as f32);
    let scale = SIZE as f32 / w.max(h);
    let (dx, dy) = (
        (SIZE as f32 - w * scale) / 2.0,
        (SIZE as f32 - h * scale) / 2.0,
    );
    let paint = PixmapPaint {
        quality: tiny_skia::FilterQuality::Bicubic,
        ..Default::default()
    };
    out.draw_pixmap(
        0,
        0,
        src.as_ref(),
        &paint,
        Transform::from_row(scale, 0.0, 0.0, scale, dx, dy),
        None,
    );
    Ok(out)
}

/// The decoded icons of the current config, by file.
#[derive(Default)]
pub struct Icons {
    ready: HashMap<PathBuf, Icon>,
    /// Which decoding is current: one starts with each config (re)load, and the ones before
    /// stop and are not listened to.
    generation: Arc<AtomicU64>,
}

/// One decoded icon: the decoding it came from, its file, and the icon or why not.
pub type Decoded = (u64, PathBuf, Result<Icon, IconError>);

impl Icons {
    /// Whether a result of decoding `generation` is of the current one.
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Relaxed) == generation
    }

    pub fn get(&self, path: &Path) -> Option<&Icon> {
        self.ready.get(path)
    }

    pub fn insert(&mut self, path: PathBuf, icon: Icon) {
        self.ready.insert(path, icon);
    }

    /// Forgets the icons no file of `wanted` names (after a config reload).
    pub fn retain(&mut self, wanted: &[PathBuf]) {
        self.ready.retain(|p, _| wanted.contains(p));
    }
}

/// The icon files of the config's apps, each once, at most [`MAX_ICONS`].
pub fn files(config: &bulkhead_config::Config) -> Vec<PathBuf> {
    let apps = config
        .apps
        .iter()
        .chain(config.vms.iter().flat_map(|vm| vm.spec.apps.iter()));
    let mut out: Vec<PathBuf> = Vec::new();
    for f in apps.filter_map(|a| a.icon_file()) {
        if !out.iter().any(|o| o == f) && out.len() < MAX_ICONS {
            out.push(f.to_path_buf());
        }
    }
    out
}

/// Decodes `paths` on a worker thread, each in a decoder process ([`decode_isolated`]),
/// sending each result to `done` as it comes. This decoding supersedes the one before (of
/// `icons`), which stops at its next file.
pub fn decode_in_background(
    icons: &Icons,
    paths: Vec<PathBuf>,
    done: smithay::reexports::calloop::channel::Sender<Decoded>,
) {
    let current = icons.generation.clone();
    let generation = current.fetch_add(1, Ordering::Relaxed) + 1;
    if paths.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("icons".into())
        .spawn(move || {
            for p in paths {
                if current.load(Ordering::Relaxed) != generation {
                    return;
                }
                let r = read(&p).and_then(|bytes| {
                    decode_isolated(Path::new(DECODER_PROGRAM), &bytes, Limits::DEFAULT)
                });
                if done.send((generation, p, r)).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the icon decoder: {e}; the launcher shows no icons");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, rgba: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgba);
            let mut wr = enc.write_header().unwrap();
            let px: Vec<u8> = rgba
                .iter()
                .copied()
                .cycle()
                .take((w * h * 4) as usize)
                .collect();
            wr.write_image_data(&px).unwrap();
        }
        out
    }

    fn centre(icon: &Icon) -> [u8; 4] {
        let i = ((SIZE / 2 * SIZE + SIZE / 2) * 4) as usize;
        icon.bgra[i..i + 4].try_into().unwrap()
    }

    #[test]
    fn a_png_is_scaled_to_the_icon_size() {
        let icon = decode(&png(64, 64, [0xff, 0, 0, 0xff])).unwrap();
        assert_eq!(icon.bgra.len(), (SIZE * SIZE * 4) as usize);
        assert_eq!(centre(&icon), [0, 0, 0xff, 0xff]);
    }

    #[test]
    fn an_svg_is_drawn_at_the_icon_size() {
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48">
            <rect width="48" height="48" fill="#00ff00"/></svg>"##;
        let icon = decode(svg).unwrap();
        assert_eq!(centre(&icon), [0, 0xff, 0, 0xff]);
    }

    #[test]
    fn hostile_icons_are_refused_before_they_cost_anything() {
        // A PNG header claiming 100000×100000 pixels: refused from its header.
        let mut big = Vec::new();
        {
            let enc = png::Encoder::new(&mut big, 100_000, 100_000);
            let _header_only = enc.write_header();
        }
        assert!(matches!(
            decode(&big),
            Err(IconError::PngTooLarge(100_000, 100_000))
        ));
        // Entities (a billion laughs) need a DTD, which is refused.
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">
            <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
            <svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><text>&b;</text></svg>"#;
        assert!(matches!(decode(laughs), Err(IconError::Xml(_))));
        // <use> multiplying a tree.
        let mut uses = String::from(
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="4" height="4"><g id="g0"><rect width="1" height="1"/></g>"#,
        );
        for i in 1..40 {
            uses.push_str(&format!(
                r##"<g id="g{i}"><use xlink:href="#g{p}"/><use xlink:href="#g{p}"/></g>"##,
                p = i - 1
            ));
        }
        uses.push_str("</svg>");
        assert!(matches!(
            decode(uses.as_bytes()),
            Err(IconError::TooCostly(_))
        ));
        // An image reference to a host file is never loaded.
        let href = br#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="4" height="4">
            <image width="4" height="4" xlink:href="/etc/passwd"/></svg>"#;
        let icon = decode(href).unwrap();
        assert!(icon.bgra.iter().all(|&b| b == 0), "something was drawn");
        // Neither image.
        assert!(matches!(decode(b"GIF89a"), Err(IconError::NotAnImage)));
        assert!(decode(b"\x89PNG\r\n\x1a\ngarbage").is_err());
    }

    #[test]
    fn a_shape_of_astronomic_size_is_refused_before_it_is_drawn() {
        // Found by the icon fuzz target: an ellipse 7.8e21 units tall, whose edges overflowed
        // the rasteriser's fixed point (a debug assertion panicked).
        let svg = include_bytes!("../../fuzz/corpus/icon/refused-huge-ellipse.svg");
        assert!(matches!(decode(svg), Err(IconError::TooCostly(_))));
    }

    #[test]
    fn a_file_over_the_size_cap_is_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.svg");
        std::fs::write(&p, vec![b' '; (MAX_BYTES + 10) as usize]).unwrap();
        assert!(matches!(read(&p), Err(IconError::TooLarge)));
    }
}
