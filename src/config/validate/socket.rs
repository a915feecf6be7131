//! `[*.socket]` rules: which keys apply to which kind of service, address
//! family and platform, and the ranges the kernel accepts (so a value `check`
//! passes never fails at bind). Every rule is read from the option table
//! (`net::options::OPTIONS`); this file only words the findings.

use std::net::IpAddr;

use super::Issues;
use crate::config::schema::SocketOptions;
use crate::net::Role;
use crate::net::options::{Desc, KindSet, OPTIONS};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    TcpEcho,
    UdpEcho,
    Broadcast,
    Multicast,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::TcpEcho => "tcp_echo",
            Kind::UdpEcho => "udp_echo",
            Kind::Broadcast => "broadcast",
            Kind::Multicast => "multicast",
        }
    }

    /// The role its socket has, which is what the option table is keyed by.
    fn role(self) -> Role {
        match self {
            Kind::TcpEcho => Role::TcpListener,
            Kind::UdpEcho => Role::Udp,
            Kind::Broadcast => Role::UdpBroadcast,
            Kind::Multicast => Role::UdpMulticast,
        }
    }
}

pub(super) fn socket(
    kind: Kind,
    i: usize,
    name: &str,
    o: &SocketOptions,
    ip: Option<IpAddr>,
    out: &mut Issues,
) {
    let k = kind.name();
    for d in OPTIONS {
        let Some(v) = (d.value)(o) else { continue };
        let key = d.key;
        let mut msgs: Vec<String> = where_not(d, kind).into_iter().collect();
        if let Some((lo, hi, why)) = d.range
            && let Some(n) = v.as_int().filter(|n| !(lo..=hi).contains(n))
        {
            let msg = crate::config::words::whole_number(key, lo.into(), hi.into(), &n.to_string());
            msgs.push(if why.is_empty() {
                msg
            } else {
                format!("{msg}; {why}")
            });
        }
        msgs.extend((d.check)(&v));
        if d.v6_only && ip.is_some_and(|ip| ip.is_ipv4()) {
            msgs.push(format!(
                "socket.{key} applies to IPv6 addresses only; remove it"
            ));
        }
        for msg in msgs {
            out.at(k, i, name, &["socket", key], msg);
        }
    }
}

/// Why `d` cannot be set on a service of `kind` here: the wrong kind, or a
/// platform that lacks it.
fn where_not(d: &Desc, kind: Kind) -> Option<String> {
    let (key, k) = (d.key, kind.name());
    if !d.kinds.has(kind.role()) {
        return Some(match d.kinds {
            KindSet::TCP => {
                format!("socket.{key} applies to TCP sockets only; remove it from this {k} service")
            }
            KindSet::MULTICAST if kind == Kind::Broadcast => {
                format!("socket.{key} applies to multicast listeners only")
            }
            _ => format!(
                "socket.{key} applies to multicast senders and listeners only; remove it from this {k} service"
            ),
        });
    }
    if !d.platform.here() {
        return Some(format!(
            "socket.{key} is {}-only and not available on {}; remove it",
            d.platform.name().unwrap_or("?"),
            std::env::consts::OS
        ));
    }
    None
}
