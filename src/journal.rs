//! The traffic journal (issue 16): per service, the last N frames or
//! datagrams it received (broadcast: sent), for tests to assert on.
//!
//! Data flow: a service whose fixture has the journal on ([`crate::faults::JOURNAL`])
//! calls [`Journal::record`] per message; the ring keeps the newest
//! `journal = N` entries (older ones fall off, so memory is bounded by N x
//! ~300 B); `GET /services/NAME/journal?since=SEQ` reads entries after SEQ,
//! `DELETE` clears them. Sequence numbers keep counting across clears, so a
//! test's `since` stays valid.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;

/// Bytes of each message kept (as hex and as printable text).
pub const KEEP_BYTES: usize = 64;
/// Largest `journal = N`.
pub const MAX_ENTRIES: usize = 65_536;

/// One message seen by a service.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// 1, 2, 3... per service, never reused (not even after a clear).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `in` (received) or `out` (a broadcast's announcement).
    pub direction: &'static str,
    /// Sender (in) or destination (out).
    pub peer: String,
    /// Destination group of a multicast datagram, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Payload bytes (a frame's payload, without its length field).
    pub size: usize,
    /// The first [`KEEP_BYTES`] bytes as lower-case hex.
    pub hex: String,
    /// The same bytes as text, non-printable ones as `.`.
    pub text: String,
}

/// A bounded ring of [`Entry`].
pub struct Journal {
    capacity: AtomicUsize,
    next: AtomicU64,
    ring: Mutex<VecDeque<Entry>>,
}

impl Journal {
    pub fn new(capacity: usize) -> Journal {
        Journal {
            capacity: AtomicUsize::new(capacity.min(MAX_ENTRIES)),
            next: AtomicU64::new(1),
            ring: Mutex::new(VecDeque::new()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// New size; what it held is dropped.
    pub fn resize(&self, capacity: usize) {
        self.capacity
            .store(capacity.min(MAX_ENTRIES), Ordering::Relaxed);
        self.clear();
    }

    pub fn clear(&self) {
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        *r = VecDeque::new();
    }

    /// Adds one message; the oldest falls off when full.
    pub fn record(
        &self,
        direction: &'static str,
        peer: SocketAddr,
        group: Option<String>,
        data: &[u8],
    ) {
        let cap = self.capacity();
        if cap == 0 {
            return;
        }
        let kept = &data[..data.len().min(KEEP_BYTES)];
        let entry = Entry {
            seq: 0,
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            direction,
            peer: peer.to_string(),
            group,
            size: data.len(),
            hex: kept.iter().map(|b| format!("{b:02x}")).collect(),
            text: kept
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect(),
        };
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        // Numbered under the lock, so the ring is in sequence order.
        let entry = Entry {
            seq: self.next.fetch_add(1, Ordering::Relaxed),
            ..entry
        };
        while r.len() >= cap {
            r.pop_front();
        }
        r.push_back(entry);
    }

    /// Entries with `seq > since`, oldest first.
    pub fn since(&self, since: u64) -> Vec<Entry> {
        let r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().filter(|e| e.seq > since).cloned().collect()
    }

    /// The sequence number the last recorded entry got (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.next.load(Ordering::Relaxed) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_since() {
        let j = Journal::new(3);
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for i in 0..5u8 {
            j.record("in", peer, None, &[b'a' + i, 0]);
        }
        let all = j.since(0);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(all[0].hex, "6300");
        assert_eq!(all[0].text, "c.");
        assert_eq!(j.since(4).len(), 1);
        j.clear();
        assert!(j.since(0).is_empty());
        j.record("in", peer, None, b"x");
        assert_eq!(j.since(0)[0].seq, 6);
    }
}
