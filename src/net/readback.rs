//! Reads back, with getsockopt, every option a `[*.socket]` table set (and
//! the role's defaults) from a live socket: what `check --bind` prints next to
//! the requested values and what `/services` reports. The kernel often differs
//! from the request (Linux doubles SO_RCVBUF; sysctls clamp buffers and backlog).

use std::io;
use std::time::Duration;

use socket2::SockRef;

use super::{DEFAULT_BACKLOG, Role, raw, tclass_v6};
use crate::config::{Keepalive, SocketOptions};

/// One option as requested in the config and as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    pub key: &'static str,
    pub requested: String,
    pub effective: String,
}

/// Reads back every option the table sets (and the role's defaults) from a
/// live socket with getsockopt.
pub fn read_back(sock: SockRef<'_>, v6: bool, o: &SocketOptions, role: Role) -> Vec<Applied> {
    let tcp = role == Role::TcpListener;
    let mut out = Vec::new();
    let mut add = |key: &'static str, requested: String, effective: io::Result<String>| {
        let effective = effective.unwrap_or_else(|e| format!("error: {e}"));
        out.push(Applied {
            key,
            requested,
            effective,
        });
    };
    let show = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let dur = |d: Option<Duration>| {
        d.map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|| "off".into())
    };

    #[cfg(not(windows))]
    add(
        "reuse_address",
        o.reuse_address
            .unwrap_or(role.default_reuse_address())
            .to_string(),
        sock.reuse_address().map(|v| v.to_string()),
    );
    #[cfg(windows)]
    add(
        "reuse_address",
        o.reuse_address
            .unwrap_or(role.default_reuse_address())
            .to_string(),
        if role.exclusive() {
            raw::get(
                &sock,
                windows_sys::Win32::Networking::WinSock::SOL_SOCKET,
                windows_sys::Win32::Networking::WinSock::SO_EXCLUSIVEADDRUSE,
            )
            .map(|v| format!("exclusiveaddruse={}", v != 0))
        } else {
            sock.reuse_address().map(|v| v.to_string())
        },
    );
    #[cfg(unix)]
    if let Some(v) = super::reuse_port(o, role) {
        add(
            "reuse_port",
            if o.reuse_port.is_some() {
                v.to_string()
            } else {
                // Not asked for: the Linux TCP default that makes rebinds gap-free.
                // README "Reload and shutdown": a reload binds beside the old listener.
                format!("{v} (Linux default)")
            },
            sock.reuse_port().map(|v| v.to_string()),
        );
    }
    if v6 && let Some(v) = o.only_v6 {
        add(
            "only_v6",
            v.to_string(),
            sock.only_v6().map(|v| v.to_string()),
        );
    }
    let req = |v: Option<usize>| {
        v.map(|v| v.to_string())
            .unwrap_or_else(|| "(os default)".into())
    };
    add(
        "recv_buffer_bytes",
        req(o.recv_buffer_bytes),
        sock.recv_buffer_size().map(|v| v.to_string()),
    );
    add(
        "send_buffer_bytes",
        req(o.send_buffer_bytes),
        sock.send_buffer_size().map(|v| v.to_string()),
    );
    if let Some(v) = o.ttl {
        add(
            "ttl",
            v.to_string(),
            if v6 {
                sock.unicast_hops_v6()
            } else {
                sock.ttl_v4()
            }
            .map(|v| v.to_string()),
        );
    }
    if let Some(v) = o.tos {
        add(
            "tos",
            v.to_string(),
            if v6 { tclass_v6(&sock) } else { sock.tos_v4() }.map(|v| v.to_string()),
        );
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(dev) = &o.bind_device {
        add(
            "bind_device",
            dev.clone(),
            sock.device().map(|d| {
                d.map(|d| String::from_utf8_lossy(&d).into_owned())
                    .unwrap_or_default()
            }),
        );
    }
    #[cfg(unix)]
    if let Some(v) = o.dont_route {
        add(
            "dont_route",
            v.to_string(),
            raw::get(&sock, libc::SOL_SOCKET, libc::SO_DONTROUTE).map(|v| (v != 0).to_string()),
        );
    }
    if tcp {
        add(
            "nodelay",
            o.nodelay.unwrap_or(true).to_string(),
            sock.tcp_nodelay().map(|v| v.to_string()),
        );
        add(
            "oob_inline",
            o.oob_inline.unwrap_or(true).to_string(),
            sock.out_of_band_inline().map(|v| v.to_string()),
        );
        if let Some(k) = o.keepalive {
            add(
                "keepalive",
                k.to_string(),
                sock.keepalive().map(|v| v.to_string()),
            );
            if let Keepalive::On(p) = k {
                #[cfg(unix)]
                {
                    add(
                        "keepalive.idle",
                        dur(p.idle),
                        sock.tcp_keepalive_time().map(|d| dur(Some(d))),
                    );
                    add(
                        "keepalive.interval",
                        dur(p.interval),
                        sock.tcp_keepalive_interval().map(|d| dur(Some(d))),
                    );
                    add(
                        "keepalive.retries",
                        p.retries.map_or("os".into(), |r| r.to_string()),
                        sock.tcp_keepalive_retries().map(|v| v.to_string()),
                    );
                }
                let _ = p;
            }
        }
        if let Some(d) = o.linger {
            add("linger", dur(Some(d)), sock.linger().map(dur));
        }
        add(
            "backlog",
            o.backlog.unwrap_or(DEFAULT_BACKLOG).to_string(),
            Ok("(not readable; listen() accepted it)".into()),
        );
        #[cfg(unix)]
        if let Some(v) = o.mss {
            add("mss", v.to_string(), sock.tcp_mss().map(|v| v.to_string()));
        }
        #[cfg(unix)]
        if let Some(v) = o.recv_low_water {
            add(
                "recv_low_water",
                v.to_string(),
                raw::get(&sock, libc::SOL_SOCKET, libc::SO_RCVLOWAT).map(|v| v.to_string()),
            );
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(v) = o.fastopen {
            add(
                "fastopen",
                v.to_string(),
                raw::get(&sock, libc::IPPROTO_TCP, libc::TCP_FASTOPEN).map(|v| v.to_string()),
            );
        }
    } else {
        if role == Role::UdpBroadcast {
            add(
                "broadcast",
                "true".into(),
                sock.broadcast().map(|v| v.to_string()),
            );
        }
        if let Some(v) = o.multicast_ttl {
            add(
                "multicast_ttl",
                v.to_string(),
                if v6 {
                    sock.multicast_hops_v6()
                } else {
                    sock.multicast_ttl_v4()
                }
                .map(|v| v.to_string()),
            );
        }
        if let Some(v) = o.multicast_loop {
            add(
                "multicast_loop",
                v.to_string(),
                if v6 {
                    sock.multicast_loop_v6()
                } else {
                    sock.multicast_loop_v4()
                }
                .map(|v| v.to_string()),
            );
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(v) = o.multicast_all {
            add(
                "multicast_all",
                v.to_string(),
                if v6 {
                    raw::get(&sock, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_ALL)
                } else {
                    raw::get(&sock, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL)
                }
                .map(|v| (v != 0).to_string()),
            );
        }
    }
    let _ = show;
    out
}
