//! What a changed `[*.socket]` option needs when a reload changes it: applied
//! to the live socket in place, applied to the listener so that connections
//! accepted from then on inherit it, re-applied with `listen()`, or a new
//! socket (rebind). Each option's [`Scope`] is in the option table
//! ([`super::options::OPTIONS`]). The reload planner asks [`classify`] and
//! gets back the keys to set in place or the first key that forces a rebind;
//! [`apply_in_place`] then sets those keys on the running socket with the
//! table's setters.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use socket2::SockRef;

use super::Role;
pub use super::options::Scope;
use super::options::{self, Ctx, OPTIONS};
use crate::config::SocketOptions;

/// What changing `key` needs for a socket of `role`; unknown keys rebind.
pub fn scope(key: &str, role: Role) -> Scope {
    options::find(key).map_or(Scope::Rebind, |d| d.scope(role))
}

/// The outcome of comparing two socket tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SocketChange {
    /// Changed keys the running socket can take (Live, Accepted, Relisten).
    pub in_place: Vec<&'static str>,
    /// The first changed key that needs a new socket, if any.
    pub rebind: Option<&'static str>,
}

/// Compares `old` and `new` key by key, in table order.
pub fn classify(old: &SocketOptions, new: &SocketOptions, role: Role) -> SocketChange {
    let mut out = SocketChange::default();
    for d in OPTIONS {
        let (was, now) = ((d.value)(old), (d.value)(new));
        if was == now {
            continue;
        }
        let removed = now.is_none() && !d.default_known();
        if removed || d.scope(role) == Scope::Rebind {
            out.rebind.get_or_insert(d.key);
        } else {
            out.in_place.push(d.key);
        }
    }
    out
}

/// Sets `keys` (from [`classify`]'s `in_place`) of `o` on a running socket.
/// Keys the platform lacks were refused by validation; keys of another role
/// (never in `in_place`) are skipped.
pub fn apply_in_place(
    sock: SockRef<'_>,
    addr: SocketAddr,
    o: &SocketOptions,
    role: Role,
    keys: &[&'static str],
) -> Result<()> {
    let ctx = Ctx {
        v6: addr.is_ipv6(),
        role,
    };
    for d in keys.iter().filter_map(|k| options::find(k)) {
        if !d.applies(ctx) {
            continue;
        }
        if let Some(v) = options::resolve(d, o, role) {
            (d.set)(&sock, ctx, &v)
                .with_context(|| format!("set socket.{} on the running socket {addr}", d.key))?;
        }
    }
    Ok(())
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
}
