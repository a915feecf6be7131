//! tcp_echo faults, applied frame by frame on the slow path of
//! `services/tcp_conn.rs` (taken only when the service's fixture has faults
//! or the journal on). For each complete frame the connection asks
//! [`decide`] what to do (reset, stall, echo after a delay, maybe
//! corrupted), then writes the echo with [`write_paced`] (slices,
//! bandwidth) and finally asks [`close_after`]. The frame counts are per
//! connection, kept by the connection.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{Active, Faults, Fixture, TcpFaults, flip_one};
use crate::frame::FrameFormat;

/// What to do with the next frame of a connection that has echoed `seen` frames.
pub enum Action {
    /// Reset the connection without echoing it (`reset_after_frames`).
    Reset,
    /// Stop reading and echoing until the faults change (`stall_after_frames`).
    Stall,
    /// Echo it after `delay` (`latency` +- `jitter`; zero = at once).
    Echo { delay: Duration },
}

/// The tcp faults of `active`, if it holds tcp faults.
pub fn of(active: &Active) -> Option<&TcpFaults> {
    match &active.faults {
        Faults::Tcp(t) => Some(t),
        _ => None,
    }
}

/// `refuse`: should a just-accepted connection be reset at once? Counted.
pub fn refuse(fx: &Fixture) -> bool {
    let Some(a) = fx.active() else { return false };
    let hit = of(&a).is_some_and(|t| a.rng.chance(t.refuse));
    if hit {
        fx.count("refuse");
    }
    hit
}

/// The action for the frame after `seen` echoed ones; counts what it injects.
pub fn decide(fx: &Fixture, a: &Active, seen: u64) -> Action {
    let Some(t) = of(a) else {
        return Action::Echo {
            delay: Duration::ZERO,
        };
    };
    if t.reset_after_frames.is_some_and(|n| seen >= n) {
        fx.count("reset_after_frames");
        return Action::Reset;
    }
    if t.stall_after_frames.is_some_and(|n| seen >= n) {
        return Action::Stall;
    }
    Action::Echo {
        delay: fx.delay(a, t.latency, t.jitter),
    }
}

/// `corrupt`: maybe flips one payload byte of `frame` (never its length field).
pub fn maybe_corrupt(fx: &Fixture, a: &Active, format: &FrameFormat, frame: &mut [u8]) {
    let Some(t) = of(a) else { return };
    let payload = &mut frame[format.header_len()..];
    if !payload.is_empty() && a.rng.chance(t.corrupt) {
        flip_one(&a.rng, payload);
        fx.count("corrupt");
    }
}

/// `close_after_frames`: close now that `seen` frames were echoed? Counted.
pub fn close_after(fx: &Fixture, a: &Active, seen: u64) -> bool {
    let hit = of(a).is_some_and(|t| t.close_after_frames.is_some_and(|n| seen >= n));
    if hit {
        fx.count("close_after_frames");
    }
    hit
}

/// Does writing need [`write_paced`] (slices or a bandwidth limit)?
pub fn paced(a: &Active) -> bool {
    of(a).is_some_and(|t| t.slice_bytes.is_some() || t.bandwidth_bytes_per_s.is_some())
}

/// Writes `out` in pieces: `slice_bytes` each with `slice_delay` between
/// them, and no faster than `bandwidth_bytes_per_s` (each piece is followed
/// by the time it "takes" at that rate, so `n` bytes take at least n/rate).
pub async fn write_paced(
    fx: &Fixture,
    a: &Active,
    stream: &TcpStream,
    out: &[u8],
) -> io::Result<()> {
    let Some(t) = of(a) else { return Ok(()) };
    let rate = t.bandwidth_bytes_per_s;
    // Pieces of ~10 ms at the rate when only bandwidth is set.
    let piece = t
        .slice_bytes
        .or(rate.map(|r| (r / 100).max(1) as usize))
        .unwrap_or(out.len())
        .max(1);
    if t.slice_bytes.is_some() {
        fx.count("slice");
    }
    if rate.is_some() {
        fx.count("bandwidth");
    }
    let chunks = out.chunks(piece);
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.enumerate() {
        write_all(stream, chunk).await?;
        let mut pause = Duration::ZERO;
        if let Some(r) = rate {
            pause += Duration::from_secs_f64(chunk.len() as f64 / r as f64);
        }
        if i < last {
            pause += t.slice_delay.unwrap_or(Duration::ZERO);
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(())
}

/// The whole of `out`, waiting for room as needed.
pub async fn write_all(stream: &TcpStream, mut out: &[u8]) -> io::Result<()> {
    while !out.is_empty() {
        stream.writable().await?;
        match stream.try_write(out) {
            Ok(n) => out = &out[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The frames of `complete` (which holds only whole frames), as byte ranges.
pub fn frames(format: &FrameFormat, complete: &[u8]) -> Vec<std::ops::Range<usize>> {
    let h = format.header_len();
    let mut out = Vec::new();
    let mut at = 0;
    while at + h <= complete.len() {
        let len = format.read_len(&complete[at..at + h]) as usize;
        let end = (at + h + len).min(complete.len());
        out.push(at..end);
        at = end;
    }
    out
}
