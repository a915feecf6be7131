//! The allocator's own view of the daemon's heap, for leak checks that do not
//! depend on RSS (which measures what the allocator keeps as much as what the
//! program holds). On Linux the binary uses jemalloc (see `main.rs`) built with
//! its statistics; [`read`] advances jemalloc's stats epoch and returns its
//! counters, which the admin endpoint serves as `GET /debug/allocator`.
//! Elsewhere (the system allocator) there are no counters and [`read`] says so.

use serde::Serialize;

/// jemalloc's global counters, in bytes (`stats.*` of `mallctl`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AllocStats {
    /// Bytes the program holds in live allocations (`stats.allocated`): the leak signal.
    pub allocated: u64,
    /// Bytes in pages with live allocations (`stats.active`).
    pub active: u64,
    /// Bytes in physically resident pages the allocator maps (`stats.resident`).
    pub resident: u64,
    /// Bytes the allocator has mapped (`stats.mapped`).
    pub mapped: u64,
    /// Bytes kept mapped but returned to the allocator's free lists (`stats.retained`).
    pub retained: u64,
    /// Size of one TCP echo connection's task future (0 before the first
    /// accept): what every idle connection holds besides its socket registration.
    pub tcp_connection_future: u64,
}

/// The current counters, or `None` without jemalloc or when its stats cannot be read.
#[cfg(target_os = "linux")]
pub fn read() -> Option<AllocStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The counters are a snapshot taken at each epoch; advance it first.
    epoch::advance().ok()?;
    Some(AllocStats {
        allocated: stats::allocated::read().ok()? as u64,
        active: stats::active::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
        mapped: stats::mapped::read().ok()? as u64,
        retained: stats::retained::read().ok()? as u64,
        tcp_connection_future: crate::services::tcp_echo::connection_future_bytes() as u64,
    })
}

/// The current counters, or `None` without jemalloc or when its stats cannot be read.
#[cfg(not(target_os = "linux"))]
pub fn read() -> Option<AllocStats> {
    None
}
