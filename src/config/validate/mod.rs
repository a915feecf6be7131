//! Rules the types cannot express: value ranges, which socket keys apply to
//! which service kind and platform, and rules across services (unique names,
//! no two services on one protocol+address:port). Returns every problem found,
//! each with the path of the key it is about, so `config/mod.rs` can place it.
//! This file holds the cross-service rules; `services.rs` the per-kind ones,
//! `socket.rs` the `[*.socket]` ones.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::schema::*;

mod services;
mod socket;

use services::{broadcast, multicast, tcp_echo, udp_echo};
use socket::{Kind, socket};

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

/// Longest timeout or interval we accept: far beyond any useful value, and far
/// from where `Instant + Duration` would overflow.
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

/// A rule about two services: the other one's key, so the message can say
/// where it is (`config/mod.rs` appends its line:col).
pub struct SeeAlso {
    /// Index of the issue (in the returned list) this belongs to.
    pub issue: usize,
    pub kind: &'static str,
    pub index: usize,
    pub key: &'static str,
}

pub(super) struct Issues(pub(super) Vec<Issue>, pub(super) Vec<SeeAlso>);

impl Issues {
    /// Points the issue just added at the other service's `key`.
    pub(super) fn see(&mut self, kind: &'static str, index: usize, key: &'static str) {
        if let Some(issue) = self.0.len().checked_sub(1) {
            self.1.push(SeeAlso {
                issue,
                kind,
                index,
                key,
            });
        }
    }

    pub(super) fn at(
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

/// Every problem of `cfg`, and for those about two services, where the other is.
pub fn validate_all(cfg: &Config) -> (Vec<Issue>, Vec<SeeAlso>) {
    let mut out = Issues(Vec::new(), Vec::new());
    daemon(cfg, &mut out);
    admin(cfg, &mut out);
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
    (out.0, out.1)
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
    if cfg.daemon.drain_timeout > MAX_TIMER {
        out.0.push(Issue {
            kind: None,
            index: 0,
            section: "daemon",
            keys: vec!["drain_timeout"],
            message: "[daemon]: drain_timeout is over 24h; retired connections would be kept almost forever; use at most \"24h\"".into(),
        });
    }
    if !(1..=MAX_WORKERS).contains(&cfg.daemon.workers) {
        out.0.push(Issue {
            kind: None,
            index: 0,
            section: "daemon",
            keys: vec!["workers"],
            message: format!(
                "[daemon]: workers = {} is out of range; use 1 to {MAX_WORKERS} (or leave it out for one per CPU this process may use)",
                cfg.daemon.workers
            ),
        });
    }
}

/// `[admin]` limits, and its address against the TCP services' (the same
/// address would make `run` fail at bind, blaming "another process").
fn admin(cfg: &Config, out: &mut Issues) {
    let Some(a) = &cfg.admin else { return };
    let mut issue = |key: &'static str, message: String| {
        out.0.push(Issue {
            kind: None,
            index: 0,
            section: "admin",
            keys: vec![key],
            message: format!("[admin]: {message}"),
        })
    };
    for (key, d) in [
        ("header_read_timeout", a.header_read_timeout),
        ("idle_timeout", a.idle_timeout),
    ] {
        if d.is_zero() || d > Duration::from_secs(3600) {
            issue(
                key,
                format!(
                    "{key} = {} is out of range; use 1ms..=1h (a few seconds is plenty for health checks)",
                    humantime::format_duration(d)
                ),
            );
        }
    }
    if a.max_connections == 0 || a.max_connections > 65536 {
        issue(
            "max_connections",
            format!(
                "max_connections = {} is out of range; use 1..=65536 (default 64)",
                a.max_connections
            ),
        );
    }
    if a.max_body_bytes > 1 << 20 {
        issue(
            "max_body_bytes",
            format!(
                "max_body_bytes = {} is over 1048576; the admin endpoint takes no bodies (default 4096)",
                a.max_body_bytes
            ),
        );
    }
    if let Some(path) = &a.token_file {
        // Read here too, so `check` fails where `run` would.
        match std::fs::read_to_string(path) {
            Ok(t) if t.trim().is_empty() => issue(
                "token_file",
                format!(
                    "token_file {}: the file is empty; write a token into it (e.g. `openssl rand -hex 32 > FILE`)",
                    path.display()
                ),
            ),
            Ok(_) => {}
            Err(e) => issue(
                "token_file",
                format!(
                    "token_file {}: cannot read it ({e}); create it (e.g. `openssl rand -hex 32 > FILE`) or remove token_file",
                    path.display()
                ),
            ),
        }
    }
    if a.listen.port() == 0 {
        return;
    }
    for s in &cfg.tcp_echo {
        if s.listen.port() == a.listen.port()
            && ips_overlap(
                s.listen.ip(),
                s.socket.only_v6.unwrap_or(false),
                a.listen.ip(),
                false,
            )
        {
            issue(
                "listen",
                format!(
                    "listen {} overlaps tcp_echo {:?} on {}; give the admin endpoint another port",
                    a.listen, s.name, s.listen
                ),
            );
        }
    }
}

fn names(cfg: &Config, out: &mut Issues) {
    let mut seen: HashMap<&str, (&'static str, usize)> = HashMap::new();
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
        if let Some(&(first, at)) = seen.get(name.as_str()) {
            out.at(kind, i, name, &["name"], format!("duplicate service name (already used by a {first} service); every service needs a unique name"));
            out.see(first, at, "name");
        } else {
            seen.insert(name, (kind, i));
        }
    }
}

/// Two services may not share protocol + address:port (port 0 never clashes;
/// an unspecified address overlaps every address of its port).
fn overlaps(cfg: &Config, out: &mut Issues) {
    /// (protocol, address, name, v6only, kind, index, key) of each address taken so far.
    type Claim = (
        &'static str,
        SocketAddr,
        String,
        bool,
        &'static str,
        usize,
        &'static str,
    );
    let mut claimed: Vec<Claim> = Vec::new();
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
        for (p, other, other_name, other_v6only, other_kind, other_i, other_key) in &claimed {
            // Multicast listeners share their port on purpose (SO_REUSEADDR, one group each).
            let both_multicast = kind == "multicast" && *other_kind == "multicast";
            if *p == proto
                && !both_multicast
                && other.port() == addr.port()
                && ips_overlap(other.ip(), *other_v6only, addr.ip(), v6only)
            {
                out.at(kind, i, name, &[key], format!(
                    "{proto} {addr} overlaps service {other_name:?} on {other}; give one of them another port or address"
                ));
                out.see(other_kind, *other_i, other_key);
                return;
            }
        }
        claimed.push((proto, addr, name.to_string(), v6only, kind, i, key));
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
    // A multicast listener binds the wildcard address of its port (IPv6 ones v6-only),
    // so it would take unicast datagrams meant for a udp_echo on that port.
    for (i, s) in cfg.multicast.iter().enumerate() {
        let wildcard: IpAddr = if s.group.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let addr = SocketAddr::new(wildcard, s.port);
        check("udp", "multicast", i, &s.name, addr, true, "port", out);
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
    // Other announcers appear in `{services}` too (an announcer leaves out only itself).
    for b in &cfg.broadcast {
        s.push(format!("{}=udp://{}", b.name, b.destination));
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
