//! Independent peers: clients that frame with their own runtime (Python's
//! `struct`) and socat for UDP, so the protocol is checked against code we
//! did not write.
//! Unix only: the peers are run through `sh`, `python3` and `socat`.
#![cfg(unix)]

mod common;

use std::process::Command;

use common::*;

fn tcp_config(width: u8, order: &str) -> String {
    let max = if width == 1 { 255 } else { 4000 };
    format!(
        "[[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nlength_field_bytes = {width}\nbyte_order = \"{order}\"\nmax_frame_bytes = {max}\n"
    )
}

#[test]
fn python_struct_clients_pipelined_for_every_width() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/framed_client.py");
    for width in [1u8, 2, 4, 8] {
        for order in ["big", "little"] {
            let d = Daemon::start(&tcp_config(width, order));
            let addr = d.addr("echo");
            let max = if width == 1 { "255" } else { "4000" };
            let out = Command::new("python3")
                .args([
                    script,
                    &addr.ip().to_string(),
                    &addr.port().to_string(),
                    &width.to_string(),
                    order,
                    "200",
                    "8",
                    max,
                ])
                .output()
                .expect("python3 is required for the peer tests (scripts/test.sh installs it)");
            assert!(
                out.status.success(),
                "width {width} {order}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            d.assert_clean(&[]);
        }
    }
}

#[test]
fn socat_udp_client_gets_its_datagram_back() {
    let d = Daemon::start("[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n");
    let addr = d.addr("u");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'hello from socat' | timeout 10 socat -T2 - UDP4:{addr}"
        ))
        .output()
        .expect("sh");
    assert!(
        out.status.success() || !out.stdout.is_empty(),
        "socat failed (is it installed? scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from socat");
}
