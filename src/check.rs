//! `netservd check`: validate a config and show what it asks for; with
//! `--bind`, also bind every socket and show what the kernel applied
//! (getsockopt), next to what was requested.

use crate::cli::config_error;
use crate::daemon::ConfigSource;
use crate::services::Spec;
use crate::{EXIT_FAILURE, EXIT_OK};

/// Appends a line to the report; it is printed once at the end, so a closed
/// stdout (`| head`) cannot make a print panic halfway.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

pub fn run(source: ConfigSource, bind: bool) -> i32 {
    let mut out = String::new();
    let code = report(source, bind, &mut out);
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(out.as_bytes());
    code
}

fn report(source: ConfigSource, bind: bool, out: &mut String) -> i32 {
    let (cfg, _) = match source.load() {
        Ok(l) => l,
        Err(e) => return config_error(&e),
    };
    let specs = Spec::all(&cfg);
    let origin = match &source {
        ConfigSource::File(p) => p.display().to_string(),
        ConfigSource::Builtin => crate::config::SHIPPED_ORIGIN.to_string(),
    };
    outln!(out, "{origin}: ok, {} service(s)", specs.len());
    if let Some(a) = &cfg.admin {
        outln!(out, "admin http://{}", a.listen);
    }
    let mut failed = false;
    for spec in &specs {
        outln!(out, "{} {:?} {}", spec.kind(), spec.name(), describe(spec));
        if !bind {
            for (k, v) in socket_of(spec).requested() {
                outln!(out, "  socket.{k:<18} {v}");
            }
            continue;
        }
        match spec.bind() {
            Ok(b) => {
                outln!(out, "  bound {}", b.local_addr());
                outln!(out, "  {:<22} {:<24} effective", "option", "requested");
                for a in b.report() {
                    outln!(out, "  {:<22} {:<24} {}", a.key, a.requested, a.effective);
                }
                if cfg!(target_os = "linux")
                    && matches!(spec, Spec::TcpEcho(c) if c.socket.reuse_port.is_none())
                {
                    // README "Reload and shutdown": gap-free rebinds on the same address.
                    outln!(
                        out,
                        "  note: the daemon also sets reuse_port = true (Linux default, so a reload binds beside the old listener); check binds without it, so it never joins a running daemon's port"
                    );
                }
            }
            Err(e) => {
                outln!(out, "  bind failed: {e:#}");
                failed = true;
            }
        }
    }
    if failed { EXIT_FAILURE } else { EXIT_OK }
}

fn describe(spec: &Spec) -> String {
    match spec {
        Spec::TcpEcho(c) => format!(
            "tcp://{} length_field_bytes={} byte_order={:?} max_frame_bytes={}",
            c.listen,
            c.length_field_bytes,
            c.byte_order,
            c.frame_limit()
        ),
        Spec::UdpEcho(c) => format!(
            "udp://{} max_datagram_bytes={}",
            c.listen, c.max_datagram_bytes
        ),
        Spec::Broadcast(c) => format!(
            "to udp://{} every {:?} (jitter {:?})",
            c.destination, c.interval, c.jitter
        ),
        Spec::Multicast(c) => format!(
            "group {} port {} interface {}",
            c.group,
            c.port,
            c.interface.as_deref().unwrap_or("(kernel picks)")
        ),
    }
}

fn socket_of(spec: &Spec) -> &crate::config::SocketOptions {
    match spec {
        Spec::TcpEcho(c) => &c.socket,
        Spec::UdpEcho(c) => &c.socket,
        Spec::Broadcast(c) => &c.socket,
        Spec::Multicast(c) => &c.socket,
    }
}
