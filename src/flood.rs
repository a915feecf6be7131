//! Log flood control for lines a remote peer can trigger once per connection
//! or per datagram (oversized frame, EOF mid-frame, timeouts, refusals by a
//! limit or an access list). One [`Flood`] per service, shared by its
//! connections; inside it one [`RateLimited`] per reason: the first event of
//! a reason is logged, then at most one line per [`INTERVAL`], carrying in
//! `suppressed` how many were held back since the line before. Metrics are
//! not affected: callers count every event before asking to log it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::logging::RateLimited;

/// At most one line per service and reason in this interval.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A service's per-reason log limiters; cloning shares them.
#[derive(Clone, Default)]
pub struct Flood {
    reasons: Arc<Mutex<HashMap<&'static str, RateLimited>>>,
}

impl Flood {
    pub fn new() -> Flood {
        Flood::default()
    }

    /// Records one event of `reason`; calls `log(suppressed)` when a line may
    /// be written now (`suppressed`: events held back since the last line).
    pub fn hit(&self, reason: &'static str, log: impl FnOnce(u64)) {
        let allowed = {
            // A poisoned map only means a logger panicked mid-line; the counts are still fine.
            let mut map = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(reason)
                .or_insert_with(|| RateLimited::new(INTERVAL))
                .allow()
        };
        if let Some(suppressed) = allowed {
            log(suppressed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_logged_then_held_back_per_reason() {
        let f = Flood::new();
        let mut lines = Vec::new();
        for _ in 0..1000 {
            f.hit("a", |n| lines.push(("a", n)));
            f.hit("b", |n| lines.push(("b", n)));
        }
        assert_eq!(lines, [("a", 0), ("b", 0)]);
    }
}
