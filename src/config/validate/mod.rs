//! Rules the types cannot express: value ranges, which socket keys apply to
//! which service kind and platform, and rules across services (unique names,
//! no two services on one protocol+address:port). Returns every problem found,
//! each with the path of the key it is about, so `config/mod.rs` can place it.
//! This file holds the cross-service rules; `services.rs` the per-kind ones,
//! `socket.rs` the `[*.socket]` ones.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::schema::*;

pub(crate) mod faults;
pub(crate) mod services;
mod socket;

use socket::{Kind, socket};

use crate::net::Role;
use crate::services::Spec;

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

/// What validation found so far: the problems, and for those about two
/// services, where the other one is.
pub struct Issues(pub(super) Vec<Issue>, pub(super) Vec<SeeAlso>);

/// What the per-kind rules need to know about the rest of the config.
pub struct Rules {
    /// `{services}` at its longest: every service with a 5-digit port.
    pub(crate) worst_case_services: String,
}

/// A protocol address a service takes; no two services may take overlapping ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// `tcp` or `udp`.
    pub(crate) proto: &'static str,
    pub(crate) addr: SocketAddr,
    /// An IPv6 wildcard that does not take IPv4 (IPV6_V6ONLY).
    pub(crate) v6only: bool,
    /// The key the address is written in (`listen`, `bind`, `port`).
    pub(crate) key: &'static str,
}

impl Issues {
    /// Points the issue just added at the other service's `key`.
    pub(crate) fn see(&mut self, kind: &'static str, index: usize, key: &'static str) {
        if let Some(issue) = self.0.len().checked_sub(1) {
            self.1.push(SeeAlso {
                issue,
                kind,
                index,
                key,
            });
        }
    }

    pub(crate) fn at(
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
    faults::all(cfg, &mut out);
    let rules = Rules {
        worst_case_services: worst_case_services(cfg),
    };
    for (i, spec) in Spec::indexed(cfg) {
        spec.validate(i, &rules, &mut out);
        socket(
            socket_kind(spec.role()),
            i,
            spec.name(),
            spec.socket(),
            Some(spec.family_ip()),
            &mut out,
        );
    }
    (out.0, out.1)
}

/// The socket rules' name for a service's socket role.
fn socket_kind(role: Role) -> Kind {
    match role {
        Role::TcpListener => Kind::TcpEcho,
        Role::Udp => Kind::UdpEcho,
        Role::UdpBroadcast => Kind::Broadcast,
        Role::UdpMulticast => Kind::Multicast,
    }
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
    if let Some(message) = a.token_file.as_deref().and_then(token_file_problem) {
        issue("token_file", message);
    }
    if a.listen.port() == 0 {
        return;
    }
    for spec in Spec::all(cfg) {
        for c in spec.claims().into_iter().filter(|c| c.proto == "tcp") {
            if c.addr.port() == a.listen.port()
                && ips_overlap(c.addr.ip(), c.v6only, a.listen.ip(), false)
            {
                issue(
                    "listen",
                    format!(
                        "listen {} overlaps {} {:?} on {}; give the admin endpoint another port",
                        a.listen,
                        spec.kind(),
                        spec.name(),
                        c.addr
                    ),
                );
            }
        }
    }
}

/// What is wrong with `[admin] token_file`, read here too so `check` fails where `run` would.
fn token_file_problem(path: &std::path::Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Some(format!(
            "token_file {}: the file is empty; write a token into it (e.g. `openssl rand -hex 32 > FILE`)",
            path.display()
        )),
        Ok(_) => None,
        Err(e) => Some(format!(
            "token_file {}: cannot read it ({e}); create it (e.g. `openssl rand -hex 32 > FILE`) or remove token_file",
            path.display()
        )),
    }
}

fn names(cfg: &Config, out: &mut Issues) {
    let mut seen: HashMap<String, (&'static str, usize)> = HashMap::new();
    for (i, spec) in Spec::indexed(cfg) {
        let (kind, name) = (spec.kind(), spec.name());
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
        if let Some(&(first, at)) = seen.get(name) {
            out.at(kind, i, name, &["name"], format!("duplicate service name (already used by a {first} service); every service needs a unique name"));
            out.see(first, at, "name");
        } else {
            seen.insert(name.to_string(), (kind, i));
        }
    }
}

/// Two services may not share protocol + address:port (port 0 never clashes;
/// an unspecified address overlaps every address of its port).
fn overlaps(cfg: &Config, out: &mut Issues) {
    /// A claim taken so far, with the service that took it.
    struct Taken {
        claim: Claim,
        name: String,
        kind: &'static str,
        index: usize,
        shares_port: bool,
    }
    let mut taken: Vec<Taken> = Vec::new();
    for (i, spec) in Spec::indexed(cfg) {
        for claim in spec.claims() {
            if claim.addr.port() == 0 {
                continue;
            }
            let clash = taken.iter().find(|t| {
                // Some kinds share their port on purpose (multicast: SO_REUSEADDR, one group each).
                let both_share = t.kind == spec.kind() && t.shares_port && spec.shares_port();
                t.claim.proto == claim.proto
                    && !both_share
                    && t.claim.addr.port() == claim.addr.port()
                    && ips_overlap(
                        t.claim.addr.ip(),
                        t.claim.v6only,
                        claim.addr.ip(),
                        claim.v6only,
                    )
            });
            if let Some(t) = clash {
                let (proto, addr, other) = (claim.proto, claim.addr, t.claim.addr);
                out.at(spec.kind(), i, spec.name(), &[claim.key], format!(
                    "{proto} {addr} overlaps service {:?} on {other}; give one of them another port or address",
                    t.name
                ));
                out.see(t.kind, t.index, t.claim.key);
                continue;
            }
            taken.push(Taken {
                claim,
                name: spec.name().to_string(),
                kind: spec.kind(),
                index: i,
                shares_port: spec.shares_port(),
            });
        }
    }
}

/// Whether sockets on `a` and `b` (same port and protocol) would take the
/// same datagrams or connections. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
/// is the IPv4 address it maps: the kernel refuses both on one port.
fn ips_overlap(a: IpAddr, a_v6only: bool, b: IpAddr, b_v6only: bool) -> bool {
    let (a, b) = (a.to_canonical(), b.to_canonical());
    if a == b {
        return true;
    }
    let wild = |ip: IpAddr, v6only: bool, other: IpAddr| {
        ip.is_unspecified() && (ip.is_ipv4() == other.is_ipv4() || (ip.is_ipv6() && !v6only))
    };
    wild(a, a_v6only, b) || wild(b, b_v6only, a)
}

/// `{services}` at its longest: every service with a 5-digit port.
/// Other announcers appear in it too (an announcer leaves out only itself).
fn worst_case_services(cfg: &Config) -> String {
    Spec::all(cfg)
        .iter()
        .map(Spec::directory_entry)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
