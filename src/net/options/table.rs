//! The entries of [`OPTIONS`], in the order `check --bind` and `/services`
//! list them. One-line setters and getters (socket2 calls) are written in
//! place; the longer and platform-only ones are in `access.rs`.

use super::access::*;
use super::{Desc, KindSet, Platform, Scope, Unset, Value, When, by_family, unsupported};
use crate::net::{DEFAULT_BACKLOG, Role};

const fn int(v: i64) -> Value {
    Value::Int(v)
}

/// The fields a descriptor does not vary; entries override what they need.
const BASE: Desc = Desc {
    key: "",
    config: true,
    sockopt: "",
    kinds: KindSet::ALL,
    v6_only: false,
    platform: Platform::All,
    tcp: Scope::Rebind,
    udp: Scope::Rebind,
    unset: Unset::Nothing,
    when: When::Bind,
    per_connection: false,
    range: None,
    check: |_| Vec::new(),
    value: |_| None,
    set: |_, _, _| Ok(()),
    get: |_, _| unsupported(),
    more: None,
};

/// Every socket option netservd knows.
pub static OPTIONS: &[Desc] = &[
    Desc {
        key: "reuse_address",
        sockopt: "SO_REUSEADDR",
        unset: Unset::Ours(|r| Some(Value::Bool(r.default_reuse_address())), ""),
        value: |o| o.reuse_address.map(Value::Bool),
        set: |s, c, v| crate::net::reuse_address(s, v.bool()?, c.role.exclusive()),
        get: get_reuse_address,
        ..BASE
    },
    Desc {
        key: "reuse_port",
        sockopt: "SO_REUSEPORT",
        platform: Platform::Unix,
        // Not asked for: the Linux TCP default that makes rebinds gap-free.
        // README "Reload and shutdown": a reload binds beside the old listener.
        unset: Unset::Ours(
            |r| crate::net::reuse_port_default(r).then_some(Value::Bool(true)),
            " (Linux default)",
        ),
        value: |o| o.reuse_port.map(Value::Bool),
        set: set_reuse_port,
        get: get_reuse_port,
        ..BASE
    },
    Desc {
        key: "only_v6",
        sockopt: "IPV6_V6ONLY",
        v6_only: true,
        value: |o| o.only_v6.map(Value::Bool),
        set: |s, _, v| s.set_only_v6(v.bool()?),
        get: |s, _| s.only_v6().map(Value::Bool),
        ..BASE
    },
    Desc {
        key: "recv_buffer_bytes",
        sockopt: "SO_RCVBUF",
        tcp: Scope::Accepted,
        udp: Scope::Live,
        unset: Unset::Os,
        range: Some((1, i32::MAX as i64 / 2, "")),
        value: |o| o.recv_buffer_bytes.map(|v| int(v as i64)),
        set: |s, _, v| s.set_recv_buffer_size(v.int()?),
        get: |s, _| s.recv_buffer_size().map(|v| int(v as i64)),
        ..BASE
    },
    Desc {
        key: "send_buffer_bytes",
        sockopt: "SO_SNDBUF",
        tcp: Scope::Accepted,
        udp: Scope::Live,
        unset: Unset::Os,
        range: Some((1, i32::MAX as i64 / 2, "")),
        value: |o| o.send_buffer_bytes.map(|v| int(v as i64)),
        set: |s, _, v| s.set_send_buffer_size(v.int()?),
        get: |s, _| s.send_buffer_size().map(|v| int(v as i64)),
        ..BASE
    },
    Desc {
        key: "ttl",
        sockopt: "IP_TTL / IPV6_UNICAST_HOPS",
        tcp: Scope::Accepted,
        udp: Scope::Live,
        range: Some((1, 255, "")),
        value: |o| o.ttl.map(|v| int(v.into())),
        set: |s, c, v| {
            let v = v.int()?;
            by_family(c, || s.set_unicast_hops_v6(v), || s.set_ttl_v4(v))
        },
        get: |s, c| by_family(c, || s.unicast_hops_v6(), || s.ttl_v4()).map(|v| int(v.into())),
        ..BASE
    },
    Desc {
        key: "tos",
        sockopt: "IP_TOS / IPV6_TCLASS",
        tcp: Scope::Accepted,
        udp: Scope::Live,
        range: Some((0, 255, "")),
        value: |o| o.tos.map(|v| int(v.into())),
        set: |s, c, v| {
            let v = v.int()?;
            by_family(c, || crate::net::set_tclass_v6(s, v), || s.set_tos_v4(v))
        },
        get: |s, c| by_family(c, || crate::net::tclass_v6(s), || s.tos_v4()).map(|v| int(v.into())),
        ..BASE
    },
    Desc {
        key: "bind_device",
        sockopt: "SO_BINDTODEVICE",
        platform: Platform::Linux,
        check: |v| match v {
            Value::Text(dev) if !dev.is_empty() && dev.len() <= 15 => Vec::new(),
            _ => vec![format!(
                "socket.bind_device {:?} must be an interface name of 1 to 15 bytes",
                v.to_string()
            )],
        },
        value: |o| o.bind_device.clone().map(Value::Text),
        set: set_bind_device,
        get: get_bind_device,
        ..BASE
    },
    Desc {
        key: "dont_route",
        sockopt: "SO_DONTROUTE",
        platform: Platform::Unix,
        tcp: Scope::Accepted,
        udp: Scope::Live,
        value: |o| o.dont_route.map(Value::Bool),
        set: |s, _, v| int_opt(s, Level::Socket, Name::DontRoute, v.bool()? as i32),
        get: |s, _| get_int_opt(s, Level::Socket, Name::DontRoute).map(|v| Value::Bool(v != 0)),
        ..BASE
    },
    Desc {
        key: "priority",
        sockopt: "SO_PRIORITY",
        platform: Platform::Linux,
        tcp: Scope::Accepted,
        udp: Scope::Live,
        range: Some((
            0,
            6,
            "values above 6 need CAP_NET_ADMIN, which netservd does not ask for",
        )),
        value: |o| o.priority.map(|v| int(v.into())),
        set: set_priority,
        get: get_priority,
        ..BASE
    },
    Desc {
        key: "nodelay",
        sockopt: "TCP_NODELAY",
        kinds: KindSet::TCP,
        tcp: Scope::Accepted,
        // Keeps small frames prompt: the echo is not held back by Nagle.
        unset: Unset::Ours(tcp_true, ""),
        value: |o| o.nodelay.map(Value::Bool),
        set: |s, _, v| s.set_tcp_nodelay(v.bool()?),
        get: |s, _| s.tcp_nodelay().map(Value::Bool),
        per_connection: true,
        ..BASE
    },
    Desc {
        key: "oob_inline",
        sockopt: "SO_OOBINLINE",
        kinds: KindSet::TCP,
        tcp: Scope::Accepted,
        // Urgent bytes stay in the stream, so the echo stays byte-exact.
        unset: Unset::Ours(tcp_true, ""),
        value: |o| o.oob_inline.map(Value::Bool),
        set: |s, _, v| s.set_out_of_band_inline(v.bool()?),
        get: |s, _| s.out_of_band_inline().map(Value::Bool),
        ..BASE
    },
    Desc {
        key: "keepalive",
        sockopt: "SO_KEEPALIVE, TCP_KEEPIDLE/KEEPINTVL/KEEPCNT",
        kinds: KindSet::TCP,
        tcp: Scope::Accepted,
        check: check_keepalive,
        value: |o| o.keepalive.map(Value::Keepalive),
        set: |s, _, v| match v {
            Value::Keepalive(k) => crate::net::keepalive(s, *k),
            _ => Err(super::mismatch(v)),
        },
        get: |s, _| s.keepalive().map(Value::Bool),
        more: Some(keepalive_timers),
        per_connection: true,
        ..BASE
    },
    Desc {
        key: "linger",
        sockopt: "SO_LINGER",
        kinds: KindSet::TCP,
        tcp: Scope::Accepted,
        check: check_linger,
        value: |o| o.linger.map(Value::Dur),
        set: |s, _, v| match v {
            Value::Dur(d) => s.set_linger(Some(*d)),
            _ => Err(super::mismatch(v)),
        },
        get: |s, _| {
            s.linger()
                .map(|d| d.map_or(Value::Text("off".into()), Value::Dur))
        },
        ..BASE
    },
    Desc {
        key: "backlog",
        sockopt: "listen() backlog",
        kinds: KindSet::TCP,
        tcp: Scope::Relisten,
        unset: Unset::Ours(
            |r| (r == Role::TcpListener).then_some(int(DEFAULT_BACKLOG.into())),
            "",
        ),
        when: When::Listen,
        range: Some((1, 65535, "")),
        value: |o| o.backlog.map(|v| int(v.into())),
        set: |s, _, v| s.listen(v.int()?),
        get: |_, _| Ok(Value::Text("(not readable; listen() accepted it)".into())),
        ..BASE
    },
    Desc {
        key: "mss",
        sockopt: "TCP_MAXSEG",
        kinds: KindSet::TCP,
        platform: Platform::Unix,
        tcp: Scope::Accepted,
        range: Some((88, 65535, "")),
        value: |o| o.mss.map(|v| int(v.into())),
        set: set_mss,
        get: get_mss,
        ..BASE
    },
    Desc {
        key: "recv_low_water",
        sockopt: "SO_RCVLOWAT",
        kinds: KindSet::TCP,
        platform: Platform::Unix,
        tcp: Scope::Accepted,
        range: Some((1, i32::MAX as i64, "")),
        value: |o| o.recv_low_water.map(|v| int(v.into())),
        set: |s, _, v| int_opt(s, Level::Socket, Name::RcvLowat, v.int()?),
        get: |s, _| get_int_opt(s, Level::Socket, Name::RcvLowat).map(|v| int(v.into())),
        ..BASE
    },
    Desc {
        key: "fastopen",
        sockopt: "TCP_FASTOPEN",
        kinds: KindSet::TCP,
        platform: Platform::Linux,
        range: Some((1, 65535, "")),
        value: |o| o.fastopen.map(|v| int(v.into())),
        set: |s, _, v| int_opt(s, Level::Tcp, Name::FastOpen, v.int()?),
        get: |s, _| get_int_opt(s, Level::Tcp, Name::FastOpen).map(|v| int(v.into())),
        ..BASE
    },
    Desc {
        key: "broadcast",
        config: false,
        sockopt: "SO_BROADCAST",
        kinds: KindSet::BROADCAST,
        unset: Unset::Ours(
            |r| (r == Role::UdpBroadcast).then_some(Value::Bool(true)),
            "",
        ),
        set: |s, _, v| s.set_broadcast(v.bool()?),
        get: |s, _| s.broadcast().map(Value::Bool),
        ..BASE
    },
    Desc {
        key: "multicast_ttl",
        sockopt: "IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS",
        kinds: KindSet::MCAST,
        udp: Scope::Live,
        range: Some((0, 255, "")),
        value: |o| o.multicast_ttl.map(|v| int(v.into())),
        set: |s, c, v| {
            let v = v.int()?;
            by_family(
                c,
                || s.set_multicast_hops_v6(v),
                || s.set_multicast_ttl_v4(v),
            )
        },
        get: |s, c| {
            by_family(c, || s.multicast_hops_v6(), || s.multicast_ttl_v4()).map(|v| int(v.into()))
        },
        ..BASE
    },
    Desc {
        key: "multicast_loop",
        sockopt: "IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP",
        kinds: KindSet::MCAST,
        udp: Scope::Live,
        value: |o| o.multicast_loop.map(Value::Bool),
        set: |s, c, v| {
            let v = v.bool()?;
            by_family(
                c,
                || s.set_multicast_loop_v6(v),
                || s.set_multicast_loop_v4(v),
            )
        },
        get: |s, c| {
            by_family(c, || s.multicast_loop_v6(), || s.multicast_loop_v4()).map(Value::Bool)
        },
        ..BASE
    },
    Desc {
        key: "multicast_all",
        sockopt: "IP_MULTICAST_ALL / IPV6_MULTICAST_ALL",
        kinds: KindSet::MULTICAST,
        platform: Platform::Linux,
        // Off for listeners, so two listeners on one port each get only their
        // own group (the kernel's default is on).
        unset: Unset::Ours(
            |r| {
                (cfg!(target_os = "linux") && r == Role::UdpMulticast).then_some(Value::Bool(false))
            },
            " (default)",
        ),
        value: |o| o.multicast_all.map(Value::Bool),
        set: set_multicast_all,
        get: get_multicast_all,
        ..BASE
    },
];
