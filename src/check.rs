//! `netservd check`: validate a config and show what it asks for; with
//! `--bind`, also bind every socket and show what the kernel applied
//! (getsockopt), next to what was requested. `--format json` prints one
//! object instead (`config`, `ok`, `errors`, `warnings`, `services`), `-q`
//! prints nothing for a valid config, `--print` prints the effective config
//! (`effective.rs`).
//!
//! Flow: load (config errors) -> host checks (`hostcheck`) -> one entry per
//! service (bound, with `--bind`) -> rendered as text or JSON at the end, so a
//! closed stdout (`| head`) cannot make a print panic halfway.

use std::path::PathBuf;

use serde::Serialize;

use crate::cli::config_error;
use crate::config::{Config, ConfigError};
use crate::daemon::ConfigSource;
use crate::hostcheck::{Severity, host_issues};
use crate::services::Spec;
use crate::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Config file; default $NETSERVD_CONFIG, else ./config.toml, else the built-in shipped config.
    #[arg(long, env = "NETSERVD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Also create and bind every socket and show the options the kernel applied.
    #[arg(long)]
    pub bind: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print nothing when the config is valid (errors still go to stderr).
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the effective config as TOML: every default filled in, marked `# default`.
    #[arg(long)]
    pub print: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    Text,
    /// One JSON object on stdout, errors included.
    Json,
}

/// What `check --format json` prints.
#[derive(Debug, Default, Serialize)]
struct Report {
    config: String,
    ok: bool,
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
    admin: Option<String>,
    services: Vec<Service>,
}

/// One error or warning; `line` and `col` are absent when it has no place.
#[derive(Debug, Serialize)]
struct Finding {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    col: Option<usize>,
    message: String,
}

#[derive(Debug, Serialize)]
struct Service {
    kind: &'static str,
    name: String,
    /// What it does, as one line (the text output's).
    summary: String,
    /// Requested socket options (without `--bind`) or requested and effective (with it).
    socket: Vec<SocketOption>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bound: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind_error: Option<String>,
    /// Remarks on what was bound (printed as `note:` lines after the options).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    /// The file's `[*.faults]` table, as `GET /services/NAME/faults` shows it; absent when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    faults: Option<serde_json::Value>,
    /// The file's `journal` size in entries; absent when 0 (off).
    #[serde(skip_serializing_if = "Option::is_none")]
    journal: Option<usize>,
}

#[derive(Debug, Serialize)]
struct SocketOption {
    key: String,
    requested: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective: Option<String>,
}

pub fn run(source: ConfigSource, a: &Args) -> i32 {
    let (cfg, text) = match source.load() {
        Ok(l) => l,
        Err(e) if a.format == Format::Json => return print_json(&failed(&e)),
        Err(e) => return config_error(&e),
    };
    let mut report = Report {
        config: source.to_string(),
        ..Report::default()
    };
    for (severity, at, message) in placed(&cfg, &text, a.bind) {
        let f = Finding {
            line: at.map(|p| p.0),
            col: at.map(|p| p.1),
            message,
        };
        match severity {
            Severity::Error => report.errors.push(f),
            Severity::Warning => report.warnings.push(f),
        }
    }
    report.ok = report.errors.is_empty();
    let code = if !report.ok {
        EXIT_CONFIG
    } else {
        report.admin = cfg.admin.as_ref().map(|a| format!("http://{}", a.listen));
        report.services = Spec::all(&cfg)
            .iter()
            .map(|s| service(s, a.bind, cfg.daemon.workers))
            .collect();
        if report.services.iter().any(|s| s.bind_error.is_some()) {
            EXIT_FAILURE
        } else {
            EXIT_OK
        }
    };
    match a.format {
        Format::Json => {
            print_json(&report);
        }
        // With --print the effective config is the whole output (redirectable to a file).
        Format::Text => print_text(&report, a.quiet || a.print),
    }
    if a.print && report.ok {
        out(&crate::config::effective(&cfg, &text));
    }
    code
}

/// The JSON report of a config that did not load.
fn failed(e: &ConfigError) -> Report {
    Report {
        config: e.origin.clone(),
        errors: e
            .diagnostics
            .iter()
            .map(|d| Finding {
                line: (d.line > 0).then_some(d.line),
                col: (d.line > 0).then_some(d.col),
                message: d.message.clone(),
            })
            .collect(),
        ..Report::default()
    }
}

fn print_json(r: &Report) -> i32 {
    out(&format!(
        "{}\n",
        serde_json::to_string(r).unwrap_or_default()
    ));
    if r.ok { EXIT_OK } else { EXIT_CONFIG }
}

/// Writes to stdout once; a closed pipe is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// The report as lines: findings on stderr, the listing on stdout (not with `-q`).
fn print_text(r: &Report, quiet: bool) {
    for f in &r.errors {
        eprintln!("{}{}: {}", r.config, at(f), f.message);
    }
    if !r.errors.is_empty() {
        eprintln!("{} error(s) in {}", r.errors.len(), r.config);
        return;
    }
    if quiet {
        return;
    }
    for f in &r.warnings {
        eprintln!("{}{}: warning: {}", r.config, at(f), f.message);
    }
    let mut o = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(o, "{}: ok, {} service(s)", r.config, r.services.len());
    if let Some(a) = &r.admin {
        let _ = writeln!(o, "admin {a}");
    }
    for s in &r.services {
        let _ = writeln!(o, "{} {:?} {}", s.kind, s.name, s.summary);
        if let Some(f) = &s.faults {
            let _ = writeln!(o, "  faults {f}");
        }
        if let Some(n) = s.journal {
            let _ = writeln!(o, "  journal {n} entries");
        }
        if let Some(b) = &s.bound {
            let _ = writeln!(o, "  bound {b}");
            let _ = writeln!(o, "  {:<22} {:<24} effective", "option", "requested");
            for x in &s.socket {
                let eff = x.effective.as_deref().unwrap_or("");
                let _ = writeln!(o, "  {:<22} {:<24} {eff}", x.key, x.requested);
            }
            for n in &s.notes {
                let _ = writeln!(o, "  note: {n}");
            }
        } else if let Some(e) = &s.bind_error {
            let _ = writeln!(o, "  bind failed: {e}");
        } else {
            for x in &s.socket {
                let _ = writeln!(o, "  socket.{:<18} {}", x.key, x.requested);
            }
        }
    }
    out(&o);
}

fn at(f: &Finding) -> String {
    match (f.line, f.col) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        _ => String::new(),
    }
}

/// One service's entry; with `bind`, its socket is bound and read back.
fn service(spec: &Spec, bind: bool, workers: usize) -> Service {
    let (faults, journal) = spec.fixture();
    let mut s = Service {
        faults: (!faults.is_empty()).then(|| faults.to_json()),
        journal: (journal > 0).then_some(journal),
        kind: spec.kind(),
        name: spec.name().to_string(),
        summary: spec.summary(),
        socket: Vec::new(),
        bound: None,
        bind_error: None,
        notes: Vec::new(),
    };
    if !bind {
        s.socket = spec
            .socket()
            .requested()
            .into_iter()
            .map(|(k, v)| SocketOption {
                key: k.to_string(),
                requested: v,
                effective: None,
            })
            .collect();
        return s;
    }
    match spec.bind() {
        Ok(b) => {
            s.bound = Some(b.local_addr().to_string());
            s.socket = b
                .report()
                .into_iter()
                .map(|a| SocketOption {
                    key: a.key.to_string(),
                    requested: a.requested,
                    effective: Some(a.effective),
                })
                .collect();
            s.notes.extend(spec.notes().into_iter().map(str::to_string));
        }
        Err(e) => s.bind_error = Some(format!("{e:#}")),
    }
    s.notes.extend(socket_set_note(spec, workers));
    s
}

/// README "Socket options": what `run` binds for a udp_echo beside the one
/// socket check binds (`net::reuseport_udp`).
fn socket_set_note(spec: &Spec, workers: usize) -> Option<String> {
    let n = spec.sockets(workers);
    (n > 1).then(|| {
        format!(
            "the daemon binds {n} sockets here ([daemon] workers), with reuse_port = true and a guard program \
             (SO_ATTACH_REUSEPORT_CBPF, source port % {n}) so no other socket that joins the port receives a datagram; \
             the address must be free first, as with one socket; workers is read at start: changing it needs a restart"
        )
    })
}

/// A host finding placed in the file: (severity, (line, col), message).
type Placed = (Severity, Option<(usize, usize)>, String);

/// Host findings placed in the file.
fn placed(cfg: &Config, text: &str, bind: bool) -> Vec<Placed> {
    host_issues(cfg, bind)
        .into_iter()
        .map(|h| {
            let at = crate::config::locate(text, h.kind, h.index, &h.keys);
            (h.severity, at, h.message)
        })
        .collect()
}

/// What [`host_issues`] found, each placed in the file as
/// `PATH:LINE:COL: message`.
pub fn placed_host_issues(
    source: &ConfigSource,
    cfg: &crate::config::Config,
    text: &str,
    bind: bool,
) -> Vec<(Severity, String)> {
    placed(cfg, text, bind)
        .into_iter()
        .map(|(severity, at, message)| {
            let at = at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default();
            (severity, format!("{source}{at}: {message}"))
        })
        .collect()
}
