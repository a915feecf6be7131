//! broadcast faults, asked by the announcer before each announcement and
//! each sleep: `pause` (nothing is sent while it is set), `loss` (this
//! announcement is skipped; its `{seq}` is used up, so receivers see the
//! gap; a pause uses none) and `jitter_extra` (a random `0..=jitter_extra` added to the interval).

use std::time::Duration;

use super::{BroadcastFaults, Faults, Fixture};

fn with<T>(fx: &Fixture, f: impl FnOnce(&BroadcastFaults, &super::Rng) -> T) -> Option<T> {
    let a = fx.active()?;
    match &a.faults {
        Faults::Broadcast(b) => Some(f(b, &a.rng)),
        _ => None,
    }
}

/// Should the announcement due now be left out, and why (`pause` or `loss`)? Counted.
pub fn skip(fx: &Fixture) -> Option<&'static str> {
    let hit = with(fx, |b, rng| {
        if b.pause == Some(true) {
            Some("pause")
        } else if rng.chance(b.loss) {
            Some("loss")
        } else {
            None
        }
    })
    .flatten();
    if let Some(fault) = hit {
        fx.count(fault);
    }
    hit
}

/// Extra delay before the next announcement (`jitter_extra`). Counted.
pub fn extra_delay(fx: &Fixture) -> Duration {
    let d = with(fx, |b, rng| {
        b.jitter_extra
            .filter(|j| !j.is_zero())
            .map(|j| Duration::from_secs_f64(rng.unit() * j.as_secs_f64()))
    })
    .flatten();
    if d.is_some() {
        fx.count("jitter_extra");
    }
    d.unwrap_or(Duration::ZERO)
}
