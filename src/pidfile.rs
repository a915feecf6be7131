//! `[daemon] pid_file`: the daemon writes its process id there at start and
//! removes the file at exit (only if it still holds its own id); `netservd
//! reload` reads it back and checks that the process is a live netservd
//! before signalling it, so a stale file never makes it signal a stranger.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The daemon's pid file; removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's id to `path` (replacing a stale file).
    pub fn create(path: &Path) -> Result<PidFile> {
        let pid = std::process::id();
        if let Ok(other) = read(path)
            && other != pid
            && is_netservd(other)
        {
            bail!(
                "[daemon] pid_file {} names netservd process {other}, which is still running; stop it or give this daemon another pid_file",
                path.display()
            );
        }
        std::fs::write(path, format!("{pid}\n")).with_context(|| {
            format!(
                "[daemon] pid_file: cannot write {}; create its directory or pick a writable path",
                path.display()
            )
        })?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path).is_ok_and(|p| p == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The process id in the file at `path`.
pub fn read(path: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read pid_file {}", path.display()))?;
    text.trim().parse().with_context(|| {
        format!(
            "pid_file {} holds {:?}, not a process id",
            path.display(),
            text.trim()
        )
    })
}

/// Whether `pid` is a live process running the netservd binary (Linux:
/// /proc/PID/exe; elsewhere: whether it is alive at all).
pub fn is_netservd(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
            exe.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("netservd"))
        })
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        // SAFETY: signal 0 only checks that the process exists.
        i32::try_from(pid).is_ok_and(|p| unsafe { libc::kill(p, 0) } == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}
