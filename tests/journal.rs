//! The traffic journal against the real binary (issue 16): it returns what a
//! test sent (peer, size, hex and text), keeps only the last `journal = N`,
//! answers `since=SEQ`, and `DELETE` clears it without reusing numbers; the
//! broadcast journal records what was announced, and its `pause` fault stops that.

mod common;
#[path = "common/control.rs"]
mod control;
#[cfg(target_os = "linux")]
#[path = "common/netns.rs"]
mod netns;

use std::net::{TcpStream, UdpSocket};
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

use common::*;

const ECHOES: &str = r#"
[daemon]
watch_config = false
[admin]
listen = "127.0.0.1:0"
control = true
[[tcp_echo]]
name = "echo"
listen = "127.0.0.1:0"
journal = 4
[[udp_echo]]
name = "udp"
listen = "127.0.0.1:0"
journal = 8
"#;

/// Started only inside a test's own network namespace (Linux).
#[cfg(target_os = "linux")]
const ANNOUNCER: &str = r#"
[[broadcast]]
name = "announce"
destination = "127.255.255.255:17979"
bind = "127.0.0.1:0"
interval = "50ms"
jitter = "0ms"
payload = "hello seq={seq}"
goodbye = ""
journal = 16
"#;

fn seqs(v: &serde_json::Value) -> Vec<u64> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn tcp_journal_holds_the_last_n_frames_with_since_and_delete() {
    let d = Daemon::start(ECHOES);
    let admin = counters::admin_addr(&d);
    let mut s = TcpStream::connect(d.addr("echo")).unwrap();
    let me = s.local_addr().unwrap().to_string();
    for i in 0..6 {
        echo_on(&mut s, format!("frame-{i}").as_bytes());
    }
    let j = control::journal(admin, "echo", 0);
    assert_eq!(j["capacity"], 4);
    assert_eq!(seqs(&j), [3, 4, 5, 6], "bounded to the last 4: {j}");
    let e = &j["entries"][0];
    assert_eq!(e["text"], "frame-2");
    assert_eq!(e["hex"], "6672616d652d32");
    assert_eq!(e["size"], 7);
    assert_eq!(e["peer"], me.as_str());
    assert_eq!(e["direction"], "in");
    assert_eq!(seqs(&control::journal(admin, "echo", 5)), [6]);

    let (status, body) = control::call(admin, "DELETE", "/services/echo/journal", None, None);
    assert_eq!(status, 200, "{body}");
    assert!(seqs(&control::journal(admin, "echo", 0)).is_empty());
    echo_on(&mut s, b"after");
    assert_eq!(
        seqs(&control::journal(admin, "echo", 0)),
        [7],
        "numbers go on after a clear"
    );
    d.assert_clean(&[]);
}

#[test]
fn udp_journal_records_sender_and_bytes() {
    let d = Daemon::start(ECHOES);
    let admin = counters::admin_addr(&d);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    for msg in [&b"ping\x00\x01"[..], b"pong"] {
        u.send_to(msg, d.addr("udp")).unwrap();
        u.recv(&mut buf).unwrap();
    }
    let j = control::journal(admin, "udp", 0);
    let e = &j["entries"];
    assert_eq!(e[0]["text"], "ping..");
    assert_eq!(e[0]["hex"], "70696e670001");
    assert_eq!(e[0]["peer"], u.local_addr().unwrap().to_string().as_str());
    assert_eq!(e[1]["text"], "pong");
    d.assert_clean(&[]);
}

/// Multicast echo in a namespace: the journal names sender and group, and
/// `duplicate = 1.0` answers each datagram twice.
#[cfg(target_os = "linux")]
#[test]
fn multicast_journal_names_the_group_and_echo_faults_apply() {
    netns::enter();
    let d = Daemon::start(
        r#"
[admin]
listen = "127.0.0.1:0"
[[multicast]]
name = "group"
group = "239.255.70.99"
port = 17099
interface = "127.0.0.1"
reply = "echo"
journal = 4
[multicast.faults]
duplicate = 1.0
"#,
    );
    let admin = counters::admin_addr(&d);
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_multicast_loop_v4(true).unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    u.send_to(b"to the group", "239.255.70.99:17099").unwrap();
    let mut buf = [0u8; 64];
    let mut replies = 0;
    while let Ok(n) = u.recv(&mut buf) {
        assert_eq!(&buf[..n], b"to the group");
        replies += 1;
    }
    assert_eq!(replies, 2, "duplicate = 1.0: two echoes");
    let j = control::journal(admin, "group", 0);
    let e = &j["entries"][0];
    assert_eq!(e["group"], "239.255.70.99", "{j}");
    assert_eq!(e["peer"], u.local_addr().unwrap().to_string().as_str());
    assert_eq!(e["text"], "to the group");
    assert_eq!(control::faults_total(admin, "group", "duplicate"), 1);
    d.assert_clean(&[]);
}

#[cfg(target_os = "linux")]
/// Polls the broadcast journal until it holds `n` entries after `since` (bounded).
fn wait_entries(admin: std::net::SocketAddr, since: u64, n: usize) -> serde_json::Value {
    let until = Instant::now() + WAIT;
    loop {
        let j = control::journal(admin, "announce", since);
        if j["entries"].as_array().unwrap().len() >= n || Instant::now() > until {
            return j;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// In the test's own network namespace, as every broadcast test (Linux).
#[cfg(target_os = "linux")]
#[test]
fn broadcast_journal_records_announcements_and_pause_stops_them() {
    netns::enter();
    let d = Daemon::start(&format!("{ECHOES}{ANNOUNCER}"));
    let admin = counters::admin_addr(&d);
    let j = wait_entries(admin, 0, 3);
    let e = &j["entries"][0];
    assert_eq!(e["direction"], "out");
    assert_eq!(e["peer"], "127.255.255.255:17979");
    assert!(e["text"].as_str().unwrap().starts_with("hello seq="), "{e}");

    control::put_faults(admin, "announce", r#"{"pause": true}"#);
    // Let an announcement already due go out, then note where the journal is.
    std::thread::sleep(Duration::from_millis(120));
    let before = control::journal(admin, "announce", 0)["last_seq"]
        .as_u64()
        .unwrap();
    // The 400 ms wait is the thing tested: eight intervals pass with nothing sent.
    std::thread::sleep(Duration::from_millis(400));
    let after = control::journal(admin, "announce", 0)["last_seq"]
        .as_u64()
        .unwrap();
    assert_eq!(before, after, "paused: nothing announced");
    assert!(control::faults_total(admin, "announce", "pause") >= 5);

    control::put_faults(admin, "announce", r#"{"loss": 1.0}"#);
    std::thread::sleep(Duration::from_millis(120));
    let lost_before = control::faults_total(admin, "announce", "loss");
    assert!(lost_before >= 1);
    control::clear_faults(admin, "announce");
    let j = wait_entries(admin, after, 2);
    assert!(
        j["entries"].as_array().unwrap().len() >= 2,
        "announcing again: {j}"
    );
    d.assert_clean(&[]);
}
