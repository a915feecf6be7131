//! Log setup (text or JSON lines on stderr, filtered by `RUST_LOG`) and a
//! rate limiter for warnings a flood could repeat thousands of times a second.

use std::time::{Duration, Instant};

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, message, service and fields, spans.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
            .is_ok(),
        LogFormat::Json => {
            // One object per line: timestamp, level, target, message and the
            // event's fields at the top, plus the fields of the enclosing spans
            // (`service`, `kind`, `local_addr`, `peer`) at the top too, so a
            // collector can filter by service without digging into `spans`.
            let mut json = json_subscriber::JsonLayer::stderr();
            json.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
                .with_level("level")
                .with_target("target")
                .with_flattened_event()
                .with_top_level_flattened_span_list()
                .with_current_span("span")
                .with_span_list("spans");
            tracing_subscriber::registry()
                .with(filter)
                .with(json)
                .try_init()
                .is_ok()
        }
    };
}

/// Lets one message through per `every`; counts what it held back.
#[derive(Debug)]
pub struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub const fn new(every: Duration) -> Self {
        RateLimited {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held
    /// back since the last one; `None` to stay quiet.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A duration for people: milliseconds with at most 3 decimals ("0.785ms",
/// "12.3ms"), never Debug's nanosecond digits.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    let text = format!("{ms:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}ms")
}

/// Milliseconds rounded to 3 decimals, for a log field or JSON number.
pub fn ms_f64(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
