//! Decides whether a UDP datagram may be answered, so the echo cannot be made
//! into a reflector or a loop (the echo/chargen storm; the 2024 loop-DoS
//! advisory names RFC 862 echo):
//! - sources that can only be loops or spoofs get no reply: well-known
//!   answer-anything source ports, and broadcast, multicast or unspecified
//!   source addresses;
//! - `rate_limit` is a token bucket per source address, kept in a bounded
//!   LRU table, so one source cannot take the service from the others.
//!
//! Every refusal increments a drop counter by reason.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Instant;

use lru::LruCache;
use prometheus_client::metrics::counter::Counter;

use crate::config::RateLimit;
use crate::metrics::ServiceMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Reply,
    BlockedPort,
    BadSource,
    RateLimited,
}

pub struct Guard {
    blocked_ports: Vec<u16>,
    limit: Option<(RateLimit, LruCache<IpAddr, Bucket>)>,
    blocked_port: Counter,
    bad_source: Counter,
    rate_limited: Counter,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Guard {
    /// `own_port` is the service's own port: a datagram from that port is
    /// another echo on the same port answering us (two echoes made to talk to
    /// each other by one spoofed datagram loop forever), so it is refused too.
    pub fn new(
        blocked_ports: &[u16],
        own_port: u16,
        limit: Option<RateLimit>,
        m: &ServiceMetrics,
    ) -> Guard {
        Guard {
            blocked_ports: blocked_ports
                .iter()
                .copied()
                .chain(Some(own_port).filter(|p| *p != 0))
                .collect(),
            limit: limit.map(|l| {
                (
                    l,
                    LruCache::new(NonZeroUsize::new(l.max_sources).unwrap_or(NonZeroUsize::MIN)),
                )
            }),
            blocked_port: m.drop_counter("blocked_source_port"),
            bad_source: m.drop_counter("bad_source_address"),
            rate_limited: m.drop_counter("rate_limited"),
        }
    }

    /// Checks one datagram's source, counting it if refused.
    pub fn check(&mut self, src: SocketAddr) -> Verdict {
        let v = self.verdict(src);
        match v {
            Verdict::Reply => {}
            Verdict::BlockedPort => {
                self.blocked_port.inc();
            }
            Verdict::BadSource => {
                self.bad_source.inc();
            }
            Verdict::RateLimited => {
                self.rate_limited.inc();
            }
        }
        v
    }

    fn verdict(&mut self, src: SocketAddr) -> Verdict {
        if src.port() == 0 || self.blocked_ports.contains(&src.port()) {
            return Verdict::BlockedPort;
        }
        if !is_plausible_source(src.ip()) {
            return Verdict::BadSource;
        }
        if let Some((limit, table)) = &mut self.limit {
            let now = Instant::now();
            let burst = f64::from(limit.burst.unwrap_or(limit.per_source));
            let b = table.get_or_insert_mut(src.ip(), || Bucket {
                tokens: burst,
                last: now,
            });
            let refill = now.duration_since(b.last).as_secs_f64() * f64::from(limit.per_source);
            b.tokens = (b.tokens + refill).min(burst);
            b.last = now;
            if b.tokens < 1.0 {
                return Verdict::RateLimited;
            }
            b.tokens -= 1.0;
        }
        Verdict::Reply
    }
}

/// A unicast sender can have this address; broadcast, multicast and
/// unspecified ones cannot send a datagram that expects an answer.
pub fn is_plausible_source(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => !(v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn bucket_allows_burst_then_refuses_and_isolates_sources() {
        let m = Arc::new(Metrics::new()).service("t");
        let limit = RateLimit {
            per_source: 1,
            burst: Some(3),
            max_sources: 8,
        };
        let mut g = Guard::new(&[19], 7007, Some(limit), &m);
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let got: Vec<_> = (0..5).map(|_| g.check(a)).collect();
        assert_eq!(got.iter().filter(|v| **v == Verdict::Reply).count(), 3);
        assert_eq!(g.check(b), Verdict::Reply);
        assert_eq!(
            g.check("127.0.0.1:19".parse().unwrap()),
            Verdict::BlockedPort
        );
        assert_eq!(
            g.check("224.0.0.1:5000".parse().unwrap()),
            Verdict::BadSource
        );
    }
}
