//! Config type and range errors in plain words, word for word: each names
//! the key, what is allowed and what was found; one `check` run reports
//! every error of the file (no type error hides another, even in the same
//! table); typos get a "did you mean"; a rule about two services says where
//! the other one is; an unreadable file is reported without a position.

mod common;

use common::*;

/// Runs `check` on `cfg`; asserts exit 2 and returns stderr with the temp
/// file's path replaced by `FILE`.
fn errors(cfg: &str) -> String {
    let (code, out, err, dir) = check(cfg, &[]);
    assert_eq!(code, 2, "{out}{err}");
    let path = dir.path().join("config.toml");
    err.replace(&path.display().to_string(), "FILE")
}

#[test]
fn one_check_reports_every_error_of_the_file_in_plain_words() {
    let cfg = r#"[daemon]
shutdown_timeout = 5
[[tcp_echo]]
name = "echo"
listen = "127.0.0.1:7000"
max_conections = 10
length_field_bytes = "4"
max_connections = -1
byte_order = "bigg"
[tcp_echo.socket]
backlog = -1
ttl = "64"
nodelay = 1
[[tcp_echo]]
name = "echo"
listen = "127.0.0.1:7000"
[[udp_echo]]
name = "u"
listen = "127.0.0.1:0"
max_datagram_bytes = 1.5
compat = "sockperff"
[[multicast]]
name = "m"
group = "239.1.2.3"
port = 99999
"#;
    let want = r#"FILE:2:20: [daemon]: `shutdown_timeout` must be a duration in quotes with a unit, e.g. "250ms" or "5s"; found 5
FILE:6:1: tcp_echo "echo": unknown field `max_conections`, expected one of `name`, `listen`, `length_field_bytes`, `byte_order`, `max_frame_bytes`, `max_connections`, `idle_timeout`, `frame_timeout`, `max_connections_per_source`, `max_connections_per_second_per_source`, `source_prefix_v6`, `allow`, `deny`, `faults`, `journal`, `socket`; did you mean `max_connections`?
FILE:7:22: tcp_echo "echo": `length_field_bytes` must be 1, 2, 4 or 8, without quotes; found "4"
FILE:8:19: tcp_echo "echo": `max_connections` must be a whole number from 1 to 4294967295, without quotes; found -1
FILE:9:14: tcp_echo "echo": `byte_order` must be `big` or `little`; found "bigg"; did you mean `big`?
FILE:11:11: tcp_echo "echo": `backlog` must be a whole number from 1 to 65535, without quotes; found -1
FILE:12:7: tcp_echo "echo": `ttl` must be a whole number from 1 to 255, without quotes; found "64"
FILE:13:11: tcp_echo "echo": `nodelay` must be true or false, without quotes; found 1
FILE:15:8: tcp_echo "echo": duplicate service name (already used by a tcp_echo service); every service needs a unique name (the other is at 4:8)
FILE:16:10: tcp_echo "echo": tcp 127.0.0.1:7000 overlaps service "echo" on 127.0.0.1:7000; give one of them another port or address (the other is at 5:10)
FILE:20:22: udp_echo "u": `max_datagram_bytes` must be a whole number from 1 to 65507, without quotes; found 1.5
FILE:21:10: udp_echo "u": `compat` must be `none` or `sockperf`; found "sockperff"; did you mean `sockperf`?
FILE:25:8: multicast "m": `port` must be a whole number from 1 to 65535, without quotes; found 99999
13 error(s) in FILE
"#;
    assert_eq!(errors(cfg), want);
}

#[test]
fn a_range_error_reads_like_a_type_error() {
    // -1 is an i32 (so serde takes it); the range check says the same words.
    let err = errors(
        "[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\n[tcp_echo.socket]\nbacklog = -1\n",
    );
    assert_eq!(
        err.lines().next().unwrap(),
        "FILE:5:11: tcp_echo \"e\": `backlog` must be a whole number from 1 to 65535, without quotes; found -1"
    );
}

#[test]
fn typos_get_a_suggestion() {
    let err = errors(
        "[deamon]\n[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\n[tcp_echo.socket]\nnodelai = true\n",
    );
    assert!(
        err.contains(
            "FILE:1:2: unknown section `deamon`; expected one of [daemon], [admin], [[tcp_echo]], \
             [[udp_echo]], [[broadcast]], [[multicast]]; did you mean `daemon`?"
        ),
        "{err}"
    );
    assert!(
        err.contains("FILE:6:1: tcp_echo \"e\": unknown field `nodelai`, expected one of ")
            && err.contains("; did you mean `nodelay`?"),
        "{err}"
    );
    // Nothing close: no guess.
    let err = errors("[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\ncolour = 1\n");
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn a_bad_required_key_is_reported_once() {
    // `listen` is wrong and required: its own error, no "missing field" on top.
    let err = errors("[[tcp_echo]]\nname = \"e\"\nlisten = 7000\n");
    assert_eq!(
        err,
        "FILE:3:10: tcp_echo \"e\": `listen` must be an address in quotes, e.g. \"127.0.0.1:7007\"; found 7000\n\
         1 error(s) in FILE\n"
    );
}

#[test]
fn an_unreadable_file_has_no_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let (code, _, err) = netservd(&["check", "--config", path.to_str().unwrap()], None);
    assert_eq!(code, 2);
    let p = path.display();
    // The OS words its reason; the position-free shape and the advice are ours.
    assert!(
        err.starts_with(&format!("{p}: cannot read config file: ")),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "; pass --config PATH or set NETSERVD_CONFIG\n1 error(s) in {p}\n"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
}

/// Tables of keys known and unknown with values of every TOML type: parsing
/// never panics, never loops, and every error is placed inside the file.
mod any_table {
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("name".to_string()),
            Just("listen".to_string()),
            Just("length_field_bytes".to_string()),
            Just("max_connections".to_string()),
            Just("idle_timeout".to_string()),
            Just("byte_order".to_string()),
            Just("max_conections".to_string()),
            Just("socket.backlog".to_string()),
            Just("socket.keepalive".to_string()),
            Just("socket.nodelai".to_string()),
            "[a-z_]{1,12}",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            Just("-1".to_string()),
            Just("1.5".to_string()),
            Just("true".to_string()),
            Just("\"127.0.0.1:0\"".to_string()),
            Just("\"5s\"".to_string()),
            Just("\"big\"".to_string()),
            "\"[a-z0-9 ]{0,8}\"",
            Just("[1, \"x\"]".to_string()),
            Just("{ idle = 5, retries = \"x\" }".to_string()),
            Just("{}".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn never_panics_and_places_every_error(
            kv in proptest::collection::vec((key(), value()), 0..12),
            kind in prop_oneof![Just("tcp_echo"), Just("udp_echo"), Just("multicast"), Just("daemon")],
        ) {
            let header = if kind == "daemon" { "[daemon]".to_string() } else { format!("[[{kind}]]") };
            let mut src = format!("{header}\n");
            for (k, v) in &kv {
                src.push_str(&format!("{k} = {v}\n"));
            }
            let lines = src.lines().count();
            if let Err(e) = netservd::config::parse(&src, "t") {
                for d in &e.diagnostics {
                    prop_assert!(!d.message.is_empty());
                    prop_assert!(d.line >= 1 && d.line <= lines.max(1), "{d:?} in\n{src}");
                }
            }
        }
    }
}
