//! Resource probes for hardening tests (Linux): lower a running daemon's
//! descriptor limit with prlimit(2), and read its CPU time, resident memory
//! and open descriptors from /proc, so tests can hold the daemon to numbers.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

/// Sets RLIMIT_NOFILE (soft and hard) of process `pid`; we are its parent and root.
pub fn set_nofile(pid: i32, limit: u64) {
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit(2) with a valid struct and no old-limit out pointer.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(
        rc,
        0,
        "prlimit(RLIMIT_NOFILE={limit}) on pid {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// User + system CPU time of `pid` so far (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name (field 2) may hold spaces; fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat has a comm field") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Share of one CPU that `pid` used over `window`, in percent.
pub fn cpu_percent(pid: i32, window: Duration) -> f64 {
    let (t0, c0) = (Instant::now(), cpu_time(pid));
    // The measuring window itself.
    std::thread::sleep(window);
    let (t1, c1) = (Instant::now(), cpu_time(pid));
    (c1 - c0).as_secs_f64() * 100.0 / (t1 - t0).as_secs_f64()
}

/// Resident memory of `pid` in KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: i32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Open descriptors of `pid`.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Polls `probe` until `ok` holds or `timeout` passes; returns the last value.
pub fn settle<T: Copy>(timeout: Duration, probe: impl Fn() -> T, ok: impl Fn(T) -> bool) -> T {
    let end = Instant::now() + timeout;
    loop {
        let v = probe();
        if ok(v) || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    }
}
