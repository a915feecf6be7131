//! Reads back, with getsockopt, every option a `[*.socket]` table set (and
//! the role's defaults) from a live socket: what `check --bind` prints next to
//! the requested values and what `/services` reports. The kernel often differs
//! from the request (Linux doubles SO_RCVBUF; sysctls clamp buffers and backlog).
//! Which options there are, and how each is read, is [`super::options::OPTIONS`].

use std::io;

use socket2::SockRef;

use super::Role;
use super::options::{self, Ctx};
use crate::config::SocketOptions;

/// One option as requested in the config and as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    pub key: &'static str,
    pub requested: String,
    pub effective: String,
}

impl Applied {
    /// A row; a getsockopt that failed reads `error: ...`.
    pub fn new(key: &'static str, requested: String, effective: io::Result<String>) -> Applied {
        Applied {
            key,
            requested,
            effective: effective.unwrap_or_else(|e| format!("error: {e}")),
        }
    }
}

/// Reads back every option the table sets (and the role's defaults, and the
/// buffer sizes the OS chose) from a live socket, in table order.
pub fn read_back(sock: SockRef<'_>, v6: bool, o: &SocketOptions, role: Role) -> Vec<Applied> {
    let ctx = Ctx { v6, role };
    let mut out = Vec::new();
    for d in options::OPTIONS.iter().filter(|d| d.applies(ctx)) {
        let Some(requested) = options::requested_text(d, o, role) else {
            continue;
        };
        let effective = (d.get)(&sock, ctx).map(|v| v.to_string());
        out.push(Applied::new(d.key, requested, effective));
        if let (Some(more), Some(v)) = (d.more, (d.value)(o)) {
            more(&sock, &v, &mut out);
        }
    }
    out
}
