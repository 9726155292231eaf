//! Roles for Xwayland's surfaces on its cross-domain connection (`crate::xwayland`).
//!
//! Xwayland gives its surfaces no role; the window manager (`crate::xwm`) says which X window
//! each one shows and how. This gives that surface an xdg_surface with an xdg_toplevel or
//! xdg_popup on the host, with objects of the proxy's own (ids it allocates, never seen by
//! Xwayland), answers their events (ping, configure) and passes what the window manager
//! needs back as [`Notice`]s. A role is given only once the surface itself reached the host;
//! until then the change waits.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use crate::wire::{self, string_arg as string, words, Arg, HEADER};
use crate::xselection::{Pipe, Selection};
use crate::xwm::{Change, Role as XRole};

use super::xsel::WlSelections;
use super::{Ids, Objects, Outgoing};

/// What the window manager must hear of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The window's role is configured: Xwayland may draw into its surface.
    Shown(u32),
    /// The compositor sized the toplevel (0×0: the window's choice), fullscreen or
    /// maximised or neither.
    Configure {
        window: u32,
        width: u32,
        height: u32,
        fullscreen: bool,
        maximized: bool,
    },
    /// The user closed the frame.
    Close(u32),
    /// The keyboard entered this window's surface (`None`: left every X window).
    Focus(Option<u32>),
    /// The pointer entered this window's surface (`None`: left every X window).
    Pointer(Option<u32>),
    /// The compositor offers Xwayland a selection of these types (`None`: none).
    Offer {
        which: Selection,
        types: Option<Vec<String>>,
    },
    /// The compositor wants the X selection as `mime`, written into `fd`.
    Send {
        which: Selection,
        mime: String,
        fd: Pipe,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    WmBase,
    XdgSurface,
    Toplevel,
    Popup,
}

/// One window's role objects on the host.
#[derive(Debug)]
struct Role {
    /// The surface, by Xwayland's id.
    surface: u32,
    xdg_surface: u32,
    role: u32,
    toplevel: bool,
    configured: bool,
}

/// The roles of one Xwayland connection.
#[derive(Debug, Default)]
pub struct XRoles {
    /// Where xdg_wm_base is: (the host registry that announced it, its name, version).
    global: Option<(u32, u32, u32)>,
    wm_base: Option<u32>,
    roles: HashMap<u32, Role>,
    objects: HashMap<u32, (u32, Obj)>,
    pending: Vec<Change>,
    /// For the window manager, collected under the state's lock and handed over after.
    pub notices: Vec<Notice>,
    /// Requests answering host events, sent after the events are handled.
    pub replies: Vec<Vec<u8>>,
    /// The clipboard and primary selection between X and Wayland.
    pub sel: WlSelections,
}

/// Most changes waiting for their surfaces.
const MAX_PENDING: usize = 1024;

impl XRoles {
    /// A wl_registry.global event the host sent (host registry id, then its arguments).
    pub fn global(&mut self, registry: u32, args: &[Arg]) {
        if let (Some(Arg::Uint(name)), Some(Arg::Str(Some(iface))), Some(Arg::Uint(version))) =
            (args.first(), args.get(1), args.get(2))
        {
            if iface == "xdg_wm_base" {
                self.global = Some((registry, *name, *version));
            }
            self.sel.global(registry, *name, iface);
        }
    }

    /// Applies a change of the window manager, or keeps it until its surface reaches the host.
    pub(super) fn apply(
        &mut self,
        ids: &mut Ids,
        objects: &Objects,
        change: Change,
        out: &mut Outgoing,
    ) -> Result<(), String> {
        match change {
            Change::Show {
                window,
                surface,
                ref role,
                ref title,
                ref class,
            } => {
                let ready = objects.get(surface).is_some_and(|i| i.name == "wl_surface")
                    && ids.host(surface).is_some()
                    && self.global.is_some();
                if !ready {
                    if self.pending.len() >= MAX_PENDING {
                        return Err("too many X windows wait for their surfaces".into());
                    }
                    self.pending.push(change);
                    return Ok(());
                }
                self.show(ids, window, surface, role, title, class, out)
            }
            Change::Title { window, title } => {
                if let Some(r) = self.roles.get(&window).filter(|r| r.toplevel) {
                    out.push(&wire::message_bytes(r.role, 2, &string(&title)), &[]);
                }
                Ok(())
            }
            Change::Hide { window, .. } => {
                self.pending
                    .retain(|c| !matches!(c, Change::Show { window: w, .. } if *w == window));
                self.hide(window, out);
                Ok(())
            }
            Change::State {
                window,
                fullscreen,
                maximized,
            } => {
                let Some(r) = self.roles.get(&window).filter(|r| r.toplevel) else {
                    // Its Show still waits for the surface: so does this.
                    if self
                        .pending
                        .iter()
                        .any(|c| matches!(c, Change::Show { window: w, .. } if *w == window))
                        && self.pending.len() < MAX_PENDING
                    {
                        self.pending.push(change);
                    }
                    return Ok(());
                };
                // set_fullscreen (no output: the compositor's choice) or unset; set or unset
                // maximized.
                if fullscreen {
                    out.push(&wire::message_bytes(r.role, 11, &words(&[0])), &[]);
                } else {
                    out.push(&wire::message_bytes(r.role, 12, &[]), &[]);
                }
                out.push(
                    &wire::message_bytes(r.role, if maximized { 9 } else { 10 }, &[]),
                    &[],
                );
                Ok(())
            }
            Change::Minimize { window } => {
                if let Some(r) = self.roles.get(&window).filter(|r| r.toplevel) {
                    out.push(&wire::message_bytes(r.role, 13, &[]), &[]);
                }
                Ok(())
            }
            Change::Selection { which, types } => self.sel.set(ids, which, types, out),
            // Needs the connection's pipes: the relay answers it (`super::apply_change`).
            Change::Receive { .. } => Ok(()),
        }
    }

    /// Retries the changes that wait for their surfaces.
    pub(super) fn retry(
        &mut self,
        ids: &mut Ids,
        objects: &Objects,
        out: &mut Outgoing,
    ) -> Result<(), String> {
        for change in std::mem::take(&mut self.pending) {
            self.apply(ids, objects, change, out)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn show(
        &mut self,
        ids: &mut Ids,
        window: u32,
        surface: u32,
        role: &XRole,
        title: &str,
        class: &str,
        out: &mut Outgoing,
    ) -> Result<(), String> {
        let host_surface = ids.host(surface).ok_or("a surface the host lacks")?;
        let ours = |ids: &mut Ids| -> Result<u32, String> {
            let id = ids.alloc()?;
            ids.ours.insert(id);
            Ok(id)
        };
        let wm_base = match self.wm_base {
            Some(w) => w,
            None => {
                let (registry, name, version) = self.global.ok_or("no xdg_wm_base yet")?;
                let id = ours(ids)?;
                let mut body = words(&[name]);
                body.extend(string("xdg_wm_base"));
                body.extend(words(&[version.min(1), id]));
                out.push(&wire::message_bytes(registry, 0, &body), &[]);
                self.objects.insert(id, (0, Obj::WmBase));
                self.wm_base = Some(id);
                id
            }
        };
        let xdg_surface = ours(ids)?;
        out.push(
            &wire::message_bytes(wm_base, 2, &words(&[xdg_surface, host_surface])),
            &[],
        );
        self.objects.insert(xdg_surface, (window, Obj::XdgSurface));
        let (role_id, toplevel) = match role {
            XRole::Toplevel { parent } => {
                let id = ours(ids)?;
                out.push(&wire::message_bytes(xdg_surface, 1, &words(&[id])), &[]);
                if let Some(p) = parent
                    .and_then(|p| self.roles.get(&p))
                    .filter(|p| p.toplevel)
                {
                    out.push(&wire::message_bytes(id, 1, &words(&[p.role])), &[]);
                }
                out.push(&wire::message_bytes(id, 2, &string(title)), &[]);
                out.push(&wire::message_bytes(id, 3, &string(class)), &[]);
                self.objects.insert(id, (window, Obj::Toplevel));
                (id, true)
            }
            XRole::Popup {
                parent,
                x,
                y,
                width,
                height,
            } => {
                // Its parent went before the popup came: the popup is not shown (it would
                // have nowhere to be), and nothing else is affected.
                let Some(parent_surface) = self.roles.get(parent).map(|p| p.xdg_surface) else {
                    out.push(&wire::message_bytes(xdg_surface, 0, &[]), &[]);
                    self.objects.remove(&xdg_surface);
                    return Ok(());
                };
                let positioner = ours(ids)?;
                out.push(&wire::message_bytes(wm_base, 1, &words(&[positioner])), &[]);
                out.push(
                    &wire::message_bytes(
                        positioner,
                        1,
                        &words(&[u32::from(*width), u32::from(*height)]),
                    ),
                    &[],
                );
                out.push(
                    &wire::message_bytes(positioner, 2, &words(&[*x as u32, *y as u32, 1, 1])),
                    &[],
                );
                // Its top left corner at the anchor point.
                out.push(&wire::message_bytes(positioner, 3, &words(&[5])), &[]);
                out.push(&wire::message_bytes(positioner, 4, &words(&[8])), &[]);
                let id = ours(ids)?;
                out.push(
                    &wire::message_bytes(xdg_surface, 2, &words(&[id, parent_surface, positioner])),
                    &[],
                );
                out.push(&wire::message_bytes(positioner, 0, &[]), &[]);
                self.objects.insert(id, (window, Obj::Popup));
                (id, false)
            }
        };
        // An empty commit: the host answers with the first configure.
        out.push(&wire::message_bytes(host_surface, 6, &[]), &[]);
        self.roles.insert(
            window,
            Role {
                surface,
                xdg_surface,
                role: role_id,
                toplevel,
                configured: false,
            },
        );
        Ok(())
    }

    fn hide(&mut self, window: u32, out: &mut Outgoing) {
        if let Some(r) = self.roles.remove(&window) {
            out.push(&wire::message_bytes(r.role, 0, &[]), &[]);
            out.push(&wire::message_bytes(r.xdg_surface, 0, &[]), &[]);
            self.objects.remove(&r.role);
            self.objects.remove(&r.xdg_surface);
        }
    }

    /// Xwayland destroys `surface`: its role goes first, as xdg-shell requires.
    pub(super) fn surface_destroyed(&mut self, surface: u32, out: &mut Outgoing) {
        let windows: Vec<u32> = self
            .roles
            .iter()
            .filter(|(_, r)| r.surface == surface)
            .map(|(w, _)| *w)
            .collect();
        for w in windows {
            self.hide(w, out);
        }
    }

    /// The window a surface of Xwayland's shows.
    fn window_of(&self, surface: Option<u32>) -> Option<u32> {
        surface.and_then(|s| {
            self.roles
                .iter()
                .find(|(_, r)| r.surface == s)
                .map(|(w, _)| *w)
        })
    }

    /// The keyboard entered (`Some`) or left (`None`) a surface of Xwayland's.
    pub fn keyboard(&mut self, surface: Option<u32>) {
        let window = self.window_of(surface);
        self.notices.push(Notice::Focus(window));
    }

    /// The pointer entered (`Some`) or left (`None`) a surface of Xwayland's.
    pub fn pointer(&mut self, surface: Option<u32>) {
        let window = self.window_of(surface);
        self.notices.push(Notice::Pointer(window));
    }

    /// Whether events from host object `id` are the proxy's to handle (its own objects are
    /// anyway; the compositor's offers to its selection devices too).
    pub fn handles(&self, id: u32) -> bool {
        self.sel.handles(id)
    }

    /// An event to one of the proxy's own objects. Unknown ones (pools and buffers of the
    /// proxy's) are not X's and are dropped as before. `fd` takes the descriptor the event
    /// carries.
    pub fn event(
        &mut self,
        sender: u32,
        opcode: u16,
        msg: &[u8],
        fd: &mut dyn FnMut() -> Result<OwnedFd, String>,
    ) -> Result<(), String> {
        if self.sel.handles(sender) {
            return self.sel.event(
                sender,
                opcode,
                msg,
                fd,
                &mut self.notices,
                &mut self.replies,
            );
        }
        let Some(&(window, obj)) = self.objects.get(&sender) else {
            return Ok(());
        };
        let body = &msg[HEADER..];
        let word = |i: usize| -> Result<u32, String> {
            wire::word_at(body, i).ok_or_else(|| "an xdg event shorter than its arguments".into())
        };
        match (obj, opcode) {
            // ping → pong
            (Obj::WmBase, 0) => {
                self.replies
                    .push(wire::message_bytes(sender, 3, &words(&[word(0)?])))
            }
            // configure → ack_configure; the first shows the window
            (Obj::XdgSurface, 0) => {
                self.replies
                    .push(wire::message_bytes(sender, 4, &words(&[word(0)?])));
                if let Some(r) = self.roles.get_mut(&window) {
                    if !r.configured {
                        r.configured = true;
                        self.notices.push(Notice::Shown(window));
                    }
                }
            }
            (Obj::Toplevel, 0) => {
                // configure(width, height, states): the states are an array of words.
                let len = word(2)? as usize;
                let states: Vec<u32> = body
                    .get(12..12 + len)
                    .ok_or("an xdg configure shorter than its states")?
                    .chunks_exact(4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                self.notices.push(Notice::Configure {
                    window,
                    width: word(0)?,
                    height: word(1)?,
                    // xdg_toplevel.state: 1 maximized, 2 fullscreen
                    fullscreen: states.contains(&2),
                    maximized: states.contains(&1),
                })
            }
            (Obj::Toplevel, 1) => self.notices.push(Notice::Close(window)),
            _ => {}
        }
        Ok(())
    }
}
