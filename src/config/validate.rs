//! Rules the types cannot express: value ranges, which socket keys apply to
//! which service kind and platform, and rules across services (unique names,
//! no two services on one protocol+address:port). Returns every problem found,
//! each with the path of the key it is about, so `mod.rs` can place it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::schema::*;
use crate::frame::FrameFormat;
use crate::template::{MAX_PAYLOAD_BYTES, Template};

/// One problem: where (kind + index into that kind's `Vec`, then keys) and what.
pub struct Issue {
    /// Service kind (`tcp_echo`...), or `None` for `[daemon]`/`[admin]`.
    pub kind: Option<&'static str>,
    pub index: usize,
    /// Section name for issues outside services.
    pub section: &'static str,
    pub keys: Vec<&'static str>,
    pub message: String,
}

/// Largest `max_frame_bytes` we accept whatever the length field: a frame is
/// buffered whole before it is echoed.
pub const MAX_FRAME_LIMIT: u64 = 1 << 30;

struct Issues(Vec<Issue>);

impl Issues {
    fn at(
        &mut self,
        kind: &'static str,
        index: usize,
        name: &str,
        keys: &[&'static str],
        msg: String,
    ) {
        self.0.push(Issue {
            kind: Some(kind),
            index,
            section: "",
            keys: keys.to_vec(),
            message: format!("{kind} {name:?}: {msg}"),
        });
    }
}

pub fn validate(cfg: &Config) -> Vec<Issue> {
    let mut out = Issues(Vec::new());
    daemon(cfg, &mut out);
    names(cfg, &mut out);
    overlaps(cfg, &mut out);
    let services = worst_case_services(cfg);
    for (i, s) in cfg.tcp_echo.iter().enumerate() {
        tcp_echo(i, s, &mut out);
        socket(
            Kind::TcpEcho,
            i,
            &s.name,
            &s.socket,
            Some(s.listen.ip()),
            &mut out,
        );
    }
    for (i, s) in cfg.udp_echo.iter().enumerate() {
        udp_echo(i, s, &mut out);
        socket(
            Kind::UdpEcho,
            i,
            &s.name,
            &s.socket,
            Some(s.listen.ip()),
            &mut out,
        );
    }
    for (i, s) in cfg.broadcast.iter().enumerate() {
        broadcast(i, s, &services, &mut out);
        socket(
            Kind::Broadcast,
            i,
            &s.name,
            &s.socket,
            Some(s.destination.ip()),
            &mut out,
        );
    }
    for (i, s) in cfg.multicast.iter().enumerate() {
        multicast(i, s, &mut out);
        socket(
            Kind::Multicast,
            i,
            &s.name,
            &s.socket,
            Some(s.group),
            &mut out,
        );
    }
    out.0
}

fn daemon(cfg: &Config, out: &mut Issues) {
    if cfg.daemon.shutdown_timeout > Duration::from_secs(3600) {
        out.0.push(Issue {
            kind: None,
            index: 0,
            section: "daemon",
            keys: vec!["shutdown_timeout"],
            message: "[daemon]: shutdown_timeout is over 1h; keep it under your supervisor's kill timeout (docker stop waits 10s)".into(),
        });
    }
}

fn names(cfg: &Config, out: &mut Issues) {
    let mut seen: HashMap<&str, &'static str> = HashMap::new();
    let all = cfg
        .tcp_echo
        .iter()
        .map(|s| ("tcp_echo", &s.name))
        .chain(cfg.udp_echo.iter().map(|s| ("udp_echo", &s.name)))
        .chain(cfg.broadcast.iter().map(|s| ("broadcast", &s.name)))
        .chain(cfg.multicast.iter().map(|s| ("multicast", &s.name)));
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    for (kind, name) in all {
        let i = *index.entry(kind).and_modify(|i| *i += 1).or_insert(0);
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            out.at(
                kind,
                i,
                name,
                &["name"],
                "name must be 1 to 64 characters of letters, digits, '-', '_' or '.'".into(),
            );
        }
        if let Some(first) = seen.insert(name, kind) {
            out.at(kind, i, name, &["name"], format!("duplicate service name (already used by a {first} service); every service needs a unique name"));
        }
    }
}

/// Two services may not share protocol + address:port (port 0 never clashes;
/// an unspecified address overlaps every address of its port).
fn overlaps(cfg: &Config, out: &mut Issues) {
    let mut claimed: Vec<(&'static str, SocketAddr, String, bool)> = Vec::new();
    let mut check = |proto: &'static str,
                     kind: &'static str,
                     i: usize,
                     name: &str,
                     addr: SocketAddr,
                     v6only: bool,
                     key: &'static str,
                     out: &mut Issues| {
        if addr.port() == 0 {
            return;
        }
        for (p, other, other_name, other_v6only) in &claimed {
            if *p == proto
                && other.port() == addr.port()
                && ips_overlap(other.ip(), *other_v6only, addr.ip(), v6only)
            {
                out.at(kind, i, name, &[key], format!(
                    "{proto} {addr} overlaps service {other_name:?} on {other}; give one of them another port or address"
                ));
                return;
            }
        }
        claimed.push((proto, addr, name.to_string(), v6only));
    };
    for (i, s) in cfg.tcp_echo.iter().enumerate() {
        check(
            "tcp",
            "tcp_echo",
            i,
            &s.name,
            s.listen,
            s.socket.only_v6.unwrap_or(false),
            "listen",
            out,
        );
    }
    for (i, s) in cfg.udp_echo.iter().enumerate() {
        check(
            "udp",
            "udp_echo",
            i,
            &s.name,
            s.listen,
            s.socket.only_v6.unwrap_or(false),
            "listen",
            out,
        );
    }
    for (i, s) in cfg.broadcast.iter().enumerate() {
        if let Some(bind) = s.bind {
            check("udp", "broadcast", i, &s.name, bind, false, "bind", out);
        }
    }
}

fn ips_overlap(a: IpAddr, a_v6only: bool, b: IpAddr, b_v6only: bool) -> bool {
    if a == b {
        return true;
    }
    let wild = |ip: IpAddr, v6only: bool, other: IpAddr| {
        ip.is_unspecified() && (ip.is_ipv4() == other.is_ipv4() || (ip.is_ipv6() && !v6only))
    };
    wild(a, a_v6only, b) || wild(b, b_v6only, a)
}

fn tcp_echo(i: usize, s: &TcpEchoConfig, out: &mut Issues) {
    let at = |keys: &[&'static str], msg: String, out: &mut Issues| {
        out.at("tcp_echo", i, &s.name, keys, msg)
    };
    if ![1, 2, 4, 8].contains(&s.length_field_bytes) {
        at(
            &["length_field_bytes"],
            format!(
                "length_field_bytes = {} is not 1, 2, 4 or 8",
                s.length_field_bytes
            ),
            out,
        );
    } else {
        let most = FrameFormat::max_expressible(s.length_field_bytes);
        if s.max_frame_bytes > most {
            at(
                &["max_frame_bytes"],
                format!(
                    "max_frame_bytes = {} is more than a {}-byte length field can express (at most {most}); lower it or widen length_field_bytes",
                    s.max_frame_bytes, s.length_field_bytes
                ),
                out,
            );
        }
    }
    if s.max_frame_bytes > MAX_FRAME_LIMIT {
        at(
            &["max_frame_bytes"],
            format!(
                "max_frame_bytes = {} is over the limit of {MAX_FRAME_LIMIT} (1 GiB); frames are buffered whole",
                s.max_frame_bytes
            ),
            out,
        );
    }
    if s.max_connections == 0 {
        at(
            &["max_connections"],
            "max_connections must be at least 1".into(),
            out,
        );
    }
    for (key, d) in [
        ("idle_timeout", s.idle_timeout),
        ("frame_timeout", s.frame_timeout),
    ] {
        if d.is_zero() {
            at(&[key], format!("{key} must be more than 0s"), out);
        }
    }
}

fn udp_echo(i: usize, s: &UdpEchoConfig, out: &mut Issues) {
    let at = |keys: &[&'static str], msg: String, out: &mut Issues| {
        out.at("udp_echo", i, &s.name, keys, msg)
    };
    if s.max_datagram_bytes == 0 || s.max_datagram_bytes > crate::MAX_UDP_PAYLOAD {
        at(
            &["max_datagram_bytes"],
            format!(
                "max_datagram_bytes = {} is out of range 1..={}",
                s.max_datagram_bytes,
                crate::MAX_UDP_PAYLOAD
            ),
            out,
        );
    }
    if let Some(r) = s.rate_limit {
        if r.per_source == 0 || r.burst == Some(0) || r.max_sources == 0 {
            at(
                &["rate_limit"],
                "rate_limit per_source, burst and max_sources must each be at least 1".into(),
                out,
            );
        }
    }
}

fn broadcast(i: usize, s: &BroadcastConfig, services: &str, out: &mut Issues) {
    let at = |keys: &[&'static str], msg: String, out: &mut Issues| {
        out.at("broadcast", i, &s.name, keys, msg)
    };
    if s.destination.port() == 0 {
        at(
            &["destination"],
            "destination port must not be 0".into(),
            out,
        );
    }
    if s.destination.is_ipv6() && !s.destination.ip().is_multicast() {
        at(
            &["destination"],
            format!(
                "{} is IPv6 but not multicast: IPv6 has no broadcast; use a group such as [ff02::1]:PORT",
                s.destination.ip()
            ),
            out,
        );
    }
    if let Some(bind) = s.bind {
        if bind.is_ipv4() != s.destination.is_ipv4() {
            at(
                &["bind"],
                format!(
                    "bind {bind} and destination {} are of different IP families",
                    s.destination
                ),
                out,
            );
        }
    }
    if s.interval < Duration::from_millis(10) {
        at(&["interval"], "interval must be at least 10ms".into(), out);
    } else if s.jitter >= s.interval {
        at(
            &["jitter"],
            format!(
                "jitter ({:?}) must be less than interval ({:?})",
                s.jitter, s.interval
            ),
            out,
        );
    }
    for (key, text) in [("payload", &s.payload), ("goodbye", &s.goodbye)] {
        match Template::parse(text) {
            Err(e) => at(&[key], e, out),
            Ok(t) => {
                let most = t.max_len(&s.name, services);
                if most > MAX_PAYLOAD_BYTES {
                    at(
                        &[key],
                        format!(
                            "{key} can render to {most} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit; shorten it"
                        ),
                        out,
                    );
                }
            }
        }
    }
}

fn multicast(i: usize, s: &MulticastConfig, out: &mut Issues) {
    let at = |keys: &[&'static str], msg: String, out: &mut Issues| {
        out.at("multicast", i, &s.name, keys, msg)
    };
    if !s.group.is_multicast() {
        let range = if s.group.is_ipv4() {
            "224.0.0.0/4"
        } else {
            "ff00::/8"
        };
        at(
            &["group"],
            format!("{} is not a multicast group (must be in {range})", s.group),
            out,
        );
    }
    if s.port == 0 {
        at(
            &["port"],
            "port must not be 0: senders need to know it".into(),
            out,
        );
    }
    if let Some(src) = s.source {
        if src.is_ipv4() != s.group.is_ipv4() {
            at(
                &["source"],
                format!(
                    "source {src} and group {} are of different IP families",
                    s.group
                ),
                out,
            );
        } else if src.is_ipv6() && !cfg!(target_os = "linux") {
            at(
                &["source"],
                format!(
                    "an IPv6 source-specific join (MCAST_JOIN_SOURCE_GROUP) is implemented on Linux only, not on {}; remove `source` or use an IPv4 group",
                    std::env::consts::OS
                ),
                out,
            );
        }
    }
    if let Some(ifc) = &s.interface {
        if s.group.is_ipv4() && ifc.parse::<std::net::Ipv4Addr>().is_err() {
            at(
                &["interface"],
                format!(
                    "interface {ifc:?} must be a local IPv4 address for an IPv4 group, e.g. \"127.0.0.1\""
                ),
                out,
            );
        }
        if s.group.is_ipv6() && ifc.is_empty() {
            at(
                &["interface"],
                "interface must be an interface name or index for an IPv6 group".into(),
                out,
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
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

fn socket(
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
    let mut range = |key: &'static str, v: Option<u64>, lo: u64, hi: u64| {
        if let Some(v) = v.filter(|v| !(lo..=hi).contains(v)) {
            out.at(
                k,
                i,
                name,
                &["socket", key],
                format!("socket.{key} = {v} is out of range {lo}..={hi}"),
            );
        }
    };
    range("ttl", o.ttl.map(u64::from), 1, 255);
    range("multicast_ttl", o.multicast_ttl.map(u64::from), 0, 255);
    range("tos", o.tos.map(u64::from), 0, 255);
    range("backlog", o.backlog.map(|b| b as u64), 1, 65535);
    range(
        "recv_buffer_bytes",
        o.recv_buffer_bytes.map(|b| b as u64),
        1,
        i32::MAX as u64 / 2,
    );
    range(
        "send_buffer_bytes",
        o.send_buffer_bytes.map(|b| b as u64),
        1,
        i32::MAX as u64 / 2,
    );
    range("mss", o.mss.map(u64::from), 88, 65535);
    range(
        "recv_low_water",
        o.recv_low_water.map(u64::from),
        1,
        i32::MAX as u64,
    );
    range("fastopen", o.fastopen.map(u64::from), 1, 65535);
    if o.only_v6.is_some() && ip.is_some_and(|ip| ip.is_ipv4()) {
        out.at(
            k,
            i,
            name,
            &["socket", "only_v6"],
            "socket.only_v6 applies to IPv6 addresses only; remove it".into(),
        );
    }
    if let Some(dev) = &o.bind_device {
        if dev.is_empty() || dev.len() > 15 {
            out.at(
                k,
                i,
                name,
                &["socket", "bind_device"],
                format!("socket.bind_device {dev:?} must be an interface name of 1 to 15 bytes"),
            );
        }
    }
}

/// `{services}` at its longest: every service with a 5-digit port.
fn worst_case_services(cfg: &Config) -> String {
    let mut s = Vec::new();
    for t in &cfg.tcp_echo {
        s.push(format!(
            "{}=tcp://{}",
            t.name,
            SocketAddr::new(t.listen.ip(), 65535)
        ));
    }
    for u in &cfg.udp_echo {
        s.push(format!(
            "{}=udp://{}",
            u.name,
            SocketAddr::new(u.listen.ip(), 65535)
        ));
    }
    for m in &cfg.multicast {
        s.push(format!(
            "{}=udp://{}",
            m.name,
            SocketAddr::new(m.group, m.port)
        ));
    }
    s.join(" ")
}
