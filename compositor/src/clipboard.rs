//! The two-level clipboard, as in Qubes OS. Each domain's clipboard stays inside that domain
//! (see `handlers/seat.rs`); data moves between domains only through the global clipboard,
//! by two deliberate user actions:
//!
//! - clipboard-copy (Ctrl-Shift-C): the focused window's domain hands its clipboard over —
//!   every offered type (at most [`MAX_TYPES`]), each read through a non-blocking pipe on the
//!   event loop, under one size cap for the whole copy and one deadline — into the global
//!   clipboard, which only the compositor holds;
//! - clipboard-paste (Ctrl-Shift-V): the global contents become a compositor-owned selection
//!   of the focused window's domain (its apps paste with their own Ctrl-V), and the global
//!   clipboard is emptied (unless `[clipboard] keep-after-paste`).
//!
//! Each step says in a notification what moved, or why nothing did.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode, PostAction, RegistrationToken};
use smithay::reexports::wayland_server::Resource;
use smithay::wayland::selection::SelectionTarget;

use crate::domain::Domain;
use crate::state::State;

/// At most this many types of one selection are copied.
pub const MAX_TYPES: usize = 32;

/// One type's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub mime: String,
    pub data: Vec<u8>,
    /// Other names the source offered for the same plain text (read once, offered as all).
    pub aliases: Vec<String>,
}

/// Names of plain text, best first: apps offer several for the same bytes.
const PLAIN_TEXT: &[&str] = &[
    "text/plain;charset=utf-8",
    "UTF8_STRING",
    "text/plain",
    "TEXT",
    "STRING",
    "COMPOUND_TEXT",
];

/// The types to read from a selection offering `offered`: one of the plain-text names (with
/// the others as its aliases) and every other type, at most [`MAX_TYPES`].
pub fn types_to_read(offered: &[String]) -> Vec<(String, Vec<String>)> {
    let text: Vec<&String> = offered
        .iter()
        .filter(|m| PLAIN_TEXT.iter().any(|p| p.eq_ignore_ascii_case(m)))
        .collect();
    let best = PLAIN_TEXT
        .iter()
        .find_map(|p| text.iter().find(|m| p.eq_ignore_ascii_case(m)));
    let mut out = Vec::new();
    if let Some(best) = best {
        let aliases = text
            .iter()
            .filter(|m| **m != *best)
            .map(|m| (*m).clone())
            .collect();
        out.push(((*best).clone(), aliases));
    }
    for m in offered {
        if !text.contains(&m) && !out.iter().any(|(o, _)| o == m) {
            out.push((m.clone(), Vec::new()));
        }
    }
    out.truncate(MAX_TYPES);
    out
}

/// A selection the seat offers (always as the compositor's own: see `crate::selections`):
/// what a paste handed to a domain, a host clipboard manager's data-control source, or an
/// app's source kept as its domain's selection.
#[derive(Debug, Clone)]
pub enum SelectionData {
    Pasted(Arc<Contents>),
    Client(smithay::reexports::wayland_server::protocol::wl_data_source::WlDataSource),
    PrimaryClient(
        smithay::reexports::wayland_protocols::wp::primary_selection::zv1::server::zwp_primary_selection_source_v1::ZwpPrimarySelectionSourceV1,
    ),
    Control(
        smithay::reexports::wayland_protocols_wlr::data_control::v1::server::zwlr_data_control_source_v1::ZwlrDataControlSourceV1,
    ),
}

/// What a copy took from a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub from: Domain,
    pub items: Vec<Item>,
}

impl Contents {
    /// "1.2 kB text", "14.0 kB image": the main item, for notifications.
    pub fn describe(&self) -> String {
        let text = self.items.iter().find(|i| is_text(&i.mime));
        let image = self.items.iter().find(|i| i.mime.starts_with("image/"));
        match (text, image, self.items.first()) {
            (Some(t), _, _) => format!("{} text", human(t.data.len())),
            (None, Some(i), _) => format!("{} image", human(i.data.len())),
            (None, None, Some(f)) => format!("{} of {}", human(f.data.len()), f.mime),
            _ => "nothing".into(),
        }
    }

    pub fn mime_types(&self) -> Vec<String> {
        self.items
            .iter()
            .flat_map(|i| std::iter::once(&i.mime).chain(&i.aliases))
            .cloned()
            .collect()
    }

    pub fn total(&self) -> usize {
        self.items.iter().map(|i| i.data.len()).sum()
    }
}

fn is_text(mime: &str) -> bool {
    mime.starts_with("text/") || matches!(mime, "UTF8_STRING" | "STRING" | "TEXT" | "COMPOUND_TEXT")
}

/// Bytes as people read them: "512 B", "1.2 kB", "10.5 MB".
pub fn human(n: usize) -> String {
    match n {
        n if n < 1000 => format!("{n} B"),
        n if n < 1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{:.1} MB", n as f64 / 1e6),
    }
}

/// A copy in progress: one type at a time.
struct Copying {
    from: Domain,
    types: std::collections::VecDeque<(String, Vec<String>)>,
    items: Vec<Item>,
    current: Option<(Item, RegistrationToken)>,
    timer: RegistrationToken,
    total: usize,
}

/// The global clipboard and what moves through it.
#[derive(Default)]
pub struct Clipboards {
    /// Only the compositor holds this; no client can read it.
    pub global: Option<Arc<Contents>>,
    copying: Option<Copying>,
    /// Pastes being written, by id: the pipe's source and its deadline's.
    writers: std::collections::HashMap<u64, (RegistrationToken, RegistrationToken)>,
    next_writer: u64,
}

/// Pastes the compositor writes at once; a request beyond gets an empty paste.
pub const MAX_PASTE_WRITERS: usize = 16;
/// A paste not written within this is cut off (a reader that never reads).
pub const PASTE_DEADLINE: Duration = Duration::from_secs(10);

/// Why a copy ended without data.
enum Failure {
    TooLarge,
    TimedOut,
    Gone,
}

impl State {
    /// clipboard-copy: the focused domain's clipboard into the global one.
    pub fn clipboard_copy(&mut self) -> Result<(), String> {
        let Some(from) = self.desk.focused_domain() else {
            return Err("no window has focus".into());
        };
        if self.desk.clipboard.copying.is_some() {
            return Err("a copy is already under way".into());
        }
        let held = self
            .desk
            .selections
            .get(&from, SelectionTarget::Clipboard)
            .cloned();
        let Some(held) = held else {
            self.desk.notify_for_user(
                &from,
                format!("Nothing copied: {} has no clipboard", label(&from)),
            );
            return Ok(());
        };
        if let SelectionData::Pasted(p) = &held.data {
            // The domain's selection is what the compositor pasted there: copy it back.
            let c = Arc::new(Contents {
                from: from.clone(),
                items: p.items.clone(),
            });
            self.finish_copy_with(c);
            return Ok(());
        }
        let types = types_to_read(&held.types);
        if types.is_empty() {
            self.desk.notify_for_user(
                &from,
                format!("Nothing copied: {}'s clipboard is empty", label(&from)),
            );
            return Ok(());
        }
        let timeout = Duration::from_secs(self.desk.config.clipboard.timeout.0);
        let timer = self
            .desk
            .loop_handle
            .insert_source(Timer::from_duration(timeout), |_, _, state| {
                state.fail_copy(Failure::TimedOut);
                TimeoutAction::Drop
            })
            .map_err(|e| format!("cannot start the copy: {e}"))?;
        self.desk.clipboard.copying = Some(Copying {
            from,
            types: types.into(),
            items: Vec::new(),
            current: None,
            timer,
            total: 0,
        });
        self.next_type();
        Ok(())
    }

    /// Asks the source for the next type, or finishes.
    fn next_type(&mut self) {
        let Some(c) = self.desk.clipboard.copying.as_mut() else {
            return;
        };
        let Some((mime, aliases)) = c.types.pop_front() else {
            let c = self.desk.clipboard.copying.take();
            if let Some(c) = c {
                self.desk.loop_handle.remove(c.timer);
                if c.total == 0 {
                    self.report_failure(&c.from, Failure::Gone);
                    return;
                }
                self.finish_copy_with(Arc::new(Contents {
                    from: c.from,
                    items: c.items,
                }));
            }
            return;
        };
        // Only our end is non-blocking: the source's end behaves as apps expect.
        let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).and_then(|(r, w)| {
            nix::fcntl::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&r),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )?;
            Ok((r, w))
        });
        let Ok((r, w)) = pipe else {
            return self.fail_copy(Failure::Gone);
        };
        let from = c.from.clone();
        if self
            .serve_domain_selection(&from, SelectionTarget::Clipboard, &mime, w)
            .is_err()
        {
            return self.fail_copy(Failure::Gone);
        }
        // Our copy of the write end is gone with `w`: EOF comes when the source closes its own.
        let token = self.desk.loop_handle.insert_source(
            Generic::new(std::fs::File::from(r), Interest::READ, Mode::Level),
            |_, file, state| Ok(state.read_type(file)),
        );
        match token {
            Ok(t) => {
                if let Some(c) = self.desk.clipboard.copying.as_mut() {
                    let item = Item {
                        mime,
                        data: Vec::new(),
                        aliases,
                    };
                    c.current = Some((item, t));
                }
            }
            Err(_) => self.fail_copy(Failure::Gone),
        }
    }

    /// Reads what is there of the current type without blocking.
    fn read_type(&mut self, mut file: &std::fs::File) -> PostAction {
        let max = self.desk.config.clipboard.max_size.0 as usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Some(c) = self.desk.clipboard.copying.as_mut() else {
                return PostAction::Remove;
            };
            let failure = match file.read(&mut buf) {
                Ok(0) => {
                    if let Some((item, _)) = c.current.take() {
                        c.items.push(item);
                    }
                    self.next_type();
                    return PostAction::Remove;
                }
                Ok(n) if c.total + n > max => Failure::TooLarge,
                Ok(n) => {
                    c.total += n;
                    if let Some((item, _)) = c.current.as_mut() {
                        item.data.extend_from_slice(&buf[..n]);
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return PostAction::Continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => Failure::Gone,
            };
            // This source goes by our return value, not by fail_copy.
            c.current = None;
            self.fail_copy(failure);
            return PostAction::Remove;
        }
    }

    fn fail_copy(&mut self, why: Failure) {
        let Some(c) = self.desk.clipboard.copying.take() else {
            return;
        };
        if let Some((_, token)) = c.current {
            self.desk.loop_handle.remove(token);
        }
        if !matches!(why, Failure::TimedOut) {
            self.desk.loop_handle.remove(c.timer);
        }
        self.report_failure(&c.from, why);
    }

    fn report_failure(&mut self, from: &Domain, why: Failure) {
        let text = match why {
            Failure::TooLarge => format!(
                "Nothing copied: {}'s clipboard is larger than {}",
                label(from),
                human(self.desk.config.clipboard.max_size.0 as usize)
            ),
            Failure::TimedOut => format!(
                "Nothing copied: {} did not hand over its clipboard within {} s",
                label(from),
                self.desk.config.clipboard.timeout.0
            ),
            Failure::Gone => format!(
                "Nothing copied: {}'s clipboard is gone or empty",
                label(from)
            ),
        };
        tracing::info!("{text}");
        self.desk.notify_for_user(from, text);
    }

    fn finish_copy_with(&mut self, c: Arc<Contents>) {
        let text = format!("Copied {} from {}", c.describe(), label(&c.from));
        tracing::info!("{text}");
        let from = c.from.clone();
        self.desk.clipboard.global = Some(c);
        self.desk.notify_for_user(&from, text);
    }

    /// clipboard-paste: the global clipboard becomes the focused domain's selection.
    pub fn clipboard_paste(&mut self) -> Result<(), String> {
        let Some(to) = self.desk.focused_domain() else {
            return Err("no window has focus".into());
        };
        let Some(global) = self.desk.clipboard.global.clone() else {
            self.desk.notify_for_user(
                &to,
                "Nothing to paste: the global clipboard is empty".into(),
            );
            return Ok(());
        };
        self.set_domain_selection(
            &to,
            SelectionTarget::Clipboard,
            Some((global.mime_types(), SelectionData::Pasted(global.clone()))),
        );
        if !self.desk.config.clipboard.keep_after_paste {
            self.desk.clipboard.global = None;
        }
        let text = format!(
            "Pasted {} from {} into {}",
            global.describe(),
            label(&global.from),
            label(&to)
        );
        tracing::info!("{text}");
        self.desk.notify_for_user(&to, text);
        Ok(())
    }
}

/// Serves a request for a selection the compositor holds.
pub fn serve_selection(state: &mut State, data: &SelectionData, mime: &str, fd: OwnedFd) {
    match data {
        SelectionData::Pasted(c) => state.serve_paste(c, mime, fd),
        SelectionData::Control(src) => {
            if src.is_alive() {
                src.send(mime.to_string(), std::os::fd::AsFd::as_fd(&fd));
            }
        }
        SelectionData::Client(src) => {
            if src.is_alive() {
                src.send(mime.to_string(), std::os::fd::AsFd::as_fd(&fd));
            }
        }
        SelectionData::PrimaryClient(src) => {
            if src.is_alive() {
                src.send(mime.to_string(), std::os::fd::AsFd::as_fd(&fd));
            }
        }
    }
}

/// "[work]", "[host]".
fn label(d: &Domain) -> String {
    format!("[{}]", d.name())
}

impl State {
    /// Writes a pasted item into the pipe an app gave, from the event loop as the pipe takes
    /// it: the data is shared, not copied, at most [`MAX_PASTE_WRITERS`] pastes are written
    /// at once, and each is cut off after [`PASTE_DEADLINE`].
    pub fn serve_paste(&mut self, contents: &Arc<Contents>, mime: &str, fd: OwnedFd) {
        let Some(index) = contents
            .items
            .iter()
            .position(|i| i.mime == mime || i.aliases.iter().any(|a| a == mime))
        else {
            return;
        };
        let clipboard = &mut self.desk.clipboard;
        if clipboard.writers.len() >= MAX_PASTE_WRITERS {
            tracing::warn!("{MAX_PASTE_WRITERS} pastes are being written; refusing one more");
            return;
        }
        if let Err(e) = nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        ) {
            tracing::warn!("cannot paste: {e}");
            return;
        }
        let id = clipboard.next_writer;
        clipboard.next_writer += 1;
        let contents = contents.clone();
        let mut written = 0;
        let pipe = Generic::new(std::fs::File::from(fd), Interest::WRITE, Mode::Level);
        let source = self
            .desk
            .loop_handle
            .insert_source(pipe, move |_, pipe, state| {
                let data = &contents.items[index].data;
                // SAFETY: the file is not dropped or replaced while the source runs.
                let file = unsafe { pipe.get_mut() };
                loop {
                    if written >= data.len() {
                        break;
                    }
                    match file.write(&data[written..]) {
                        Ok(0) => break,
                        Ok(n) => written += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            return Ok(PostAction::Continue);
                        }
                        Err(_) => break,
                    }
                }
                state.paste_written(id, false);
                Ok(PostAction::Remove)
            });
        let source = match source {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot paste: {e}");
                return;
            }
        };
        let deadline = self.desk.loop_handle.insert_source(
            Timer::from_duration(PASTE_DEADLINE),
            move |_, _, state| {
                tracing::warn!("a paste was not read within {PASTE_DEADLINE:?}; cut off");
                state.paste_written(id, true);
                TimeoutAction::Drop
            },
        );
        match deadline {
            Ok(t) => {
                self.desk.clipboard.writers.insert(id, (source, t));
            }
            Err(e) => {
                tracing::warn!("cannot paste: {e}");
                self.desk.loop_handle.remove(source);
            }
        }
    }

    /// Paste `id` ended: written, failed, or (`timed_out`) cut off at its deadline.
    fn paste_written(&mut self, id: u64, timed_out: bool) {
        if let Some((pipe, deadline)) = self.desk.clipboard.writers.remove(&id) {
            if timed_out {
                self.desk.loop_handle.remove(pipe);
            } else {
                self.desk.loop_handle.remove(deadline);
            }
        }
    }

    /// Pastes being written now.
    pub fn pastes_in_flight(&self) -> usize {
        self.desk.clipboard.writers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_described_by_their_main_item() {
        let c = Contents {
            from: Domain::Host,
            items: vec![
                Item {
                    mime: "image/png".into(),
                    data: vec![0; 14_000],
                    aliases: vec![],
                },
                Item {
                    mime: "text/plain;charset=utf-8".into(),
                    data: vec![b'a'; 1234],
                    aliases: vec![],
                },
            ],
        };
        assert_eq!(c.describe(), "1.2 kB text");
        let c = Contents {
            from: Domain::Host,
            items: vec![Item {
                mime: "image/png".into(),
                data: vec![0; 14_000],
                aliases: vec![],
            }],
        };
        assert_eq!(c.describe(), "14.0 kB image");
        assert_eq!(human(999), "999 B");
        assert_eq!(human(10 * 1024 * 1024), "10.5 MB");
    }

    #[test]
    fn plain_text_is_read_once_under_its_best_name() {
        let offered: Vec<String> = ["TEXT", "text/html", "UTF8_STRING", "text/plain", "STRING"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = types_to_read(&offered);
        assert_eq!(t[0].0, "UTF8_STRING");
        assert_eq!(t[0].1, ["TEXT", "text/plain", "STRING"]);
        assert_eq!(t[1], ("text/html".to_string(), vec![]));
        assert_eq!(t.len(), 2);
        let many: Vec<String> = (0..50).map(|i| format!("application/x-{i}")).collect();
        assert_eq!(types_to_read(&many).len(), MAX_TYPES);
    }
}
