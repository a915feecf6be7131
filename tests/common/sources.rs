//! Clients from chosen loopback source addresses (127.0.0.2, 127.0.0.3...):
//! the socket is bound to the source before it connects or sends, so tests
//! of access lists and per-source limits can be two different peers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::{WAIT, frame};

/// A TCP connection to `to` from the IP address `from` (any port).
pub fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    try_tcp_from(from, to).unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"))
}

/// Like [`tcp_from`], returning the connect error: a server that resets a
/// connection right after accept may do so before the client's connect
/// returns, which then reports ECONNRESET.
pub fn try_tcp_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let from = SocketAddr::new(from.parse().expect("a source IP address"), 0);
    let s = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )?;
    s.bind(&from.into())?;
    s.connect_timeout(&to.into(), WAIT)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT))?;
    Ok(s)
}

/// Connects from `from` and returns how long until the server closed the
/// connection (reset during connect counts as at once); panics past `max`.
pub fn refused_within(from: &str, to: SocketAddr, max: Duration) -> Duration {
    let t0 = Instant::now();
    match try_tcp_from(from, to) {
        Ok(mut s) => {
            closed_within(&mut s, max);
            t0.elapsed()
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => t0.elapsed(),
        Err(e) => panic!("connect {from} -> {to}: {e}"),
    }
}

/// One 4-byte big-endian frame there and back; false if the connection failed.
pub fn tcp_echoes(s: &mut TcpStream, payload: &[u8]) -> bool {
    let f = frame(4, true, payload);
    let mut back = vec![0; f.len()];
    s.write_all(&f).is_ok() && s.read_exact(&mut back).is_ok() && back == f
}

/// How long until the server closed `s` (EOF or reset); panics past `max`.
pub fn closed_within(s: &mut TcpStream, max: Duration) -> Duration {
    let t0 = Instant::now();
    s.set_read_timeout(Some(max)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return t0.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("connection still open after {max:?}")
            }
            Err(_) => return t0.elapsed(),
        }
    }
}

/// A UDP socket bound to `from`, receiving with `timeout`.
pub fn udp_from(from: &str, timeout: Duration) -> UdpSocket {
    let u = UdpSocket::bind(format!("{from}:0")).unwrap();
    u.set_read_timeout(Some(timeout)).unwrap();
    u
}
