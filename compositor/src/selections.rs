//! Each domain keeps its own clipboard and primary selection (threat model, promise 3).
//!
//! smithay keeps one selection per seat and cancels a client's source as soon as another
//! replaces it, so a domain would lose its clipboard whenever another domain copies. Here the
//! seat never holds a client's source: `wl_data_device.set_selection` and its primary twin are
//! taken before smithay sees them (`handlers/seat.rs`), the source is kept as the selection of
//! the domain of the client that set it, and the seat offers, as a compositor selection, the
//! selection of the domain that holds the keyboard. Requests for it are forwarded to the
//! source. A source is cancelled only when its own domain replaces it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use smithay::reexports::wayland_server::backend::ObjectId;
use smithay::reexports::wayland_server::Resource;
use smithay::wayland::selection::data_device::{
    clear_data_device_selection, set_data_device_focus, set_data_device_selection,
};
use smithay::wayland::selection::primary_selection::{
    clear_primary_selection, set_primary_focus, set_primary_selection,
};
use smithay::wayland::selection::SelectionTarget;

use crate::clipboard::{serve_selection, SelectionData, MAX_TYPES};
use crate::domain::Domain;
use crate::state::State;

/// Most primary-selection sources whose offered types are remembered at once (one per app
/// that copied; the oldest are forgotten first).
const MAX_PRIMARY_SOURCES: usize = 256;

/// One domain's selection.
#[derive(Debug, Clone)]
pub struct Held {
    pub types: Vec<String>,
    pub data: SelectionData,
    version: u64,
}

/// Every domain's clipboard and primary selection, and which one the seat offers.
#[derive(Default)]
pub struct Selections {
    held: HashMap<Domain, [Option<Held>; 2]>,
    installed: [Option<(Domain, u64)>; 2],
    next_version: u64,
    /// The types each primary-selection source offered (smithay keeps its own private).
    primary_offers: Vec<(ObjectId, Vec<String>)>,
    /// How many types each live primary-selection source offered (see `primary_offer_count`).
    primary_offer_counts: std::collections::HashMap<ObjectId, usize>,
}

pub fn slot(target: SelectionTarget) -> usize {
    match target {
        SelectionTarget::Clipboard => 0,
        SelectionTarget::Primary => 1,
    }
}

impl Selections {
    pub fn get(&self, domain: &Domain, target: SelectionTarget) -> Option<&Held> {
        self.held.get(domain)?[slot(target)].as_ref()
    }

    /// The domain whose `target` selection the seat offers now.
    pub fn installed_domain(&self, target: SelectionTarget) -> Option<&Domain> {
        self.installed[slot(target)].as_ref().map(|(d, _)| d)
    }

    /// Which setting of its domain's selection the seat offers now (a new number each time
    /// a selection is set).
    pub fn installed_version(&self, target: SelectionTarget) -> Option<u64> {
        self.installed[slot(target)].as_ref().map(|(_, v)| *v)
    }

    /// The selection the seat offers now.
    pub fn installed(&self, target: SelectionTarget) -> Option<&Held> {
        self.get(self.installed_domain(target)?, target)
    }

    /// Replaces `domain`'s `target` selection; returns the one it had.
    fn set(
        &mut self,
        domain: &Domain,
        target: SelectionTarget,
        new: Option<(Vec<String>, SelectionData)>,
    ) -> Option<Held> {
        self.next_version += 1;
        let version = self.next_version;
        let held = new.map(|(types, data)| Held {
            types,
            data,
            version,
        });
        let entry = self.held.entry(domain.clone()).or_default();
        let old = std::mem::replace(&mut entry[slot(target)], held);
        if entry.iter().all(Option::is_none) {
            self.held.remove(domain);
        }
        old
    }

    /// Remembers a type a primary-selection source offers (bounded per source and overall).
    pub fn primary_offered(&mut self, source: ObjectId, mime: String) {
        *self.primary_offer_counts.entry(source.clone()).or_insert(0) += 1;
        if let Some((_, types)) = self.primary_offers.iter_mut().find(|(id, _)| *id == source) {
            if types.len() < MAX_TYPES && !types.contains(&mime) {
                types.push(mime);
            }
            return;
        }
        if self.primary_offers.len() >= MAX_PRIMARY_SOURCES {
            self.primary_offers.remove(0);
        }
        self.primary_offers.push((source, vec![mime]));
    }

    pub fn primary_types(&self, source: &ObjectId) -> Vec<String> {
        self.primary_offers
            .iter()
            .find(|(id, _)| id == source)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }

    pub fn primary_source_gone(&mut self, source: &ObjectId) {
        self.primary_offers.retain(|(id, _)| id != source);
        self.primary_offer_counts.remove(source);
    }

    /// How many `offer` requests a primary source has made (smithay keeps every one).
    pub fn primary_offer_count(&self, source: &ObjectId) -> usize {
        self.primary_offer_counts.get(source).copied().unwrap_or(0)
    }
}

/// Whether two selections come from the same source (replacing one by itself cancels nothing).
fn same_source(a: &SelectionData, b: Option<&SelectionData>) -> bool {
    match (a, b) {
        (SelectionData::Client(x), Some(SelectionData::Client(y))) => x == y,
        (SelectionData::PrimaryClient(x), Some(SelectionData::PrimaryClient(y))) => x == y,
        (SelectionData::Control(x), Some(SelectionData::Control(y))) => x == y,
        _ => false,
    }
}

impl State {
    /// Sets `domain`'s `target` selection (an app's source, a host clipboard manager's, or a
    /// paste), cancels the source it replaces, and offers the focused domain's selection.
    pub fn set_domain_selection(
        &mut self,
        domain: &Domain,
        target: SelectionTarget,
        new: Option<(Vec<String>, SelectionData)>,
    ) {
        let new_data = new.as_ref().map(|(_, d)| d.clone());
        let old = self.desk.selections.set(domain, target, new);
        if let Some(old) = old.filter(|o| !same_source(&o.data, new_data.as_ref())) {
            match old.data {
                SelectionData::Client(src) if src.is_alive() => src.cancelled(),
                SelectionData::PrimaryClient(src) if src.is_alive() => src.cancelled(),
                SelectionData::Control(src) if src.is_alive() => src.cancelled(),
                _ => {}
            }
        }
        self.install_selections();
        if domain.is_host() {
            // Host clipboard managers see the host domain's selections only.
            self.data_control_broadcast(target);
        }
    }

    /// Offers the focused domain's selections through the seat, and only to clients of that
    /// domain. While the seat's selection changes hands, no client has selection focus, so
    /// nothing of one domain is ever offered to a client of another.
    pub fn install_selections(&mut self) {
        let dh = self.desk.display_handle.clone();
        let seat = self.desk.seat.clone();
        let focused = self.desk.focused_domain();
        for target in [SelectionTarget::Clipboard, SelectionTarget::Primary] {
            let Some(domain) = focused.clone() else {
                continue;
            };
            let held = self.desk.selections.get(&domain, target).cloned();
            let want = held.as_ref().map(|h| (domain.clone(), h.version));
            if want == self.desk.selections.installed[slot(target)] {
                continue;
            }
            match target {
                SelectionTarget::Clipboard => set_data_device_focus(&dh, &seat, None),
                SelectionTarget::Primary => set_primary_focus(&dh, &seat, None),
            }
            match (target, held) {
                (SelectionTarget::Clipboard, Some(h)) => {
                    set_data_device_selection(&dh, &seat, h.types, h.data)
                }
                (SelectionTarget::Primary, Some(h)) => {
                    set_primary_selection(&dh, &seat, h.types, h.data)
                }
                (SelectionTarget::Clipboard, None) => clear_data_device_selection(&dh, &seat),
                (SelectionTarget::Primary, None) => clear_primary_selection(&dh, &seat),
            }
            self.desk.selections.installed[slot(target)] = want;
        }
        self.update_selection_focus();
    }

    /// An app's source is gone (destroyed, or its client disconnected): the selection it was
    /// of its domain is cleared.
    pub fn selection_source_gone(&mut self, source: &SelectionData) {
        let held: Vec<(Domain, SelectionTarget)> = self
            .desk
            .selections
            .held
            .iter()
            .flat_map(|(d, pair)| {
                [SelectionTarget::Clipboard, SelectionTarget::Primary]
                    .into_iter()
                    .filter(|t| {
                        pair[slot(*t)]
                            .as_ref()
                            .is_some_and(|h| same_source(&h.data, Some(source)))
                    })
                    .map(move |t| (d.clone(), t))
            })
            .collect();
        for (domain, target) in held {
            self.set_domain_selection(&domain, target, None);
        }
    }

    /// Has `domain`'s `target` selection write `mime` into `fd`.
    pub fn serve_domain_selection(
        &mut self,
        domain: &Domain,
        target: SelectionTarget,
        mime: &str,
        fd: OwnedFd,
    ) -> Result<(), String> {
        let held = self
            .desk
            .selections
            .get(domain, target)
            .ok_or_else(|| format!("[{}] has no selection", domain.name()))?
            .data
            .clone();
        serve_selection(self, &held, mime, fd);
        Ok(())
    }
}
