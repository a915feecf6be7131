//! Log setup (text or JSON lines on stderr, filtered by `RUST_LOG`) and a
//! rate limiter for warnings a flood could repeat thousands of times a second.
//!
//! Text logs are coloured only for a terminal: `--color auto` (the default)
//! colours when stderr is one and `NO_COLOR` is unset, `CLICOLOR_FORCE`
//! forces colour, `--color always|never` overrides both. JSON logs carry the
//! event's fields at the top level and the fields of the enclosing spans
//! once, merged, under `span`; the `ready` event's `services` becomes an
//! array of `{name, url}`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message, the event's fields, and `span`.
    Json,
}

/// When text output is coloured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it).
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream that is (`terminal`) or is not a terminal,
    /// given the environment (`NO_COLOR`, `CLICOLOR_FORCE`; see no-color.org
    /// and bixense.com/clicolors).
    pub fn colour(self, terminal: bool, env: impl Fn(&str) -> Option<String>) -> bool {
        let set = |k: &str| env(k).is_some_and(|v| !v.is_empty() && v != "0");
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto if set("CLICOLOR_FORCE") => true,
            ColorChoice::Auto => terminal && env("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

/// The filter from `RUST_LOG` (default `info` when unset or empty); an
/// invalid one is an error that names it, never silently replaced.
pub fn filter() -> Result<EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => EnvFilter::builder().parse(&s).map_err(|e| {
            format!(
                "invalid RUST_LOG {s:?}: {e}; write a level (error, warn, info, debug, trace) or \
                 TARGET=LEVEL pairs separated by commas, e.g. RUST_LOG=info or RUST_LOG=netservd=debug"
            )
        }),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(EnvFilter::new("info")),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err("invalid RUST_LOG: it is not valid UTF-8".to_string())
        }
    }
}

/// Installs the global subscriber; fails only on an invalid `RUST_LOG`.
pub fn init(format: LogFormat, color: ColorChoice) -> Result<(), String> {
    let filter = filter()?;
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(color.colour(std::io::stderr().is_terminal(), |k| std::env::var(k).ok()))
            .with_writer(std::io::stderr)
            .try_init()
            .is_ok(),
        LogFormat::Json => {
            // The event's own fields at the top (written by `event_fields`,
            // which turns `services` into an array); the enclosing spans'
            // fields once, merged (innermost wins), under `span`. Flattening
            // span fields at the top as well would repeat them and add each
            // span's `name` at the top level.
            let mut json = json_subscriber::JsonLayer::stderr();
            json.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
                .with_level("level")
                .with_target("target")
                .with_flattened_span_fields("span");
            json.add_multiple_dynamic_fields(|event, _, writer| {
                let mut fields = EventFields(Map::new());
                event.record(&mut fields);
                for (k, v) in fields.0 {
                    let _ = writer.write_field(&k, v);
                }
            });
            tracing_subscriber::registry()
                .with(filter)
                .with(json)
                .try_init()
                .is_ok()
        }
    };
    Ok(())
}

/// An event's fields as JSON values: numbers and booleans as such, the rest
/// as their text; `services` (`a=tcp://... b=udp://...`) as `[{name, url}]`.
struct EventFields(Map<String, Value>);

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let v = if field.name() == "services" {
            services_array(value)
        } else {
            Value::from(value)
        };
        self.0.insert(field.name().to_string(), v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

/// `a=tcp://127.0.0.1:7 b=udp://...` -> `[{"name":"a","url":"tcp://127.0.0.1:7"}, ...]`.
pub fn services_array(s: &str) -> Value {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(name, url)| serde_json::json!({ "name": name, "url": url }))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_terminal_no_color_and_clicolor_force() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let auto = ColorChoice::Auto;
        assert!(auto.colour(true, env(&[])));
        assert!(!auto.colour(false, env(&[])));
        assert!(!auto.colour(true, env(&[("NO_COLOR", "1")])));
        assert!(auto.colour(true, env(&[("NO_COLOR", "")])));
        assert!(auto.colour(false, env(&[("CLICOLOR_FORCE", "1")])));
        assert!(!auto.colour(false, env(&[("CLICOLOR_FORCE", "0")])));
        assert!(ColorChoice::Always.colour(false, env(&[("NO_COLOR", "1")])));
        assert!(!ColorChoice::Never.colour(true, env(&[("CLICOLOR_FORCE", "1")])));
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(ms(Duration::from_nanos(785_395)), "0.785ms");
        assert_eq!(ms(Duration::from_millis(12)), "12ms");
        assert_eq!(ms_f64(Duration::from_nanos(785_395_123)), 785.395);
    }

    #[test]
    fn services_become_name_url_objects() {
        assert_eq!(
            services_array("a=tcp://127.0.0.1:7 b=udp://[::1]:9"),
            serde_json::json!([
                { "name": "a", "url": "tcp://127.0.0.1:7" },
                { "name": "b", "url": "udp://[::1]:9" },
            ])
        );
    }
}
