//! The conveniences of the command line, against the real binary: `check
//! --format json`, `-q` and `--print`; `completions` and `man`; `--version`
//! with the commit; and `reload`, which signals exactly the daemon running a
//! config (through its pid_file, or on Linux by its --config), plus the admin
//! endpoint's `POST /reload`.

mod common;

use common::*;

const BAD: &str = "[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\nmax_connections = \"lots\"\n\
                   [[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\ncompat = \"sockperff\"\n";

#[test]
fn check_json_reports_errors_and_services() {
    let (code, out, err, dir) = check(BAD, &["--format", "json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.is_empty(), "JSON mode keeps stderr empty: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["config"],
        dir.path().join("config.toml").display().to_string()
    );
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["errors"],
        serde_json::json!([
            {"line": 4, "col": 19, "message": "tcp_echo \"e\": `max_connections` must be a whole number from 1 to 4294967295, without quotes; found \"lots\""},
            {"line": 8, "col": 10, "message": "udp_echo \"u\": `compat` must be `none` or `sockperf`; found \"sockperff\"; did you mean `sockperf`?"},
        ])
    );

    let (code, out, _, _dir) = check(
        "[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\n",
        &["--format", "json"],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["services"][0]["kind"], "tcp_echo");
    assert_eq!(v["services"][0]["name"], "e");
    assert_eq!(
        v["services"][0]["summary"],
        "tcp://127.0.0.1:0 length_field_bytes=4 byte_order=big max_frame_bytes=65536"
    );
    // A file that cannot be read: an error without a position.
    let (code, out, _) = netservd(
        &[
            "check",
            "--config",
            "/nonexistent/c.toml",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["errors"][0].get("line").is_none(), "{v}");
}

#[test]
fn check_quiet_prints_only_errors() {
    let (code, out, err, _dir) = check(
        "[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\n",
        &["-q"],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (code, out, err, _dir) = check(BAD, &["-q"]);
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert!(
        err.ends_with("2 error(s) in ") || err.contains("2 error(s) in "),
        "{err}"
    );
}

#[test]
fn check_print_shows_the_effective_config() {
    let cfg =
        "[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nrate_limit = { per_source = 10 }\n";
    let (code, out, err, dir) = check(cfg, &["--print"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "# Effective config: every key, with the defaults filled in (marked `# default`).\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "\n[daemon]\ndrain_timeout = \"30s\"  # default\nshutdown_timeout = \"5s\"  # default\nwatch_config = true  # default\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "blocked_source_ports = [7, 9, 13, 17, 19, 37, 53, 123, 161, 1900, 11211]  # default\n"
        ),
        "{out}"
    );
    assert!(out.contains("\nname = \"u\"\n"), "{out}");
    assert!(
        out.contains("rate_limit = { max_sources = 4096, per_source = 10 }\n"),
        "{out}"
    );
    // What it prints is itself a valid config.
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &out).unwrap();
    let (code, _, err) = netservd(&["check", "--config", printed.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn completions_man_and_version() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let (code, out, err) = netservd(&["completions", shell], None);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("netservd"), "{shell}");
        assert!(out.contains("reload"), "{shell}: subcommands listed");
    }
    let (code, out, _) = netservd(&["man"], None);
    assert_eq!(code, 0);
    assert!(out.contains(".TH netservd 1"), "{out}");
    assert!(out.contains("completions"), "{out}");
    let (code, out, _) = netservd(&["--version"], None);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("netservd {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    // Built from a checkout: the commit is in it.
    if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists() {
        assert!(out.contains(" (git "), "{out}");
    }
}

#[cfg(unix)]
#[test]
fn reload_signals_the_daemon_named_by_its_pid_file() {
    let pid_dir = tempfile::tempdir().unwrap();
    let pid_file = pid_dir.path().join("netservd.pid");
    let mut d = Daemon::start(&format!(
        "[daemon]\nwatch_config = false\npid_file = \"{}\"\n[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\n",
        pid_file.display()
    ));
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", d.pid())
    );
    let cfg = d.config_path.to_str().unwrap().to_string();
    let (code, out, err) = netservd(&["reload", "--config", &cfg], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim_end(),
        format!(
            "sent SIGHUP to netservd process {} (from pid_file {})",
            d.pid(),
            pid_file.display()
        )
    );
    d.wait_log(
        |l| l["message"] == "reload applied" && l["trigger"] == "SIGHUP",
        WAIT,
    )
    .unwrap_or_else(|| panic!("no reload:\n{}", d.dump()));
    // A clean stop removes the file; a reload then says nobody runs it.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert!(!pid_file.exists(), "pid_file left behind");
    let (code, _, err) = netservd(&["reload", "--config", &cfg], None);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "netservd reload: cannot read pid_file {}",
            pid_file.display()
        )),
        "{err}"
    );
}

/// Without a pid_file: the one process whose `run --config` is this file.
#[cfg(target_os = "linux")]
#[test]
fn reload_finds_the_daemon_by_its_config_path() {
    let cfg =
        "[daemon]\nwatch_config = false\n[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\n";
    let d = Daemon::start(cfg);
    let other = Daemon::start(cfg); // a second daemon, on another file: never signalled
    let path = d.config_path.to_str().unwrap().to_string();
    let (code, out, err) = netservd(&["reload", "--config", &path], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim_end(),
        format!(
            "sent SIGHUP to netservd process {} (the one running {path})",
            d.pid()
        )
    );
    d.wait_log(|l| l["message"] == "reload applied", WAIT)
        .unwrap_or_else(|| panic!("no reload:\n{}", d.dump()));
    // The other daemon's logs never show a reload (it has had time: ours logged it).
    assert_eq!(other.count_logs(|l| l["message"] == "reload applied"), 0);
    // A file no daemon runs.
    let spare = tempfile::tempdir().unwrap();
    let lone = spare.path().join("config.toml");
    std::fs::write(&lone, cfg).unwrap();
    let (code, _, err) = netservd(&["reload", "--config", lone.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        format!(
            "netservd reload: no running netservd uses {}; start it with `netservd run --config ...`",
            lone.display()
        )
    );
}

#[cfg(unix)]
#[test]
fn admin_post_reload_reloads_only_with_control() {
    use std::io::{Read, Write};
    let post = |admin: std::net::SocketAddr| {
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(
            b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    // A write endpoint: refused unless [admin] control = true (DESIGN, "Limits and access").
    let d = Daemon::start(ECHO_WITH_ADMIN);
    let resp = post(common::counters::admin_addr(&d));
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("control = true"), "{resp}");
    drop(d);

    let d = Daemon::start(&ECHO_WITH_ADMIN.replace("[admin]\n", "[admin]\ncontrol = true\n"));
    let resp = post(common::counters::admin_addr(&d));
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert!(resp.ends_with("reload requested\n"), "{resp}");
    d.wait_log(
        |l| l["message"] == "reload applied" && l["trigger"] == "SIGHUP",
        WAIT,
    )
    .unwrap_or_else(|| panic!("no reload:\n{}", d.dump()));
    d.assert_clean(&[]);
}
