//! `[daemon] workers` (issue 15) against the real binary: with 2 workers a
//! udp_echo is one service on a set of 2 SO_REUSEPORT sockets (`/services`
//! says `sockets: 2`), echoes every datagram whatever socket the kernel picks,
//! and a second process that joins the port with SO_REUSEPORT (same user, so
//! the kernel lets it) receives nothing, because the guard program only picks
//! the set's own sockets. With 1 worker the socket is exclusive as before
//! (tests/hardening_exclusive.rs). A reload that changes `workers` warns that
//! it needs a restart and keeps serving; `workers = 0` is a placed config error.
//! A multicast echo keeps one socket (Linux hands a group's datagram to every
//! socket of a SO_REUSEPORT group): in a network namespace of its own, each
//! datagram to the group is echoed exactly once.

mod common;
#[cfg(target_os = "linux")]
#[path = "common/netns.rs"]
mod netns;

use std::net::{SocketAddr, UdpSocket};

use common::counters::{admin_get, service_counter};
use common::*;

fn config(workers: usize) -> String {
    format!(
        "[daemon]\nworkers = {workers}\nwatch_config = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[tcp_echo]]\nname = \"t\"\nlisten = \"127.0.0.1:0\"\n"
    )
}

/// `sockets` of service `name` in `/services`.
fn sockets(d: &Daemon, name: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&admin_get(d, "/services")).unwrap();
    let list = v.as_array().or_else(|| v["services"].as_array()).unwrap();
    let s = list.iter().find(|s| s["name"] == name).unwrap();
    s["sockets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no sockets in {s}"))
}

/// Sends `per_source` datagrams from each of `sources` fresh sockets (so
/// many source ports) and checks every one comes back unchanged.
fn echo_from_many(addr: SocketAddr, sources: usize, per_source: usize) {
    for s in 0..sources {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        for i in 0..per_source {
            let msg = format!("source {s} datagram {i}");
            c.send_to(msg.as_bytes(), addr).unwrap();
            let mut buf = [0u8; 128];
            let (n, from) = c
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("no echo for {msg:?}: {e}"));
            assert_eq!((&buf[..n], from), (msg.as_bytes(), addr));
        }
    }
}

/// A same-user socket with SO_REUSEPORT on `addr`, as another program would open it.
#[cfg(target_os = "linux")]
fn reuseport_joiner(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

#[test]
fn two_workers_one_service_two_sockets_every_source_echoed() {
    let d = Daemon::start(&config(2));
    let addr = d.addr("u");
    let expected = if cfg!(target_os = "linux") { 2 } else { 1 };
    assert_eq!(sockets(&d, "u"), expected, "{}", admin_get(&d, "/services"));
    assert_eq!(sockets(&d, "t"), 1);
    assert!(
        d.logs()
            .iter()
            .any(|l| l["message"] == "ready" && l["workers"] == 2),
        "ready names the worker count:\n{}",
        d.dump()
    );
    echo_from_many(addr, 8, 4);
    // One service: both sockets count into the same series.
    assert_eq!(service_counter(&d, "netservd_messages_in_total", "u"), 32);
    assert_eq!(service_counter(&d, "netservd_messages_out_total", "u"), 32);
    // TCP on two accept loops: several connections at once all served.
    let t = d.addr("t");
    let mut conns: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect_timeout(&t, WAIT).unwrap())
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.set_read_timeout(Some(WAIT)).unwrap();
        echo_on(c, format!("conn {i}").as_bytes());
    }
    d.assert_clean(&[]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_reuseport_joiner_gets_nothing_while_the_set_echoes_everything() {
    let d = Daemon::start(&config(2));
    let addr = d.addr("u");
    let joiner = reuseport_joiner(addr)
        .expect("the kernel lets a same-user SO_REUSEPORT socket join the set's port");
    // Without the guard the kernel would hash sources over 3 sockets and the
    // joiner would take about a third of them, each unanswered.
    echo_from_many(addr, 24, 2);
    // The absence of a datagram can only be shown by waiting: this timeout is the test.
    joiner
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 128];
    match joiner.recv_from(&mut buf) {
        Ok((n, from)) => panic!("the joiner received {n} bytes from {from}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    assert_eq!(service_counter(&d, "netservd_messages_out_total", "u"), 48);
    d.assert_clean(&[]);
}

#[cfg(target_os = "linux")]
#[test]
fn one_worker_keeps_one_exclusive_socket() {
    let d = Daemon::start(&config(1));
    let addr = d.addr("u");
    assert_eq!(sockets(&d, "u"), 1);
    let joined = reuseport_joiner(addr);
    assert!(
        joined.is_err(),
        "a SO_REUSEPORT socket joined a workers = 1 udp_echo"
    );
    echo_from_many(addr, 2, 2);
    d.assert_clean(&[]);
}

#[cfg(unix)]
#[test]
fn a_reload_that_changes_workers_warns_and_keeps_serving() {
    let mut d = Daemon::start(&config(2));
    let addr = d.addr("u");
    d.write_config(&config(3));
    d.signal(libc::SIGHUP);
    let warning = d
        .wait_log(
            |l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("daemon.workers changed: it needs a restart"))
            },
            WAIT,
        )
        .unwrap_or_else(|| panic!("no restart warning:\n{}", d.dump()));
    assert!(warning.to_string().contains('3'), "{warning}");
    d.wait_log(|l| l["message"] == "reload applied", WAIT)
        .unwrap_or_else(|| panic!("reload not applied:\n{}", d.dump()));
    let expected = if cfg!(target_os = "linux") { 2 } else { 1 };
    assert_eq!(sockets(&d, "u"), expected, "the set is sized at start");
    echo_from_many(addr, 4, 1);
    d.assert_clean(&["daemon.workers changed"]);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(WAIT).is_some_and(|s| s.success()));
}

#[test]
fn workers_out_of_range_is_a_placed_config_error() {
    for bad in ["0", "1025"] {
        let cfg = format!(
            "[daemon]\nworkers = {bad}\n[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n"
        );
        let (code, _out, err, _dir) = check(&cfg, &[]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("config.toml:2:"),
            "not placed at the key: {err}"
        );
        assert!(
            err.contains(&format!("workers = {bad} is out of range; use 1 to 1024")),
            "{err}"
        );
    }
}

/// Inodes of the UDP sockets bound to `addr` (IPv4), from /proc/net/udp.
#[cfg(target_os = "linux")]
fn udp_inodes(addr: SocketAddr) -> Vec<u64> {
    let SocketAddr::V4(v4) = addr else {
        return Vec::new();
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let mut out: Vec<u64> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1] == want).then(|| f[9].parse().unwrap())
        })
        .collect();
    out.sort();
    out
}

/// The receive buffer (`skmem` rb) of every UDP socket on `port`, from `ss`;
/// `None` where `ss` (iproute2) is not installed.
#[cfg(target_os = "linux")]
fn receive_buffers(port: u16) -> Option<Vec<u64>> {
    let out = std::process::Command::new("ss")
        .args(["-uanm", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.split("skmem:(")
            .skip(1)
            .filter_map(|s| {
                s.split(',')
                    .find_map(|f| f.strip_prefix("rb")?.parse().ok())
            })
            .collect(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn a_reload_replaces_or_hands_over_the_whole_set() {
    let cfg = |port: u16, rcvbuf: u32| {
        format!(
            "[daemon]\nworkers = 2\nwatch_config = false\n\
             [[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:{port}\"\n\
             [udp_echo.socket]\nrecv_buffer_bytes = {rcvbuf}\n"
        )
    };
    let d = Daemon::start(&cfg(0, 65536));
    let u = d.addr("u");
    let first = udp_inodes(u);
    assert_eq!(first.len(), 2, "a set of 2 on {u}");
    // `listen` changes from port 0 to the port it got: a rebind on the same
    // address, so the old set must close before the probe finds it free.
    d.write_config(&cfg(u.port(), 65536));
    d.signal(libc::SIGHUP);
    d.wait_log(|l| l["message"] == "reload applied", WAIT)
        .unwrap_or_else(|| panic!("{}", d.dump()));
    let second = udp_inodes(u);
    assert_eq!(second.len(), 2, "{}", d.dump());
    assert!(
        second.iter().all(|i| !first.contains(i)),
        "the whole set is replaced"
    );
    echo_from_many(u, 4, 1);
    // A live option: the same two sockets, each with the new buffer (Linux doubles it).
    d.write_config(&cfg(u.port(), 131072));
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log_count(|l| l["message"] == "reload applied", 2, WAIT),
        "{}",
        d.dump()
    );
    assert_eq!(udp_inodes(u), second, "handed over, not rebound");
    match receive_buffers(u.port()) {
        Some(rb) => assert_eq!(rb, vec![262144, 262144], "every socket of the set"),
        None => eprintln!("ss not installed: receive buffers not checked"),
    }
    echo_from_many(u, 4, 1);
    d.assert_clean(&[]);
}

#[test]
fn check_bind_notes_the_set_the_daemon_would_bind() {
    let (code, out, err, _dir) = check(&config(2), &["--bind"]);
    assert_eq!(code, 0, "{out}{err}");
    let noted = out.contains("the daemon binds 2 sockets here");
    assert_eq!(noted, cfg!(target_os = "linux"), "{out}");
}

/// Runs `netservd run` on `config` and expects it to refuse to start within
/// [`WAIT`]; returns its stderr.
#[cfg(target_os = "linux")]
fn refused_start(config: &str) -> String {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon started on an address someone else holds");
        }
        std::thread::sleep(std::time::Duration::from_millis(10)); // poll interval
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    err
}

/// The probe keeps the set's port exclusive: whoever holds the address first
/// (with SO_REUSEPORT or without, or another daemon's set) makes the start fail
/// with "address already in use", as with one socket.
#[cfg(target_os = "linux")]
#[test]
fn a_held_address_refuses_the_set() {
    let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sharer = reuseport_joiner("127.0.0.1:0".parse().unwrap()).unwrap();
    let d = Daemon::start(&config(2));
    for held in [
        plain.local_addr().unwrap(),
        sharer.local_addr().unwrap(),
        d.addr("u"),
    ] {
        let cfg = format!(
            "[daemon]\nworkers = 2\nwatch_config = false\n\
             [[udp_echo]]\nname = \"u\"\nlisten = \"{held}\"\n"
        );
        let err = refused_start(&cfg);
        assert!(err.contains("address already in use"), "{held}: {err}");
    }
    echo_from_many(d.addr("u"), 2, 1);
}

#[cfg(target_os = "linux")]
#[test]
fn multicast_echo_keeps_one_socket_and_echoes_each_datagram_once() {
    netns::enter();
    let d = Daemon::start(
        "[daemon]\nworkers = 2\nwatch_config = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[multicast]]\nname = \"g\"\ngroup = \"239.255.70.91\"\nport = 17091\n\
         interface = \"127.0.0.1\"\nreply = \"echo\"\n",
    );
    assert_eq!(sockets(&d, "g"), 1);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&c)
        .set_multicast_if_v4(&"127.0.0.1".parse().unwrap())
        .unwrap();
    c.set_multicast_loop_v4(true).unwrap();
    for i in 0..5u8 {
        c.send_to(&[i; 8], "239.255.70.91:17091").unwrap();
    }
    let mut echoes = Vec::new();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    while echoes.len() < 5 {
        let (n, _) = c.recv_from(&mut buf).expect("an echo of each datagram");
        echoes.push(buf[..n].to_vec());
    }
    // A sixth (duplicate) echo can only be ruled out by waiting: this timeout is the test.
    c.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.recv_from(&mut buf).is_err(),
        "a datagram was echoed twice"
    );
    echoes.sort();
    assert_eq!(echoes, (0..5u8).map(|i| vec![i; 8]).collect::<Vec<_>>());
    d.assert_clean(&[]);
}
