//! One framed echo connection. Bytes read go into one buffer; `scan` finds how
//! many bytes at its front are complete frames, and exactly those bytes are
//! written back from the same buffer (no decode, no copy, one write per read
//! however many frames it held). A partial frame waits in the buffer for the
//! rest.
//!
//! Memory per connection: nothing while idle at a frame boundary (the buffer
//! is released); otherwise at most one read chunk ([`MAX_READ`]) plus the
//! partial frame, itself capped by `max_frame_bytes`. A declared length is
//! never reserved: the buffer grows with the bytes that actually arrive.
//! Writing before reading more is the backpressure: a peer that never reads
//! stalls only its own connection.
//!
//! Hot path: after a read that filled the room offered the socket is tried
//! again at once (no select, no cancellation waiters); a shorter read drained
//! it, so it clears tokio's readiness ([`read_some`]) and we wait on epoll
//! without the `recv` that would only return EAGAIN.
//! A per-turn cap ([`TURN_READS`], [`TURN_BYTES`]) then yields to the runtime,
//! so one busy peer cannot starve the others and the timers are still checked.
//!
//! Ends: EOF at a boundary (half-close: we shut our write side after echoing
//! everything), EOF mid-frame, an oversized header, idle or frame timeout, a
//! write that stalls for `idle_timeout`, a graceful stop (echo what already
//! arrived, then FIN), or the drain/shutdown deadline: at a frame boundary
//! that is a graceful stop too, in the middle of a frame (or of a write) a
//! reset, counted as `reset_at_deadline`.
//!
//! Wherever we close first (graceful stop, deadline, idle/frame timeout, an
//! oversized frame) the close is a lingering one ([`linger`]): FIN, then
//! read and discard for up to [`LINGER`], so unread input in our socket
//! never turns the close into an RST that wipes the client's unread echoes.
//!
//! Timeouts and the frame limit are read from [`Live`] at each use, so a
//! reload changes them for connections already open.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{Span, debug, info};

use super::ServiceCtx;
use super::tcp_live::{Live, Pool};
use crate::config::TcpEchoConfig;
use crate::faults;
use crate::flood::Flood;
use crate::frame::{FrameError, FrameFormat};
use crate::net;

/// First read size of a connection; reads grow towards [`MAX_READ`] while they come back full.
const MIN_READ: usize = 4 * 1024;
/// Largest single read: big reads amortise syscalls under pipelined load.
const MAX_READ: usize = 64 * 1024;
/// Per-turn cap: after this many reads, or [`TURN_BYTES`], taken back to back
/// without waiting, a connection yields so one busy peer cannot starve the
/// others on its runtime thread (and the timers get checked).
const TURN_READS: u32 = 32;
const TURN_BYTES: u32 = 512 * 1024;
/// How long a connection we close keeps reading (and discarding) after its
/// FIN, so the peer can read its echoes before our close could reset it.
pub const LINGER: Duration = Duration::from_secs(2);

pub(crate) struct Conn {
    /// Length field width and byte order; the limit comes from `live`.
    pub format: FrameFormat,
    /// The config at accept time (socket options of this connection).
    pub cfg: Arc<TcpEchoConfig>,
    /// Timeouts and frame limit as the latest reload set them.
    pub live: Arc<Live>,
    pub ctx: ServiceCtx,
    /// `max_connections`: the accept loop takes a place and forgets it; the
    /// connection gives it back when it ends ([`Slot`]).
    pub pool: Arc<Pool>,
    /// The service's span: a connection without a span of its own (below
    /// debug level) enters it only to log its end, so its task carries no
    /// span while it idles.
    pub span: Span,
    /// Rate limiter of the end-of-connection lines a peer can provoke, shared by the service.
    pub flood: Flood,
}

/// Reads what the socket holds into the spare room of `buf`; returns the
/// count and whether the read drained the socket. A read shorter than the room
/// offered took everything the kernel had, so tokio's read readiness is
/// cleared with it (the closure reports `WouldBlock` after keeping the bytes):
/// the next wait parks on epoll instead of paying a `recv` that only returns
/// EAGAIN. That extra `recv` was one syscall in three under pipelined load
/// (0.19 syscalls per message against the C echo's 0.13). Clearing is safe:
/// tokio clears only the readiness tick it handed out, and data that arrives
/// after our read raises a new edge.
fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<(usize, bool)> {
    let mut got = 0;
    let r = stream.try_io(Interest::READABLE, || {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        got = socket2::SockRef::from(stream).recv(spare)?;
        if got > 0 && got < room {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    let drained = match r {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => true,
        Err(e) => return Err(e),
    };
    // SAFETY: `recv` initialised the first `got` bytes of the spare capacity,
    // and `got` is at most its length.
    unsafe { buf.advance_mut(got) };
    Ok((got, drained))
}

/// Why a connection ended.
enum End {
    /// Peer closed at a frame boundary; we echoed everything and shut down our side.
    Eof,
    /// Graceful stop: what had arrived was echoed, then FIN.
    Drained,
    /// The deadline passed in the middle of a frame or of a write.
    Aborted {
        pending: usize,
    },
    EofMidFrame {
        pending: usize,
    },
    TooLarge(FrameError),
    IdleTimeout,
    FrameTimeout {
        pending: usize,
    },
    WriteStalled,
    /// `reset_after_frames` (or `refuse`): reset on purpose.
    FaultReset,
    /// `close_after_frames`: FIN on purpose, after the echoes.
    FaultClose,
}

/// The loop state of [`Conn::echo`] that its steps share.
struct Flow {
    /// Finishing: take what arrived, then close at a frame boundary.
    draining: bool,
    /// The deadline passed: take what already arrived, then close (or reset mid-frame).
    deadline: bool,
    /// One timer, reset lazily: activity only records a time; when the
    /// timer fires we check whether a deadline really passed.
    last_activity: Instant,
    frame_started: Option<Instant>,
    /// The last read returned data, so the socket may hold more: try it
    /// before building the select (whose cancellation waiters take a lock each).
    maybe_more: bool,
    /// Reads and bytes taken on that fast path since this connection last yielded.
    turn_reads: u32,
    turn_bytes: u32,
    /// Frames echoed on the faults path (`close_after_frames` and the like count these).
    seen: u64,
}

/// What the wait step of [`Conn::echo`] found.
enum Step {
    /// Try a read.
    Read,
    /// Look at the state again (a flag changed, the timer was re-armed).
    Again,
    End(End),
    /// Past the deadline with nothing more to take.
    AtDeadline,
}

impl Conn {
    /// Serves one accepted connection to its end. The accept loop took one of
    /// `permits` for it and forgot it; it is given back when this ends.
    /// `in_span`: the task runs in a span of its own, so the end is logged there.
    ///
    /// Every byte of this future is paid by every idle connection (the task
    /// is rounded up to 128 B): locals that live across an `.await` are kept
    /// few on purpose, and the peer's address is asked of the socket when logged.
    pub async fn serve(self: Arc<Self>, mut stream: TcpStream, in_span: bool) {
        let _slot = Slot(&self.pool);
        if self.ctx.fixture.flags() & crate::faults::FAULTS != 0
            && faults::tcp::refuse(&self.ctx.fixture)
        {
            net::reset_on_close(&stream);
            return;
        }
        self.ctx.metrics.active.inc();
        let end = self.echo(&mut stream).await;
        let _entered = (!in_span).then(|| self.span.enter());
        self.ctx.metrics.active.dec();
        let lingering = matches!(
            end,
            Ok(End::Drained
                | End::TooLarge(_)
                | End::IdleTimeout
                | End::FrameTimeout { .. }
                | End::FaultClose)
        );
        self.log_end(&stream, end);
        if lingering {
            // Boxed: only closing connections pay for its state.
            Box::pin(linger(&mut stream)).await;
        }
        // A non-zero SO_LINGER makes close() block until the data is sent or
        // the linger time passes, even on a non-blocking socket (Linux): never
        // on a runtime worker.
        if self.cfg.socket.linger.is_some_and(|d| !d.is_zero())
            && let Ok(std) = stream.into_std()
        {
            tokio::task::spawn_blocking(move || drop(std));
        }
    }

    /// Logs and counts how a connection ended; resets the ones that end in a reset.
    fn log_end(&self, stream: &TcpStream, end: io::Result<End>) {
        let m = &self.ctx.metrics;
        let (live, fmt) = (&self.live, &self.format);
        match end {
            Ok(End::Eof) => debug!("closed by peer"),
            Ok(End::Drained) => debug!("drained"),
            Ok(End::Aborted { pending }) => {
                info!(peer = %Peer::of(stream), pending_bytes = pending, "deadline passed in the middle of a frame; resetting connection");
                m.drop_counter("reset_at_deadline").inc();
                net::reset_on_close(stream);
            }
            // Lines a peer can provoke once per connection go through the service's
            // flood limiter (crate::flood); the counters still see every one.
            Ok(End::EofMidFrame { pending }) => {
                m.drop_counter("eof_mid_frame").inc();
                self.flood.hit("eof_mid_frame", |suppressed| {
                    info!(peer = %Peer::of(stream), pending_bytes = pending, suppressed, "peer closed in the middle of a frame; partial frame not echoed")
                });
            }
            Ok(End::TooLarge(FrameError::TooLarge { declared, max })) => {
                m.drop_counter("frame_too_large").inc();
                self.flood.hit("frame_too_large", |suppressed| {
                    info!(peer = %Peer::of(stream), declared, max_frame_bytes = max, length_field_bytes = fmt.width, suppressed, "frame too large; closing connection")
                });
            }
            Ok(End::IdleTimeout) => {
                m.drop_counter("idle_timeout").inc();
                self.flood.hit("idle_timeout", |suppressed| {
                    info!(peer = %Peer::of(stream), idle_timeout = ?live.idle_timeout(), suppressed, "idle timeout; closing connection")
                });
            }
            Ok(End::FrameTimeout { pending }) => {
                m.drop_counter("frame_timeout").inc();
                self.flood.hit("frame_timeout", |suppressed| {
                    info!(peer = %Peer::of(stream), pending_bytes = pending, frame_timeout = ?live.frame_timeout(), suppressed, "frame not completed in time; closing connection")
                });
            }
            Ok(End::WriteStalled) => {
                m.drop_counter("write_stalled").inc();
                self.flood.hit("write_stalled", |suppressed| {
                    info!(peer = %Peer::of(stream), idle_timeout = ?live.idle_timeout(), suppressed, "peer stopped reading; closing connection")
                });
            }
            Ok(End::FaultReset) => {
                debug!(peer = %Peer::of(stream), "reset_after_frames fault: resetting connection");
                net::reset_on_close(stream);
            }
            Ok(End::FaultClose) => debug!("close_after_frames fault: closing connection"),
            Err(e) => {
                debug!(peer = %Peer::of(stream), error = %e, "connection error");
                m.error_counter(io_kind(&e)).inc();
            }
        }
    }

    async fn echo(&self, stream: &mut TcpStream) -> io::Result<End> {
        // Settings and handles are read through `self` where used rather than
        // copied into locals, which would live in the future across every await.
        let mut buf = BytesMut::new();
        let mut read_size = MIN_READ as u32;
        let mut f = Flow {
            draining: self.ctx.drain.is_cancelled(),
            deadline: false,
            last_activity: Instant::now(),
            frame_started: None,
            maybe_more: false,
            turn_reads: 0,
            turn_bytes: 0,
            seen: 0,
        };
        let timer = tokio::time::sleep(self.live.idle_timeout());
        tokio::pin!(timer);

        loop {
            if buf.is_empty() {
                f.frame_started = None;
                if buf.capacity() > 0 {
                    // Idle at a boundary: hold no buffer.
                    buf = BytesMut::new();
                }
            }
            // When draining with nothing pending, or past the deadline, we only
            // take what already arrived.
            let wait = !(f.deadline || (f.draining && buf.is_empty()));
            match self
                .wait(stream, &mut f, timer.as_mut(), wait, buf.len())
                .await?
            {
                Step::Read => {}
                Step::Again => continue,
                Step::End(end) => return Ok(end),
                Step::AtDeadline => return self.close_at_deadline(stream, buf.len()).await,
            }
            if buf.capacity() - buf.len() < read_size as usize {
                buf.reserve(read_size as usize);
            }
            let (n, drained) = match read_some(stream, &mut buf) {
                Ok((0, _)) if buf.is_empty() => {
                    stream.shutdown().await?;
                    return Ok(if f.draining { End::Drained } else { End::Eof });
                }
                Ok((0, _)) => return Ok(End::EofMidFrame { pending: buf.len() }),
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait {
                        return self.close_at_deadline(stream, buf.len()).await;
                    }
                    f.maybe_more = false;
                    continue;
                }
                Err(e) => return Err(e),
            };
            f.maybe_more = !drained;
            f.turn_reads += 1;
            f.turn_bytes = f.turn_bytes.saturating_add(n as u32);
            if n == read_size as usize {
                read_size = (read_size * 2).min(MAX_READ as u32);
            }
            f.last_activity = Instant::now();
            self.ctx.metrics.bytes_in.inc_by(n as u64);
            if let Some(end) = self
                .after_read(stream, &mut buf, &mut f, timer.as_mut())
                .await?
            {
                return Ok(end);
            }
        }
    }

    /// The wait step of [`Self::echo`]: on the fast path (the last read
    /// returned data) only the cancellation flags are checked; past the
    /// deadline or draining idle, the per-turn cap decides; otherwise we
    /// wait for data, a cancellation or the timer.
    async fn wait(
        &self,
        stream: &TcpStream,
        f: &mut Flow,
        mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
        wait: bool,
        pending: usize,
    ) -> io::Result<Step> {
        let fast = wait && f.maybe_more && f.turn_reads < TURN_READS && f.turn_bytes < TURN_BYTES;
        if fast {
            if self.ctx.abort.is_cancelled() {
                f.deadline = true;
                return Ok(Step::Again);
            }
            if !f.draining && self.ctx.drain.is_cancelled() {
                f.draining = true;
                return Ok(Step::Again);
            }
            return Ok(Step::Read);
        }
        if !wait {
            // We take only what already arrived, but a peer that keeps sending
            // could keep us here: the per-turn cap yields before the deadline
            // and ends the connection after it.
            if !f.deadline && self.ctx.abort.is_cancelled() {
                f.deadline = true;
                (f.turn_reads, f.turn_bytes) = (0, 0);
            }
            if f.turn_reads >= TURN_READS || f.turn_bytes >= TURN_BYTES {
                if f.deadline {
                    return Ok(Step::AtDeadline);
                }
                tokio::task::yield_now().await;
                (f.turn_reads, f.turn_bytes) = (0, 0);
            }
            return Ok(Step::Read);
        }
        if f.maybe_more {
            // Per-turn cap: this connection had its share; let the others run.
            tokio::task::yield_now().await;
        }
        (f.turn_reads, f.turn_bytes) = (0, 0);
        tokio::select! {
            biased;
            // One cancellation waiter at a time (each costs memory on every idle
            // connection): `drain` is a child of `abort` (daemon.rs), so before
            // draining `drain` is the one to watch.
            _ = if f.draining { &self.ctx.abort } else { &self.ctx.drain }.cancelled() => {
                if f.draining {
                    f.deadline = true;
                }
                f.draining = true;
                Ok(Step::Again)
            }
            _ = &mut timer => {
                let (idle, frame_timeout) = (self.live.idle_timeout(), self.live.frame_timeout());
                let now = Instant::now();
                if f.frame_started.is_some_and(|t| now >= t + frame_timeout) {
                    return Ok(Step::End(End::FrameTimeout { pending }));
                }
                if now >= f.last_activity + idle {
                    return Ok(Step::End(End::IdleTimeout));
                }
                let next = f.frame_started.map_or(f.last_activity + idle, |t| (t + frame_timeout).min(f.last_activity + idle));
                timer.as_mut().reset(next);
                Ok(Step::Again)
            }
            // poll_read_ready keeps the waker in the socket's own slot; the
            // `readable()` future would add ~150 B to every idle connection.
            r = std::future::poll_fn(|cx| stream.poll_read_ready(cx)) => r.map(|()| Step::Read),
        }
    }

    /// The echo step of [`Self::echo`]: writes back the complete frames at
    /// the front of `buf`, then ends the connection on an oversized header
    /// or arms the frame timer for a partial frame.
    async fn after_read(
        &self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        f: &mut Flow,
        mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> io::Result<Option<End>> {
        let format = FrameFormat {
            max_frame: self.live.max_frame(),
            ..self.format
        };
        let scan = format.scan(buf);
        // Only this much of the scan lives across the write: its error is found again after.
        let (complete, frames, bad) = (scan.complete, scan.frames, scan.error.is_some());
        if complete > 0 {
            let m = &self.ctx.metrics;
            m.msgs_in.inc_by(frames);
            // The one check a service without faults or journal pays (one relaxed load).
            if self.ctx.fixture.flags() != 0 {
                let out = &mut buf[..complete];
                if let Some(end) = Box::pin(self.echo_faulty(stream, &format, out, f)).await? {
                    return Ok(Some(end));
                }
            } else {
                if let Some(end) = self
                    .write_back(stream, &buf[..complete], &mut f.last_activity)
                    .await?
                {
                    return Ok(Some(end));
                }
                m.msgs_out.inc_by(frames);
                m.bytes_out.inc_by(complete as u64);
            }
            buf.advance(complete);
            f.frame_started = None;
        }
        if bad && let Some(e) = format.scan(buf).error {
            return Ok(Some(End::TooLarge(e)));
        }
        if !buf.is_empty() && f.frame_started.is_none() {
            f.frame_started = Some(f.last_activity);
            let due = f.last_activity + self.live.frame_timeout();
            if due < timer.deadline() {
                timer.as_mut().reset(due);
            }
        }
        Ok(None)
    }

    /// The slow path (faults or journal on): frame by frame, journal each,
    /// then reset, stall, delay, corrupt, write in slices or paced, close
    /// after N, as `crate::faults::tcp` decides; counts its own echoes.
    async fn echo_faulty(
        &self,
        stream: &mut TcpStream,
        format: &FrameFormat,
        out: &mut [u8],
        f: &mut Flow,
    ) -> io::Result<Option<End>> {
        let fx = &self.ctx.fixture;
        let peer = stream.peer_addr().ok();
        for range in faults::tcp::frames(format, out) {
            let frame = &mut out[range];
            if let (true, Some(peer)) = (fx.flags() & crate::faults::JOURNAL != 0, peer) {
                fx.journal
                    .record("in", peer, None, &frame[format.header_len()..]);
            }
            let mut active = fx.active();
            while let Some(a) = &active {
                match faults::tcp::decide(fx, a, f.seen) {
                    faults::tcp::Action::Reset => return Ok(Some(End::FaultReset)),
                    faults::tcp::Action::Stall => {
                        if let Some(end) = self.stall(f, a).await {
                            return Ok(Some(end));
                        }
                        active = fx.active();
                        continue;
                    }
                    faults::tcp::Action::Echo { delay } => {
                        if !delay.is_zero() {
                            tokio::select! {
                                biased;
                                _ = self.ctx.abort.cancelled() => return Ok(Some(End::Aborted { pending: frame.len() })),
                                _ = tokio::time::sleep(delay) => {}
                            }
                        }
                        faults::tcp::maybe_corrupt(fx, a, format, frame);
                        break;
                    }
                }
            }
            match &active {
                Some(a) if faults::tcp::paced(a) => {
                    tokio::select! {
                        biased;
                        _ = self.ctx.abort.cancelled() => return Ok(Some(End::Aborted { pending: frame.len() })),
                        r = faults::tcp::write_paced(fx, a, stream, frame) => r?,
                    }
                    f.last_activity = Instant::now();
                }
                _ => {
                    if let Some(end) = self.write_back(stream, frame, &mut f.last_activity).await? {
                        return Ok(Some(end));
                    }
                }
            }
            f.seen += 1;
            let m = &self.ctx.metrics;
            m.msgs_out.inc();
            m.bytes_out.inc_by(frame.len() as u64);
            if let Some(a) = &active
                && faults::tcp::close_after(fx, a, f.seen)
            {
                stream.shutdown().await?;
                return Ok(Some(End::FaultClose));
            }
        }
        Ok(None)
    }

    /// `stall_after_frames`: read and echo nothing until the faults change
    /// (then the caller decides again) or the connection must end.
    async fn stall(&self, f: &mut Flow, decided: &Arc<faults::Active>) -> Option<End> {
        let fx = &self.ctx.fixture;
        let changed = fx.changed.notified();
        tokio::pin!(changed);
        // Registered before we look again, so a change in between is not missed.
        changed.as_mut().enable();
        if !fx.active().is_some_and(|now| Arc::ptr_eq(&now, decided)) {
            return None;
        }
        fx.count("stall_after_frames");
        tokio::select! {
            biased;
            _ = self.ctx.abort.cancelled() => Some(End::Aborted { pending: 0 }),
            _ = self.ctx.drain.cancelled() => Some(End::Drained),
            _ = changed => {
                f.last_activity = Instant::now();
                None
            }
        }
    }
    /// Nothing more to take: at a frame boundary a graceful close (FIN; the
    /// lingering read follows in `serve`), else the deadline cut a frame.
    async fn close_at_deadline(&self, stream: &mut TcpStream, pending: usize) -> io::Result<End> {
        if pending > 0 {
            return Ok(End::Aborted { pending });
        }
        stream.shutdown().await?;
        Ok(End::Drained)
    }

    /// Writes `out` fully, or says why it could not: the peer accepted
    /// nothing for `idle_timeout` (it stopped reading), or the drain deadline passed.
    async fn write_back(
        &self,
        stream: &mut TcpStream,
        mut out: &[u8],
        last_activity: &mut Instant,
    ) -> io::Result<Option<End>> {
        // Fast path: the socket buffer usually takes everything at once.
        match stream.try_write(out) {
            Ok(n) => out = &out[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if !out.is_empty() {
            // Boxed: the waiting state is large and rarely needed, and keeping it out
            // of the connection's future keeps every idle connection small.
            if let Some(end) = Box::pin(self.write_rest(stream, out)).await? {
                return Ok(Some(end));
            }
            // The peer took our bytes after a wait: that is activity too.
            *last_activity = Instant::now();
        }
        Ok(None)
    }

    /// The slow path of [`Self::write_back`]: wait for room in the socket buffer.
    async fn write_rest(&self, stream: &mut TcpStream, mut out: &[u8]) -> io::Result<Option<End>> {
        let stall = self.live.idle_timeout().max(Duration::from_millis(1));
        while !out.is_empty() {
            tokio::select! {
                biased;
                _ = self.ctx.abort.cancelled() => return Ok(Some(End::Aborted { pending: out.len() })),
                _ = tokio::time::sleep(stall) => return Ok(Some(End::WriteStalled)),
                r = stream.writable() => r?,
            }
            match stream.try_write(out) {
                Ok(n) => out = &out[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// A connection's place under `max_connections`, given back when it ends
/// (also on a panic). A reference, not an `OwnedSemaphorePermit`: 8 B less
/// on every idle connection.
struct Slot<'a>(&'a Pool);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A lingering close: shut our write side (FIN after every echo), then read
/// and discard until the peer closes or [`LINGER`] passes, so that input we
/// never read cannot make close() send an RST over the peer's unread echoes.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// The peer's address for the end-of-connection log line; after a reset the
/// socket no longer knows it. Asked only when a line is logged (tracing
/// evaluates fields of enabled events only), so a normal close costs no call.
struct Peer(Option<SocketAddr>);

impl Peer {
    fn of(stream: &TcpStream) -> Peer {
        Peer(stream.peer_addr().ok())
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("unknown (connection reset)"),
        }
    }
}

fn io_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "connection_reset",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::ConnectionAborted => "connection_aborted",
        _ => "io",
    }
}
