//! The operator's tools, built into the same binary: `probe` (health check),
//! `send` and `listen` (poke and watch unicast, broadcast and multicast),
//! `bench` (load generator) and `reload` (signal the daemon running a config). They share URL parsing and the frame format.

pub mod bench;
mod bench_msg;
mod bench_report;
mod bench_tcp;
mod bench_udp;
pub mod fault;
pub mod journal;
pub mod listen;
pub mod probe;
pub mod reload;
pub mod send;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use clap::Args;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::frame::{ByteOrder, FrameError, FrameFormat};
use crate::net::groups::{if_index, unspecified};

/// Transport of a target URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// `tcp://host:port` or `udp://host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub proto: Proto,
    pub addr: SocketAddr,
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Target> {
        let (proto, rest) = match s.split_once("://") {
            Some(("tcp", rest)) => (Proto::Tcp, rest),
            Some(("udp", rest)) => (Proto::Udp, rest),
            _ => bail!("{s:?}: expected tcp://host:port or udp://host:port"),
        };
        let addr = crate::config::parse_socket_addr(rest.trim_end_matches('/'))
            .map_err(anyhow::Error::msg)?;
        Ok(Target { proto, addr })
    }
}

/// How frames are delimited on the TCP service being talked to.
#[derive(Debug, Clone, Copy, Args)]
pub struct FrameArgs {
    /// Length field width of the service: 1, 2, 4 or 8.
    #[arg(long, default_value_t = 4, value_parser = parse_width)]
    pub length_field_bytes: u8,
    /// Byte order of the length field.
    #[arg(long, default_value = "big", value_parser = parse_order)]
    pub byte_order: ByteOrder,
}

fn parse_width(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(w @ (1 | 2 | 4 | 8)) => Ok(w),
        _ => Err("expected 1, 2, 4 or 8".into()),
    }
}

fn parse_order(s: &str) -> Result<ByteOrder, String> {
    match s {
        "big" => Ok(ByteOrder::Big),
        "little" => Ok(ByteOrder::Little),
        _ => Err("expected big or little".into()),
    }
}

impl FrameArgs {
    /// `--length-field-bytes N --byte-order X`, as a user would type it.
    pub fn flags(&self) -> String {
        format!(
            "--length-field-bytes {} --byte-order {}",
            self.length_field_bytes, self.byte_order
        )
    }

    /// Refuses a payload the length field cannot express (encoding it would be a bug).
    pub fn check_fits(&self, what: &str, len: usize) -> Result<()> {
        let most = FrameFormat::max_expressible(self.length_field_bytes);
        if len as u64 > most {
            bail!(
                "{what} is {len} bytes, more than a {}-byte length field can express (at most {most} bytes); \
                 send a shorter one or use a wider --length-field-bytes (1, 2, 4 or 8) that matches the service",
                self.length_field_bytes
            );
        }
        Ok(())
    }

    pub fn format(&self, max_frame: u64) -> FrameFormat {
        FrameFormat {
            width: self.length_field_bytes,
            order: self.byte_order,
            max_frame: max_frame.min(FrameFormat::max_expressible(self.length_field_bytes)),
        }
    }
}

/// `humantime` durations as clap values.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}

/// Why a TCP reply could not be read as frames of the format we sent, in
/// words: what the bytes look like (HTTP, TLS, text), or that the length
/// field probably differs. `got` is what arrived, from its first byte.
pub fn explain_bad_reply(e: &FrameError, got: &[u8], frame: &FrameArgs) -> String {
    let FrameError::TooLarge { declared, max } = e;
    let looks = if got.starts_with(b"HTTP/") {
        "the reply looks like HTTP (it starts with \"HTTP/\"), so this port is not a framed TCP echo \
         (is it the admin endpoint?)"
            .to_string()
    } else if got.len() >= 2 && (0x14..=0x17).contains(&got[0]) && got[1] == 3 {
        "the reply looks like TLS (a TLS record header), so this port is not a framed TCP echo"
            .to_string()
    } else if let Some(text) = as_text(got) {
        format!("the reply looks like text ({text:?}), so this port is not a framed TCP echo")
    } else {
        format!(
            "the service's length field probably differs from {}; compare with its \
             length_field_bytes and byte_order (`netservd check`)",
            frame.flags()
        )
    };
    format!("reply declares a frame of {declared} bytes, more than {max}: {looks}")
}

/// The start of `got` as text when it is all printable ASCII (or whitespace).
fn as_text(got: &[u8]) -> Option<String> {
    let head = &got[..got.len().min(40)];
    let printable = head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    (printable && !head.is_empty()).then(|| String::from_utf8_lossy(head).into_owned())
}

/// What to say when a TCP service closed the connection after our frame
/// without answering: the framing mismatch that makes a framed echo do that.
pub fn explain_close(frame: &FrameArgs) -> String {
    format!(
        "the service closed the connection right after our frame without echoing it: its framing \
         probably differs from {} (a larger declared length than its max_frame_bytes closes the \
         connection); compare with its length_field_bytes and byte_order (`netservd check`)",
        frame.flags()
    )
}

/// A UDP socket for `dest`: broadcast allowed, `interface` (IPv4 local
/// address, also the source address; IPv6 name or index) and `ttl` applied
/// (the multicast TTL / hop limit for a group, the unicast one otherwise).
pub fn udp_socket(
    dest: SocketAddr,
    interface: Option<&str>,
    ttl: Option<u32>,
) -> Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(dest), Type::DGRAM, Some(Protocol::UDP))
        .context("create UDP socket")?;
    sock.set_broadcast(true).context("set SO_BROADCAST")?;
    let mut local = SocketAddr::new(unspecified(dest.ip()), 0);
    let group = dest.ip().is_multicast();
    match (dest.ip(), interface) {
        (IpAddr::V4(_), Some(i)) => {
            let ip: Ipv4Addr = i.parse().with_context(|| {
                format!("--interface {i:?}: give a local IPv4 address for an IPv4 destination")
            })?;
            if group {
                sock.set_multicast_if_v4(&ip)
                    .with_context(|| format!("use {ip} as the multicast interface"))?;
            }
            local.set_ip(IpAddr::V4(ip));
        }
        (IpAddr::V6(_), Some(i)) => {
            let index = if_index(i)?;
            if group {
                sock.set_multicast_if_v6(index)
                    .with_context(|| format!("use interface {i} for multicast"))?;
            }
        }
        (_, None) => {}
    }
    if let Some(ttl) = ttl {
        let r = match (dest.is_ipv4(), group) {
            (true, true) => sock.set_multicast_ttl_v4(ttl),
            (true, false) => sock.set_ttl_v4(ttl),
            (false, true) => sock.set_multicast_hops_v6(ttl),
            (false, false) => sock.set_unicast_hops_v6(ttl),
        };
        r.with_context(|| format!("set --ttl {ttl}"))?;
    }
    crate::net::bind(&sock, local, "udp")?;
    crate::net::make_nonblocking(&sock)?;
    UdpSocket::from_std(sock.into()).context("register UDP socket with tokio")
}
