//! The kinds of service, all of one shape: `bind(&config) -> Bound`
//! (synchronous, fallible, done for every service before any serves), then
//! `Bound::run(ctx)` until `ctx.stop` asks it to finish. This file is the one
//! place that lists the kinds; adding one is a file beside this and an arm in
//! each `match` below.
//!
//! A `Bound` holds its socket behind an `Arc`, so a reload that changes only
//! settings (timeouts, limits, payload, options a live socket takes) hands
//! the same socket to the new service ([`Bound::with_spec`]) and no client
//! sees the listener close. Which changes need a new socket is decided in one
//! place, [`crate::net::change`], through [`Spec::rebind_reason`].

pub mod broadcast;
#[cfg(target_os = "linux")]
mod kernel_drops;
pub mod mcast_join;
pub mod multicast;
pub mod per_source;
pub mod tcp_conn;
pub mod tcp_echo;
mod tcp_live;
pub mod udp_echo;
pub mod udp_guard;
#[cfg(target_os = "linux")]
mod udp_mmsg;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use std::sync::OnceLock;

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BroadcastConfig, Config, MulticastConfig, TcpEchoConfig, UdpEchoConfig};
use crate::metrics::ServiceMetrics;
use crate::net::{Applied, Role, change};

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

/// Why the supervisor stops a service loop; the loop acts on it (a broadcast
/// says goodbye only when it really goes away, a TCP listener that will close
/// first accepts what waits in its backlog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM/SIGINT: the daemon exits.
    Shutdown,
    /// A reload removed the service.
    Removed,
    /// A reload gave the service a new socket; the old one closes.
    Replaced,
    /// A reload keeps the socket and starts a new loop on it with new settings.
    HandedOver,
    /// A reload needs our socket's address for a new one (may be rolled back).
    Paused,
}

/// The stop signal of a service loop, with the reason it was given.
/// Derefs to the token, so loops `select!` on `ctx.stop.cancelled()`.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl Stop {
    /// Stops the loop; the first reason given is the one it sees.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// The reason, once stopped; `None` for a stop from a bare token (tests).
    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }
}

impl std::ops::Deref for Stop {
    type Target = CancellationToken;
    fn deref(&self) -> &CancellationToken {
        &self.token
    }
}

impl From<CancellationToken> for Stop {
    fn from(token: CancellationToken) -> Stop {
        Stop {
            token,
            reason: Arc::default(),
        }
    }
}

/// What a running service gets from the supervisor.
#[derive(Clone)]
pub struct ServiceCtx {
    /// Stop accepting or receiving (the service loop ends; a reload may
    /// restart it on the same connections with new settings or after a
    /// failed rebind).
    pub stop: Stop,
    /// Connections finish what was received, then close at a frame boundary.
    /// A child of `abort` in the supervisor, so an abort always drains too.
    pub drain: CancellationToken,
    /// The deadline (drain or shutdown) passed: a connection at a frame
    /// boundary closes gracefully now, one in the middle of a frame is reset.
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

    /// Fails when another program holds the address this spec would join
    /// with the daemon's SO_REUSEPORT default (see [`crate::net::tcp_address_free`]).
    pub fn address_free(&self) -> Result<()> {
        match self {
            Spec::TcpEcho(c) => crate::net::tcp_address_free(c.listen, &c.socket),
            _ => Ok(()),
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

    /// Why `other` cannot run on this spec's socket (the key that needs a new
    /// one), or `None` when it can: same kind and address, and every socket
    /// option that changed is one a live socket takes ([`change::classify`]).
    pub fn rebind_reason(&self, other: &Spec) -> Option<&'static str> {
        let (old, new, role) = match (self, other) {
            (Spec::TcpEcho(a), Spec::TcpEcho(b)) => {
                if a.listen != b.listen {
                    return Some("listen");
                }
                (&a.socket, &b.socket, Role::TcpListener)
            }
            (Spec::UdpEcho(a), Spec::UdpEcho(b)) => {
                if a.listen != b.listen {
                    return Some("listen");
                }
                (&a.socket, &b.socket, Role::Udp)
            }
            (Spec::Broadcast(a), Spec::Broadcast(b)) => {
                if a.bind != b.bind {
                    return Some("bind");
                }
                if a.destination != b.destination {
                    return Some("destination");
                }
                (&a.socket, &b.socket, Role::UdpBroadcast)
            }
            (Spec::Multicast(a), Spec::Multicast(b)) => {
                if (a.group, a.port, &a.interface, a.source)
                    != (b.group, b.port, &b.interface, b.source)
                {
                    return Some("group");
                }
                (&a.socket, &b.socket, Role::UdpMulticast)
            }
            _ => return Some("kind"),
        };
        change::classify(old, new, role).rebind
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

    /// Sockets the service receives on: a UDP echo's set (one per worker
    /// on Linux), one for the others.
    pub fn sockets(&self) -> usize {
        match self {
            Bound::UdpEcho(b) => b.sockets(),
            _ => 1,
        }
    }

    /// The listening socket of a TCP service (reuseport steering during a rebind).
    pub fn tcp_listener(&self) -> Option<socket2::SockRef<'_>> {
        match self {
            Bound::TcpEcho(b) => Some(b.sock()),
            _ => None,
        }
    }

    /// Multicast groups joined, each as `group on interface [from source]`.
    pub fn groups(&self) -> Vec<String> {
        match self {
            Bound::Multicast(b) => b.groups(),
            _ => Vec::new(),
        }
    }

    /// The same socket under a new spec (see [`Spec::rebind_reason`]). Has
    /// no effect on what runs until [`Bound::reconfigure`] and `run`.
    pub fn with_spec(&self, spec: &Spec) -> Option<Bound> {
        Some(match (self, spec) {
            (Bound::TcpEcho(b), Spec::TcpEcho(c)) => Bound::TcpEcho(b.with_config(c)),
            (Bound::UdpEcho(b), Spec::UdpEcho(c)) => Bound::UdpEcho(b.with_config(c)),
            (Bound::Broadcast(b), Spec::Broadcast(c)) => Bound::Broadcast(b.with_config(c)),
            (Bound::Multicast(b), Spec::Multicast(c)) => Bound::Multicast(b.with_config(c)),
            _ => return None,
        })
    }

    /// Applies to the live socket the options of this (handed over) spec that
    /// changed from `old` and need no new socket; accepted TCP connections
    /// inherit them from the next accept on.
    pub fn reconfigure(&self, old: &Spec) -> Result<()> {
        let (sock, new_o, old_o, role) = match (self, old) {
            (Bound::TcpEcho(b), Spec::TcpEcho(o)) => {
                (b.sock(), &b.cfg().socket, &o.socket, Role::TcpListener)
            }
            (Bound::UdpEcho(b), Spec::UdpEcho(o)) => {
                // A socket set: every socket takes the change.
                let keys = change::classify(&o.socket, &b.cfg().socket, Role::Udp).in_place;
                for sock in b.socks() {
                    change::apply_in_place(
                        sock,
                        b.local_addr(),
                        &b.cfg().socket,
                        Role::Udp,
                        &keys,
                    )?;
                }
                return Ok(());
            }
            (Bound::Broadcast(b), Spec::Broadcast(o)) => {
                (b.sock(), &b.cfg().socket, &o.socket, Role::UdpBroadcast)
            }
            (Bound::Multicast(b), Spec::Multicast(o)) => {
                (b.sock(), &b.cfg().socket, &o.socket, Role::UdpMulticast)
            }
            _ => return Ok(()),
        };
        let keys = change::classify(old_o, new_o, role).in_place;
        change::apply_in_place(sock, self.local_addr(), new_o, role, &keys)
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
