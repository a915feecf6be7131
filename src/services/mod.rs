//! The kinds of service, all of one shape: `bind(&config) -> Bound`
//! (synchronous, fallible, done for every service before any serves), then
//! `Bound::run(ctx)` until `ctx.stop` asks it to finish. This file is the one
//! place that lists the kinds; adding one is a file beside this and an arm in
//! each `match` below.
//!
//! A `Bound` holds its socket behind an `Arc`, so a reload that changes only
//! settings (timeouts, limits, payload) hands the same socket to the new
//! service ([`Bound::with_spec`]) and no client sees the listener close.

pub mod broadcast;
#[cfg(target_os = "linux")]
mod kernel_drops;
pub mod mcast_join;
pub mod multicast;
pub mod per_source;
pub mod tcp_conn;
pub mod tcp_echo;
pub mod udp_echo;
pub mod udp_guard;
#[cfg(target_os = "linux")]
mod udp_mmsg;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BroadcastConfig, Config, MulticastConfig, TcpEchoConfig, UdpEchoConfig};
use crate::metrics::ServiceMetrics;
use crate::net::Applied;

/// One configured service, of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    TcpEcho(TcpEchoConfig),
    UdpEcho(UdpEchoConfig),
    Broadcast(BroadcastConfig),
    Multicast(MulticastConfig),
}

/// A service whose sockets are bound, ready to run.
#[derive(Clone)]
pub enum Bound {
    TcpEcho(tcp_echo::Bound),
    UdpEcho(udp_echo::Bound),
    Broadcast(broadcast::Bound),
    Multicast(multicast::Bound),
}

/// What a running service gets from the supervisor.
#[derive(Clone)]
pub struct ServiceCtx {
    /// Stop accepting or receiving (the service loop ends; a reload may
    /// restart it on the same connections after a failed rebind).
    pub stop: CancellationToken,
    /// Connections finish what was received, then close at a frame boundary.
    pub drain: CancellationToken,
    /// Hard stop: the drain deadline passed; reset whatever is still open.
    pub abort: CancellationToken,
    /// Connection tasks, so the supervisor can wait for them to drain.
    pub tracker: TaskTracker,
    pub metrics: ServiceMetrics,
    /// `name=proto://addr` of every running service, for announcements.
    pub directory: Directory,
}

/// The daemon's services as announcements describe them; the supervisor
/// rewrites it after every start and reload.
pub type Directory = Arc<RwLock<String>>;

impl Spec {
    /// Every service of a config, in file order, kind by kind.
    pub fn all(cfg: &Config) -> Vec<Spec> {
        let mut out: Vec<Spec> = Vec::new();
        out.extend(cfg.tcp_echo.iter().cloned().map(Spec::TcpEcho));
        out.extend(cfg.udp_echo.iter().cloned().map(Spec::UdpEcho));
        out.extend(cfg.broadcast.iter().cloned().map(Spec::Broadcast));
        out.extend(cfg.multicast.iter().cloned().map(Spec::Multicast));
        out
    }

    pub fn name(&self) -> &str {
        match self {
            Spec::TcpEcho(c) => &c.name,
            Spec::UdpEcho(c) => &c.name,
            Spec::Broadcast(c) => &c.name,
            Spec::Multicast(c) => &c.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Spec::TcpEcho(_) => "tcp_echo",
            Spec::UdpEcho(_) => "udp_echo",
            Spec::Broadcast(_) => "broadcast",
            Spec::Multicast(_) => "multicast",
        }
    }

    /// Creates and binds the service's sockets.
    pub fn bind(&self) -> Result<Bound> {
        Ok(match self {
            Spec::TcpEcho(c) => Bound::TcpEcho(tcp_echo::bind(c)?),
            Spec::UdpEcho(c) => Bound::UdpEcho(udp_echo::bind(c)?),
            Spec::Broadcast(c) => Bound::Broadcast(broadcast::bind(c)?),
            Spec::Multicast(c) => Bound::Multicast(multicast::bind(c)?),
        })
    }

    /// True when `other` can run on this spec's socket as it is: same kind,
    /// same address and the same socket options.
    pub fn same_socket(&self, other: &Spec) -> bool {
        match (self, other) {
            (Spec::TcpEcho(a), Spec::TcpEcho(b)) => a.listen == b.listen && a.socket == b.socket,
            (Spec::UdpEcho(a), Spec::UdpEcho(b)) => a.listen == b.listen && a.socket == b.socket,
            (Spec::Broadcast(a), Spec::Broadcast(b)) => {
                a.bind == b.bind && a.destination == b.destination && a.socket == b.socket
            }
            (Spec::Multicast(a), Spec::Multicast(b)) => {
                (a.group, a.port, &a.interface, a.source, &a.socket)
                    == (b.group, b.port, &b.interface, b.source, &b.socket)
            }
            _ => false,
        }
    }

    /// The address this spec binds, when it names one; reload uses it to
    /// close an old socket just before binding its replacement.
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        match self {
            Spec::TcpEcho(c) => Some(c.listen),
            Spec::UdpEcho(c) => Some(c.listen),
            Spec::Broadcast(c) => c.bind.filter(|a| a.port() != 0),
            Spec::Multicast(c) => Some(SocketAddr::new(c.group, c.port)),
        }
    }
}

impl Bound {
    /// The address the socket is bound to (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Bound::TcpEcho(b) => b.local_addr(),
            Bound::UdpEcho(b) => b.local_addr(),
            Bound::Broadcast(b) => b.local_addr(),
            Bound::Multicast(b) => b.local_addr(),
        }
    }

    /// How the service is reached, for `ready`, `{services}` and `/services`.
    pub fn url(&self) -> String {
        match self {
            Bound::TcpEcho(b) => format!("tcp://{}", b.local_addr()),
            Bound::UdpEcho(b) => format!("udp://{}", b.local_addr()),
            Bound::Broadcast(b) => format!("udp://{}", b.destination()),
            Bound::Multicast(b) => format!("udp://{}", b.group_addr()),
        }
    }

    /// Requested and effective socket options, read back from the kernel.
    pub fn report(&self) -> Vec<Applied> {
        match self {
            Bound::TcpEcho(b) => b.report(),
            Bound::UdpEcho(b) => b.report(),
            Bound::Broadcast(b) => b.report(),
            Bound::Multicast(b) => b.report(),
        }
    }

    /// Multicast groups joined, each as `group on interface [from source]`.
    pub fn groups(&self) -> Vec<String> {
        match self {
            Bound::Multicast(b) => b.groups(),
            _ => Vec::new(),
        }
    }

    /// The same socket under a new spec (see [`Spec::same_socket`]).
    pub fn with_spec(&self, spec: &Spec) -> Option<Bound> {
        Some(match (self, spec) {
            (Bound::TcpEcho(b), Spec::TcpEcho(c)) => Bound::TcpEcho(b.with_config(c)),
            (Bound::UdpEcho(b), Spec::UdpEcho(c)) => Bound::UdpEcho(b.with_config(c)),
            (Bound::Broadcast(b), Spec::Broadcast(c)) => Bound::Broadcast(b.with_config(c)),
            (Bound::Multicast(b), Spec::Multicast(c)) => Bound::Multicast(b.with_config(c)),
            _ => return None,
        })
    }

    /// Serves until `ctx.stop`, then finishes in-flight work.
    pub async fn run(self, ctx: ServiceCtx) -> Result<()> {
        match self {
            Bound::TcpEcho(b) => b.run(ctx).await,
            Bound::UdpEcho(b) => b.run(ctx).await,
            Bound::Broadcast(b) => b.run(ctx).await,
            Bound::Multicast(b) => b.run(ctx).await,
        }
    }
}
