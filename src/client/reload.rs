//! `netservd reload [--config PATH]`: makes the one daemon running PATH
//! reload it, instead of `kill -HUP $(pidof netservd)`, which signals every
//! netservd on the host. Tried in order:
//! 1. the config's `[daemon] pid_file`: SIGHUP to that process, after
//!    checking it is a live netservd;
//! 2. its `[admin]` endpoint on a fixed port with `control = true` (the
//!    endpoint refuses writes otherwise): `POST /reload`;
//! 3. Linux: the netservd processes whose `run` resolves to the same file
//!    (their `--config`, `NETSERVD_CONFIG` or `./config.toml`, read from
//!    /proc); exactly one must match.
//!
//! Prints what it signalled; exit 0 sent, 1 not (with the reason), 2 when
//! PATH itself is invalid (the daemon would refuse it too).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::ConfigSource;
use crate::pidfile;
use crate::{EXIT_FAILURE, EXIT_OK};

pub async fn run(source: ConfigSource) -> i32 {
    let cfg = match source.load() {
        Ok((cfg, _)) => cfg,
        Err(e) => return crate::cli::config_error(&e),
    };
    match reload(&source, &cfg).await {
        Ok(done) => {
            println!("{done}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("netservd reload: {e:#}");
            EXIT_FAILURE
        }
    }
}

async fn reload(source: &ConfigSource, cfg: &crate::config::Config) -> Result<String> {
    if let Some(path) = &cfg.daemon.pid_file {
        let pid = pidfile::read(path)?;
        if !pidfile::is_netservd(pid) {
            bail!(
                "pid_file {} names process {pid}, which is not a running netservd; is the daemon running?",
                path.display()
            );
        }
        hangup(pid)?;
        return Ok(format!(
            "sent SIGHUP to netservd process {pid} (from pid_file {})",
            path.display()
        ));
    }
    if let Some(admin) = cfg
        .admin
        .as_ref()
        .filter(|a| a.listen.port() != 0 && a.control)
    {
        let token = match &admin.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| {
                        format!(
                            "[admin] token_file {}: cannot read it, so cannot authenticate to the admin endpoint",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        post_reload(admin.listen, token.as_deref()).await?;
        return Ok(format!(
            "asked http://{}/reload (the [admin] endpoint) to reload",
            admin.listen
        ));
    }
    by_config_path(source)
}

/// Linux: SIGHUP to the one netservd process running `source`.
#[cfg(target_os = "linux")]
fn by_config_path(source: &ConfigSource) -> Result<String> {
    match proc_scan::running(source).as_slice() {
        [pid] => {
            hangup(*pid)?;
            Ok(format!(
                "sent SIGHUP to netservd process {pid} (the one running {source})"
            ))
        }
        [] => bail!("no running netservd uses {source}; start it with `netservd run --config ...`"),
        many => bail!(
            "{} netservd processes run {source} ({}); set [daemon] pid_file so reload can tell them apart",
            many.len(),
            many.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(not(target_os = "linux"))]
fn by_config_path(source: &ConfigSource) -> Result<String> {
    bail!(
        "cannot tell which daemon runs {source}: set [daemon] pid_file, or an [admin] listen with a fixed port"
    )
}

fn hangup(pid: u32) -> Result<()> {
    #[cfg(unix)]
    {
        let p = i32::try_from(pid).context("process id out of range")?;
        // SAFETY: kill(2) with SIGHUP on a process we checked is a netservd.
        if unsafe { libc::kill(p, libc::SIGHUP) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("send SIGHUP to process {pid}"));
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        bail!("signals need Unix; use the [admin] endpoint's POST /reload, or restart the service")
    }
}

/// `POST /reload` over a plain HTTP/1.1 connection; fails unless 2xx.
/// `POST /reload`, with the bearer token when `[admin] token_file` sets one.
async fn post_reload(addr: SocketAddr, token: Option<&str>) -> Result<()> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to the admin endpoint {addr}"))?;
        let req = format!(
            "POST /reload HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.take(64 * 1024).read_to_end(&mut resp).await?;
        anyhow::Ok(String::from_utf8_lossy(&resp).into_owned())
    };
    let resp = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("the admin endpoint did not answer within 5s")??;
    let status = resp.lines().next().unwrap_or("");
    if !status
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'))
    {
        let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
        bail!("POST http://{addr}/reload answered {status:?}: {body}");
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod proc_scan {
    //! Which netservd processes run a given config file, from /proc.

    use std::path::{Path, PathBuf};

    use crate::daemon::ConfigSource;

    /// Pids of netservd `run` processes whose config is `source`.
    pub fn running(source: &ConfigSource) -> Vec<u32> {
        let want = match source {
            ConfigSource::File(p) => std::fs::canonicalize(p).ok(),
            ConfigSource::Builtin => None,
        };
        let me = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&pid| pid != me && crate::pidfile::is_netservd(pid))
            .filter(|&pid| config_of(pid).is_some_and(|c| c == want))
            .collect();
        pids.sort_unstable();
        pids
    }

    /// `Some(file)` for a `netservd run` process (`Some(None)` when it runs
    /// the built-in config); `None` for other commands or unreadable ones.
    fn config_of(pid: u32) -> Option<Option<PathBuf>> {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a == "run") {
            return None;
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        let flag = args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix("--config=").map(str::to_string).or_else(|| {
                (a == "--config")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
        });
        let path = flag
            .or_else(|| env_of(pid, "NETSERVD_CONFIG"))
            .map(PathBuf::from);
        let path = match path {
            Some(p) => Some(p),
            None => Some(PathBuf::from("config.toml")).filter(|p| cwd.join(p).exists()),
        };
        Some(path.and_then(|p| std::fs::canonicalize(resolve(&cwd, &p)).ok()))
    }

    fn resolve(cwd: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        }
    }

    fn env_of(pid: u32, key: &str) -> Option<String> {
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        env.split(|b| *b == 0).find_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.strip_prefix(key)?.strip_prefix('=').map(str::to_string)
        })
    }
}
