//! `[[broadcast]]`: placeholder until the broadcast service lands (issue 3); binding fails
//! with a clear message so `run` refuses configs that use it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;

use super::ServiceCtx;
use crate::config::BroadcastConfig;

#[derive(Clone)]
pub struct Bound {
    cfg: Arc<BroadcastConfig>,
}

pub fn bind(cfg: &BroadcastConfig) -> Result<Bound> {
    let _ = Bound {
        cfg: Arc::new(cfg.clone()),
    };
    anyhow::bail!("[[broadcast]] services are not implemented in this build yet")
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }
    pub fn destination(&self) -> SocketAddr {
        self.local_addr()
    }
    pub fn group_addr(&self) -> SocketAddr {
        self.local_addr()
    }
    pub fn with_config(&self, cfg: &BroadcastConfig) -> Bound {
        Bound {
            cfg: Arc::new(cfg.clone()),
        }
    }
    pub fn report(&self) -> Vec<crate::net::Applied> {
        Vec::new()
    }
    pub async fn run(self, _ctx: ServiceCtx) -> Result<()> {
        let _ = &self.cfg;
        Ok(())
    }
}
