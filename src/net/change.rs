//! What a changed `[*.socket]` option needs when a reload changes it, in one
//! table ([`SCOPES`]): applied to the live socket in place, applied to the
//! listener so that connections accepted from then on inherit it, re-applied
//! with `listen()`, or a new socket (rebind). The reload planner asks
//! [`classify`] and gets back the keys to set in place or the first key that
//! forces a rebind; [`apply_in_place`] then sets those keys on the running
//! socket. Issue 14's socket-option descriptor table can absorb [`SCOPES`].

use std::io;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use socket2::SockRef;

use super::Role;
use crate::config::SocketOptions;

/// What changing one option needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Set on the running socket; takes effect at once (UDP services).
    Live,
    /// Set on the listener; connections accepted from then on inherit it
    /// (those already open keep theirs).
    Accepted,
    /// The listen() backlog: a second `listen()` on the same socket resizes it (Linux).
    Relisten,
    /// Only a new socket can have it (bind-time options).
    Rebind,
}

/// Every option and what changing it needs, for TCP listeners and for UDP.
pub const SCOPES: &[(&str, Scope, Scope)] = &[
    // (key, tcp listener, udp)
    ("reuse_address", Scope::Rebind, Scope::Rebind),
    ("reuse_port", Scope::Rebind, Scope::Rebind),
    ("only_v6", Scope::Rebind, Scope::Rebind),
    ("bind_device", Scope::Rebind, Scope::Rebind),
    ("fastopen", Scope::Rebind, Scope::Rebind),
    ("multicast_all", Scope::Rebind, Scope::Rebind),
    ("backlog", BACKLOG, Scope::Rebind),
    ("nodelay", Scope::Accepted, Scope::Rebind),
    ("keepalive", Scope::Accepted, Scope::Rebind),
    ("linger", Scope::Accepted, Scope::Rebind),
    ("oob_inline", Scope::Accepted, Scope::Rebind),
    ("mss", Scope::Accepted, Scope::Rebind),
    ("recv_low_water", Scope::Accepted, Scope::Rebind),
    ("recv_buffer_bytes", Scope::Accepted, Scope::Live),
    ("send_buffer_bytes", Scope::Accepted, Scope::Live),
    ("tos", Scope::Accepted, Scope::Live),
    ("ttl", Scope::Accepted, Scope::Live),
    ("dont_route", Scope::Accepted, Scope::Live),
    ("multicast_ttl", Scope::Rebind, Scope::Live),
    ("multicast_loop", Scope::Rebind, Scope::Live),
];

/// Linux resizes the accept queue on a second listen(); elsewhere we do not rely on it.
const BACKLOG: Scope = if cfg!(target_os = "linux") {
    Scope::Relisten
} else {
    Scope::Rebind
};

/// Keys whose "not set" has a value we apply ourselves (see `net::apply`),
/// so removing them can be applied in place; removing any other key would
/// need the kernel's default back, which only a new socket has.
const DEFAULT_KNOWN: &[&str] = &["nodelay", "oob_inline"];

/// What changing `key` needs for a socket of `role`; unknown keys rebind.
pub fn scope(key: &str, role: Role) -> Scope {
    SCOPES
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or(Scope::Rebind, |&(_, tcp, udp)| {
            if role == Role::TcpListener { tcp } else { udp }
        })
}

/// The outcome of comparing two socket tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SocketChange {
    /// Changed keys the running socket can take (Live, Accepted, Relisten).
    pub in_place: Vec<&'static str>,
    /// The first changed key that needs a new socket, if any.
    pub rebind: Option<&'static str>,
}

/// Compares `old` and `new` key by key.
pub fn classify(old: &SocketOptions, new: &SocketOptions, role: Role) -> SocketChange {
    let (a, b) = (old.requested(), new.requested());
    let value = |set: &[(&'static str, String)], key: &str| {
        set.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    };
    let mut out = SocketChange::default();
    for &(key, _, _) in SCOPES {
        let (was, now) = (value(&a, key), value(&b, key));
        if was == now {
            continue;
        }
        let removed = now.is_none() && !DEFAULT_KNOWN.contains(&key);
        if removed || scope(key, role) == Scope::Rebind {
            out.rebind.get_or_insert(key);
        } else {
            out.in_place.push(key);
        }
    }
    out
}

/// Sets `keys` (from [`classify`]'s `in_place`) of `o` on a running socket.
pub fn apply_in_place(
    sock: SockRef<'_>,
    addr: SocketAddr,
    o: &SocketOptions,
    role: Role,
    keys: &[&'static str],
) -> Result<()> {
    for &key in keys {
        set_key(&sock, addr.is_ipv6(), o, role, key)
            .with_context(|| format!("set socket.{key} on the running socket {addr}"))?;
    }
    Ok(())
}

fn set_key(
    sock: &SockRef<'_>,
    v6: bool,
    o: &SocketOptions,
    role: Role,
    key: &str,
) -> io::Result<()> {
    match key {
        "nodelay" => sock.set_tcp_nodelay(o.nodelay.unwrap_or(true)),
        "oob_inline" => sock.set_out_of_band_inline(o.oob_inline.unwrap_or(true)),
        "keepalive" => o.keepalive.map_or(Ok(()), |k| super::keepalive(sock, k)),
        "linger" => sock.set_linger(o.linger),
        "recv_buffer_bytes" => o
            .recv_buffer_bytes
            .map_or(Ok(()), |v| sock.set_recv_buffer_size(v)),
        "send_buffer_bytes" => o
            .send_buffer_bytes
            .map_or(Ok(()), |v| sock.set_send_buffer_size(v)),
        "ttl" => o.ttl.map_or(Ok(()), |v| {
            if v6 {
                sock.set_unicast_hops_v6(v)
            } else {
                sock.set_ttl_v4(v)
            }
        }),
        "tos" => o.tos.map_or(Ok(()), |v| {
            if v6 {
                super::set_tclass_v6(sock, v)
            } else {
                sock.set_tos_v4(v)
            }
        }),
        #[cfg(unix)]
        "mss" => o.mss.map_or(Ok(()), |v| sock.set_tcp_mss(v)),
        #[cfg(unix)]
        "recv_low_water" => o.recv_low_water.map_or(Ok(()), |v| {
            super::raw::set(sock, libc::SOL_SOCKET, libc::SO_RCVLOWAT, v as i32)
        }),
        #[cfg(unix)]
        "dont_route" => o.dont_route.map_or(Ok(()), |v| {
            super::raw::set(sock, libc::SOL_SOCKET, libc::SO_DONTROUTE, v as i32)
        }),
        "multicast_ttl" => o.multicast_ttl.map_or(Ok(()), |v| {
            if v6 {
                sock.set_multicast_hops_v6(v)
            } else {
                sock.set_multicast_ttl_v4(v)
            }
        }),
        "multicast_loop" => o.multicast_loop.map_or(Ok(()), |v| {
            if v6 {
                sock.set_multicast_loop_v6(v)
            } else {
                sock.set_multicast_loop_v4(v)
            }
        }),
        "backlog" if role == Role::TcpListener => {
            sock.listen(o.backlog.unwrap_or(super::DEFAULT_BACKLOG))
        }
        // Keys the platform lacks were refused by validation.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn opts(f: impl FnOnce(&mut SocketOptions)) -> SocketOptions {
        let mut o = SocketOptions::default();
        f(&mut o);
        o
    }

    #[test]
    fn accepted_socket_options_need_no_new_listener() {
        let old = opts(|o| o.nodelay = Some(true));
        let new = opts(|o| {
            o.nodelay = Some(false);
            o.linger = Some(Duration::from_secs(1));
        });
        let c = classify(&old, &new, Role::TcpListener);
        assert_eq!(c.rebind, None);
        assert_eq!(c.in_place, vec!["nodelay", "linger"]);
    }

    #[test]
    fn listener_level_options_rebind() {
        for (key, new) in [
            ("reuse_port", opts(|o| o.reuse_port = Some(false))),
            ("only_v6", opts(|o| o.only_v6 = Some(true))),
            ("bind_device", opts(|o| o.bind_device = Some("lo".into()))),
            ("fastopen", opts(|o| o.fastopen = Some(5))),
        ] {
            let c = classify(&SocketOptions::default(), &new, Role::TcpListener);
            assert_eq!(c.rebind, Some(key));
        }
    }

    #[test]
    fn backlog_relistens_on_linux_only() {
        let c = classify(
            &SocketOptions::default(),
            &opts(|o| o.backlog = Some(64)),
            Role::TcpListener,
        );
        if cfg!(target_os = "linux") {
            assert_eq!((c.in_place, c.rebind), (vec!["backlog"], None));
        } else {
            assert_eq!(c.rebind, Some("backlog"));
        }
    }

    #[test]
    fn removing_a_key_without_a_known_default_rebinds() {
        let old = opts(|o| o.tos = Some(16));
        let c = classify(&old, &SocketOptions::default(), Role::TcpListener);
        assert_eq!(c.rebind, Some("tos"));
        let old = opts(|o| o.nodelay = Some(false));
        let c = classify(&old, &SocketOptions::default(), Role::TcpListener);
        assert_eq!((c.in_place, c.rebind), (vec!["nodelay"], None));
    }

    #[test]
    fn udp_takes_buffers_and_ttl_live_but_not_tcp_only_keys() {
        let new = opts(|o| {
            o.recv_buffer_bytes = Some(1 << 20);
            o.multicast_ttl = Some(4);
        });
        let c = classify(&SocketOptions::default(), &new, Role::UdpMulticast);
        assert_eq!(c.rebind, None);
        assert_eq!(scope("nodelay", Role::Udp), Scope::Rebind);
        assert_eq!(scope("ttl", Role::Udp), Scope::Live);
        assert_eq!(scope("no_such_key", Role::TcpListener), Scope::Rebind);
    }

    #[test]
    fn every_requested_key_is_in_the_table() {
        let all = opts(|o| {
            o.reuse_address = Some(true);
            o.reuse_port = Some(true);
            o.nodelay = Some(true);
            o.linger = Some(Duration::ZERO);
            o.recv_buffer_bytes = Some(1);
            o.send_buffer_bytes = Some(1);
            o.backlog = Some(1);
            o.ttl = Some(1);
            o.only_v6 = Some(true);
            o.oob_inline = Some(true);
            o.mss = Some(1);
            o.recv_low_water = Some(1);
            o.tos = Some(1);
            o.dont_route = Some(true);
            o.bind_device = Some("lo".into());
            o.fastopen = Some(1);
            o.multicast_ttl = Some(1);
            o.multicast_loop = Some(true);
            o.multicast_all = Some(true);
        });
        for (key, _) in all.requested() {
            assert!(
                SCOPES.iter().any(|(k, _, _)| *k == key),
                "{key} has no scope"
            );
        }
    }
}
