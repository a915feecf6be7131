//! Per-kind rules: ranges and combinations of the keys of each service kind
//! (length field vs `max_frame_bytes`, timers, templates that must fit 512
//! bytes, multicast ranges and families).

use std::time::Duration;

use super::{Issues, MAX_FRAME_LIMIT, MAX_TIMER};
use crate::config::schema::*;
use crate::frame::FrameFormat;
use crate::template::{MAX_PAYLOAD_BYTES, Template};

pub(crate) fn tcp_echo(i: usize, s: &TcpEchoConfig, out: &mut Issues) {
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
        if s.frame_limit() > most {
            at(
                &["max_frame_bytes"],
                format!(
                    "max_frame_bytes = {} is more than a {}-byte length field can express (at most {most}); lower it or widen length_field_bytes",
                    s.frame_limit(),
                    s.length_field_bytes
                ),
                out,
            );
        }
    }
    if s.frame_limit() > MAX_FRAME_LIMIT {
        at(
            &["max_frame_bytes"],
            format!(
                "max_frame_bytes = {} is over the limit of {MAX_FRAME_LIMIT} (1 GiB); frames are buffered whole",
                s.frame_limit()
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
    if s.source_prefix_v6 > 128 {
        at(
            &["source_prefix_v6"],
            format!(
                "source_prefix_v6 = {} is over 128; IPv6 sources are counted by this many leading bits (default 64)",
                s.source_prefix_v6
            ),
            out,
        );
    }
    if s.max_connections_per_second_per_source == Some(0) {
        at(
            &["max_connections_per_second_per_source"],
            "max_connections_per_second_per_source = 0 would refuse every connection; remove the key for no limit".into(),
            out,
        );
    }
    for (key, d) in [
        ("idle_timeout", s.idle_timeout),
        ("frame_timeout", s.frame_timeout),
    ] {
        if d.is_zero() {
            at(&[key], format!("{key} must be more than 0s"), out);
        } else if d > MAX_TIMER {
            at(
                &[key],
                format!(
                    "{key} = {} is over the limit of 1 day",
                    humantime::format_duration(d)
                ),
                out,
            );
        }
    }
}

pub(crate) fn udp_echo(i: usize, s: &UdpEchoConfig, out: &mut Issues) {
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
    if let Some(r) = s.rate_limit
        && (r.per_source == 0 || r.burst == Some(0) || r.max_sources == 0)
    {
        at(
            &["rate_limit"],
            "rate_limit per_source, burst and max_sources must each be at least 1".into(),
            out,
        );
    }
}

pub(crate) fn broadcast(i: usize, s: &BroadcastConfig, services: &str, out: &mut Issues) {
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
    if let Some(bind) = s.bind
        && bind.is_ipv4() != s.destination.is_ipv4()
    {
        at(
            &["bind"],
            format!(
                "bind {bind} and destination {} are of different IP families",
                s.destination
            ),
            out,
        );
    }
    if s.interval < Duration::from_millis(10) || s.interval > MAX_TIMER {
        at(
            &["interval"],
            "interval must be between 10ms and 1 day".into(),
            out,
        );
    } else if s.jitter >= s.interval {
        at(
            &["jitter"],
            format!(
                "jitter ({}) must be less than interval ({})",
                humantime::format_duration(s.jitter),
                humantime::format_duration(s.interval)
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

pub(crate) fn multicast(i: usize, s: &MulticastConfig, out: &mut Issues) {
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
    if let Some(ifc) = &s.interface
        && let Some(msg) = interface_problem(s.group, ifc)
    {
        at(&["interface"], msg, out);
    }
}

/// What is wrong with a multicast `interface` for `group`'s family, if anything.
fn interface_problem(group: std::net::IpAddr, ifc: &str) -> Option<String> {
    let v4 = ifc.parse::<std::net::Ipv4Addr>().is_ok();
    let v6 = ifc.parse::<std::net::Ipv6Addr>().is_ok();
    if group.is_ipv4() && v6 {
        Some(format!(
            "interface {ifc:?} is an IPv6 address but group {group} is IPv4: an IPv4 group is joined on a local IPv4 address, e.g. \"127.0.0.1\""
        ))
    } else if group.is_ipv6() && v4 {
        Some(format!(
            "interface {ifc:?} is an IPv4 address but group {group} is IPv6: an IPv6 group is joined on an interface name or index, e.g. \"lo\" or \"1\""
        ))
    } else if group.is_ipv4() && !v4 {
        Some(format!(
            "interface {ifc:?} must be a local IPv4 address for an IPv4 group, e.g. \"127.0.0.1\""
        ))
    } else if group.is_ipv6() && ifc.is_empty() {
        Some("interface must be an interface name or index for an IPv6 group".into())
    } else {
        None
    }
}
