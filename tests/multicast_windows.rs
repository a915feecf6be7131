//! Windows: two `[[multicast]]` listeners on one port with different groups
//! each answer only their own group. Windows cannot bind a group address, so
//! both sockets bind the wildcard and the stack hands each of them the
//! datagrams of both groups; netservd reads every datagram's destination
//! (IP_PKTINFO) and skips, counting as `other_group`, what is not its group.
//!
//! Run by `.ci/windows.sh` under Wine inside a private network namespace
//! (`unshare -n`, loopback with 224.0.0.0/4 routed to it), which sets
//! NETSERVD_TEST_NETNS. Wine on Linux delivers every group on a shared port
//! to every socket on it (IP_MULTICAST_ALL stays on), as Windows does, so
//! without the filter each datagram would draw two replies: the test can fail.
#![cfg(windows)]

mod common;

use common::counters::drops;
use common::*;

const SHARED_PORT: &str = r#"
[daemon]
watch_config = false
[admin]
listen = "127.0.0.1:0"
[[multicast]]
name = "a"
group = "239.1.1.1"
port = 17080
interface = "127.0.0.1"
reply = "echo"
[[multicast]]
name = "b"
group = "239.1.1.2"
port = 17080
interface = "127.0.0.1"
reply = "echo"
"#;

/// Replies `netservd send` printed for one datagram to `group`.
fn replies(group: &str) -> usize {
    let (code, out, err) = netservd(
        &[
            "send",
            &format!("udp://{group}:17080"),
            "which",
            "--interface",
            "127.0.0.1",
            "--wait",
            "1s",
        ],
        None,
    );
    assert_eq!(code, 0, "send failed:\n{out}\n{err}");
    out.lines().filter(|l| l.starts_with("reply")).count()
}

#[test]
#[ignore = "needs a private network namespace: .ci/windows.sh runs it under Wine inside `unshare -n`"]
fn two_groups_on_one_port_stay_separate() {
    assert!(
        std::env::var_os("NETSERVD_TEST_NETNS").is_some(),
        "this test sends multicast datagrams: run it through .ci/windows.sh, which creates a private \
         network namespace and sets NETSERVD_TEST_NETNS"
    );
    let d = Daemon::start(SHARED_PORT);
    assert_eq!(
        replies("239.1.1.1"),
        1,
        "a datagram to group a must reach only service a"
    );
    assert_eq!(
        replies("239.1.1.2"),
        1,
        "a datagram to group b must reach only service b"
    );
    // Each service saw the other's datagram arrive on the shared port and skipped it.
    assert_eq!(drops(&d, "a", "other_group"), 1);
    assert_eq!(drops(&d, "b", "other_group"), 1);
    d.assert_clean(&[]);
}
