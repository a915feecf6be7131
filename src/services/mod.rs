//! The kinds of service, all of one shape: `bind(&config) -> Bound`
//! (synchronous, fallible, done for every service before any serves), then
//! `Bound::run(ctx)` until `ctx.stop` asks it to finish.
//!
//! This file is the one place that lists the kinds: the `kinds!` list below.
//! Adding a kind is a file beside this one that implements [`Kind`] for its
//! config struct and [`Service`] for what it binds (`kind.rs` says what each
//! method is for), that config struct and its `Vec` field in
//! `config/schema.rs`'s `Config`, and one line in `kinds!`. Parsing
//! (`[[section]]` tables), validation, `check`, `check --print` and the
//! supervisor iterate over the list ([`Spec`], [`Bound`], [`for_each_kind`])
//! and name no kind.
//!
//! A `Bound` holds its socket behind an `Arc`, so a reload that changes only
//! settings (timeouts, limits, payload, options a live socket takes) hands
//! the same socket to the new service ([`Bound::with_spec`]) and no client
//! sees the listener close. Which changes need a new socket is decided in one
//! place, [`crate::net::change`], through [`Spec::rebind_reason`].

pub mod broadcast;
#[cfg(target_os = "linux")]
mod kernel_drops;
pub mod kind;
pub mod multicast;
pub mod per_source;
pub mod tcp_conn;
pub mod tcp_echo;
mod tcp_live;
pub mod udp_echo;
pub mod udp_guard;
#[cfg(target_os = "linux")]
mod udp_mmsg;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use std::sync::OnceLock;

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use kind::{Kind, KindVisitor, Service};

use crate::config::validate::{Claim, Issues, Rules};
use crate::config::{
    BroadcastConfig, Config, MulticastConfig, SocketOptions, TcpEchoConfig, UdpEchoConfig,
};
use crate::metrics::ServiceMetrics;
use crate::net::{Applied, Role, change};

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
    /// Live faults and journal of this service (`crate::faults`); kept across a handover.
    pub fixture: Arc<crate::faults::Fixture>,
    /// `name=proto://addr` of every running service, for announcements.
    pub directory: Directory,
}

/// The daemon's services as announcements describe them; the supervisor
/// rewrites it after every start and reload.
pub type Directory = Arc<RwLock<String>>;

/// Generates [`Spec`], [`Bound`], [`SECTIONS`], [`for_each_kind`] and their
/// dispatch from the list of kinds below. Each entry: `Variant(ConfigStruct)`,
/// where `ConfigStruct: Kind` and `<ConfigStruct as Kind>::Bound` is its [`Service`].
macro_rules! kinds {
    ($($V:ident($C:ident)),* $(,)?) => {
        /// One configured service, of any kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Spec {
            $($V($C),)*
        }

        /// A service whose sockets are bound, ready to run.
        #[derive(Clone)]
        pub enum Bound {
            $($V(<$C as Kind>::Bound),)*
        }

        /// Every kind's config section, in list order.
        pub const SECTIONS: &[&str] = &[$(<$C as Kind>::SECTION,)*];

        /// Calls `v.visit::<K>()` for every kind `K`, in list order.
        pub fn for_each_kind(v: &mut impl KindVisitor) {
            $(v.visit::<$C>();)*
        }

        impl Spec {
            /// Every service of a config, in file order, kind by kind, each
            /// with its index among the services of its kind.
            pub fn indexed(cfg: &Config) -> Vec<(usize, Spec)> {
                let mut out = Vec::new();
                $(out.extend(<$C as Kind>::of(cfg).iter().cloned().enumerate().map(|(i, c)| (i, Spec::$V(c))));)*
                out
            }

            /// Creates and binds the service's sockets.
            pub fn bind(&self) -> Result<Bound> {
                Ok(match self {
                    $(Spec::$V(c) => Bound::$V(c.bind()?),)*
                })
            }

            /// Why `other` cannot run on this spec's socket (the key that needs a new
            /// one), or `None` when it can: same kind and address, and every socket
            /// option that changed is one a live socket takes ([`change::classify`]).
            pub fn rebind_reason(&self, other: &Spec) -> Option<&'static str> {
                match (self, other) {
                    $((Spec::$V(a), Spec::$V(b)) => rebind_reason(a, b),)*
                    _ => Some("kind"),
                }
            }

            /// The service's `name`.
            pub fn name(&self) -> &str {
                match self {
                    $(Spec::$V(c) => c.name(),)*
                }
            }

            /// Its `[kind.socket]` table.
            pub fn socket(&self) -> &SocketOptions {
                match self {
                    $(Spec::$V(c) => c.socket(),)*
                }
            }

            /// Its faults and journal size from the file ([`Kind::fixture`]).
            pub fn fixture(&self) -> (crate::faults::Faults, usize) {
                match self {
                    $(Spec::$V(c) => c.fixture(),)*
                }
            }

            /// Sockets `run` binds for it with `workers` runtime threads ([`Kind::sockets`]).
            pub fn sockets(&self, workers: usize) -> usize {
                match self {
                    $(Spec::$V(c) => c.sockets(workers),)*
                }
            }

            /// Its kind, as the config section is named.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Spec::$V(_) => <$C as Kind>::SECTION,)*
                }
            }

            /// What its socket is for.
            pub fn role(&self) -> Role {
                match self {
                    $(Spec::$V(_) => <$C as Kind>::ROLE,)*
                }
            }

            /// Its services share a port with each other on purpose ([`Kind::SHARES_PORT`]).
            pub fn shares_port(&self) -> bool {
                match self {
                    $(Spec::$V(_) => <$C as Kind>::SHARES_PORT,)*
                }
            }

            /// The address whose family decides which socket options apply.
            pub fn family_ip(&self) -> IpAddr {
                match self {
                    $(Spec::$V(x) => x.family_ip(),)*
                }
            }

            /// The kind's own rules ([`Kind::validate`]).
            pub fn validate(&self, index: usize, rules: &Rules, out: &mut Issues) {
                match self {
                    $(Spec::$V(x) => x.validate(index, rules, out),)*
                }
            }

            /// The protocol addresses it takes ([`Kind::claims`]).
            pub fn claims(&self) -> Vec<Claim> {
                match self {
                    $(Spec::$V(x) => x.claims(),)*
                }
            }

            /// Its `{services}` entry at its longest.
            pub fn directory_entry(&self) -> String {
                match self {
                    $(Spec::$V(x) => x.directory_entry(),)*
                }
            }

            /// `check`'s one-line summary.
            pub fn summary(&self) -> String {
                match self {
                    $(Spec::$V(x) => x.summary(),)*
                }
            }

            /// `check --bind`'s remarks.
            pub fn notes(&self) -> Vec<&'static str> {
                match self {
                    $(Spec::$V(x) => x.notes(),)*
                }
            }

            /// Fails when another program holds the address it would join with the daemon's SO_REUSEPORT default (see [`crate::net::tcp_address_free`]).
            pub fn address_free(&self) -> Result<()> {
                match self {
                    $(Spec::$V(x) => x.address_free(),)*
                }
            }

            /// The address this spec binds, when it names one; reload uses it to close an old socket just before binding its replacement.
            pub fn bind_addr(&self) -> Option<SocketAddr> {
                match self {
                    $(Spec::$V(x) => x.bind_addr(),)*
                }
            }

            /// `check --print`'s table of it.
            pub fn effective(&self) -> toml::Table {
                match self {
                    $(Spec::$V(x) => x.effective(),)*
                }
            }
        }

        impl Bound {
            /// The address the socket is bound to (port 0 resolved).
            pub fn local_addr(&self) -> SocketAddr {
                match self {
                    $(Bound::$V(x) => x.local_addr(),)*
                }
            }

            /// How the service is reached, for `ready`, `{services}` and `/services`.
            pub fn url(&self) -> String {
                match self {
                    $(Bound::$V(x) => x.url(),)*
                }
            }

            /// Requested and effective socket options, read back from the kernel.
            pub fn report(&self) -> Vec<Applied> {
                match self {
                    $(Bound::$V(x) => x.report(),)*
                }
            }

            /// Multicast groups joined, each as `group on interface [from source]`.
            pub fn groups(&self) -> Vec<String> {
                match self {
                    $(Bound::$V(x) => x.groups(),)*
                }
            }

            /// Sockets the service receives on: a udp_echo's set (one per
            /// worker on Linux), one for the others.
            pub fn sockets(&self) -> usize {
                match self {
                    $(Bound::$V(b) => Service::socks(b).len(),)*
                }
            }

            /// The listening socket of a TCP service (reuseport steering during a rebind).
            pub fn tcp_listener(&self) -> Option<socket2::SockRef<'_>> {
                match self {
                    $(Bound::$V(b) => (<$C as Kind>::ROLE == Role::TcpListener).then(|| b.sock()),)*
                }
            }

            /// The same socket under a new spec (see [`Spec::rebind_reason`]). Has
            /// no effect on what runs until [`Bound::reconfigure`] and `run`.
            pub fn with_spec(&self, spec: &Spec) -> Option<Bound> {
                match (self, spec) {
                    $((Bound::$V(b), Spec::$V(c)) => Some(Bound::$V(b.with_config(c))),)*
                    _ => None,
                }
            }

            /// Applies to the live socket the options of this (handed over) spec that
            /// changed from `old` and need no new socket; accepted TCP connections
            /// inherit them from the next accept on.
            pub fn reconfigure(&self, old: &Spec) -> Result<()> {
                match (self, old) {
                    $((Bound::$V(b), Spec::$V(o)) => reconfigure(b, o),)*
                    _ => Ok(()),
                }
            }

            /// Serves until `ctx.stop`, then finishes in-flight work.
            pub async fn run(self, ctx: ServiceCtx) -> Result<()> {
                match self {
                    $(Bound::$V(b) => Service::run(b, ctx).await,)*
                }
            }
        }
    };
}

// The one list of kinds, in the order `check` and `Spec::all` give them.
kinds! {
    TcpEcho(TcpEchoConfig),
    UdpEcho(UdpEchoConfig),
    Broadcast(BroadcastConfig),
    Multicast(MulticastConfig),
}

fn rebind_reason<K: Kind>(old: &K, new: &K) -> Option<&'static str> {
    old.address_change(new)
        .or_else(|| change::classify(old.socket(), new.socket(), K::ROLE).rebind)
}

fn reconfigure<S: Service>(b: &S, old: &S::Config) -> Result<()> {
    let role = <S::Config as Kind>::ROLE;
    let new = b.cfg().socket();
    let keys = change::classify(old.socket(), new, role).in_place;
    // A socket set (a udp_echo's, one per worker): every socket takes the change.
    for sock in b.socks() {
        change::apply_in_place(sock, b.local_addr(), new, role, &keys)?;
    }
    Ok(())
}

impl Spec {
    /// Every service of a config, in file order, kind by kind.
    pub fn all(cfg: &Config) -> Vec<Spec> {
        Spec::indexed(cfg).into_iter().map(|(_, s)| s).collect()
    }
}
