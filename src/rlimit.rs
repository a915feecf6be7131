//! The descriptor budget (Unix). At start the soft RLIMIT_NOFILE is raised
//! to the hard limit (as nginx's `worker_rlimit_nofile` and systemd services
//! do: the soft default of 1024 is a relic of select(2)), then the config's
//! worst case is compared with it: every `max_connections` of the TCP
//! services, the admin endpoint's `max_connections`, one socket per service
//! and [`RESERVE`] for the process itself. When that does not fit, one
//! warning names the numbers and what to change: a service that fills the
//! table would leave the others unable to accept.
//!
//! The limits themselves keep the services apart while the budget fits:
//! every TCP service and the admin endpoint stop accepting at their own
//! `max_connections`, so none can take the descriptors the others need. When
//! it does not fit, the TCP services' connections together stop at
//! [`connection_budget`] (the limit less the admin endpoint's share, the
//! services' sockets and the reserve): a connection beyond it is reset at
//! accept, and the admin endpoint and the UDP services keep working. Should
//! the table still run full (other files, a limit lowered while running),
//! each accept loop's [`Spare`] descriptor lets it take one more connection.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;
use tracing::warn;

use crate::config::Config;

/// Descriptors the process needs besides connections: stdio, the runtime's
/// epoll and wakers, the config watcher, blocking-pool files, headroom.
pub const RESERVE: u64 = 64;

/// Descriptors the TCP services' connections may hold together, set once at
/// start by [`prepare`]: the limit less the admin endpoint's share, one
/// socket per service and [`RESERVE`] (at least a quarter of the limit).
static CONNECTION_BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();

/// The process-wide pool each TCP connection takes one permit of (None when
/// the limit is unknown, e.g. on Windows, or `prepare` did not run).
pub fn connection_budget() -> Option<Arc<Semaphore>> {
    CONNECTION_BUDGET.get().cloned()
}

/// Raises the soft descriptor limit to the hard one, sets the TCP
/// connections' share of it and warns when `cfg`'s worst case exceeds it.
/// Returns the limit now in force (None: unknown).
pub fn prepare(cfg: &Config) -> Option<u64> {
    let limit = raise_soft_to_hard();
    if let Some(limit) = limit {
        let need = worst_case(cfg);
        let kept = need - tcp_connections(cfg);
        // A tiny limit still leaves the TCP services a quarter of it rather than nothing.
        let budget = limit
            .saturating_sub(kept)
            .max(limit / 4)
            .min(Semaphore::MAX_PERMITS as u64);
        let _ = CONNECTION_BUDGET.set(Arc::new(Semaphore::new(budget as usize)));
        if need > limit {
            warn!(
                limit,
                need,
                reserve = RESERVE,
                tcp_budget = budget,
                "descriptor budget exceeded: the max_connections of all TCP services and [admin] plus one socket per service \
                 and a reserve need more descriptors than the limit (RLIMIT_NOFILE); raise the hard limit (ulimit -Hn, \
                 LimitNOFILE= in systemd, --ulimit nofile= in docker) or lower max_connections; meanwhile TCP connections \
                 beyond tcp_budget are reset at accept (drops reason=descriptor_budget) so the admin endpoint keeps its share"
            );
        }
    }
    limit
}

/// The sum of the TCP services' `max_connections`.
fn tcp_connections(cfg: &Config) -> u64 {
    cfg.tcp_echo
        .iter()
        .map(|s| u64::from(s.max_connections))
        .sum()
}

/// Descriptors `cfg` may hold at once at worst.
pub fn worst_case(cfg: &Config) -> u64 {
    let tcp = tcp_connections(cfg);
    let admin = cfg
        .admin
        .as_ref()
        .map_or(0, |a| u64::from(a.max_connections) + 1);
    // A udp_echo binds one socket per worker on Linux (`net::reuseport_udp`).
    let sockets: usize = crate::services::Spec::all(cfg)
        .iter()
        .map(|s| s.sockets(cfg.daemon.workers))
        .sum();
    let sockets = sockets as u64;
    tcp + admin + sockets + RESERVE
}

/// One descriptor held back by an accept loop (the admin endpoint, each TCP
/// service): when the process runs out (EMFILE), it is closed so the next
/// accept succeeds, and taken again once descriptors are free. So operators
/// can still reach `/healthz` and each service can still take a connection
/// while another has eaten the table.
pub struct Spare(Option<std::fs::File>);

impl Spare {
    pub fn open() -> Spare {
        let mut s = Spare(None);
        s.refill();
        s
    }

    /// Takes the spare again if it was released (fails quietly while the table is full).
    pub fn refill(&mut self) {
        if self.0.is_none() && cfg!(unix) {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
    }

    /// Frees the spare descriptor; false if it was already free.
    pub fn release(&mut self) -> bool {
        self.0.take().is_some()
    }
}

#[cfg(unix)]
fn raise_soft_to_hard() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot read the descriptor limit (RLIMIT_NOFILE)");
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur >= lim.rlim_max {
        return Some(as_u64(lim.rlim_cur));
    }
    // macOS refuses a soft limit over OPEN_MAX (10240) even when the hard one is unlimited.
    let target = if cfg!(target_os = "macos") {
        lim.rlim_max.min(10240)
    } else {
        lim.rlim_max
    };
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads one valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), soft = as_u64(before), hard = as_u64(lim.rlim_max),
            "cannot raise the soft descriptor limit to the hard one; keeping it");
        return Some(as_u64(before));
    }
    tracing::info!(
        from = as_u64(before),
        to = as_u64(target),
        "raised the soft descriptor limit (RLIMIT_NOFILE) to the hard limit"
    );
    Some(as_u64(target))
}

/// Windows has no descriptor rlimit; sockets are bounded by memory.
#[cfg(not(unix))]
fn raise_soft_to_hard() -> Option<u64> {
    None
}

#[cfg(unix)]
#[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
fn as_u64(v: libc::rlim_t) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_case_counts_every_tcp_limit_the_admin_and_a_reserve() {
        let cfg = crate::config::parse(
            "[daemon]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\nmax_connections = 10\n\
             [[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nmax_connections = 100\n\
             [[tcp_echo]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\nmax_connections = 200\n\
             [[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n",
            "test.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(worst_case(&cfg), 100 + 200 + 11 + 3 + RESERVE);
    }
}
