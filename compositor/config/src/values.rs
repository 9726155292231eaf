//! Value types of the VM schema that check themselves while they are deserialised, so a bad
//! value is reported by `toml` at its own `line:col` with a message that says what to write.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Implements `Deserialize` for a type through `FromStr` (strings) and an optional integer form.
macro_rules! from_str_or_int {
    ($ty:ty, $expecting:literal, $int:expr) => {
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: ::serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        s.parse().map_err(E::custom)
                    }
                    fn visit_i64<E: ::serde::de::Error>(self, n: i64) -> Result<$ty, E> {
                        let f: fn(i64) -> Result<$ty, String> = $int;
                        f(n).map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use from_str_or_int;

/// A size in bytes. Written as `"512M"`, `"2G"`, `"1T"`, `"4096K"` or an integer of MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub const fn mib(n: u64) -> Size {
        Size(n * 1024 * 1024)
    }

    pub fn as_mib(self) -> u64 {
        self.0 / (1024 * 1024)
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let bad = || {
            format!(
                "size {s:?} is not understood: write a number with a unit K, M, G or T \
                 (for example \"512M\" or \"2G\"), or an integer number of MiB"
            )
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let shift = match unit
            .trim()
            .trim_end_matches(['B', 'b'])
            .trim_end_matches('i')
        {
            "K" | "k" => 10,
            "M" | "m" | "" => 20,
            "G" | "g" => 30,
            "T" | "t" => 40,
            _ => return Err(bad()),
        };
        n.checked_mul(1 << shift)
            .map(Size)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

from_str_or_int!(Size, "a size such as \"2G\" or an integer of MiB", |n| {
    u64::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(1024 * 1024))
        .map(Size)
        .ok_or_else(|| format!("size {n} must be a positive number of MiB"))
});

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const G: u64 = 1 << 30;
        const M: u64 = 1 << 20;
        if self.0.is_multiple_of(G) && self.0 > 0 {
            write!(f, "{}G", self.0 / G)
        } else if self.0.is_multiple_of(M) {
            write!(f, "{}M", self.0 / M)
        } else {
            write!(f, "{}K", self.0.div_ceil(1024))
        }
    }
}

/// A duration in seconds. Written as `"30s"`, `"15m"`, `"2h"`, `"1d"` or an integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub u64);

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Duration, String> {
        let bad = || {
            format!(
                "duration {s:?} is not understood: write a number with a unit s, m, h or d \
                 (for example \"15m\"), or an integer number of seconds"
            )
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = match unit.trim() {
            "s" | "" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(bad()),
        };
        Ok(Duration(n.saturating_mul(mult)))
    }
}

from_str_or_int!(
    Duration,
    "a duration such as \"15m\" or an integer of seconds",
    |n| {
        u64::try_from(n)
            .map(Duration)
            .map_err(|_| format!("duration {n} must not be negative"))
    }
);

/// An IP address with a prefix length: `"10.0.0.2/24"`, `"fd00::2/64"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad =
            || format!("{s:?} is not an address with a prefix length, such as \"10.0.0.2/24\"");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!(
                "prefix length /{prefix} of {s:?} is larger than {max}"
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

from_str_or_int!(
    Cidr,
    "an address with a prefix length such as \"10.0.0.2/24\"",
    |n| {
        Err(format!(
            "{n} is not an address; write one such as \"10.0.0.2/24\""
        ))
    }
);

impl Cidr {
    /// Whether `ip` lies in this address's subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A plain IP address (gateway, nameserver, route next hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl FromStr for Ip {
    type Err = String;
    fn from_str(s: &str) -> Result<Ip, String> {
        s.parse()
            .map(Ip)
            .map_err(|_| format!("{s:?} is not an IP address, such as \"10.0.0.1\""))
    }
}

from_str_or_int!(Ip, "an IP address such as \"10.0.0.1\"", |n| {
    Err(format!(
        "{n} is not an address; write one such as \"10.0.0.1\""
    ))
});

/// An Ethernet MAC address, unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let bad = || format!("{s:?} is not a MAC address such as \"02:00:00:00:00:01\"");
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if out[0] & 1 != 0 {
            return Err(format!(
                "{s:?} is a multicast MAC address; a NIC needs a unicast one"
            ));
        }
        Ok(Mac(out))
    }
}

from_str_or_int!(Mac, "a MAC address such as \"02:00:00:00:00:01\"", |n| {
    Err(format!(
        "{n} is not a MAC address; write one such as \"02:00:00:00:00:01\""
    ))
});

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

impl Mac {
    /// A stable, locally administered unicast MAC for interface `index` of VM `vm`.
    pub fn derive(vm: &str, index: usize) -> Mac {
        // FNV-1a over the name and index: stable across releases (a changed MAC would change
        // the guest's DHCP leases and firewall rules), no dependency needed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in vm.bytes().chain((index as u64).to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let b = h.to_le_bytes();
        // 0x02: locally administered, unicast.
        Mac([0x02, b[0], b[1], b[2], b[3], b[4]])
    }
}

/// A PCI address `DDDD:BB:DD.F` (domain optional, defaults to 0000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl FromStr for PciAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<PciAddress, String> {
        let bad = || format!("{s:?} is not a PCI address such as \"0000:01:00.0\" or \"01:00.0\"");
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, devfn) = match parts.as_slice() {
            [d, b, df] => (*d, *b, *df),
            [b, df] => ("0000", *b, *df),
            _ => return Err(bad()),
        };
        let (dev, func) = devfn.split_once('.').ok_or_else(bad)?;
        let hex = |t: &str, len: usize| {
            (t.len() == len)
                .then(|| u32::from_str_radix(t, 16).ok())
                .flatten()
                .ok_or_else(bad)
        };
        let device = hex(dev, 2)?;
        let function = hex(func, 1)?;
        if device > 0x1f || function > 7 {
            return Err(format!(
                "{s:?}: PCI device must be at most 1f and function at most 7"
            ));
        }
        Ok(PciAddress {
            domain: hex(domain, 4)? as u16,
            bus: hex(bus, 2)? as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

from_str_or_int!(PciAddress, "a PCI address such as \"0000:01:00.0\"", |n| {
    Err(format!(
        "{n} is not a PCI address; write one such as \"0000:01:00.0\""
    ))
});

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// A uid or gid range mapping `"GUEST:HOST:COUNT"` for a shared directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub guest: u32,
    pub host: u32,
    pub count: u32,
}

impl FromStr for IdMap {
    type Err = String;
    fn from_str(s: &str) -> Result<IdMap, String> {
        let bad = || {
            format!(
                "{s:?} is not an id mapping: write \"GUEST:HOST:COUNT\", for example \"1000:1000:1\""
            )
        };
        let n: Vec<u32> = s
            .split(':')
            .map(|p| p.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match n.as_slice() {
            [guest, host, count] if *count > 0 => {
                if guest.checked_add(*count).is_none() || host.checked_add(*count).is_none() {
                    return Err(format!("id mapping {s:?} runs past the largest id"));
                }
                Ok(IdMap {
                    guest: *guest,
                    host: *host,
                    count: *count,
                })
            }
            _ => Err(bad()),
        }
    }
}

from_str_or_int!(IdMap, "an id mapping such as \"1000:1000:1\"", |n| {
    Err(format!(
        "{n} is not an id mapping; write \"GUEST:HOST:COUNT\""
    ))
});

/// `true`/`false` or a table with the details: `gpu = false`, `[vm.gpu] context-types = [...]`.
#[derive(Debug, Clone, PartialEq)]
pub enum BoolOr<T> {
    Bool(bool),
    Table(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for BoolOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = BoolOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a table")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<BoolOr<T>, E> {
                Ok(BoolOr::Bool(b))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<BoolOr<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(BoolOr::Table)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!("512M".parse::<Size>().unwrap(), Size::mib(512));
        assert_eq!("2G".parse::<Size>().unwrap(), Size::mib(2048));
        assert_eq!("2GiB".parse::<Size>().unwrap(), Size::mib(2048));
        assert_eq!(Size::mib(2048).to_string(), "2G");
        assert!("2X".parse::<Size>().is_err());
        assert!("G".parse::<Size>().is_err());
        assert!("99999999999T".parse::<Size>().is_err());
        assert_eq!("15m".parse::<Duration>().unwrap(), Duration(900));
        assert_eq!("45".parse::<Duration>().unwrap(), Duration(45));
        assert!("soon".parse::<Duration>().is_err());
    }

    #[test]
    fn addresses() {
        let c: Cidr = "10.0.0.2/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.2/24");
        assert!("10.0.0.2/33".parse::<Cidr>().is_err());
        assert!("10.0.0.2".parse::<Cidr>().is_err());
        assert!("fd00::1/64".parse::<Cidr>().is_ok());
        let m: Mac = "02:AA:00:00:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:aa:00:00:00:01");
        assert!("03:00:00:00:00:01".parse::<Mac>().is_err(), "multicast");
        assert!("02:00:00:00:01".parse::<Mac>().is_err());
        let d = Mac::derive("work", 0);
        assert_eq!(d, Mac::derive("work", 0));
        assert_ne!(d, Mac::derive("work", 1));
        assert_eq!(d.0[0], 0x02);
        let p: PciAddress = "01:00.1".parse().unwrap();
        assert_eq!(p.to_string(), "0000:01:00.1");
        assert!("0000:01:20.0".parse::<PciAddress>().is_err());
        assert!("1:0.0".parse::<PciAddress>().is_err());
        let i: IdMap = "1000:0:1".parse().unwrap();
        assert_eq!((i.guest, i.host, i.count), (1000, 0, 1));
        assert!("1000:0:0".parse::<IdMap>().is_err());
        assert!("4294967295:0:2".parse::<IdMap>().is_err());
    }
}
