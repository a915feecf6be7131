//! Every `[*.socket]` option, described once in [`OPTIONS`]: its config key,
//! the kinds of service and address families it applies to, the platforms
//! that have it, what a reload that changes it needs ([`Scope`]), the default
//! we apply when it is not set, how to set it and how to read it back.
//!
//! Everything else is a loop over the table: validation (`config::validate::
//! socket`), [`super::apply`] before bind, [`super::read_back`] for `check
//! --bind` and `/services`, the reload planner (`net::change`), the requested
//! listing of `check`, and a test that holds the README's table to it. A value
//! flows from the serde struct ([`Desc::value`], as a [`Value`]) through
//! [`resolve`] (our default when unset) to [`Desc::set`]; [`Desc::get`] asks
//! the kernel for what it applied. Adding an option is one entry in
//! `options/table.rs`, one field in `SocketOptions` and one README row (the
//! unit tests fail, naming it, until all three are there).

use std::fmt;
use std::io;
use std::time::Duration;

use socket2::Socket;

use super::Role;
use crate::config::{Keepalive, SocketOptions};

/// An option's value as written in the config (or as the kernel reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Dur(Duration),
    Keepalive(Keepalive),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(v) => v.fmt(f),
            Value::Int(v) => v.fmt(f),
            Value::Dur(d) => humantime::format_duration(*d).fmt(f),
            Value::Keepalive(k) => k.fmt(f),
            Value::Text(s) => s.fmt(f),
        }
    }
}

impl Value {
    fn bool(&self) -> io::Result<bool> {
        match self {
            Value::Bool(v) => Ok(*v),
            _ => Err(mismatch(self)),
        }
    }

    /// The value as the C int (or u32) the option takes; ranges were validated.
    fn int<T: TryFrom<i64>>(&self) -> io::Result<T> {
        match self {
            Value::Int(v) => T::try_from(*v).map_err(|_| mismatch(self)),
            _ => Err(mismatch(self)),
        }
    }

    /// The value as a bound for range checks, when it is a number.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

/// A value of the wrong type for its option: a table bug, never a user's.
fn mismatch(v: &Value) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("unexpected value {v}"))
}

/// Options this platform lacks: validation refuses them before any socket exists.
fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The IPv6 or the IPv4 form of an option (IPV6_UNICAST_HOPS or IP_TTL),
/// by the socket's family.
fn by_family<T>(c: Ctx, v6: impl FnOnce() -> T, v4: impl FnOnce() -> T) -> T {
    if c.v6 { v6() } else { v4() }
}

/// What changing one option needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Set on the running socket; takes effect at once (UDP services).
    Live,
    /// Set on the listener; connections accepted from then on inherit it
    /// (those already open keep theirs).
    Accepted,
    /// The listen() backlog: a second `listen()` on the same socket resizes
    /// it on Linux; [`Desc::scope`] makes it a rebind elsewhere.
    Relisten,
    /// Only a new socket can have it (bind-time options).
    Rebind,
}

/// The kinds of service (by their socket's [`Role`]) an option applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSet(u8);

impl KindSet {
    pub const TCP: KindSet = KindSet(1);
    pub const UDP_ECHO: KindSet = KindSet(2);
    pub const BROADCAST: KindSet = KindSet(4);
    pub const MULTICAST: KindSet = KindSet(8);
    /// Sockets that send or receive multicast.
    pub const MCAST: KindSet = KindSet(4 | 8);
    pub const ALL: KindSet = KindSet(15);

    fn bit(role: Role) -> u8 {
        match role {
            Role::TcpListener => 1,
            Role::Udp => 2,
            Role::UdpBroadcast => 4,
            Role::UdpMulticast => 8,
        }
    }

    pub fn has(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    /// The README's "applies to" words: "all", "TCP", or the kinds by name.
    pub fn words(self) -> String {
        match self {
            KindSet::ALL => "all".into(),
            KindSet::TCP => "TCP".into(),
            _ => [
                (KindSet::UDP_ECHO, "udp_echo"),
                (KindSet::BROADCAST, "broadcast"),
                (KindSet::MULTICAST, "multicast"),
            ]
            .iter()
            .filter(|(k, _)| self.0 & k.0 != 0)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(", "),
        }
    }
}

/// The platforms that have an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    All,
    Unix,
    Linux,
}

impl Platform {
    /// Whether the platform this was built for has it.
    pub fn here(self) -> bool {
        match self {
            Platform::All => true,
            Platform::Unix => cfg!(unix),
            Platform::Linux => cfg!(any(target_os = "linux", target_os = "android")),
        }
    }

    /// The family named in errors and in the README ("Unix only").
    pub fn name(self) -> Option<&'static str> {
        match self {
            Platform::All => None,
            Platform::Unix => Some("Unix"),
            Platform::Linux => Some("Linux"),
        }
    }
}

/// What an unset option gets.
#[derive(Clone, Copy)]
pub enum Unset {
    /// Nothing: not applied, not read back.
    Nothing,
    /// The OS default stays; read back anyway, requested as "(os default)".
    Os,
    /// We apply this value for the role (when it gives one), shown with the
    /// note after it in the requested column.
    Ours(fn(Role) -> Option<Value>, &'static str),
}

/// What a setter or getter needs to know about the socket.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub v6: bool,
    pub role: Role,
}

/// When the option is set on a new socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// By [`super::apply`], before bind.
    Bind,
    /// With `listen()` (the backlog), by the caller that listens.
    Listen,
}

/// One option.
pub struct Desc {
    /// The key in `[*.socket]`.
    pub key: &'static str,
    /// False for an option the role sets and nobody configures (SO_BROADCAST).
    pub config: bool,
    /// The C names, for the README.
    pub sockopt: &'static str,
    pub kinds: KindSet,
    /// Applies to IPv6 addresses only.
    pub v6_only: bool,
    pub platform: Platform,
    /// What a reload that changes it needs, for a TCP listener and for UDP.
    pub tcp: Scope,
    pub udp: Scope,
    pub unset: Unset,
    pub when: When,
    /// Set again on each accepted connection: Linux does not carry it over
    /// from the listener everywhere (TCP_NODELAY, the keepalive timers).
    pub per_connection: bool,
    /// The inclusive range validation enforces (and serde errors name), with
    /// a note on why the limit is what it is ("" for none).
    pub range: Option<(i64, i64, &'static str)>,
    /// Checks beyond the range: a message for each thing wrong with the value.
    pub check: fn(&Value) -> Vec<String>,
    /// The value as written, `None` when the table leaves it out.
    pub value: fn(&SocketOptions) -> Option<Value>,
    pub set: fn(&Socket, Ctx, &Value) -> io::Result<()>,
    pub get: fn(&Socket, Ctx) -> io::Result<Value>,
    /// Further rows read back under this one (`keepalive.idle`, ...).
    pub more: Option<fn(&Socket, &Value, &mut Vec<super::Applied>)>,
}

impl Desc {
    /// What changing this option needs for a socket of `role`.
    pub fn scope(&self, role: Role) -> Scope {
        let s = if role == Role::TcpListener {
            self.tcp
        } else {
            self.udp
        };
        // Linux resizes the accept queue on a second listen(); elsewhere we do not rely on it.
        if s == Scope::Relisten && !cfg!(target_os = "linux") {
            Scope::Rebind
        } else {
            s
        }
    }

    /// Whether unsetting it can be applied in place: we set the value it
    /// falls back to ourselves. Any other key would need the kernel's default
    /// back, which only a new socket has. The backlog's default is given to
    /// listen(), not set before bind; unsetting it rebinds, as it always has.
    pub fn default_known(&self) -> bool {
        matches!(self.unset, Unset::Ours(..)) && self.when == When::Bind
    }

    /// Whether it applies to a socket of `c.role` and family on this platform.
    pub fn applies(&self, c: Ctx) -> bool {
        self.kinds.has(c.role) && self.platform.here() && (c.v6 || !self.v6_only)
    }
}

/// The value to apply for `d`: the configured one, else our default for the role.
pub fn resolve(d: &Desc, o: &SocketOptions, role: Role) -> Option<Value> {
    (d.value)(o).or_else(|| match d.unset {
        Unset::Ours(f, _) => f(role),
        Unset::Nothing | Unset::Os => None,
    })
}

/// What the requested column shows for `d`: the value as written, our
/// default with its note, "(os default)", or nothing (no row).
pub fn requested_text(d: &Desc, o: &SocketOptions, role: Role) -> Option<String> {
    if let Some(v) = (d.value)(o) {
        return Some(v.to_string());
    }
    match d.unset {
        Unset::Ours(f, note) => f(role).map(|v| format!("{v}{note}")),
        Unset::Os => Some("(os default)".into()),
        Unset::Nothing => None,
    }
}

/// The descriptor of `key`.
pub fn find(key: &str) -> Option<&'static Desc> {
    OPTIONS.iter().find(|d| d.key == key)
}

/// The range of an integer socket key, for the plain-words serde errors.
pub fn range(key: &str) -> Option<(i128, i128)> {
    find(key)?.range.map(|(lo, hi, _)| (lo as i128, hi as i128))
}

/// The keys `o` sets with their values as written, in table order: what
/// `check` lists without `--bind`.
pub fn requested(o: &SocketOptions) -> Vec<(&'static str, String)> {
    OPTIONS
        .iter()
        .filter_map(|d| (d.value)(o).map(|v| (d.key, v.to_string())))
        .collect()
}

/// The README's "on reload" words for `d`.
pub fn reload_words(d: &Desc) -> String {
    let words = |s: Scope| match s {
        Scope::Live => "in place",
        Scope::Accepted => "in place, for new connections",
        Scope::Relisten => "in place (Linux; elsewhere new socket)",
        Scope::Rebind => "new socket",
    };
    let tcp = d.kinds.has(Role::TcpListener);
    let udp = d.kinds.0 & !KindSet::TCP.0 != 0;
    match (tcp, udp) {
        (true, true) if d.tcp != d.udp => {
            format!("TCP: {}; UDP: {}", words(d.tcp), words(d.udp))
        }
        (true, _) => words(d.tcp).to_string(),
        _ => words(d.udp).to_string(),
    }
}

mod access;
mod table;
pub use table::OPTIONS;

#[cfg(test)]
mod tests;
