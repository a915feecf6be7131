//! Live fault control against the real binary (issue 16): `PUT`/`DELETE
//! /services/NAME/faults` change an open connection at once; the write
//! endpoints refuse without `[admin] control = true` and without the bearer
//! token; bad bodies are 400s naming the key; a reload resets live faults to
//! the file's values; `netservd fault` / `netservd journal` wrap the API; a
//! bad `[*.faults]` key is a `file:line:col` config error.

mod common;
#[path = "common/control.rs"]
mod control;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn config(admin_extra: &str) -> String {
    format!(
        r#"
[daemon]
watch_config = false
[admin]
listen = "127.0.0.1:0"
{admin_extra}
[[tcp_echo]]
name = "echo"
listen = "127.0.0.1:0"
journal = 8
"#
    )
}

/// One echo round trip on `s`, timed.
fn rtt(s: &mut TcpStream, payload: &[u8]) -> Duration {
    let f = frame(4, true, payload);
    let t = Instant::now();
    s.write_all(&f).unwrap();
    let mut back = vec![0; f.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, f);
    t.elapsed()
}

#[test]
fn put_and_delete_change_an_open_connection() {
    let d = Daemon::start(&config("control = true"));
    let admin = counters::admin_addr(&d);
    let mut s = TcpStream::connect(d.addr("echo")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    let base = rtt(&mut s, b"before");
    assert!(base < Duration::from_millis(300), "baseline {base:?}");

    control::put_faults(admin, "echo", r#"{"latency": "300ms"}"#);
    let (status, body) = control::call(admin, "GET", "/services/echo/faults", None, None);
    assert_eq!((status, body.trim()), (200, r#"{"latency":"300ms"}"#));
    let slow = rtt(&mut s, b"during");
    assert!(slow >= Duration::from_millis(300), "with latency {slow:?}");

    control::clear_faults(admin, "echo");
    let (_, body) = control::call(admin, "GET", "/services/echo/faults", None, None);
    assert_eq!(body.trim(), "{}");
    let fast = rtt(&mut s, b"after");
    assert!(fast < Duration::from_millis(300), "cleared {fast:?}");
    assert!(
        d.wait_log(
            |l| l["message"] == "faults set over the admin endpoint",
            WAIT
        )
        .is_some()
    );
    d.assert_clean(&[]);
}

#[test]
fn writes_refused_without_control() {
    let d = Daemon::start(&config(""));
    let admin = counters::admin_addr(&d);
    for (method, path) in [
        ("PUT", "/services/echo/faults"),
        ("DELETE", "/services/echo/faults"),
        ("DELETE", "/services/echo/journal"),
    ] {
        let (status, body) = control::call(admin, method, path, Some(r#"{"latency":"1s"}"#), None);
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(body.contains("[admin] control = true"), "{body}");
    }
    // Reading stays open; nothing changed.
    let (status, body) = control::call(admin, "GET", "/services/echo/faults", None, None);
    assert_eq!((status, body.trim()), (200, "{}"));
    let (status, _) = control::call(admin, "GET", "/services/nope/faults", None, None);
    assert_eq!(status, 404);
    d.assert_clean(&[]);
}

#[test]
fn writes_need_the_token_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let d = Daemon::start(&config(&format!(
        "control = true\ntoken_file = {:?}",
        token.to_str().unwrap()
    )));
    let admin = counters::admin_addr(&d);
    let body = Some(r#"{"latency":"10ms"}"#);
    let path = "/services/echo/faults";
    assert_eq!(control::call(admin, "PUT", path, body, None).0, 401);
    assert_eq!(
        control::call(admin, "PUT", path, body, Some("wrong")).0,
        401
    );
    let (status, out) = control::call(admin, "PUT", path, body, Some("t0ken"));
    assert_eq!(status, 200, "{out}");
    assert_eq!(control::call(admin, "DELETE", path, None, None).0, 401);
    assert_eq!(
        control::call(admin, "DELETE", path, None, Some("t0ken")).0,
        200
    );
    d.assert_clean(&[]);
}

#[test]
fn bad_bodies_are_400s_naming_the_key() {
    let d = Daemon::start(&config("control = true"));
    let admin = counters::admin_addr(&d);
    let path = "/services/echo/faults";
    let (status, body) = control::call(admin, "PUT", path, Some(r#"{"corrupt": 2.0}"#), None);
    assert_eq!(status, 400);
    assert!(body.contains("corrupt = 2 is not a probability"), "{body}");
    let (status, body) = control::call(admin, "PUT", path, Some(r#"{"lossy": 0.1}"#), None);
    assert_eq!(status, 400);
    assert!(body.contains("unknown field `lossy`"), "{body}");
    // loss is a UDP fault: tcp_echo does not take it.
    let (status, _) = control::call(admin, "PUT", path, Some(r#"{"loss": 0.1}"#), None);
    assert_eq!(status, 400);
    let (status, body) = control::call(admin, "PUT", path, Some(r#"{"latency": "fast"}"#), None);
    assert_eq!(status, 400);
    assert!(body.contains("invalid duration"), "{body}");
    // Bodies are bounded by [admin] max_body_bytes (4096 by default).
    let big = format!(r#"{{"latency": "1ms", "seed": 1{}}}"#, " ".repeat(5000));
    let (status, body) = control::call(admin, "PUT", path, Some(&big), None);
    assert_eq!(status, 413, "{body}");
    d.assert_clean(&[]);
}

#[cfg(unix)]
#[test]
fn reload_resets_live_faults_to_the_file() {
    let d = Daemon::start(&config("control = true"));
    let admin = counters::admin_addr(&d);
    control::put_faults(admin, "echo", r#"{"latency": "1s"}"#);
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(
            |l| l["message"] == "faults reset to the config file's values by the reload",
            WAIT
        )
        .is_some(),
        "{}",
        d.dump()
    );
    let (_, body) = control::call(admin, "GET", "/services/echo/faults", None, None);
    assert_eq!(body.trim(), "{}");
    d.assert_clean(&[]);
}

#[test]
fn cli_fault_and_journal_commands() {
    let d = Daemon::start(&config("control = true"));
    let admin = counters::admin_addr(&d).to_string();
    let (code, out, err) = netservd(
        &[
            "fault",
            "echo",
            "--latency",
            "20ms",
            "--corrupt",
            "0.5",
            "--seed",
            "1",
            "--admin",
            &admin,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["latency"], "20ms");
    assert_eq!(v["seed"], 1);
    // --admin takes a host name too (a compose service name, as in docker/scenario.sh).
    let by_name = format!("localhost:{}", counters::admin_addr(&d).port());
    let (code, out, err) = netservd(&["fault", "echo", "--admin", &by_name], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""corrupt":0.5"#), "{out}");
    let (code, out, err) = netservd(&["fault", "echo", "--clear", "--admin", &admin], None);
    assert_eq!((code, out.trim()), (0, "{}"), "{err}");
    let (code, _, err) = netservd(&["fault", "nope", "--admin", &admin], None);
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");

    tcp_round_trip(d.addr("echo"), b"journal me");
    let (code, out, err) = netservd(&["journal", "echo", "--admin", &admin], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("journal me") && out.starts_with("1 "), "{out}");
    d.assert_clean(&[]);
}

#[test]
fn bad_fault_key_in_the_file_is_a_placed_config_error() {
    let cfg =
        "[[tcp_echo]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\n[tcp_echo.faults]\nrefuse = 1.5\n";
    let (code, _out, err, _dir) = check(cfg, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("config.toml:5:"), "{err}");
    assert!(
        err.contains("refuse = 1.5 is not a probability; use 0.0 (never) to 1.0 (always)"),
        "{err}"
    );
    let cfg = "[[multicast]]\nname = \"g\"\ngroup = \"239.1.2.3\"\nport = 7077\n[multicast.faults]\nloss = 0.5\n";
    let (code, _, err, _dir) = check(cfg, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("set reply = \"echo\""), "{err}");
}

#[cfg(unix)]
#[test]
fn journal_follow_prints_new_entries_and_exits_1_when_the_admin_goes_away() {
    use std::io::BufRead;
    let mut d = Daemon::start(&config(""));
    let admin = counters::admin_addr(&d).to_string();
    let mut follow = std::process::Command::new(bin())
        .args([
            "journal",
            "echo",
            "--follow",
            "--interval",
            "50ms",
            "--admin",
            &admin,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tcp_round_trip(d.addr("echo"), b"followed");
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a journal line").unwrap();
    assert!(first.contains("followed"), "{first}");
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(WAIT).is_some_and(|s| s.success()));
    let end = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = follow.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < end,
            "journal --follow still running after the daemon exited"
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    follow
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("connect to the admin endpoint"), "{err}");
}

#[test]
fn services_and_check_show_faults_and_journal() {
    let d = Daemon::start(&config("control = true"));
    let admin = counters::admin_addr(&d);
    let echo = |body: &str| -> serde_json::Value {
        let all: serde_json::Value = serde_json::from_str(body).expect("services JSON");
        all.as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "echo"))
            .cloned()
            .unwrap_or_else(|| panic!("no echo in {body}"))
    };
    let (_, body) = control::call(admin, "GET", "/services", None, None);
    let s = echo(&body);
    assert!(s["faults"].is_null(), "no faults yet: {s}");
    assert_eq!(s["journal"]["capacity"], 8, "{s}");

    // Live: a PUT shows in /services at once, a DELETE takes it away.
    control::put_faults(admin, "echo", r#"{"latency": "5ms"}"#);
    let (_, body) = control::call(admin, "GET", "/services", None, None);
    assert_eq!(echo(&body)["faults"]["latency"], "5ms", "{body}");
    control::clear_faults(admin, "echo");
    let (_, body) = control::call(admin, "GET", "/services", None, None);
    assert!(echo(&body)["faults"].is_null(), "{body}");

    // check reads them from the file, in text and JSON.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        "[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\njournal = 16\n[udp_echo.faults]\nloss = 0.25\nseed = 7\n",
    )
    .unwrap();
    let cfg = path.to_str().unwrap();
    let (code, out, err) = netservd(&["check", "--config", cfg], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#"faults {"loss":0.25,"seed":7}"#), "{out}");
    assert!(out.contains("journal 16 entries"), "{out}");
    let (code, out, err) = netservd(&["check", "--format", "json", "--config", cfg], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("check JSON");
    assert_eq!(v["services"][0]["faults"]["loss"], 0.25, "{out}");
    assert_eq!(v["services"][0]["journal"], 16, "{out}");
    d.assert_clean(&[]);
}
