//! Platform-specific options meet `check` on every platform: on Linux they
//! are accepted; elsewhere each is a config error naming the option and the
//! platform family, never silently ignored. The same tests run natively and,
//! built for windows-gnu, under Wine (`.ci/windows.sh`), so both branches of
//! the `cfg!` table in `config/validate.rs` are exercised.

mod common;

use common::*;

/// (key, TOML line, family named in the error).
const OPTIONS: &[(&str, &str, &str)] = &[
    ("reuse_port", "reuse_port = true", "Unix"),
    ("recv_low_water", "recv_low_water = 1", "Unix"),
    ("dont_route", "dont_route = false", "Unix"),
    ("mss", "mss = 1400", "Unix"),
    ("bind_device", "bind_device = \"lo\"", "Linux"),
    ("fastopen", "fastopen = 16", "Linux"),
    ("priority", "priority = 1", "Linux"),
];

fn config(line: &str) -> String {
    format!("[[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\n[tcp_echo.socket]\n{line}\n")
}

fn supported(family: &str) -> bool {
    match family {
        "Unix" => cfg!(unix),
        "Linux" => cfg!(any(target_os = "linux", target_os = "android")),
        _ => unreachable!(),
    }
}

#[test]
fn platform_options_are_accepted_or_rejected_by_name() {
    for (key, line, family) in OPTIONS {
        let r = netservd::config::parse(&config(line), "test.toml");
        if supported(family) {
            assert!(
                r.is_ok(),
                "{key} should be accepted on {}: {:?}",
                std::env::consts::OS,
                r.err().map(|e| e.to_string())
            );
        } else {
            let e = r.expect_err(key).to_string();
            let want = format!(
                "socket.{key} is {family}-only and not available on {}; remove it",
                std::env::consts::OS
            );
            assert!(e.contains(&want), "{key}: got {e}");
            assert!(
                e.contains("test.toml:5:"),
                "{key}: error should point at the line: {e}"
            );
        }
    }
}

#[test]
fn check_reports_every_unsupported_option_at_once() {
    let all: Vec<&str> = OPTIONS.iter().map(|(_, l, _)| *l).collect();
    let (code, out, err, _dir) = check(&config(&all.join("\n")), &[]);
    let rejected: Vec<_> = OPTIONS.iter().filter(|(_, _, f)| !supported(f)).collect();
    if rejected.is_empty() {
        assert_eq!(code, 0, "{out}{err}");
    } else {
        assert_eq!(code, 2, "{out}{err}");
        for (key, _, _) in &rejected {
            assert!(
                err.contains(&format!("socket.{key} is")),
                "{key} not reported:\n{err}"
            );
        }
        assert!(
            err.contains(&format!("{} error(s)", rejected.len())),
            "{err}"
        );
    }
}
