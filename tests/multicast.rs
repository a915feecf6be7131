//! `[[multicast]]` against the real binary, each test in its own network
//! namespace (see `common/netns.rs`): the kernel's membership tables while
//! running and after removal, IPv4 and IPv6 echo to socat, group isolation on
//! a shared port, source-specific joins, and the warning that names the
//! interface the kernel picked.
//! Linux only: network namespaces (unshare(CLONE_NEWNET)) and `ip`.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use netns::{Peer, stop, tool};

use common::groups::V4_AND_V6 as GROUPS;

#[test]
fn kernel_lists_memberships_on_the_configured_interfaces_until_removed() {
    netns::enter();
    netns::veth();
    let mut d = Daemon::start(GROUPS);
    let pid = d.pid().to_string();
    let g4 = ("lo".to_string(), "239.255.70.77".parse().unwrap());
    let g6 = ("nsb".to_string(), "ff12::7077".parse().unwrap());
    assert!(
        netns::igmp(&pid).contains(&g4),
        "239.255.70.77 not joined on lo: {:?}",
        netns::igmp(&pid)
    );
    let v6 = netns::igmp6(&pid);
    assert!(v6.contains(&g6), "ff12::7077 not joined on nsb: {v6:?}");
    assert!(
        !v6.iter().any(|(dev, g)| dev != "nsb" && *g == g6.1),
        "ff12::7077 joined on another interface: {v6:?}"
    );

    // A reload that removes g6 leaves its group while the daemon keeps running.
    d.write_config(&GROUPS[..GROUPS.find("[[multicast]]\nname = \"g6\"").unwrap()]);
    d.wait_log(|l| l["message"] == "reload applied", WAIT)
        .unwrap_or_else(|| panic!("no reload; logs:\n{}", d.dump()));
    let end = Instant::now() + WAIT;
    while netns::igmp6(&pid).contains(&g6) {
        assert!(
            Instant::now() < end,
            "ff12::7077 still joined after the reload removed it"
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
    assert!(
        netns::igmp(&pid).contains(&g4),
        "the unchanged g4 lost its membership on reload"
    );

    stop(&mut d);
    assert!(
        !netns::igmp("thread-self").contains(&g4),
        "239.255.70.77 still joined after shutdown"
    );
    assert_eq!(
        d.count_logs(|l| l["message"] == "left multicast group"),
        2,
        "both groups left explicitly; logs:\n{}",
        d.dump()
    );
    d.assert_clean(&[]);
}

/// socat sends `msg` to `addr` and prints what comes back within 1 s.
fn socat_round_trip(addr: &str, msg: &str) -> String {
    let mut c = Command::new("socat")
        .args(["-t", "1", "-", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("socat (scripts/test.sh installs it)");
    c.stdin.take().unwrap().write_all(msg.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ipv4_and_ipv6_groups_echo_to_socat() {
    netns::enter();
    netns::veth();
    let d = Daemon::start(GROUPS);
    assert_eq!(
        socat_round_trip(
            "UDP4-DATAGRAM:239.255.70.77:17077,ip-multicast-if=127.0.0.1",
            "hello4\n"
        ),
        "hello4\n"
    );
    assert_eq!(
        socat_round_trip("UDP6-DATAGRAM:[ff12::7077%nsa]:17077", "hello6\n"),
        "hello6\n"
    );
    // And with our own tool, naming the IPv6 interface instead of a scope id.
    let (code, out) = tool(&[
        "send",
        "udp://[ff12::7077]:17077",
        "hi6",
        "--interface",
        "nsa",
        "--expect-reply",
        "--wait",
        "500ms",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("3 bytes: hi6"), "{out}");
    d.assert_clean(&[]);
}

#[test]
fn two_groups_on_one_port_stay_separate() {
    netns::enter();
    // socat shares the port (SO_REUSEADDR) and hears group b.
    let socat = Peer::spawn(
        "socat",
        &[
            "-u",
            "UDP4-RECV:17080,reuseaddr,ip-add-membership=239.1.1.2:127.0.0.1",
            "STDOUT",
        ],
    );
    netns::wait_udp_bound(17080, false);
    let mut d = Daemon::start(&groups::shared_port("", ""));
    groups::assert_apart();
    let heard = socat.wait_lines(|l| !l.is_empty(), WAIT);
    assert!(
        heard.iter().any(|l| l.contains("which")),
        "socat on the shared port heard nothing: {heard:?}"
    );
    stop(&mut d);
    drop(socat);

    // Control: with IP_MULTICAST_ALL on (Linux's default), both listeners get both groups,
    // which shows the check above can fail.
    let d = Daemon::start(&groups::shared_port(
        "",
        "[multicast.socket]\nmulticast_all = true",
    ));
    assert_eq!(
        groups::replies("239.1.1.1"),
        2,
        "with multicast_all = true both services should answer"
    );
    d.assert_clean(&[]);
}

#[test]
fn source_specific_joins_accept_only_their_source() {
    netns::enter();
    netns::veth();
    netns::sh("ip addr add 127.0.0.2/8 dev lo");
    let d = Daemon::start(
        r#"
[[multicast]]
name = "ssm4"
group = "232.1.1.1"
port = 17090
interface = "127.0.0.1"
source = "127.0.0.1"
reply = "echo"
[[multicast]]
name = "ssm6"
group = "ff3e::8000:7"
port = 17090
interface = "nsb"
source = "fd00::1"
reply = "echo"
"#,
    );
    let send = |url: &str, iface: &str| {
        tool(&[
            "send",
            url,
            "ssm",
            "--interface",
            iface,
            "--expect-reply",
            "--wait",
            "500ms",
        ])
        .0
    };
    assert_eq!(
        send("udp://232.1.1.1:17090", "127.0.0.1"),
        0,
        "the configured source gets an answer"
    );
    assert_eq!(
        send("udp://232.1.1.1:17090", "127.0.0.2"),
        1,
        "another source must be filtered out by the kernel"
    );
    // Out of nsa the source address is fd00::1; out of nsb (looped back to nsb) it is fd00::2.
    assert_eq!(
        send("udp://[ff3e::8000:7]:17090", "nsa"),
        0,
        "the configured IPv6 source gets an answer"
    );
    assert_eq!(
        send("udp://[ff3e::8000:7]:17090", "nsb"),
        1,
        "another IPv6 source must be filtered out"
    );
    let pid = d.pid().to_string();
    assert!(netns::igmp(&pid).contains(&("lo".into(), "232.1.1.1".parse().unwrap())));
    assert!(netns::igmp6(&pid).contains(&("nsb".into(), "ff3e::8000:7".parse().unwrap())));
    d.assert_clean(&[]);
}

#[test]
fn join_without_interface_says_where_the_kernel_put_it() {
    netns::enter();
    let d = Daemon::start(
        "[[multicast]]\nname = \"anywhere\"\ngroup = \"239.255.70.79\"\nport = 17078\n",
    );
    let w = d
        .wait_log(
            |l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no interface given"))
            },
            WAIT,
        )
        .unwrap_or_else(|| panic!("no warning; logs:\n{}", d.dump()));
    assert_eq!(w["kernel_interface"], "lo", "{w}");
    assert!(
        netns::igmp(&d.pid().to_string())
            .contains(&("lo".into(), "239.255.70.79".parse().unwrap()))
    );
    d.assert_clean(&[]);
}

#[test]
fn services_endpoint_lists_joined_groups_per_interface() {
    netns::enter();
    netns::veth();
    let d = Daemon::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n{GROUPS}"));
    let url = format!("http://{}/services", common::counters::admin_addr(&d));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let body = agent
        .get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let services: serde_json::Value = serde_json::from_str(&body).unwrap();
    let groups = |name: &str| {
        services
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {body}"))["groups"]
            .clone()
    };
    assert_eq!(
        groups("g4"),
        serde_json::json!(["239.255.70.77 on 127.0.0.1"]),
        "{body}"
    );
    assert_eq!(
        groups("g6"),
        serde_json::json!(["ff12::7077 on nsb"]),
        "{body}"
    );
}
