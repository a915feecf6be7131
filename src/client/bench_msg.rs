//! What `netservd bench` sends and how it checks what comes back, plus the
//! per-thread tallies its connections record into.
//!
//! Every message is a fixed template (a byte pattern, or a sockperf header for
//! `--sockperf`) with its sequence number written big-endian over the first
//! (up to) 8 bytes. An echo is correct when it has the same length and the
//! same bytes as the message with that sequence number; with `--sockperf` the
//! server's reply may clear the client flag (bit 0 of byte 9), as sockperf
//! servers and `compat = "sockperf"` do.
//!
//! Timing: one `Instant` per batch (a read or a write of many messages), not
//! per message, so the clock is never the generator's bottleneck. Replies are
//! measured when they arrive inside `[warm_end, end)`.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// Byte 9 of sockperf's 14-byte header holds the client flag in bit 0.
const SOCKPERF_FLAGS_BYTE: usize = 9;
/// sockperf's header: u64 sequence, u16 flags, u32 length, all big-endian.
pub const SOCKPERF_HEADER: usize = 14;
/// sockperf flags for a client message that asks for a reply (client | pong request).
const SOCKPERF_PING: u16 = 0x0003;

/// The bytes of every message; only the sequence number differs.
pub struct Payload {
    template: Vec<u8>,
    sockperf: bool,
}

impl Payload {
    pub fn new(size: usize, sockperf: bool) -> Payload {
        let mut template: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
            .collect();
        if sockperf && size >= SOCKPERF_HEADER {
            template[8..10].copy_from_slice(&SOCKPERF_PING.to_be_bytes());
            template[10..14].copy_from_slice(&(size as u32).to_be_bytes());
        }
        Payload { template, sockperf }
    }

    pub fn template(&self) -> &[u8] {
        &self.template
    }

    pub fn len(&self) -> usize {
        self.template.len()
    }

    /// Bytes of the sequence number that fit at the front of a message.
    fn seq_len(&self) -> usize {
        self.template.len().min(8)
    }

    /// Appends message `seq` to `out`.
    pub fn put(&self, seq: u64, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.template);
        let k = self.seq_len();
        out[at..at + k].copy_from_slice(&seq.to_be_bytes()[8 - k..]);
    }

    /// Writes message `seq` into `out`, which is `len()` bytes.
    pub fn fill(&self, seq: u64, out: &mut [u8]) {
        out.copy_from_slice(&self.template);
        let k = self.seq_len();
        out[..k].copy_from_slice(&seq.to_be_bytes()[8 - k..]);
    }

    /// The sequence number an echo carries (only its low bytes for tiny messages).
    pub fn seq_of(&self, got: &[u8]) -> u64 {
        let k = self.seq_len().min(got.len());
        let mut b = [0u8; 8];
        b[8 - k..].copy_from_slice(&got[..k]);
        u64::from_be_bytes(b)
    }

    /// Does `got` echo message `seq` exactly?
    pub fn matches(&self, seq: u64, got: &[u8]) -> bool {
        let k = self.seq_len();
        if got.len() != self.template.len() || got[..k] != seq.to_be_bytes()[8 - k..] {
            return false;
        }
        if self.sockperf && got.len() >= SOCKPERF_HEADER {
            let f = SOCKPERF_FLAGS_BYTE;
            return got[k..f] == self.template[k..f]
                && got[f] | 1 == self.template[f] | 1
                && got[f + 1..] == self.template[f + 1..];
        }
        got[k..] == self.template[k..]
    }

    /// Sequence numbers wrap in messages shorter than 8 bytes.
    pub fn seq_mask(&self) -> u64 {
        if self.seq_len() >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * self.seq_len())) - 1
        }
    }
}

/// The run's clock: warm-up until `warm_end`, measured until `end`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub warm_end: Instant,
    pub end: Instant,
    /// A datagram unanswered for this long is counted lost and replaced.
    pub loss_timeout: Duration,
}

impl Plan {
    pub fn measuring(&self, now: Instant) -> bool {
        now >= self.warm_end && now < self.end
    }
}

/// Tallies of one generator thread, shared by its connections (single-threaded runtime).
pub struct Tally {
    pub hist: Histogram<u64>,
    /// Replies received and verified inside the measured window.
    pub msgs: u64,
    /// Replies whose length or bytes differ from what was sent.
    pub mismatches: u64,
    /// Datagrams unanswered within the loss timeout (UDP only).
    pub lost: u64,
    /// Replies that arrived after being counted lost (UDP only).
    pub late: u64,
    pub errors: Vec<String>,
}

impl Tally {
    pub fn new() -> Tally {
        // 1 ns .. 60 s at 3 significant digits.
        let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .expect("static histogram bounds are valid");
        Tally {
            hist,
            msgs: 0,
            mismatches: 0,
            lost: 0,
            late: 0,
            errors: Vec::new(),
        }
    }

    pub fn merge(&mut self, o: Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&o.hist);
        self.msgs += o.msgs;
        self.mismatches += o.mismatches;
        self.lost += o.lost;
        self.late += o.late;
        self.errors.extend(o.errors);
    }
}

/// What a connection task records into: its thread's tally and the run-wide progress counter.
#[derive(Clone)]
pub struct Recorder {
    pub tally: std::rc::Rc<RefCell<Tally>>,
    pub progress: Arc<AtomicU64>,
    pub plan: Plan,
}

impl Recorder {
    /// Records one verified reply sent at `sent` and seen at `now`.
    #[inline]
    pub fn reply(&self, t: &mut Tally, sent: Instant, now: Instant) {
        if self.plan.measuring(now) {
            t.msgs += 1;
            let ns = now.saturating_duration_since(sent).as_nanos() as u64;
            t.hist.saturating_record(ns.max(1));
        }
    }

    /// Bumps the progress counter once per batch.
    pub fn batch(&self, n: u64) {
        self.progress.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_matches_only_its_own_echo() {
        for size in [0, 1, 5, 8, 64, 4096] {
            let p = Payload::new(size, false);
            let mut m = Vec::new();
            p.put(12345, &mut m);
            assert_eq!(m.len(), size);
            assert!(p.matches(12345 & p.seq_mask(), &m));
            assert_eq!(p.seq_of(&m), 12345 & p.seq_mask());
            if size > 8 {
                m[size - 1] ^= 1;
                assert!(!p.matches(12345, &m));
            }
            if size > 0 {
                assert!(!p.matches(12346 & p.seq_mask(), &{
                    let mut v = Vec::new();
                    p.put(12345, &mut v);
                    v
                }));
            }
        }
    }

    #[test]
    fn sockperf_replies_may_clear_only_the_client_flag() {
        let p = Payload::new(64, true);
        let mut m = vec![0; 64];
        p.fill(7, &mut m);
        assert_eq!(&m[8..14], &[0, 3, 0, 0, 0, 64]);
        m[9] &= !1;
        assert!(p.matches(7, &m));
        m[9] &= !2;
        assert!(!p.matches(7, &m));
    }
}
