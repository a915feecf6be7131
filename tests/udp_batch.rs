//! UDP echo under bursts (the batched recvmmsg/sendmmsg path on Linux): many
//! datagrams from several sources queued at once, each echoed to its own
//! source unchanged, zero-length ones included, oversized ones in the middle
//! of a batch dropped without disturbing their neighbours.

mod common;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
[daemon]
watch_config = false

[[udp_echo]]
name = "u"
listen = "127.0.0.1:0"
max_datagram_bytes = 100
"#;

#[test]
fn bursts_from_many_sources_echo_each_datagram_to_its_sender() {
    let d = Daemon::start(CONFIG);
    let to = d.addr("u");
    let socks: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut expected: Vec<HashSet<Vec<u8>>> = vec![HashSet::new(); socks.len()];
    // 3 x 40 datagrams sent back to back, so the daemon finds many queued per readiness.
    for i in 0..40u32 {
        for (k, s) in socks.iter().enumerate() {
            let len = (i as usize * 7 + k) % 102; // 0..=101: 100 is the limit, 101 is over it
            let mut msg = vec![0u8; len];
            for (j, b) in msg.iter_mut().enumerate() {
                *b = (i as usize * 31 + k * 7 + j) as u8;
            }
            if len >= 2 {
                msg[..2].copy_from_slice(&(i as u16).to_be_bytes());
            }
            s.send_to(&msg, to).unwrap();
            if len <= 100 {
                expected[k].insert(msg);
            }
        }
    }
    for (k, s) in socks.iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = HashSet::new();
        let end = Instant::now() + WAIT;
        let mut buf = [0u8; 200];
        while got.len() < expected[k].len() && Instant::now() < end {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                assert_eq!(from, to, "reply from an unexpected address");
                assert!(n <= 100, "an oversized datagram was echoed ({n} bytes)");
                assert!(
                    expected[k].contains(&buf[..n]),
                    "socket {k} got a datagram it never sent: {:?}",
                    &buf[..n]
                );
                got.insert(buf[..n].to_vec());
            }
        }
        // Zero-length datagrams are indistinguishable from each other; the set holds one.
        assert_eq!(got.len(), expected[k].len(), "socket {k}: missing echoes");
        // Nothing else arrives (in particular no oversized echo).
        assert!(
            s.recv_from(&mut buf).is_err(),
            "socket {k}: unexpected extra datagram"
        );
    }
    d.assert_clean(&[]);
}
