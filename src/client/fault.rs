//! `netservd fault NAME [--latency 50ms --loss 0.2 ... | --clear]`: shows,
//! sets or clears the live faults of one service through the admin endpoint
//! (`GET`/`PUT`/`DELETE /services/NAME/faults`). The flags are the keys of
//! the `[*.faults]` tables; a PUT replaces every fault, so the flags given
//! are the whole new set. The admin address and token come from `--admin` /
//! `--token-file`, else from the config's `[admin]` table (as `netservd
//! reload` finds them). Prints the faults now in force as JSON.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{EXIT_FAILURE, EXIT_OK};

/// Where the admin endpoint is and how to authenticate; shared with `journal`.
#[derive(Debug, Clone, ClapArgs)]
pub struct AdminArgs {
    /// Admin endpoint, HOST:PORT (a name such as a compose service resolves); default: [admin] listen of the config.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin: Option<String>,
    /// File with the bearer token; default: [admin] token_file of the config.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Config whose [admin] table names the endpoint (when --admin is not given).
    #[arg(long, env = "NETSERVD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Service name, as in the config.
    pub name: String,
    /// Remove every fault of the service.
    #[arg(long, conflicts_with_all = ["latency", "loss", "refuse", "pause"])]
    pub clear: bool,
    /// tcp/udp: delay before each echo, e.g. 50ms.
    #[arg(long)]
    pub latency: Option<String>,
    /// tcp/udp: each delay moves by up to this much either way.
    #[arg(long)]
    pub jitter: Option<String>,
    /// tcp: echo paced to this many bytes per second.
    #[arg(long)]
    pub bandwidth_bytes_per_s: Option<u64>,
    /// tcp: echo written in pieces of this many bytes.
    #[arg(long)]
    pub slice_bytes: Option<u64>,
    /// tcp: pause between pieces.
    #[arg(long)]
    pub slice_delay: Option<String>,
    /// tcp: graceful close after N echoed frames.
    #[arg(long)]
    pub close_after_frames: Option<u64>,
    /// tcp: reset when the frame after N arrives.
    #[arg(long)]
    pub reset_after_frames: Option<u64>,
    /// tcp: stop reading and echoing after N frames (connection stays open).
    #[arg(long)]
    pub stall_after_frames: Option<u64>,
    /// tcp: probability that a new connection is reset at once.
    #[arg(long)]
    pub refuse: Option<f64>,
    /// tcp/udp: probability that one byte of an echo is flipped.
    #[arg(long)]
    pub corrupt: Option<f64>,
    /// udp/broadcast: probability that a reply (announcement) is not sent.
    #[arg(long)]
    pub loss: Option<f64>,
    /// udp: probability that a reply is sent twice.
    #[arg(long)]
    pub duplicate: Option<f64>,
    /// udp: probability that a reply is held and sent after the next one.
    #[arg(long)]
    pub reorder: Option<f64>,
    /// udp: replies cut to at most this many bytes.
    #[arg(long)]
    pub truncate_to_bytes: Option<u64>,
    /// broadcast: up to this much extra delay per interval.
    #[arg(long)]
    pub jitter_extra: Option<String>,
    /// broadcast: stop announcing (true) or go on (false).
    #[arg(long)]
    pub pause: Option<bool>,
    /// Seed of every random choice (reproducible faults).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

impl Args {
    /// The JSON body of the PUT: the flags given, under their config keys.
    fn body(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        let s = |v: &Option<String>| v.clone().map(Value::from);
        let n = |v: Option<u64>| v.map(Value::from);
        let f = |v: Option<f64>| v.map(Value::from);
        put("latency", s(&self.latency));
        put("jitter", s(&self.jitter));
        put("bandwidth_bytes_per_s", n(self.bandwidth_bytes_per_s));
        put("slice_bytes", n(self.slice_bytes));
        put("slice_delay", s(&self.slice_delay));
        put("close_after_frames", n(self.close_after_frames));
        put("reset_after_frames", n(self.reset_after_frames));
        put("stall_after_frames", n(self.stall_after_frames));
        put("refuse", f(self.refuse));
        put("corrupt", f(self.corrupt));
        put("loss", f(self.loss));
        put("duplicate", f(self.duplicate));
        put("reorder", f(self.reorder));
        put("truncate_to_bytes", n(self.truncate_to_bytes));
        put("jitter_extra", s(&self.jitter_extra));
        put("pause", self.pause.map(Value::from));
        put("seed", n(self.seed));
        m
    }
}

pub async fn run(a: Args) -> i32 {
    let r = async {
        let admin = Admin::find(&a.admin)?;
        let path = format!("/services/{}/faults", a.name);
        let body = a.body();
        let (method, body) = if a.clear {
            ("DELETE", None)
        } else if body.is_empty() {
            ("GET", None)
        } else {
            ("PUT", Some(serde_json::Value::Object(body).to_string()))
        };
        admin.call(method, &path, body.as_deref()).await
    };
    match r.await {
        Ok(body) => {
            println!("{}", body.trim_end());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("netservd fault: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// The admin endpoint a client command talks to.
pub struct Admin {
    /// HOST:PORT, resolved at each connect (a container's address may change).
    pub addr: String,
    token: Option<String>,
}

impl Admin {
    /// From the flags, else from the config's `[admin]` table.
    pub fn find(a: &AdminArgs) -> Result<Admin> {
        let cfg = match (&a.admin, a.token_file.is_some()) {
            (Some(_), true) => None,
            _ => {
                let source = crate::cli::config_source(a.config.clone());
                match source.load() {
                    Ok((cfg, _)) => cfg.admin,
                    Err(e) if a.admin.is_none() => {
                        bail!("no --admin given and the config cannot tell: {e}")
                    }
                    Err(_) => None,
                }
            }
        };
        let addr = match (&a.admin, &cfg) {
            (Some(addr), _) => addr.clone(),
            (None, Some(c)) if c.listen.port() != 0 => c.listen.to_string(),
            _ => bail!(
                "no admin endpoint: pass --admin ADDR, or use a config with [admin] listen on a fixed port"
            ),
        };
        let token_file = a
            .token_file
            .clone()
            .or_else(|| cfg.and_then(|c| c.token_file));
        let token = match token_file {
            Some(p) => Some(
                std::fs::read_to_string(&p)
                    .with_context(|| format!("read token file {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Admin { addr, token })
    }

    /// One request over a fresh HTTP/1.1 connection; the body of a 2xx
    /// answer, else an error quoting the status and the daemon's message.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<String> {
        let addr = self.addr.as_str();
        let auth = self
            .token
            .as_ref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let body = body.unwrap_or("");
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| {
                    format!("connect to the admin endpoint {addr} (is the daemon running?)")
                })?;
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await?;
            let mut resp = Vec::new();
            s.take(16 << 20).read_to_end(&mut resp).await?;
            anyhow::Ok(String::from_utf8_lossy(&resp).into_owned())
        };
        let resp = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .with_context(|| format!("the admin endpoint {addr} did not answer within 5s"))??;
        let status = resp.lines().next().unwrap_or("").to_string();
        let body = resp
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        if !status
            .split_whitespace()
            .nth(1)
            .is_some_and(|c| c.starts_with('2'))
        {
            bail!(
                "{method} http://{addr}{path} answered {status:?}: {}",
                body.trim()
            );
        }
        Ok(body)
    }
}
