//! `netservd check --print`: the effective config as TOML, like `nginx -T`:
//! every section and service with every key it takes, defaults filled in
//! and marked `# default`, so what the daemon will do is on one page.
//!
//! Flow: each parsed section is serialized (schema.rs derives `Serialize`)
//! into a TOML table; keys are compared with the ones the file wrote (the
//! same span index errors use); the tables are written out in file order.
//! Socket options left to the OS are not listed: they have no value of ours.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;
use toml::{Table, Value};

use super::Config;

/// The effective config of `cfg`, parsed from `src`, as TOML text.
pub fn effective(cfg: &Config, src: &str) -> String {
    let written = written_keys(src);
    let mut out = String::from(
        "# Effective config: every key, with the defaults filled in (marked `# default`).\n\
         # Socket options not listed are left to the OS.\n",
    );
    section(&mut out, "[daemon]", "daemon", &cfg.daemon, &written);
    if let Some(a) = &cfg.admin {
        section(&mut out, "[admin]", "admin", a, &written);
    }
    for (i, spec) in crate::services::Spec::indexed(cfg) {
        service(&mut out, spec.kind(), i, spec.effective(), &written);
    }
    out
}

/// A section as a TOML table (empty if it cannot be one, which our types always can).
fn table(v: &impl Serialize) -> Table {
    Table::try_from(v).unwrap_or_default()
}

fn section(out: &mut String, header: &str, path: &str, v: &impl Serialize, written: &Written) {
    let _ = writeln!(out, "\n{header}");
    keys(out, path, &table(v), written);
}

/// One `[[kind]]` service, then its `[kind.socket]` table if it sets any option.
fn service(out: &mut String, kind: &str, i: usize, mut t: Table, written: &Written) {
    let path = format!("{kind}[{i}]");
    let socket = t.remove("socket");
    let _ = writeln!(out, "\n[[{kind}]]");
    keys(out, &path, &t, written);
    if let Some(Value::Table(s)) = socket
        && !s.is_empty()
    {
        let _ = writeln!(out, "[{kind}.socket]");
        keys(out, &format!("{path}.socket"), &s, written);
    }
}

/// `key = value` lines; the keys the file did not write are marked.
fn keys(out: &mut String, path: &str, t: &Table, written: &Written) {
    for (k, v) in t {
        let mark = if written.contains(&format!("{path}.{k}")) {
            ""
        } else {
            "  # default"
        };
        let _ = writeln!(out, "{k} = {v}{mark}");
    }
}

type Written = HashSet<String>;

/// Dotted paths (`tcp_echo[0].socket.nodelay`) of every key written in `src`.
fn written_keys(src: &str) -> Written {
    let (root, _) = toml::de::DeTable::parse_recoverable(src);
    let mut spans = HashMap::new();
    super::index_table("", root.get_ref(), &mut spans);
    spans.into_keys().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_are_filled_in_and_marked() {
        let src = "[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:7000\"\n[tcp_echo.socket]\nnodelay = false\n";
        let cfg = crate::config::parse(src, "t").unwrap();
        let text = super::effective(&cfg, src);
        assert!(
            text.contains("\n[daemon]\ndrain_timeout = \"30s\"  # default\nshutdown_timeout = \"5s\"  # default\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n[[tcp_echo]]\nallow = []  # default\nbyte_order = \"big\"  # default\n"
            ),
            "{text}"
        );
        assert!(text.contains("name = \"e\"\n"), "{text}");
        assert!(
            text.contains("max_frame_bytes = 65536  # default\n"),
            "{text}"
        );
        assert!(
            text.contains("[tcp_echo.socket]\nnodelay = false\n"),
            "{text}"
        );
        // What it prints parses to the same config (the frame limit now explicit).
        let mut printed = crate::config::parse(&text, "printed").unwrap();
        assert_eq!(printed.tcp_echo[0].max_frame_bytes, Some(65536));
        printed.tcp_echo[0].max_frame_bytes = None;
        assert_eq!(printed, cfg);
    }
}
