//! The command line (`../shared/DESIGN.md`, "Command line"): `run`, `check`, `reload`, the client tools,
//! and `completions`/`man` (generated from this very definition, so they
//! never drift from it). Each subcommand is one call into the library; this
//! file only picks the config source, builds the runtime and maps results to
//! exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use crate::config::ConfigError;
use crate::daemon::{self, ConfigSource};
use crate::hostcheck::Severity;
use crate::logging::{ColorChoice, LogFormat};
use crate::pidfile::PidFile;
use crate::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, client};

/// `0.1.0 (git 1a2b3c4)` when built from a git checkout (build.rs), else the crate version.
pub const VERSION: &str = match option_env!("NETSERVD_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

#[derive(Debug, Parser)]
#[command(
    name = "netservd",
    version = VERSION,
    about = "Config-driven network services: framed TCP echo, UDP echo, broadcast announcer, multicast listener"
)]
pub struct Cli {
    /// Log format on stderr; RUST_LOG filters (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Colour text logs: auto (on a terminal, unless NO_COLOR is set; CLICOLOR_FORCE forces it), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Run {
        /// Config file; default $NETSERVD_CONFIG, else ./config.toml, else the built-in shipped config.
        #[arg(long, env = "NETSERVD_CONFIG")]
        config: Option<PathBuf>,
        /// Windows: run under the Service Control Manager (`sc create netservd binPath= "...\\netservd.exe run --windows-service --config ..."`);
        /// the service's Stop and system shutdown drain like SIGTERM.
        #[cfg(windows)]
        #[arg(long)]
        windows_service: bool,
    },
    /// Validate a config without serving; exit 0 valid, 2 invalid.
    Check(crate::check::Args),
    /// Make the daemon running this config reload it (its [daemon] pid_file, its admin
    /// endpoint's POST /reload, or on Linux the one process running with this --config).
    Reload {
        #[arg(long, env = "NETSERVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// One end-to-end check of a service (for health checks): exit 0 healthy, 1 not.
    Probe(client::probe::Args),
    /// Send frames or datagrams to a unicast, broadcast or multicast address and print replies.
    Send(client::send::Args),
    /// Print datagrams arriving on a port or a multicast group.
    Listen(client::listen::Args),
    /// Load generator: framed TCP or UDP echo, with throughput and latency percentiles.
    Bench(client::bench::Args),
    /// Show, set or clear the live faults of a service over the admin endpoint
    /// (`netservd fault echo --latency 50ms`, `--clear`; no flags: show).
    Fault(Box<client::fault::Args>),
    /// Print a service's traffic journal (`--follow`: keep printing new entries).
    Journal(client::journal::Args),
    /// Print a shell completion script: `netservd completions bash > /etc/bash_completion.d/netservd`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `netservd man > /usr/local/share/man/man1/netservd.1`.
    Man,
}

impl std::fmt::Display for ConfigSource {
    /// The file as a path, or the built-in config's name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Builtin => f.write_str(crate::config::SHIPPED_ORIGIN),
        }
    }
}

/// Picks the config: explicit path (flag or $NETSERVD_CONFIG), else
/// ./config.toml, else the shipped one compiled in.
pub fn config_source(path: Option<PathBuf>) -> ConfigSource {
    match path {
        Some(p) => ConfigSource::File(p),
        None if std::path::Path::new("config.toml").exists() => {
            ConfigSource::File("config.toml".into())
        }
        None => ConfigSource::Builtin,
    }
}

pub fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Completions { shell } => {
            return generated(|out| {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(*shell, &mut cmd, "netservd", out);
                Ok(())
            });
        }
        Command::Man => {
            return generated(|out| {
                clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(out)
            });
        }
        _ => {}
    }
    #[cfg(windows)]
    if let Command::Run {
        config,
        windows_service: true,
    } = cli.command
    {
        // The dispatcher owns this thread; the service builds its own runtime.
        return ExitCode::from(crate::winservice::run(config_source(config)) as u8);
    }
    if let Command::Run { config, .. } = cli.command {
        return ExitCode::from(run_daemon(config_source(config)) as u8);
    }
    let Some(rt) = runtime(None) else {
        return ExitCode::from(EXIT_FAILURE as u8);
    };
    let code = rt.block_on(async move {
        match cli.command {
            Command::Run { .. } => unreachable!("handled above"),
            Command::Check(a) => crate::check::run(config_source(a.config.clone()), &a),
            Command::Reload { config } => client::reload::run(config_source(config)).await,
            Command::Completions { .. } | Command::Man => EXIT_OK,
            Command::Probe(a) => client::probe::run(a).await,
            Command::Send(a) => client::send::run(a).await,
            Command::Listen(a) => client::listen::run(a).await,
            Command::Bench(a) => client::bench::run(a).await,
            Command::Fault(a) => client::fault::run(*a).await,
            Command::Journal(a) => client::journal::run(a).await,
        }
    });
    // Connections still draining in blocking threads (lingering closes) must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code as u8)
}

/// Writes what `write` generates to stdout; a closed pipe is not an error.
fn generated(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> ExitCode {
    use std::io::Write as _;
    let mut out = Vec::new();
    let code = match write(&mut out).and_then(|()| std::io::stdout().write_all(&out)) {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("netservd: cannot write to stdout: {e}");
            EXIT_FAILURE
        }
    };
    ExitCode::from(code as u8)
}

/// The multi-threaded runtime; `workers` threads when given (`[daemon]
/// workers`), else tokio's default (one per CPU). `None` if it cannot start (logged).
fn runtime(workers: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    match b.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            error!(error = %e, workers, "cannot start the async runtime");
            None
        }
    }
}

/// `netservd run`: the config is loaded before the runtime is built, since
/// its `[daemon] workers` sizes that runtime (and the UDP socket sets).
pub(crate) fn run_daemon(source: ConfigSource) -> i32 {
    if matches!(source, ConfigSource::Builtin) {
        info!(
            "no --config, $NETSERVD_CONFIG or ./config.toml: running the built-in shipped config (nothing to watch; SIGHUP reloads it unchanged)"
        );
    }
    let loaded = match source.load() {
        Ok(l) => l,
        Err(e) => return config_error(&e),
    };
    if host_refuses(&source, &loaded.0, &loaded.1) {
        return EXIT_CONFIG;
    }
    let Some(rt) = runtime(Some(loaded.0.daemon.workers)) else {
        return EXIT_FAILURE;
    };
    let code = rt.block_on(serve(source, loaded));
    // As for the other commands: lingering closes must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// Runs the loaded config until shutdown; the pid file lives as long as this.
async fn serve(source: ConfigSource, loaded: (crate::config::Config, String)) -> i32 {
    let _pid_file = match loaded.0.daemon.pid_file.as_deref().map(PidFile::create) {
        Some(Err(e)) => {
            error!(error = %format!("{e:#}"), "cannot start");
            return EXIT_FAILURE;
        }
        Some(Ok(f)) => Some(f),
        None => None,
    };
    match daemon::run(source, loaded).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            error!(error = %format!("{e:#}"), "cannot start");
            EXIT_FAILURE
        }
    }
}

/// What `check` refuses on this host, `run` refuses too (printed like config
/// errors); warnings are logged.
fn host_refuses(source: &ConfigSource, cfg: &crate::config::Config, text: &str) -> bool {
    let mut refused = 0;
    for (severity, line) in crate::check::placed_host_issues(source, cfg, text, false) {
        match severity {
            Severity::Warning => warn!(issue = %line, "config warning"),
            Severity::Error => {
                eprintln!("{line}");
                refused += 1;
            }
        }
    }
    if refused > 0 {
        eprintln!("{refused} error(s) in {source}");
    }
    refused > 0
}

/// Prints every config error on stderr, one `PATH:LINE:COL: message` per line.
pub fn config_error(e: &ConfigError) -> i32 {
    eprintln!("{e}");
    eprintln!("{} error(s) in {}", e.diagnostics.len(), e.origin);
    EXIT_CONFIG
}
