//! netservd: one `config.toml` in, running network services out.
//!
//! Crate map, in the order data flows (folders first, then the files beside them):
//! - [`config`] (`config/`): `config.toml` -> validated [`config::Config`], or every error as
//!   `PATH:LINE:COL: message`: `schema.rs` (serde types), `de.rs` (durations, addresses),
//!   `validate/` (cross-service rules, per-kind rules, `[*.socket]` rules), `effective.rs`
//!   (`check --print`); [`hostcheck`]: what only this host can tell (broadcast addresses, interfaces).
//! - [`net`] (`net/`): a `[*.socket]` table -> socket2 calls -> a bound, non-blocking socket;
//!   `readback.rs` reads effective options back, `change.rs` decides which changes need a new
//!   socket, `groups.rs` joins and leaves multicast groups (for the daemon and the tools alike).
//! - [`services`] (`services/`): the one list of service kinds (`kinds!` in `services/mod.rs`) and
//!   one file per kind, each implementing [`services::Kind`] (section, validation, `check`'s
//!   summary, bind) and [`services::Service`] (what it bound: read-back, run until stopped).
//!   Config parsing, validation and `check` iterate over that list, so they name no kind.
//! - [`daemon`] and [`reload`]: the supervisor: bind all, spawn, reload by diff, drain on shutdown;
//!   [`signals`] and [`watch`]: SIGTERM/SIGINT/SIGHUP and config-file changes as one event stream;
//!   on Windows, `winservice` turns the Service Control Manager's Stop into the same shutdown event.
//! - [`metrics`] and [`admin`]: per-service counters, served as `/metrics`, `/healthz`, `/services`;
//!   [`alloc_stats`]: jemalloc's heap counters, served as `/debug/allocator` for leak checks.
//! - [`client`] (`client/`): the operator's tools: `probe`, `send`, `listen`, `bench`, `reload`;
//!   they share `net` with the daemon and never import `services`.
//! - [`check`] and [`cli`]: `netservd check`, and the command line that `main.rs` hands over to.
//! - [`frame`], [`template`], [`logging`], [`acl`], [`flood`], [`rlimit`], [`pidfile`]: framing,
//!   announcement templates, log setup, access lists, flood detection, descriptor limits, pid file.

// Every `unsafe` block says why it is sound; keep it so.
#![deny(clippy::undocumented_unsafe_blocks)]

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

/// Exit codes (`../shared/DESIGN.md`, "Command line"): success.
pub const EXIT_OK: i32 = 0;
/// A service could not start (bind failed), a probe failed, or a second signal cut the drain short.
pub const EXIT_FAILURE: i32 = 1;
/// The config is invalid.
pub const EXIT_CONFIG: i32 = 2;
