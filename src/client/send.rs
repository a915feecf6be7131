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
//! MESSAGE `-`, or no MESSAGE while stdin is not a terminal, sends what stdin
//! holds (read to its end once, then sent `--count` times), so payloads can
//! be piped in as with socat; an empty stdin (`</dev/null`, cron) keeps the
//! numbered default, an explicit `-` sends it empty.
//!
//! Exit 0 when everything was sent (and, with `--expect-reply`, a reply came),
//! 1 otherwise, with the reason on stderr.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::listen::{line, print};
use super::{
    FrameArgs, Proto, Target, explain_bad_reply, explain_close, parse_duration, udp_socket,
};
use crate::{EXIT_FAILURE, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// udp://HOST:PORT (unicast, broadcast or multicast) or tcp://HOST:PORT (one frame per message).
    pub url: Target,
    /// The payload; `-` reads it from stdin, as does no MESSAGE when stdin is not a terminal.
    /// Default "netservd send N" with N the message number.
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
    let result = match payload(&a) {
        Err(e) => Err(e),
        Ok(p) => match a.url.proto {
            Proto::Udp => udp(&a, p.as_deref()).await,
            Proto::Tcp => tcp(&a, p.as_deref()).await,
        },
    };
    match result {
        Ok(replies) if replies == 0 && a.expect_reply => {
            eprintln!(
                "netservd send {}: no reply within {}",
                a.url.addr,
                humantime::format_duration(a.wait)
            );
            EXIT_FAILURE
        }
        Ok(_) => EXIT_OK,
        Err(e) => {
            eprintln!("netservd send {}: {e:#}", a.url.addr);
            EXIT_FAILURE
        }
    }
}

/// The fixed payload, if there is one: MESSAGE, or stdin (see the file
/// comment); `None` means the numbered default. Refuses what no datagram or
/// frame could carry before anything is sent.
fn payload(a: &Args) -> Result<Option<Vec<u8>>> {
    let stdin = std::io::stdin();
    let p = match a.message.as_deref() {
        Some("-") => Some(read_stdin(stdin)?),
        Some(m) => Some(m.as_bytes().to_vec()),
        None if !stdin.is_terminal() => Some(read_stdin(stdin)?).filter(|p| !p.is_empty()),
        None => None,
    };
    let len = p.as_ref().map_or(0, Vec::len);
    match a.url.proto {
        Proto::Tcp => a.frame.check_fits("the message", len)?,
        Proto::Udp if len > crate::MAX_UDP_PAYLOAD => bail!(
            "the message is {len} bytes, more than a UDP datagram carries (at most {} bytes)",
            crate::MAX_UDP_PAYLOAD
        ),
        Proto::Udp => {}
    }
    Ok(p)
}

/// All of stdin, up to one byte more than the largest frame `send` accepts.
fn read_stdin(stdin: std::io::Stdin) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut buf)
        .context("read the message from stdin")?;
    if buf.len() > MAX_MESSAGE {
        bail!("stdin holds more than {MAX_MESSAGE} bytes; send at most that in one message");
    }
    Ok(buf)
}

/// Largest message `send` takes (and largest reply frame it reads back).
const MAX_MESSAGE: usize = crate::MAX_UDP_PAYLOAD * 16;

fn message(fixed: Option<&[u8]>, i: u64) -> Vec<u8> {
    fixed.map_or_else(|| format!("netservd send {i}").into_bytes(), <[u8]>::to_vec)
}

async fn udp(a: &Args, fixed: Option<&[u8]>) -> Result<u64> {
    let dest = a.url.addr;
    let s = udp_socket(dest, a.interface.as_deref(), a.ttl)?;
    let mut replies = 0;
    let mut buf = vec![0u8; crate::MAX_UDP_PAYLOAD + 1];
    for i in 0..a.count {
        let msg = message(fixed, i);
        s.send_to(&msg, dest).await.with_context(|| {
            format!("send to {dest} (broadcast and group sends need a route; see --interface)")
        })?;
        let pause = if i + 1 == a.count { a.wait } else { a.interval };
        let until = Instant::now() + pause;
        loop {
            // With no pause (`--interval 0s`) only take what is already there:
            // a timer, even an expired one, costs a millisecond tick per send.
            let r = if pause.is_zero() {
                match s.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    r => r,
                }
            } else {
                match tokio::time::timeout_at(until, s.recv_from(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            match r {
                Ok((n, src)) => {
                    replies += 1;
                    print(&format!("reply {}", line(src, &buf[..n], a.hex)))
                        .context("write to stdout")?;
                }
                // ICMP port unreachable from an earlier unicast send: nobody listens there.
                Err(e) => eprintln!("receive: {e}"),
            }
        }
    }
    Ok(replies)
}

async fn tcp(a: &Args, fixed: Option<&[u8]>) -> Result<u64> {
    if a.interface.is_some() {
        bail!("--interface applies to udp:// destinations only");
    }
    // The numbered default is at most 32 bytes; a 1-byte field carries 255.
    let fmt = a.frame.format(MAX_MESSAGE as u64);
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
        fmt.encode(&message(fixed, i), &mut out);
        s.write_all(&out).await.context("send frame")?;
        let until = Instant::now() + if i + 1 == a.count { a.wait } else { a.interval };
        loop {
            loop {
                // Keep the reply's first bytes for the explanation: decode consumes them.
                let head = inbuf[..inbuf.len().min(64)].to_vec();
                match fmt.decode(&mut inbuf) {
                    Ok(Some(frame)) => {
                        replies += 1;
                        print(&format!("reply {}", line(a.url.addr, &frame, a.hex)))
                            .context("write to stdout")?;
                    }
                    Ok(None) => break,
                    Err(e) => bail!("{}", explain_bad_reply(&e, &head, &a.frame)),
                }
            }
            match tokio::time::timeout_at(until, s.read_buf(&mut inbuf)).await {
                Err(_) => break,
                Ok(Ok(0)) if replies <= i => bail!("{}", explain_close(&a.frame)),
                Ok(Ok(0)) => return Ok(replies),
                Ok(r) => {
                    r.context("read reply")?;
                }
            }
        }
    }
    Ok(replies)
}
