//! One framed TCP bench connection: keeps `pipeline` frames in flight,
//! verifies each echo in order (frames come back in the order sent), records
//! its round-trip time, and answers each reply with the next frame.
//!
//! Data flow per turn: read as much as the socket holds (up to 256 KiB) ->
//! walk the complete frames in place (no copy, no allocation) -> verify and
//! record each -> append that many new frames to one output buffer -> write it
//! with as few syscalls as the socket allows. While a write waits for space we
//! keep reading, so a server that echoes before reading more never deadlocks
//! with us.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BytesMut};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::bench_msg::{Payload, Recorder};
use crate::frame::FrameFormat;

/// Bytes asked of each read: large reads amortise syscalls under pipelining.
const READ_CHUNK: usize = 256 * 1024;

pub struct TcpConn<'a> {
    pub addr: SocketAddr,
    pub format: FrameFormat,
    pub payload: &'a Payload,
    pub pipeline: usize,
    pub rec: Recorder,
}

impl TcpConn<'_> {
    /// Runs until the plan's end; errors (refused, reset, framing lost) end this connection only.
    pub async fn run(&self) -> Result<()> {
        let mut s = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        s.set_nodelay(true)?;
        let w = self.format.header_len();
        let size = self.payload.len();
        let mask = self.payload.seq_mask();
        let end = self.rec.plan.end;
        let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(self.pipeline);
        let mut out: Vec<u8> = Vec::with_capacity(self.pipeline * (w + size));
        let mut inb = BytesMut::with_capacity(READ_CHUNK);
        let (mut next, mut expect) = (0u64, 0u64);
        let mut hdr = BytesMut::with_capacity(w + size);
        self.format.encode(self.payload.template(), &mut hdr);
        hdr.truncate(w);

        let now = Instant::now();
        for _ in 0..self.pipeline {
            self.push(&hdr, next & mask, &mut out);
            sent_at.push_back(now);
            next += 1;
        }
        loop {
            if !flush(&mut s, &mut out, &mut inb, end).await? {
                return Ok(());
            }
            // Wait for at least one whole frame.
            while !has_frame(&self.format, &inb) {
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep_until(end) => return Ok(()),
                    r = s.readable() => r?,
                }
                read_some(&mut s, &mut inb)?;
            }
            let now = Instant::now();
            let mut at = 0;
            let mut replies = 0u64;
            let mut t = self.rec.tally.borrow_mut();
            while inb.len() - at >= w {
                let len = self.format.read_len(&inb[at..]);
                if len != size as u64 {
                    t.mismatches += 1;
                    bail!("echo frame declares {len} bytes, sent {size}: framing lost");
                }
                if inb.len() - at - w < size {
                    break;
                }
                let body = &inb[at + w..at + w + size];
                let sent = sent_at
                    .pop_front()
                    .context("more echoes than frames sent")?;
                if self.payload.matches(expect & mask, body) {
                    self.rec.reply(&mut t, sent, now);
                } else {
                    t.mismatches += 1;
                }
                expect += 1;
                at += w + size;
                replies += 1;
            }
            drop(t);
            inb.advance(at);
            self.rec.batch(replies);
            if now >= end {
                return Ok(());
            }
            for _ in 0..replies {
                self.push(&hdr, next & mask, &mut out);
                sent_at.push_back(now);
                next += 1;
            }
        }
    }

    /// Appends frame `seq`: the length header (same for every frame), then the payload.
    fn push(&self, hdr: &[u8], seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(hdr);
        self.payload.put(seq, out);
    }
}

fn has_frame(f: &FrameFormat, b: &[u8]) -> bool {
    let w = f.header_len();
    b.len() >= w && b.len() - w >= f.read_len(b).min(usize::MAX as u64) as usize
}

/// Reads what the socket holds into `inb`; EOF is an error (the server must not close first).
fn read_some(s: &mut TcpStream, inb: &mut BytesMut) -> Result<()> {
    if inb.capacity() - inb.len() < READ_CHUNK / 4 {
        inb.reserve(READ_CHUNK);
    }
    match s.try_read_buf(inb) {
        Ok(0) => bail!("server closed the connection"),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes all of `out`, reading meanwhile. Returns false if the plan ended first.
async fn flush(
    s: &mut TcpStream,
    out: &mut Vec<u8>,
    inb: &mut BytesMut,
    end: Instant,
) -> Result<bool> {
    let mut done = 0;
    while done < out.len() {
        match s.try_write(&out[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep_until(end) => return Ok(false),
                    r = s.writable() => r?,
                    r = s.readable() => { r?; read_some(s, inb)?; }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.clear();
    Ok(true)
}
