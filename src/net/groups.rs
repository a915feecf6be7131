//! Group membership, for the `[[multicast]]` service and the `send`/`listen`
//! tools alike: turns a `group`, `interface` and `source` into the join the
//! kernel needs, and undoes it; [`GroupSocket`] (in `groups/socket.rs`) is a
//! bound, joined socket that leaves the group when dropped and, on Windows,
//! filters datagrams by destination.
//!
//! - IPv4: the interface is a local address (`IP_ADD_MEMBERSHIP`), or
//!   `0.0.0.0` to let the kernel pick by route; with `source`,
//!   `IP_ADD_SOURCE_MEMBERSHIP` (socket2's `join_ssm_v4`).
//! - IPv6: the interface is a name (resolved with `if_nametoindex`) or an
//!   index, 0 = kernel picks (`IPV6_JOIN_GROUP`); with `source`,
//!   `MCAST_JOIN_SOURCE_GROUP` on Linux (socket2 has no IPv6 SSM call), and a
//!   clear error elsewhere.
//!
//! [`Membership::leave`] drops exactly what [`Membership::join`] added.

mod socket;

pub use socket::{Datagram, GroupSocket};

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use socket2::Socket;

/// Where a group is joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iface {
    /// IPv4: the local address of the interface (UNSPECIFIED = kernel picks).
    V4(Ipv4Addr),
    /// IPv6: the interface index (0 = kernel picks).
    V6(u32),
}

/// One join: group, where, and optionally the only source to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub group: IpAddr,
    pub iface: Iface,
    pub source: Option<IpAddr>,
    /// The interface as the user wrote it, for messages.
    pub iface_text: String,
}

impl Membership {
    /// Resolves the configured interface (name -> index for IPv6).
    pub fn new(
        group: IpAddr,
        interface: Option<&str>,
        source: Option<IpAddr>,
    ) -> Result<Membership> {
        let iface = match (group, interface) {
            (IpAddr::V4(_), None) => Iface::V4(Ipv4Addr::UNSPECIFIED),
            (IpAddr::V4(_), Some(s)) => Iface::V4(
                s.parse().with_context(|| format!("interface {s:?}: an IPv4 group is joined on a local IPv4 address, e.g. \"127.0.0.1\""))?,
            ),
            (IpAddr::V6(_), None) => Iface::V6(0),
            (IpAddr::V6(_), Some(s)) => Iface::V6(if_index(s)?),
        };
        if let Some(src) = source
            && src.is_ipv4() != group.is_ipv4()
        {
            bail!("source {src} and group {group} are of different IP families");
        }
        Ok(Membership {
            group,
            iface,
            source,
            iface_text: interface.unwrap_or("(kernel's choice)").to_string(),
        })
    }

    /// True when the kernel chooses the interface.
    pub fn kernel_picks(&self) -> bool {
        matches!(self.iface, Iface::V4(a) if a.is_unspecified()) || self.iface == Iface::V6(0)
    }

    pub fn join(&self, sock: &Socket) -> Result<()> {
        self.apply(sock, true).map_err(|e| {
            let hint = match e.raw_os_error() {
                #[cfg(unix)]
                Some(libc::ENODEV) => "no such interface, or it has no route for multicast: give `interface` an address/name of an up interface",
                #[cfg(unix)]
                Some(libc::EADDRNOTAVAIL) => "the interface address is not an address of this host",
                #[cfg(unix)]
                Some(libc::ENOBUFS) => "too many memberships (net.ipv4.igmp_max_memberships)",
                _ => "check that the interface is up and supports multicast",
            };
            anyhow::Error::new(e).context(format!("join group {} on interface {}{}: {hint}", self.group, self.iface_text, self.source_text()))
        })
    }

    /// Leaves the group; errors are returned for logging only (the socket is going anyway).
    pub fn leave(&self, sock: &Socket) -> io::Result<()> {
        self.apply(sock, false)
    }

    fn source_text(&self) -> String {
        self.source
            .map(|s| format!(" from source {s}"))
            .unwrap_or_default()
    }

    fn apply(&self, sock: &Socket, join: bool) -> io::Result<()> {
        match (self.group, self.iface, self.source) {
            (IpAddr::V4(g), Iface::V4(i), None) if join => sock.join_multicast_v4(&g, &i),
            (IpAddr::V4(g), Iface::V4(i), None) => sock.leave_multicast_v4(&g, &i),
            (IpAddr::V4(g), Iface::V4(i), Some(IpAddr::V4(s))) if join => {
                sock.join_ssm_v4(&s, &g, &i)
            }
            (IpAddr::V4(g), Iface::V4(i), Some(IpAddr::V4(s))) => sock.leave_ssm_v4(&s, &g, &i),
            (IpAddr::V6(g), Iface::V6(i), None) if join => sock.join_multicast_v6(&g, i),
            (IpAddr::V6(g), Iface::V6(i), None) => sock.leave_multicast_v6(&g, i),
            (IpAddr::V6(g), Iface::V6(i), Some(IpAddr::V6(s))) => ssm_v6(sock, g, s, i, join),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "group, interface and source are of different IP families",
            )),
        }
    }

    /// Which interfaces the kernel lists as members of the group after a
    /// join without `interface` (Linux: `/proc/net/igmp`, `/proc/net/igmp6`),
    /// else the local address of its route to the group.
    pub fn kernel_choice(&self, port: u16) -> String {
        #[cfg(target_os = "linux")]
        {
            let devs = member_devices(self.group);
            if !devs.is_empty() {
                return devs.join(",");
            }
        }
        let route = || -> Option<IpAddr> {
            let probe =
                std::net::UdpSocket::bind(SocketAddr::new(unspecified(self.group), 0)).ok()?;
            probe
                .connect(SocketAddr::new(self.group, port.max(1)))
                .ok()?;
            probe.local_addr().ok().map(|a| a.ip())
        };
        route()
            .map(|a| format!("route via {a}"))
            .unwrap_or_else(|| "(no route to the group)".into())
    }
}

/// Devices whose membership list in this network namespace contains `group`.
#[cfg(target_os = "linux")]
fn member_devices(group: IpAddr) -> Vec<String> {
    let mut out = Vec::new();
    match group {
        IpAddr::V4(g) => {
            // Rows: "idx dev : count querier" then tab-indented "GROUP(hex, host order) users ...".
            let text = std::fs::read_to_string("/proc/thread-self/net/igmp").unwrap_or_default();
            let mut dev = "";
            for line in text.lines().skip(1) {
                if !line.starts_with('\t') {
                    dev = line.split_whitespace().nth(1).unwrap_or("");
                } else if let Some(v) = line
                    .split_whitespace()
                    .next()
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    && Ipv4Addr::from(v.to_ne_bytes()) == g
                    && !out.iter().any(|d| d == dev)
                {
                    out.push(dev.to_string());
                }
            }
        }
        IpAddr::V6(g) => {
            // Rows: "idx dev GROUP(32 hex) users flags timer".
            let text = std::fs::read_to_string("/proc/thread-self/net/igmp6").unwrap_or_default();
            let want: String = g.octets().iter().map(|b| format!("{b:02x}")).collect();
            for line in text.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() > 2 && f[2] == want {
                    out.push(f[1].to_string());
                }
            }
        }
    }
    out
}

/// The wildcard address of `ip`'s family.
pub fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// An IPv6 interface given as an index ("2") or a name ("eth0").
pub fn if_index(s: &str) -> Result<u32> {
    if let Ok(i) = s.parse::<u32>() {
        return Ok(i);
    }
    #[cfg(unix)]
    {
        let c = std::ffi::CString::new(s)
            .with_context(|| format!("interface {s:?} contains a NUL byte"))?;
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if i == 0 {
            bail!(
                "interface {s:?}: no such network interface (see `ip link`); give its name or index"
            );
        }
        Ok(i)
    }
    #[cfg(not(unix))]
    bail!(
        "interface {s:?}: on this platform give the interface index (a number, see `netsh interface ipv6 show interfaces`)"
    )
}

/// IPv6 source-specific join/leave through the protocol-independent
/// MCAST_JOIN_SOURCE_GROUP (RFC 3678), which socket2 does not wrap.
#[cfg(target_os = "linux")]
fn ssm_v6(
    sock: &Socket,
    group: std::net::Ipv6Addr,
    source: std::net::Ipv6Addr,
    iface: u32,
    join: bool,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    fn storage(ip: std::net::Ipv6Addr) -> libc::sockaddr_storage {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let sin6 = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
        // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
        unsafe {
            (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
            (*sin6).sin6_addr.s6_addr = ip.octets();
        }
        ss
    }
    let req = libc::group_source_req {
        gsr_interface: iface,
        gsr_group: storage(group),
        gsr_source: storage(source),
    };
    let name = if join {
        libc::MCAST_JOIN_SOURCE_GROUP
    } else {
        libc::MCAST_LEAVE_SOURCE_GROUP
    };
    // SAFETY: the descriptor is live; `req` is a fully initialised group_source_req of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            name,
            (&req as *const libc::group_source_req).cast(),
            size_of::<libc::group_source_req>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn ssm_v6(
    _: &Socket,
    _: std::net::Ipv6Addr,
    _: std::net::Ipv6Addr,
    _: u32,
    _: bool,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "IPv6 source-specific joins are implemented on Linux only; remove `source` or use an IPv4 group",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_loopback_by_name_and_index() {
        let g: IpAddr = "ff02::1234".parse().unwrap();
        assert_eq!(
            Membership::new(g, Some("3"), None).unwrap().iface,
            Iface::V6(3)
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            Membership::new(g, Some("lo"), None).unwrap().iface,
            Iface::V6(1)
        );
        let e = Membership::new(g, Some("no-such-if0"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-if0"), "{e}");
        let v4: IpAddr = "239.1.2.3".parse().unwrap();
        assert!(Membership::new(v4, Some("eth0"), None).is_err());
        assert!(Membership::new(v4, None, None).unwrap().kernel_picks());
    }
}
