//! Live reconfiguration against the real binary: SIGHUP and file edits,
//! unchanged services keep their socket (same inode) and connections, bad
//! configs and bind conflicts change nothing, moved services drain.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/live.rs"]
mod live;
#[path = "common/netns.rs"]
mod netns;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use live::*;

fn svc(name: &str, port: u16, extra: &str) -> String {
    svc_at(name, &format!("127.0.0.1:{port}"), extra)
}

/// A tcp_echo on `listen` (services under test bind port 0: `127.0.0.2:0`
/// moves a service to another address without guessing a free port).
fn svc_at(name: &str, listen: &str, extra: &str) -> String {
    format!("[[tcp_echo]]\nname = \"{name}\"\nlisten = \"{listen}\"\n{extra}\n")
}

/// Polls until `addr` accepts and echoes; returns how long that took.
fn wait_serving(addr: SocketAddr) -> Duration {
    let t = Instant::now();
    while t.elapsed() < WAIT {
        if let Ok(mut s) = TcpStream::connect(addr) {
            s.set_read_timeout(Some(WAIT)).unwrap();
            echo_once(&mut s, b"up");
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(1)); // poll interval
    }
    panic!("{addr} never started serving");
}

fn reloads(d: &Daemon, msg: &str) -> usize {
    d.count_logs(|l| l["message"] == msg)
}

const NO_WATCH: &str = "[daemon]\nwatch_config = false\n";

#[test]
fn sighup_adds_a_service_and_keeps_the_unchanged_one_on_the_same_socket() {
    let base = format!("{NO_WATCH}{}", svc("a", 0, ""));
    let mut d = Daemon::start(&base);
    let p1 = d.addr("a").port();
    let inode = listen_inode(p1).expect("listening");
    let mut before = connect(d.addr("a"));
    echo_once(&mut before, b"before");

    d.write_config(&format!("{base}{}", svc("b", 0, "")));
    let t = Instant::now();
    d.signal(libc::SIGHUP);
    let took = wait_serving(reload_addr(&d, "b"));
    eprintln!(
        "SIGHUP to new listener accepting: {:?} (poll bound {:?})",
        took,
        t.elapsed()
    );
    let line = d
        .wait_log(|l| l["message"] == "reload applied", WAIT)
        .unwrap();
    assert_eq!(
        (line["started"].as_u64(), line["unchanged"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        d.wait_log(|l| l["action"] == "unchanged" && l["service"] == "a", WAIT)
            .is_some()
    );
    assert!(
        d.wait_log(|l| l["action"] == "started" && l["service"] == "b", WAIT)
            .is_some()
    );
    assert_eq!(
        listen_inode(p1),
        Some(inode),
        "unchanged service got a new socket"
    );
    echo_once(&mut before, b"after"); // the old connection still works
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(WAIT).unwrap().code(), Some(0));
    d.assert_clean(&[]);
}

#[test]
fn a_file_edit_reloads_by_itself() {
    let base = svc("a", 0, "");
    // The watcher is armed before `ready`: no wait needed before the edit.
    let d = Daemon::start(&base);
    d.write_config(&format!("{base}{}", svc("b", 0, "")));
    wait_serving(reload_addr(&d, "b"));
    let line = d
        .wait_log(|l| l["message"] == "reload applied", WAIT)
        .unwrap();
    assert_eq!(line["trigger"], "file change");
    d.assert_clean(&[]);
}

#[test]
fn a_broken_file_changes_nothing() {
    let base = format!("{NO_WATCH}{}", svc("a", 0, ""));
    let mut d = Daemon::start(&base);
    d.expect_error(&d.config_path.display().to_string());
    let p1 = d.addr("a").port();
    let inode = listen_inode(p1);
    let mut conn = connect(d.addr("a"));
    // A syntax error, then an invalid value: both logged with line:col, both keep the old config.
    for (i, bad) in [
        format!("{base}[[tcp_echo]\n"),
        format!("{base}{}", svc("b", 0, "length_field_bytes = 3")),
    ]
    .iter()
    .enumerate()
    {
        d.write_config(bad);
        d.signal(libc::SIGHUP);
        let deadline = Instant::now() + WAIT;
        while reloads(
            &d,
            "reload failed: config invalid; still running the previous config",
        ) <= i
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
        assert_eq!(
            reloads(
                &d,
                "reload failed: config invalid; still running the previous config"
            ),
            i + 1,
            "{}",
            d.dump()
        );
        echo_once(&mut conn, b"still");
        assert_eq!(listen_inode(p1), inode);
    }
    let cfg = d.config_path.display().to_string();
    assert!(
        d.wait_log(
            |l| l["level"] == "ERROR"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&format!("{cfg}:10:"))
                        && m.contains("length_field_bytes = 3")),
            WAIT
        )
        .is_some(),
        "{}",
        d.dump()
    );
    assert_eq!(reloads(&d, "reload applied"), 0);
    d.assert_clean(&[&cfg]);
}

#[test]
fn a_bind_conflict_rolls_the_whole_reload_back() {
    let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
    let p3 = blocker.local_addr().unwrap().port();
    let base = format!("{NO_WATCH}{}", svc("a", 0, ""));
    let mut d = Daemon::start(&base);
    d.expect_error("reload failed: bind error");
    // Adds b (would bind) and c (cannot: the port is taken by another process).
    d.write_config(&format!(
        "{base}{}{}",
        svc_at("b", "127.0.0.3:0", ""),
        svc("c", p3, "[tcp_echo.socket]\nreuse_address = false")
    ));
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(|l| message_starts(l, "reload failed: bind error"), WAIT)
            .is_some()
    );
    assert!(
        !listening_on_ip("0300007F"),
        "b (127.0.0.3) stayed bound after the rollback"
    );
    echo_once(&mut connect(d.addr("a")), b"a still serves");
    d.assert_clean(&["reload failed: bind error"]);
}

#[test]
fn moving_a_service_closes_the_old_port_and_drains_its_connections() {
    // The moved service's connections are served until drain_timeout, then closed.
    let no_watch = format!("{NO_WATCH}drain_timeout = \"1s\"\n");
    let d = Daemon::start(&format!("{no_watch}{}", svc("a", 0, "")));
    let old_addr = d.addr("a");
    let mut old = connect(d.addr("a"));
    echo_once(&mut old, b"pre-move");
    // Leave frames in flight across the reload.
    let mut pending = Vec::new();
    for i in 0..100u8 {
        pending.extend(frame(4, true, &[i; 32]));
    }
    old.write_all(&pending).unwrap();
    d.write_config(&format!("{no_watch}{}", svc_at("a", "127.0.0.2:0", "")));
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(|l| l["action"] == "replaced" && l["service"] == "a", WAIT)
            .is_some()
    );
    wait_serving(reload_addr(&d, "a"));
    assert!(
        d.wait_log(|l| l["action"] == "replaced" && l["service"] == "a", WAIT)
            .is_some()
    );
    // By the time the reload reports back, the old listener is closed.
    assert!(
        d.wait_log(|l| l["message"] == "reload applied", WAIT)
            .is_some()
    );
    assert!(TcpStream::connect(old_addr).is_err(), "old port still open");
    // The old connection got every frame back, then, at drain_timeout, a clean
    // FIN (drained, not reset).
    let mut back = Vec::new();
    old.read_to_end(&mut back).unwrap();
    assert!(back == pending);
    d.assert_clean(&[]);
}

#[test]
fn changing_socket_options_on_the_same_address_rebinds_without_address_in_use() {
    // fastopen is a listener-level option: only a new socket takes it (ttl, an
    // accepted-socket option, is set in place: see tests/reload_live.rs).
    // The rebind keeps the configured port, so the port is fixed: inside a
    // network namespace of this test's own, where nothing else can hold it.
    netns::enter();
    let p1 = 17210;
    let d = Daemon::start(&format!(
        "{NO_WATCH}{}",
        svc("a", p1, "[tcp_echo.socket]\nfastopen = 5")
    ));
    let inode = listen_inode(p1).unwrap();
    d.write_config(&format!(
        "{NO_WATCH}{}",
        svc("a", p1, "[tcp_echo.socket]\nfastopen = 10")
    ));
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(|l| l["message"] == "reload applied", WAIT)
            .is_some(),
        "{}",
        d.dump()
    );
    wait_serving(format!("127.0.0.1:{p1}").parse().unwrap());
    assert_ne!(
        listen_inode(p1),
        Some(inode),
        "socket options changed but the socket did not"
    );
    d.assert_clean(&[]);
}

#[test]
fn changing_only_timeouts_hands_the_same_socket_over() {
    let p1 = 0; // a handover keeps the socket, so port 0 stays the port it got
    let d = Daemon::start(&format!(
        "{NO_WATCH}{}",
        svc("a", p1, "idle_timeout = \"30s\"")
    ));
    let inode = listen_inode(d.addr("a").port()).unwrap();
    d.write_config(&format!(
        "{NO_WATCH}{}",
        svc("a", p1, "idle_timeout = \"1s\"")
    ));
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(|l| l["message"] == "reload applied", WAIT)
            .is_some()
    );
    assert_eq!(listen_inode(d.addr("a").port()), Some(inode));
    // The new setting is in force for new connections: idle for 1s closes.
    let mut s = connect(d.addr("a"));
    let t = Instant::now();
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "new idle_timeout not applied: {:?}",
        t.elapsed()
    );
}

/// A settings-only reload hands the listener over; a connection of the old
/// settings (still open: a handover closes nothing) counts against the same
/// `max_connections`.
#[test]
fn a_handover_keeps_counting_old_connections_against_max_connections() {
    let p1 = 0; // a handover keeps the socket, so port 0 stays the port it got
    let d = Daemon::start(&format!(
        "{NO_WATCH}{}",
        svc("a", p1, "max_connections = 1\nidle_timeout = \"30s\"")
    ));
    let mut old = connect(d.addr("a"));
    let held = frame(4, true, b"0123456789");
    // Half a frame: the drain after the reload waits for the rest.
    old.write_all(&held[..6]).unwrap();
    d.write_config(&format!(
        "{NO_WATCH}{}",
        svc("a", p1, "max_connections = 1\nidle_timeout = \"20s\"")
    ));
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(|l| l["message"] == "reload applied", WAIT)
            .is_some()
    );
    // The kernel completes the handshake (backlog), but the daemon must not take the
    // connection while the old one, draining, holds the only permit.
    let mut new = connect(d.addr("a"));
    new.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let f = frame(4, true, b"new");
    new.write_all(&f).unwrap();
    let mut back = vec![0; f.len()];
    assert!(
        new.read_exact(&mut back).is_err(),
        "a second connection was served with max_connections = 1 after the handover"
    );
    old.write_all(&held[6..]).unwrap();
    let mut old_back = vec![0; held.len()];
    old.read_exact(&mut old_back).unwrap();
    assert_eq!(old_back, held, "the old connection finishes its frame");
    // A handover closes no connection: the old one stays until its client leaves.
    drop(old);
    new.set_read_timeout(Some(WAIT)).unwrap();
    new.read_exact(&mut back).unwrap();
    assert_eq!(back, f, "served once the old connection ended");
}

#[test]
fn removing_a_broadcast_service_sends_its_goodbye_once() {
    netns::enter(); // broadcast only inside a namespace of our own
    let socat = netns::Peer::spawn("socat", &["-u", "UDP4-RECV:17171,reuseaddr", "STDOUT"]);
    netns::wait_udp_bound(17171, false);
    let echo = svc("a", 0, "");
    let announcer = "[[broadcast]]\nname = \"ann\"\ndestination = \"127.255.255.255:17171\"\n\
                     bind = \"127.0.0.1:0\"\ninterval = \"100ms\"\njitter = \"10ms\"\n\
                     payload = \"hello seq={seq}\\n\"\ngoodbye = \"bye seq={seq}\\n\"\n";
    let d = Daemon::start(&format!("{NO_WATCH}{echo}{announcer}"));
    socat.wait_lines(|l| l.len() >= 3, WAIT);
    d.write_config(&format!("{NO_WATCH}{echo}"));
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(|l| l["action"] == "stopped" && l["service"] == "ann", WAIT)
            .is_some()
    );
    let lines = socat.wait_lines(|l| l.iter().any(|x| x.starts_with("bye")), WAIT);
    std::thread::sleep(Duration::from_millis(400)); // nothing may follow the goodbye
    let after = socat.lines();
    assert_eq!(
        after.iter().filter(|l| l.starts_with("bye")).count(),
        1,
        "{after:?}"
    );
    assert_eq!(
        after.last().map(String::as_str),
        lines
            .iter()
            .find(|l| l.starts_with("bye"))
            .map(String::as_str),
        "announcements continued after the goodbye: {after:?}"
    );
    echo_once(&mut connect(d.addr("a")), b"echo unaffected");
}

#[test]
fn a_new_service_may_take_the_port_a_moved_service_leaves() {
    let d = Daemon::start(&format!("{NO_WATCH}{}", svc("a", 0, "")));
    let p1 = d.addr("a").port();
    d.write_config(&format!(
        "{NO_WATCH}{}{}",
        svc_at("a", "127.0.0.2:0", ""),
        svc("b", p1, "")
    ));
    d.signal(libc::SIGHUP);
    let line = d.wait_log(|l| message_starts(l, "reload "), WAIT).unwrap();
    assert_eq!(line["message"], "reload applied", "{}", d.dump());
    wait_serving(format!("127.0.0.1:{p1}").parse().unwrap());
    wait_serving(reload_addr(&d, "a"));
    assert!(
        d.wait_log(|l| l["action"] == "started" && l["service"] == "b", WAIT)
            .is_some()
    );
}
