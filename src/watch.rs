//! Watches the config file's directory (not the file: editors save by
//! renaming a new file over the old one, and Kubernetes swaps a `..data`
//! symlink, both of which a watch on the file itself would miss) and turns
//! bursts of events into one [`Event::Reload`] after a quiet period. The
//! daemon then reloads only if the file's content really changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::signals::Event;

/// Events closer together than this are one change.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps the watch alive; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
}

pub fn start(config: &Path, tx: mpsc::UnboundedSender<Event>) -> Result<ConfigWatch> {
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let dir: PathBuf = config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if !ev.kind.is_access() => {
                let _ = raw_tx.send(());
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "config watch error"),
        })
        .context("create file watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watch {}", dir.display()))?;
    debug!(dir = %dir.display(), "watching config directory");
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Wait for the burst to settle, then report it once.
            loop {
                match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(Event::Reload("file change")).is_err() {
                return;
            }
        }
    });
    Ok(ConfigWatch { _watcher: watcher })
}
