//! `netservd journal NAME [--since N] [--follow]`: prints the traffic journal
//! of one service (`GET /services/NAME/journal?since=N`), one line per
//! message: seq, time, direction, peer, group, size, printable text.
//! `--follow` polls with the last seq seen every `--interval` (bounded to
//! 50ms..10s) until Ctrl-C, or exits 1 with the reason when the admin
//! endpoint goes away. `--json` prints the entries as JSON lines instead.

use std::time::Duration;

use clap::Args as ClapArgs;

use super::fault::{Admin, AdminArgs};
use crate::{EXIT_FAILURE, EXIT_OK};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Service name, as in the config.
    pub name: String,
    /// Only entries after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// Keep polling for new entries until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Poll interval of --follow (50ms..10s).
    #[arg(long, default_value = "500ms", value_parser = crate::config::parse_duration)]
    pub interval: Duration,
    /// One JSON object per entry instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

pub async fn run(a: Args) -> i32 {
    let admin = match Admin::find(&a.admin) {
        Ok(admin) => admin,
        Err(e) => {
            eprintln!("netservd journal: {e:#}");
            return EXIT_FAILURE;
        }
    };
    let interval = a
        .interval
        .clamp(Duration::from_millis(50), Duration::from_secs(10));
    let mut since = a.since;
    loop {
        match poll(&admin, &a, since).await {
            Ok(last) => since = last.max(since),
            Err(e) => {
                eprintln!("netservd journal: {e:#}");
                return EXIT_FAILURE;
            }
        }
        if !a.follow {
            return EXIT_OK;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return EXIT_OK,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Prints the entries after `since`; returns the last seq printed (or `since`).
async fn poll(admin: &Admin, a: &Args, since: u64) -> anyhow::Result<u64> {
    let path = format!("/services/{}/journal?since={since}", a.name);
    let body = admin.call("GET", &path, None).await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    if v["capacity"] == 0 && since == a.since {
        eprintln!(
            "netservd journal: service {:?} keeps no journal; set journal = 256 in its table",
            a.name
        );
    }
    let mut last = since;
    for e in v["entries"].as_array().into_iter().flatten() {
        last = e["seq"].as_u64().unwrap_or(last);
        if a.json {
            println!("{e}");
        } else {
            println!(
                "{} {} {} {}{} {}B {}",
                e["seq"],
                e["time_ms"],
                e["direction"].as_str().unwrap_or(""),
                e["peer"].as_str().unwrap_or(""),
                e["group"]
                    .as_str()
                    .map(|g| format!(" group={g}"))
                    .unwrap_or_default(),
                e["size"],
                e["text"].as_str().unwrap_or("")
            );
        }
    }
    Ok(last)
}
