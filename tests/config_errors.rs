//! Every kind of bad config exits 2 and names the file, line, column,
//! service and key; bind failures exit 1 and name service, address and cause.

mod common;

use common::*;

/// Runs `check` on `cfg`; asserts exit 2 and that stderr has `needle` at `line:col`.
fn expect_error(cfg: &str, line_col: &str, needle: &str) {
    let (code, _out, err, dir) = check(cfg, &[]);
    assert_eq!(code, 2, "exit code for {needle:?}; stderr:\n{err}");
    let path = dir.path().join("config.toml");
    let prefix = format!("{}:{line_col}: ", path.display());
    assert!(
        err.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(needle)),
        "expected a line starting {prefix:?} containing {needle:?}; got:\n{err}"
    );
}

const BASE: &str = "[[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\n";

#[test]
fn unknown_key_with_line_and_column() {
    expect_error(
        &format!("{BASE}colour = \"blue\"\n"),
        "4:1",
        "tcp_echo \"echo\": unknown field `colour`",
    );
    expect_error(
        &format!("{BASE}[tcp_echo.socket]\nnodelai = true\n"),
        "5:1",
        "unknown field `nodelai`",
    );
    expect_error(
        "[daemon]\nwatch = true\n",
        "2:1",
        "[daemon]: unknown field `watch`",
    );
    expect_error("[deamon]\n", "1:2", "unknown section `deamon`");
}

#[test]
fn bad_value_types() {
    expect_error(
        &format!("{BASE}max_connections = \"lots\"\n"),
        "4:19",
        "`max_connections` must be a whole number from 1 to 4294967295, without quotes; found \"lots\"",
    );
    expect_error(
        &format!("{BASE}idle_timeout = 60\n"),
        "4:16",
        "`idle_timeout` must be a duration in quotes with a unit, e.g. \"250ms\" or \"5s\"; found 60",
    );
    expect_error(
        &format!("{BASE}idle_timeout = \"60 parsecs\"\n"),
        "4:16",
        "invalid duration \"60 parsecs\"",
    );
    expect_error(
        &format!("{BASE}byte_order = \"middle\"\n"),
        "4:14",
        "`byte_order` must be `big` or `little`; found \"middle\"",
    );
    expect_error(
        "[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1\"\n",
        "3:10",
        "no port",
    );
}

#[test]
fn syntax_error() {
    expect_error("[[tcp_echo]\nname = \"e\"\n", "1:12", "");
}

#[test]
fn duplicate_names_and_overlapping_addresses() {
    let cfg = r#"
[[tcp_echo]]
name = "a"
listen = "0.0.0.0:7100"
[[tcp_echo]]
name = "a"
listen = "127.0.0.1:7100"
[[udp_echo]]
name = "u"
listen = "127.0.0.1:7100"
"#;
    expect_error(cfg, "6:8", "tcp_echo \"a\": duplicate service name");
    expect_error(
        cfg,
        "7:10",
        "tcp 127.0.0.1:7100 overlaps service \"a\" on 0.0.0.0:7100",
    );
    // udp on the same port as tcp is fine: different protocol.
    let (_, _, err, _d) = check(cfg, &[]);
    assert!(!err.contains("udp_echo \"u\""), "{err}");
}

#[test]
fn out_of_range_sizes() {
    expect_error(
        &format!("{BASE}length_field_bytes = 3\n"),
        "4:22",
        "length_field_bytes = 3 is not 1, 2, 4 or 8",
    );
    expect_error(
        &format!("{BASE}length_field_bytes = 2\nmax_frame_bytes = 65536\n"),
        "5:19",
        "more than a 2-byte length field can express (at most 65535)",
    );
    expect_error(
        &format!("{BASE}length_field_bytes = 8\nmax_frame_bytes = 2000000000\n"),
        "5:19",
        "over the limit",
    );
    expect_error(
        "[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nmax_datagram_bytes = 65508\n",
        "4:22",
        "out of range 1..=65507",
    );
    expect_error(
        &format!("{BASE}[tcp_echo.socket]\nttl = 0\n"),
        "5:7",
        "`ttl` must be a whole number from 1 to 255, without quotes; found 0",
    );
    expect_error(
        &format!("{BASE}[tcp_echo.socket]\nmulticast_ttl = 2\n"),
        "5:17",
        "applies to multicast senders and listeners only",
    );
    expect_error(
        &format!("{BASE}[tcp_echo.socket]\nonly_v6 = true\n"),
        "5:11",
        "only_v6 applies to IPv6 addresses only",
    );
}

#[test]
fn broadcast_and_multicast_rules() {
    let long = "x".repeat(600);
    let cfg = format!(
        "[[broadcast]]\nname = \"b\"\ndestination = \"127.255.255.255:7070\"\npayload = \"{long}\"\n\
         [[multicast]]\nname = \"m\"\ngroup = \"10.1.2.3\"\nport = 7077\n"
    );
    expect_error(
        &cfg,
        "4:11",
        "payload can render to 600 bytes, over the 512-byte limit",
    );
    expect_error(
        &cfg,
        "7:9",
        "10.1.2.3 is not a multicast group (must be in 224.0.0.0/4)",
    );
    expect_error(
        "[[multicast]]\nname = \"m\"\ngroup = \"ff02::1234\"\nport = 0\n",
        "4:8",
        "port must not be 0",
    );
}

#[test]
fn all_errors_are_reported_in_one_pass() {
    let cfg = "[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nlength_field_bytes = 3\n\
               [[tcp_echo]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\nbogus = 1\n\
               [[udp_echo]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\nmax_datagram_bytes = 0\n";
    let (code, _, err, _d) = check(cfg, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn run_exits_2_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[[tcp_echo]]\nname = \"e\"\n").unwrap();
    let (code, _, err) = netservd(&["run", "--config", p.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing field `listen`"), "{err}");
}

#[test]
fn bind_failures_exit_1_naming_service_address_and_cause() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, format!("[[tcp_echo]]\nname = \"busy\"\nlisten = \"127.0.0.1:{port}\"\n[tcp_echo.socket]\nreuse_address = false\n")).unwrap();
    let (code, _, err) = netservd(&["run", "--config", p.to_str().unwrap()], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("tcp_echo \"busy\"")
            && err.contains(&format!("127.0.0.1:{port}"))
            && err.contains("address already in use"),
        "{err}"
    );

    // 192.0.2.1 (TEST-NET-1) is never an address of this host; binding sends nothing.
    std::fs::write(
        &p,
        "[[udp_echo]]\nname = \"far\"\nlisten = \"192.0.2.1:0\"\n",
    )
    .unwrap();
    let (code, _, err) = netservd(&["run", "--config", p.to_str().unwrap()], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("udp_echo \"far\"")
            && err.contains("192.0.2.1 is not an address of this host"),
        "{err}"
    );
}

#[test]
fn shipped_config_checks_clean_and_default_path_falls_back_to_builtin() {
    let (code, out, err) = netservd(
        &[
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    // From a directory without config.toml and no NETSERVD_CONFIG: the built-in config.
    let empty = tempfile::tempdir().unwrap();
    let (code, out, _) = netservd(&["check"], Some(empty.path()));
    assert_eq!(code, 0);
    assert!(out.contains("<built-in config.toml>: ok"), "{out}");
}

#[test]
fn values_the_kernel_or_the_clock_would_refuse_are_config_errors() {
    expect_error(
        &format!("{BASE}idle_timeout = \"300000y\"\n"),
        "4:16",
        "idle_timeout = ",
    );
    expect_error(
        &format!("{BASE}[tcp_echo.socket]\nlinger = \"500ms\"\n"),
        "5:10",
        "SO_LINGER takes whole seconds",
    );
    expect_error(
        &format!("{BASE}[tcp_echo.socket]\nkeepalive = {{ idle = \"40000s\" }}\n"),
        "5:13",
        "must be whole seconds from 1s to 32767s",
    );
    expect_error(
        &format!("{BASE}[tcp_echo.socket]\nkeepalive = {{ retries = 500 }}\n"),
        "5:13",
        "retries = 500 is out of range 1..=127",
    );
    expect_error(
        "[[broadcast]]\nname = \"b\"\ndestination = \"127.255.255.255:7070\"\npayload = \"x {seq\"\n",
        "4:11",
        "unclosed `{seq`",
    );
}

#[test]
fn a_multicast_listener_overlaps_a_udp_echo_on_its_port() {
    let cfg = "[[udp_echo]]\nname = \"u\"\nlisten = \"0.0.0.0:17401\"\n\
               [[multicast]]\nname = \"m\"\ngroup = \"239.1.2.3\"\nport = 17401\n\
               [[multicast]]\nname = \"m2\"\ngroup = \"239.1.2.4\"\nport = 17401\n";
    expect_error(
        cfg,
        "7:8",
        "multicast \"m\": udp 0.0.0.0:17401 overlaps service \"u\"",
    );
    expect_error(
        cfg,
        "11:8",
        "multicast \"m2\": udp 0.0.0.0:17401 overlaps service \"u\"",
    );
    // Two multicast listeners sharing a port is the point of SO_REUSEADDR: they do not clash.
    let (_, _, err, _d) = check(cfg, &[]);
    assert!(
        err.contains("2 error(s)") && !err.contains("overlaps service \"m\""),
        "{err}"
    );
}
