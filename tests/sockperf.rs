//! `compat = "sockperf"`: a stock `sockperf ping-pong` client (the real
//! Debian binary, an independent peer) measures netservd's UDP echo. Without
//! compat the same client gets no valid reply, which shows the flag is what
//! makes it work. sockperf must be installed (scripts/test.sh installs it);
//! the test fails, never skips, when it is missing. Unix only: sockperf is a
//! Linux tool, and the Wine run of the suite has no sockperf.
#![cfg(unix)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
[daemon]
watch_config = false

[[udp_echo]]
name = "compat"
listen = "127.0.0.1:0"
compat = "sockperf"

[[udp_echo]]
name = "plain"
listen = "127.0.0.1:0"
"#;

/// Runs `sockperf ping-pong` for one second against `addr`; returns its combined output.
fn ping_pong(addr: std::net::SocketAddr) -> String {
    let mut child = Command::new("sockperf")
        .args(["ping-pong", "-i", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-t", "1", "-m", "64"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sockperf ({e}): install it with `apt-get install sockperf` (scripts/test.sh does this as root)"));
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("sockperf ping-pong did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ReceivedMessages=N` of sockperf's "[Valid Duration]" line.
fn valid_received(out: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.contains("[Valid Duration]"))?;
    line.split("ReceivedMessages=")
        .nth(1)?
        .trim()
        .trim_end_matches(';')
        .parse()
        .ok()
}

#[test]
fn sockperf_ping_pong_measures_compat_udp_echo() {
    let d = Daemon::start(CONFIG);
    let out = ping_pong(d.addr("compat"));
    let received = valid_received(&out)
        .unwrap_or_else(|| panic!("no [Valid Duration] line in sockperf output:\n{out}"));
    assert!(
        received > 100,
        "sockperf received only {received} replies:\n{out}"
    );
    assert!(
        out.contains("# dropped messages = 0;"),
        "sockperf saw drops:\n{out}"
    );
    assert!(
        out.contains("Summary: Latency is"),
        "no latency summary:\n{out}"
    );

    // Plain echo keeps the client flag set, so sockperf's client discards every reply.
    let out = ping_pong(d.addr("plain"));
    assert!(
        out.contains("No messages were received") || valid_received(&out) == Some(0),
        "plain echo should not satisfy sockperf:\n{out}"
    );
    d.assert_clean(&[]);
}
