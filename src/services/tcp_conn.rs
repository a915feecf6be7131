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
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;
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
/// 64 KiB was just short of 16 pipelined 4 KiB frames (65,600 B), so each
/// burst took two reads and a reallocation that copied the partial frame:
/// 0.126 reads per message against the C echo's 0.062 (256 KiB buffer);
/// 128 KiB gives 0.064.
const MAX_READ: usize = 128 * 1024;
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

/// One spare read buffer per runtime thread. A connection gives its buffer
/// up whenever it is idle at a frame boundary, which under pipelined load is
/// after every burst; its next read would allocate again, and a buffer grown
/// past jemalloc's thread cache (32 KiB) costs an arena lock and extent work
/// both ways (2.4 % of server CPU at TCP 4 KiB 64x16 in perf). The thread's
/// next connection to read takes the spare instead. Connections on one thread
/// run one at a time, so one spare serves them all; idle ones still hold none.
mod spare {
    // Debian's clippy 1.96 for the Windows targets (.ci/windows.sh) flags this
    // `thread_local!` as "can be made const" although it is `const` already.
    #![allow(clippy::missing_const_for_thread_local)]

    use std::cell::Cell;

    use bytes::BytesMut;

    /// Larger buffers (a big frame's) are freed rather than kept.
    const KEEP_MAX: usize = 2 * super::MAX_READ;

    thread_local! {
        static SPARE: Cell<Option<BytesMut>> = const { Cell::new(None) };
    }

    /// Keeps `buf` (empty) as this thread's spare, freeing the one it replaces.
    pub fn put(mut buf: BytesMut) {
        if buf.capacity() <= KEEP_MAX {
            buf.clear();
            SPARE.with(|s| s.set(Some(buf)));
        }
    }

    /// This thread's spare buffer, or a new empty one.
    pub fn take() -> BytesMut {
        SPARE.with(Cell::take).unwrap_or_default()
    }
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

/// Writes what the socket buffer takes now, without waiting: the count (0
/// when it is full).
fn try_write(stream: &TcpStream, out: &[u8]) -> io::Result<usize> {
    match stream.try_write(out) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// What woke a waiting connection, in the order [`Conn::wait`] looks.
enum Woke {
    Cancelled,
    Timer,
    Readable,
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
    /// The connection's cancellation waiter watches `abort` (after draining began), not `drain`.
    watching_abort: bool,
    /// That waiter holds this task's waker: a wake-up need only check the token.
    registered: bool,
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
    /// The next read's size: grows from [`MIN_READ`] to [`MAX_READ`] while reads come back full.
    read_size: u32,
    /// Frames echoed on the faults path (`close_after_frames` and the like count these).
    seen: u64,
}

/// What the wait step of [`Conn::echo`] decided before waiting.
enum Plan {
    /// No wait: this step now.
    Go(Step),
    /// Yield to the runtime first (the per-turn cap), then park or read.
    Wait { yield_first: bool, park: bool },
}

/// What [`Conn::echo_frames`] could do without waiting.
enum Echoed {
    /// Everything; the connection ends if this says so.
    Done(Option<End>),
    /// It has to wait: [`Conn::echo_later`] finishes.
    Later(Later),
}

/// Where [`Conn::echo_frames`] stopped: `complete` bytes (`frames` frames)
/// to echo, `written` of them already out; `faulty`: faults or a journal
/// take the frame-by-frame path; `bad`: a header past them is oversized.
struct Later {
    complete: usize,
    frames: u64,
    written: usize,
    bad: bool,
    faulty: bool,
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
    /// `permits` for it and forgot it; it is given back when this ends, and
    /// so is `held` (its places under the per-source and descriptor limits).
    /// `in_span`: the task runs in a span of its own, so the end is logged there.
    ///
    /// Every byte of this future is paid by every idle connection (the task
    /// is rounded up to 128 B): locals that live across an `.await` are kept
    /// few on purpose, and the peer's address is asked of the socket when logged.
    /// Two layouts rustc does not overlap cost a copy each, so neither is used:
    /// an `async fn` keeps its arguments twice (as passed, and as the body's
    /// bindings: rust-lang/rust#62958), hence an `async move` block that
    /// uses its captures in place; and a wrapping `async fn` that takes this
    /// future and awaits it would keep it twice, hence `held` is passed in.
    /// Such a wrapper was most of what took an idle connection from 920 B to
    /// 1.8 KiB; `/debug/allocator`'s `tcp_connection_future` shows the size.
    pub fn serve(
        self: Arc<Self>,
        mut stream: TcpStream,
        held: impl Send,
        in_span: bool,
    ) -> impl Future<Output = ()> + Send {
        // Made before the block, so a task dropped before its first poll
        // gives its place back too; `held` and `stream` are used in place.
        let conn = Slot(self);
        async move {
            if conn.ctx.fixture.flags() & crate::faults::FAULTS != 0
                && faults::tcp::refuse(&conn.ctx.fixture)
            {
                net::reset_on_close(&stream);
                return;
            }
            conn.ctx.metrics.active.inc();
            let end = conn.echo(&mut stream).await;
            let lingering = matches!(
                end,
                Ok(End::Drained
                    | End::TooLarge(_)
                    | End::IdleTimeout
                    | End::FrameTimeout { .. }
                    | End::FaultClose)
            );
            {
                // Entered only for these lines: a span held entered across an
                // await would stay entered on the thread for whatever runs next.
                let _entered = (!in_span).then(|| conn.span.enter());
                conn.ctx.metrics.active.dec();
                conn.log_end(&stream, end);
            }
            if lingering {
                // Boxed: only closing connections pay for its state.
                Box::pin(linger(&mut stream)).await;
            }
            // A non-zero SO_LINGER makes close() block until the data is sent or
            // the linger time passes, even on a non-blocking socket (Linux): never
            // on a runtime worker.
            if conn.cfg.socket.linger.is_some_and(|d| !d.is_zero())
                && let Ok(std) = stream.into_std()
            {
                tokio::task::spawn_blocking(move || drop(std));
            }
            drop(held);
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

    /// The connection's loop. Every byte of its state is paid by every idle
    /// connection, so the steps are plain functions and the only awaits
    /// here are small: the wait itself (a `poll_fn` over references), a
    /// yield, a shutdown; whatever else can wait is boxed where it starts.
    async fn echo(&self, stream: &mut TcpStream) -> io::Result<End> {
        // Settings and handles are read through `self` where used rather than
        // copied into locals, which would live in the future across every await.
        let mut buf = BytesMut::new();
        let mut f = Flow {
            draining: self.ctx.drain.is_cancelled(),
            deadline: false,
            watching_abort: false,
            registered: false,
            last_activity: Instant::now(),
            frame_started: None,
            maybe_more: false,
            turn_reads: 0,
            turn_bytes: 0,
            read_size: MIN_READ as u32,
            seen: 0,
        };
        let timer = tokio::time::sleep(self.live.idle_timeout());
        tokio::pin!(timer);
        // One cancellation waiter for the connection's life, not one per wait
        // (each new one takes the token's lock to register and again to leave):
        // `drain` until draining begins, then `abort`. `drain` is a child of
        // `abort` (daemon.rs), so watching `drain` first misses nothing.
        let watch = self.ctx.drain.cancelled();
        tokio::pin!(watch);

        loop {
            if buf.is_empty() {
                f.frame_started = None;
                if buf.capacity() > 0 {
                    // Idle at a boundary: hold no buffer.
                    spare::put(std::mem::take(&mut buf));
                }
            }
            if f.draining && !f.watching_abort {
                watch.set(self.ctx.abort.cancelled());
                (f.watching_abort, f.registered) = (true, false);
            }
            // When draining with nothing pending, or past the deadline, we only
            // take what already arrived.
            let wait = !(f.deadline || (f.draining && buf.is_empty()));
            let step = match self.plan(&mut f, wait) {
                Plan::Go(step) => step,
                Plan::Wait { yield_first, park } => {
                    if yield_first {
                        // Per-turn cap: this connection had its share; let the others run.
                        tokio::task::yield_now().await;
                    }
                    (f.turn_reads, f.turn_bytes) = (0, 0);
                    if park {
                        let woke = std::future::poll_fn(|cx| {
                            self.poll_wake(cx, stream, &mut f, timer.as_mut(), watch.as_mut())
                        });
                        let woke = woke.await?;
                        self.on_wake(woke, &mut f, timer.as_mut(), buf.len())
                    } else {
                        Step::Read
                    }
                }
            };
            match step {
                Step::Read => {}
                Step::Again => continue,
                Step::End(end) => return Ok(end),
                Step::AtDeadline => return self.close_at_deadline(stream, buf.len()).await,
            }
            if buf.capacity() == 0 {
                buf = spare::take();
            }
            if buf.capacity() - buf.len() < f.read_size as usize {
                buf.reserve(f.read_size as usize);
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
            // `>=`: the spare room can exceed the size asked for (allocator rounding).
            if n >= f.read_size as usize {
                f.read_size = (f.read_size * 2).min(MAX_READ as u32);
            }
            f.last_activity = Instant::now();
            self.ctx.metrics.bytes_in.inc_by(n as u64);
            let end = match self.echo_frames(stream, &mut buf, &mut f)? {
                Echoed::Done(end) => end,
                // Boxed: only a connection that has to wait pays for that state.
                Echoed::Later(later) => {
                    Box::pin(self.echo_later(stream, &mut buf, &mut f, later)).await?
                }
            };
            if let Some(end) = end {
                return Ok(end);
            }
            self.arm_frame_timer(&buf, &mut f, timer.as_mut());
        }
    }

    /// The wait step of [`Self::echo`], before it waits: on the fast path
    /// (the last read returned data) only the cancellation flags are checked;
    /// past the deadline or draining idle, the per-turn cap decides;
    /// otherwise the connection parks.
    fn plan(&self, f: &mut Flow, wait: bool) -> Plan {
        let fast = wait && f.maybe_more && f.turn_reads < TURN_READS && f.turn_bytes < TURN_BYTES;
        if fast {
            if self.ctx.abort.is_cancelled() {
                f.deadline = true;
                return Plan::Go(Step::Again);
            }
            if !f.draining && self.ctx.drain.is_cancelled() {
                f.draining = true;
                return Plan::Go(Step::Again);
            }
            return Plan::Go(Step::Read);
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
                    return Plan::Go(Step::AtDeadline);
                }
                return Plan::Wait {
                    yield_first: true,
                    park: false,
                };
            }
            return Plan::Go(Step::Read);
        }
        Plan::Wait {
            yield_first: f.maybe_more,
            park: true,
        }
    }

    /// Polls what a parked connection waits for, in priority order (a
    /// cancellation, the timer, data). `watch` is polled until it holds this
    /// task's waker; after that a wake-up only checks the token's flag.
    fn poll_wake(
        &self,
        cx: &mut std::task::Context<'_>,
        stream: &TcpStream,
        f: &mut Flow,
        timer: Pin<&mut tokio::time::Sleep>,
        watch: Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Poll<io::Result<Woke>> {
        let cancelled = if f.registered {
            if f.watching_abort {
                &self.ctx.abort
            } else {
                &self.ctx.drain
            }
            .is_cancelled()
        } else {
            let ready = watch.poll(cx).is_ready();
            f.registered = !ready;
            ready
        };
        if cancelled {
            return Poll::Ready(Ok(Woke::Cancelled));
        }
        if timer.poll(cx).is_ready() {
            return Poll::Ready(Ok(Woke::Timer));
        }
        // poll_read_ready keeps the waker in the socket's own slot; the
        // `readable()` future would add ~150 B to every idle connection.
        stream.poll_read_ready(cx).map_ok(|()| Woke::Readable)
    }

    /// What a parked connection does with what woke it.
    fn on_wake(
        &self,
        woke: Woke,
        f: &mut Flow,
        mut timer: Pin<&mut tokio::time::Sleep>,
        pending: usize,
    ) -> Step {
        match woke {
            Woke::Cancelled => {
                if f.draining {
                    f.deadline = true;
                }
                f.draining = true;
                Step::Again
            }
            Woke::Timer => {
                let (idle, frame_timeout) = (self.live.idle_timeout(), self.live.frame_timeout());
                let now = Instant::now();
                if f.frame_started.is_some_and(|t| now >= t + frame_timeout) {
                    return Step::End(End::FrameTimeout { pending });
                }
                if now >= f.last_activity + idle {
                    return Step::End(End::IdleTimeout);
                }
                let next = f.frame_started.map_or(f.last_activity + idle, |t| {
                    (t + frame_timeout).min(f.last_activity + idle)
                });
                timer.as_mut().reset(next);
                Step::Again
            }
            Woke::Readable => Step::Read,
        }
    }

    /// The echo step of [`Self::echo`]: writes back the complete frames at
    /// the front of `buf`, or ends the connection on an oversized header.
    /// The usual case, where the socket buffer takes every byte at once,
    /// waits for nothing; what has to wait (a full socket buffer, faults or
    /// a journal) is handed to [`Self::echo_later`].
    fn echo_frames(
        &self,
        stream: &TcpStream,
        buf: &mut BytesMut,
        f: &mut Flow,
    ) -> io::Result<Echoed> {
        let format = self.format_now();
        let scan = format.scan(buf);
        let (complete, frames, bad) = (scan.complete, scan.frames, scan.error.is_some());
        if complete > 0 {
            self.ctx.metrics.msgs_in.inc_by(frames);
            // The one check a service without faults or journal pays (one relaxed load).
            if self.ctx.fixture.flags() != 0 {
                return Ok(Echoed::Later(Later {
                    complete,
                    frames,
                    written: 0,
                    bad,
                    faulty: true,
                }));
            }
            let written = try_write(stream, &buf[..complete])?;
            if written < complete {
                return Ok(Echoed::Later(Later {
                    complete,
                    frames,
                    written,
                    bad,
                    faulty: false,
                }));
            }
        }
        Ok(Echoed::Done(self.echoed(buf, f, complete, frames, bad)))
    }

    /// The rest of [`Self::echo_frames`] where it had to wait.
    async fn echo_later(
        &self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        f: &mut Flow,
        l: Later,
    ) -> io::Result<Option<End>> {
        let Later {
            complete,
            frames,
            written,
            bad,
            faulty,
        } = l;
        if faulty {
            let format = self.format_now();
            if let Some(end) = self
                .echo_faulty(stream, &format, &mut buf[..complete], f)
                .await?
            {
                return Ok(Some(end));
            }
            // echo_faulty counted its own echoes.
            return Ok(self.echoed(buf, f, complete, 0, bad));
        }
        if let Some(end) = self.write_rest(stream, &buf[written..complete]).await? {
            return Ok(Some(end));
        }
        // The peer took our bytes after a wait: that is activity too.
        f.last_activity = Instant::now();
        Ok(self.echoed(buf, f, complete, frames, bad))
    }

    /// The frames at the front of `buf` went out: count `frames` of them
    /// (`complete` bytes), drop them, and end the connection if the next
    /// header declares an oversized frame.
    fn echoed(
        &self,
        buf: &mut BytesMut,
        f: &mut Flow,
        complete: usize,
        frames: u64,
        bad: bool,
    ) -> Option<End> {
        if complete > 0 {
            if frames > 0 {
                let m = &self.ctx.metrics;
                m.msgs_out.inc_by(frames);
                m.bytes_out.inc_by(complete as u64);
            }
            buf.advance(complete);
            f.frame_started = None;
        }
        if bad && let Some(e) = self.format_now().scan(buf).error {
            return Some(End::TooLarge(e));
        }
        None
    }

    /// The framing with the frame limit as the latest reload set it.
    fn format_now(&self) -> FrameFormat {
        FrameFormat {
            max_frame: self.live.max_frame(),
            ..self.format
        }
    }

    /// A partial frame waits in `buf`: start its `frame_timeout` from the
    /// read that began it (the timer fires for whichever deadline is first).
    fn arm_frame_timer(&self, buf: &BytesMut, f: &mut Flow, timer: Pin<&mut tokio::time::Sleep>) {
        if !buf.is_empty() && f.frame_started.is_none() {
            f.frame_started = Some(f.last_activity);
            let due = f.last_activity + self.live.frame_timeout();
            if due < timer.deadline() {
                timer.reset(due);
            }
        }
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
        out = &out[try_write(stream, out)?..];
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
/// (also on a panic, or a task dropped unpolled). It is the connection's
/// handle on its service too: no separate permit or reference, 8 B less on
/// every idle connection.
struct Slot(Arc<Conn>);

impl std::ops::Deref for Slot {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.pool.release();
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
