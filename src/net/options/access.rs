//! The setters, getters and value checks of the option table's entries
//! that are longer than a line: the platform-only ones keep their cfg here,
//! so the table itself (`table.rs`) reads the same on every platform.

use std::io;
use std::time::Duration;

use socket2::Socket;

use super::{Ctx, Value};
use crate::config::Keepalive;
use crate::net::{Applied, Role, raw};

pub(super) fn tcp_true(r: Role) -> Option<Value> {
    (r == Role::TcpListener).then_some(Value::Bool(true))
}

/// `keepalive = { idle, interval, retries }` within Linux's limits for
/// TCP_KEEPIDLE/TCP_KEEPINTVL (MAX_TCP_KEEPIDLE) and TCP_KEEPCNT (MAX_TCP_KEEPCNT).
pub(super) fn check_keepalive(v: &Value) -> Vec<String> {
    let mut msgs = Vec::new();
    let Value::Keepalive(Keepalive::On(p)) = v else {
        return msgs;
    };
    for (what, d) in [("idle", p.idle), ("interval", p.interval)] {
        if let Some(d) =
            d.filter(|d| d.subsec_nanos() != 0 || d.as_secs() < 1 || d.as_secs() > 32767)
        {
            msgs.push(format!(
                "socket.keepalive {what} = {} must be whole seconds from 1s to 32767s",
                humantime::format_duration(d)
            ));
        }
    }
    if let Some(r) = p.retries.filter(|r| !(1..=127).contains(r)) {
        msgs.push(format!(
            "socket.keepalive retries = {r} is out of range 1..=127"
        ));
    }
    msgs
}

/// SO_LINGER counts whole seconds: "500ms" would silently become 0s (a reset on every close).
pub(super) fn check_linger(v: &Value) -> Vec<String> {
    match v {
        Value::Dur(d) if d.subsec_nanos() != 0 || *d > Duration::from_secs(3600) => vec![format!(
            "socket.linger = {}: SO_LINGER takes whole seconds from 0s (reset on close) to 3600s; write e.g. \"2s\"",
            humantime::format_duration(*d)
        )],
        _ => Vec::new(),
    }
}

/// The keepalive timers as the kernel holds them (Unix), one row each.
pub(super) fn keepalive_timers(s: &Socket, v: &Value, out: &mut Vec<Applied>) {
    let Value::Keepalive(Keepalive::On(p)) = v else {
        return;
    };
    let dur = |d: Option<Duration>| {
        d.map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|| "off".into())
    };
    #[cfg(unix)]
    {
        out.push(Applied::new(
            "keepalive.idle",
            dur(p.idle),
            s.tcp_keepalive_time().map(|d| dur(Some(d))),
        ));
        out.push(Applied::new(
            "keepalive.interval",
            dur(p.interval),
            s.tcp_keepalive_interval().map(|d| dur(Some(d))),
        ));
        out.push(Applied::new(
            "keepalive.retries",
            p.retries.map_or("os".into(), |r| r.to_string()),
            s.tcp_keepalive_retries().map(|v| v.to_string()),
        ));
    }
    let _ = (s, p, dur, out);
}

pub(super) fn get_reuse_address(s: &Socket, c: Ctx) -> io::Result<Value> {
    #[cfg(windows)]
    if c.role.exclusive() {
        use windows_sys::Win32::Networking::WinSock;
        return raw::get(s, WinSock::SOL_SOCKET, WinSock::SO_EXCLUSIVEADDRUSE)
            .map(|v| Value::Text(format!("exclusiveaddruse={}", v != 0)));
    }
    let _ = c;
    s.reuse_address().map(Value::Bool)
}

/// The `int` options socket2 does not wrap, set through `raw` (Unix only).
#[derive(Clone, Copy)]
pub(super) enum Level {
    Socket,
    Tcp,
}

#[derive(Clone, Copy)]
pub(super) enum Name {
    DontRoute,
    RcvLowat,
    FastOpen,
}

#[cfg(unix)]
pub(super) fn c_names(level: Level, name: Name) -> io::Result<(i32, i32)> {
    let level = match level {
        Level::Socket => libc::SOL_SOCKET,
        Level::Tcp => libc::IPPROTO_TCP,
    };
    let name = match name {
        Name::DontRoute => libc::SO_DONTROUTE,
        Name::RcvLowat => libc::SO_RCVLOWAT,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Name::FastOpen => libc::TCP_FASTOPEN,
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Name::FastOpen => return super::unsupported(),
    };
    Ok((level, name))
}

pub(super) fn int_opt(s: &Socket, level: Level, name: Name, v: i32) -> io::Result<()> {
    #[cfg(unix)]
    {
        let (level, name) = c_names(level, name)?;
        raw::set(s, level, name, v)
    }
    #[cfg(not(unix))]
    {
        let _ = (s, level, name, v);
        super::unsupported()
    }
}

pub(super) fn get_int_opt(s: &Socket, level: Level, name: Name) -> io::Result<i32> {
    #[cfg(unix)]
    {
        let (level, name) = c_names(level, name)?;
        raw::get(s, level, name)
    }
    #[cfg(not(unix))]
    {
        let _ = (s, level, name);
        super::unsupported()
    }
}

pub(super) fn set_reuse_port(s: &Socket, _: Ctx, v: &Value) -> io::Result<()> {
    #[cfg(unix)]
    return s.set_reuse_port(v.bool()?);
    #[cfg(not(unix))]
    {
        let _ = (s, v);
        super::unsupported()
    }
}

pub(super) fn get_reuse_port(s: &Socket, _: Ctx) -> io::Result<Value> {
    #[cfg(unix)]
    return s.reuse_port().map(Value::Bool);
    #[cfg(not(unix))]
    {
        let _ = s;
        super::unsupported()
    }
}

pub(super) fn set_mss(s: &Socket, _: Ctx, v: &Value) -> io::Result<()> {
    #[cfg(unix)]
    return s.set_tcp_mss(v.int()?);
    #[cfg(not(unix))]
    {
        let _ = (s, v);
        super::unsupported()
    }
}

pub(super) fn get_mss(s: &Socket, _: Ctx) -> io::Result<Value> {
    #[cfg(unix)]
    return s.tcp_mss().map(|v| Value::Int(v.into()));
    #[cfg(not(unix))]
    {
        let _ = s;
        super::unsupported()
    }
}

pub(super) fn set_bind_device(s: &Socket, _: Ctx, v: &Value) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return match v {
        Value::Text(dev) => s.bind_device(Some(dev.as_bytes())),
        _ => Err(super::mismatch(v)),
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (s, v);
        super::unsupported()
    }
}

pub(super) fn get_bind_device(s: &Socket, _: Ctx) -> io::Result<Value> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return s.device().map(|d| {
        Value::Text(
            d.map(|d| String::from_utf8_lossy(&d).into_owned())
                .unwrap_or_default(),
        )
    });
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = s;
        super::unsupported()
    }
}

pub(super) fn set_priority(s: &Socket, _: Ctx, v: &Value) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return s.set_priority(v.int()?);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (s, v);
        super::unsupported()
    }
}

pub(super) fn get_priority(s: &Socket, _: Ctx) -> io::Result<Value> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return s.priority().map(|v| Value::Int(v.into()));
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = s;
        super::unsupported()
    }
}

pub(super) fn set_multicast_all(s: &Socket, c: Ctx, v: &Value) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return if c.v6 {
        s.set_multicast_all_v6(v.bool()?)
    } else {
        s.set_multicast_all_v4(v.bool()?)
    };
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (s, c, v);
        super::unsupported()
    }
}

pub(super) fn get_multicast_all(s: &Socket, c: Ctx) -> io::Result<Value> {
    #[cfg(target_os = "linux")]
    return if c.v6 {
        s.multicast_all_v6()
    } else {
        s.multicast_all_v4()
    }
    .map(Value::Bool);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (s, c);
        super::unsupported()
    }
}
