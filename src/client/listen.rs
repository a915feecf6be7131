//! `netservd listen URL`: prints every datagram arriving on a port, or on a
//! multicast group joined on `--interface` (optionally only from `--source`),
//! one line each: sender, size, and the payload as text (or hex when it is
//! not printable, or with `--hex`). This is how an operator watches an
//! announcer or a group. Stops after `--count` datagrams, at Ctrl-C, or at
//! `--timeout` (exit 1 if the count was not reached by then).
//!
//! A group is joined exactly as a `[[multicast]]` service joins it (same code,
//! [`crate::net::groups::GroupSocket`]), so what `listen` hears is what the daemon would.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;

use super::{Proto, Target, parse_duration};
use crate::config::{MulticastConfig, SocketOptions};
use crate::net::groups::GroupSocket;
use crate::net::{self, Role};
use crate::{EXIT_FAILURE, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// udp://ADDRESS:PORT: a multicast group, a broadcast address, or a local address (0.0.0.0 = all).
    pub url: Target,
    /// Interface to join the group on: IPv4 local address, IPv6 interface name or index.
    #[arg(long)]
    pub interface: Option<String>,
    /// Source-specific join: only datagrams from this sender.
    #[arg(long)]
    pub source: Option<std::net::IpAddr>,
    /// Stop after this many datagrams.
    #[arg(long)]
    pub count: Option<u64>,
    /// Give up after this long (exit 1 unless --count datagrams, or any without --count, arrived).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Print payloads as hex.
    #[arg(long)]
    pub hex: bool,
}

pub async fn run(a: Args) -> i32 {
    match listen(&a).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netservd listen {}: {e:#}", a.url.addr);
            EXIT_FAILURE
        }
    }
}

async fn listen(a: &Args) -> Result<i32> {
    if a.url.proto != Proto::Udp {
        bail!("listen takes udp://ADDRESS:PORT (datagrams); for TCP use `netservd send tcp://...`");
    }
    let addr = a.url.addr;
    // A group's membership lives (and is left on drop) with its `GroupSocket`.
    let heard = if addr.ip().is_multicast() {
        let cfg = MulticastConfig {
            name: "listen".into(),
            group: addr.ip(),
            port: addr.port(),
            interface: a.interface.clone(),
            source: a.source,
            reply: Default::default(),
            compat: Default::default(),
            allow: Vec::new(),
            deny: Vec::new(),
            faults: None,
            journal: 0,
            socket: SocketOptions::default(),
        };
        Heard::Group(GroupSocket::open(&cfg)?)
    } else {
        if a.interface.is_some() || a.source.is_some() {
            bail!(
                "--interface and --source apply to multicast groups only; {} is not one",
                addr.ip()
            );
        }
        // Shares the port with the daemon or other listeners (SO_REUSEADDR).
        let std = net::udp_socket(addr, &SocketOptions::default(), Role::UdpBroadcast)?;
        Heard::Port(UdpSocket::from_std(std).context("register UDP socket with tokio")?)
    };
    let socket: &UdpSocket = match &heard {
        Heard::Group(g) => g.socket(),
        Heard::Port(p) => p,
    };
    eprintln!("listening on udp://{addr} (local {})", socket.local_addr()?);
    let deadline = a.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut got = 0u64;
    let mut buf = vec![0u8; crate::MAX_UDP_PAYLOAD + 1];
    loop {
        if a.count.is_some_and(|c| got >= c) {
            return Ok(EXIT_OK);
        }
        let recv = async {
            match &heard {
                // A group's own receive skips datagrams to other groups on the port (Windows).
                Heard::Group(g) => loop {
                    let d = g.recv(&mut buf).await?;
                    if !d.other_group {
                        break Ok((d.len, d.src));
                    }
                },
                Heard::Port(p) => p.recv_from(&mut buf).await,
            }
        };
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let (n, src) = tokio::select! {
            r = recv => r.context("receive")?,
            _ = tokio::signal::ctrl_c() => return Ok(EXIT_OK),
            _ = timeout => {
                let want = a.count.unwrap_or(1);
                eprintln!("timeout: {got} datagram(s) received, wanted {want}");
                return Ok(if got >= want { EXIT_OK } else { EXIT_FAILURE });
            }
        };
        got += 1;
        if print(&line(src, &buf[..n], a.hex)).is_err() {
            return Ok(EXIT_OK); // the reader went away (`| head`): stop quietly
        }
    }
}

/// What `listen` receives on.
enum Heard {
    Group(GroupSocket),
    Port(UdpSocket),
}

/// One line on stdout; an error (a closed pipe) tells the caller to stop
/// instead of panicking as `println!` would.
pub fn print(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// `SENDER SIZE bytes: PAYLOAD`, as text when printable, else hex.
pub fn line(src: SocketAddr, data: &[u8], hex: bool) -> String {
    let text = std::str::from_utf8(data)
        .ok()
        .filter(|s| !hex && s.chars().all(|c| !c.is_control() || c == '\t'));
    match text {
        Some(t) => format!("{src} {} bytes: {t}", data.len()),
        None => format!(
            "{src} {} bytes: hex {}",
            data.len(),
            data.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}
