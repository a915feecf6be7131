//! The `[admin]` HTTP endpoint: `/healthz`, `/metrics`, `/services`.
//! Placeholder until the operations issue lands: configuring `[admin]` fails
//! at start with a clear message.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;

use crate::config::AdminConfig;
use crate::daemon::State;
use crate::metrics::Metrics;

pub struct Admin {
    local: SocketAddr,
}

impl Admin {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

pub async fn start(cfg: &AdminConfig, _state: State, _metrics: Arc<Metrics>) -> Result<Admin> {
    let _ = Admin { local: cfg.listen };
    anyhow::bail!("[admin] is not implemented in this build yet; remove the [admin] section")
}
