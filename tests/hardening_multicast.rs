//! Multicast listeners hear only their group (issue 11): a `[[multicast]]`
//! service with `reply = "echo"` must not answer a unicast datagram sent to
//! its port on any local address (loopback or a veth address), IPv4 and IPv6.
//! Each test runs in its own network namespace (common/netns.rs).
//!
//! No sleep decides the outcome: the unicast datagrams are sent first and a
//! datagram to the group last, on the same client socket; the daemon reads
//! one socket in order, so had it received a unicast datagram, its echo
//! would arrive before the group's.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::net::{SocketAddr, UdpSocket};

use common::*;

/// The two groups of `tests/multicast.rs`, without the config watcher.
fn listeners() -> String {
    format!(
        "[daemon]\nwatch_config = false\n{}",
        common::groups::V4_AND_V6
    )
}

/// Sends each of `unicast` a datagram naming it, then one to `group`;
/// returns every reply payload up to and including the group's echo.
fn replies_before_group_echo(
    client: &UdpSocket,
    unicast: &[SocketAddr],
    group: SocketAddr,
) -> Vec<String> {
    for to in unicast {
        client
            .send_to(format!("unicast to {to}").as_bytes(), to)
            .unwrap();
    }
    client.send_to(b"group", group).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let (n, _) = client
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no echo from group {group} (got {got:?}): {e}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = text == "group";
        got.push(text);
        if done {
            return got;
        }
    }
}

#[test]
fn unicast_to_a_multicast_listeners_port_gets_no_reply() {
    netns::enter();
    netns::veth();
    netns::sh("ip addr add 10.77.0.2/24 dev nsb");
    let d = Daemon::start(&listeners());

    let c4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let got = replies_before_group_echo(
        &c4,
        &[
            "127.0.0.1:17077".parse().unwrap(),
            "10.77.0.2:17077".parse().unwrap(),
        ],
        "239.255.70.77:17077".parse().unwrap(),
    );
    assert_eq!(
        got,
        ["group"],
        "IPv4 unicast to the listener's port was echoed"
    );

    let c6 = UdpSocket::bind("[fd00::1]:0").unwrap();
    // SAFETY: a NUL-terminated literal.
    let nsa = unsafe { libc::if_nametoindex(c"nsa".as_ptr()) };
    assert_ne!(nsa, 0, "no interface nsa");
    let group6 = SocketAddr::V6(std::net::SocketAddrV6::new(
        "ff12::7077".parse().unwrap(),
        17077,
        0,
        nsa,
    ));
    let got = replies_before_group_echo(
        &c6,
        &[
            "[fd00::2]:17077".parse().unwrap(),
            "[::1]:17077".parse().unwrap(),
        ],
        group6,
    );
    assert_eq!(
        got,
        ["group"],
        "IPv6 unicast to the listener's port was echoed"
    );
    d.assert_clean(&[]);
}

/// Control: with `multicast_all = true` the listener binds the wildcard (it
/// asked for everything on the port), and then unicast is answered: the
/// check above can fail.
#[test]
fn control_a_wildcard_listener_answers_unicast() {
    netns::enter();
    let all = listeners();
    let cfg = all[..all.find("[[multicast]]\nname = \"g6\"").unwrap()].to_string()
        + "[multicast.socket]\nmulticast_all = true\n";
    let d = Daemon::start(&cfg);
    let c4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let got = replies_before_group_echo(
        &c4,
        &["127.0.0.1:17077".parse().unwrap()],
        "239.255.70.77:17077".parse().unwrap(),
    );
    assert_eq!(got, ["unicast to 127.0.0.1:17077", "group"]);
    d.assert_clean(&[]);
}
