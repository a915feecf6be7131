//! Checks `check` used to pass and bind then failed, word for word: a group
//! and an interface of different IP families, a broadcast destination that
//! is a unicast address of a local subnet (an error; a warning when this host
//! cannot tell), and a `bind_device` that names no interface (a warning at
//! `check`, an error at `check --bind`). `check` sends nothing; the `run`
//! case exits before any service starts.

mod common;
#[cfg(target_os = "linux")]
#[path = "common/netns.rs"]
mod netns;

use common::*;

fn placed(err: &str, dir: &tempfile::TempDir) -> String {
    err.replace(
        &dir.path().join("config.toml").display().to_string(),
        "FILE",
    )
}

#[test]
fn group_and_interface_of_different_families() {
    let (code, _, err, dir) = check(
        "[[multicast]]\nname = \"six\"\ngroup = \"ff02::1:7\"\nport = 7077\ninterface = \"127.0.0.1\"\n\
         [[multicast]]\nname = \"four\"\ngroup = \"239.1.2.3\"\nport = 7078\ninterface = \"::1\"\n",
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        placed(&err, &dir),
        "FILE:5:13: multicast \"six\": interface \"127.0.0.1\" is an IPv4 address but group ff02::1:7 is IPv6: \
         an IPv6 group is joined on an interface name or index, e.g. \"lo\" or \"1\"\n\
         FILE:10:13: multicast \"four\": interface \"::1\" is an IPv6 address but group 239.1.2.3 is IPv4: \
         an IPv4 group is joined on a local IPv4 address, e.g. \"127.0.0.1\"\n\
         2 error(s) in FILE\n"
    );
}

/// In a namespace of our own, so the local subnets are known: only `lo`'s 127.0.0.0/8.
#[cfg(target_os = "linux")]
#[test]
fn a_unicast_broadcast_destination_is_an_error() {
    netns::enter();
    let cfg = "[[broadcast]]\nname = \"b\"\ndestination = \"127.0.0.5:7070\"\n";
    let (code, out, err, dir) = check(cfg, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        placed(&err, &dir),
        "FILE:3:15: broadcast \"b\": destination 127.0.0.5 is a unicast address of the local subnet \
         127.0.0.0/8, not a broadcast address; use its broadcast address 127.255.255.255 or a multicast group\n\
         1 error(s) in FILE\n"
    );
    // `run` refuses it the same way, before anything is sent.
    let p = dir.path().join("config.toml");
    let (code, _, err) = netservd(&["run", "--config", p.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a unicast address of the local subnet"),
        "{err}"
    );

    // 192.0.2.0/24 (TEST-NET-1) is no local subnet here: it may be a remote one's broadcast.
    let (code, out, err, dir) = check(
        "[[broadcast]]\nname = \"b\"\ndestination = \"192.0.2.255:7070\"\n",
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        placed(&err, &dir),
        "FILE:3:15: warning: broadcast \"b\": destination 192.0.2.255 is not the broadcast address \
         of any local subnet (here: 127.255.255.255); unless it is a remote subnet's directed broadcast, \
         use one of those or a multicast group\n"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_missing_bind_device_warns_at_check_and_fails_check_bind() {
    let cfg = "[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n[udp_echo.socket]\nbind_device = \"nsd-none9\"\n";
    let (code, out, err, dir) = check(cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        placed(&err, &dir),
        "FILE:5:15: warning: udp_echo \"u\": socket.bind_device \"nsd-none9\" is not a network interface \
         of this host, so the service will fail to bind; see `ip link` for the names\n"
    );
    let (code, out, err, dir) = check(cfg, &["--bind"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        placed(&err, &dir),
        "FILE:5:15: udp_echo \"u\": socket.bind_device \"nsd-none9\" is not a network interface of this \
         host, so binding to it fails; see `ip link` for the names\n1 error(s) in FILE\n"
    );
    // An interface that exists passes quietly.
    let (code, _, err, _dir) = check(&cfg.replace("nsd-none9", "lo"), &[]);
    assert_eq!(code, 0);
    assert!(err.is_empty(), "{err}");
}

/// In a namespace: only `lo` (127.0.0.1) exists.
#[cfg(target_os = "linux")]
#[test]
fn a_multicast_interface_this_host_lacks() {
    netns::enter();
    let cfg = "[[multicast]]\nname = \"four\"\ngroup = \"239.1.2.3\"\nport = 7078\ninterface = \"192.0.2.7\"\n\
               [[multicast]]\nname = \"six\"\ngroup = \"ff02::1:7\"\nport = 7079\ninterface = \"nsd-none9\"\n";
    let (code, out, err, dir) = check(cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        placed(&err, &dir),
        "FILE:5:13: warning: multicast \"four\": interface \"192.0.2.7\" is not an address of this host, so \
         joining the group on it fails; give a local IPv4 address (see `ip -4 addr`)\n\
         FILE:10:13: warning: multicast \"six\": interface \"nsd-none9\" is not a network interface of this \
         host, so joining the group on it fails; see `ip link` for the names\n"
    );
    let (code, _, err, _dir) = check(cfg, &["--bind"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.ends_with("2 error(s) in ") || err.contains("\n2 error(s) in "),
        "{err}"
    );
    let ok = cfg
        .replace("192.0.2.7", "127.0.0.1")
        .replace("nsd-none9", "lo");
    let (code, _, err, _dir) = check(&ok, &[]);
    assert_eq!((code, err.as_str()), (0, ""));
}
