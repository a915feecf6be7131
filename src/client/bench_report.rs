//! What `netservd bench` prints: the merged tallies of every generator thread
//! turned into rates and percentiles, as a table or as one JSON object
//! (`--json`, for scripts such as `bench/bench.py`).

use serde::Serialize;

use super::Proto;
use super::bench::Args;
use super::bench_msg::Tally;

/// The result, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub connections: usize,
    pub size: usize,
    /// Messages in flight per connection (TCP pipeline or UDP window).
    pub depth: usize,
    pub duration_s: f64,
    /// Verified replies received in the measured window.
    pub messages: u64,
    /// Every reply, warm-up included (for per-message server CPU cost).
    pub total_replies: u64,
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6) echoed per second, one direction.
    pub mb_per_s: f64,
    pub mismatches: u64,
    pub lost: u64,
    pub late: u64,
    pub errors: Vec<String>,
    pub latency_us: Latency,
}

/// Round-trip percentiles in microseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn report(a: &Args, depth: usize, t: Tally, total_replies: u64) -> Report {
    let secs = a.duration.as_secs_f64();
    let us = |q: f64| {
        if t.hist.is_empty() {
            0.0
        } else {
            t.hist.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let mut errors = t.errors;
    errors.sort();
    errors.dedup();
    Report {
        url: format!(
            "{}://{}",
            if a.url.proto == Proto::Tcp {
                "tcp"
            } else {
                "udp"
            },
            a.url.addr
        ),
        connections: a.connections,
        size: a.size,
        depth,
        duration_s: round3(secs),
        messages: t.msgs,
        total_replies,
        msgs_per_s: round3(t.msgs as f64 / secs),
        mb_per_s: round3(t.msgs as f64 * a.size as f64 / secs / 1e6),
        mismatches: t.mismatches,
        lost: t.lost,
        late: t.late,
        errors,
        latency_us: Latency {
            p50: us(0.5),
            p99: us(0.99),
            p999: us(0.999),
            max: if t.hist.is_empty() {
                0.0
            } else {
                t.hist.max() as f64 / 1000.0
            },
        },
    }
}

/// At most 3 decimals: more is noise, and unreadable in JSON.
fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

pub fn print_table(r: &Report) {
    let depth = if r.url.starts_with("tcp") {
        "pipeline"
    } else {
        "window"
    };
    println!(
        "target      {}  connections {}  {depth} {}  size {} B  measured {:.1}s",
        r.url, r.connections, r.depth, r.size, r.duration_s
    );
    println!(
        "throughput  {:.0} msgs/s  {:.1} MB/s  ({} verified echoes)",
        r.msgs_per_s, r.mb_per_s, r.messages
    );
    let l = &r.latency_us;
    println!(
        "latency     p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
        l.p50, l.p99, l.p999, l.max
    );
    println!(
        "errors      mismatches {}  lost {}  late {}  connection errors {}",
        r.mismatches,
        r.lost,
        r.late,
        r.errors.len()
    );
    for e in &r.errors {
        println!("  {e}");
    }
}
