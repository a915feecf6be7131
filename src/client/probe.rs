//! `netservd probe URL`: one round trip against a running service, for
//! Docker/Kubernetes health checks. TCP sends one frame and expects it back
//! byte-identical; UDP does the same with a datagram. Prints one line; exit 0
//! healthy, 1 not (with the reason), always within `--timeout`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{FrameArgs, Proto, Target, parse_duration};
use crate::{EXIT_FAILURE, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// tcp://host:port or udp://host:port
    pub url: Target,
    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
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
            format!("healthy: {url} answered in {:.2?}", started.elapsed()),
        ),
        Ok(Err(e)) => (EXIT_FAILURE, format!("unhealthy: {url}: {e:#}")),
        Err(_) => (
            EXIT_FAILURE,
            format!("unhealthy: {url}: no answer within {:?}", a.timeout),
        ),
    }
}

async fn round_trip(a: &Args) -> Result<()> {
    let payload = format!("netservd-probe {}", std::process::id());
    match a.url.proto {
        Proto::Tcp => {
            let fmt = a.frame.format(1 << 20);
            let mut s = TcpStream::connect(a.url.addr).await.context("connect")?;
            let mut out = BytesMut::new();
            fmt.encode(payload.as_bytes(), &mut out);
            s.write_all(&out).await.context("send frame")?;
            let mut buf = BytesMut::new();
            loop {
                if let Some(frame) = fmt.decode(&mut buf)? {
                    if frame != payload.as_bytes() {
                        bail!("echo differs from what was sent");
                    }
                    return Ok(());
                }
                if s.read_buf(&mut buf).await.context("read echo")? == 0 {
                    bail!("connection closed before the echo arrived");
                }
            }
        }
        Proto::Udp => {
            let local: std::net::SocketAddr = if a.url.addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()?;
            let s = UdpSocket::bind(local).await?;
            s.connect(a.url.addr).await?;
            s.send(payload.as_bytes()).await.context("send datagram")?;
            let mut buf = vec![0u8; 2048];
            let n = s
                .recv(&mut buf)
                .await
                .context("receive echo (ICMP port unreachable?)")?;
            if &buf[..n] != payload.as_bytes() {
                bail!("echo differs from what was sent");
            }
            Ok(())
        }
    }
}
