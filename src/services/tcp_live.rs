//! The settings of a `[[tcp_echo]]` that its open connections read as they
//! go, so a reload changes them in place instead of closing connections:
//! [`Live`] (timeouts and the frame limit, read at each use) and [`Pool`]
//! (`max_connections`, resized without touching connections already in).
//!
//! Flow: the accept loop's `Bound` and every connection share one `Arc` of
//! each; a reload that keeps the listener hands them to the new `Bound`,
//! whose `run` stores the new values before it accepts. Connections notice a
//! new timeout at their next activity or timer check, a new frame limit at
//! the next frame header.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::TcpEchoConfig;

/// Timeouts and frame limit, as atomics (a relaxed load on the hot path).
#[derive(Debug)]
pub(crate) struct Live {
    idle_ns: AtomicU64,
    frame_ns: AtomicU64,
    max_frame: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Live {
    pub fn new(cfg: &TcpEchoConfig) -> Live {
        Live {
            idle_ns: AtomicU64::new(nanos(cfg.idle_timeout)),
            frame_ns: AtomicU64::new(nanos(cfg.frame_timeout)),
            max_frame: AtomicU64::new(cfg.frame_limit()),
        }
    }

    /// Takes `cfg`'s values; every connection sees them from its next check.
    pub fn set(&self, cfg: &TcpEchoConfig) {
        self.idle_ns
            .store(nanos(cfg.idle_timeout), Ordering::Relaxed);
        self.frame_ns
            .store(nanos(cfg.frame_timeout), Ordering::Relaxed);
        self.max_frame.store(cfg.frame_limit(), Ordering::Relaxed);
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_nanos(self.idle_ns.load(Ordering::Relaxed))
    }

    pub fn frame_timeout(&self) -> Duration {
        Duration::from_nanos(self.frame_ns.load(Ordering::Relaxed))
    }

    pub fn max_frame(&self) -> u64 {
        self.max_frame.load(Ordering::Relaxed)
    }
}

/// `max_connections` as a semaphore that can be resized while connections
/// hold places: a lowered limit is paid as places come back (`debt`), so the
/// connections above it finish normally and no new one is accepted until the
/// count is under the new limit.
#[derive(Debug)]
pub(crate) struct Pool {
    sem: Semaphore,
    limit: AtomicUsize,
    /// Places to swallow as connections end, instead of giving them back.
    debt: AtomicUsize,
}

impl Pool {
    pub fn new(limit: u32) -> Pool {
        Pool {
            sem: Semaphore::new(limit as usize),
            limit: AtomicUsize::new(limit as usize),
            debt: AtomicUsize::new(0),
        }
    }

    /// Waits for a place; the caller forgets the permit and [`Pool::release`]s it later.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        self.sem.acquire().await.expect("semaphore is never closed")
    }

    /// A place for a connection that is already here (one left in a closing
    /// listener's backlog): taken even when the pool is full, then paid back.
    pub fn take_anyway(&self) {
        match self.sem.try_acquire() {
            Ok(p) => p.forget(),
            Err(_) => {
                self.debt.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A connection ended: its place goes back, unless a lowered limit is owed.
    pub fn release(&self) {
        let owed = self
            .debt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
        if owed.is_err() {
            self.sem.add_permits(1);
        }
    }

    /// Changes the limit in place (a reload). Only the accept loop of one
    /// service calls it, before it accepts, so calls never race each other.
    pub fn resize(&self, limit: u32) {
        let (new, old) = (
            limit as usize,
            self.limit.swap(limit as usize, Ordering::Relaxed),
        );
        if new > old {
            // Pay what is owed first, then give the rest as places.
            let mut grow = new - old;
            let _ = self
                .debt
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                    let paid = d.min(new - old);
                    grow = new - old - paid;
                    Some(d - paid)
                });
            self.sem.add_permits(grow);
        } else if new < old {
            let cut = old - new;
            let taken = self.sem.forget_permits(cut);
            self.debt.fetch_add(cut - taken, Ordering::Relaxed);
        }
    }

    /// Places free now (for tests and the report).
    #[cfg(test)]
    fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_limit_waits_for_connections_to_end() {
        let pool = Pool::new(3);
        for _ in 0..3 {
            pool.take_anyway();
        }
        pool.resize(1);
        assert_eq!(pool.available(), 0);
        pool.release();
        pool.release();
        assert_eq!(pool.available(), 0, "two places owed to the lower limit");
        pool.release();
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn a_raised_limit_pays_the_debt_first() {
        let pool = Pool::new(2);
        pool.take_anyway();
        pool.take_anyway();
        pool.resize(1); // owes 1
        pool.resize(3); // pays 1, gives 1
        assert_eq!(pool.available(), 1);
        pool.release();
        pool.release();
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn a_full_pool_still_takes_a_queued_connection() {
        let pool = Pool::new(1);
        pool.take_anyway();
        pool.take_anyway();
        pool.release();
        assert_eq!(pool.available(), 0);
        pool.release();
        assert_eq!(pool.available(), 1);
    }
}
