//! Who may use a service (issue 11), against the real binary with clients
//! bound to 127.0.0.2 and 127.0.0.3: access lists on TCP and UDP echo (deny
//! wins, refusals counted), per-source TCP connection limits (a source
//! holding its share gets its next connection closed at once while another
//! source is served), the per-second rate, and `check`'s CIDR errors.

mod common;

use std::time::{Duration, Instant};

use common::counters::drops;
use common::sources::*;
use common::*;

fn config(tcp: &str, udp: &str) -> String {
    format!(
        "[daemon]\nwatch_config = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\n{tcp}\n\n\
         [[udp_echo]]\nname = \"echo-udp\"\nlisten = \"127.0.0.1:0\"\n{udp}\n"
    )
}

#[test]
fn deny_refuses_its_source_on_tcp_and_udp_and_serves_the_others() {
    let acl = "deny = [\"127.0.0.2/32\"]";
    let d = Daemon::start(&config(acl, acl));
    let (tcp, udp) = (d.addr("echo"), d.addr("echo-udp"));

    let t = refused_within("127.0.0.2", tcp, Duration::from_secs(2));
    eprintln!("acl: denied TCP connection closed after {t:?}");
    let mut served = tcp_from("127.0.0.3", tcp);
    assert!(tcp_echoes(&mut served, b"from .3"));

    // UDP: the denied source's datagram is dropped; a later one from .3 is answered,
    // so had the first been echoed its reply would have arrived by then.
    let u2 = udp_from("127.0.0.2", Duration::from_millis(300));
    let u3 = udp_from("127.0.0.3", WAIT);
    u2.send_to(b"from .2", udp).unwrap();
    u3.send_to(b"from .3", udp).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = u3.recv_from(&mut buf).expect("reply to .3");
    assert_eq!(&buf[..n], b"from .3");
    // A bounded wait for a reply that must not come (the only way to see an absence).
    assert!(
        u2.recv_from(&mut buf).is_err(),
        "denied source got a UDP reply"
    );

    assert_eq!(drops(&d, "echo", "denied"), 1);
    assert_eq!(drops(&d, "echo-udp", "denied"), 1);
}

#[test]
fn allow_list_admits_only_its_blocks() {
    let acl = "allow = [\"127.0.0.3/32\", \"::1/128\"]";
    let d = Daemon::start(&config(acl, ""));
    let tcp = d.addr("echo");
    refused_within("127.0.0.2", tcp, Duration::from_secs(2));
    let mut inside = tcp_from("127.0.0.3", tcp);
    assert!(tcp_echoes(&mut inside, b"allowed"));
    assert_eq!(drops(&d, "echo", "denied"), 1);
}

#[test]
fn a_source_at_its_limit_gets_the_next_connection_closed_and_others_are_served() {
    let d = Daemon::start(&config(
        "max_connections = 100\nmax_connections_per_source = 10",
        "",
    ));
    let tcp = d.addr("echo");
    let mut held: Vec<_> = (0..10).map(|_| tcp_from("127.0.0.2", tcp)).collect();
    for s in &mut held {
        assert!(tcp_echoes(s, b"mine"), "one of the first 10 was not served");
    }
    let t = refused_within("127.0.0.2", tcp, Duration::from_secs(1));
    let t0 = Instant::now();
    let mut other = tcp_from("127.0.0.3", tcp);
    assert!(tcp_echoes(&mut other, b"another source"));
    let served = t0.elapsed();
    eprintln!("per-source: 11th closed after {t:?}; other source served in {served:?}");
    assert!(
        served < Duration::from_secs(1),
        "other source waited {served:?}"
    );
    // The 10 are unaffected, and a place freed is a place for the source again.
    assert!(tcp_echoes(&mut held[9], b"still"));
    drop(held.pop());
    let end = Instant::now() + WAIT;
    let mut again = loop {
        if let Ok(mut s) = try_tcp_from("127.0.0.2", tcp)
            && tcp_echoes(&mut s, b"again")
        {
            break s;
        }
        assert!(Instant::now() < end, "freed place never came back");
    };
    assert!(tcp_echoes(&mut again, b"again 2"));
    assert!(drops(&d, "echo", "per_source_limit") >= 1);
}

#[test]
fn connections_per_second_per_source_is_enforced() {
    let d = Daemon::start(&config("max_connections_per_second_per_source = 5", ""));
    let tcp = d.addr("echo");
    let t0 = Instant::now();
    let mut served = 0;
    for _ in 0..8 {
        if let Ok(mut s) = try_tcp_from("127.0.0.2", tcp) {
            served += usize::from(tcp_echoes(&mut s, b"x"));
        }
    }
    // All 8 within one second of the first (loopback connects take microseconds).
    if t0.elapsed() < Duration::from_millis(900) {
        assert_eq!(served, 5, "{served} of 8 served in {:?}", t0.elapsed());
        assert_eq!(drops(&d, "echo", "per_source_rate"), 3);
    }
    let mut other = tcp_from("127.0.0.3", tcp);
    assert!(tcp_echoes(&mut other, b"other source"));
}

#[test]
fn check_places_a_bad_cidr_at_its_line_and_column() {
    let cfg = "[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\ndeny = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n";
    let (code, out, err, _d) = check(cfg, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("config.toml:4:"), "{err}");
    assert!(
        err.contains("write \\\"10.0.0.0/8\\\"") || err.contains("write \"10.0.0.0/8\""),
        "{err}"
    );
}
