//! `netservd send` and `netservd listen` against a running daemon, inside a
//! network namespace: watching an announcer, poking a group while listening
//! on it, hex output, TCP frames, and `--timeout` giving up with exit 1.
//! Linux only: network namespaces (unshare(CLONE_NEWNET)) and `ip`.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/netns.rs"]
mod netns;

use common::*;
use netns::{Peer, tool};

#[test]
fn send_and_listen_against_the_daemon() {
    netns::enter();
    let d = Daemon::start(
        r#"
[[tcp_echo]]
name = "echo"
listen = "127.0.0.1:0"
[[broadcast]]
name = "announce"
destination = "127.255.255.255:17075"
bind = "127.0.0.1:0"
interval = "100ms"
jitter = "10ms"
payload = "netservd {name} seq={seq}"
[[multicast]]
name = "group"
group = "239.255.70.78"
port = 17076
interface = "127.0.0.1"
reply = "echo"
"#,
    );
    // listen: watch the announcer.
    let (code, out) = tool(&[
        "listen",
        "udp://127.255.255.255:17075",
        "--count",
        "3",
        "--timeout",
        "5s",
    ]);
    assert_eq!(code, 0);
    let seen: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("bytes: netservd announce seq="))
        .collect();
    assert_eq!(seen.len(), 3, "{out}");
    assert!(
        seen[0].starts_with("127.0.0.1:"),
        "sender shown first: {}",
        seen[0]
    );

    // listen on the group while send pokes it; the daemon echoes to send.
    let mut listener = Peer::spawn(
        bin().to_str().unwrap(),
        &[
            "listen",
            "udp://239.255.70.78:17076",
            "--interface",
            "127.0.0.1",
            "--count",
            "1",
            "--timeout",
            "5s",
        ],
    );
    // `listen` says so once its socket is bound and the group joined.
    listener.wait_stderr("listening on", WAIT);
    let (code, out) = tool(&[
        "send",
        "udp://239.255.70.78:17076",
        "poke",
        "--interface",
        "127.0.0.1",
        "--expect-reply",
        "--wait",
        "500ms",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("4 bytes: poke"), "{out}");
    assert_eq!(
        listener.wait(WAIT),
        Some(0),
        "listen --count 1 should exit 0 after the poke"
    );
    assert!(
        listener
            .lines()
            .iter()
            .any(|l| l.ends_with("4 bytes: poke")),
        "{:?}",
        listener.lines()
    );

    // --hex, and tcp:// frames.
    let (code, out) = tool(&["send", &d.urls["echo"], "hi", "--wait", "300ms", "--hex"]);
    assert_eq!(code, 0);
    assert!(out.contains("2 bytes: hex 6869"), "{out}");
    // Nothing arrives: --timeout gives up with exit 1.
    let (code, _) = tool(&["listen", "udp://127.0.0.1:17099", "--timeout", "300ms"]);
    assert_eq!(code, 1);
    d.assert_clean(&[]);
}
