//! The clipboard and primary selection between X11 and Wayland apps of one VM: the X side
//! of the bridge, run by the window manager ([`crate::xwm`]) on its connection.
//!
//! X selections are owned by a window and converted on request; Wayland selections are a
//! source the compositor asks to write into a pipe. Xwayland bridges neither, so the proxy
//! does, as an X client and, on Xwayland's Wayland connection, with a data device and a
//! primary-selection device of its own (`crate::crossdomain::xsel`):
//! - An X app takes a selection (XFixes tells us): its TARGETS are read and become a Wayland
//!   source's mime types ([`Change::Selection`]). When the compositor asks that source for
//!   data ([`XSelections::send`]), the selection is converted into a property of ours (INCR
//!   too) and the bytes go into the compositor's pipe.
//! - The compositor offers Xwayland a selection ([`XSelections::offer`]): our window owns the
//!   X selection. An X app's request is answered from a pipe the offer writes into
//!   ([`Change::Receive`]), read here without blocking, then put on the requestor's property.
//!
//! Selection data is guest data passed between apps of the same VM; the compositor keeps it
//! inside the domain. Everything is bounded: types per selection, characters per type,
//! bytes per transfer, transfers waiting.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xfixes::{self, ConnectionExt as _, SelectionEventMask};
use x11rb::protocol::xproto::{
    self, Atom, AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, PropMode, Property,
    SelectionNotifyEvent, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use crate::xwm::{Change, WmError};

/// Most mime types one selection carries across.
pub const MAX_TYPES: usize = 64;
/// Longest mime type passed on.
pub const MAX_TYPE_LEN: usize = 256;
/// Most bytes one transfer carries, either way.
pub const MAX_TRANSFER: usize = 64 << 20;
/// Most transfers waiting at once, each way.
pub const MAX_WAITING: usize = 32;
/// How long an X app may take to answer one step of a conversion, and a Wayland app to
/// write what an X app asked for.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reader of an X selection may leave its pipe full before the rest is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The type every source of the bridge offers first, besides the X selection's own, with a
/// random instance of its own: the compositor's offer of a selection with that very type is
/// this bridge's X selection coming back, not one to give to X. (One pasted in from another
/// VM, or from this VM's X before Xwayland restarted, has another instance.)
pub const FROM_X: &str = "application/x-bulkhead-from-x11";

/// A marker type for one bridge.
fn marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let instance = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{FROM_X};instance={instance:016x}")
}
/// Bytes read of a property per request.
const CHUNK: u32 = 256 * 1024;

/// Which selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selection {
    Clipboard,
    Primary,
}

impl Selection {
    pub const BOTH: [Selection; 2] = [Selection::Clipboard, Selection::Primary];

    pub fn index(self) -> usize {
        match self {
            Selection::Clipboard => 0,
            Selection::Primary => 1,
        }
    }
}

/// One end of a pipe handed between the window manager and the relay (in a [`Change`] or a
/// notice, which are compared in tests by who made them).
#[derive(Debug, Clone)]
pub struct Pipe(Arc<OwnedFd>);

impl Pipe {
    pub fn new(fd: OwnedFd) -> Pipe {
        Pipe(Arc::new(fd))
    }

    /// The descriptor itself (a copy if a clone of this still lives, which would otherwise
    /// keep the pipe open).
    pub fn into_fd(self) -> std::io::Result<OwnedFd> {
        Arc::try_unwrap(self.0).or_else(|shared| shared.as_fd().try_clone_to_owned())
    }
}

impl PartialEq for Pipe {
    fn eq(&self, other: &Pipe) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Pipe {}

x11rb::atom_manager! {
    /// The atoms of selections.
    pub SelAtoms: SelAtomsCookie {
        CLIPBOARD,
        TARGETS,
        TIMESTAMP,
        MULTIPLE,
        INCR,
        TEXT,
        UTF8_STRING,
        _BULKHEAD_CLIPBOARD,
        _BULKHEAD_PRIMARY,
        _BULKHEAD_TARGETS,
    }
}

/// Wayland asked for an X selection's data: it is converted into our property, then written
/// to `out` (by a thread of its own, so a slow reader never stalls the window manager).
struct Fetch {
    target: Atom,
    out: Option<mpsc::Sender<Vec<u8>>>,
    incr: bool,
    sent: usize,
    started: bool,
    deadline: Instant,
}

/// An X app asked for the Wayland selection: the offer writes into `pipe`.
struct Serve {
    requestor: Window,
    selection: Atom,
    target: Atom,
    property: Atom,
    time: u32,
    pipe: File,
    data: Vec<u8>,
    deadline: Instant,
}

/// The X side of the selection bridge.
pub struct XSelections {
    window: Window,
    atoms: SelAtoms,
    /// Of an X owner: the mime types its targets give, each with the target to convert to.
    x_types: [Vec<(String, Atom)>; 2],
    /// Of the Wayland offer our window owns the X selection for: each target it answers and
    /// the mime type that target is read as.
    offered: [Option<Vec<(Atom, String)>>; 2],
    fetches: [VecDeque<Fetch>; 2],
    serving: Vec<Serve>,
    /// A TARGETS conversion of a new X owner is under way (its answer is stale once our
    /// window took the selection for a Wayland offer).
    targets_pending: [bool; 2],
    /// This bridge's marker type ([`FROM_X`]).
    marker: String,
}

impl XSelections {
    /// Makes the bridge's window and asks XFixes to report every new owner of either
    /// selection.
    pub fn new(conn: &RustConnection, root: Window) -> Result<XSelections, WmError> {
        let atoms = SelAtoms::new(conn)?.reply()?;
        let window = conn.generate_id()?;
        conn.create_window(
            0,
            window,
            root,
            -1,
            -1,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )?;
        for selection in [atoms.CLIPBOARD, AtomEnum::PRIMARY.into()] {
            conn.xfixes_select_selection_input(
                window,
                selection,
                SelectionEventMask::SET_SELECTION_OWNER
                    | SelectionEventMask::SELECTION_WINDOW_DESTROY
                    | SelectionEventMask::SELECTION_CLIENT_CLOSE,
            )?;
        }
        Ok(XSelections {
            window,
            atoms,
            x_types: [Vec::new(), Vec::new()],
            offered: [None, None],
            fetches: [VecDeque::new(), VecDeque::new()],
            serving: Vec::new(),
            targets_pending: [false, false],
            marker: marker(),
        })
    }

    /// The bridge's own window (not an app's).
    pub fn window(&self) -> Window {
        self.window
    }

    fn atom(&self, which: Selection) -> Atom {
        match which {
            Selection::Clipboard => self.atoms.CLIPBOARD,
            Selection::Primary => AtomEnum::PRIMARY.into(),
        }
    }

    fn which(&self, atom: Atom) -> Option<Selection> {
        Selection::BOTH.into_iter().find(|s| self.atom(*s) == atom)
    }

    fn property(&self, which: Selection) -> Atom {
        match which {
            Selection::Clipboard => self.atoms._BULKHEAD_CLIPBOARD,
            Selection::Primary => self.atoms._BULKHEAD_PRIMARY,
        }
    }

    /// XFixes: the selection has a new owner (or none).
    pub fn owner_changed(
        &mut self,
        conn: &RustConnection,
        e: &xfixes::SelectionNotifyEvent,
        changes: &mut Vec<Change>,
    ) -> Result<(), WmError> {
        let Some(which) = self.which(e.selection) else {
            return Ok(());
        };
        if e.owner == self.window {
            return Ok(()); // we took it for a Wayland offer
        }
        self.offered[which.index()] = None;
        self.x_types[which.index()].clear();
        if e.owner == x11rb::NONE {
            changes.push(Change::Selection { which, types: None });
            return Ok(());
        }
        // What the new owner offers; the answer comes as a SelectionNotify.
        self.targets_pending[which.index()] = true;
        conn.convert_selection(
            self.window,
            e.selection,
            self.atoms.TARGETS,
            self.atoms._BULKHEAD_TARGETS,
            e.selection_timestamp,
        )?;
        Ok(())
    }

    /// A SelectionNotify to our window: the targets of a new owner, or data we asked for.
    pub fn notified(
        &mut self,
        conn: &RustConnection,
        e: &SelectionNotifyEvent,
        changes: &mut Vec<Change>,
    ) -> Result<(), WmError> {
        let Some(which) = self.which(e.selection) else {
            return Ok(());
        };
        if e.target == self.atoms.TARGETS {
            // Only the answer to our own request, into our own property (anyone may send a
            // SelectionNotify).
            if !std::mem::take(&mut self.targets_pending[which.index()])
                || e.property != self.atoms._BULKHEAD_TARGETS
            {
                return Ok(());
            }
            let atoms = read_property(conn, self.window, e.property, MAX_TYPES * 16)?;
            let list: Vec<Atom> = atoms
                .1
                .chunks_exact(4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let types = self.types_of(conn, &list)?;
            self.x_types[which.index()] = types.clone();
            let types: Vec<String> = types.into_iter().map(|(t, _)| t).collect();
            changes.push(Change::Selection {
                which,
                types: (!types.is_empty()).then_some(types),
            });
            return Ok(());
        }
        let property = self.property(which);
        let Some(fetch) = self.fetches[which.index()].front_mut() else {
            return Ok(());
        };
        if !fetch.started {
            return Ok(()); // not asked for
        }
        if e.property != property || e.target != fetch.target {
            self.next_fetch(conn, which)?; // refused
            return Ok(());
        }
        let (kind, data) = read_property(conn, self.window, property, MAX_TRANSFER)?;
        if kind == self.atoms.INCR {
            // Chunks follow as the property is deleted and set again.
            fetch.incr = true;
            fetch.deadline = Instant::now() + STEP_TIMEOUT;
            return Ok(());
        }
        fetch.write(data);
        self.next_fetch(conn, which)
    }

    /// A PropertyNotify on our window: the next chunk of an INCR transfer.
    pub fn property_changed(
        &mut self,
        conn: &RustConnection,
        e: &xproto::PropertyNotifyEvent,
    ) -> Result<(), WmError> {
        if e.window != self.window || e.state != Property::NEW_VALUE {
            return Ok(());
        }
        let Some(which) = Selection::BOTH
            .into_iter()
            .find(|s| self.property(*s) == e.atom)
        else {
            return Ok(());
        };
        let Some(fetch) = self.fetches[which.index()].front_mut().filter(|f| f.incr) else {
            return Ok(());
        };
        let (_, data) = read_property(conn, self.window, e.atom, MAX_TRANSFER)?;
        if data.is_empty() {
            return self.next_fetch(conn, which); // the end
        }
        fetch.deadline = Instant::now() + STEP_TIMEOUT;
        if !fetch.write(data) {
            return self.next_fetch(conn, which);
        }
        Ok(())
    }

    /// Reads the mime types of an X owner's targets.
    fn types_of(
        &self,
        conn: &RustConnection,
        targets: &[Atom],
    ) -> Result<Vec<(String, Atom)>, WmError> {
        let mut names = Vec::new();
        let cookies: Vec<_> = targets
            .iter()
            .take(MAX_TYPES * 4)
            .map(|&a| conn.get_atom_name(a).map(|c| (a, c)))
            .collect::<Result<_, _>>()?;
        for (atom, cookie) in cookies {
            // An atom freed in between is skipped.
            if let Ok(r) = cookie.reply() {
                names.push((atom, String::from_utf8_lossy(&r.name).into_owned()));
            }
        }
        let mut types: Vec<(String, Atom)> = Vec::new();
        let mut add = |mime: &str, atom: Atom| {
            if types.len() < MAX_TYPES && !types.iter().any(|(t, _)| t == mime) {
                types.push((mime.to_string(), atom));
            }
        };
        for (atom, name) in &names {
            match name.as_str() {
                "UTF8_STRING" => {
                    add("text/plain;charset=utf-8", *atom);
                    add("UTF8_STRING", *atom);
                }
                "STRING" => add("STRING", *atom),
                n if is_mime(n) => add(n, *atom),
                _ => {}
            }
        }
        // Plain text in the best form the owner has.
        if let Some(atom) = ["UTF8_STRING", "STRING"]
            .iter()
            .find_map(|n| names.iter().find(|(_, name)| name == n).map(|(a, _)| *a))
        {
            add("text/plain", atom);
        }
        if !types.is_empty() {
            types.insert(0, (self.marker.clone(), x11rb::NONE));
        }
        Ok(types)
    }

    /// The compositor asks for the X selection's data as `mime`, written into `fd`.
    pub fn send(
        &mut self,
        conn: &RustConnection,
        which: Selection,
        mime: &str,
        fd: OwnedFd,
    ) -> Result<(), WmError> {
        let Some(&(_, target)) = self.x_types[which.index()]
            .iter()
            .find(|(t, _)| t == mime && !t.starts_with(FROM_X))
        else {
            return Ok(()); // not offered: the reader gets nothing
        };
        let queue = &mut self.fetches[which.index()];
        if queue.len() >= MAX_WAITING {
            return Ok(());
        }
        queue.push_back(Fetch {
            target,
            out: Some(writer(fd)),
            incr: false,
            sent: 0,
            started: false,
            deadline: Instant::now() + STEP_TIMEOUT,
        });
        self.start_fetch(conn, which)
    }

    /// Converts the front transfer's selection, unless it is under way.
    fn start_fetch(&mut self, conn: &RustConnection, which: Selection) -> Result<(), WmError> {
        let property = self.property(which);
        let selection = self.atom(which);
        let Some(fetch) = self.fetches[which.index()].front_mut() else {
            return Ok(());
        };
        if fetch.started {
            return Ok(());
        }
        fetch.started = true;
        fetch.deadline = Instant::now() + STEP_TIMEOUT;
        conn.convert_selection(
            self.window,
            selection,
            fetch.target,
            property,
            x11rb::CURRENT_TIME,
        )?;
        Ok(())
    }

    /// The front transfer is done (its writer sees the end); the next one starts.
    fn next_fetch(&mut self, conn: &RustConnection, which: Selection) -> Result<(), WmError> {
        self.fetches[which.index()].pop_front();
        conn.delete_property(self.window, self.property(which))?;
        self.start_fetch(conn, which)
    }

    /// The compositor offers `types` as the selection (`None`: it has none): our window owns
    /// the X selection for them, or gives it up.
    pub fn offer(
        &mut self,
        conn: &RustConnection,
        which: Selection,
        types: Option<Vec<String>>,
    ) -> Result<(), WmError> {
        let selection = self.atom(which);
        let Some(types) = types else {
            if self.offered[which.index()].take().is_some() {
                conn.set_selection_owner(x11rb::NONE, selection, x11rb::CURRENT_TIME)?;
            }
            return Ok(());
        };
        let mut targets: Vec<(Atom, String)> = Vec::new();
        let has = |m: &str| types.iter().any(|t| t == m);
        let text = [
            "text/plain;charset=utf-8",
            "UTF8_STRING",
            "text/plain",
            "STRING",
        ]
        .into_iter()
        .find(|m| has(m));
        if let Some(text) = text {
            for atom in [
                self.atoms.UTF8_STRING,
                self.atoms.TEXT,
                AtomEnum::STRING.into(),
            ] {
                targets.push((atom, text.to_string()));
            }
        }
        // Only types some X client knows already (X atoms are never freed: a Wayland app
        // must not grow Xwayland's atom table); a client asking for one interns it first.
        let cookies: Vec<_> = types
            .iter()
            .filter(|t| is_mime(t) && !t.starts_with(FROM_X))
            .take(MAX_TYPES)
            .map(|t| conn.intern_atom(true, t.as_bytes()).map(|c| (t.clone(), c)))
            .collect::<Result<_, _>>()?;
        for (mime, cookie) in cookies {
            let atom = cookie.reply()?.atom;
            if atom != x11rb::NONE {
                targets.push((atom, mime));
            }
        }
        self.offered[which.index()] = Some(targets);
        self.x_types[which.index()].clear();
        self.targets_pending[which.index()] = false;
        conn.set_selection_owner(self.window, selection, x11rb::CURRENT_TIME)?;
        Ok(())
    }

    /// Another X client took a selection our window owned.
    pub fn cleared(&mut self, e: &xproto::SelectionClearEvent) {
        if let Some(which) = self.which(e.selection) {
            self.offered[which.index()] = None;
        }
    }

    /// An X app asks for the selection our window owns.
    pub fn requested(
        &mut self,
        conn: &RustConnection,
        e: &xproto::SelectionRequestEvent,
        changes: &mut Vec<Change>,
    ) -> Result<(), WmError> {
        // Obsolete clients name no property: the target is the property.
        let property = if e.property == x11rb::NONE {
            e.target
        } else {
            e.property
        };
        let answer = |property: Atom| -> Result<(), WmError> {
            let event = SelectionNotifyEvent {
                response_type: xproto::SELECTION_NOTIFY_EVENT,
                sequence: 0,
                time: e.time,
                requestor: e.requestor,
                selection: e.selection,
                target: e.target,
                property,
            };
            conn.send_event(false, e.requestor, EventMask::NO_EVENT, event)?;
            Ok(())
        };
        let offered = self
            .which(e.selection)
            .and_then(|w| self.offered[w.index()].as_ref().map(|o| (w, o)));
        let Some((which, offered)) = offered.filter(|_| e.owner == self.window) else {
            return answer(x11rb::NONE);
        };
        if e.target == self.atoms.TARGETS {
            let mut list = vec![self.atoms.TARGETS];
            list.extend(offered.iter().map(|(a, _)| *a));
            conn.change_property32(
                PropMode::REPLACE,
                e.requestor,
                property,
                AtomEnum::ATOM,
                &list,
            )?;
            return answer(property);
        }
        let Some((_, mime)) = offered.iter().find(|(a, _)| *a == e.target) else {
            return answer(x11rb::NONE); // TIMESTAMP, MULTIPLE and types not offered
        };
        if self.serving.len() >= MAX_WAITING {
            return answer(x11rb::NONE);
        }
        // Only our end is non-blocking: the writer (the relay, passing what the host sends)
        // must be able to wait for room.
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&r),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(std::io::Error::from)?;
        changes.push(Change::Receive {
            which,
            mime: mime.clone(),
            fd: Pipe::new(w),
        });
        self.serving.push(Serve {
            requestor: e.requestor,
            selection: e.selection,
            target: e.target,
            property,
            time: e.time,
            pipe: File::from(r),
            data: Vec::new(),
            deadline: Instant::now() + SERVE_TIMEOUT,
        });
        Ok(())
    }

    /// The pipes of requests being answered, to wait on with the X connection.
    pub fn pipes(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.serving.iter().map(|s| s.pipe.as_fd())
    }

    /// Whether a transfer may need [`XSelections::expire`] at some time.
    pub fn busy(&self) -> bool {
        self.fetches.iter().any(|q| !q.is_empty()) || !self.serving.is_empty()
    }

    /// Reads what the pipes have; a request whose pipe ended is answered.
    pub fn pump(&mut self, conn: &RustConnection) -> Result<(), WmError> {
        let limit = MAX_TRANSFER.min(conn.maximum_request_bytes().saturating_sub(64));
        let mut i = 0;
        while i < self.serving.len() {
            let s = &mut self.serving[i];
            let mut buf = [0u8; 64 * 1024];
            let done = loop {
                match s.pipe.read(&mut buf) {
                    Ok(0) => break Some(true),
                    Ok(n) if s.data.len() + n > limit => break Some(false),
                    Ok(n) => s.data.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break Some(false),
                }
            };
            let done = done.or((s.deadline < Instant::now()).then_some(false));
            let Some(complete) = done else {
                i += 1;
                continue;
            };
            let s = self.serving.swap_remove(i);
            let property = if complete {
                // Text asked for as TEXT is given as UTF8_STRING (which TEXT may be).
                let kind = if s.target == self.atoms.TEXT {
                    self.atoms.UTF8_STRING
                } else {
                    s.target
                };
                conn.change_property8(PropMode::REPLACE, s.requestor, s.property, kind, &s.data)?;
                s.property
            } else {
                x11rb::NONE
            };
            let event = SelectionNotifyEvent {
                response_type: xproto::SELECTION_NOTIFY_EVENT,
                sequence: 0,
                time: s.time,
                requestor: s.requestor,
                selection: s.selection,
                target: s.target,
                property,
            };
            conn.send_event(false, s.requestor, EventMask::NO_EVENT, event)?;
        }
        Ok(())
    }

    /// Gives up transfers whose X owner stopped answering.
    pub fn expire(&mut self, conn: &RustConnection) -> Result<(), WmError> {
        let now = Instant::now();
        for which in Selection::BOTH {
            if self.fetches[which.index()]
                .front()
                .is_some_and(|f| f.started && f.deadline < now)
            {
                self.next_fetch(conn, which)?;
            }
        }
        Ok(())
    }
}

impl Fetch {
    /// Passes bytes to the writer; false when the transfer must end (reader gone or limit).
    fn write(&mut self, data: Vec<u8>) -> bool {
        self.sent += data.len();
        let Some(out) = self.out.as_ref() else {
            return false;
        };
        if self.sent > MAX_TRANSFER || out.send(data).is_err() {
            self.out = None;
            return false;
        }
        true
    }
}

/// A thread writing what it is given into `fd` until the sender goes (the window manager
/// never waits for it: at most [`MAX_TRANSFER`] bytes a transfer wait in the channel). A
/// reader that leaves the pipe full for [`WRITE_TIMEOUT`] gets no more.
fn writer(fd: OwnedFd) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        if nix::fcntl::fcntl(
            raw,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .is_err()
        {
            return;
        }
        let mut f = File::from(fd);
        for chunk in rx {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                match f.write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLOUT)];
                        let ms = u16::try_from(WRITE_TIMEOUT.as_millis()).unwrap_or(u16::MAX);
                        match poll(&mut fds, PollTimeout::from(ms)) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                    Err(_) => return,
                }
            }
        }
    });
    tx
}

/// A property of `window`, whole (up to `limit` bytes), then deleted: its type and bytes.
fn read_property(
    conn: &RustConnection,
    window: Window,
    property: Atom,
    limit: usize,
) -> Result<(Atom, Vec<u8>), WmError> {
    let mut data = Vec::new();
    let mut kind = x11rb::NONE;
    let mut offset = 0u32;
    loop {
        let r = conn
            .get_property(false, window, property, AtomEnum::ANY, offset, CHUNK / 4)?
            .reply()?;
        kind = if kind == x11rb::NONE { r.type_ } else { kind };
        data.extend_from_slice(&r.value);
        offset += CHUNK / 4;
        if r.bytes_after == 0 || data.len() >= limit {
            break;
        }
    }
    data.truncate(limit);
    conn.delete_property(window, property)?;
    Ok((kind, data))
}

/// A name that can be a mime type: type/subtype, printable, bounded.
fn is_mime(name: &str) -> bool {
    name.len() <= MAX_TYPE_LEN
        && name.contains('/')
        && name.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_names_are_bounded_and_printable() {
        assert!(is_mime("text/plain;charset=utf-8"));
        assert!(is_mime("image/png"));
        assert!(!is_mime("UTF8_STRING"));
        assert!(!is_mime("text/\u{7}bell"));
        assert!(!is_mime(&format!("text/{}", "x".repeat(MAX_TYPE_LEN))));
    }

    #[test]
    fn a_pipe_given_on_is_the_same_descriptor() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let p = Pipe::new(w);
        assert_eq!(p, p.clone());
        let fd = p.into_fd().expect("fd");
        nix::unistd::write(&fd, b"x").expect("write");
        drop(fd);
        let mut s = String::new();
        File::from(r).read_to_string(&mut s).expect("read");
        assert_eq!(s, "x");
    }
}
