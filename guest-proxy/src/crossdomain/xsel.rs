//! The Wayland side of the selection bridge between X and Wayland apps of one VM
//! (`crate::xselection` is the X side).
//!
//! Xwayland binds no data device, so on its connection the proxy has its own: a wl_seat, a
//! wl_data_device and a zwp_primary_selection_device_v1, with ids of the proxy's (never seen by
//! Xwayland). While an X window holds the keyboard, the compositor offers them the domain's
//! selections; each offer becomes a [`Notice::Offer`] for the window manager, and X apps'
//! requests come back as receives on it. When an X app takes a selection, a source of ours
//! offers its types and is set as the selection; the compositor's requests for its data
//! become [`Notice::Send`]s. Our sources also offer a [`FROM_X`] type of this bridge's own:
//! the compositor's offer of a selection with it is the X selection coming back, and is not
//! passed to X again
//! (an X selection the compositor refused, as X set it without the keyboard, leaves no
//! trace that could hide later offers).

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use wayland_backend::protocol::ArgumentType;

use crate::wire::{self, string_arg as string, words, Arg, HEADER};
use crate::xselection::{Pipe, Selection, FROM_X, MAX_TYPES, MAX_TYPE_LEN};

use super::xroles::Notice;
use super::{Ids, Outgoing, SERVER_IDS};

/// Most offers of the compositor's held at once.
const MAX_OFFERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Seat,
    Manager(Selection),
    Device(Selection),
    Source(Selection),
}

/// The interface names of each selection's manager.
fn manager_interface(which: Selection) -> &'static str {
    match which {
        Selection::Clipboard => "wl_data_device_manager",
        Selection::Primary => "zwp_primary_selection_device_manager_v1",
    }
}

/// Opcodes that differ between wl_data_device and its primary-selection twin.
struct Ops {
    set_selection: u16,
    selection_event: u16,
    offer_receive: u16,
    offer_destroy: u16,
    source_send: u16,
    source_cancelled: u16,
}

fn ops(which: Selection) -> Ops {
    match which {
        Selection::Clipboard => Ops {
            set_selection: 1,
            selection_event: 5,
            offer_receive: 1,
            offer_destroy: 2,
            source_send: 1,
            source_cancelled: 2,
        },
        Selection::Primary => Ops {
            set_selection: 0,
            selection_event: 1,
            offer_receive: 0,
            offer_destroy: 1,
            source_send: 0,
            source_cancelled: 1,
        },
    }
}

/// Source destroy, create_source and get_device are the same for both.
const SOURCE_OFFER: u16 = 0;
const SOURCE_DESTROY: u16 = 1;
const MANAGER_CREATE_SOURCE: u16 = 0;
const MANAGER_GET_DEVICE: u16 = 1;
/// wl_data_device.enter: a drag's offer, which X never takes.
const DEVICE_ENTER: u16 = 1;

/// The selection devices of Xwayland's connection.
#[derive(Debug, Default)]
pub struct WlSelections {
    /// (host registry, name, version) of wl_seat and of each selection's manager.
    seat_global: Option<(u32, u32)>,
    manager_globals: [Option<(u32, u32)>; 2],
    seat: Option<u32>,
    managers: [Option<u32>; 2],
    devices: [Option<u32>; 2],
    /// Our source that is the selection now (until the compositor cancels it or we replace
    /// it). Replaced and cancelled ones stay in `objects` until the host deletes them, so
    /// a request already on its way to one is answered (its pipe closed).
    sources: [Option<u32>; 2],
    /// The compositor's offers to our devices, with their types.
    offers: HashMap<u32, (Selection, Vec<String>)>,
    current: [Option<u32>; 2],
    objects: HashMap<u32, Kind>,
    /// The serial of the last input event on Xwayland's connection.
    serial: u32,
    /// The bridge's marker type, as its sources offer it (`crate::xselection::FROM_X`).
    marker: Option<String>,
}

impl WlSelections {
    /// A global the host announced on one of Xwayland's registries.
    pub fn global(&mut self, registry: u32, name: u32, iface: &str) {
        if iface == "wl_seat" && self.seat_global.is_none() {
            self.seat_global = Some((registry, name));
        }
        for which in Selection::BOTH {
            if iface == manager_interface(which) && self.manager_globals[which.index()].is_none() {
                self.manager_globals[which.index()] = Some((registry, name));
            }
        }
    }

    /// An input event's serial on Xwayland's connection (what set_selection quotes).
    pub fn input_serial(&mut self, serial: u32) {
        self.serial = serial;
    }

    /// Whether events from host object `id` are ours to handle.
    pub fn handles(&self, id: u32) -> bool {
        self.objects.contains_key(&id) || self.offers.contains_key(&id)
    }

    /// Binds the seat and makes the devices as soon as their globals are known.
    pub(super) fn ensure(&mut self, ids: &mut Ids, out: &mut Outgoing) -> Result<(), String> {
        if self.seat.is_none() {
            if let Some((registry, name)) = self.seat_global {
                let id = ours(ids)?;
                out.push(&bind(registry, name, "wl_seat", id), &[]);
                self.objects.insert(id, Kind::Seat);
                self.seat = Some(id);
            }
        }
        let Some(seat) = self.seat else {
            return Ok(());
        };
        for which in Selection::BOTH {
            let i = which.index();
            let (None, Some((registry, name))) = (self.devices[i], self.manager_globals[i]) else {
                continue;
            };
            let manager = ours(ids)?;
            out.push(
                &bind(registry, name, manager_interface(which), manager),
                &[],
            );
            let device = ours(ids)?;
            out.push(
                &wire::message_bytes(manager, MANAGER_GET_DEVICE, &words(&[device, seat])),
                &[],
            );
            self.objects.insert(manager, Kind::Manager(which));
            self.objects.insert(device, Kind::Device(which));
            self.managers[i] = Some(manager);
            self.devices[i] = Some(device);
        }
        Ok(())
    }

    /// An X app took the selection with these types (`None`: the X selection is gone).
    pub(super) fn set(
        &mut self,
        ids: &mut Ids,
        which: Selection,
        types: Option<Vec<String>>,
        out: &mut Outgoing,
    ) -> Result<(), String> {
        let i = which.index();
        let (Some(manager), Some(device)) = (self.managers[i], self.devices[i]) else {
            return Ok(()); // the compositor has no such selection
        };
        let op = ops(which);
        let old = self.sources[i].take();
        let new = match types {
            Some(types) => {
                if let Some(m) = types.iter().find(|t| t.starts_with(FROM_X)) {
                    self.marker = Some(m.clone());
                }
                let source = ours(ids)?;
                out.push(
                    &wire::message_bytes(manager, MANAGER_CREATE_SOURCE, &words(&[source])),
                    &[],
                );
                for t in types.iter().take(MAX_TYPES) {
                    out.push(&wire::message_bytes(source, SOURCE_OFFER, &string(t)), &[]);
                }
                self.objects.insert(source, Kind::Source(which));
                self.sources[i] = Some(source);
                source
            }
            None if old.is_some() => 0,
            None => return Ok(()),
        };
        out.push(
            &wire::message_bytes(device, op.set_selection, &words(&[new, self.serial])),
            &[],
        );
        if let Some(old) = old {
            out.push(&wire::message_bytes(old, SOURCE_DESTROY, &[]), &[]);
        }
        Ok(())
    }

    /// The request that has the current offer write `mime` into a pipe (the caller adds the
    /// pipe), or `None` if there is no offer.
    pub fn receive(&self, which: Selection, mime: &str) -> Option<Vec<u8>> {
        let offer = self.current[which.index()]?;
        Some(wire::message_bytes(
            offer,
            ops(which).offer_receive,
            &string(mime),
        ))
    }

    /// An event to one of our objects (see [`WlSelections::handles`]). `fd` takes the
    /// descriptor an event carries.
    pub fn event(
        &mut self,
        sender: u32,
        opcode: u16,
        msg: &[u8],
        fd: &mut dyn FnMut() -> Result<OwnedFd, String>,
        notices: &mut Vec<Notice>,
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<(), String> {
        let body = &msg[HEADER..];
        if let Some((_, types)) = self.offers.get_mut(&sender) {
            // wl_data_offer.offer and its twin; source_actions and action are not X's.
            if opcode == 0 {
                let mime = mime_of(body, false)?;
                if types.len() < MAX_TYPES && mime.len() <= MAX_TYPE_LEN && !types.contains(&mime) {
                    types.push(mime);
                }
            }
            return Ok(());
        }
        let Some(&kind) = self.objects.get(&sender) else {
            return Ok(());
        };
        match kind {
            Kind::Device(which) => {
                let op = ops(which);
                if opcode == 0 {
                    // data_offer: a new offer, its types follow.
                    let id = word(body, 0)?;
                    if id < SERVER_IDS || self.offers.len() >= MAX_OFFERS {
                        return Err(format!("the host made offer {id} beyond what it may"));
                    }
                    self.offers.insert(id, (which, Vec::new()));
                } else if which == Selection::Clipboard && opcode == DEVICE_ENTER {
                    // A drag over an X window: X takes no drops from Wayland.
                    let offer = word(body, 4)?;
                    if self.offers.remove(&offer).is_some() {
                        replies.push(wire::message_bytes(offer, op.offer_destroy, &[]));
                    }
                } else if opcode == op.selection_event {
                    self.selection(which, word(body, 0)?, notices, replies);
                }
            }
            Kind::Source(which) => {
                let op = ops(which);
                if opcode == op.source_send {
                    let mime = mime_of(body, true)?;
                    let fd = fd()?;
                    if self.sources[which.index()] == Some(sender) {
                        notices.push(Notice::Send {
                            which,
                            mime,
                            fd: Pipe::new(fd),
                        });
                    }
                } else if opcode == op.source_cancelled
                    && self.sources[which.index()] == Some(sender)
                {
                    // (A source we replaced is destroyed already.)
                    self.sources[which.index()] = None;
                    replies.push(wire::message_bytes(sender, SOURCE_DESTROY, &[]));
                }
            }
            Kind::Seat | Kind::Manager(_) => {}
        }
        Ok(())
    }

    /// The compositor's selection for Xwayland is `offer` (0: none).
    fn selection(
        &mut self,
        which: Selection,
        offer: u32,
        notices: &mut Vec<Notice>,
        replies: &mut Vec<Vec<u8>>,
    ) {
        let op = ops(which);
        // Every other offer of this selection is done with.
        let stale: Vec<u32> = self
            .offers
            .iter()
            .filter(|(id, (w, _))| *w == which && **id != offer)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.offers.remove(&id);
            replies.push(wire::message_bytes(id, op.offer_destroy, &[]));
        }
        let types = self.offers.get(&offer).map(|(_, t)| t.clone());
        self.current[which.index()] = types.as_ref().map(|_| offer);
        let ours = |t: &Vec<String>| self.marker.as_ref().is_some_and(|m| t.contains(m));
        if types.as_ref().is_some_and(ours) {
            return; // this bridge's X selection, offered back
        }
        notices.push(Notice::Offer { which, types });
    }

    /// The host deleted one of our objects (`wl_display.delete_id`).
    pub fn forget(&mut self, id: u32) {
        self.objects.remove(&id);
    }
}

fn ours(ids: &mut Ids) -> Result<u32, String> {
    let id = ids.alloc()?;
    ids.ours.insert(id);
    Ok(id)
}

/// wl_registry.bind of version 1 of `iface`.
fn bind(registry: u32, name: u32, iface: &str, id: u32) -> Vec<u8> {
    let mut body = words(&[name]);
    body.extend(string(iface));
    body.extend(words(&[1, id]));
    wire::message_bytes(registry, 0, &body)
}

fn word(body: &[u8], i: usize) -> Result<u32, String> {
    wire::word_at(body, i).ok_or_else(|| "a selection event shorter than its arguments".into())
}

const MIME: ArgumentType = ArgumentType::Str(wayland_backend::protocol::AllowNull::No);

/// The mime type an event names first (`offer(mime)`, or `send(mime, fd)` with `fd`).
fn mime_of(body: &[u8], fd: bool) -> Result<String, String> {
    let sig: &[ArgumentType] = if fd {
        &[MIME, ArgumentType::Fd]
    } else {
        &[MIME]
    };
    match wire::parse_args(sig, body)?.into_iter().next() {
        Some(Arg::Str(Some(s))) => Ok(s),
        _ => Err("a selection event without its mime type".into()),
    }
}
