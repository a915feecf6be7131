//! Two `[[multicast]]` echo services on one port with different groups, and
//! the check that each group's datagram is answered by its own service only;
//! shared by the Linux test (in a namespace) and the Windows one (under Wine).
//! Callers run inside a network namespace of their own.

use super::netservd;

/// `g4` (239.255.70.77 on 127.0.0.1) and `g6` (ff12::7077 on `nsb`, the veth of
/// `netns::veth`), both on port 17077 with `reply = "echo"`; callers run in a
/// network namespace of their own.
pub const V4_AND_V6: &str = r#"
[[multicast]]
name = "g4"
group = "239.255.70.77"
port = 17077
interface = "127.0.0.1"
reply = "echo"
[[multicast]]
name = "g6"
group = "ff12::7077"
port = 17077
interface = "nsb"
reply = "echo"
"#;

/// Services "a" (239.1.1.1) and "b" (239.1.1.2), both on port 17080 on
/// loopback with `reply = "echo"`; `socket` is added to each (e.g. a
/// `[multicast.socket]` table), `head` goes first (e.g. `[admin]`).
pub fn shared_port(head: &str, socket: &str) -> String {
    let mut s = format!("[daemon]\nwatch_config = false\n{head}\n");
    for (name, group) in [("a", "239.1.1.1"), ("b", "239.1.1.2")] {
        s += &format!(
            "[[multicast]]\nname = \"{name}\"\ngroup = \"{group}\"\nport = 17080\ninterface = \"127.0.0.1\"\nreply = \"echo\"\n{socket}\n"
        );
    }
    s
}

/// Replies `netservd send` printed for one datagram to `group` on the shared port.
pub fn replies(group: &str) -> usize {
    let (code, out, err) = netservd(
        &[
            "send",
            &format!("udp://{group}:17080"),
            "which",
            "--interface",
            "127.0.0.1",
            "--wait",
            "500ms",
        ],
        None,
    );
    assert_eq!(code, 0, "send failed:\n{out}\n{err}");
    out.lines().filter(|l| l.starts_with("reply")).count()
}

/// A datagram to each group draws exactly one reply: its own service's.
pub fn assert_apart() {
    for (group, service) in [("239.1.1.1", "a"), ("239.1.1.2", "b")] {
        assert_eq!(
            replies(group),
            1,
            "a datagram to group {group} must reach only service {service}"
        );
    }
}
