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
/// Notices a VM may cause in [`VM_WINDOW`]; more are only counted, and the next one shown
/// says how many were left out.
pub const VM_BURST: usize = 3;
pub const VM_WINDOW: Duration = Duration::from_secs(10);
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
    /// How long it stays ([`LIFETIME`], or longer for what the user must not miss).
    lifetime: Duration,
    /// The VM that caused it (`None`: the host or the compositor itself).
    owner: Option<String>,
    /// Notices of one kind and source share a key and one place on screen (see
    /// [`Notifications::push_counted`]); how many events it stands for.
    key: Option<String>,
    count: usize,
    /// The rendered notice: strip + text, ARGB8888.
    pub buffer: MemoryRenderBuffer,
}

/// The notices on screen. A VM holds at most one place (its newer notice replaces its older
/// one), may cause [`VM_BURST`] per [`VM_WINDOW`], and never pushes off a notice of the host
/// or of another VM that is still fresh: whatever a VM does, the others stay readable.
#[derive(Default)]
pub struct Notifications {
    pub shown: Vec<Notice>,
    rates: std::collections::HashMap<String, Rate>,
}

/// How many notices a VM caused in its current window, and how many were left out.
#[derive(Debug, Clone, Copy)]
struct Rate {
    since: Instant,
    shown: usize,
    left_out: usize,
}

impl Notifications {
    /// A notice of `owner` (a VM's name; `None` for the host).
    pub fn push(&mut self, owner: Option<&str>, text: String, color: Color) {
        self.push_at(owner, text, color, Instant::now());
    }

    pub fn push_at(&mut self, owner: Option<&str>, text: String, color: Color, now: Instant) {
        let Some(text) = self.admit(owner, text, now) else {
            return;
        };
        self.push_notice(owner, text, color, None, 1, now);
    }

    /// A host notice that stays `lifetime` (a broken config at login, which the user must not
    /// miss while the session comes up).
    pub fn push_lasting(&mut self, text: String, color: Color, lifetime: Duration) {
        let now = Instant::now();
        self.push_notice(None, text, color, None, 1, now);
        if let Some(n) = self.shown.last_mut() {
            n.lifetime = lifetime;
        }
    }

    /// A notice that a source may cause again and again (a VM opening windows): while one of
    /// the same `key` is shown, it is replaced in place, its text made by `text` from how many
    /// events it now stands for.
    pub fn push_counted(
        &mut self,
        owner: Option<&str>,
        key: String,
        color: Color,
        text: impl Fn(usize) -> String,
    ) {
        let now = Instant::now();
        let shown = self
            .shown
            .iter()
            .position(|n| n.key.as_deref() == Some(&key));
        let count = shown.map_or(1, |i| self.shown[i].count + 1);
        // A count going up in place takes no new place, so only a new notice is rated.
        let text = match shown {
            Some(_) => text(count),
            None => match self.admit(owner, text(count), now) {
                Some(t) => t,
                None => return,
            },
        };
        self.push_notice(owner, text, color, Some(key), count, now);
    }

    /// Applies a VM's rate: the text to show (saying how many were left out), or `None`.
    fn admit(&mut self, owner: Option<&str>, text: String, now: Instant) -> Option<String> {
        let Some(vm) = owner else {
            return Some(text);
        };
        let rate = self.rates.entry(vm.to_string()).or_insert(Rate {
            since: now,
            shown: 0,
            left_out: 0,
        });
        if now.duration_since(rate.since) >= VM_WINDOW {
            rate.since = now;
            rate.shown = 0;
        }
        if rate.shown >= VM_BURST {
            rate.left_out += 1;
            return None;
        }
        rate.shown += 1;
        Some(match std::mem::take(&mut rate.left_out) {
            0 => text,
            n => format!("{text} (+{n} more)"),
        })
    }

    fn push_notice(
        &mut self,
        owner: Option<&str>,
        text: String,
        color: Color,
        key: Option<String>,
        count: usize,
        now: Instant,
    ) {
        if let Some(vm) = owner {
            // One place per VM.
            self.shown.retain(|n| n.owner.as_deref() != Some(vm));
        } else if let Some(k) = &key {
            self.shown.retain(|n| n.key.as_ref() != Some(k));
        }
        if self.shown.len() >= MAX_SHOWN {
            // Room is made from the oldest notice a VM caused; a VM's notice never takes the
            // place of the host's.
            match self.shown.iter().position(|n| n.owner.is_some()) {
                Some(i) => {
                    self.shown.remove(i);
                }
                None if owner.is_some() => return,
                None => {
                    self.shown.remove(0);
                }
            }
        }
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
            created: now,
            lifetime: LIFETIME,
            owner: owner.map(str::to_string),
            key,
            count,
            buffer,
        });
    }

    /// Drops expired notices; true when something changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.shown.len();
        self.shown
            .retain(|n| now.duration_since(n.created) < n.lifetime);
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
            n.push(None, format!("notice {i}"), Color::rgb(1, 2, 3));
        }
        assert_eq!(n.shown.len(), MAX_SHOWN);
        assert_eq!(n.shown[0].text, "notice 2");
        assert!(!n.expire(Instant::now()));
        assert!(n.expire(Instant::now() + LIFETIME));
        assert!(n.shown.is_empty());
    }

    #[test]
    fn a_vm_holds_one_place_at_a_limited_rate_and_never_evicts_the_host() {
        let c = Color::rgb(1, 2, 3);
        let t0 = Instant::now();
        let mut n = Notifications::default();
        n.push_at(None, "host 1".into(), c, t0);
        n.push_at(Some("other"), "[other] hello".into(), c, t0);
        for i in 0..1000 {
            n.push_at(Some("evil"), format!("[evil] {i}"), c, t0);
        }
        let texts: Vec<_> = n.shown.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["host 1", "[other] hello", "[evil] 2"]);
        // Past the window, the next one says how many were left out.
        let t1 = t0 + VM_WINDOW;
        n.push_at(Some("evil"), "[evil] again".into(), c, t1);
        assert_eq!(n.shown[2].text, "[evil] again (+997 more)");
        // A full screen of host notices: a VM's notice waits, the host's stay.
        for i in 0..MAX_SHOWN {
            n.push_at(None, format!("host {i}"), c, t1);
        }
        assert!(n.shown.iter().all(|s| s.owner.is_none()));
        n.push_at(Some("evil"), "[evil] late".into(), c, t1 + VM_WINDOW);
        assert!(n.shown.iter().all(|s| s.owner.is_none()));
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
