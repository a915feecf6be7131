//! Watches the config file's directory (not the file: editors save by
//! renaming a new file over the old one, and Kubernetes swaps a `..data`
//! symlink, both of which a watch on the file itself would miss) and turns
//! bursts of events into one [`Event::Reload`] after a quiet period. Only
//! events about the config file itself (its name in that directory) or the
//! `..data` symlink Kubernetes swaps count: a log file or anything else
//! written beside the config neither triggers a reload nor delays one. A
//! burst is reported at most [`MAX_DELAY`] after its first event, however
//! long it lasts. The daemon then reloads only if the file's content changed
//! (and is not a content that already failed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::signals::Event;

/// Events closer together than this are one change.
pub const DEBOUNCE: Duration = Duration::from_millis(150);
/// A change is reported at most this long after its first event, even while
/// the file keeps changing.
pub const MAX_DELAY: Duration = Duration::from_millis(700);

/// The Kubernetes ConfigMap volume's symlink, swapped atomically on update.
const K8S_DATA: &str = "..data";

/// True when an event about `path` may change what `config` reads.
fn concerns(path: &Path, config_name: &std::ffi::OsStr) -> bool {
    path.file_name()
        .is_some_and(|n| n == config_name || n == K8S_DATA)
}

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
    let name = config
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if !ev.kind.is_access() && ev.paths.iter().any(|p| concerns(p, &name)) => {
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
            // Wait for the burst to settle (or MAX_DELAY), then report it once.
            let cap = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(cap);
                match tokio::time::timeout_at(quiet, raw_rx.recv()).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_config_file_and_the_k8s_symlink_count() {
        let name = std::ffi::OsStr::new("config.toml");
        assert!(concerns(Path::new("/etc/n/config.toml"), name));
        assert!(concerns(Path::new("/etc/n/..data"), name));
        assert!(!concerns(Path::new("/etc/n/netservd.log"), name));
        assert!(!concerns(Path::new("/etc/n/.config.toml.swp"), name));
        assert!(!concerns(Path::new("/etc/n/..data_tmp"), name));
    }
}
