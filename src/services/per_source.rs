//! Per-source connection limits for `[[tcp_echo]]` (xinetd's `per_source`
//! and `cps`, nginx's `limit_conn` per address): at most
//! `max_connections_per_source` open connections, and optionally at most
//! `max_connections_per_second_per_source` new ones, per source. A source is
//! an IPv4 address, or an IPv6 address cut to `source_prefix_v6` bits (one
//! host usually owns a whole /64, so counting single IPv6 addresses would let
//! it take every slot anyway).
//!
//! Data flow: the accept loop asks [`Sources::admit`] for each accepted
//! connection; the [`SourceSlot`] it returns travels with the connection's
//! task and gives the place back when the task ends. The table is shared by
//! the services a reload hands one listener to, so connections still open
//! under the old settings keep counting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::TcpEchoConfig;

/// A source, as counted: the IPv4 address, or the IPv6 prefix (mapped IPv4 counts as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4(u32),
    /// The address with the bits past the prefix cleared. Bytes, not a
    /// `u128`: its 16-byte alignment would pad every idle connection's future.
    V6([u8; 16]),
}

/// Sources remembered with no open connection, past which idle entries are swept.
const SWEEP_AT: usize = 4096;
/// The rate window of `max_connections_per_second_per_source`.
const SECOND: Duration = Duration::from_secs(1);

/// Open connections and the current second's new ones, per source; cloning shares the table.
#[derive(Clone, Default)]
pub struct Sources(Arc<Mutex<HashMap<SourceKey, Entry>>>);

struct Entry {
    open: u32,
    /// Start of the current one-second window and the connections admitted in it.
    window: Instant,
    in_window: u32,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections_per_source` open already.
    Open,
    /// `max_connections_per_second_per_source` reached in this second.
    Rate,
}

impl Refusal {
    /// The `drops{reason}` label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Open => "per_source_limit",
            Refusal::Rate => "per_source_rate",
        }
    }
}

/// A connection's place in its source's count; given back on drop.
pub struct SourceSlot {
    table: Sources,
    key: SourceKey,
}

impl SourceKey {
    pub fn of(ip: IpAddr, prefix_v6: u8) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => {
                    let bits = u32::from(prefix_v6.min(128));
                    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                    SourceKey::V6((u128::from(v6) & mask).to_be_bytes())
                }
            },
        }
    }
}

impl Sources {
    /// True when `cfg` limits anything per source.
    pub fn limits(cfg: &TcpEchoConfig) -> bool {
        cfg.max_connections_per_source > 0
            || cfg
                .max_connections_per_second_per_source
                .is_some_and(|n| n > 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SourceKey, Entry>> {
        // Counts stay consistent whatever panicked while holding the lock.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for one more connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr, cfg: &TcpEchoConfig) -> Result<SourceSlot, Refusal> {
        let key = SourceKey::of(ip, cfg.source_prefix_v6);
        let now = Instant::now();
        let mut table = self.lock();
        if table.len() >= SWEEP_AT {
            table.retain(|_, e| e.open > 0 || now.duration_since(e.window) < SECOND);
        }
        let e = table.entry(key).or_insert(Entry {
            open: 0,
            window: now,
            in_window: 0,
        });
        if cfg.max_connections_per_source > 0 && e.open >= cfg.max_connections_per_source {
            return Err(Refusal::Open);
        }
        if now.duration_since(e.window) >= SECOND {
            e.window = now;
            e.in_window = 0;
        }
        if let Some(cps) = cfg.max_connections_per_second_per_source.filter(|n| *n > 0)
            && e.in_window >= cps
        {
            return Err(Refusal::Rate);
        }
        e.open += 1;
        e.in_window += 1;
        Ok(SourceSlot {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        if let Some(e) = table.get_mut(&self.key) {
            e.open = e.open.saturating_sub(1);
            if e.open == 0 && e.window.elapsed() >= SECOND {
                table.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_sources_are_counted_by_prefix_and_v4_mapped_as_v4() {
        let k = |s: &str, p| SourceKey::of(s.parse().unwrap(), p);
        assert_eq!(k("2001:db8::1", 64), k("2001:db8::ffff:1", 64));
        assert_ne!(k("2001:db8::1", 64), k("2001:db8:0:1::1", 64));
        assert_ne!(k("2001:db8::1", 128), k("2001:db8::2", 128));
        assert_eq!(k("::ffff:127.0.0.2", 64), k("127.0.0.2", 64));
        assert_ne!(k("127.0.0.2", 64), k("127.0.0.3", 64));
        assert_ne!(k("::1", 128), k("0.0.0.1", 64));
    }
}
