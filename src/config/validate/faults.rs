//! Rules for the `[*.faults]` tables and `journal = N` (issue 16): ranges of
//! probabilities, durations and sizes. [`problems`] serves both the config
//! file (each problem placed at its key by `config/mod.rs`) and
//! `PUT /services/NAME/faults` (a 400 listing them).

use std::time::Duration;

use super::Issues;
use crate::config::schema::*;
use crate::faults::{BroadcastFaults, Faults, TcpFaults, UdpFaults};
use crate::journal::MAX_ENTRIES;

/// Longest fault delay accepted: far longer than any client timeout worth testing.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Every problem of `f`, as (key, message naming the value, the limit and the fix).
pub fn problems(f: &Faults) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut p = |key: &'static str, v: Option<f64>| {
        if let Some(v) = v
            && !(0.0..=1.0).contains(&v)
        {
            out.push((
                key,
                format!("{key} = {v} is not a probability; use 0.0 (never) to 1.0 (always)"),
            ));
        }
    };
    match f {
        Faults::Tcp(t) => {
            p("refuse", t.refuse);
            p("corrupt", t.corrupt);
        }
        Faults::Udp(u) => {
            p("loss", u.loss);
            p("duplicate", u.duplicate);
            p("reorder", u.reorder);
            p("corrupt", u.corrupt);
        }
        Faults::Broadcast(b) => p("loss", b.loss),
    }
    let delays: Vec<(&'static str, Option<Duration>)> = match f {
        Faults::Tcp(t) => vec![
            ("latency", t.latency),
            ("jitter", t.jitter),
            ("slice_delay", t.slice_delay),
        ],
        Faults::Udp(u) => vec![("latency", u.latency), ("jitter", u.jitter)],
        Faults::Broadcast(b) => vec![("jitter_extra", b.jitter_extra)],
    };
    for (key, d) in delays {
        if let Some(d) = d.filter(|d| *d > MAX_DELAY) {
            out.push((
                key,
                format!(
                    "{key} = {} is over 1h; a fault delay is meant to trip a client's timeout, use at most \"1h\"",
                    humantime::format_duration(d)
                ),
            ));
        }
    }
    if let Faults::Tcp(TcpFaults {
        bandwidth_bytes_per_s,
        slice_bytes,
        ..
    }) = f
    {
        if *bandwidth_bytes_per_s == Some(0) {
            out.push(("bandwidth_bytes_per_s", "bandwidth_bytes_per_s = 0 would never echo; use at least 1 (or stall_after_frames to hang a connection)".into()));
        }
        if *slice_bytes == Some(0) {
            out.push((
                "slice_bytes",
                "slice_bytes = 0 is no slice; use at least 1 (one byte per write)".into(),
            ));
        }
    }
    out
}

fn place(kind: &'static str, i: usize, name: &str, f: Faults, journal: usize, out: &mut Issues) {
    for (key, msg) in problems(&f) {
        out.at(kind, i, name, &["faults", key], msg);
    }
    if journal > MAX_ENTRIES {
        out.at(
            kind,
            i,
            name,
            &["journal"],
            format!("journal = {journal} is over {MAX_ENTRIES}; the journal is for test assertions, keep it small (e.g. 256)"),
        );
    }
}

/// The faults and journal keys of every service of `cfg`.
pub(super) fn all(cfg: &Config, out: &mut Issues) {
    for (i, s) in cfg.tcp_echo.iter().enumerate() {
        let f = Faults::Tcp(s.faults.clone().unwrap_or_default());
        place("tcp_echo", i, &s.name, f, s.journal, out);
    }
    for (i, s) in cfg.udp_echo.iter().enumerate() {
        let f = Faults::Udp(s.faults.clone().unwrap_or_default());
        place("udp_echo", i, &s.name, f, s.journal, out);
    }
    for (i, s) in cfg.broadcast.iter().enumerate() {
        let f = Faults::Broadcast(s.faults.clone().unwrap_or_else(BroadcastFaults::default));
        place("broadcast", i, &s.name, f, s.journal, out);
    }
    for (i, s) in cfg.multicast.iter().enumerate() {
        let faults = s.faults.clone().unwrap_or_else(UdpFaults::default);
        if faults != UdpFaults::default() && s.reply != Reply::Echo {
            out.at(
                "multicast",
                i,
                &s.name,
                &["faults"],
                "faults act on echo replies, and this listener sends none; set reply = \"echo\" or remove [multicast.faults]".into(),
            );
        }
        place("multicast", i, &s.name, Faults::Udp(faults), s.journal, out);
    }
}
