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

#[test]
#[ignore = "needs a private network namespace: .ci/windows.sh runs it under Wine inside `unshare -n`"]
fn two_groups_on_one_port_stay_separate() {
    assert!(
        std::env::var_os("NETSERVD_TEST_NETNS").is_some(),
        "this test sends multicast datagrams: run it through .ci/windows.sh, which creates a private \
         network namespace and sets NETSERVD_TEST_NETNS"
    );
    let d = Daemon::start(&groups::shared_port(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "",
    ));
    groups::assert_apart();
    // Each service saw the other's datagram arrive on the shared port and skipped it.
    assert_eq!(drops(&d, "a", "other_group"), 1);
    assert_eq!(drops(&d, "b", "other_group"), 1);
    d.assert_clean(&[]);
}
