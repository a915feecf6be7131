//! Process signals as one typed stream of [`Event`]s: SIGTERM and SIGINT ask
//! for shutdown, SIGHUP for a reload (Unix); on Windows, Ctrl-C, Ctrl-Break,
//! console close and system shutdown all ask for shutdown. The file watcher
//! feeds reloads into the same channel.

use anyhow::Result;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Reload(&'static str),
    Shutdown(&'static str),
}

/// Where the Windows service control handler (another thread, outside the
/// runtime) delivers Stop and Shutdown; set once the daemon listens for events.
#[cfg(windows)]
pub static SERVICE_EVENTS: std::sync::OnceLock<mpsc::UnboundedSender<Event>> =
    std::sync::OnceLock::new();

/// Starts forwarding signals into `tx`. Must run inside the runtime.
pub fn forward(tx: mpsc::UnboundedSender<Event>) -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, event) in [
            (SignalKind::terminate(), Event::Shutdown("SIGTERM")),
            (SignalKind::interrupt(), Event::Shutdown("SIGINT")),
            (SignalKind::hangup(), Event::Reload("SIGHUP")),
        ] {
            let mut s = signal(kind)?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(event).is_err() {
                        break;
                    }
                }
            });
        }
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows;
        macro_rules! fwd {
            ($make:expr, $name:literal) => {{
                let mut s = $make?;
                let tx = tx.clone();
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        if tx.send(Event::Shutdown($name)).is_err() {
                            break;
                        }
                    }
                });
            }};
        }
        fwd!(windows::ctrl_c(), "ctrl-c");
        fwd!(windows::ctrl_break(), "ctrl-break");
        fwd!(windows::ctrl_close(), "ctrl-close");
        fwd!(windows::ctrl_shutdown(), "ctrl-shutdown");
        let _ = SERVICE_EVENTS.set(tx.clone());
    }
    Ok(())
}
