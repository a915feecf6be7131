//! Network namespaces for the broadcast and multicast tests (the safety rule:
//! no datagram leaves a namespace the test created). [`enter`] moves the
//! calling test thread into a fresh, empty network namespace with
//! `unshare(CLONE_NEWNET)`; every socket it opens and every process it spawns
//! (the daemon, socat, `netservd send/listen`) lives there, and the kernel
//! deletes the namespace when the last of them is gone, so there is nothing
//! to clean up even when a test panics. Needs root (CAP_SYS_ADMIN); without
//! it the test fails and says so.
//!
//! Ports: daemons and our own receivers bind port 0 and the test reads the
//! real port. The fixed ports left in namespace tests are a multicast group's
//! port (part of the group's address, which `check` requires to be non-zero)
//! and socat receivers' ports that go into the daemon's config before it
//! starts; each lives in the test's own empty namespace, where no other
//! process (nor a parallel test, each in its own namespace) can hold it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Daemon, WAIT, netservd};

/// Moves this thread into a new network namespace: `lo` up with multicast on
/// and 224.0.0.0/4 routed to it, so IPv4 broadcast (127.255.255.255) and
/// groups joined on 127.0.0.1 work without any real interface.
pub fn enter() {
    // SAFETY: unshare(2) only changes this thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        panic!(
            "cannot create a network namespace (unshare(CLONE_NEWNET): {e}); these tests must run as root \
             (or with CAP_SYS_ADMIN) and never fall back to the host network"
        );
    }
    sh("ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo");
}

/// A veth pair inside the namespace for IPv6 multicast (Linux does not loop
/// IPv6 multicast over `lo`): `nsa` has fd00::1, `nsb` fd00::2, no DAD wait.
pub fn veth() {
    sh("sysctl -qw net.ipv6.conf.default.accept_dad=0 \
        && ip link add nsa type veth peer name nsb \
        && ip -6 addr add fd00::1/64 dev nsa nodad && ip -6 addr add fd00::2/64 dev nsb nodad \
        && ip link set nsa up && ip link set nsb up");
}

/// Runs a shell command in the namespace; panics with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (device, group) rows of `/proc/PID/net/igmp` (the kernel's IPv4 membership table).
pub fn igmp(pid: &str) -> Vec<(String, Ipv4Addr)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/igmp")).expect("read igmp");
    let mut dev = String::new();
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        if !line.starts_with('\t') {
            dev = line.split_whitespace().nth(1).unwrap_or("").to_string();
        } else if let Some(hex) = line.split_whitespace().next() {
            // The kernel prints the network-order address as a host-order u32.
            let v = u32::from_str_radix(hex, 16).expect("hex group");
            out.push((dev.clone(), Ipv4Addr::from(v.to_ne_bytes())));
        }
    }
    out
}

/// (device, group) rows of `/proc/PID/net/igmp6`.
pub fn igmp6(pid: &str) -> Vec<(String, Ipv6Addr)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/igmp6")).expect("read igmp6");
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bytes: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(f.get(2)?.get(2 * i..2 * i + 2)?, 16).ok())
                .collect::<Option<_>>()?;
            Some((
                f[1].to_string(),
                Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?),
            ))
        })
        .collect()
}

/// True while some socket in the namespace is bound to UDP `port`.
pub fn udp_port_bound(port: u16, v6: bool) -> bool {
    let table = std::fs::read_to_string(if v6 {
        "/proc/thread-self/net/udp6"
    } else {
        "/proc/thread-self/net/udp"
    })
    .unwrap_or_default();
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|a| a.ends_with(&format!(":{port:04X}")))
    })
}

/// Waits until UDP `port` is bound (a peer we started is ready to receive).
pub fn wait_udp_bound(port: u16, v6: bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !udp_port_bound(port, v6) {
        assert!(
            Instant::now() < end,
            "nothing bound UDP port {port} within 5s"
        );
        std::thread::sleep(Duration::from_millis(10)); // poll interval
    }
}

/// A peer process (socat, `netservd listen`) whose stdout and stderr are
/// collected (stderr is also passed on to the test's own); killed on drop.
pub struct Peer {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    /// The threads copying stdout and stderr; joined once the process exits, so
    /// that everything it printed is in `out` and `err`.
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Copies everything `from` yields into `sink` until EOF (and to our stderr when `echo`).
fn collect(
    mut from: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<u8>>>,
    echo: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if echo {
                eprint!("{}", String::from_utf8_lossy(&buf[..n]));
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

fn lines_of(bytes: &Mutex<Vec<u8>>) -> Vec<String> {
    BufReader::new(&bytes.lock().unwrap()[..])
        .lines()
        .map_while(Result::ok)
        .collect()
}

impl Peer {
    pub fn spawn(program: &str, args: &[&str]) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {program} (is it installed? scripts/test.sh installs socat): {e}"
                )
            });
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), out.clone(), false),
            collect(child.stderr.take().unwrap(), err.clone(), true),
        ];
        Peer {
            child,
            out,
            err,
            readers,
        }
    }

    /// Waits until a line of the peer's stderr starts with `prefix` (e.g.
    /// `listening on`, which `netservd listen` prints once bound and joined).
    pub fn wait_stderr(&self, prefix: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !lines_of(&self.err).iter().any(|l| l.starts_with(prefix)) {
            assert!(
                Instant::now() < end,
                "peer printed no {prefix:?} within {timeout:?}; stderr: {:?}",
                lines_of(&self.err)
            );
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
    }

    /// Everything printed on stdout so far, as lines.
    pub fn lines(&self) -> Vec<String> {
        lines_of(&self.out)
    }

    /// Waits until `pred` holds for the lines printed so far.
    pub fn wait_lines(&self, pred: impl Fn(&[String]) -> bool, timeout: Duration) -> Vec<String> {
        let end = Instant::now() + timeout;
        loop {
            let l = self.lines();
            if pred(&l) || Instant::now() > end {
                return l;
            }
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Its pipes close with it: the readers finish with everything it printed.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
        None
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SIGTERM: i32 = 15;

/// Runs `netservd ARGS` in the test's namespace: (exit code, stdout).
pub fn tool(args: &[&str]) -> (i32, String) {
    let (code, out, err) = netservd(args, None);
    eprintln!("netservd {args:?} -> {code}\nstdout:\n{out}stderr:\n{err}");
    (code, out)
}

/// SIGTERM, then a clean exit 0.
pub fn stop(d: &mut Daemon) {
    d.signal(SIGTERM);
    let status = d
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("daemon did not exit after SIGTERM; logs:\n{}", d.dump()));
    assert!(
        status.success(),
        "daemon exited with {status:?}; logs:\n{}",
        d.dump()
    );
}

/// The number after `key=` in `line`.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.parse().ok())
}
