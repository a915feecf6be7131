//! Reads `config.toml` into a validated [`Config`], or into every error it has,
//! each as `PATH:LINE:COL: message`.
//!
//! Flow: text -> `DeTable` (toml's spanned tree; all syntax errors at once) ->
//! each section and each service deserialized on its own (so one bad service
//! does not hide the errors of the next) -> `validate` (cross-field and
//! cross-service rules) -> errors mapped back to line:col through the spans
//! recorded from the tree.

mod de;
mod schema;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use de::duration::parse as parse_duration;
pub use de::{Keepalive, KeepaliveParams, parse_socket_addr};
pub use schema::*;
pub use validate::MAX_FRAME_LIMIT;

/// The shipped `config.toml`, compiled in so `netservd run` works from any directory.
pub const SHIPPED: &str = include_str!("../../config.toml");
/// How the shipped config is named in messages.
pub const SHIPPED_ORIGIN: &str = "<built-in config.toml>";

/// One problem, already placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Every problem found in one config file. Displays as one
/// `PATH:LINE:COL: message` line per problem.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub origin: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.origin, d.line, d.col, d.message)?;
        }
        Ok(())
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => parse(&src, &origin),
        Err(e) => Err(ConfigError {
            origin,
            diagnostics: vec![Diagnostic {
                line: 1,
                col: 1,
                message: format!(
                    "cannot read config file: {e}; pass --config PATH or set NETSERVD_CONFIG"
                ),
            }],
        }),
    }
}

/// Parses and validates `src`; `origin` names it in messages.
pub fn parse(src: &str, origin: &str) -> Result<Config, ConfigError> {
    let (root, syntax) = DeTable::parse_recoverable(src);
    let fail = |problems: Vec<(Range<usize>, String)>| ConfigError {
        origin: origin.to_string(),
        diagnostics: place(src, problems),
    };
    if !syntax.is_empty() {
        return Err(fail(
            syntax
                .iter()
                .map(|e| (e.span().unwrap_or(0..0), e.message().to_string()))
                .collect(),
        ));
    }
    let mut spans = HashMap::new();
    index_table("", root.get_ref(), &mut spans);
    let whole = root.span();

    let mut cfg = Config::default();
    let mut problems = Vec::new();
    // Per kind: the file index of each service that deserialized, so that
    // validation errors (which use `Config` indices) find their place.
    let mut file_index: HashMap<&'static str, Vec<usize>> = HashMap::new();
    for (key, value) in root.into_inner() {
        let section = key.get_ref().as_ref();
        match section {
            "daemon" => {
                if let Some(v) = one(value, "[daemon]", &mut problems) {
                    cfg.daemon = v;
                }
            }
            "admin" => cfg.admin = one(value, "[admin]", &mut problems),
            "tcp_echo" => cfg.tcp_echo = many(value, "tcp_echo", &mut file_index, &mut problems),
            "udp_echo" => cfg.udp_echo = many(value, "udp_echo", &mut file_index, &mut problems),
            "broadcast" => cfg.broadcast = many(value, "broadcast", &mut file_index, &mut problems),
            "multicast" => cfg.multicast = many(value, "multicast", &mut file_index, &mut problems),
            other => problems.push((
                key.span(),
                format!(
                    "unknown section `{other}`; expected one of [daemon], [admin], [[tcp_echo]], [[udp_echo]], [[broadcast]], [[multicast]]"
                ),
            )),
        }
    }

    // A truncated file (crashed editor, broken ConfigMap) must never stop every service.
    if file_index.is_empty() && no_services(&cfg) {
        problems.push((
            0..0,
            "config defines no services; add at least one [[tcp_echo]], [[udp_echo]], [[broadcast]] or [[multicast]] table (an empty or truncated file is refused, so it cannot stop what runs)".to_string(),
        ));
    }
    for issue in validate::validate(&cfg) {
        let at = issue.kind.map(|k| file_index[k][issue.index]);
        let mut path = match (issue.kind, at) {
            (Some(kind), Some(i)) => format!("{kind}[{i}]"),
            _ => issue.section.to_string(),
        };
        // The most precise span we have: the key itself, else its table.
        let mut span = spans.get(&path).cloned();
        for key in issue.keys {
            path = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            if let Some(s) = spans.get(&path) {
                span = Some(s.clone());
            }
        }
        problems.push((span.unwrap_or(whole.clone()), issue.message));
    }

    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(fail(problems))
    }
}

fn no_services(cfg: &Config) -> bool {
    cfg.tcp_echo.is_empty()
        && cfg.udp_echo.is_empty()
        && cfg.broadcast.is_empty()
        && cfg.multicast.is_empty()
}

/// Deserializes a single table (`[daemon]`, `[admin]`).
fn one<T: for<'a> Deserialize<'a>>(
    value: Spanned<DeValue<'_>>,
    what: &str,
    problems: &mut Vec<(Range<usize>, String)>,
) -> Option<T> {
    let span = value.span();
    T::deserialize(value.into_deserializer())
        .map_err(|e| problems.push((e.span().unwrap_or(span), format!("{what}: {}", e.message()))))
        .ok()
}

/// Deserializes an array of tables (`[[tcp_echo]]`...), each on its own.
fn many<T: for<'a> Deserialize<'a>>(
    value: Spanned<DeValue<'_>>,
    kind: &'static str,
    file_index: &mut HashMap<&'static str, Vec<usize>>,
    problems: &mut Vec<(Range<usize>, String)>,
) -> Vec<T> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        problems.push((
            span,
            format!("`{kind}` must be written as [[{kind}]] tables, one per service"),
        ));
        return Vec::new();
    };
    let indices = file_index.entry(kind).or_default();
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let span = item.span();
        let label = match item
            .get_ref()
            .get("name")
            .and_then(|n| n.get_ref().as_str())
        {
            Some(name) => format!("{kind} {name:?}"),
            None => format!("{kind}[{i}]"),
        };
        match T::deserialize(item.into_deserializer()) {
            Ok(v) => {
                out.push(v);
                indices.push(i);
            }
            Err(e) => problems.push((
                e.span().unwrap_or(span),
                format!("{label}: {}", e.message()),
            )),
        }
    }
    out
}

/// Records the span of every key's value under a dotted path such as
/// `tcp_echo[0].socket.linger`.
fn index_table(path: &str, table: &DeTable<'_>, out: &mut HashMap<String, Range<usize>>) {
    for (k, v) in table.iter() {
        let p = if path.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{path}.{}", k.get_ref())
        };
        out.insert(p.clone(), v.span());
        index_spans(p, v.get_ref(), out);
    }
}

fn index_spans(path: String, value: &DeValue<'_>, out: &mut HashMap<String, Range<usize>>) {
    match value {
        DeValue::Table(table) => index_table(&path, table, out),
        DeValue::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.insert(p.clone(), v.span());
                index_spans(p, v.get_ref(), out);
            }
        }
        _ => {}
    }
}

/// Turns byte spans into sorted line:col diagnostics (1-based, columns in characters).
fn place(src: &str, mut problems: Vec<(Range<usize>, String)>) -> Vec<Diagnostic> {
    problems.sort_by_key(|(span, _)| span.start);
    problems
        .into_iter()
        .map(|(span, message)| {
            let at = span.start.min(src.len());
            let before = src.get(..at).unwrap_or(src);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            Diagnostic { line, col, message }
        })
        .collect()
}
