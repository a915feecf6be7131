//! Linux: datagrams the kernel dropped because a UDP socket's receive buffer
//! was full never reach our loop, so they are read from the socket's `drops`
//! column in /proc/self/net/udp(6) once a second and added to the service's
//! `drops{reason="receive_buffer_full"}` counter. How many of the socket's
//! drops were already counted lives with the socket ([`Seen`], made at bind,
//! where the kernel's count is 0), not with the watcher: drops between bind
//! and the watcher's first reading are counted, and a socket handed over on
//! reload is not counted twice.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

/// How often the kernel's counter is read.
const EVERY: Duration = Duration::from_secs(1);

/// The kernel's drop count of one socket that is already in the counter;
/// shared by every service the socket is handed to. Starts at 0 with the socket.
pub type Seen = Arc<AtomicU64>;

/// Starts counting kernel drops of `sock` until `stop`, plus one last reading then.
pub fn watch(sock: &impl AsRawFd, v6: bool, seen: Seen, counter: Counter, stop: super::Stop) {
    let Some(inode) = socket_inode(sock.as_raw_fd()) else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            if let Some(now) = read_drops(inode, v6) {
                let before = seen.swap(now, Ordering::Relaxed);
                counter.inc_by(now.saturating_sub(before));
            }
            if stopping {
                break;
            }
        }
    });
}

/// The inode behind a socket descriptor (`socket:[INODE]`).
fn socket_inode(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The `drops` column of the socket with this inode.
fn read_drops(inode: u64, v6: bool) -> Option<u64> {
    let table = std::fs::read_to_string(if v6 {
        "/proc/self/net/udp6"
    } else {
        "/proc/self/net/udp"
    })
    .ok()?;
    let inode = inode.to_string();
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(9) == Some(&inode.as_str()))
            .then(|| f.last()?.parse().ok())
            .flatten()
    })
}
