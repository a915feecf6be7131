//! `[[broadcast]]` against the real binary, each test in its own network
//! namespace (see `common/netns.rs`): announcements seen by socat with
//! consecutive `{seq}`, jitter bounds, the goodbye on shutdown and on
//! reload-removal (and none on a handover), and send errors that are one
//! clear warning while the announcer keeps going.
//! Linux only: network namespaces (unshare(CLONE_NEWNET)) and `ip`.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use netns::{Peer, field, stop, tool};

#[test]
fn announcements_reach_socat_in_sequence_then_goodbye() {
    netns::enter();
    let socat = Peer::spawn("socat", &["-u", "UDP4-RECV:17070,reuseaddr", "STDOUT"]);
    netns::wait_udp_bound(17070, false);
    let mut d = Daemon::start(
        r#"
[[udp_echo]]
name = "echo-udp"
listen = "127.0.0.1:0"
[[broadcast]]
name = "announce"
destination = "127.255.255.255:17070"
bind = "127.0.0.1:0"
interval = "100ms"
jitter = "20ms"
payload = "hello {name} seq={seq} pid={pid} {services}\n"
goodbye = "bye {name} seq={seq}\n"
"#,
    );
    let lines = socat.wait_lines(|l| l.len() >= 5, WAIT);
    assert!(
        lines.len() >= 5,
        "socat saw {} announcements in {WAIT:?}: {lines:?}",
        lines.len()
    );
    stop(&mut d);
    let lines = socat.wait_lines(|l| l.iter().any(|x| x.starts_with("bye")), WAIT);
    let (hello, bye): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.starts_with("hello"));
    assert_eq!(bye.len(), 1, "exactly one goodbye expected: {lines:?}");
    assert_eq!(
        lines.last(),
        bye.last().copied(),
        "goodbye must be the last datagram: {lines:?}"
    );
    let seqs: Vec<u64> = hello
        .iter()
        .map(|l| field(l, "seq=").expect("seq field"))
        .collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "seq must start at 0 and grow by one: {lines:?}"
    );
    assert_eq!(
        field(bye[0], "seq="),
        Some(seqs.len() as u64),
        "goodbye takes the next seq"
    );
    let pid = d.pid().to_string();
    for l in &hello {
        assert!(l.contains(&format!("pid={pid} ")), "pid field: {l}");
        assert!(
            l.contains(&format!("echo-udp={}", d.urls["echo-udp"])),
            "{{services}} lists the udp echo: {l}"
        );
        assert!(
            !l.contains("announce=udp"),
            "{{services}} leaves the announcer itself out: {l}"
        );
    }
    d.assert_clean(&[]);
}

#[test]
fn intervals_are_randomised_within_jitter() {
    netns::enter();
    let rx = UdpSocket::bind("0.0.0.0:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let port = rx.local_addr().unwrap().port();
    let d = Daemon::start(&format!(
        r#"
[[broadcast]]
name = "jittery"
destination = "127.255.255.255:{port}"
bind = "127.0.0.1:0"
interval = "150ms"
jitter = "75ms"
payload = "seq={{seq}}"
goodbye = ""
"#
    ));
    let mut at = Vec::new();
    let mut buf = [0u8; 64];
    // 24 gaps: the mean of 24 uniform draws from 75..=225 ms has a standard
    // deviation of 8.8 ms, so the 110..=190 ms bound below is 4.5 of them (12
    // gaps and their median, as before, failed about once in a hundred runs
    // on statistics alone: 197 ms once in CI).
    while at.len() < 25 {
        rx.recv_from(&mut buf).expect("announcement within 2s");
        at.push(Instant::now());
    }
    let gaps: Vec<f64> = at
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect();
    // 150 +- 75 ms, with 15 ms of slack either side. A gap is measured where the
    // datagrams arrive, so one late wake-up of the daemon or of this thread on a
    // starved machine stretches one gap and shortens the next (flake-hunt: 260.7
    // ms once in 20 runs under stress-ng): one such pair is allowed, no more, and
    // never beyond 2x the longest interval. A jitter wider than configured puts
    // many gaps outside.
    let outside: Vec<&f64> = gaps
        .iter()
        .filter(|g| !(60.0..=240.0).contains(*g))
        .collect();
    assert!(
        outside.len() <= 2 && outside.iter().all(|g| **g < 450.0),
        "gaps outside 150 +- 75 ms: {outside:?} of {gaps:?}"
    );
    // The mean is first to last over the count: a late datagram in between
    // moves two gaps and not their sum, and the daemon keeps a schedule, so a
    // late wake-up shortens its next wait instead of pushing every later one.
    let mean = (at[at.len() - 1] - at[0]).as_secs_f64() * 1e3 / gaps.len() as f64;
    assert!(
        (110.0..=190.0).contains(&mean),
        "mean gap {mean:.1} ms, not about the 150 ms interval: {gaps:?}"
    );
    let spread = gaps.iter().cloned().fold(f64::MIN, f64::max)
        - gaps.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        spread > 20.0,
        "intervals look fixed (spread {spread:.1} ms), jitter not applied: {gaps:?}"
    );
    d.assert_clean(&[]);
}

/// Log lines of `service` whose message contains `text`.
fn logs_of(d: &Daemon, service: &str, text: &str) -> usize {
    d.count_logs(|l| {
        l["span"]["service"] == service && l["message"].as_str().is_some_and(|m| m.contains(text))
    })
}

#[test]
fn send_errors_are_one_clear_warning_and_the_announcer_keeps_going() {
    netns::enter();
    // A "prohibit" route makes sendto fail with EACCES, like a firewall reject.
    netns::sh("ip route add prohibit 10.8.0.0/16");
    // The receiver for later, bound now so its port can go into the config.
    let rx = UdpSocket::bind("0.0.0.0:0").unwrap();
    rx.set_read_timeout(Some(WAIT)).unwrap();
    let port = rx.local_addr().unwrap().port();
    let d = Daemon::start(&format!(
        r#"
[[broadcast]]
name = "lost"
destination = "10.9.255.255:{port}"
interval = "50ms"
jitter = "0ms"
[[broadcast]]
name = "forbidden"
destination = "10.8.255.255:{port}"
interval = "50ms"
jitter = "0ms"
"#
    ));
    for (service, cause) in [
        ("lost", "network unreachable"),
        (
            "forbidden",
            "permission denied: broadcast needs SO_BROADCAST",
        ),
    ] {
        let w = d
            .wait_log(
                |l| {
                    l["span"]["service"] == service
                        && l["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("cannot send announcement"))
                },
                WAIT,
            )
            .unwrap_or_else(|| panic!("no send warning for {service}; logs:\n{}", d.dump()));
        assert!(w["message"].as_str().unwrap().contains(cause), "{w}");
        assert!(
            w["destination"].as_str().unwrap().starts_with("10."),
            "names the address: {w}"
        );
    }
    // The window is the subject: ~10 more failed intervals each must log nothing more.
    std::thread::sleep(Duration::from_millis(500));
    for service in ["lost", "forbidden"] {
        assert_eq!(
            logs_of(&d, service, "cannot send announcement"),
            1,
            "{service}: warning not rate-limited"
        );
    }
    // The network appears: the next interval gets through, nothing was restarted.
    netns::sh("ip addr add 10.9.0.1/16 dev lo");
    let mut buf = [0u8; 600];
    let (n, _) = rx
        .recv_from(&mut buf)
        .expect("announcements resume once the route exists");
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("netservd lost"),
        "{:?}",
        &buf[..n]
    );
    assert_eq!(
        d.count_logs(|l| l["message"] == "service failed"),
        0,
        "an announcer died of a send error"
    );
    d.assert_clean(&[]);
}

fn reloadable(payload: &str, reply: &str, with_announcer: bool) -> String {
    let mut s = format!(
        "[[multicast]]\nname = \"g\"\ngroup = \"239.255.70.80\"\nport = 17081\ninterface = \"127.0.0.1\"\nreply = \"{reply}\"\n"
    );
    if with_announcer {
        s += &format!(
            "[[broadcast]]\nname = \"a\"\ndestination = \"127.255.255.255:17072\"\nbind = \"127.0.0.1:0\"\ninterval = \"100ms\"\njitter = \"0ms\"\npayload = \"{payload} seq={{seq}}\\n\"\ngoodbye = \"bye seq={{seq}}\\n\"\n"
        );
    }
    s
}

#[test]
fn reload_keeps_socket_sequence_and_membership_and_removal_says_goodbye() {
    netns::enter();
    let socat = Peer::spawn("socat", &["-u", "UDP4-RECV:17072,reuseaddr", "STDOUT"]);
    netns::wait_udp_bound(17072, false);
    let d = Daemon::start(&reloadable("old", "none", true));
    let pid = d.pid().to_string();
    let group = ("lo".to_string(), "239.255.70.80".parse().unwrap());
    socat.wait_lines(|l| l.len() >= 3, WAIT);

    // Settings-only change: same sockets, so no goodbye, seq continues, group stays joined.
    d.write_config(&reloadable("new", "echo", true));
    let l = socat.wait_lines(
        |l| l.iter().filter(|x| x.starts_with("new")).count() >= 3,
        WAIT,
    );
    assert!(
        !l.iter().any(|x| x.starts_with("bye")),
        "a handover must not say goodbye: {l:?}"
    );
    let seqs: Vec<u64> = l.iter().map(|x| field(x, "seq=").unwrap()).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "seq must continue across the handover: {l:?}"
    );
    assert!(
        netns::igmp(&pid).contains(&group),
        "a handover must keep the membership"
    );
    let (code, _) = tool(&[
        "send",
        "udp://239.255.70.80:17081",
        "x",
        "--interface",
        "127.0.0.1",
        "--expect-reply",
        "--wait",
        "500ms",
    ]);
    assert_eq!(
        code, 0,
        "the new reply = \"echo\" applies on the handed-over socket"
    );

    // Removal: one goodbye with the next seq.
    d.write_config(&reloadable("new", "echo", false));
    let l = socat.wait_lines(|l| l.iter().any(|x| x.starts_with("bye")), WAIT);
    let last = l.last().unwrap();
    assert!(
        last.starts_with("bye"),
        "goodbye is the last datagram: {l:?}\nlogs:\n{}",
        d.dump()
    );
    assert_eq!(
        field(last, "seq="),
        Some(l.len() as u64 - 1),
        "goodbye takes the next seq: {l:?}"
    );
    // The window is the subject: three intervals in which nothing may follow the goodbye.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(socat.lines().len(), l.len(), "nothing after the goodbye");
    assert!(
        netns::igmp(&pid).contains(&group),
        "the unchanged group stays joined"
    );
    d.assert_clean(&[]);
}

#[test]
fn ipv6_group_destination_goes_out_the_scope_id_interface() {
    netns::enter();
    netns::veth();
    let out = netns::sh("ip -o link show nsa");
    let index: u32 = out
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("ifindex of nsa");
    let socat = Peer::spawn(
        "socat",
        &[
            "-u",
            "UDP6-RECV:17073,reuseaddr,ipv6-join-group=[ff12::7070]:nsb",
            "STDOUT",
        ],
    );
    netns::wait_udp_bound(17073, true);
    let d = Daemon::start(&format!(
        "[[broadcast]]\nname = \"six\"\ndestination = \"[ff12::7070%{index}]:17073\"\ninterval = \"100ms\"\njitter = \"0ms\"\npayload = \"six seq={{seq}}\\n\"\n[broadcast.socket]\nmulticast_ttl = 1\n"
    ));
    let lines = socat.wait_lines(|l| l.len() >= 2, WAIT);
    assert!(
        lines.len() >= 2 && lines[0] == "six seq=0",
        "socat joined on nsb heard: {lines:?}"
    );
    d.assert_clean(&[]);
}
