//! `[*.socket]` rules: which keys apply to which kind of service and which
//! platform, and the ranges the kernel accepts (so a value `check` passes
//! never fails at bind).

use std::net::IpAddr;
use std::time::Duration;

use super::Issues;
use crate::config::schema::SocketOptions;

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
}

/// Keys of `[*.socket]` that only TCP sockets take.
const TCP_ONLY: &[&str] = &[
    "nodelay",
    "keepalive",
    "linger",
    "backlog",
    "oob_inline",
    "mss",
    "recv_low_water",
    "fastopen",
];
/// Keys that only sockets sending or receiving multicast take.
const MULTICAST_ONLY: &[&str] = &["multicast_ttl", "multicast_loop", "multicast_all"];
/// Keys the platform must support: (key, platform family, available here).
const PLATFORM: &[(&str, &str, bool)] = &[
    ("reuse_port", "Unix", cfg!(unix)),
    ("mss", "Unix", cfg!(unix)),
    ("recv_low_water", "Unix", cfg!(unix)),
    ("dont_route", "Unix", cfg!(unix)),
    (
        "bind_device",
        "Linux",
        cfg!(any(target_os = "linux", target_os = "android")),
    ),
    (
        "fastopen",
        "Linux",
        cfg!(any(target_os = "linux", target_os = "android")),
    ),
    (
        "multicast_all",
        "Linux",
        cfg!(any(target_os = "linux", target_os = "android")),
    ),
];

pub(super) fn socket(
    kind: Kind,
    i: usize,
    name: &str,
    o: &SocketOptions,
    ip: Option<IpAddr>,
    out: &mut Issues,
) {
    let k = kind.name();
    for key in o.keys_set() {
        let msg = if kind != Kind::TcpEcho && TCP_ONLY.contains(&key) {
            Some(format!(
                "socket.{key} applies to TCP sockets only; remove it from this {k} service"
            ))
        } else if matches!(kind, Kind::UdpEcho | Kind::TcpEcho) && MULTICAST_ONLY.contains(&key) {
            Some(format!(
                "socket.{key} applies to multicast senders and listeners only; remove it from this {k} service"
            ))
        } else if kind == Kind::Broadcast && key == "multicast_all" {
            Some("socket.multicast_all applies to multicast listeners only".to_string())
        } else if let Some((_, family, false)) = PLATFORM.iter().find(|(p, _, _)| *p == key) {
            Some(format!(
                "socket.{key} is {family}-only and not available on {}; remove it",
                std::env::consts::OS
            ))
        } else {
            None
        };
        if let Some(msg) = msg {
            out.at(k, i, name, &["socket", key], msg);
        }
    }
    let mut range = |key: &'static str, v: Option<i128>, lo: i128, hi: i128| {
        if let Some(v) = v.filter(|v| !(lo..=hi).contains(v)) {
            out.at(
                k,
                i,
                name,
                &["socket", key],
                crate::config::words::whole_number(key, lo, hi, &v.to_string()),
            );
        }
    };
    range("ttl", o.ttl.map(i128::from), 1, 255);
    range("multicast_ttl", o.multicast_ttl.map(i128::from), 0, 255);
    range("tos", o.tos.map(i128::from), 0, 255);
    range("backlog", o.backlog.map(|b| b as i128), 1, 65535);
    range(
        "recv_buffer_bytes",
        o.recv_buffer_bytes.map(|b| b as i128),
        1,
        i32::MAX as i128 / 2,
    );
    range(
        "send_buffer_bytes",
        o.send_buffer_bytes.map(|b| b as i128),
        1,
        i32::MAX as i128 / 2,
    );
    range("mss", o.mss.map(i128::from), 88, 65535);
    range(
        "recv_low_water",
        o.recv_low_water.map(i128::from),
        1,
        i32::MAX as i128,
    );
    range("fastopen", o.fastopen.map(i128::from), 1, 65535);
    if let Some(d) = o.linger {
        // SO_LINGER counts whole seconds: "500ms" would silently become 0s (a reset on every close).
        if d.subsec_nanos() != 0 || d > Duration::from_secs(3600) {
            out.at(k, i, name, &["socket", "linger"], format!(
                "socket.linger = {}: SO_LINGER takes whole seconds from 0s (reset on close) to 3600s; write e.g. \"2s\"",
                humantime::format_duration(d)
            ));
        }
    }
    if let Some(crate::config::Keepalive::On(p)) = o.keepalive {
        // Linux's limits for TCP_KEEPIDLE/TCP_KEEPINTVL (MAX_TCP_KEEPIDLE) and TCP_KEEPCNT (MAX_TCP_KEEPCNT).
        for (what, d) in [("idle", p.idle), ("interval", p.interval)] {
            if let Some(d) =
                d.filter(|d| d.subsec_nanos() != 0 || d.as_secs() < 1 || d.as_secs() > 32767)
            {
                out.at(
                    k,
                    i,
                    name,
                    &["socket", "keepalive"],
                    format!(
                        "socket.keepalive {what} = {} must be whole seconds from 1s to 32767s",
                        humantime::format_duration(d)
                    ),
                );
            }
        }
        if let Some(r) = p.retries.filter(|r| !(1..=127).contains(r)) {
            out.at(
                k,
                i,
                name,
                &["socket", "keepalive"],
                format!("socket.keepalive retries = {r} is out of range 1..=127"),
            );
        }
    }
    if o.only_v6.is_some() && ip.is_some_and(|ip| ip.is_ipv4()) {
        out.at(
            k,
            i,
            name,
            &["socket", "only_v6"],
            "socket.only_v6 applies to IPv6 addresses only; remove it".into(),
        );
    }
    if let Some(dev) = &o.bind_device
        && (dev.is_empty() || dev.len() > 15)
    {
        out.at(
            k,
            i,
            name,
            &["socket", "bind_device"],
            format!("socket.bind_device {dev:?} must be an interface name of 1 to 15 bytes"),
        );
    }
}
