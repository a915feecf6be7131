//! Builds every socket the daemon serves on: a `[*.socket]` table becomes
//! socket2 calls, in the order the kernel needs them (options that affect bind
//! before bind, then bind, then listen), then the socket is made non-blocking
//! and handed to tokio. [`read_back`] asks the kernel what it actually applied,
//! for `check --bind` and `/services`.
//!
//! Which options exist, and how each is set and read, is one table
//! ([`options::OPTIONS`]); `apply` and `read_back` loop over it. socket2
//! covers nearly every option; the few it lacks (SO_RCVLOWAT, SO_DONTROUTE,
//! TCP_FASTOPEN, SO_EXCLUSIVEADDRUSE) go through `raw`, a thin
//! setsockopt/getsockopt on the same descriptor.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::config::{Keepalive, SocketOptions};

pub mod change;
pub mod groups;
pub mod options;
#[cfg(windows)]
pub mod pktinfo;
mod raw;
mod readback;
pub mod reuseport_udp;

pub use readback::{Applied, read_back};

/// The listen() backlog when the config does not set one.
pub const DEFAULT_BACKLOG: i32 = 1024;

/// What a socket is for; decides which defaults apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    TcpListener,
    /// A UDP service that owns its address (udp_echo).
    Udp,
    /// UDP that sends to broadcast addresses (SO_BROADCAST on).
    UdpBroadcast,
    /// A multicast listener: shares its port with other listeners by design.
    UdpMulticast,
}

impl Role {
    /// Owns its address exclusively: on Windows it gets SO_EXCLUSIVEADDRUSE.
    pub(crate) fn exclusive(self) -> bool {
        matches!(self, Role::TcpListener | Role::Udp)
    }

    /// SO_REUSEADDR when the config does not say. Off for udp_echo on Unix:
    /// there it would let a second process (another daemon, `socat
    /// reuseaddr`, `netservd listen`) bind the same address and receive the
    /// traffic. TCP keeps it (restart past TIME_WAIT; it never shares a
    /// listening port), multicast and broadcast share ports by design, and
    /// Windows' exclusive sockets use it to ask for SO_EXCLUSIVEADDRUSE.
    pub fn default_reuse_address(self) -> bool {
        !(cfg!(unix) && self == Role::Udp)
    }
}

/// Creates, configures and binds a TCP listener, non-blocking, ready for tokio.
pub fn tcp_listener(addr: SocketAddr, o: &SocketOptions) -> Result<std::net::TcpListener> {
    let sock = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    apply(&sock, addr, o, Role::TcpListener)?;
    bind(&sock, addr, "tcp")?;
    sock.listen(o.backlog.unwrap_or(DEFAULT_BACKLOG))
        .with_context(|| format!("listen on tcp {addr}"))?;
    make_nonblocking(&sock)?;
    Ok(sock.into())
}

/// Set by the daemon before it binds: its TCP listeners join SO_REUSEPORT
/// groups by default (Linux). Tools and `check --bind` leave it off, so a
/// socket of theirs never joins a running daemon's group and takes (then
/// resets) its connections; with the daemon running they see "address in use".
static SHARE_TCP_PORTS: AtomicBool = AtomicBool::new(false);

/// Called once by `daemon::run`; see [`reuse_port`].
pub fn share_tcp_ports() {
    SHARE_TCP_PORTS.store(true, Ordering::Relaxed);
}

/// SO_REUSEPORT as applied: the daemon's TCP listeners get it by default on
/// Linux, so a reload can bind a new listener beside the old one on the same
/// address and no connect is refused (the kernel lets only a process of the
/// same user join such a port); elsewhere, and for UDP, only when the config asks.
pub fn reuse_port(o: &SocketOptions, role: Role) -> Option<bool> {
    o.reuse_port.or(reuse_port_default(role).then_some(true))
}

/// Whether a socket of `role` gets SO_REUSEPORT when the config does not say.
pub(crate) fn reuse_port_default(role: Role) -> bool {
    cfg!(target_os = "linux")
        && role == Role::TcpListener
        && SHARE_TCP_PORTS.load(Ordering::Relaxed)
}

/// Before a daemon listener joins a port with the SO_REUSEPORT default: the
/// address must be free of everyone else, so that a second daemon (or any
/// program of the same user with SO_REUSEPORT) is refused as it was before,
/// rather than silently sharing the port. A probe socket without
/// SO_REUSEPORT is bound and closed; "address in use" means someone holds it.
/// Not called when one of our own listeners holds the address (a rebind).
pub fn tcp_address_free(addr: SocketAddr, o: &SocketOptions) -> Result<()> {
    if addr.port() == 0 || o.reuse_port.is_some() || reuse_port(o, Role::TcpListener).is_none() {
        return Ok(());
    }
    let probe = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    // Like the listener: TIME_WAIT leftovers of an earlier run are no conflict.
    reuse_address(&probe, o.reuse_address.unwrap_or(true), true)
        .with_context(|| format!("set socket.reuse_address on {addr}"))?;
    if addr.is_ipv6()
        && let Some(v) = o.only_v6
    {
        probe
            .set_only_v6(v)
            .with_context(|| format!("set socket.only_v6 on {addr}"))?;
    }
    bind(&probe, addr, "tcp")
}

/// During a gap-free rebind: new connections to the address go to `newest`
/// (the listener bound last), none to the old one that is about to close.
/// Best effort: without it the kernel's hash may still pick the old listener
/// until it closes, and its backlog is accepted anyway.
#[cfg(target_os = "linux")]
pub fn steer_to(newest: SockRef<'_>, on: bool) {
    let r = if on {
        raw::steer_to_newest(&newest)
    } else {
        raw::unsteer(&newest)
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, on, "reuseport steering not changed");
    }
}

/// Creates, configures and binds a UDP socket, non-blocking, ready for tokio.
pub fn udp_socket(addr: SocketAddr, o: &SocketOptions, role: Role) -> Result<std::net::UdpSocket> {
    let sock = udp_unbound(addr, o, role)?;
    bind(&sock, addr, "udp")?;
    make_nonblocking(&sock)?;
    Ok(sock.into())
}

/// A configured UDP socket not yet bound: multicast binds after joining choices.
pub fn udp_unbound(addr: SocketAddr, o: &SocketOptions, role: Role) -> Result<Socket> {
    let sock = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    apply(&sock, addr, o, role)?;
    // Windows reports an ICMP port unreachable (caused by an earlier reply) as
    // WSAECONNRESET on the next receive. Turn that off; the receive loops
    // still skip the error should the ioctl be refused.
    #[cfg(windows)]
    raw::udp_connreset_off(&sock).context("turn off SIO_UDP_CONNRESET")?;
    Ok(sock)
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> Result<Socket> {
    Socket::new(Domain::for_address(addr), ty, Some(proto))
        .with_context(|| format!("create socket for {addr}"))
}

/// Binds, turning the common failures into a message that says what to do.
pub fn bind(sock: &Socket, addr: SocketAddr, proto: &str) -> Result<()> {
    sock.bind(&addr.into()).map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::AddrInUse => "address already in use: another process (or another service) is bound to it; pick another port or stop the other user".to_string(),
            io::ErrorKind::PermissionDenied if addr.port() < 1024 && addr.port() != 0 => {
                "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port >= 1024".to_string()
            }
            io::ErrorKind::AddrNotAvailable => format!("address not available: {} is not an address of this host", addr.ip()),
            _ => e.to_string(),
        };
        anyhow::Error::new(e).context(format!("bind {proto} {addr}: {why}"))
    })
}

/// Every socket goes to tokio non-blocking; tokio only checks this on Unix,
/// so we check it here wherever the platform lets us ask.
pub fn make_nonblocking(sock: &Socket) -> Result<()> {
    sock.set_nonblocking(true).context("set O_NONBLOCK")?;
    #[cfg(unix)]
    if !sock.nonblocking().context("read O_NONBLOCK")? {
        anyhow::bail!("socket is still blocking after set_nonblocking(true)");
    }
    Ok(())
}

/// Applies every option of [`options::OPTIONS`] set before bind that the
/// table sets or the role defaults, in table order.
pub fn apply(sock: &Socket, addr: SocketAddr, o: &SocketOptions, role: Role) -> Result<()> {
    let ctx = options::Ctx {
        v6: addr.is_ipv6(),
        role,
    };
    for d in options::OPTIONS.iter() {
        if d.when != options::When::Bind || !d.applies(ctx) {
            continue;
        }
        if let Some(v) = options::resolve(d, o, role) {
            (d.set)(sock, ctx, &v).with_context(|| format!("set socket.{} on {addr}", d.key))?;
        }
    }
    Ok(())
}

/// Per-connection options ([`options::Desc::per_connection`]), applied to
/// each accepted stream: Linux does not carry TCP_NODELAY or the keepalive
/// timers over from the listener everywhere.
pub fn apply_accepted(stream: &tokio::net::TcpStream, o: &SocketOptions) -> io::Result<()> {
    let sock = SockRef::from(stream);
    // No getsockname on the accept path: no per-connection option has an
    // IPv4 and an IPv6 form (a unit test holds the table to that).
    let ctx = options::Ctx {
        v6: false,
        role: Role::TcpListener,
    };
    for d in options::OPTIONS.iter().filter(|d| d.per_connection) {
        if let Some(v) = options::resolve(d, o, ctx.role) {
            (d.set)(&sock, ctx, &v)?;
        }
    }
    Ok(())
}

pub(crate) fn keepalive(sock: &Socket, k: Keepalive) -> io::Result<()> {
    match k {
        Keepalive::Off => sock.set_keepalive(false),
        Keepalive::On(p) => {
            let mut ka = TcpKeepalive::new();
            if let Some(t) = p.idle {
                ka = ka.with_time(t);
            }
            #[cfg(not(target_os = "openbsd"))]
            if let Some(t) = p.interval {
                ka = ka.with_interval(t);
            }
            #[cfg(unix)]
            if let Some(n) = p.retries {
                ka = ka.with_retries(n);
            }
            sock.set_tcp_keepalive(&ka)
        }
    }
}

/// SO_REUSEADDR lets a restarted daemon bind while old connections sit in
/// TIME_WAIT. On Windows it would instead let another process steal a bound
/// port, so sockets that own their address (TCP listeners, UDP echo) get
/// SO_EXCLUSIVEADDRUSE there; multicast listeners keep SO_REUSEADDR to share.
pub(crate) fn reuse_address(sock: &Socket, on: bool, exclusive: bool) -> io::Result<()> {
    #[cfg(windows)]
    if exclusive {
        return raw::set(
            sock,
            windows_sys::Win32::Networking::WinSock::SOL_SOCKET,
            windows_sys::Win32::Networking::WinSock::SO_EXCLUSIVEADDRUSE,
            on as i32,
        );
    }
    let _ = exclusive;
    sock.set_reuse_address(on)
}

/// IPV6_TCLASS: socket2 wraps it on Unix only; Windows has the same option.
pub(crate) fn set_tclass_v6(sock: &Socket, v: u32) -> io::Result<()> {
    #[cfg(windows)]
    return raw::set(
        sock,
        windows_sys::Win32::Networking::WinSock::IPPROTO_IPV6,
        windows_sys::Win32::Networking::WinSock::IPV6_TCLASS,
        v as i32,
    );
    #[cfg(not(windows))]
    sock.set_tclass_v6(v)
}

pub(crate) fn tclass_v6(sock: &Socket) -> io::Result<u32> {
    #[cfg(windows)]
    return raw::get(
        sock,
        windows_sys::Win32::Networking::WinSock::IPPROTO_IPV6,
        windows_sys::Win32::Networking::WinSock::IPV6_TCLASS,
    )
    .map(|v| v as u32);
    #[cfg(not(windows))]
    sock.tclass_v6()
}

/// Sets SO_LINGER to zero so that dropping the stream resets it (RST).
pub fn reset_on_close(stream: &tokio::net::TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
