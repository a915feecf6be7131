//! Unit tests of reload planning: for each kind of change between two specs
//! of one service, what [`decide`] plans (unchanged, hand over the socket,
//! rebind because of a named key, add) and which socket options it then sets
//! in place ([`change::classify`]: Live / Accepted / Relisten / Rebind).
//! Specs come from config text through the real parser, as a reload's do.

use super::{Decision, decide};
use crate::net::{Role, change};
use crate::services::Spec;

/// The only service of `toml` (parsed and validated as a reload would).
fn spec(toml: &str) -> Spec {
    let cfg = crate::config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let mut all = Spec::all(&cfg);
    assert_eq!(all.len(), 1, "one service per test config");
    all.remove(0)
}

fn tcp(extra: &str) -> Spec {
    spec(&format!(
        "[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:7000\"\n{extra}"
    ))
}

fn udp(extra: &str) -> Spec {
    spec(&format!(
        "[[udp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:7000\"\n{extra}"
    ))
}

/// The keys `classify` would set in place between two specs' socket tables.
fn in_place(old: &Spec, new: &Spec, role: Role) -> Vec<&'static str> {
    change::classify(old.socket(), new.socket(), role).in_place
}

#[test]
fn a_new_name_is_added_and_the_same_spec_is_unchanged() {
    let a = tcp("");
    assert_eq!(decide(None, &a), Decision::Add);
    assert_eq!(decide(Some(&a), &tcp("")), Decision::Unchanged);
}

#[test]
fn settings_that_are_not_socket_options_hand_the_socket_over() {
    let (old, new) = (tcp(""), tcp("idle_timeout = \"7s\"\nmax_connections = 3"));
    assert_eq!(decide(Some(&old), &new), Decision::HandOver);
    assert!(in_place(&old, &new, Role::TcpListener).is_empty());
}

#[test]
fn accepted_options_of_a_listener_are_set_in_place() {
    let old = tcp("");
    let new = tcp("[tcp_echo.socket]\nnodelay = false\nsend_buffer_bytes = 65536");
    assert_eq!(
        change::scope("nodelay", Role::TcpListener),
        change::Scope::Accepted
    );
    assert_eq!(decide(Some(&old), &new), Decision::HandOver);
    let mut keys = in_place(&old, &new, Role::TcpListener);
    keys.sort();
    assert_eq!(keys, ["nodelay", "send_buffer_bytes"]);
}

#[test]
fn live_options_of_a_udp_socket_are_set_in_place() {
    let old = udp("[udp_echo.socket]\nrecv_buffer_bytes = 65536");
    let new = udp("[udp_echo.socket]\nrecv_buffer_bytes = 131072\nttl = 9");
    assert_eq!(
        change::scope("recv_buffer_bytes", Role::Udp),
        change::Scope::Live
    );
    assert_eq!(decide(Some(&old), &new), Decision::HandOver);
    assert_eq!(
        in_place(&old, &new, Role::Udp),
        ["recv_buffer_bytes", "ttl"]
    );
}

#[test]
fn a_new_backlog_relistens_on_linux_and_rebinds_elsewhere() {
    let (old, new) = (
        tcp("[tcp_echo.socket]\nbacklog = 64"),
        tcp("[tcp_echo.socket]\nbacklog = 128"),
    );
    if cfg!(target_os = "linux") {
        assert_eq!(
            change::scope("backlog", Role::TcpListener),
            change::Scope::Relisten
        );
        assert_eq!(decide(Some(&old), &new), Decision::HandOver);
        assert_eq!(in_place(&old, &new, Role::TcpListener), ["backlog"]);
    } else {
        assert_eq!(decide(Some(&old), &new), Decision::Rebind("backlog"));
    }
}

#[test]
fn bind_time_options_and_addresses_rebind_naming_the_key() {
    let old = tcp("");
    let moved = spec("[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:7001\"\n");
    assert_eq!(decide(Some(&old), &moved), Decision::Rebind("listen"));
    let reuse = tcp("[tcp_echo.socket]\nreuse_address = false");
    assert_eq!(
        decide(Some(&old), &reuse),
        Decision::Rebind("reuse_address")
    );
    let u1 = udp("");
    let u2 = udp("[udp_echo.socket]\nreuse_address = true");
    assert_eq!(decide(Some(&u1), &u2), Decision::Rebind("reuse_address"));
}

#[test]
fn removing_an_option_rebinds_unless_its_default_is_ours() {
    // The kernel's default buffer size comes back only with a new socket.
    let old = udp("[udp_echo.socket]\nrecv_buffer_bytes = 65536");
    assert_eq!(
        decide(Some(&old), &udp("")),
        Decision::Rebind("recv_buffer_bytes")
    );
    // nodelay's "not set" is a value the daemon applies itself, so it can go back in place.
    let old = tcp("[tcp_echo.socket]\nnodelay = false");
    assert_eq!(decide(Some(&old), &tcp("")), Decision::HandOver);
    assert_eq!(in_place(&old, &tcp(""), Role::TcpListener), ["nodelay"]);
}

#[test]
fn another_kind_or_destination_or_group_rebinds() {
    assert_eq!(decide(Some(&tcp("")), &udp("")), Decision::Rebind("kind"));
    let bcast = |dest: &str| {
        spec(&format!(
            "[[broadcast]]\nname = \"b\"\ndestination = \"{dest}\"\nbind = \"127.0.0.1:0\"\ninterval = \"1s\"\n"
        ))
    };
    let (b1, b2) = (bcast("127.255.255.255:7070"), bcast("127.255.255.255:7071"));
    assert_eq!(decide(Some(&b1), &b2), Decision::Rebind("destination"));
    let group = |g: &str| {
        spec(&format!(
            "[[multicast]]\nname = \"m\"\ngroup = \"{g}\"\nport = 7077\ninterface = \"127.0.0.1\"\n"
        ))
    };
    let (m1, m2) = (group("239.255.70.77"), group("239.255.70.78"));
    assert_eq!(decide(Some(&m1), &m2), Decision::Rebind("group"));
}
