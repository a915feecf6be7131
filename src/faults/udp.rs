//! udp_echo and multicast-echo faults, applied reply by reply on the slow
//! path of the receive loops (taken only when the service's fixture has
//! faults on). Per reply, in this order: `loss` (not sent), `truncate_to_bytes`,
//! `corrupt` (one byte flipped), `duplicate` (sent twice), `reorder` (held
//! and sent after the next reply), `latency` +- `jitter` (sent later by a
//! timer task, so the receive loop never waits). Each injected fault is
//! counted in `netservd_faults_total`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::UdpSocket;

use super::{Active, Faults, Fixture, UdpFaults, flip_one};
use crate::metrics::ServiceMetrics;

/// Delayed replies in flight per service, at most.
pub const MAX_DELAYED: usize = 65_536;

/// Something that owns the service's UDP socket (the socket itself, or a
/// multicast membership that leaves its group on drop), so a delayed reply
/// can keep it alive.
pub trait Socket: Send + Sync + 'static {
    fn udp(&self) -> &UdpSocket;
}

impl Socket for UdpSocket {
    fn udp(&self) -> &UdpSocket {
        self
    }
}

/// A reply `reorder` holds back until the next one is sent. One per receive loop.
#[derive(Default)]
pub struct Held(Option<(SocketAddr, Vec<u8>)>);

fn of(a: &Active) -> Option<&UdpFaults> {
    match &a.faults {
        Faults::Udp(u) => Some(u),
        _ => None,
    }
}

/// Sends the reply `data` to `src` through the faults in force.
pub fn reply<S: Socket>(
    fx: &Arc<Fixture>,
    held: &mut Held,
    sock: &Arc<S>,
    src: SocketAddr,
    data: &[u8],
    m: &ServiceMetrics,
) {
    let Some(a) = fx.active() else {
        send_now(sock.udp(), src, data, m);
        return;
    };
    let Some(u) = of(&a) else {
        send_now(sock.udp(), src, data, m);
        return;
    };
    if a.rng.chance(u.loss) {
        fx.count("loss");
        return;
    }
    let mut out = data.to_vec();
    if let Some(t) = u.truncate_to_bytes
        && t < out.len()
    {
        out.truncate(t);
        fx.count("truncate");
    }
    if !out.is_empty() && a.rng.chance(u.corrupt) {
        flip_one(&a.rng, &mut out);
        fx.count("corrupt");
    }
    let copies = if a.rng.chance(u.duplicate) {
        fx.count("duplicate");
        2
    } else {
        1
    };
    let mut batch: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(3);
    if held.0.is_none() && a.rng.chance(u.reorder) {
        fx.count("reorder");
        held.0 = Some((src, out));
        return;
    }
    for _ in 0..copies {
        batch.push((src, out.clone()));
    }
    if let Some(h) = held.0.take() {
        batch.push(h);
    }
    let delay = fx.delay(&a, u.latency, u.jitter);
    if delay.is_zero() {
        for (to, d) in &batch {
            send_now(sock.udp(), *to, d, m);
        }
        return;
    }
    // Each delayed reply is a timer task: bounded, so a flood with a long
    // latency cannot grow memory without limit (over it, replies are dropped).
    if fx.delayed.fetch_add(1, Ordering::Relaxed) >= MAX_DELAYED {
        fx.delayed.fetch_sub(1, Ordering::Relaxed);
        fx.count("latency_overflow");
        return;
    }
    let (sock, m, fx) = (sock.clone(), m.clone(), fx.clone());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        for (to, d) in &batch {
            send_now(sock.udp(), *to, d, &m);
        }
        fx.delayed.fetch_sub(1, Ordering::Relaxed);
    });
}

fn send_now(sock: &UdpSocket, to: SocketAddr, data: &[u8], m: &ServiceMetrics) {
    match sock.try_send_to(data, to) {
        Ok(n) => {
            m.msgs_out.inc();
            m.bytes_out.inc_by(n as u64);
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            m.drop_counter("send_buffer_full").inc();
        }
        Err(_) => {
            m.error_counter("send").inc();
        }
    }
}
