//! Checks of a valid config against this host, which the file alone cannot
//! decide: is a broadcast `destination` really a broadcast address of a
//! local subnet (or a group), and do a `socket.bind_device` and a multicast
//! `interface` name an interface (or address) this host has. `check` and `run` call [`host_issues`] after the config parsed;
//! each finding names the service and key so the caller can place it in the
//! file (`config::locate`). A finding is an error only when it is certain
//! (a unicast address of a local subnet); what cannot be decided here (an
//! address outside every local subnet, interfaces that cannot be listed) is
//! a warning.

use std::net::{IpAddr, Ipv4Addr};

use crate::config::Config;

/// How sure a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The config cannot work on this host.
    Error,
    /// Probably wrong, or not decidable here.
    Warning,
}

/// One finding about one service's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIssue {
    pub severity: Severity,
    /// Service kind (`broadcast`...) and index into that kind's list.
    pub kind: &'static str,
    pub index: usize,
    pub keys: Vec<&'static str>,
    pub message: String,
}

/// An IPv4 subnet of a local interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }
    fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    /// The directed broadcast address; /31 and /32 have none.
    fn broadcast(self) -> Option<Ipv4Addr> {
        (self.prefix <= 30).then(|| Ipv4Addr::from(u32::from(self.addr) | !self.mask()))
    }
    fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// `bind`: `check --bind` (a missing `bind_device` is then an error, as the
/// bind would fail).
pub fn host_issues(cfg: &Config, bind: bool) -> Vec<HostIssue> {
    let mut out = Vec::new();
    let subnets = local_subnets();
    for (i, b) in cfg.broadcast.iter().enumerate() {
        if let IpAddr::V4(dest) = b.destination.ip()
            && let Some((severity, message)) = broadcast_destination(dest, subnets.as_deref())
        {
            out.push(HostIssue {
                severity,
                kind: "broadcast",
                index: i,
                keys: vec!["destination"],
                message: format!("broadcast {:?}: {message}", b.name),
            });
        }
    }
    for (i, m) in cfg.multicast.iter().enumerate() {
        if let Some(message) = m
            .interface
            .as_deref()
            .and_then(|ifc| missing_interface(ifc, m.group.is_ipv4(), subnets.as_deref()))
        {
            out.push(HostIssue {
                severity: if bind {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                kind: "multicast",
                index: i,
                keys: vec!["interface"],
                message: format!("multicast {:?}: {message}", m.name),
            });
        }
    }
    for (i, spec) in crate::services::Spec::indexed(cfg) {
        let (kind, name, socket) = (spec.kind(), spec.name(), spec.socket());
        let Some(dev) = &socket.bind_device else {
            continue;
        };
        if interface_exists(dev) == Some(false) {
            let (severity, then) = if bind {
                (Severity::Error, "binding to it fails")
            } else {
                (Severity::Warning, "the service will fail to bind")
            };
            out.push(HostIssue {
                severity,
                kind,
                index: i,
                keys: vec!["socket", "bind_device"],
                message: format!(
                    "{kind} {name:?}: socket.bind_device {dev:?} is not a network interface of this host, so {then}; see `ip link` for the names"
                ),
            });
        }
    }
    out
}

/// Whether `dest` is a broadcast address here: `None` when it is (the
/// limited broadcast, or a local subnet's directed broadcast).
pub fn broadcast_destination(
    dest: Ipv4Addr,
    subnets: Option<&[Subnet]>,
) -> Option<(Severity, String)> {
    if dest.is_multicast() || dest.is_broadcast() {
        return None;
    }
    let Some(subnets) = subnets else {
        return Some((
            Severity::Warning,
            format!(
                "cannot list this host's interfaces to tell whether destination {dest} is a broadcast address; make sure it is a subnet's broadcast address (or use a multicast group)"
            ),
        ));
    };
    if subnets.iter().any(|s| s.broadcast() == Some(dest)) {
        return None;
    }
    if let Some(s) = subnets.iter().find(|s| s.contains(dest)) {
        let fix = s
            .broadcast()
            .map(|b| format!("its broadcast address {b}"))
            .unwrap_or_else(|| "a subnet's broadcast address".to_string());
        return Some((
            Severity::Error,
            format!(
                "destination {dest} is a unicast address of the local subnet {s}, not a broadcast address; use {fix} or a multicast group"
            ),
        ));
    }
    let known: Vec<String> = subnets
        .iter()
        .filter_map(|s| s.broadcast())
        .map(|b| b.to_string())
        .collect();
    Some((
        Severity::Warning,
        format!(
            "destination {dest} is not the broadcast address of any local subnet (here: {}); unless it is a remote subnet's directed broadcast, use one of those or a multicast group",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    ))
}

/// Why a multicast `interface` cannot be joined on here, if it cannot: an
/// IPv4 group's address that no local interface has, an IPv6 group's
/// interface name that does not exist (an index is left to the join).
fn missing_interface(ifc: &str, v4: bool, subnets: Option<&[Subnet]>) -> Option<String> {
    if v4 {
        let ip: Ipv4Addr = ifc.parse().ok()?;
        let local = subnets?.iter().any(|s| s.addr == ip);
        (!local && !ip.is_unspecified()).then(|| {
            format!(
                "interface {ifc:?} is not an address of this host, so joining the group on it fails; give a local IPv4 address (see `ip -4 addr`)"
            )
        })
    } else if ifc.parse::<u32>().is_ok() {
        None
    } else {
        (interface_exists(ifc) == Some(false)).then(|| {
            format!(
                "interface {ifc:?} is not a network interface of this host, so joining the group on it fails; see `ip link` for the names"
            )
        })
    }
}

/// Whether interface `name` exists; `None` where that cannot be asked.
fn interface_exists(name: &str) -> Option<bool> {
    #[cfg(unix)]
    {
        Some(crate::net::groups::if_index(name).is_ok())
    }
    #[cfg(not(unix))]
    {
        let _ = name;
        None
    }
}

/// The IPv4 subnets of this host's interfaces (getifaddrs); `None` where
/// they cannot be listed.
pub fn local_subnets() -> Option<Vec<Subnet>> {
    #[cfg(unix)]
    {
        unix_subnets()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(unix)]
fn unix_subnets() -> Option<Vec<Subnet>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: both point to sockaddrs of the family their sa_family says.
        let (addr, mask) = unsafe {
            if i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
            (
                u32::from_be(a.sin_addr.s_addr),
                u32::from_be(m.sin_addr.s_addr),
            )
        };
        out.push(Subnet {
            addr: Ipv4Addr::from(addr),
            prefix: mask.leading_ones() as u8,
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> Vec<Subnet> {
        vec![
            Subnet {
                addr: Ipv4Addr::new(127, 0, 0, 1),
                prefix: 8,
            },
            Subnet {
                addr: Ipv4Addr::new(10, 1, 2, 3),
                prefix: 31,
            },
        ]
    }

    #[test]
    fn directed_broadcast_of_a_local_subnet_or_group_passes() {
        for ok in ["127.255.255.255", "255.255.255.255", "239.1.2.3"] {
            assert_eq!(
                broadcast_destination(ok.parse().unwrap(), Some(&lo())),
                None
            );
        }
    }

    #[test]
    fn unicast_of_a_local_subnet_is_an_error_elsewhere_a_warning() {
        let (sev, msg) = broadcast_destination("127.0.0.5".parse().unwrap(), Some(&lo())).unwrap();
        assert_eq!(sev, Severity::Error);
        assert_eq!(
            msg,
            "destination 127.0.0.5 is a unicast address of the local subnet 127.0.0.0/8, not a broadcast address; use its broadcast address 127.255.255.255 or a multicast group"
        );
        let (sev, msg) =
            broadcast_destination("192.0.2.255".parse().unwrap(), Some(&lo())).unwrap();
        assert_eq!(sev, Severity::Warning);
        assert!(msg.contains("(here: 127.255.255.255)"), "{msg}");
        let (sev, _) = broadcast_destination("192.0.2.255".parse().unwrap(), None).unwrap();
        assert_eq!(sev, Severity::Warning);
    }
}
