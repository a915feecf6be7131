//! What people and pipes read: text logs carry no colour codes unless asked
//! (`--color`, `NO_COLOR`, `CLICOLOR_FORCE`), no output shows Rust Debug text
//! (`File(`, `Some(`, `Big`/`Little`) or more than 3 decimals, and an invalid
//! `RUST_LOG` is an error that names it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::*;

/// Debug text that must never reach an operator.
const DEBUG_TEXT: [&str; 5] = ["File(", "Some(", "None", "Big", "Little"];

/// Starts `netservd [pre...] run --config FILE` with stderr piped (not a
/// terminal) and `env`, collects stderr up to the `ready` line, then kills it.
fn run_until_ready(config: &str, pre: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(bin())
        .args(pre)
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut text = String::new();
    loop {
        let line = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no ready line within {WAIT:?}; got:\n{text}")
        });
        text.push_str(&line);
        text.push('\n');
        if line.contains("ready") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn text_logs_have_no_colour_in_a_pipe() {
    let plain = run_until_ready(ECHO_WITH_ADMIN, &[], &[]);
    assert!(!plain.contains('\x1b'), "escape codes in a pipe:\n{plain}");
    assert!(
        plain.contains("config=") && plain.contains("config.toml"),
        "{plain}"
    );
    for bad in DEBUG_TEXT {
        assert!(!plain.contains(bad), "{bad} in:\n{plain}");
    }
    let forced = run_until_ready(ECHO_WITH_ADMIN, &[], &[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains("\x1b["), "CLICOLOR_FORCE=1 gives colour");
    let always = run_until_ready(
        ECHO_WITH_ADMIN,
        &["--color", "always"],
        &[("NO_COLOR", "1")],
    );
    assert!(always.contains("\x1b["), "--color always beats NO_COLOR");
    let never = run_until_ready(
        ECHO_WITH_ADMIN,
        &["--color", "never"],
        &[("CLICOLOR_FORCE", "1")],
    );
    assert!(
        !never.contains('\x1b'),
        "--color never beats CLICOLOR_FORCE"
    );
}

#[test]
fn check_output_uses_config_spelling() {
    // bind_device is Linux-only (elsewhere it is a config error of its own).
    let device = if cfg!(target_os = "linux") {
        "[tcp_echo.socket]\nbind_device = \"lo\"\n"
    } else {
        ""
    };
    let (code, out, err, _dir) = check(
        &format!(
            "[[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nbyte_order = \"little\"\n{device}\
             [[broadcast]]\nname = \"b\"\ndestination = \"127.255.255.255:7070\"\ninterval = \"1500ms\"\n"
        ),
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "tcp_echo \"echo\" tcp://127.0.0.1:0 length_field_bytes=4 byte_order=little max_frame_bytes=65536"
        ),
        "{out}"
    );
    if !device.is_empty() {
        assert!(out.contains("  socket.bind_device        lo\n"), "{out}");
    }
    assert!(
        out.contains("to udp://127.255.255.255:7070 every 1s 500ms (jitter 500ms)"),
        "{out}"
    );
    for bad in DEBUG_TEXT {
        assert!(!out.contains(bad), "{bad} in:\n{out}");
    }
}

#[test]
fn json_logs_round_numbers_to_3_decimals() {
    // A reload logs its duration in milliseconds.
    let d = Daemon::start(ECHO_WITH_ADMIN);
    #[cfg(unix)]
    {
        d.signal(libc::SIGHUP);
        let applied = d
            .wait_log(|l| l["message"] == "reload applied", WAIT)
            .unwrap_or_else(|| panic!("no reload:\n{}", d.dump()));
        let ms = applied["elapsed_ms"].as_f64().unwrap();
        assert_eq!((ms * 1e3).round() / 1e3, ms, "{applied}");
    }
    for l in d.logs() {
        let text = l.to_string();
        for bad in DEBUG_TEXT {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
    }
    d.assert_clean(&[]);
}

#[test]
fn invalid_rust_log_is_an_error_that_names_it() {
    let out = Command::new(bin())
        .args(["check", "--config", "/nonexistent.toml"])
        .env("RUST_LOG", "netservd=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("netservd: invalid RUST_LOG \"netservd=loud\": "),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with(
            "; write a level (error, warn, info, debug, trace) or TARGET=LEVEL pairs separated \
             by commas, e.g. RUST_LOG=info or RUST_LOG=netservd=debug"
        ),
        "{err}"
    );
    // Empty: the default filter, no complaint (the missing file is the only error).
    let out = Command::new(bin())
        .args(["check", "--config", "/nonexistent.toml"])
        .env("RUST_LOG", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("RUST_LOG"), "{err}");
}
