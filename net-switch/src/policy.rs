//! The forwarding policy: which frames a port may send and to whom they go.
//!
//! Nothing is learned from guests. Every port's MAC and role come from the VM manager, so a
//! guest cannot claim another address or move itself into the router's seat:
//! - a frame's source MAC must be its port's MAC, or the frame is dropped (`SpoofedSource`);
//! - a network has at most one router; a client's frames go to the router only (unicast to the
//!   router's MAC, or broadcast/multicast, which the router alone receives); a client addressing
//!   another client, or any MAC that is not the router's, is dropped (`NotPermitted`);
//! - the router's unicast frames go to the client with that MAC (else `UnknownDestination`);
//!   its broadcast/multicast frames go to every client;
//! - frames shorter than an Ethernet header are `Malformed`; frames whose payload exceeds the
//!   MTU (plus four bytes for one 802.1Q tag) are `Oversize`.
//!
//! This module is pure: no I/O, no allocation per frame.

use std::fmt;
use std::str::FromStr;

/// Length of an Ethernet header (destination, source, EtherType).
pub const ETH_HLEN: usize = 14;
/// Length of one 802.1Q tag.
pub const VLAN_HLEN: usize = 4;
/// The MTU when none is given.
pub const DEFAULT_MTU: usize = 1500;
/// The largest MTU a network may have (jumbo frames); bounds every buffer and ring slot.
pub const MAX_MTU: usize = 9000;
/// The smallest MTU IPv4 permits.
pub const MIN_MTU: usize = 68;

/// The largest frame (header included) a network with this MTU forwards.
pub fn max_frame_len(mtu: usize) -> usize {
    mtu + ETH_HLEN + VLAN_HLEN
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Broadcast and multicast addresses have the group bit set.
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let bad = || format!("{s:?} is not a MAC address such as 02:00:00:00:00:01");
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for o in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

/// A port's place in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Router,
    Client,
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "router" => Ok(Role::Router),
            "client" => Ok(Role::Client),
            other => Err(format!("role {other:?}: use router or client")),
        }
    }
}

/// One VM's attachment to the network, as the VM manager describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The VM's name (also names the port's socket).
    pub vm: String,
    pub mac: Mac,
    pub role: Role,
}

/// Why a frame was not forwarded. The discriminant indexes the per-port drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Malformed = 0,
    /// Payload over the MTU.
    Oversize = 1,
    /// Source MAC is not the port's.
    SpoofedSource = 2,
    /// A client addressed something other than the router.
    NotPermitted = 3,
    /// The router addressed a MAC no client has (or its own).
    UnknownDestination = 4,
    /// The network has no router, so a client's frame has nowhere to go.
    NoRouter = 5,
    /// A descriptor chain the guest gave was unusable (out of guest memory, wrong direction,
    /// longer than any frame may be).
    BadDescriptor = 6,
    /// The peer's ring was full (the peer is not reading fast enough).
    PeerBusy = 7,
    /// The peer's port is not connected (its child is restarting or has no ring yet).
    PeerDown = 8,
}

impl DropReason {
    pub const COUNT: usize = 9;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::Oversize,
        DropReason::SpoofedSource,
        DropReason::NotPermitted,
        DropReason::UnknownDestination,
        DropReason::NoRouter,
        DropReason::BadDescriptor,
        DropReason::PeerBusy,
        DropReason::PeerDown,
    ];

    /// The name used in counter reports.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Oversize => "oversize",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::NotPermitted => "not_permitted",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::NoRouter => "no_router",
            DropReason::BadDescriptor => "bad_descriptor",
            DropReason::PeerBusy => "peer_busy",
            DropReason::PeerDown => "peer_down",
        }
    }
}

/// Where a frame goes: indexes into the topology's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward<'a> {
    One(usize),
    /// Every permitted peer of the sender (broadcast and multicast).
    Flood(&'a [usize]),
}

/// Errors in a network's description.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("the network has no ports")]
    Empty,
    #[error("ports {0:?} and {1:?} are both routers; a network has one router")]
    TwoRouters(String, String),
    #[error("ports {0:?} and {1:?} share the MAC {2}")]
    DuplicateMac(String, String, Mac),
    #[error("two ports are named {0:?}")]
    DuplicateName(String),
    #[error("port {0:?} has the group (multicast) MAC {1}; a port needs a unicast MAC")]
    GroupMac(String, Mac),
    #[error("port name {0:?} must be 1-64 characters of [A-Za-z0-9._-], not starting with '.'")]
    BadName(String),
    #[error("MTU {0} is outside {MIN_MTU}..={MAX_MTU}")]
    BadMtu(usize),
    #[error("a network has at most {MAX_PORTS} ports")]
    TooManyPorts,
}

/// The most ports one network may have (bounds every per-port table).
pub const MAX_PORTS: usize = 64;

/// A network: its ports, who may talk to whom, its MTU.
#[derive(Debug, Clone)]
pub struct Topology {
    ports: Vec<PortSpec>,
    router: Option<usize>,
    /// `peers[i]`: the ports port `i` may reach (the router for a client, every client for the
    /// router).
    peers: Vec<Vec<usize>>,
    mtu: usize,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Topology {
    pub fn new(ports: Vec<PortSpec>, mtu: usize) -> Result<Topology, TopologyError> {
        if ports.is_empty() {
            return Err(TopologyError::Empty);
        }
        if ports.len() > MAX_PORTS {
            return Err(TopologyError::TooManyPorts);
        }
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(TopologyError::BadMtu(mtu));
        }
        let mut router = None;
        for (i, p) in ports.iter().enumerate() {
            if !valid_name(&p.vm) {
                return Err(TopologyError::BadName(p.vm.clone()));
            }
            if p.mac.is_group() {
                return Err(TopologyError::GroupMac(p.vm.clone(), p.mac));
            }
            for q in &ports[..i] {
                if q.vm == p.vm {
                    return Err(TopologyError::DuplicateName(p.vm.clone()));
                }
                if q.mac == p.mac {
                    return Err(TopologyError::DuplicateMac(
                        q.vm.clone(),
                        p.vm.clone(),
                        p.mac,
                    ));
                }
            }
            if p.role == Role::Router {
                if let Some(r) = router {
                    let r: &PortSpec = &ports[r];
                    return Err(TopologyError::TwoRouters(r.vm.clone(), p.vm.clone()));
                }
                router = Some(i);
            }
        }
        let peers = (0..ports.len())
            .map(|i| match router {
                Some(r) if r == i => (0..ports.len()).filter(|&j| j != r).collect(),
                Some(r) => vec![r],
                None => Vec::new(),
            })
            .collect();
        Ok(Topology {
            ports,
            router,
            peers,
            mtu,
        })
    }

    pub fn ports(&self) -> &[PortSpec] {
        &self.ports
    }

    pub fn router(&self) -> Option<usize> {
        self.router
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The ports `port` may send to (and receive from).
    pub fn peers(&self, port: usize) -> &[usize] {
        self.peers.get(port).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Decides where a frame sent by `from`'s guest goes. `from` must be a port index.
    pub fn decide(&self, from: usize, frame: &[u8]) -> Result<Forward<'_>, DropReason> {
        let Some(me) = self.ports.get(from) else {
            return Err(DropReason::NotPermitted);
        };
        let Some((dst, src)) = parse_macs(frame) else {
            return Err(DropReason::Malformed);
        };
        if frame.len() > max_frame_len(self.mtu) {
            return Err(DropReason::Oversize);
        }
        if src != me.mac {
            return Err(DropReason::SpoofedSource);
        }
        let peers = self.peers(from);
        if dst.is_group() {
            return match me.role {
                Role::Client if self.router.is_none() => Err(DropReason::NoRouter),
                _ => Ok(Forward::Flood(peers)),
            };
        }
        match (me.role, self.router) {
            (Role::Client, None) => Err(DropReason::NoRouter),
            (Role::Client, Some(r)) => {
                if self.ports.get(r).is_some_and(|p| p.mac == dst) {
                    Ok(Forward::One(r))
                } else {
                    Err(DropReason::NotPermitted)
                }
            }
            (Role::Router, _) => peers
                .iter()
                .copied()
                .find(|&j| self.ports.get(j).is_some_and(|p| p.mac == dst))
                .map(Forward::One)
                .ok_or(DropReason::UnknownDestination),
        }
    }
}

/// Destination and source MAC of a frame, if it is long enough to have an Ethernet header.
pub fn parse_macs(frame: &[u8]) -> Option<(Mac, Mac)> {
    let hdr = frame.get(..ETH_HLEN)?;
    let mut dst = [0u8; 6];
    let mut src = [0u8; 6];
    dst.copy_from_slice(hdr.get(0..6)?);
    src.copy_from_slice(hdr.get(6..12)?);
    Some((Mac(dst), Mac(src)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const A: Mac = Mac([2, 0, 0, 0, 0, 2]);
    const B: Mac = Mac([2, 0, 0, 0, 0, 3]);
    const OTHER: Mac = Mac([2, 0, 0, 0, 0, 9]);

    fn port(vm: &str, mac: Mac, role: Role) -> PortSpec {
        PortSpec {
            vm: vm.into(),
            mac,
            role,
        }
    }

    fn net() -> Topology {
        Topology::new(
            vec![
                port("router", R, Role::Router),
                port("a", A, Role::Client),
                port("b", B, Role::Client),
            ],
            DEFAULT_MTU,
        )
        .unwrap()
    }

    fn frame(dst: Mac, src: Mac, payload: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(ETH_HLEN + payload, 0xab);
        f
    }

    #[test]
    fn router_and_client_reach_each_other() {
        let t = net();
        assert_eq!(t.decide(0, &frame(A, R, 50)), Ok(Forward::One(1)));
        assert_eq!(t.decide(0, &frame(B, R, 50)), Ok(Forward::One(2)));
        assert_eq!(t.decide(1, &frame(R, A, 50)), Ok(Forward::One(0)));
        assert_eq!(t.decide(2, &frame(R, B, 50)), Ok(Forward::One(0)));
    }

    #[test]
    fn clients_never_reach_each_other() {
        let t = net();
        assert_eq!(t.decide(1, &frame(B, A, 50)), Err(DropReason::NotPermitted));
        assert_eq!(
            t.decide(1, &frame(OTHER, A, 50)),
            Err(DropReason::NotPermitted)
        );
    }

    #[test]
    fn broadcast_goes_to_permitted_peers_only() {
        let t = net();
        assert_eq!(
            t.decide(0, &frame(Mac::BROADCAST, R, 50)),
            Ok(Forward::Flood(&[1, 2]))
        );
        assert_eq!(
            t.decide(1, &frame(Mac::BROADCAST, A, 50)),
            Ok(Forward::Flood(&[0]))
        );
        // IPv6 multicast (33:33:…) behaves like broadcast.
        let mcast = Mac([0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(t.decide(2, &frame(mcast, B, 50)), Ok(Forward::Flood(&[0])));
    }

    #[test]
    fn spoofed_source_is_dropped() {
        let t = net();
        assert_eq!(
            t.decide(1, &frame(R, B, 50)),
            Err(DropReason::SpoofedSource)
        );
        assert_eq!(
            t.decide(1, &frame(R, R, 50)),
            Err(DropReason::SpoofedSource)
        );
        assert_eq!(
            t.decide(0, &frame(A, Mac::BROADCAST, 50)),
            Err(DropReason::SpoofedSource)
        );
    }

    #[test]
    fn size_limits() {
        let t = net();
        assert_eq!(t.decide(1, &[0u8; 13]), Err(DropReason::Malformed));
        assert_eq!(t.decide(1, &[]), Err(DropReason::Malformed));
        // Exactly a header: forwarded (the guest's problem what it means).
        assert_eq!(t.decide(1, &frame(R, A, 0)), Ok(Forward::One(0)));
        assert_eq!(
            t.decide(1, &frame(R, A, DEFAULT_MTU + VLAN_HLEN)),
            Ok(Forward::One(0))
        );
        assert_eq!(
            t.decide(1, &frame(R, A, DEFAULT_MTU + VLAN_HLEN + 1)),
            Err(DropReason::Oversize)
        );
    }

    #[test]
    fn router_to_unknown_or_itself_is_dropped() {
        let t = net();
        assert_eq!(
            t.decide(0, &frame(OTHER, R, 50)),
            Err(DropReason::UnknownDestination)
        );
        assert_eq!(
            t.decide(0, &frame(R, R, 50)),
            Err(DropReason::UnknownDestination)
        );
    }

    #[test]
    fn without_router_clients_are_isolated() {
        let t = Topology::new(
            vec![port("a", A, Role::Client), port("b", B, Role::Client)],
            DEFAULT_MTU,
        )
        .unwrap();
        assert_eq!(t.decide(0, &frame(B, A, 50)), Err(DropReason::NoRouter));
        assert_eq!(
            t.decide(0, &frame(Mac::BROADCAST, A, 50)),
            Err(DropReason::NoRouter)
        );
        assert!(t.peers(0).is_empty());
    }

    #[test]
    fn bad_topologies_are_refused() {
        assert_eq!(
            Topology::new(vec![], DEFAULT_MTU).unwrap_err(),
            TopologyError::Empty
        );
        let two = vec![port("r1", R, Role::Router), port("r2", A, Role::Router)];
        assert!(matches!(
            Topology::new(two, DEFAULT_MTU),
            Err(TopologyError::TwoRouters(..))
        ));
        let dup = vec![port("r", R, Role::Router), port("a", R, Role::Client)];
        assert!(matches!(
            Topology::new(dup, DEFAULT_MTU),
            Err(TopologyError::DuplicateMac(..))
        ));
        let group = vec![port("r", Mac([3, 0, 0, 0, 0, 1]), Role::Router)];
        assert!(matches!(
            Topology::new(group, DEFAULT_MTU),
            Err(TopologyError::GroupMac(..))
        ));
        let name = vec![port("../x", R, Role::Router)];
        assert!(matches!(
            Topology::new(name, DEFAULT_MTU),
            Err(TopologyError::BadName(..))
        ));
        let one = vec![port("r", R, Role::Router)];
        assert_eq!(
            Topology::new(one, 20).unwrap_err(),
            TopologyError::BadMtu(20)
        );
    }

    #[test]
    fn mac_parses_and_prints() {
        let m: Mac = "02:aB:00:00:00:ff".parse().unwrap();
        assert_eq!(m, Mac([2, 0xab, 0, 0, 0, 0xff]));
        assert_eq!(m.to_string(), "02:ab:00:00:00:ff");
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:00:00:00:00:00",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
