//! Per-source limits count IPv6 sources by prefix (issue 11): two addresses
//! of one /64 share `max_connections_per_source`, and with
//! `source_prefix_v6 = 128` each address has its own. Runs in a network
//! namespace (common/netns.rs) whose loopback carries fd00::1 and fd00::2.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::time::Duration;

use common::counters::drops;
use common::sources::*;
use common::*;

fn config(prefix: u8) -> String {
    format!(
        "[daemon]\nwatch_config = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[tcp_echo]]\nname = \"echo\"\nlisten = \"[::1]:0\"\nmax_connections_per_source = 2\nsource_prefix_v6 = {prefix}\n"
    )
}

#[test]
fn ipv6_sources_share_a_limit_per_prefix() {
    netns::enter();
    netns::sh("ip -6 addr add fd00::1/128 dev lo nodad && ip -6 addr add fd00::2/128 dev lo nodad");

    // /64: fd00::1 and fd00::2 are one source; its third connection is refused.
    let d = Daemon::start(&config(64));
    let tcp = d.addr("echo");
    let mut a = tcp_from("fd00::1", tcp);
    let mut b = tcp_from("fd00::2", tcp);
    assert!(tcp_echoes(&mut a, b"a") && tcp_echoes(&mut b, b"b"));
    refused_within("fd00::2", tcp, Duration::from_secs(1));
    assert_eq!(drops(&d, "echo", "per_source_limit"), 1);
    drop((a, b, d));

    // /128: each address has its own two.
    let d = Daemon::start(&config(128));
    let tcp = d.addr("echo");
    let mut held: Vec<_> = ["fd00::1", "fd00::1", "fd00::2", "fd00::2"]
        .iter()
        .map(|from| tcp_from(from, tcp))
        .collect();
    for s in &mut held {
        assert!(
            tcp_echoes(s, b"own"),
            "a connection within its address's limit was refused"
        );
    }
    refused_within("fd00::1", tcp, Duration::from_secs(1));
    assert_eq!(drops(&d, "echo", "per_source_limit"), 1);
}
