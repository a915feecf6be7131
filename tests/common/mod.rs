//! Shared harness for integration tests: starts the real `netservd` binary on
//! a config written to a temp dir (services on port 0), reads the bound
//! addresses from the `ready` event of its JSON logs, and keeps every log
//! line so a test can wait for one and so every test can check that the
//! daemon logged no panic and no unexpected ERROR.
#![allow(dead_code)]

pub mod counters;
pub mod groups;
pub mod limits;
pub mod sources;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// TCP and UDP echo on free loopback ports, with the admin endpoint.
pub const ECHO_WITH_ADMIN: &str = r#"
[daemon]
shutdown_timeout = "5s"
watch_config = false

[admin]
listen = "127.0.0.1:0"

[[tcp_echo]]
name = "echo"
listen = "127.0.0.1:0"

[[udp_echo]]
name = "echo-udp"
listen = "127.0.0.1:0"
"#;

/// Every network wait in tests is bounded by this unless a test says otherwise.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netservd"))
}

pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// Service name -> URL from the `ready` event (e.g. `tcp://127.0.0.1:41234`).
    pub urls: HashMap<String, String>,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    /// The thread reading stderr into `logs`; it ends at EOF, when the daemon
    /// exits, and is joined then so that every line it wrote is in `logs`.
    reader: Option<std::thread::JoinHandle<()>>,
    /// ERROR messages (substrings) this test provokes on purpose; any other
    /// ERROR or a panic fails the test when the daemon is dropped.
    pub expected_errors: Vec<String>,
}

impl Daemon {
    /// Starts `netservd run` on `config` and waits for `ready`. Panics (with
    /// the daemon's stderr) if it exits or does not become ready in time.
    pub fn start(config: &str) -> Daemon {
        Self::start_with(config, &[])
    }

    /// Like [`start`], with extra environment variables.
    pub fn start_with(config: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_cmd(config, env, |_| {})
    }

    /// Like [`start_with`], letting `prepare` adjust the command before it is
    /// spawned (e.g. a `pre_exec` that sets resource limits).
    pub fn start_cmd(
        config: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(["--log-format", "json", "run", "--config"])
            .arg(&config_path);
        cmd.env("RUST_LOG", "info").envs(env.iter().copied());
        prepare(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn netservd");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "raw": line }));
                sink.lock().unwrap().push(v);
            }
        });
        let mut d = Daemon {
            child,
            dir,
            config_path,
            urls: HashMap::new(),
            logs,
            reader: Some(reader),
            expected_errors: Vec::new(),
        };
        let ready = d
            .wait_log(|l| l["message"] == "ready", WAIT)
            .unwrap_or_else(|| {
                let _ = d.child.kill();
                let _ = d.child.wait();
                d.join_reader();
                panic!("daemon did not become ready; logs:\n{}", d.dump())
            });
        d.urls = services_of(&ready["services"]);
        d
    }

    /// The bound address of service `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let url = self
            .urls
            .get(name)
            .unwrap_or_else(|| panic!("no service {name:?} in ready event: {:?}", self.urls));
        url.split("://").nth(1).unwrap().parse().unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    #[cfg(unix)]
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.join_reader();
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20)); // poll interval
        }
        None
    }

    /// Waits for the log reader to reach EOF (the daemon has exited), so every
    /// line the daemon wrote is in the logs.
    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log line matching `pred` (looking at every line so far).
    pub fn wait_log(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self.logs.lock().unwrap().iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
    }

    /// Waits until at least `n` log lines match `pred`.
    pub fn wait_log_count(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
        n: usize,
        timeout: Duration,
    ) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.count_logs(&pred) >= n {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2)); // poll interval
        }
    }

    /// Number of log lines matching `pred`.
    pub fn count_logs(&self, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.logs.lock().unwrap().iter().filter(|l| pred(l)).count()
    }

    /// All logs, one per line, for failure messages.
    pub fn dump(&self) -> String {
        self.logs()
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Declares an ERROR this test provokes on purpose (a substring of it).
    pub fn expect_error(&mut self, substring: &str) {
        self.expected_errors.push(substring.to_string());
    }

    /// Fails if the daemon logged a panic or an ERROR whose message is not
    /// one of `expected` or of [`Daemon::expected_errors`] (substrings).
    pub fn assert_clean(&self, expected: &[&str]) {
        let expected: Vec<&str> = expected
            .iter()
            .copied()
            .chain(self.expected_errors.iter().map(String::as_str))
            .collect();
        for l in self.logs() {
            let text = l.to_string();
            assert!(
                !text.contains("panicked"),
                "daemon panicked:\n{}",
                self.dump()
            );
            if l["level"] == "ERROR" {
                let msg = l["message"].as_str().unwrap_or("");
                assert!(
                    expected.iter().any(|e| msg.contains(e) || text.contains(e)),
                    "unexpected ERROR: {text}\nall logs:\n{}",
                    self.dump()
                );
            }
        }
    }

    /// Rewrites the config file in place (atomic rename, like editors do).
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.path().join(".config.toml.tmp");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every test fails on a daemon panic or an unexpected ERROR, even if it never asked.
        if !std::thread::panicking() {
            self.join_reader();
            self.assert_clean(&[]);
        }
    }
}

/// The `ready` event's `services`: an array of `{name, url}` (or, from a
/// build before that, the `a=tcp://... b=udp://...` text) -> name -> URL.
pub fn services_of(v: &serde_json::Value) -> HashMap<String, String> {
    match v.as_array() {
        Some(items) => items
            .iter()
            .filter_map(|s| Some((s["name"].as_str()?.into(), s["url"].as_str()?.into())))
            .collect(),
        None => parse_services(v.as_str().unwrap_or("")),
    }
}

/// `a=tcp://1.2.3.4:5 b=udp://...` -> map.
pub fn parse_services(s: &str) -> HashMap<String, String> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `netservd ARGS...` to completion; returns (exit code, stdout, stderr).
pub fn netservd(args: &[&str], cwd: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("NETSERVD_CONFIG")
        .stdin(Stdio::null());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("run netservd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `config` to a temp file and runs `netservd check --config FILE [extra]`.
pub fn check(config: &str, extra: &[&str]) -> (i32, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let p = path.to_str().unwrap();
    let mut args = vec!["check", "--config", p];
    args.extend_from_slice(extra);
    let (code, out, err) = netservd(&args, None);
    (code, out, err, dir)
}

/// One frame: `width`-byte length (big or little endian) + payload.
pub fn frame(width: usize, big: bool, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u64;
    let mut out = if big {
        len.to_be_bytes()[8 - width..].to_vec()
    } else {
        len.to_le_bytes()[..width].to_vec()
    };
    out.extend_from_slice(payload);
    out
}

/// One 4-byte big-endian frame to a TCP echo and back, byte-identical.
pub fn tcp_round_trip(addr: SocketAddr, payload: &[u8]) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    echo_on(&mut s, payload);
}

/// One 4-byte big-endian frame and its echo on an open connection: afterwards
/// the daemon has certainly accepted it and is serving it (the readiness
/// signal for tests that then go on to misbehave on that connection).
pub fn echo_on(s: &mut std::net::TcpStream, payload: &[u8]) {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(WAIT)).unwrap();
    let f = frame(4, true, payload);
    s.write_all(&f).unwrap();
    let mut back = vec![0; f.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, f);
}
