//! `netservd send URL [MESSAGE]`: sends MESSAGE (`--count` times, every
//! `--interval`) and prints every reply until `--wait` after the last send.
//!
//! - `udp://` to a unicast, broadcast or multicast address: SO_BROADCAST is on;
//!   for a group, `--interface` picks the outgoing interface (IPv4 local
//!   address, IPv6 name or index) and `--ttl` the multicast TTL/hop limit
//!   (elsewhere `--ttl` is the unicast TTL). Replies are datagrams to our port.
//! - `tcp://`: each message is one frame (`--length-field-bytes`,
//!   `--byte-order`); replies are the frames that come back.
//!
//! Exit 0 when everything was sent (and, with `--expect-reply`, a reply came),
//! 1 otherwise, with the reason on stderr.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::listen::line;
use super::{FrameArgs, Proto, Target, parse_duration};
use crate::services::mcast_join::{if_index, unspecified};
use crate::{EXIT_FAILURE, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// udp://HOST:PORT (unicast, broadcast or multicast) or tcp://HOST:PORT (one frame per message).
    pub url: Target,
    /// The payload; default "netservd send N" with N the message number.
    pub message: Option<String>,
    /// Outgoing interface: IPv4 local address (also the source address), IPv6 interface name or index.
    #[arg(long)]
    pub interface: Option<String>,
    /// TTL / hop limit (the multicast one for a group).
    #[arg(long)]
    pub ttl: Option<u32>,
    /// Messages to send.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Time between messages.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Keep printing replies this long after the last send.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub wait: Duration,
    /// Exit 1 unless at least one reply arrived.
    #[arg(long)]
    pub expect_reply: bool,
    /// Print replies as hex.
    #[arg(long)]
    pub hex: bool,
    #[command(flatten)]
    pub frame: FrameArgs,
}

pub async fn run(a: Args) -> i32 {
    let result = match a.url.proto {
        Proto::Udp => udp(&a).await,
        Proto::Tcp => tcp(&a).await,
    };
    match result {
        Ok(replies) if replies == 0 && a.expect_reply => {
            eprintln!("netservd send {}: no reply within {:?}", a.url.addr, a.wait);
            EXIT_FAILURE
        }
        Ok(_) => EXIT_OK,
        Err(e) => {
            eprintln!("netservd send {}: {e:#}", a.url.addr);
            EXIT_FAILURE
        }
    }
}

fn message(a: &Args, i: u64) -> Vec<u8> {
    a.message
        .clone()
        .unwrap_or_else(|| format!("netservd send {i}"))
        .into_bytes()
}

/// A UDP socket for `dest`: broadcast allowed, interface and TTL applied.
fn udp_socket(a: &Args, dest: SocketAddr) -> Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(dest), Type::DGRAM, Some(Protocol::UDP))
        .context("create UDP socket")?;
    sock.set_broadcast(true).context("set SO_BROADCAST")?;
    let mut local = SocketAddr::new(unspecified(dest.ip()), 0);
    let group = dest.ip().is_multicast();
    match (dest.ip(), a.interface.as_deref()) {
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
    if let Some(ttl) = a.ttl {
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

async fn udp(a: &Args) -> Result<u64> {
    let dest = a.url.addr;
    let s = udp_socket(a, dest)?;
    let mut replies = 0;
    let mut buf = vec![0u8; crate::MAX_UDP_PAYLOAD + 1];
    for i in 0..a.count {
        let msg = message(a, i);
        s.send_to(&msg, dest).await.with_context(|| {
            format!("send to {dest} (broadcast and group sends need a route; see --interface)")
        })?;
        let until = Instant::now() + if i + 1 == a.count { a.wait } else { a.interval };
        while let Ok(r) = tokio::time::timeout_at(until, s.recv_from(&mut buf)).await {
            match r {
                Ok((n, src)) => {
                    replies += 1;
                    println!("reply {}", line(src, &buf[..n], a.hex));
                }
                // ICMP port unreachable from an earlier unicast send: nobody listens there.
                Err(e) => eprintln!("receive: {e}"),
            }
        }
    }
    Ok(replies)
}

async fn tcp(a: &Args) -> Result<u64> {
    if a.interface.is_some() {
        bail!("--interface applies to udp:// destinations only");
    }
    let fmt = a.frame.format(crate::MAX_UDP_PAYLOAD as u64 * 16);
    let mut s = tokio::time::timeout(
        a.wait.max(Duration::from_secs(1)),
        TcpStream::connect(a.url.addr),
    )
    .await
    .context("connect timed out")?
    .context("connect")?;
    if let Some(ttl) = a.ttl {
        s.set_ttl(ttl).context("set --ttl")?;
    }
    let (mut replies, mut inbuf, mut out) = (0u64, BytesMut::new(), BytesMut::new());
    for i in 0..a.count {
        out.clear();
        fmt.encode(&message(a, i), &mut out);
        s.write_all(&out).await.context("send frame")?;
        let until = Instant::now() + if i + 1 == a.count { a.wait } else { a.interval };
        loop {
            while let Some(frame) = fmt.decode(&mut inbuf)? {
                replies += 1;
                println!("reply {}", line(a.url.addr, &frame, a.hex));
            }
            match tokio::time::timeout_at(until, s.read_buf(&mut inbuf)).await {
                Err(_) => break,
                Ok(Ok(0)) => return Ok(replies),
                Ok(r) => {
                    r.context("read reply")?;
                }
            }
        }
    }
    Ok(replies)
}
