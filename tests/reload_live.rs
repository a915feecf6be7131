//! Reloads that no client notices, against the real binary: continuous load
//! (pipelined connections, one-frame-at-a-time connections, a stream of short
//! connect-frame-close clients) through reloads of every kind, counting every
//! frame lost, connection closed by the daemon and connect refused or reset;
//! retired connections served until `drain_timeout`; lingering closes that
//! keep unread echoes; failed binds that leave the live listener alone; empty
//! configs refused; a watcher that ignores other files; a panicking service
//! reported by `/healthz`.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/live.rs"]
mod live;
#[path = "common/netns.rs"]
mod netns;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use live::*;

/// True when process `pid` holds the socket with this inode (/proc/PID/fd).
fn holds_socket(pid: i32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))
}

/// Sends SIGHUP and waits for the daemon's `n`-th "reload applied".
fn reload_to(d: &Daemon, config: &str, n: usize) {
    d.write_config(config);
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log_count(|l| l["message"] == "reload applied", n, WAIT),
        "reload {n} not applied:\n{}",
        tail(d)
    );
}

fn tail(d: &Daemon) -> String {
    let logs = d.logs();
    let from = logs.len().saturating_sub(30);
    logs[from..]
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The URL a reload gave `service` last (`started` or `replaced`).
fn last_addr(d: &Daemon, service: &str) -> SocketAddr {
    let line = d
        .logs()
        .into_iter()
        .rev()
        .find(|l| l["service"] == service && l["url"].is_string())
        .unwrap_or_else(|| panic!("no url logged for {service}"));
    line["url"].as_str().unwrap()[6..].parse().unwrap()
}

/// What the clients saw.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    frames_sent: u64,
    frames_echoed: u64,
    closed_by_daemon: u64,
    refused: u64,
    reset: u64,
    connects: u64,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.frames_sent += o.frames_sent;
        self.frames_echoed += o.frames_echoed;
        self.closed_by_daemon += o.closed_by_daemon;
        self.refused += o.refused;
        self.reset += o.reset;
        self.connects += o.connects;
    }
}

/// Upper bounds of every load loop, whatever happens.
const LOAD_MAX_TIME: Duration = Duration::from_secs(60);
const LOAD_MAX_FRAMES: u64 = 20_000_000;
/// Pipelined frames in flight per connection at most.
const WINDOW: u64 = 256;

/// A pipelined connection: one thread writes numbered frames in batches,
/// another reads the echoes and checks their order. At stop: shut the write
/// side, read every echo, then the daemon's EOF.
fn pipelined(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let s = connect(addr);
        let echoed = Arc::new(AtomicU64::new(0));
        let mut r = s.try_clone().unwrap();
        let reader = {
            let echoed = echoed.clone();
            std::thread::spawn(move || {
                let mut expect = 0u64;
                let mut buf = [0u8; 12];
                loop {
                    match r.read_exact(&mut buf) {
                        Ok(()) => {
                            let seq = u64::from_be_bytes(buf[4..].try_into().unwrap());
                            assert_eq!(seq, expect, "echo out of order");
                            expect += 1;
                            echoed.store(expect, Ordering::Relaxed);
                        }
                        Err(e) => return (expect, e.kind()),
                    }
                }
            })
        };
        let mut w = s;
        let (t, mut seq) = (Instant::now(), 0u64);
        while !stop.load(Ordering::Relaxed) && t.elapsed() < LOAD_MAX_TIME && seq < LOAD_MAX_FRAMES
        {
            if seq - echoed.load(Ordering::Relaxed) > WINDOW {
                std::thread::yield_now();
                continue;
            }
            let mut batch = Vec::with_capacity(16 * 12);
            for _ in 0..16 {
                batch.extend(frame(4, true, &seq.to_be_bytes()));
                seq += 1;
            }
            if w.write_all(&batch).is_err() {
                break;
            }
        }
        let _ = w.shutdown(Shutdown::Write);
        let (got, end) = reader.join().unwrap();
        Tally {
            frames_sent: seq,
            frames_echoed: got,
            closed_by_daemon: u64::from(got < seq || end != ErrorKind::UnexpectedEof),
            ..Tally::default()
        }
    })
}

/// One frame, wait for its echo, again; at stop a half-close and the EOF.
fn one_at_a_time(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut s = connect(addr);
        let mut tally = Tally::default();
        let t = Instant::now();
        while !stop.load(Ordering::Relaxed)
            && t.elapsed() < LOAD_MAX_TIME
            && tally.frames_sent < LOAD_MAX_FRAMES
        {
            let f = frame(4, true, &tally.frames_sent.to_be_bytes());
            tally.frames_sent += 1;
            let mut back = vec![0; f.len()];
            if s.write_all(&f)
                .and_then(|_| s.read_exact(&mut back))
                .is_err()
                || back != f
            {
                tally.closed_by_daemon += 1;
                return tally;
            }
            tally.frames_echoed += 1;
        }
        let _ = s.shutdown(Shutdown::Write);
        let mut rest = Vec::new();
        if s.read_to_end(&mut rest).is_err() || !rest.is_empty() {
            tally.closed_by_daemon += 1;
        }
        tally
    })
}

/// Connect, one frame, its echo, close; again.
fn short_clients(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let t = Instant::now();
        while !stop.load(Ordering::Relaxed)
            && t.elapsed() < LOAD_MAX_TIME
            && tally.connects < LOAD_MAX_FRAMES
        {
            tally.connects += 1;
            let mut s = match TcpStream::connect_timeout(&addr, WAIT) {
                Ok(s) => s,
                Err(_) => {
                    tally.refused += 1;
                    continue;
                }
            };
            s.set_read_timeout(Some(WAIT)).unwrap();
            let f = frame(4, true, b"short");
            tally.frames_sent += 1;
            let mut back = vec![0; f.len()];
            match s.write_all(&f).and_then(|_| s.read_exact(&mut back)) {
                Ok(()) if back == f => tally.frames_echoed += 1,
                _ => tally.reset += 1,
            }
        }
        tally
    })
}

/// The config of the load test, from what the reloads toggle.
#[derive(Clone, Copy, Default)]
struct Knobs {
    /// Settings only: timeouts, frame limit, max_connections.
    settings: bool,
    /// An accepted-socket option (nodelay).
    nodelay_off: bool,
    /// A listener-level option (fastopen): rebind on the same address.
    fastopen: bool,
    /// The moved service's address (127.0.0.1:0 or 127.0.0.2:0).
    moved: bool,
    /// The service that is added and removed.
    extra: bool,
}

impl Knobs {
    fn config(self, port: u16) -> String {
        let (idle, frame_t, max_frame, max_conn) = if self.settings {
            ("61s", "11s", 65536, 1001)
        } else {
            ("60s", "10s", 32768, 1000)
        };
        let mut c = format!(
            "[daemon]\nwatch_config = false\ndrain_timeout = \"60s\"\n\
             [[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:{port}\"\n\
             idle_timeout = \"{idle}\"\nframe_timeout = \"{frame_t}\"\n\
             max_frame_bytes = {max_frame}\nmax_connections = {max_conn}\n\
             [tcp_echo.socket]\nnodelay = {}\n{}\
             [[tcp_echo]]\nname = \"m\"\nlisten = \"127.0.0.{}:0\"\n",
            !self.nodelay_off,
            if self.fastopen { "fastopen = 5\n" } else { "" },
            if self.moved { 2 } else { 1 },
        );
        if self.extra {
            c.push_str("[[tcp_echo]]\nname = \"x\"\nlisten = \"127.0.0.1:0\"\n");
        }
        c
    }
}

fn reloads_per_kind() -> usize {
    std::env::var("NETSERVD_TEST_RELOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

#[test]
fn continuous_load_through_reloads_of_every_kind_loses_nothing() {
    // The same-address rebind keeps the configured port, so the port is fixed:
    // inside a network namespace of this test's own, where nothing else can hold it.
    netns::enter();
    let port = 17211;
    let mut knobs = Knobs::default();
    let mut d = Daemon::start(&knobs.config(port));
    let (a, m) = (d.addr("a"), d.addr("m"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = vec![
        pipelined(a, stop.clone()),
        pipelined(a, stop.clone()),
        one_at_a_time(a, stop.clone()),
        one_at_a_time(m, stop.clone()),
        short_clients(a, stop.clone()),
    ];
    // Connections of the service that is added and removed: each still echoes
    // after its service is gone.
    let mut extra_conns: Vec<TcpStream> = Vec::new();
    let per_kind = reloads_per_kind();
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..per_kind {
        for kind in 0..6 {
            match kind {
                0 => knobs.extra = true,
                1 => knobs.settings = !knobs.settings,
                2 => knobs.nodelay_off = !knobs.nodelay_off,
                3 => knobs.fastopen = !knobs.fastopen,
                4 => knobs.moved = !knobs.moved,
                _ => knobs.extra = false,
            }
            n += 1;
            reload_to(&d, &knobs.config(port), n);
            if kind == 0 {
                let mut s = connect(last_addr(&d, "x"));
                echo_once(&mut s, b"x before removal");
                extra_conns.push(s);
            } else if kind == 5 {
                echo_once(extra_conns.last_mut().unwrap(), b"x after removal");
            }
        }
    }
    let reload_time = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for h in load.drain(..) {
        total.add(h.join().unwrap());
    }
    for s in &mut extra_conns {
        echo_once(s, b"removed service, still served");
    }
    eprintln!(
        "{n} reloads ({per_kind} of each of 6 kinds) in {reload_time:?} \
         ({:.1} ms each) under load: {total:?}",
        reload_time.as_secs_f64() * 1e3 / n as f64
    );
    assert_eq!(
        total.frames_sent, total.frames_echoed,
        "frames lost: {total:?}"
    );
    assert_eq!(total.closed_by_daemon, 0, "{total:?}");
    assert_eq!((total.refused, total.reset), (0, 0), "{total:?}");
    assert!(total.connects > 0 && total.frames_sent > total.connects);
    let handovers = d.count_logs(|l| l["action"] == "handed_over");
    assert!(
        handovers >= 2 * per_kind,
        "settings and nodelay hand over: {handovers}"
    );
    drop(extra_conns);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

/// Reads until EOF; the error kind if the connection was reset instead.
fn read_to_eof(s: &mut TcpStream) -> Result<Vec<u8>, ErrorKind> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).map(|_| out).map_err(|e| e.kind())
}

#[test]
fn moved_and_removed_services_serve_until_drain_timeout_then_close_gracefully() {
    let svc = |name: &str, ip: u8| {
        format!("[[tcp_echo]]\nname = \"{name}\"\nlisten = \"127.0.0.{ip}:0\"\n")
    };
    let head = "[daemon]\nwatch_config = false\ndrain_timeout = \"2s\"\n";
    let d = Daemon::start(&format!("{head}{}{}", svc("m", 1), svc("r", 1)));
    let mut on_m = connect(d.addr("m"));
    let mut on_r = connect(d.addr("r"));
    let mut mid = connect(d.addr("m"));
    echo_once(&mut on_m, b"before");
    echo_once(&mut on_r, b"before");
    echo_once(&mut mid, b"before");
    mid.write_all(&frame(4, true, b"never finished")[..7])
        .unwrap();

    d.write_config(&format!("{head}{}", svc("m", 2)));
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(|l| l["message"] == "reload applied", WAIT)
            .is_some()
    );
    let reloaded = Instant::now();
    // Waiting is the thing tested: a second into the drain, both still echo.
    std::thread::sleep(Duration::from_secs(1));
    echo_once(&mut on_m, b"moved, still served");
    echo_once(&mut on_r, b"removed, still served");

    assert_eq!(read_to_eof(&mut on_m), Ok(Vec::new()), "graceful close");
    assert_eq!(read_to_eof(&mut on_r), Ok(Vec::new()), "graceful close");
    let closed = reloaded.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(5)).contains(&closed),
        "closed {closed:?} after the reload, drain_timeout 2s"
    );
    assert_eq!(
        read_to_eof(&mut mid).err(),
        Some(ErrorKind::ConnectionReset),
        "mid-frame at the deadline: reset"
    );
    assert!(
        d.wait_log(
            |l| l["message"] == "deadline passed in the middle of a frame; resetting connection",
            WAIT
        )
        .is_some()
    );
    eprintln!("retired connections closed {closed:?} after the reload (drain_timeout 2s)");
}

/// Bytes queued on the socket from `local` to `remote` (/proc/net/tcp):
/// (tx_queue, rx_queue).
fn queued(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => unreachable!("IPv4 only"),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f[1] != l || f[2] != r {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// Frames (one byte each: empty, 1-byte length field) sent before the close.
const PRE: usize = 20_000;

/// A client with a small receive buffer sends [`PRE`] one-byte frames and
/// reads nothing, so most echoes wait in the daemon's send queue; then
/// `close` makes the daemon close (SIGTERM or drain deadline) while the
/// client keeps sending a little (input the daemon never reads). Without a
/// lingering close that unread input turns close() into an RST, which drops
/// the queued echoes. Returns how many echoes arrived before EOF.
fn unread_echoes_survive(d: &Daemon, addr: SocketAddr, close: impl FnOnce()) -> usize {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(1024).unwrap(); // the kernel's minimum, about 4 KiB
    sock.connect_timeout(&addr.into(), WAIT).unwrap();
    let mut s = TcpStream::from(sock);
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(&[0u8; PRE]).unwrap();
    // Every echo is written: in our receive queue or the daemon's send queue.
    let t = Instant::now();
    while queued(addr, me).map_or(0, |q| q.0) + queued(me, addr).map_or(0, |q| q.1) < PRE as u64 {
        assert!(
            t.elapsed() < WAIT,
            "echoes never queued: {:?}",
            queued(addr, me)
        );
        std::thread::sleep(Duration::from_millis(5)); // poll interval
    }
    let (server_tx, _) = queued(addr, me).unwrap();
    assert!(
        server_tx > 4096,
        "echoes must wait in the daemon's send queue: {server_tx}"
    );
    close();
    for _ in 0..30 {
        if s.write_all(&[0u8]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10)); // keeps input arriving during the close
    }
    s.shutdown(Shutdown::Write).unwrap();
    let got = read_to_eof(&mut s).unwrap_or_else(|e| panic!("{e:?} instead of EOF:\n{}", tail(d)));
    assert!(got.iter().all(|&b| b == 0));
    assert!(got.len() >= PRE, "{} echoes for {PRE} frames", got.len());
    got.len()
}

/// A one-byte-length echo with a fixed send buffer, so the queue sizes above hold.
const ONE_BYTE: &str = "[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\nlength_field_bytes = 1\n\
                        [tcp_echo.socket]\nsend_buffer_bytes = 65536\n";

#[test]
fn unread_echoes_survive_a_sigterm_close() {
    let mut d = Daemon::start(&format!("[daemon]\nwatch_config = false\n{ONE_BYTE}"));
    let addr = d.addr("e");
    let got = unread_echoes_survive(&d, addr, || d.signal(libc::SIGTERM));
    eprintln!("SIGTERM: {PRE} frames sent, {got} echoes then EOF");
    assert_eq!(d.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

#[test]
fn unread_echoes_survive_the_drain_deadline() {
    let head = "[daemon]\nwatch_config = false\ndrain_timeout = \"1s\"\n";
    let d = Daemon::start(&format!("{head}{ONE_BYTE}"));
    let addr = d.addr("e");
    let moved = ONE_BYTE.replace("127.0.0.1:0", "127.0.0.2:0");
    let got = unread_echoes_survive(&d, addr, || {
        reload_to(&d, &format!("{head}{moved}"), 1);
        assert!(
            d.wait_log(|l| message_starts(l, "drain timeout"), WAIT)
                .is_some()
        );
    });
    eprintln!("drain deadline: {PRE} frames sent, {got} echoes then EOF");
}

#[test]
fn a_failed_bind_leaves_the_running_listener_untouched() {
    let base =
        "[daemon]\nwatch_config = false\n[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n";
    let mut d = Daemon::start(base);
    let port = d.addr("a").port();
    let inode = listen_inode(port).expect("listening");
    assert!(holds_socket(d.pid(), inode));
    let mut s = connect(d.addr("a"));
    d.write_config(&format!(
        "{base}[tcp_echo.socket]\nbind_device = \"nosuchdev0\"\n"
    ));
    d.signal(libc::SIGHUP);
    let line = d
        .wait_log(|l| message_starts(l, "reload failed"), WAIT)
        .unwrap();
    let err = line["error"].as_str().unwrap_or_default();
    assert_eq!(
        (&line["service"], &line["key"]),
        (&"a".into(), &"bind_device".into())
    );
    assert!(err.contains("bind_device"), "names the key: {err}");
    assert_eq!(listen_inode(port), Some(inode), "listener rebound");
    assert!(
        holds_socket(d.pid(), inode),
        "daemon no longer holds its listener"
    );
    assert_eq!(
        d.count_logs(|l| l["action"].is_string()),
        0,
        "nothing was stopped or paused"
    );
    echo_once(&mut s, b"still the same connection");
    echo_once(&mut connect(d.addr("a")), b"and new ones");
    d.expect_error("reload failed");
}

#[test]
fn an_empty_config_is_refused_by_check_run_and_reload() {
    for empty in ["", "# only a comment\n", "[daemon]\nwatch_config = false\n"] {
        let (code, _, err, _dir) = check(empty, &[]);
        assert_eq!(code, 2, "check {empty:?}: {err}");
        assert!(err.contains("defines no services"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, empty).unwrap();
        let (code, _, err) = netservd(&["run", "--config", path.to_str().unwrap()], None);
        assert_eq!(code, 2, "run {empty:?}: {err}");
        assert!(err.contains(":1:1: config defines no services"), "{err}");
    }
    let base =
        "[daemon]\nwatch_config = false\n[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n";
    let mut d = Daemon::start(base);
    d.write_config("");
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(|l| message_starts(l, "reload failed: config invalid"), WAIT)
            .is_some()
    );
    echo_once(&mut connect(d.addr("a")), b"still serving");
    d.expect_error("defines no services");
}

#[test]
fn other_files_in_the_config_directory_neither_reload_nor_delay_a_reload() {
    let base = "[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n";
    let mut d = Daemon::start(base);
    d.expect_error("config.toml:");
    // A bad edit fails once...
    d.write_config("[[tcp_echo]\n");
    assert!(
        d.wait_log(|l| message_starts(l, "reload failed"), WAIT)
            .is_some()
    );
    // ...and a log file written beside it every 20 ms does not make it retry.
    let log = d.dir.path().join("netservd.log");
    let writes = |for_: Duration| {
        let t = Instant::now();
        let mut f = std::fs::File::create(&log).unwrap();
        while t.elapsed() < for_ {
            writeln!(f, "a log line").unwrap();
            f.sync_data().unwrap();
            std::thread::sleep(Duration::from_millis(20)); // pacing of the writer
        }
    };
    writes(Duration::from_millis(800));
    let failed = d.count_logs(|l| message_starts(l, "reload failed"));
    assert_eq!(failed, 1, "retried a content that already failed");

    // A real edit reloads within 1 s although the log keeps changing.
    let other = std::thread::scope(|sc| {
        let writer = sc.spawn(|| writes(Duration::from_millis(1500)));
        std::thread::sleep(Duration::from_millis(100)); // the writer is going
        let t = Instant::now();
        d.write_config(&format!(
            "{base}[[tcp_echo]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\n"
        ));
        assert!(
            d.wait_log(|l| l["message"] == "reload applied", WAIT)
                .is_some()
        );
        let took = t.elapsed();
        writer.join().unwrap();
        took
    });
    eprintln!("file edit to reload applied while another file changes every 20 ms: {other:?}");
    assert!(other < Duration::from_secs(1), "reload took {other:?}");
    assert_eq!(d.count_logs(|l| l["message"] == "reload applied"), 1);
}

#[test]
fn a_panicking_service_task_makes_healthz_name_it() {
    let config = "[daemon]\nwatch_config = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                  [[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n\
                  [[tcp_echo]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\n";
    let mut d = Daemon::start_with(config, &[("NETSERVD_TEST_PANIC_SERVICE", "b")]);
    d.expect_error("service failed");
    let ready = d.wait_log(|l| l["message"] == "ready", WAIT).unwrap();
    let admin: SocketAddr = ready["admin"].as_str().unwrap().parse().unwrap();
    let t = Instant::now();
    let (status, body) = loop {
        let (status, body) = http_get(admin, "/healthz");
        if status == 503 || t.elapsed() > WAIT {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("b:") && body.contains("panic"), "{body}");
    assert!(!body.contains("a:"), "{body}");
    assert!(
        d.wait_log(
            |l| l["level"] == "ERROR" && (l["service"] == "b" || l["span"]["service"] == "b"),
            WAIT
        )
        .is_some(),
        "ERROR log in b's span"
    );
    echo_once(&mut connect(d.addr("a")), b"a unaffected");
}

/// (status, body) of a plain HTTP/1.0 GET.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn settings_and_accepted_socket_options_apply_in_place_to_the_same_listener() {
    let port = 0; // a handover keeps the socket, so port 0 stays the port it got
    let cfg = |max_frame: u32, max_conn: u32, ttl: u32| {
        format!(
            "[daemon]\nwatch_config = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:{port}\"\n\
             max_frame_bytes = {max_frame}\nmax_connections = {max_conn}\n\
             [tcp_echo.socket]\nttl = {ttl}\n"
        )
    };
    let d = Daemon::start(&cfg(100, 3, 64));
    let ready = d.wait_log(|l| l["message"] == "ready", WAIT).unwrap();
    let admin: SocketAddr = ready["admin"].as_str().unwrap().parse().unwrap();
    let port = d.addr("a").port();
    let inode = listen_inode(port).unwrap();
    let mut first = connect(d.addr("a"));
    let mut second = connect(d.addr("a"));
    echo_once(&mut first, b"before");
    echo_once(&mut second, b"before");

    reload_to(&d, &cfg(1000, 1, 32), 1);
    assert!(d.wait_log(|l| l["action"] == "handed_over", WAIT).is_some());
    assert_eq!(listen_inode(port), Some(inode), "same listener");
    // The open connection takes the new frame limit from its next header.
    echo_once(&mut first, &[7u8; 500]);
    // The listener's TTL, inherited by connections accepted from now on.
    let (_, services) = http_get(admin, "/services");
    let v: serde_json::Value = serde_json::from_str(&services).unwrap();
    let ttl = v.as_array().unwrap()[0]["socket"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == "ttl")
        .cloned()
        .unwrap();
    assert_eq!(ttl["effective"], "32", "{ttl}");
    // max_connections lowered to 1 with 2 open: both go on, no third is served.
    let mut third = connect(d.addr("a"));
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let f = frame(4, true, b"third");
    third.write_all(&f).unwrap();
    let mut back = vec![0; f.len()];
    assert!(
        third.read_exact(&mut back).is_err(),
        "served above max_connections"
    );
    echo_once(&mut second, b"still served");
    drop(first);
    // One place is still held by `second`: the limit is 1.
    assert!(
        third.read_exact(&mut back).is_err(),
        "served above max_connections"
    );
    drop(second);
    third.set_read_timeout(Some(WAIT)).unwrap();
    third.read_exact(&mut back).unwrap();
    assert_eq!(back, f);
}

#[test]
fn check_bind_never_joins_a_running_daemons_reuseport_group() {
    let d = Daemon::start(
        "[daemon]\nwatch_config = false\n[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n",
    );
    let port = d.addr("a").port();
    let config = format!("[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:{port}\"\n");
    let (code, out, _, _dir) = check(&config, &["--bind"]);
    assert_eq!(code, 1, "check --bind joined the daemon's port:\n{out}");
    assert!(out.contains("address already in use"), "{out}");
    echo_once(&mut connect(d.addr("a")), b"daemon unaffected");
    drop(d);
    let (code, out, _, _dir) = check(&config, &["--bind"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("note: the daemon also sets reuse_port = true"),
        "{out}"
    );
}

#[test]
fn a_second_daemon_on_the_same_port_is_refused_despite_reuseport() {
    let d = Daemon::start(
        "[daemon]\nwatch_config = false\n[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n",
    );
    let port = d.addr("a").port();
    let config = format!("[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:{port}\"\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config).unwrap();
    let mut second = std::process::Command::new(bin())
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > WAIT {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second daemon runs on the same port");
        }
        std::thread::sleep(Duration::from_millis(10)); // poll interval
    };
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("address already in use"), "{err}");
    echo_once(&mut connect(d.addr("a")), b"first daemon unaffected");
}

/// Inode of the UDP socket bound to `addr` (IPv4), from /proc/net/udp.
fn udp_inode(addr: SocketAddr) -> Option<u64> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[1] == want).then(|| f[9].parse().unwrap())
    })
}

#[test]
fn udp_settings_and_a_tcp_backlog_change_keep_their_sockets() {
    let tport = 0; // a handover keeps the socket, so port 0 stays the port it got
    let cfg = |max_dgram: u32, rcvbuf: u32, backlog: u32| {
        format!(
            "[daemon]\nwatch_config = false\n\
             [[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nmax_datagram_bytes = {max_dgram}\n\
             [udp_echo.socket]\nrecv_buffer_bytes = {rcvbuf}\n\
             [[tcp_echo]]\nname = \"t\"\nlisten = \"127.0.0.1:{tport}\"\n\
             [tcp_echo.socket]\nbacklog = {backlog}\n"
        )
    };
    let d = Daemon::start(&cfg(100, 65536, 128));
    let u = d.addr("u");
    let tport = d.addr("t").port();
    let (uinode, tinode) = (udp_inode(u).unwrap(), listen_inode(tport).unwrap());
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 2048];
    reload_to(&d, &cfg(1000, 131072, 256), 1);
    assert_eq!(
        d.count_logs(|l| l["action"] == "handed_over"),
        2,
        "{}",
        tail(&d)
    );
    assert_eq!(udp_inode(u), Some(uinode), "udp socket rebound");
    assert_eq!(listen_inode(tport), Some(tinode), "tcp listener rebound");
    // The new datagram limit is in force on the same socket.
    client.send_to(&[1u8; 500], u).unwrap();
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(n, 500);
    echo_once(&mut connect(d.addr("t")), b"same listener");
}
