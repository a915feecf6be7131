//! Access lists (`allow` / `deny`) for the services that receive:
//! `[[tcp_echo]]`, `[[udp_echo]]` and `[[multicast]]` (xinetd's `only_from`
//! and `no_access`, nginx's `allow` / `deny`). Each list holds CIDR blocks;
//! a source in any `deny` block is refused, and when `allow` is not empty a
//! source must be in one of its blocks. IPv4-mapped IPv6 sources
//! (`::ffff:a.b.c.d`, from a dual-stack `[::]` listener) are matched as IPv4.
//!
//! Data flow: parsed from the config as [`Cidr`] (a bad block is a config
//! error at its place in the file); the services call [`permits`] per
//! accepted connection or received datagram and count a refusal as
//! `drops{reason="denied"}`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One CIDR block: an address whose bits past `prefix` are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Is `ip` inside this block?
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, unmap(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask32(self.prefix) & u32::from(a) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask128(self.prefix) & u128::from(a) == u128::from(n),
            _ => false,
        }
    }
}

/// May `ip` use a service with these lists? Deny wins; an empty allow list allows everyone.
pub fn permits(allow: &[Cidr], deny: &[Cidr], ip: IpAddr) -> bool {
    !deny.iter().any(|c| c.contains(ip))
        && (allow.is_empty() || allow.iter().any(|c| c.contains(ip)))
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let net: IpAddr = addr.parse().map_err(|_| {
            format!("{s:?} is not a CIDR block: write ADDRESS/PREFIX, e.g. \"10.0.0.0/8\" or \"::1/128\"")
        })?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                format!(
                    "{s:?}: the prefix length must be 0..={max} for an {} address",
                    if net.is_ipv4() { "IPv4" } else { "IPv6" }
                )
            })?,
        };
        let masked = match net {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(prefix)).into()),
        };
        if masked != net {
            return Err(format!(
                "{s:?} has address bits set past the /{prefix} prefix; write \"{masked}/{prefix}\" for the block, or \"{net}\" for the one address"
            ));
        }
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// As written in the config (`10.0.0.0/8`), for `check --print`.
impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_wins_and_empty_allow_is_everyone() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(permits(&[], &[], ip("192.0.2.1")));
        assert!(!permits(&[], &[c("127.0.0.2/32")], ip("127.0.0.2")));
        assert!(permits(&[], &[c("127.0.0.2/32")], ip("127.0.0.3")));
        assert!(!permits(
            &[c("127.0.0.0/8")],
            &[c("127.0.0.2")],
            ip("127.0.0.2")
        ));
        assert!(permits(&[c("10.0.0.0/8")], &[], ip("10.255.0.1")));
        assert!(!permits(&[c("10.0.0.0/8")], &[], ip("11.0.0.1")));
        assert!(!permits(&[c("::1/128")], &[], ip("127.0.0.1")));
        assert!(permits(&[c("127.0.0.0/8")], &[], ip("::ffff:127.0.0.9")));
        assert!(permits(&[c("0.0.0.0/0")], &[], ip("8.8.8.8")));
        assert!(permits(&[c("fd00::/8")], &[], ip("fd12::1")));
    }

    #[test]
    fn bad_blocks_say_what_to_write() {
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(e.contains("write \"10.0.0.0/8\""), "{e}");
        assert!(
            "10.0.0.0/33"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("0..=32")
        );
        assert!(
            "nope"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("not a CIDR block")
        );
        assert_eq!(c("::1").to_string(), "::1/128");
    }
}
