//! Unit tests of address-overlap detection: [`ips_overlap`] directly, and
//! the overlap rule through the real parser (`config::parse`), which is
//! where an operator meets it: wildcards against specific addresses, `::`
//! against `0.0.0.0` with and without `only_v6`, IPv4-mapped IPv6, port 0,
//! protocols apart, multicast listeners sharing a port.

use std::net::IpAddr;

use super::ips_overlap;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The overlap errors of `toml` (every other kind of error fails the test).
fn overlaps(toml: &str) -> Vec<String> {
    match crate::config::parse(toml, "t.toml") {
        Ok(_) => Vec::new(),
        Err(e) => {
            let all: Vec<String> = e.diagnostics.iter().map(|d| d.message.clone()).collect();
            assert!(all.iter().all(|m| m.contains("overlaps")), "{all:?}");
            all
        }
    }
}

fn tcp(name: &str, listen: &str, socket: &str) -> String {
    format!("[[tcp_echo]]\nname = \"{name}\"\nlisten = \"{listen}\"\n{socket}\n")
}

fn udp(name: &str, listen: &str) -> String {
    format!("[[udp_echo]]\nname = \"{name}\"\nlisten = \"{listen}\"\n")
}

#[test]
fn a_wildcard_overlaps_every_address_of_its_family() {
    assert!(ips_overlap(ip("0.0.0.0"), false, ip("127.0.0.1"), false));
    assert!(ips_overlap(ip("127.0.0.1"), false, ip("0.0.0.0"), false));
    assert!(!ips_overlap(ip("127.0.0.1"), false, ip("127.0.0.2"), false));
    assert!(ips_overlap(ip("::"), true, ip("::1"), false));
    let both = tcp("a", "0.0.0.0:7000", "") + &tcp("b", "127.0.0.1:7000", "");
    let found = overlaps(&both);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("tcp_echo \"b\"") && found[0].contains("\"a\""),
        "{found:?}"
    );
    assert!(found[0].ends_with("(the other is at 3:10)"), "{found:?}");
    assert!(
        overlaps(&(tcp("a", "127.0.0.1:7000", "") + &tcp("b", "127.0.0.2:7000", ""))).is_empty()
    );
}

#[test]
fn the_ipv6_wildcard_takes_ipv4_unless_only_v6() {
    assert!(ips_overlap(ip("::"), false, ip("0.0.0.0"), false));
    assert!(ips_overlap(ip("::"), false, ip("127.0.0.1"), false));
    assert!(!ips_overlap(ip("::"), true, ip("0.0.0.0"), false));
    // An IPv4 wildcard never takes IPv6.
    assert!(!ips_overlap(ip("0.0.0.0"), false, ip("::1"), false));
    let dual = tcp("a", "[::]:7000", "") + &tcp("b", "0.0.0.0:7000", "");
    assert_eq!(overlaps(&dual).len(), 1);
    let v6only =
        tcp("a", "[::]:7000", "[tcp_echo.socket]\nonly_v6 = true") + &tcp("b", "0.0.0.0:7000", "");
    assert!(overlaps(&v6only).is_empty());
}

#[test]
fn an_ipv4_mapped_address_is_its_ipv4_address() {
    assert!(ips_overlap(
        ip("::ffff:127.0.0.1"),
        false,
        ip("127.0.0.1"),
        false
    ));
    assert!(ips_overlap(
        ip("::ffff:127.0.0.1"),
        false,
        ip("0.0.0.0"),
        false
    ));
    assert!(!ips_overlap(
        ip("::ffff:127.0.0.1"),
        false,
        ip("127.0.0.2"),
        false
    ));
    let mapped = udp("a", "[::ffff:127.0.0.1]:7000") + &udp("b", "127.0.0.1:7000");
    assert_eq!(overlaps(&mapped).len(), 1);
}

#[test]
fn port_0_never_overlaps_and_protocols_are_apart() {
    let zero = tcp("a", "127.0.0.1:0", "") + &tcp("b", "127.0.0.1:0", "");
    assert!(overlaps(&zero).is_empty());
    let apart = tcp("a", "127.0.0.1:7000", "") + &udp("b", "127.0.0.1:7000");
    assert!(overlaps(&apart).is_empty());
}

#[test]
fn multicast_listeners_share_a_port_but_not_with_udp_echo() {
    let group = |name: &str, g: &str| {
        format!(
            "[[multicast]]\nname = \"{name}\"\ngroup = \"{g}\"\nport = 7077\ninterface = \"127.0.0.1\"\n"
        )
    };
    let two = group("m1", "239.255.70.77") + &group("m2", "239.255.70.78");
    assert!(overlaps(&two).is_empty());
    let with_udp = udp("u", "0.0.0.0:7077") + &group("m1", "239.255.70.77");
    let found = overlaps(&with_udp);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("multicast \"m1\": udp 0.0.0.0:7077 overlaps service \"u\""),
        "{found:?}"
    );
}
