//! The compositor's own notifications, drawn in the layer reserved for the compositor above
//! every client (fullscreen windows and host overlay surfaces included), so no client can
//! cover or imitate them in place.

use std::time::{Duration, Instant};

use bulkhead_config::Color;
use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::element::memory::MemoryRenderBuffer;
use smithay::utils::Transform;

use crate::text;

/// How long a notification stays.
pub const LIFETIME: Duration = Duration::from_secs(6);
/// At most this many are shown; older ones make room.
pub const MAX_SHOWN: usize = 4;
pub const WIDTH: i32 = 560;
pub const HEIGHT: i32 = 26;
/// Width of the strip in the domain's colour on the left of each notification.
pub const STRIP: i32 = 6;
pub const MARGIN: i32 = 10;
pub const BACKGROUND: Color = Color::rgb(0x26, 0x26, 0x2c);

pub struct Notice {
    pub text: String,
    pub color: Color,
    pub created: Instant,
    /// Notices of one kind and source share a key and one place on screen (see
    /// [`Notifications::push_counted`]); how many events it stands for.
    key: Option<String>,
    count: usize,
    /// The rendered notice: strip + text, ARGB8888.
    pub buffer: MemoryRenderBuffer,
}

#[derive(Default)]
pub struct Notifications {
    pub shown: Vec<Notice>,
}

impl Notifications {
    pub fn push(&mut self, text: String, color: Color) {
        self.push_notice(text, color, None, 1);
    }

    /// A notice that a source may cause again and again (a VM opening windows): while one of
    /// the same `key` is shown, it is replaced in place, its text made by `text` from how many
    /// events it now stands for, so one source can never push the others off the screen.
    pub fn push_counted(&mut self, key: String, color: Color, text: impl Fn(usize) -> String) {
        let count = match self
            .shown
            .iter()
            .position(|n| n.key.as_deref() == Some(&key))
        {
            Some(i) => self.shown.remove(i).count + 1,
            None => 1,
        };
        self.push_notice(text(count), color, Some(key), count);
    }

    fn push_notice(&mut self, text: String, color: Color, key: Option<String>, count: usize) {
        let img = render(&text, color);
        let buffer = MemoryRenderBuffer::from_slice(
            &img.pixels,
            Fourcc::Argb8888,
            (img.width, img.height),
            1,
            Transform::Normal,
            Some(vec![smithay::utils::Rectangle::from_size(
                (img.width, img.height).into(),
            )]),
        );
        self.shown.push(Notice {
            text,
            color,
            created: Instant::now(),
            key,
            count,
            buffer,
        });
        if self.shown.len() > MAX_SHOWN {
            self.shown.remove(0);
        }
    }

    /// Drops expired notices; true when something changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.shown.len();
        self.shown
            .retain(|n| now.duration_since(n.created) < LIFETIME);
        before != self.shown.len()
    }
}

/// A notice as pixels: a strip in the domain colour, then the text on a dark background.
pub fn render(message: &str, color: Color) -> text::TextImage {
    let mut img = text::render_line(
        message,
        WIDTH,
        HEIGHT,
        STRIP + 10,
        Color::rgb(0xee, 0xee, 0xee),
        BACKGROUND,
        false,
    );
    for y in 0..HEIGHT as usize {
        for x in 0..STRIP as usize {
            let i = (y * WIDTH as usize + x) * 4;
            img.pixels[i..i + 4].copy_from_slice(&[color.b, color.g, color.r, 0xff]);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_expire_and_are_capped() {
        let mut n = Notifications::default();
        for i in 0..6 {
            n.push(format!("notice {i}"), Color::rgb(1, 2, 3));
        }
        assert_eq!(n.shown.len(), MAX_SHOWN);
        assert_eq!(n.shown[0].text, "notice 2");
        assert!(!n.expire(Instant::now()));
        assert!(n.expire(Instant::now() + LIFETIME));
        assert!(n.shown.is_empty());
    }

    #[test]
    fn notice_has_its_domain_strip() {
        let img = render("[work] test", Color::rgb(0x30, 0x60, 0xff));
        assert_eq!(&img.pixels[0..4], &[0xff, 0x60, 0x30, 0xff]);
        let i = (5 * WIDTH as usize + (WIDTH as usize - 2)) * 4;
        assert_eq!(
            &img.pixels[i..i + 3],
            &[BACKGROUND.b, BACKGROUND.g, BACKGROUND.r]
        );
    }
}
