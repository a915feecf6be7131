//! `[[udp_echo]]`: every datagram goes back to its sender unchanged.
//!
//! Each datagram is received into `max_datagram_bytes + 1` bytes, so an
//! oversized one is seen as oversized (and dropped, counted) instead of being
//! silently truncated. Before replying, the guards in `udp_guard` refuse
//! sources that can only be loops or spoofs and apply the per-source rate
//! limit. A reply is the request's own bytes, so it is never larger. Errors
//! from one send or one receive (ICMP port unreachable surfacing as
//! ECONNREFUSED, WSAECONNRESET on Windows) are counted and the loop goes on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tracing::debug;

use super::ServiceCtx;
use super::udp_guard::{Guard, Verdict};
use crate::config::{Compat, UdpEchoConfig};
use crate::logging::RateLimited;
use crate::net::{self, Role};

#[derive(Clone)]
pub struct Bound {
    cfg: Arc<UdpEchoConfig>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
}

pub fn bind(cfg: &UdpEchoConfig) -> Result<Bound> {
    let std = net::udp_socket(cfg.listen, &cfg.socket, Role::Udp)?;
    let socket = UdpSocket::from_std(std).context("register UDP socket with tokio")?;
    let local = socket.local_addr()?;
    Ok(Bound {
        cfg: Arc::new(cfg.clone()),
        socket: Arc::new(socket),
        local,
    })
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn with_config(&self, cfg: &UdpEchoConfig) -> Bound {
        Bound {
            cfg: Arc::new(cfg.clone()),
            ..self.clone()
        }
    }

    pub fn report(&self) -> Vec<net::Applied> {
        net::read_back(
            socket2::SockRef::from(&*self.socket),
            self.local.is_ipv6(),
            &self.cfg.socket,
            Role::Udp,
        )
    }

    pub async fn run(self, ctx: ServiceCtx) -> Result<()> {
        let cfg = &self.cfg;
        let m = &ctx.metrics;
        let oversize = m.drop_counter("oversize");
        let send_full = m.drop_counter("send_buffer_full");
        let recv_errors = m.error_counter("recv");
        let send_errors = m.error_counter("send");
        let mut guard = Guard::new(&cfg.blocked_source_ports, cfg.rate_limit, m);
        let mut log_limit = RateLimited::new(Duration::from_secs(5));
        let mut buf = vec![0u8; cfg.max_datagram_bytes + 1];
        loop {
            let received = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                r = self.socket.recv_from(&mut buf) => r,
            };
            let (n, src) = match received {
                Ok(ok) => ok,
                Err(e) => {
                    recv_errors.inc();
                    if let Some(suppressed) = log_limit.allow() {
                        debug!(error = %e, suppressed, "receive error (often an ICMP unreachable from an earlier reply); continuing");
                    }
                    continue;
                }
            };
            m.msgs_in.inc();
            m.bytes_in.inc_by(n as u64);
            if n > cfg.max_datagram_bytes {
                oversize.inc();
                continue;
            }
            if guard.check(src) != Verdict::Reply {
                continue;
            }
            let reply = &mut buf[..n];
            if cfg.compat == Compat::Sockperf {
                sockperf_reply(reply);
            }
            match self.socket.try_send_to(reply, src) {
                Ok(_) => {
                    m.msgs_out.inc();
                    m.bytes_out.inc_by(n as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    send_full.inc();
                }
                Err(e) => {
                    send_errors.inc();
                    if let Some(suppressed) = log_limit.allow() {
                        debug!(%src, error = %e, suppressed, "send error; continuing");
                    }
                }
            }
        }
        Ok(())
    }
}

/// sockperf's client ignores datagrams whose header still has its "client"
/// flag (bit 0 of byte 9 of the 14-byte header) set: clear it in the reply.
pub fn sockperf_reply(datagram: &mut [u8]) {
    if datagram.len() >= 14 {
        datagram[9] &= !1;
    }
}
