//! `netservd probe URL`: one round trip against a running service, for
//! Docker/Kubernetes health checks. TCP sends one frame and expects it back
//! byte-identical; UDP does the same with a datagram. Prints one line; exit 0
//! healthy, 1 not (with the reason), always within `--timeout`.
//!
//! A reply that is not a frame of our format is explained (HTTP, TLS, text,
//! or a length field that differs), as is a service that closes the
//! connection right after our frame. `udp://GROUP:PORT` sends to the group
//! (from `--interface`) and takes the echo from whichever member answers,
//! which is how a `[[multicast]]` listener with `reply = "echo"` replies.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{
    FrameArgs, Proto, Target, explain_bad_reply, explain_close, parse_duration, udp_socket,
};
use crate::{EXIT_FAILURE, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// tcp://host:port or udp://host:port
    pub url: Target,
    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// For a multicast group: the interface to send from (IPv4 local address, IPv6 name or index).
    #[arg(long)]
    pub interface: Option<String>,
    #[command(flatten)]
    pub frame: FrameArgs,
}

pub async fn run(a: Args) -> i32 {
    let (code, line) = check(&a).await;
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
    code
}

async fn check(a: &Args) -> (i32, String) {
    let started = Instant::now();
    let proto = if a.url.proto == Proto::Tcp {
        "tcp"
    } else {
        "udp"
    };
    let url = format!("{proto}://{}", a.url.addr);
    match tokio::time::timeout(a.timeout, round_trip(a)).await {
        Ok(Ok(())) => (
            EXIT_OK,
            format!(
                "healthy: {url} answered in {}",
                crate::logging::ms(started.elapsed())
            ),
        ),
        Ok(Err(e)) => (EXIT_FAILURE, format!("unhealthy: {url}: {e:#}")),
        Err(_) if a.url.addr.ip().is_multicast() => (
            EXIT_FAILURE,
            format!(
                "unhealthy: {url}: no answer within {}; a [[multicast]] listener answers only with \
                 reply = \"echo\", from the interface it joined on: give that with --interface, or \
                 try `netservd send {url} --expect-reply --interface ADDRESS`",
                humantime::format_duration(a.timeout)
            ),
        ),
        Err(_) => (
            EXIT_FAILURE,
            format!(
                "unhealthy: {url}: no answer within {}",
                humantime::format_duration(a.timeout)
            ),
        ),
    }
}

async fn round_trip(a: &Args) -> Result<()> {
    let payload = format!("netservd-probe {}", std::process::id());
    match a.url.proto {
        Proto::Tcp => tcp(a, payload.as_bytes()).await,
        Proto::Udp if a.url.addr.ip().is_multicast() => group(a, payload.as_bytes()).await,
        Proto::Udp => udp(a, payload.as_bytes()).await,
    }
}

async fn tcp(a: &Args, payload: &[u8]) -> Result<()> {
    if a.interface.is_some() {
        bail!("--interface applies to udp:// multicast groups only");
    }
    let fmt = a.frame.format(1 << 20);
    let mut s = TcpStream::connect(a.url.addr).await.context("connect")?;
    let mut out = BytesMut::new();
    fmt.encode(payload, &mut out);
    s.write_all(&out).await.context("send frame")?;
    let mut buf = BytesMut::new();
    loop {
        let head = buf[..buf.len().min(64)].to_vec();
        match fmt.decode(&mut buf) {
            Ok(Some(frame)) if frame != payload => bail!("echo differs from what was sent"),
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => bail!("{}", explain_bad_reply(&e, &head, &a.frame)),
        }
        if s.read_buf(&mut buf).await.context("read echo")? == 0 {
            if buf.is_empty() {
                bail!("{}", explain_close(&a.frame));
            }
            bail!(
                "connection closed after {} bytes of an incomplete reply; {}",
                buf.len(),
                explain_close(&a.frame)
            );
        }
    }
}

async fn udp(a: &Args, payload: &[u8]) -> Result<()> {
    if a.interface.is_some() {
        bail!("--interface applies to udp:// multicast groups only");
    }
    let local: std::net::SocketAddr = if a.url.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let s = UdpSocket::bind(local).await?;
    s.connect(a.url.addr).await?;
    s.send(payload).await.context("send datagram")?;
    let mut buf = vec![0u8; 2048];
    let n = s
        .recv(&mut buf)
        .await
        .context("receive echo (ICMP port unreachable?)")?;
    if &buf[..n] != payload {
        bail!("echo differs from what was sent");
    }
    Ok(())
}

/// A group has no single peer to `connect` to: the echo comes from a
/// member's unicast address, so take the first datagram that matches.
async fn group(a: &Args, payload: &[u8]) -> Result<()> {
    let s = udp_socket(a.url.addr, a.interface.as_deref(), None)?;
    s.send_to(payload, a.url.addr)
        .await
        .context("send to the group (it needs a route; see --interface)")?;
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, _) = s.recv_from(&mut buf).await.context("receive echo")?;
        if &buf[..n] == payload {
            return Ok(());
        }
    }
}
