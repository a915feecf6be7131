//! UDP socket sets: one socket per runtime worker on one address, so a
//! `udp_echo` service receives on every core (Linux, SO_REUSEPORT). The
//! daemon says how many at start ([`set_workers`], from `[daemon]
//! workers`); tools and `check --bind` keep the default of one. The same count sizes the
//! accept loops of a TCP listener (`tcp_echo.rs`).
//!
//! Exclusivity stays as for a single socket (README "Socket options"): a
//! probe socket without SO_REUSEPORT is bound first and closed, so an address
//! someone else holds fails with the usual "address in use"; then the set is
//! bound with SO_REUSEPORT and a classic BPF program is attached to its
//! group that returns `source port % N`. Every value it returns is below N,
//! the indexes of our own sockets, so a socket that joins the port later (a
//! same-user process with SO_REUSEPORT, index >= N) never gets a datagram.
//!
//! Flow: `udp_echo::bind` -> [`udp_set`] -> N non-blocking std sockets ->
//! tokio, one receive task each, all counting into the service's metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;

use crate::config::SocketOptions;

use super::Role;

/// The daemon's `[daemon] workers`: sockets per UDP echo service and accept
/// loops per TCP listener; 1 until the daemon sets it.
static WORKERS: AtomicUsize = AtomicUsize::new(1);

/// Called once by `daemon::run` with `[daemon] workers`.
pub fn set_workers(n: usize) {
    WORKERS.store(n.max(1), Ordering::Relaxed);
}

/// What [`set_workers`] set (1 in tools and `check`).
pub fn workers() -> usize {
    WORKERS.load(Ordering::Relaxed)
}

/// How many sockets a UDP echo service on `o` gets: the worker count on
/// Linux, one elsewhere, and one when the config sets `reuse_port` itself
/// (false: no sharing at all; true: the user shares the port with others,
/// so no guard program may keep them out).
pub fn sockets_for(o: &SocketOptions) -> usize {
    sockets_with(o, workers())
}

/// [`sockets_for`] with a given worker count (`check`, the descriptor budget).
pub fn sockets_with(o: &SocketOptions, workers: usize) -> usize {
    if cfg!(target_os = "linux") && o.reuse_port.is_none() {
        workers.max(1)
    } else {
        1
    }
}

/// Binds the socket set of a UDP echo service: one socket, as
/// [`super::udp_socket`] binds it, when [`sockets_for`] says 1.
pub fn udp_set(
    addr: SocketAddr,
    o: &SocketOptions,
    role: Role,
) -> Result<Vec<std::net::UdpSocket>> {
    let n = sockets_for(o);
    if n == 1 {
        return Ok(vec![super::udp_socket(addr, o, role)?]);
    }
    bind_set(addr, o, role, n)
}

#[cfg(not(target_os = "linux"))]
fn bind_set(
    addr: SocketAddr,
    o: &SocketOptions,
    role: Role,
    _n: usize,
) -> Result<Vec<std::net::UdpSocket>> {
    Ok(vec![super::udp_socket(addr, o, role)?])
}

#[cfg(target_os = "linux")]
fn bind_set(
    addr: SocketAddr,
    o: &SocketOptions,
    role: Role,
    n: usize,
) -> Result<Vec<std::net::UdpSocket>> {
    use anyhow::Context;
    // The probe: exactly the single socket of workers = 1, so the error for a
    // taken address is the same. Port 0 takes the port the probe was given.
    let probe = super::udp_socket(addr, o, role)?;
    let addr = probe.local_addr().context("read the probe socket's port")?;
    drop(probe);
    let shared = SocketOptions {
        reuse_port: Some(true),
        ..o.clone()
    };
    let mut set = Vec::with_capacity(n);
    for i in 0..n {
        let sock = super::udp_unbound(addr, &shared, role)?;
        super::bind(&sock, addr, "udp")
            .with_context(|| format!("bind socket {} of {n} (SO_REUSEPORT set)", i + 1))?;
        if i == 0 {
            // Before any other socket can join: from now on the group only
            // ever picks an index below n.
            attach_guard(&sock, addr.is_ipv6(), n).with_context(|| {
                format!("attach the SO_REUSEPORT guard program to the UDP socket set on {addr}")
            })?;
        }
        super::make_nonblocking(&sock)?;
        set.push(sock.into());
    }
    Ok(set)
}

/// The guard: `A = source port; A %= n; return A`. For UDP the program's
/// data starts at the payload, so the port is read relative to the network
/// header (SKF_NET_OFF): at 20 for IPv4 without options, 40 for IPv6 without
/// extension headers. A packet with either reads another pair of bytes and
/// only spreads worse; the result is still below `n`.
#[cfg(target_os = "linux")]
fn guard_program(v6: bool, n: usize) -> [libc::sock_filter; 3] {
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let port_at = (libc::SKF_NET_OFF + if v6 { 40 } else { 20 }) as u32;
    [
        op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, port_at),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n as u32),
        op(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

#[cfg(target_os = "linux")]
fn attach_guard(sock: &socket2::Socket, v6: bool, n: usize) -> std::io::Result<()> {
    super::raw::attach_reuseport_cbpf(sock, &mut guard_program(v6, n))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn guard_reads_the_source_port_and_stays_below_n() {
        let p = guard_program(false, 4);
        assert_eq!(p[0].k, (libc::SKF_NET_OFF + 20) as u32);
        assert_eq!(p[1].k, 4);
        assert_eq!(guard_program(true, 2)[0].k, (libc::SKF_NET_OFF + 40) as u32);
    }

    #[test]
    fn set_of_three_shares_one_port_and_refuses_a_plain_second_bind() {
        let o = SocketOptions::default();
        let set = bind_set("127.0.0.1:0".parse().unwrap(), &o, Role::Udp, 3).unwrap();
        let port = set[0].local_addr().unwrap().port();
        assert!(set.iter().all(|s| s.local_addr().unwrap().port() == port));
        let again = super::super::udp_socket(set[0].local_addr().unwrap(), &o, Role::Udp);
        assert!(
            again.is_err(),
            "a socket without SO_REUSEPORT must not join"
        );
    }
}
