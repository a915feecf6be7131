//! `[[multicast]]`: placeholder until the multicast service lands (issue 3); binding fails
//! with a clear message so `run` refuses configs that use it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;

use super::ServiceCtx;
use crate::config::MulticastConfig;

#[derive(Clone)]
pub struct Bound {
    cfg: Arc<MulticastConfig>,
}

pub fn bind(cfg: &MulticastConfig) -> Result<Bound> {
    let _ = Bound {
        cfg: Arc::new(cfg.clone()),
    };
    anyhow::bail!("[[multicast]] services are not implemented in this build yet")
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
    pub fn with_config(&self, cfg: &MulticastConfig) -> Bound {
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
