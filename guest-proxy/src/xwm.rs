//! The X11 window manager for Xwayland in the guest: the X side of the pairing that makes each
//! X toplevel an ordinary framed window of its VM.
//!
//! Xwayland (rootless, started with `-wm FD`) makes a wl_surface for every window it shows and
//! tells the window manager which one with a `WL_SURFACE_ID` client message (Xwayland 22.1,
//! Debian 12); the surface gets no role of its own. This module is that window manager: it
//! owns `WM_S0` (Xwayland accepts X clients only once a window manager does), has Composite
//! redirect the root's children (without it Xwayland makes no surfaces), holds each window's
//! commits until it is shown (`_XWAYLAND_ALLOW_COMMITS`), and reports what the Wayland side
//! must do as [`Change`]s: show a surface as a toplevel (title, class, parent) or as a popup at
//! its offset from its parent, retitle it, hide it. The Wayland side answers with
//! [`Wm::configure`], [`Wm::close`] and [`Wm::focus`].
//!
//! X properties come from guest apps: every one is read bounded ([`MAX_PROPERTY`]), titles and
//! classes are cut to [`MAX_TITLE`] characters and control characters dropped (the compositor
//! sanitises titles again), sizes are clamped to [`MAX_SIZE`], and at most [`MAX_WINDOWS`]
//! windows are tracked.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;

use x11rb::connection::Connection;
use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::composite::{ConnectionExt as _, Redirect};
use x11rb::protocol::xfixes::{ClientDisconnectFlags, ConnectionExt as _};
use x11rb::protocol::xproto::{
    AtomEnum, ChangeWindowAttributesAux, ClientMessageEvent, ConfigureWindowAux,
    ConnectionExt as _, CreateWindowAux, EventMask, InputFocus, PropMode, StackMode, Window,
    WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::{DefaultStream, RustConnection};
use x11rb::wrapper::ConnectionExt as _;

use crate::xselection::XSelections;
pub use crate::xselection::{Pipe, Selection};

/// Most windows tracked; a client making more gets the rest unmanaged (never shown).
pub const MAX_WINDOWS: usize = 4096;
/// Most bytes read of one property.
pub const MAX_PROPERTY: u32 = 4096;
/// Most characters of a title or class passed on.
pub const MAX_TITLE: usize = 512;
/// Largest width or height asked of X (as the compositor clamps its windows).
pub const MAX_SIZE: u16 = 16384;

x11rb::atom_manager! {
    /// The atoms the window manager uses.
    pub Atoms: AtomsCookie {
        WM_S0,
        WL_SURFACE_ID,
        WM_PROTOCOLS,
        WM_DELETE_WINDOW,
        WM_TAKE_FOCUS,
        UTF8_STRING,
        _NET_WM_NAME,
        _NET_SUPPORTING_WM_CHECK,
        _NET_SUPPORTED,
        _NET_WM_STATE,
        _NET_WM_STATE_FULLSCREEN,
        _NET_WM_STATE_MAXIMIZED_VERT,
        _NET_WM_STATE_MAXIMIZED_HORZ,
        WM_CHANGE_STATE,
        _XWAYLAND_ALLOW_COMMITS,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WmError {
    #[error("cannot connect to Xwayland: {0}")]
    Connect(#[from] ConnectError),
    #[error("the connection to Xwayland broke: {0}")]
    Connection(#[from] ConnectionError),
    #[error("Xwayland refused a request: {0}")]
    Reply(#[from] ReplyError),
    #[error("Xwayland refused a request: {0}")]
    ReplyOrId(#[from] ReplyOrIdError),
    #[error("cannot use the window manager's socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("another window manager owns WM_S0")]
    NotAlone,
}

/// How the Wayland side shows a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A window of its own, its parent (WM_TRANSIENT_FOR) if it has one that is shown.
    Toplevel { parent: Option<Window> },
    /// A menu, tooltip or other override-redirect window: a popup of `parent`, at its offset
    /// from it (in X coordinates, which are the surfaces' own).
    Popup {
        parent: Window,
        x: i32,
        y: i32,
        width: u16,
        height: u16,
    },
}

/// What the Wayland side must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Give `surface` (an id on Xwayland's Wayland connection) `role`; then allow its
    /// commits with [`Wm::shown`].
    Show {
        window: Window,
        surface: u32,
        role: Role,
        title: String,
        class: String,
    },
    Title {
        window: Window,
        title: String,
    },
    /// The window is gone or unmapped: its surface's role goes.
    Hide {
        window: Window,
        surface: u32,
    },
    /// The X app asks for its toplevel fullscreen or maximised, or not (`_NET_WM_STATE`).
    State {
        window: Window,
        fullscreen: bool,
        maximized: bool,
    },
    /// The X app iconifies its toplevel (`WM_CHANGE_STATE`).
    Minimize {
        window: Window,
    },
    /// An X app took the selection, offering these mime types (`None`: the X selection is
    /// gone): the Wayland side sets it from a source of its own.
    Selection {
        which: Selection,
        types: Option<Vec<String>>,
    },
    /// An X app asks for the Wayland selection: the offer must write `mime` into `fd`.
    Receive {
        which: Selection,
        mime: String,
        fd: Pipe,
    },
}

/// One X window the manager knows.
#[derive(Debug, Default)]
struct XWindow {
    surface: Option<u32>,
    mapped: bool,
    shown: bool,
    override_redirect: bool,
    title: String,
    class: String,
    transient_for: Option<Window>,
    deletable: bool,
    takes_focus: bool,
    /// WM_HINTS input: the window takes the keyboard when the manager sets it (ICCCM's
    /// passive and locally active models); without it only WM_TAKE_FOCUS gives it.
    input: bool,
    fullscreen: bool,
    maximized: bool,
    x: i16,
    y: i16,
    width: u16,
    height: u16,
}

/// The window manager on its connection to Xwayland.
pub struct Wm {
    conn: RustConnection,
    atoms: Atoms,
    root: Window,
    windows: HashMap<Window, XWindow>,
    /// The toplevel the user last focused, and the one the pointer is in: the parent of a
    /// popup without WM_TRANSIENT_FOR is the latter (a menu opens where the user clicked),
    /// else the former.
    focused: Option<Window>,
    hovered: Option<Window>,
    /// The clipboard and primary selection between X and Wayland.
    sel: XSelections,
}

impl Wm {
    /// Takes over as window manager on `stream` (Xwayland's `-wm` socket).
    pub fn new(stream: UnixStream) -> Result<Wm, WmError> {
        let (stream, _) = DefaultStream::from_unix_stream(stream)?;
        Self::start(RustConnection::connect_to_stream(stream, 0)?)
    }

    /// Takes over as window manager of the X server on `conn` (tests use Xvfb).
    pub fn start(conn: RustConnection) -> Result<Wm, WmError> {
        let root = conn.setup().roots[0].root;
        let atoms = Atoms::new(&conn)?.reply()?;
        // One who redirects the root's structure is the window manager: a second fails here.
        conn.change_window_attributes(
            root,
            &ChangeWindowAttributesAux::new().event_mask(
                EventMask::SUBSTRUCTURE_REDIRECT
                    | EventMask::SUBSTRUCTURE_NOTIFY
                    | EventMask::PROPERTY_CHANGE,
            ),
        )?
        .check()
        .map_err(|_| WmError::NotAlone)?;
        // Xwayland makes surfaces only for windows redirected by hand.
        conn.composite_query_version(0, 4)?.reply()?;
        conn.composite_redirect_subwindows(root, Redirect::MANUAL)?
            .check()?;
        // The manager's own connection must not keep an idle Xwayland alive.
        conn.xfixes_query_version(6, 0)?.reply()?;
        conn.xfixes_set_client_disconnect_mode(ClientDisconnectFlags::TERMINATE)?;
        // WM_S0, owned through a window of ours (Xwayland starts listening once it is).
        let own = conn.generate_id()?;
        conn.create_window(
            0,
            own,
            root,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new(),
        )?;
        conn.change_property32(
            PropMode::REPLACE,
            root,
            atoms._NET_SUPPORTING_WM_CHECK,
            AtomEnum::WINDOW,
            &[own],
        )?;
        let sel = XSelections::new(&conn, root)?;
        conn.change_property32(
            PropMode::REPLACE,
            root,
            atoms._NET_SUPPORTED,
            AtomEnum::ATOM,
            &[
                atoms._NET_WM_STATE,
                atoms._NET_WM_STATE_FULLSCREEN,
                atoms._NET_WM_STATE_MAXIMIZED_VERT,
                atoms._NET_WM_STATE_MAXIMIZED_HORZ,
            ],
        )?;
        conn.set_selection_owner(own, atoms.WM_S0, x11rb::CURRENT_TIME)?;
        conn.flush()?;
        Ok(Wm {
            conn,
            atoms,
            root,
            windows: HashMap::new(),
            focused: None,
            hovered: None,
            sel,
        })
    }

    /// The connection's descriptor, to wait on (after [`Wm::dispatch`] took what was read).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.conn.stream().as_fd()
    }

    /// Handles every event that has arrived and what the selection pipes have, returning
    /// what the Wayland side must do.
    pub fn dispatch(&mut self) -> Result<Vec<Change>, WmError> {
        let mut changes = Vec::new();
        while let Some(event) = self.conn.poll_for_event()? {
            self.handle(event, &mut changes)?;
        }
        self.sel.pump(&self.conn)?;
        self.sel.expire(&self.conn)?;
        self.conn.flush()?;
        Ok(changes)
    }

    /// Descriptors to wait on besides [`Wm::fd`]: pipes of selection data for X apps.
    pub fn pipes(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.sel.pipes().collect()
    }

    /// Whether a selection transfer is under way (then [`Wm::dispatch`] must run now and
    /// then even without events, to give up on an X app that never answers).
    pub fn busy(&self) -> bool {
        self.sel.busy()
    }

    /// The compositor offers Xwayland `types` as its selection (`None`: no selection).
    pub fn offer(&mut self, which: Selection, types: Option<Vec<String>>) -> Result<(), WmError> {
        self.sel.offer(&self.conn, which, types)?;
        self.conn.flush()?;
        Ok(())
    }

    /// The compositor asks for the X selection as `mime`, written into `fd`.
    pub fn send(
        &mut self,
        which: Selection,
        mime: &str,
        fd: std::os::fd::OwnedFd,
    ) -> Result<(), WmError> {
        self.sel.send(&self.conn, which, mime, fd)?;
        self.conn.flush()?;
        Ok(())
    }

    /// Handles the events that have arrived, or waits at most `timeout` for some.
    pub fn wait_for(&mut self, timeout: std::time::Duration) -> Result<Vec<Change>, WmError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let changes = self.dispatch()?;
        if !changes.is_empty() {
            return Ok(changes);
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.conn.stream().as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(WmError::Io(e.into())),
        }
        self.dispatch()
    }

    fn handle(&mut self, event: Event, changes: &mut Vec<Change>) -> Result<(), WmError> {
        match event {
            // An X app's error in a selection transfer (a window gone, an atom it made up)
            // ends that transfer only.
            Event::XfixesSelectionNotify(e) => {
                app_error_ends_transfer(self.sel.owner_changed(&self.conn, &e, changes))?
            }
            Event::SelectionNotify(e) if e.requestor == self.sel.window() => {
                app_error_ends_transfer(self.sel.notified(&self.conn, &e, changes))?
            }
            Event::SelectionRequest(e) => {
                app_error_ends_transfer(self.sel.requested(&self.conn, &e, changes))?
            }
            Event::SelectionClear(e) => self.sel.cleared(&e),
            Event::PropertyNotify(e) if e.window == self.sel.window() => {
                app_error_ends_transfer(self.sel.property_changed(&self.conn, &e))?
            }
            Event::CreateNotify(e)
                if e.parent == self.root
                    && e.window != self.sel.window()
                    && self.windows.len() < MAX_WINDOWS =>
            {
                self.windows.insert(
                    e.window,
                    XWindow {
                        override_redirect: e.override_redirect,
                        x: e.x,
                        y: e.y,
                        width: e.width,
                        height: e.height,
                        ..Default::default()
                    },
                );
                // Its properties, as they change.
                self.conn.change_window_attributes(
                    e.window,
                    &ChangeWindowAttributesAux::new().event_mask(EventMask::PROPERTY_CHANGE),
                )?;
                // Nothing is drawn until the Wayland side shows it: a surface must not have
                // a buffer before it has a role.
                self.allow_commits(e.window, false)?.ignore_error();
            }
            // A window past the limit is never mapped, so never shown.
            Event::MapRequest(e) if self.windows.contains_key(&e.window) => {
                self.read_properties(e.window)?;
                // No X border: the compositor frames the window (and a border would make
                // the surface larger than the size it was configured to).
                self.conn
                    .configure_window(e.window, &ConfigureWindowAux::new().border_width(0))?;
                self.conn.map_window(e.window)?;
            }
            Event::MapNotify(e) => {
                if let Some(w) = self.windows.get_mut(&e.window) {
                    w.mapped = true;
                    if w.override_redirect {
                        self.read_properties(e.window)?;
                    }
                }
                self.show_if_ready(e.window, changes);
            }
            Event::ClientMessage(e) if e.type_ == self.atoms.WL_SURFACE_ID => {
                let surface = e.data.as_data32()[0];
                if let Some(w) = self.windows.get_mut(&e.window) {
                    w.surface = Some(surface);
                }
                self.show_if_ready(e.window, changes);
            }
            Event::ClientMessage(e) if e.type_ == self.atoms._NET_WM_STATE => {
                self.state_message(&e, changes)
            }
            // IconicState: the app minimises itself.
            Event::ClientMessage(e)
                if e.type_ == self.atoms.WM_CHANGE_STATE
                    && e.data.as_data32()[0] == 3
                    && self.windows.get(&e.window).is_some_and(|w| w.shown) =>
            {
                changes.push(Change::Minimize { window: e.window });
            }
            Event::ConfigureRequest(e) => {
                // Honoured for size and place, bounded; the compositor decides what it shows.
                let mut aux = ConfigureWindowAux::from_configure_request(&e);
                aux.width = aux.width.map(|v| v.clamp(1, MAX_SIZE as u32));
                aux.height = aux.height.map(|v| v.clamp(1, MAX_SIZE as u32));
                aux.border_width = aux.border_width.map(|_| 0);
                self.conn.configure_window(e.window, &aux)?;
            }
            Event::ConfigureNotify(e) => {
                if let Some(w) = self.windows.get_mut(&e.window) {
                    (w.x, w.y, w.width, w.height) = (e.x, e.y, e.width, e.height);
                }
            }
            Event::PropertyNotify(e) => {
                let names = [
                    AtomEnum::WM_HINTS.into(),
                    AtomEnum::WM_NAME.into(),
                    self.atoms._NET_WM_NAME,
                    AtomEnum::WM_CLASS.into(),
                    AtomEnum::WM_TRANSIENT_FOR.into(),
                    self.atoms.WM_PROTOCOLS,
                ];
                if self.windows.contains_key(&e.window) && names.contains(&e.atom) {
                    let before = self.windows.get(&e.window).map(|w| w.title.clone());
                    self.read_properties(e.window)?;
                    if let Some(w) = self.windows.get(&e.window) {
                        if w.shown && before.as_ref() != Some(&w.title) {
                            changes.push(Change::Title {
                                window: e.window,
                                title: w.title.clone(),
                            });
                        }
                    }
                }
            }
            Event::UnmapNotify(e) => {
                if let Some(w) = self.windows.get_mut(&e.window) {
                    w.mapped = false;
                    if let (true, Some(surface)) = (w.shown, w.surface) {
                        changes.push(Change::Hide {
                            window: e.window,
                            surface,
                        });
                    }
                    w.shown = false;
                    // Xwayland makes a new surface when the window is mapped again, which
                    // waits for its role as the first did.
                    w.surface = None;
                    self.allow_commits(e.window, false)?.ignore_error();
                }
            }
            Event::DestroyNotify(e) => {
                if let Some(w) = self.windows.remove(&e.window) {
                    if let (true, Some(surface)) = (w.shown, w.surface) {
                        changes.push(Change::Hide {
                            window: e.window,
                            surface,
                        });
                    }
                }
                if self.focused == Some(e.window) {
                    self.focused = None;
                }
                if self.hovered == Some(e.window) {
                    self.hovered = None;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A mapped window whose surface is known is shown.
    fn show_if_ready(&mut self, window: Window, changes: &mut Vec<Change>) {
        let Some(w) = self.windows.get(&window) else {
            return;
        };
        let (true, false, Some(surface)) = (w.mapped, w.shown, w.surface) else {
            return;
        };
        let shown_parent = |p: Option<Window>| {
            p.filter(|p| *p != window && self.windows.get(p).is_some_and(|pw| pw.shown))
        };
        let role = if w.override_redirect {
            let Some(parent) = shown_parent(w.transient_for)
                .or(shown_parent(self.hovered))
                .or(shown_parent(self.focused))
            else {
                // A popup with nothing to hang from is not shown (it could sit anywhere).
                return;
            };
            let p = &self.windows[&parent];
            Role::Popup {
                parent,
                x: i32::from(w.x) - i32::from(p.x),
                y: i32::from(w.y) - i32::from(p.y),
                width: w.width.clamp(1, MAX_SIZE),
                height: w.height.clamp(1, MAX_SIZE),
            }
        } else {
            Role::Toplevel {
                parent: shown_parent(w.transient_for),
            }
        };
        let toplevel = matches!(role, Role::Toplevel { .. });
        changes.push(Change::Show {
            window,
            surface,
            role,
            title: w.title.clone(),
            class: w.class.clone(),
        });
        // A window mapped fullscreen or maximised (a player started with --fs) asks so
        // right away.
        if toplevel && (w.fullscreen || w.maximized) {
            changes.push(Change::State {
                window,
                fullscreen: w.fullscreen,
                maximized: w.maximized,
            });
        }
        if let Some(w) = self.windows.get_mut(&window) {
            w.shown = true;
        }
    }

    /// A `_NET_WM_STATE` request (EWMH: remove 0, add 1, toggle 2, then up to two states).
    fn state_message(&mut self, e: &ClientMessageEvent, changes: &mut Vec<Change>) {
        let [action, first, second, ..] = e.data.as_data32();
        let a = &self.atoms;
        let (fs, max_v, max_h) = (
            a._NET_WM_STATE_FULLSCREEN,
            a._NET_WM_STATE_MAXIMIZED_VERT,
            a._NET_WM_STATE_MAXIMIZED_HORZ,
        );
        let Some(w) = self.windows.get_mut(&e.window) else {
            return;
        };
        let apply = |now: bool| match action {
            0 => false,
            1 => true,
            2 => !now,
            _ => now,
        };
        let names = [first, second];
        let (fullscreen, maximized) = (w.fullscreen, w.maximized);
        if names.contains(&fs) {
            w.fullscreen = apply(w.fullscreen);
        }
        if names.contains(&max_v) || names.contains(&max_h) {
            w.maximized = apply(w.maximized);
        }
        if w.shown && (fullscreen, maximized) != (w.fullscreen, w.maximized) {
            changes.push(Change::State {
                window: e.window,
                fullscreen: w.fullscreen,
                maximized: w.maximized,
            });
        }
    }

    /// The Wayland side has given the window's surface its role and seen it configured:
    /// Xwayland may now commit to it.
    pub fn shown(&mut self, window: Window) -> Result<(), WmError> {
        if self.windows.get(&window).is_some_and(|w| w.shown) {
            // Checked: Xwayland has taken it when this returns.
            self.allow_commits(window, true)?.check()?;
        }
        Ok(())
    }

    fn allow_commits(
        &self,
        window: Window,
        allow: bool,
    ) -> Result<x11rb::cookie::VoidCookie<'_, RustConnection>, WmError> {
        Ok(self.conn.change_property32(
            PropMode::REPLACE,
            window,
            self.atoms._XWAYLAND_ALLOW_COMMITS,
            AtomEnum::CARDINAL,
            &[u32::from(allow)],
        )?)
    }

    /// The compositor configured the window to `width`×`height` (0 leaves it as it is),
    /// fullscreen or maximised or neither: the app sees it in `_NET_WM_STATE`.
    pub fn configure(
        &mut self,
        window: Window,
        width: u32,
        height: u32,
        fullscreen: bool,
        maximized: bool,
    ) -> Result<(), WmError> {
        let Some(w) = self.windows.get_mut(&window) else {
            return Ok(());
        };
        (w.fullscreen, w.maximized) = (fullscreen, maximized);
        let mut states = Vec::new();
        if fullscreen {
            states.push(self.atoms._NET_WM_STATE_FULLSCREEN);
        }
        if maximized {
            states.push(self.atoms._NET_WM_STATE_MAXIMIZED_VERT);
            states.push(self.atoms._NET_WM_STATE_MAXIMIZED_HORZ);
        }
        self.conn.change_property32(
            PropMode::REPLACE,
            window,
            self.atoms._NET_WM_STATE,
            AtomEnum::ATOM,
            &states,
        )?;
        let mut aux = ConfigureWindowAux::new().border_width(0);
        if width > 0 && height > 0 {
            aux = aux
                .width(width.min(MAX_SIZE as u32))
                .height(height.min(MAX_SIZE as u32));
        }
        self.conn.configure_window(window, &aux)?;
        self.conn.flush()?;
        Ok(())
    }

    /// The user closed the window's frame: WM_DELETE_WINDOW if it takes it, else its client
    /// is disconnected.
    pub fn close(&mut self, window: Window) -> Result<(), WmError> {
        let Some(w) = self.windows.get(&window) else {
            return Ok(());
        };
        if w.deletable {
            self.send_protocol(window, self.atoms.WM_DELETE_WINDOW)?;
        } else {
            self.conn.kill_client(window)?;
        }
        self.conn.flush()?;
        Ok(())
    }

    /// The pointer entered the window's surface (`None`: it left every X window).
    pub fn pointer(&mut self, window: Option<Window>) {
        self.hovered = window.filter(|w| {
            self.windows
                .get(w)
                .is_some_and(|w| w.shown && !w.override_redirect)
        });
    }

    /// The compositor gave the window's surface the keyboard (`None`: no X window has it).
    pub fn focus(&mut self, window: Option<Window>) -> Result<(), WmError> {
        match window.filter(|w| self.windows.contains_key(w)) {
            Some(window) => {
                // A window that takes input gets the focus from the manager alone: a
                // WM_TAKE_FOCUS answered late (with CurrentTime, as the manager has no
                // server time to give) would take the focus back from a window focused
                // after it. Only a window that takes no input is asked to take it.
                let (input, takes_focus) = self
                    .windows
                    .get(&window)
                    .map_or((true, false), |w| (w.input, w.takes_focus));
                if input {
                    self.conn.set_input_focus(
                        InputFocus::POINTER_ROOT,
                        window,
                        x11rb::CURRENT_TIME,
                    )?;
                } else if takes_focus {
                    self.send_protocol(window, self.atoms.WM_TAKE_FOCUS)?;
                }
                self.conn.configure_window(
                    window,
                    &ConfigureWindowAux::new().stack_mode(StackMode::ABOVE),
                )?;
                if self
                    .windows
                    .get(&window)
                    .is_some_and(|w| !w.override_redirect)
                {
                    self.focused = Some(window);
                }
            }
            None => {
                self.conn.set_input_focus(
                    InputFocus::POINTER_ROOT,
                    x11rb::NONE,
                    x11rb::CURRENT_TIME,
                )?;
            }
        }
        self.conn.flush()?;
        Ok(())
    }

    /// A WM_PROTOCOLS message (`protocol`: WM_DELETE_WINDOW, WM_TAKE_FOCUS) to the window.
    fn send_protocol(&self, window: Window, protocol: u32) -> Result<(), WmError> {
        let message = ClientMessageEvent::new(
            32,
            window,
            self.atoms.WM_PROTOCOLS,
            [protocol, x11rb::CURRENT_TIME, 0, 0, 0],
        );
        self.conn
            .send_event(false, window, EventMask::NO_EVENT, message)?;
        Ok(())
    }

    /// Up to `count` 32-bit values of a property of `type_` (none if it is of another).
    fn words(
        &self,
        window: Window,
        property: u32,
        type_: u32,
        count: u32,
    ) -> Result<Vec<u32>, WmError> {
        Ok(self
            .conn
            .get_property(false, window, property, type_, 0, count)?
            .reply()?
            .value32()
            .map(|v| v.collect())
            .unwrap_or_default())
    }

    /// Reads the window's title, class, transient parent and protocols, bounded.
    fn read_properties(&mut self, window: Window) -> Result<(), WmError> {
        let long = MAX_PROPERTY / 4;
        let utf8 = self
            .conn
            .get_property(
                false,
                window,
                self.atoms._NET_WM_NAME,
                self.atoms.UTF8_STRING,
                0,
                long,
            )?
            .reply()?;
        let name = if utf8.value_len > 0 {
            String::from_utf8_lossy(&utf8.value).into_owned()
        } else {
            let latin1 = self
                .conn
                .get_property(false, window, AtomEnum::WM_NAME, AtomEnum::ANY, 0, long)?
                .reply()?;
            latin1.value.iter().map(|&b| char::from(b)).collect()
        };
        let class = self
            .conn
            .get_property(false, window, AtomEnum::WM_CLASS, AtomEnum::STRING, 0, long)?
            .reply()?;
        // WM_CLASS is "instance\0class\0": the class names the app.
        let class_name = class
            .value
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .nth(1)
            .map(|s| s.iter().map(|&b| char::from(b)).collect::<String>())
            .unwrap_or_default();
        let transient = self
            .conn
            .get_property(
                false,
                window,
                AtomEnum::WM_TRANSIENT_FOR,
                AtomEnum::WINDOW,
                0,
                1,
            )?
            .reply()?
            .value32()
            .and_then(|mut v| v.next())
            .filter(|&p| p != 0);
        let protocols = self.words(window, self.atoms.WM_PROTOCOLS, AtomEnum::ATOM.into(), 64)?;
        let states = self.words(window, self.atoms._NET_WM_STATE, AtomEnum::ATOM.into(), 64)?;
        // WM_HINTS: flags, then input (the InputHint flag says it is set; unset means
        // the window takes input).
        let hints = self.words(
            window,
            AtomEnum::WM_HINTS.into(),
            AtomEnum::WM_HINTS.into(),
            2,
        )?;
        let input = match hints.as_slice() {
            [flags, input, ..] if flags & 1 != 0 => *input != 0,
            _ => true,
        };
        if let Some(w) = self.windows.get_mut(&window) {
            w.input = input;
            if !w.shown {
                w.fullscreen = states.contains(&self.atoms._NET_WM_STATE_FULLSCREEN);
                w.maximized = states.contains(&self.atoms._NET_WM_STATE_MAXIMIZED_VERT)
                    || states.contains(&self.atoms._NET_WM_STATE_MAXIMIZED_HORZ);
            }
            w.title = clean(&name);
            w.class = clean(&class_name);
            w.transient_for = transient;
            w.deletable = protocols.contains(&self.atoms.WM_DELETE_WINDOW);
            w.takes_focus = protocols.contains(&self.atoms.WM_TAKE_FOCUS);
        }
        Ok(())
    }
}

/// An X protocol error (from what an X app named) is logged and dropped; a broken connection
/// is not.
fn app_error_ends_transfer(r: Result<(), WmError>) -> Result<(), WmError> {
    match r {
        Err(WmError::Reply(ReplyError::X11Error(e)))
        | Err(WmError::ReplyOrId(ReplyOrIdError::X11Error(e))) => {
            eprintln!("bulkhead-wl-proxy: an X selection transfer failed: {e:?}");
            Ok(())
        }
        other => other,
    }
}

/// At most [`MAX_TITLE`] characters, without control characters.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TITLE)
        .collect()
}
