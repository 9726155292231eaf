//! What one VM client, and one VM domain, may hold (threat model, promise 4).
//!
//! Every object a client makes enters its object map through the hook of our patched
//! wayland-backend (`ClientData::object_created`, see `compositor/vendor/README.md`), so one
//! table caps every kind of object, listed or not: a VM client over its own limit, or one
//! whose domain is over the domain's limit, is disconnected with `wl_display.no_memory` and
//! the user is told which VM it was. Host clients are trusted and not counted. Other costs
//! that are not objects (bytes of shm pools, rectangles, MIME types, queued fds, connections)
//! have their own constants here. docs/security.md lists them all, with how they were chosen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Objects of one interface a VM client may hold at once, for the interfaces that apps make
/// many of; every other interface gets [`DEFAULT_PER_CLIENT`].
pub const PER_CLIENT: &[(&str, usize)] = &[
    ("wl_surface", 2_000),
    ("wl_subsurface", 2_000),
    ("wp_viewport", 2_000),
    ("wp_fractional_scale_v1", 2_000),
    // Frame callbacks of every surface, and syncs.
    ("wl_callback", 4_000),
    ("wl_buffer", 4_000),
    ("wp_presentation_feedback", 4_000),
    ("wl_region", 1_000),
    ("wl_shm_pool", SHM_POOLS_PER_CLIENT),
    ("xdg_surface", 1_000),
    ("xdg_positioner", 1_000),
    ("xdg_toplevel", 500),
    ("zxdg_toplevel_decoration_v1", 500),
    ("xdg_popup", 100),
    ("xdg_activation_token_v1", 64),
    ("wl_data_offer", 256),
    ("zwp_primary_selection_offer_v1", 256),
    ("wl_data_source", 64),
    ("zwp_primary_selection_source_v1", 64),
    ("zwp_idle_inhibitor_v1", 16),
];

/// Objects of any interface not in [`PER_CLIENT`].
pub const DEFAULT_PER_CLIENT: usize = 1_000;
/// Objects of all kinds together, per VM client.
pub const TOTAL_PER_CLIENT: usize = 20_000;
/// A VM domain (all its clients together) may hold this many times one client's limit, for
/// every interface and in total.
pub const DOMAIN_FACTOR: usize = 4;
/// Connections one VM socket serves at once (each app in a VM is one).
pub const CLIENTS_PER_VM: usize = 64;
/// Bytes of shm pools one VM client may have mapped (pools live on while buffers use them).
/// Mapped, not used: foot maps 512 MiB pools to scroll by moving offsets, and holds several
/// while it resizes.
pub const SHM_BYTES_PER_CLIENT: usize = 4 << 30;
/// Bytes of shm pools of one VM domain.
pub const SHM_BYTES_PER_DOMAIN: usize = 16 << 30;
/// Shm pools one VM client may have mapped (each holds an fd and a mapping while it or a
/// buffer made from it lives); its domain may have [`DOMAIN_FACTOR`] times as many.
pub const SHM_POOLS_PER_CLIENT: usize = 256;
/// Rectangles in one wl_region, and damage rectangles on one surface between two commits.
pub const RECTS_PER_REGION: usize = 4_096;
/// MIME types one data source may offer.
pub const MIME_TYPES_PER_SOURCE: usize = 128;
/// Queued fds per client, in wayland-backend (`MAX_FDS_IN`; here for the docs and tests).
pub const FDS_QUEUED_PER_CLIENT: usize = 1_024;

/// The limit of one client for `interface`.
pub fn per_client(interface: &str) -> usize {
    PER_CLIENT
        .iter()
        .find(|(name, _)| *name == interface)
        .map_or(DEFAULT_PER_CLIENT, |(_, n)| *n)
}

/// Live objects by interface, and in total.
#[derive(Default, Debug)]
pub struct Counts {
    by_interface: HashMap<&'static str, usize>,
    total: usize,
    /// The most each interface, and all together, ever reached (for sizing the limits).
    peaks: HashMap<&'static str, usize>,
    peak_total: usize,
}

impl Counts {
    pub fn get(&self, interface: &str) -> usize {
        self.by_interface.get(interface).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    fn add(&mut self, interface: &'static str, n: usize) {
        let c = self.by_interface.entry(interface).or_insert(0);
        *c += n;
        let peak = self.peaks.entry(interface).or_insert(0);
        *peak = (*peak).max(*c);
        self.total += n;
        self.peak_total = self.peak_total.max(self.total);
    }

    /// "412 objects at most (wl_callback 120, wl_buffer 96, …)": the highest counts seen.
    pub fn peaks(&self) -> String {
        let mut by: Vec<_> = self.peaks.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<_> = by.iter().take(8).map(|(i, n)| format!("{i} {n}")).collect();
        format!("{} objects at most ({})", self.peak_total, top.join(", "))
    }

    /// Takes `n` away (never below zero: a miscount must not lift a limit by wrapping).
    fn sub(&mut self, interface: &'static str, n: usize) {
        if let Some(c) = self.by_interface.get_mut(interface) {
            let n = n.min(*c);
            *c -= n;
            self.total = self.total.saturating_sub(n);
            if *c == 0 {
                self.by_interface.remove(interface);
            }
        }
    }
}

/// Why a VM client was refused something: the notification's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error("more than {limit} {interface} objects")]
    Client {
        interface: &'static str,
        limit: usize,
    },
    #[error("more than {limit} objects")]
    ClientTotal { limit: usize },
    #[error("its VM holds more than {limit} {interface} objects")]
    Domain {
        interface: &'static str,
        limit: usize,
    },
    #[error("its VM holds more than {limit} objects")]
    DomainTotal { limit: usize },
    #[error("more than {} MiB of shared memory", limit >> 20)]
    ShmBytes { limit: usize },
    #[error("its VM maps more than {} MiB of shared memory", limit >> 20)]
    DomainShmBytes { limit: usize },
    #[error("more than {limit} shared memory pools")]
    ShmPools { limit: usize },
    #[error("its VM maps more than {limit} shared memory pools")]
    DomainShmPools { limit: usize },
    #[error("more than {limit} rectangles in one {what}")]
    Rects { what: &'static str, limit: usize },
    #[error("more than {limit} MIME types on one data source")]
    MimeTypes { limit: usize },
}

/// What all clients of one VM domain hold together, shared by its clients.
#[derive(Default, Debug)]
pub struct DomainUsage {
    objects: Mutex<Counts>,
    shm_bytes: AtomicUsize,
    shm_pools: AtomicUsize,
    clients: AtomicUsize,
}

impl DomainUsage {
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn objects(&self) -> MutexGuard<'_, Counts> {
        lock(&self.objects)
    }

    pub fn shm_bytes(&self) -> usize {
        self.shm_bytes.load(Ordering::Relaxed)
    }
}

/// One VM client's share: its own counts and its domain's.
#[derive(Debug)]
pub struct ClientUsage {
    domain: Arc<DomainUsage>,
    objects: Mutex<Counts>,
    shm_bytes: AtomicUsize,
    shm_pools: AtomicUsize,
    /// The most shm bytes and pools this client ever held.
    shm_peak: Mutex<(usize, usize)>,
    /// The first limit this client went over (why it was disconnected).
    exceeded: Mutex<Option<Exceeded>>,
    /// Counted in the domain until the client is gone.
    connected: std::sync::atomic::AtomicBool,
}

impl ClientUsage {
    /// A new client of the domain whose usage is `domain`, counted as one of its clients.
    pub fn new(domain: Arc<DomainUsage>) -> ClientUsage {
        domain.clients.fetch_add(1, Ordering::Relaxed);
        ClientUsage {
            domain,
            objects: Mutex::default(),
            shm_bytes: AtomicUsize::new(0),
            shm_pools: AtomicUsize::new(0),
            shm_peak: Mutex::default(),
            exceeded: Mutex::new(None),
            connected: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Counts one more object of `interface`, unless that takes the client or its domain
    /// over a limit.
    pub fn add_object(&self, interface: &'static str) -> Result<(), Exceeded> {
        let mut own = lock(&self.objects);
        let mut dom = lock(&self.domain.objects);
        let limit = per_client(interface);
        let refused = if own.get(interface) >= limit {
            Some(Exceeded::Client { interface, limit })
        } else if own.total() >= TOTAL_PER_CLIENT {
            Some(Exceeded::ClientTotal {
                limit: TOTAL_PER_CLIENT,
            })
        } else if dom.get(interface) >= limit * DOMAIN_FACTOR {
            Some(Exceeded::Domain {
                interface,
                limit: limit * DOMAIN_FACTOR,
            })
        } else if dom.total() >= TOTAL_PER_CLIENT * DOMAIN_FACTOR {
            Some(Exceeded::DomainTotal {
                limit: TOTAL_PER_CLIENT * DOMAIN_FACTOR,
            })
        } else {
            None
        };
        match refused {
            Some(e) => Err(self.refuse(e)),
            None => {
                own.add(interface, 1);
                dom.add(interface, 1);
                Ok(())
            }
        }
    }

    pub fn remove_object(&self, interface: &'static str) {
        let mut own = lock(&self.objects);
        if own.get(interface) == 0 {
            return;
        }
        own.sub(interface, 1);
        lock(&self.domain.objects).sub(interface, 1);
    }

    /// Charges a new shm pool of `bytes` to the client and its domain; the returned charge
    /// gives them back when the last holder (the pool and every buffer made from it) drops it.
    pub fn charge_shm(self: &Arc<Self>, bytes: usize) -> Result<ShmCharge, Exceeded> {
        let pools = self.shm_pools.load(Ordering::Relaxed);
        if pools >= SHM_POOLS_PER_CLIENT {
            return Err(self.refuse(Exceeded::ShmPools {
                limit: SHM_POOLS_PER_CLIENT,
            }));
        }
        if self.domain.shm_pools.load(Ordering::Relaxed) >= SHM_POOLS_PER_CLIENT * DOMAIN_FACTOR {
            return Err(self.refuse(Exceeded::DomainShmPools {
                limit: SHM_POOLS_PER_CLIENT * DOMAIN_FACTOR,
            }));
        }
        self.check_shm_bytes(bytes)?;
        self.shm_pools.fetch_add(1, Ordering::Relaxed);
        self.domain.shm_pools.fetch_add(1, Ordering::Relaxed);
        self.shm_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.domain.shm_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.note_shm_peak();
        Ok(ShmCharge {
            client: self.clone(),
            bytes: AtomicUsize::new(bytes),
        })
    }

    fn note_shm_peak(&self) {
        let mut peak = lock(&self.shm_peak);
        peak.0 = peak.0.max(self.shm_bytes.load(Ordering::Relaxed));
        peak.1 = peak.1.max(self.shm_pools.load(Ordering::Relaxed));
    }

    /// What this client held at most: objects, shm bytes and pools (logged when it leaves).
    pub fn peaks(&self) -> String {
        let (bytes, pools) = *lock(&self.shm_peak);
        format!(
            "{}; {} MiB of shm in {pools} pools at most",
            lock(&self.objects).peaks(),
            bytes >> 20
        )
    }

    fn check_shm_bytes(&self, more: usize) -> Result<(), Exceeded> {
        let own = self.shm_bytes.load(Ordering::Relaxed);
        if own.saturating_add(more) > SHM_BYTES_PER_CLIENT {
            return Err(self.refuse(Exceeded::ShmBytes {
                limit: SHM_BYTES_PER_CLIENT,
            }));
        }
        if self.domain.shm_bytes().saturating_add(more) > SHM_BYTES_PER_DOMAIN {
            return Err(self.refuse(Exceeded::DomainShmBytes {
                limit: SHM_BYTES_PER_DOMAIN,
            }));
        }
        Ok(())
    }

    /// Records `e` as why the client is disconnected (the first reason is kept) and returns
    /// it.
    pub fn refuse(&self, e: Exceeded) -> Exceeded {
        lock(&self.exceeded).get_or_insert_with(|| e.clone());
        e
    }

    /// The limit this client went over, if any.
    pub fn exceeded(&self) -> Option<Exceeded> {
        lock(&self.exceeded).clone()
    }

    /// The client is gone: its objects and its connection leave the domain's counts. Runs
    /// once however often it is called; shm charges leave when their last holder drops.
    pub fn disconnected(&self) {
        if !self.connected.swap(false, Ordering::Relaxed) {
            return;
        }
        tracing::info!("a VM client left: {}", self.peaks());
        let mut own = lock(&self.objects);
        let mut dom = lock(&self.domain.objects);
        for (interface, n) in own.by_interface.drain() {
            dom.sub(interface, n);
        }
        own.total = 0;
        self.domain.clients.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn objects(&self) -> MutexGuard<'_, Counts> {
        lock(&self.objects)
    }
}

impl Drop for ClientUsage {
    /// A client that never reached the display (its insertion failed) leaves the domain too.
    fn drop(&mut self) {
        self.disconnected();
    }
}

/// One shm pool (its bytes, its fd and mapping), charged to a client and its domain while
/// the pool or a buffer of it lives.
#[derive(Debug)]
pub struct ShmCharge {
    client: Arc<ClientUsage>,
    bytes: AtomicUsize,
}

impl ShmCharge {
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The pool grows to `bytes` (`wl_shm_pool.resize`; a pool never shrinks).
    pub fn grow(&self, bytes: usize) -> Result<(), Exceeded> {
        let more = bytes.saturating_sub(self.bytes());
        self.client.check_shm_bytes(more)?;
        self.bytes.fetch_add(more, Ordering::Relaxed);
        self.client.shm_bytes.fetch_add(more, Ordering::Relaxed);
        self.client
            .domain
            .shm_bytes
            .fetch_add(more, Ordering::Relaxed);
        self.client.note_shm_peak();
        Ok(())
    }
}

impl Drop for ShmCharge {
    fn drop(&mut self) {
        let sub = |a: &AtomicUsize, n: usize| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        let bytes = self.bytes();
        sub(&self.client.shm_bytes, bytes);
        sub(&self.client.domain.shm_bytes, bytes);
        sub(&self.client.shm_pools, 1);
        sub(&self.client.domain.shm_pools, 1);
    }
}

/// Locks a counter, whatever a panicking holder left (the counts stay usable).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_capped_per_interface_and_in_total() {
        let domain = Arc::new(DomainUsage::default());
        let c = ClientUsage::new(domain.clone());
        for _ in 0..per_client("xdg_popup") {
            c.add_object("xdg_popup").unwrap();
        }
        assert_eq!(
            c.add_object("xdg_popup"),
            Err(Exceeded::Client {
                interface: "xdg_popup",
                limit: 100
            })
        );
        c.remove_object("xdg_popup");
        c.add_object("xdg_popup").unwrap();
        // The first reason is kept.
        assert_eq!(
            c.exceeded().unwrap().to_string(),
            "more than 100 xdg_popup objects"
        );
        // Twenty kinds at the default limit each make the total.
        const KINDS: [&str; 20] = [
            "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "k12", "k13",
            "k14", "k15", "k16", "k17", "k18", "k19",
        ];
        assert_eq!(KINDS.len() * DEFAULT_PER_CLIENT, TOTAL_PER_CLIENT);
        let d = ClientUsage::new(domain.clone());
        for kind in KINDS {
            for _ in 0..DEFAULT_PER_CLIENT {
                d.add_object(kind).unwrap();
            }
        }
        assert!(matches!(
            d.add_object("wl_region"),
            Err(Exceeded::ClientTotal { .. })
        ));
    }

    #[test]
    fn a_domain_is_capped_across_its_clients_and_forgets_the_gone() {
        let domain = Arc::new(DomainUsage::default());
        let clients: Vec<_> = (0..=DOMAIN_FACTOR)
            .map(|_| ClientUsage::new(domain.clone()))
            .collect();
        assert_eq!(domain.clients(), DOMAIN_FACTOR + 1);
        for c in &clients[..DOMAIN_FACTOR] {
            for _ in 0..per_client("zwp_idle_inhibitor_v1") {
                c.add_object("zwp_idle_inhibitor_v1").unwrap();
            }
        }
        let last = &clients[DOMAIN_FACTOR];
        assert!(matches!(
            last.add_object("zwp_idle_inhibitor_v1"),
            Err(Exceeded::Domain { .. })
        ));
        clients[0].disconnected();
        clients[0].disconnected();
        assert_eq!(domain.clients(), DOMAIN_FACTOR);
        assert_eq!(domain.objects().get("zwp_idle_inhibitor_v1"), 48);
        // A destruction after the disconnect changes nothing.
        clients[0].remove_object("zwp_idle_inhibitor_v1");
        assert_eq!(domain.objects().get("zwp_idle_inhibitor_v1"), 48);
        let fresh = ClientUsage::new(domain.clone());
        fresh.add_object("zwp_idle_inhibitor_v1").unwrap();
        let clients = domain.clients();
        drop(fresh);
        assert_eq!(
            domain.clients(),
            clients - 1,
            "a dropped client leaves its domain"
        );
    }

    #[test]
    fn shm_charges_last_as_long_as_their_holders() {
        let domain = Arc::new(DomainUsage::default());
        let c = Arc::new(ClientUsage::new(domain.clone()));
        // A pool whose charge a buffer still holds after the pool is gone.
        let pool = c.charge_shm(SHM_BYTES_PER_CLIENT / 2).unwrap();
        let buffer_hold = Arc::new(pool);
        let again = c.charge_shm(SHM_BYTES_PER_CLIENT / 2).unwrap();
        assert!(matches!(c.charge_shm(1), Err(Exceeded::ShmBytes { .. })));
        drop(again);
        // The domain fills up with other clients at their own limit.
        let others: Vec<_> = (0..SHM_BYTES_PER_DOMAIN / SHM_BYTES_PER_CLIENT - 1)
            .map(|_| {
                let o = Arc::new(ClientUsage::new(domain.clone()));
                let charge = o.charge_shm(SHM_BYTES_PER_CLIENT).unwrap();
                (o, charge)
            })
            .collect();
        let last = Arc::new(ClientUsage::new(domain.clone()));
        let half = last.charge_shm(SHM_BYTES_PER_CLIENT / 2).unwrap();
        assert!(matches!(
            last.charge_shm(1),
            Err(Exceeded::DomainShmBytes { .. })
        ));
        drop((buffer_hold, others, half));
        assert_eq!(domain.shm_bytes(), 0);
        let grown = last.charge_shm(4096).unwrap();
        grown.grow(SHM_BYTES_PER_CLIENT).unwrap();
        assert!(matches!(
            grown.grow(SHM_BYTES_PER_CLIENT + 1),
            Err(Exceeded::ShmBytes { .. })
        ));
        drop(grown);
        assert_eq!(domain.shm_bytes(), 0);
        let small: Vec<_> = (0..SHM_POOLS_PER_CLIENT)
            .map(|_| last.charge_shm(1).unwrap())
            .collect();
        assert!(matches!(last.charge_shm(1), Err(Exceeded::ShmPools { .. })));
        drop(small);
        assert!(last.charge_shm(1).is_ok());
    }
}
