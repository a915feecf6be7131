//! serde helpers for the value types TOML has no word for: durations written
//! with a unit ("250ms", "5s"), socket addresses that may name a host, and the
//! `keepalive = false | { idle, interval, retries }` switch.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// `"5s"`, `"250ms"`, `"1m 30s"`: a string with a unit, parsed by humantime.
pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(de::Error::custom)
    }

    /// Written back the way it is read: `"1m 30s"`, `"250ms"` (`check --print`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s).map_err(|e| {
            format!(
                "invalid duration {s:?}: {e}; write a number with a unit, e.g. \"250ms\" or \"5s\""
            )
        })
    }
}

/// Like [`duration`], for optional keys.
pub mod opt_duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

/// `ip:port`, `[ipv6]:port`, or `host:port` resolved once at load time.
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_socket_addr(&s).map_err(de::Error::custom)
}

pub fn opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let hint = "write ip:port, [ipv6]:port or host:port, e.g. \"127.0.0.1:7007\"";
    if !s.contains(':') {
        return Err(format!("invalid address {s:?}: no port; {hint}"));
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("address {s:?} resolves to nothing; {hint}")),
        Err(e) => Err(format!("invalid address {s:?}: {e}; {hint}")),
    }
}

/// TCP keepalive: off, on with OS timers, or on with explicit timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    Off,
    On(KeepaliveParams),
}

/// The timers of `keepalive = { idle = "60s", interval = "10s", retries = 5 }`;
/// an absent one keeps the OS default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeepaliveParams {
    /// TCP_KEEPIDLE: quiet time before the first probe.
    #[serde(default, with = "opt_duration")]
    pub idle: Option<Duration>,
    /// TCP_KEEPINTVL: time between probes.
    #[serde(default, with = "opt_duration")]
    pub interval: Option<Duration>,
    /// TCP_KEEPCNT: unanswered probes before the connection is dropped.
    #[serde(default)]
    pub retries: Option<u32>,
}

impl fmt::Display for Keepalive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Keepalive::On(p) = self else {
            return f.write_str("false");
        };
        let d = |d: Option<Duration>| {
            d.map_or("os".to_string(), |d| {
                humantime::format_duration(d).to_string()
            })
        };
        let r = p.retries.map_or("os".to_string(), |r| r.to_string());
        write!(
            f,
            "idle={} interval={} retries={r}",
            d(p.idle),
            d(p.interval)
        )
    }
}

impl Serialize for Keepalive {
    /// `false`, `true` (OS timers) or the table of timers, as written.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Keepalive::Off => s.serialize_bool(false),
            Keepalive::On(p) if *p == KeepaliveParams::default() => s.serialize_bool(true),
            Keepalive::On(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Keepalive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keepalive;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "true, false or a table { idle = \"60s\", interval = \"10s\", retries = 5 }",
                )
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Keepalive, E> {
                Ok(if on {
                    Keepalive::On(KeepaliveParams::default())
                } else {
                    Keepalive::Off
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Keepalive, A::Error> {
                KeepaliveParams::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Keepalive::On)
            }
        }
        d.deserialize_any(V)
    }
}
