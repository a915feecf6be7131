//! One UDP bench socket: keeps `window` datagrams in flight to the target
//! (connected socket, so only the target's replies are received), matches
//! each reply to its request by the sequence number it carries, verifies its
//! bytes, records its round-trip time and sends the next datagram.
//!
//! UDP may drop or reorder: a request unanswered for the loss timeout is
//! counted lost and replaced, so the window never drains; a reply to a
//! request already counted lost is counted late, not as a mismatch.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::bench_msg::{Payload, Recorder};

pub struct UdpConn<'a> {
    pub addr: SocketAddr,
    pub payload: &'a Payload,
    pub window: usize,
    pub rec: Recorder,
}

impl UdpConn<'_> {
    pub async fn run(&self) -> Result<()> {
        let local: SocketAddr = if self.addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()?;
        let s = UdpSocket::bind(local)
            .await
            .context("bind a local UDP socket")?;
        s.connect(self.addr)
            .await
            .with_context(|| format!("connect UDP socket to {}", self.addr))?;
        let size = self.payload.len();
        let mask = self.payload.seq_mask();
        let plan = self.rec.plan;
        // Requests in flight, oldest first: (sequence, sent at).
        let mut inflight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(self.window);
        let mut out = vec![0u8; size];
        // One byte more than expected, so a longer reply shows as a mismatch instead of truncating.
        let mut inb = vec![0u8; size + 1];
        let mut next = 0u64;
        let mut due = self.window;
        loop {
            let now = Instant::now();
            for _ in 0..due {
                self.payload.fill(next & mask, &mut out);
                send(&s, &out).await?;
                inflight.push_back((next & mask, now));
                next += 1;
            }
            due = 0;
            let oldest = inflight
                .front()
                .map_or(plan.end, |&(_, t)| t + plan.loss_timeout);
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(oldest.min(plan.end)) => {
                    let now = Instant::now();
                    if now >= plan.end {
                        return Ok(());
                    }
                    while inflight.front().is_some_and(|&(_, t)| t + plan.loss_timeout <= now) {
                        inflight.pop_front();
                        self.rec.tally.borrow_mut().lost += 1;
                        due += 1;
                    }
                    continue;
                }
                r = s.readable() => r?,
            }
            let now = Instant::now();
            let mut t = self.rec.tally.borrow_mut();
            let mut replies = 0u64;
            loop {
                let n = match s.try_recv(&mut inb) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        bail!("{}: nothing listening (ICMP port unreachable)", self.addr)
                    }
                    Err(e) => return Err(e.into()),
                };
                let got = &inb[..n];
                let seq = self.payload.seq_of(got);
                match inflight.iter().position(|&(q, _)| q == seq) {
                    Some(i) => {
                        let (_, sent) = inflight.remove(i).expect("index from position");
                        if self.payload.matches(seq, got) {
                            self.rec.reply(&mut t, sent, now);
                        } else {
                            t.mismatches += 1;
                        }
                        due += 1;
                        replies += 1;
                    }
                    None if n == size && seq < next & mask => t.late += 1,
                    None => t.mismatches += 1,
                }
            }
            drop(t);
            self.rec.batch(replies);
            if now >= plan.end {
                return Ok(());
            }
        }
    }
}

async fn send(s: &UdpSocket, out: &[u8]) -> Result<()> {
    loop {
        match s.try_send(out) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable().await?,
            // An ICMP unreachable from an earlier datagram surfaces on the next call.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => bail!(
                "{}: nothing listening (ICMP port unreachable)",
                s.peer_addr()?
            ),
            Err(e) => return Err(e.into()),
        }
    }
}
