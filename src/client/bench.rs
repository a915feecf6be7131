//! `netservd bench URL`: a load generator for framed TCP echo and UDP echo
//! that verifies every echo.
//!
//! Flow: parse and check the flags -> start `--threads` OS threads, each with
//! its own single-threaded runtime (no cross-thread wake-ups on the hot path;
//! pin the process with `taskset` for stable numbers) -> spread the `-c`
//! connections over them (`bench_tcp` / `bench_udp`), all sharing one clock:
//! `--warmup`, then `-d` measured -> print a progress line each second from
//! the shared counter -> merge the threads' tallies (HDR histogram of round
//! trips, counts of verified replies, mismatches, losses) -> print a table, or
//! one JSON object with `--json` (`bench_report`). Exit 1 if any echo was wrong, any
//! connection failed, nothing came back, or more than 1 % of the messages were
//! lost (unless `--allow-loss`); losses with fast echoes get a hint that they
//! look like the service's per-source `rate_limit`.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};

use tokio::time::Instant;

use super::bench_msg::{Payload, Plan, Recorder, SOCKPERF_HEADER, Tally};
use super::bench_report::{Report, print_table, report};
use super::bench_tcp::TcpConn;
use super::bench_udp::UdpConn;
use super::{FrameArgs, Proto, Target, parse_duration};
use crate::frame::FrameFormat;
use crate::{EXIT_FAILURE, EXIT_OK};

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65507;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// tcp://host:port (framed echo) or udp://host:port (datagram echo).
    pub url: Target,
    /// Connections (TCP) or sockets (UDP).
    #[arg(short = 'c', long, default_value_t = 1)]
    pub connections: usize,
    /// Payload bytes per message (TCP: excluding the length field).
    #[arg(short = 's', long, default_value_t = 64)]
    pub size: usize,
    /// Measured time, after the warm-up.
    #[arg(short = 'd', long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time to run before measuring (connections are opened during it).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// TCP: frames in flight per connection.
    #[arg(long)]
    pub pipeline: Option<usize>,
    /// UDP: datagrams in flight per socket.
    #[arg(long)]
    pub window: Option<usize>,
    /// Generator threads, each with its own single-threaded runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// UDP: a datagram unanswered this long is counted lost and replaced.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub loss_timeout: Duration,
    /// UDP: messages carry a sockperf header (needs -s >= 14), so `sockperf server` answers them;
    /// replies may clear the client flag.
    #[arg(long)]
    pub sockperf: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Exit 0 even when more than 1 % of the messages were lost.
    #[arg(long)]
    pub allow_loss: bool,
    #[command(flatten)]
    pub frame: FrameArgs,
}

pub async fn run(a: Args) -> i32 {
    match bench(&a).await {
        Ok(r) => {
            if a.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                print_table(&r);
            }
            let lossy = loss_verdict(&a, &r);
            if let Some(why) = &lossy {
                eprintln!("bench: {why}");
            }
            let too_lossy = lossy.is_some() && !a.allow_loss;
            if r.mismatches > 0 || !r.errors.is_empty() || r.messages == 0 || too_lossy {
                EXIT_FAILURE
            } else {
                EXIT_OK
            }
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Most lost messages, as a share of those sent, before bench fails.
const MAX_LOSS: f64 = 0.01;

/// `Some(explanation)` when more than [`MAX_LOSS`] of the messages were lost.
/// Losses while the echoes that did come back were quick (p99 under a
/// quarter of `--loss-timeout`) mean the service dropped rather than queued:
/// what a per-source `rate_limit` does.
fn loss_verdict(a: &Args, r: &Report) -> Option<String> {
    let sent = r.messages + r.lost;
    if sent == 0 || (r.lost as f64) <= MAX_LOSS * sent as f64 {
        return None;
    }
    let pct = 100.0 * r.lost as f64 / sent as f64;
    let mut why = format!(
        "lost {} of {sent} messages ({pct:.1} %), more than 1 %",
        r.lost
    );
    let quick = r.latency_us.p99 < a.loss_timeout.as_secs_f64() * 1e6 / 4.0;
    if a.url.proto == Proto::Udp && quick {
        why.push_str(&format!(
            "; the echoes that came back were quick (p99 {:.1} us) at {:.0} msgs/s, so this looks like \
             a rate limit: a udp_echo with rate_limit answers each source at most per_source times a \
             second (see its `rate_limit` in the config and netservd_drops_total{{reason=\"rate_limited\"}} in /metrics); \
             raise it, or measure with fewer msgs/s",
            r.latency_us.p99, r.msgs_per_s
        ));
    }
    if !a.allow_loss {
        why.push_str("; pass --allow-loss to exit 0 anyway");
    }
    Some(why)
}

/// Message depth for the URL's protocol, refusing the other protocol's flag.
fn depth(a: &Args) -> Result<usize> {
    let d = match (a.url.proto, a.pipeline, a.window) {
        (Proto::Tcp, _, Some(_)) => {
            bail!("--window applies to udp:// targets; use --pipeline for tcp://")
        }
        (Proto::Udp, Some(_), _) => {
            bail!("--pipeline applies to tcp:// targets; use --window for udp://")
        }
        (Proto::Tcp, p, None) => p.unwrap_or(1),
        (Proto::Udp, None, w) => w.unwrap_or(1),
    };
    if d == 0 || d > 65536 {
        bail!("messages in flight must be 1..=65536, got {d}");
    }
    Ok(d)
}

fn check(a: &Args) -> Result<(usize, FrameFormat)> {
    let depth = depth(a)?;
    if a.connections == 0 || a.connections > 100_000 {
        bail!("-c must be 1..=100000, got {}", a.connections);
    }
    if a.threads == 0 || a.threads > 256 {
        bail!("--threads must be 1..=256, got {}", a.threads);
    }
    if a.duration.is_zero() {
        bail!("-d must be longer than 0s");
    }
    let format = a.frame.format(u64::MAX);
    match a.url.proto {
        Proto::Tcp if a.size as u64 > FrameFormat::max_expressible(a.frame.length_field_bytes) => {
            bail!(
                "-s {} does not fit a {}-byte length field (max {})",
                a.size,
                a.frame.length_field_bytes,
                FrameFormat::max_expressible(a.frame.length_field_bytes)
            )
        }
        Proto::Tcp if a.size > 64 << 20 => bail!(
            "-s {} is over the 64 MiB the generator allows per frame",
            a.size
        ),
        Proto::Udp if a.size > MAX_DATAGRAM => bail!(
            "-s {} is over the largest UDP payload ({MAX_DATAGRAM})",
            a.size
        ),
        Proto::Udp if a.sockperf && a.size < SOCKPERF_HEADER => bail!(
            "--sockperf needs -s >= {SOCKPERF_HEADER} (its header), got {}",
            a.size
        ),
        Proto::Tcp if a.sockperf => bail!("--sockperf applies to udp:// targets only"),
        _ => Ok((depth, format)),
    }
}

async fn bench(a: &Args) -> Result<Report> {
    let (depth, format) = check(a)?;
    let start = Instant::now();
    let plan = Plan {
        warm_end: start + a.warmup,
        end: start + a.warmup + a.duration,
        loss_timeout: a.loss_timeout,
    };
    let progress = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for th in 0..a.threads {
        let conns: Vec<usize> = (th..a.connections).step_by(a.threads).collect();
        if conns.is_empty() {
            continue;
        }
        let (a, progress) = (a.clone(), progress.clone());
        let h = std::thread::Builder::new()
            .name(format!("bench-{th}"))
            .spawn(move || generator(&a, depth, format, plan, progress, conns.len()))?;
        handles.push(h);
    }
    let joined = tokio::task::spawn_blocking(move || {
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    tokio::pin!(joined);
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last = 0;
    let results = loop {
        tokio::select! {
            r = &mut joined => break r?,
            _ = tick.tick(), if !a.quiet => {
                let now = progress.load(Ordering::Relaxed);
                let phase = if Instant::now() < plan.warm_end { "warm-up" } else { "measuring" };
                eprint!("\r{phase:9} {:>5.1}s  {:>12.0} msgs/s   ", start.elapsed().as_secs_f64(), (now - last) as f64);
                let _ = std::io::stderr().flush();
                last = now;
            }
        }
    };
    if !a.quiet {
        eprintln!();
    }
    let mut total = Tally::new();
    for r in results {
        match r {
            Ok(t) => total.merge(t),
            Err(_) => total.errors.push("a generator thread panicked".into()),
        }
    }
    Ok(report(a, depth, total, progress.load(Ordering::Relaxed)))
}

/// One generator thread: a current-thread runtime running `n` connections to completion.
fn generator(
    a: &Args,
    depth: usize,
    format: FrameFormat,
    plan: Plan,
    progress: Arc<AtomicU64>,
    n: usize,
) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::new()));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tally
                .borrow_mut()
                .errors
                .push(format!("cannot start a generator runtime: {e}"));
            return Rc::try_unwrap(tally)
                .map(RefCell::into_inner)
                .unwrap_or_else(|_| Tally::new());
        }
    };
    let payload = Payload::new(a.size, a.sockperf);
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let rec = Recorder {
            tally: tally.clone(),
            progress,
            plan,
        };
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (rec, payload, proto, addr) = (rec.clone(), &payload, a.url.proto, a.url.addr);
            // Each connection is polled by this thread only; borrowing `payload` is fine
            // because every task is awaited below, before it goes out of scope.
            tasks.push(async move {
                let r = match proto {
                    Proto::Tcp => {
                        TcpConn {
                            addr,
                            format,
                            payload,
                            pipeline: depth,
                            rec: rec.clone(),
                        }
                        .run()
                        .await
                    }
                    Proto::Udp => {
                        UdpConn {
                            addr,
                            payload,
                            window: depth,
                            rec: rec.clone(),
                        }
                        .run()
                        .await
                    }
                };
                if let Err(e) = r {
                    rec.tally.borrow_mut().errors.push(format!("{e:#}"));
                }
            });
        }
        futures_util::future::join_all(tasks).await;
    });
    drop(local);
    Rc::try_unwrap(tally)
        .map(RefCell::into_inner)
        .unwrap_or_else(|_| Tally::new())
}
