//! Reads `config.toml` into a validated [`Config`], or into every error it has,
//! each as `PATH:LINE:COL: message`.
//!
//! Flow: text -> `DeTable` (toml's spanned tree; all syntax errors at once) ->
//! each section and each service deserialized on its own, and within one,
//! each bad key reported and taken out before trying again (so no type error
//! hides another) -> `validate` (cross-field and cross-service rules) ->
//! errors mapped back to line:col through the spans recorded from the tree,
//! in plain words (`words.rs`), with the other service's line:col where a
//! rule is about two of them.

pub(crate) mod de;
mod effective;
mod schema;
pub mod validate;
pub(crate) mod words;

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
pub use effective::effective;
pub use schema::*;
pub use validate::MAX_FRAME_LIMIT;
pub use validate::faults::problems as fault_problems;

use crate::services::{Kind, KindVisitor, SECTIONS, Spec, for_each_kind};

/// The shipped `config.toml`, compiled in so `netservd run` works from any directory.
pub const SHIPPED: &str = include_str!("../../config.toml");
/// How the shipped config is named in messages.
pub const SHIPPED_ORIGIN: &str = "<built-in config.toml>";

/// One problem, already placed in the file; `line` 0 means it has no place
/// (the file could not be read) and it displays without a position.
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
            if d.line == 0 {
                write!(f, "{}: {}", self.origin, d.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.origin, d.line, d.col, d.message)?;
            }
        }
        Ok(())
    }
}

/// A config file that cannot be read: one diagnostic without a position.
pub fn unreadable(path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError {
        origin: path.display().to_string(),
        diagnostics: vec![Diagnostic {
            line: 0,
            col: 0,
            message: format!(
                "cannot read config file: {e}; pass --config PATH or set NETSERVD_CONFIG"
            ),
        }],
    }
}

/// The sections of a config file that are not services (those are [`SECTIONS`]).
const FIXED_SECTIONS: [&str; 2] = ["daemon", "admin"];

/// Every section a config file may have, as written in a file: `[daemon], [admin], [[tcp_echo]], ...`.
fn section_list() -> String {
    let fixed = FIXED_SECTIONS.iter().map(|s| format!("[{s}]"));
    let services = SECTIONS.iter().map(|s| format!("[[{s}]]"));
    fixed.chain(services).collect::<Vec<_>>().join(", ")
}

/// The service tables, as a choice: `[[tcp_echo]], [[udp_echo]] ... or [[multicast]]`.
fn service_choice() -> String {
    let all: Vec<String> = SECTIONS.iter().map(|s| format!("[[{s}]]")).collect();
    match all.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Deserializes one `[[K::SECTION]]` array into the config (a visit per kind;
/// the one whose section it is takes `value`).
struct ServiceSection<'v, 'a, 'b> {
    section: &'b str,
    value: Option<Spanned<DeValue<'v>>>,
    cfg: &'b mut Config,
    file_index: &'b mut HashMap<&'static str, Vec<usize>>,
    p: &'b mut Problems<'a>,
}

impl KindVisitor for ServiceSection<'_, '_, '_> {
    fn visit<K: Kind>(&mut self) {
        if self.section == K::SECTION
            && let Some(value) = self.value.take()
        {
            *K::of_mut(self.cfg) = many(value, K::SECTION, self.file_index, self.p);
        }
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
        let mut p = Problems {
            src,
            list: &mut problems,
        };
        match section {
            "daemon" => {
                if let Some(v) = one(value, "[daemon]", &mut p) {
                    cfg.daemon = v;
                }
            }
            "admin" => cfg.admin = one(value, "[admin]", &mut p),
            other => {
                let mut visit = ServiceSection {
                    section: other,
                    value: Some(value),
                    cfg: &mut cfg,
                    file_index: &mut file_index,
                    p: &mut p,
                };
                for_each_kind(&mut visit);
                if visit.value.is_none() {
                    continue;
                }
                let known = FIXED_SECTIONS.iter().chain(SECTIONS).copied();
                let hint = words::did_you_mean(other, known)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                problems.push((
                    key.span(),
                    format!(
                        "unknown section `{other}`; expected one of {}{hint}",
                        section_list()
                    ),
                ))
            }
        }
    }

    // A truncated file (crashed editor, broken ConfigMap) must never stop every service.
    if file_index.is_empty() && Spec::all(&cfg).is_empty() {
        problems.push((
            0..0,
            format!("config defines no services; add at least one {} table (an empty or truncated file is refused, so it cannot stop what runs)", service_choice()),
        ));
    }
    problems.extend(validation_problems(&cfg, src, &spans, &file_index, whole));

    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(fail(problems))
    }
}

/// Where problems go while deserializing, with the text they point into.
struct Problems<'a> {
    src: &'a str,
    list: &'a mut Vec<(Range<usize>, String)>,
}

/// Most keys one table may have wrong before we stop looking at it.
const MAX_BAD_KEYS: usize = 64;

/// Deserializes one table as `T`, reporting every bad key: on an error the
/// key it is about is reported (in plain words, prefixed with `label`),
/// taken out, and the rest tried again. A table that still fails for want of
/// a key it needs (one that was bad, or one that is missing) yields `None`.
fn each_key<T: for<'a> Deserialize<'a>>(
    mut value: Spanned<DeValue<'_>>,
    label: &str,
    p: &mut Problems<'_>,
) -> Option<T> {
    let whole = value.span();
    let mut taken: Vec<String> = Vec::new();
    for _ in 0..MAX_BAD_KEYS {
        let e = match T::deserialize(value.clone().into_deserializer()) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let at = e.span().unwrap_or(whole.clone());
        let msg = e.message();
        if msg.starts_with("missing field") && taken.iter().any(|k| msg.contains(&format!("`{k}`")))
        {
            return None; // already reported as the bad value it was
        }
        let Some((key, found)) = take_key(value.get_mut(), at.start) else {
            p.list
                .push((at, format!("{label}: {}", words::plain(msg, "", ""))));
            return None;
        };
        let text = p.src.get(found).unwrap_or("");
        p.list
            .push((at, format!("{label}: {}", words::plain(msg, &key, text))));
        taken.push(key);
    }
    None
}

/// Removes the innermost key whose name or value covers byte `pos` from
/// `value` (a table, or tables nested in it); returns its name and the span
/// of its value.
fn take_key(value: &mut DeValue<'_>, pos: usize) -> Option<(String, Range<usize>)> {
    let DeValue::Table(table) = value else {
        return None;
    };
    let mut hit = None;
    for (k, v) in table.iter_mut() {
        let vspan = v.span();
        if k.span().contains(&pos) {
            hit = Some((k.get_ref().to_string(), vspan));
            break;
        }
        // A `[a.b]` table's span need not cover its keys: look inside first.
        let nested = match v.get_mut() {
            DeValue::Array(items) => items.iter_mut().find_map(|i| take_key(i.get_mut(), pos)),
            inner => take_key(inner, pos),
        };
        if nested.is_some() {
            return nested;
        }
        if vspan.contains(&pos) || vspan.start == pos {
            hit = Some((k.get_ref().to_string(), vspan));
            break;
        }
    }
    let (key, span) = hit?;
    table.remove(key.as_str());
    Some((key, span))
}

/// The rules `validate` checks, each placed at its key (or its table), with
/// the other service's line:col appended where a rule is about two of them.
fn validation_problems(
    cfg: &Config,
    src: &str,
    spans: &HashMap<String, Range<usize>>,
    file_index: &HashMap<&'static str, Vec<usize>>,
    whole: Range<usize>,
) -> Vec<(Range<usize>, String)> {
    let mut out = Vec::new();
    let (issues, see_also) = validate::validate_all(cfg);
    let place_of = |kind: Option<&'static str>, section: &str, index: usize, keys: &[&str]| {
        let mut path = match kind.and_then(|k| Some((k, *file_index.get(k)?.get(index)?))) {
            Some((kind, i)) => format!("{kind}[{i}]"),
            None => section.to_string(),
        };
        // The most precise span we have: the key itself, else its table.
        let mut span = spans.get(&path).cloned();
        for key in keys {
            path = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            if let Some(s) = spans.get(&path) {
                span = Some(s.clone());
            }
        }
        span.unwrap_or_else(|| whole.clone())
    };
    for (n, issue) in issues.into_iter().enumerate() {
        let span = place_of(issue.kind, issue.section, issue.index, &issue.keys);
        let mut message = issue.message;
        for other in see_also.iter().filter(|o| o.issue == n) {
            let at = place_of(Some(other.kind), "", other.index, &[other.key]);
            let d = &place(src, vec![(at, String::new())])[0];
            message.push_str(&format!(" (the other is at {}:{})", d.line, d.col));
        }
        out.push((span, message));
    }

    out
}

/// Line and column (1-based) in `src` of `keys` of the `index`-th service of
/// `kind` (its key if written, else its table): for findings made after a
/// config parsed cleanly (`hostcheck`), when every service has its file index.
pub fn locate(src: &str, kind: &str, index: usize, keys: &[&str]) -> Option<(usize, usize)> {
    let (root, _) = DeTable::parse_recoverable(src);
    let mut spans = HashMap::new();
    index_table("", root.get_ref(), &mut spans);
    let mut path = format!("{kind}[{index}]");
    let mut span = spans.get(&path).cloned();
    for key in keys {
        path = format!("{path}.{key}");
        if let Some(s) = spans.get(&path) {
            span = Some(s.clone());
        }
    }
    let d = &place(src, vec![(span?, String::new())])[0];
    Some((d.line, d.col))
}

/// Deserializes a single table (`[daemon]`, `[admin]`).
fn one<T: for<'a> Deserialize<'a>>(
    value: Spanned<DeValue<'_>>,
    what: &str,
    p: &mut Problems<'_>,
) -> Option<T> {
    each_key(value, what, p)
}

/// Deserializes an array of tables (`[[tcp_echo]]`...), each on its own.
fn many<T: for<'a> Deserialize<'a>>(
    value: Spanned<DeValue<'_>>,
    kind: &'static str,
    file_index: &mut HashMap<&'static str, Vec<usize>>,
    p: &mut Problems<'_>,
) -> Vec<T> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        p.list.push((
            span,
            format!("`{kind}` must be written as [[{kind}]] tables, one per service"),
        ));
        return Vec::new();
    };
    let indices = file_index.entry(kind).or_default();
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let label = match item
            .get_ref()
            .get("name")
            .and_then(|n| n.get_ref().as_str())
        {
            Some(name) => format!("{kind} {name:?}"),
            None => format!("{kind}[{i}]"),
        };
        if let Some(v) = each_key(item, &label, p) {
            out.push(v);
            indices.push(i);
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
