//! The client tools' messages, word for word, against the real binary: `send`
//! refuses a message its length field cannot carry and never panics on any
//! arguments (a property test), reads its payload from stdin, and `probe` and
//! `send` explain a framing mismatch (HTTP, TLS, text, a closed connection);
//! `bench` fails on losses and says when they look like a rate limit; `probe`
//! on a multicast group gets the listener's echo (Linux, in a namespace).

mod common;
#[cfg(target_os = "linux")]
#[path = "common/netns.rs"]
mod netns;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::*;
use proptest::prelude::*;

/// Runs `netservd ARGS` with `input` on stdin (a pipe, so not a terminal).
fn with_stdin(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netservd");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP peer that answers the first read with `reply` and closes.
fn fake_server(reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
        }
    });
    format!("tcp://{addr}")
}

#[test]
fn send_refuses_a_message_the_length_field_cannot_carry() {
    // Nothing needs to listen: the size is checked before connecting.
    let long = "x".repeat(300);
    let (code, out, err) = netservd(
        &[
            "send",
            "tcp://127.0.0.1:9",
            &long,
            "--length-field-bytes",
            "1",
        ],
        None,
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err.trim_end(),
        "netservd send 127.0.0.1:9: the message is 300 bytes, more than a 1-byte length field can \
         express (at most 255 bytes); send a shorter one or use a wider --length-field-bytes \
         (1, 2, 4 or 8) that matches the service"
    );
    // A 65,508-byte argument is over Windows' 32,767-character command line: Unix only.
    if cfg!(unix) {
        let big = "y".repeat(65508);
        let (code, _, err) = netservd(&["send", "udp://127.0.0.1:9", &big], None);
        assert_eq!(code, 1);
        assert!(
            err.contains(
                "the message is 65508 bytes, more than a UDP datagram carries (at most 65507 bytes)"
            ),
            "{err}"
        );
    }
}

#[test]
fn send_reads_the_payload_from_stdin() {
    let d = Daemon::start(ECHO_WITH_ADMIN);
    let url = d.urls["echo"].clone();
    // No MESSAGE, stdin a pipe: its bytes are the payload, sent --count times.
    let (code, out, err) = with_stdin(
        &[
            "send",
            &url,
            "--count",
            "2",
            "--interval",
            "0s",
            "--wait",
            "2s",
        ],
        b"piped payload",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("13 bytes: piped payload").count(), 2, "{out}");
    // `-` reads stdin too, for UDP as well.
    let udp = d.urls["echo-udp"].clone();
    let (code, out, err) = with_stdin(&["send", &udp, "-", "--expect-reply"], b"dash");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4 bytes: dash"), "{out}");
    // An empty stdin (</dev/null) keeps the numbered default.
    let (code, out, err) = netservd(&["send", &url, "--wait", "2s"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("15 bytes: netservd send 0"), "{out}");
    d.assert_clean(&[]);
}

#[test]
fn probe_and_send_explain_a_framing_mismatch() {
    let d = Daemon::start(ECHO_WITH_ADMIN);
    let admin = format!("tcp://{}", common::counters::admin_addr(&d));
    let (code, out, _) = netservd(&["probe", &admin], None);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim_end(),
        format!(
            "unhealthy: {admin}: reply declares a frame of 1213486160 bytes, more than 1048576: the \
             reply looks like HTTP (it starts with \"HTTP/\"), so this port is not a framed TCP echo \
             (is it the admin endpoint?)"
        )
    );

    let tls = fake_server(b"\x15\x03\x03\x00\x02\x02\x46");
    let (code, out, _) = netservd(&["probe", &tls], None);
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "the reply looks like TLS (a TLS record header), so this port is not a framed TCP echo"
        ),
        "{out}"
    );

    let text = fake_server(b"220 smtp.example ESMTP ready\r\n");
    let (code, _, err) = netservd(&["send", &text, "hi"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "the reply looks like text (\"220 smtp.example ESMTP ready\\r\\n\"), so this port is not a framed TCP echo"
        ),
        "{err}"
    );

    // The echo takes 2-byte lengths for 4-byte ones: the declared length is
    // over its max_frame_bytes and it closes the connection.
    let closed = "the service closed the connection right after our frame without echoing it: its framing \
         probably differs from --length-field-bytes 2 --byte-order little (a larger declared length \
         than its max_frame_bytes closes the connection); compare with its length_field_bytes and \
         byte_order (`netservd check`)";
    let echo = d.urls["echo"].clone();
    let flags = ["--length-field-bytes", "2", "--byte-order", "little"];
    let mut args = vec!["probe", &echo];
    args.extend_from_slice(&flags);
    let (code, out, _) = netservd(&args, None);
    assert_eq!(code, 1);
    assert_eq!(out.trim_end(), format!("unhealthy: {echo}: {closed}"));
    let mut args = vec!["send", &echo, "hello", "--wait", "5s"];
    args.extend_from_slice(&flags);
    let (code, _, err) = netservd(&args, None);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        format!("netservd send {}: {closed}", d.addr("echo"))
    );
    d.assert_clean(&[]);
}

#[test]
fn bench_fails_on_losses_that_look_like_a_rate_limit() {
    let d = Daemon::start(
        r#"
[[udp_echo]]
name = "limited"
listen = "127.0.0.1:0"
rate_limit = { per_source = 20, burst = 20 }
"#,
    );
    let url = d.urls["limited"].clone();
    // A window of 4 asks far more than 20 a second: most go unanswered, and fast.
    let args = [
        "bench",
        url.as_str(),
        "--window",
        "4",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "-q",
    ];
    let (code, out, err) = netservd(&args, None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("more than 1 %; the echoes that came back were quick"),
        "{err}"
    );
    assert!(err.contains("so this looks like a rate limit: a udp_echo with rate_limit answers each source at most per_source times a second"), "{err}");
    assert!(
        err.trim_end()
            .ends_with("; pass --allow-loss to exit 0 anyway"),
        "{err}"
    );
    let mut lenient = args.to_vec();
    lenient.extend_from_slice(&["--allow-loss", "--json"]);
    let (code, out, err) = netservd(&lenient, None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("looks like a rate limit"), "{err}");
    // No number in the report has more than 3 decimals.
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in ["msgs_per_s", "mb_per_s", "duration_s"] {
        let x = v[key].as_f64().unwrap();
        assert_eq!((x * 1e3).round() / 1e3, x, "{key} in {v}");
    }
    d.assert_clean(&[]);
}

/// `send` over arbitrary arguments: it may refuse them (exit 1, or 2 for
/// clap), but never panics (exit 101) or hangs.
mod send_never_panics {
    use super::*;
    use std::sync::OnceLock;

    /// A TCP peer that takes every connection and reads it to the end, so
    /// `send` gets as far as encoding and sending (where the old panic was).
    fn sink() -> &'static str {
        static SINK: OnceLock<String> = OnceLock::new();
        SINK.get_or_init(|| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("tcp://{}", l.local_addr().unwrap());
            std::thread::spawn(move || {
                for mut s in l.incoming().map_while(Result::ok) {
                    std::thread::spawn(move || {
                        let _ = s.set_read_timeout(Some(WAIT));
                        let _ = std::io::copy(&mut s, &mut std::io::sink());
                    });
                }
            });
            url
        })
    }

    fn url() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("tcp://127.0.0.1:9".to_string()),
            Just("udp://127.0.0.1:9".to_string()),
            Just("udp://[::1]:9".to_string()),
            Just("udp://239.1.2.3:9".to_string()),
            "[a-z]{0,4}://[0-9.:]{0,12}",
        ]
    }

    /// Message sizes at and around what each length field can express.
    fn len() -> impl Strategy<Value = usize> {
        prop_oneof![
            0usize..300,
            250usize..260,
            65530usize..65540,
            65500usize..65600
        ]
    }

    fn width() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("1"), Just("2"), Just("4"), Just("8")]
    }

    fn run_send(args: &[&str]) -> Result<(), TestCaseError> {
        let (code, out, err) = netservd(args, None);
        prop_assert!(
            [0, 1, 2].contains(&code),
            "exit {code} for {args:?}: {out}{err}"
        );
        prop_assert!(!err.contains("panicked"), "{err}");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        /// Against a peer that takes the frames: every size and framing reaches
        /// the encoder (where a 300-byte message with a 1-byte field used to panic).
        #[test]
        fn tcp_frames_of_any_size(
            len in len(),
            width in width(),
            order in prop_oneof![Just("big"), Just("little")],
            count in prop_oneof![Just("1"), Just("2")],
            hex in any::<bool>(),
        ) {
            let msg = "m".repeat(len);
            let mut args = vec![
                "send", sink(), msg.as_str(), "--length-field-bytes", width,
                "--byte-order", order, "--count", count, "--interval", "0s", "--wait", "0s",
            ];
            if hex { args.push("--hex"); }
            run_send(&args)?;
        }

        /// Any mix of arguments, valid or not.
        #[test]
        fn any_arguments(
            url in url(),
            len in len(),
            width in prop_oneof![width(), Just("3"), Just("-1")],
            order in prop_oneof![Just("big"), Just("little"), Just("middle")],
            count in prop_oneof![Just("0"), Just("1"), Just("2"), Just("-5")],
            ttl in prop_oneof![Just(None), Just(Some("0")), Just(Some("300")), Just(Some("99999999999"))],
            interface in prop_oneof![Just(None), Just(Some("127.0.0.1")), Just(Some("eth9")), Just(Some(""))],
        ) {
            let msg = "m".repeat(len);
            let mut args = vec![
                "send", url.as_str(), msg.as_str(), "--length-field-bytes", width,
                "--byte-order", order, "--count", count, "--interval", "0s", "--wait", "0s",
            ];
            if let Some(t) = ttl { args.extend_from_slice(&["--ttl", t]); }
            if let Some(i) = interface { args.extend_from_slice(&["--interface", i]); }
            run_send(&args)?;
        }
    }
}

/// `probe udp://GROUP:PORT` against a listener that echoes, and the advice
/// when nothing answers, inside a namespace (multicast on `lo` only there).
#[cfg(target_os = "linux")]
#[test]
fn probe_a_multicast_echo() {
    netns::enter();
    let d = Daemon::start(
        r#"
[[multicast]]
name = "group"
group = "239.255.70.90"
port = 17090
interface = "127.0.0.1"
reply = "echo"
"#,
    );
    let (code, out, err) = netservd(
        &[
            "probe",
            "udp://239.255.70.90:17090",
            "--interface",
            "127.0.0.1",
            "--timeout",
            "5s",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("healthy: udp://239.255.70.90:17090 answered in "),
        "{out}"
    );
    // Nobody in this group: the advice names reply = "echo" and send --expect-reply.
    let (code, out, _) = netservd(
        &[
            "probe",
            "udp://239.255.70.91:17090",
            "--interface",
            "127.0.0.1",
            "--timeout",
            "300ms",
        ],
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(
        out.trim_end(),
        "unhealthy: udp://239.255.70.91:17090: no answer within 300ms; a [[multicast]] listener \
         answers only with reply = \"echo\", from the interface it joined on: give that with \
         --interface, or try `netservd send udp://239.255.70.91:17090 --expect-reply --interface ADDRESS`"
    );
    d.assert_clean(&[]);
}
