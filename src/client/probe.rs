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
    let started = Instant::now();
    match tokio::time::timeout(a.timeout, round_trip(&a)).await {
        Ok(Ok(())) => {
            println!(
                "healthy: {:?} {} answered in {:.2?}",
                a.url.proto,
                a.url.addr,
                started.elapsed()
            );
            EXIT_OK
        }
        Ok(Err(e)) => {
            println!("unhealthy: {:?} {}: {e:#}", a.url.proto, a.url.addr);
            EXIT_FAILURE
        }
        Err(_) => {
            println!(
                "unhealthy: {:?} {}: no answer within {:?}",
                a.url.proto, a.url.addr, a.timeout
            );
            EXIT_FAILURE
        }
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
