//! netservd: one `config.toml` in, running network services out.
//!
//! Crate map, in the order data flows:
//! - [`config`]: `config.toml` -> validated [`config::Config`], or every error as `PATH:LINE:COL: message`;
//!   [`hostcheck`]: what only this host can tell (broadcast addresses, interfaces).
//! - [`net`]: a `[*.socket]` table -> socket2 calls -> a bound, non-blocking socket; read-back of effective options.
//! - [`services`]: one file per kind of service, each `bind` then `run` until cancelled.
//! - [`daemon`] and [`reload`]: the supervisor: bind all, spawn, reload by diff, drain on shutdown.
//! - [`signals`] and [`watch`]: SIGTERM/SIGINT/SIGHUP and config-file changes as one event stream;
//!   on Windows, `winservice` turns the Service Control Manager's Stop into the same shutdown event.
//! - [`metrics`] and [`admin`]: per-service counters, served as `/metrics`, `/healthz`, `/services`;
//!   [`alloc_stats`]: jemalloc's heap counters, served as `/debug/allocator` for leak checks.
//! - [`client`]: the operator's tools: `probe`, `send`, `listen`, `bench`.
//! - [`frame`], [`template`], [`logging`]: framing, announcement templates, log setup.
//! - [`cli`]: the command line that `main.rs` hands over to.

pub mod acl;
pub mod admin;
pub(crate) mod admin_faults;
mod admin_serve;
pub mod alloc_stats;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod faults;
pub mod flood;
pub mod frame;
pub mod hostcheck;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod pidfile;
pub mod reload;
pub mod rlimit;
pub mod services;
pub mod signals;
pub mod template;
pub mod watch;
#[cfg(windows)]
pub mod winservice;

/// Largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP).
pub const MAX_UDP_PAYLOAD: usize = 65507;

/// Exit codes of DESIGN §1.
pub const EXIT_OK: i32 = 0;
/// A service could not start (bind failed), a probe failed, or a second signal cut the drain short.
pub const EXIT_FAILURE: i32 = 1;
/// The config is invalid.
pub const EXIT_CONFIG: i32 = 2;
