//! UDP GSO on the reply path (Linux): a batch's run of equal-sized replies to
//! one source leaves the daemon as one `UDP_SEGMENT` send, and a route whose
//! MTU refuses that segment size makes the daemon fall back to one datagram
//! per message without losing a reply.
//!
//! How a test sees GSO from outside: a client socket with `UDP_GRO` on takes
//! a GSO packet that crossed loopback whole (one `recvmsg`, several segments,
//! the segment size in a `UDP_GRO` control message), while datagrams sent one
//! by one always arrive one by one. So a reply longer than one request proves
//! the daemon coalesced, and splitting it at the segment size must give back
//! the requests unchanged and in order. Bursts reach the daemon as a client
//! GSO send too, so that a whole round is queued before the daemon reads it;
//! rounds repeat (bounded) until one is read as a batch. `gso = false` turns
//! it off.
#![cfg(target_os = "linux")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;

#[path = "common/netns.rs"]
mod netns;

const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Rounds before a test gives up waiting for one batch; each takes well under a millisecond.
const ROUNDS: usize = 200;

/// The `sockaddr_in` of a loopback IPv4 address.
fn sockaddr(to: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = to else {
        panic!("IPv4 only")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sends `payload` as datagrams of `segment` bytes in one `sendmsg`: with
/// `UDP_SEGMENT` when `gso`, so the kernel queues them all at once.
fn send_segments(sock: &UdpSocket, to: SocketAddr, payload: &[u8], segment: usize, gso: bool) {
    if !gso {
        for chunk in payload.chunks(segment) {
            sock.send_to(chunk, to).unwrap();
        }
        return;
    }
    let mut addr = sockaddr(to);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain C data; every pointer set below outlives the call.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
    h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_* compute sizes and positions inside `control` (32 bytes, 8-aligned).
    unsafe {
        h.msg_controllen = libc::CMSG_SPACE(2) as _;
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment as u16);
    }
    // SAFETY: `h` describes live buffers of the stated sizes.
    let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &h, 0) };
    assert_eq!(
        r,
        payload.len() as isize,
        "client GSO send: {}",
        std::io::Error::last_os_error()
    );
}

/// One `recvmsg` on a `UDP_GRO` socket: the bytes and, when the kernel
/// delivered a GSO packet whole, its segment size.
fn recv_gro(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, Option<usize>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: as in send_segments; the kernel writes at most the stated sizes.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_control = control.as_mut_ptr().cast();
    h.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `h` describes live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut h, 0) };
    if n < 0 {
        return None; // the read timeout
    }
    let mut segment = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                segment = Some(
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>()) as usize,
                );
            }
            c = libc::CMSG_NXTHDR(&h, c);
        }
    }
    Some((n as usize, segment))
}

/// A client socket that takes GSO packets whole.
fn gro_client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int.
    let r = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            (&on as *const libc::c_int).cast(),
            4,
        )
    };
    assert_eq!(r, 0, "UDP_GRO: {}", std::io::Error::last_os_error());
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

/// Round `r`'s burst: `count` datagrams of `size` bytes, each one distinct.
fn burst(r: usize, count: usize, size: usize) -> Vec<u8> {
    (0..count * size)
        .map(|i| (i / size * 7 + r * 13 + i) as u8)
        .collect()
}

/// Sends bursts until the echo of one arrives coalesced (or ROUNDS pass),
/// checking that every round's echo is its burst unchanged and in order.
/// Returns whether any echo came coalesced, with the segment size it said.
fn rounds(
    c: &UdpSocket,
    to: SocketAddr,
    count: usize,
    size: usize,
    gso_send: bool,
) -> (bool, usize) {
    let mut buf = vec![0u8; 65536];
    for r in 0..ROUNDS {
        let sent = burst(r, count, size);
        send_segments(c, to, &sent, size, gso_send);
        let mut got = Vec::new();
        let mut coalesced = false;
        while got.len() < sent.len() {
            let (n, segment) = recv_gro(c, &mut buf).unwrap_or_else(|| {
                panic!(
                    "round {r}: {} of {} echoed bytes before the timeout",
                    got.len(),
                    sent.len()
                )
            });
            if n > size {
                assert_eq!(
                    segment,
                    Some(size),
                    "round {r}: a coalesced reply must say its segment size"
                );
                coalesced = true;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, sent, "round {r}: the echo differs from the burst");
        if coalesced {
            return (true, r + 1);
        }
    }
    (false, ROUNDS)
}

#[test]
fn equal_replies_to_one_source_leave_as_one_gso_send_and_arrive_unchanged() {
    let d = Daemon::start(
        "[daemon]\nwatch_config = false\nworkers = 1\n[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n",
    );
    let c = gro_client();
    for (count, size) in [(16, 64), (16, 1000), (15, 4096)] {
        let (coalesced, after) = rounds(&c, d.addr("u"), count, size, true);
        assert!(
            coalesced,
            "{count} x {size} B: no echo arrived as one GSO packet in {after} rounds"
        );
    }
    // A last datagram shorter than the rest rides along; every datagram still arrives as sent.
    let mut sent = burst(0, 8, 100);
    sent.truncate(8 * 100 - 40);
    send_segments(&c, d.addr("u"), &sent, 100, true);
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let (n, _) = recv_gro(&c, &mut buf).expect("the short-tail burst's echo");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, sent);
    d.assert_clean(&[]);
}

#[test]
fn a_route_that_refuses_the_segment_size_gets_one_datagram_per_message() {
    netns::enter();
    // lo's MTU below the datagram size: the kernel refuses GSO of 1,400-byte
    // segments (EINVAL) and fragments single 1,400-byte datagrams as usual.
    netns::sh("ip link set lo mtu 1280");
    let d = Daemon::start_with(
        "[daemon]\nwatch_config = false\nworkers = 1\n[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n",
        &[("RUST_LOG", "info,netservd::services::udp_mmsg=debug")],
    );
    let to = d.addr("u");
    let c = gro_client();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let refused = |l: &serde_json::Value| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("segmentation offload refused"))
            && l["segment"] == 1400
    };
    let mut buf = vec![0u8; 65536];
    let mut r = 0;
    // Bursts sent one by one (a client cannot GSO over this MTU either) until
    // the daemon read one as a batch and was refused; every reply must arrive.
    while d.count_logs(refused) == 0 && r < ROUNDS {
        let sent = burst(r, 16, 1400);
        send_segments(&c, to, &sent, 1400, false);
        for k in 0..16 {
            let (n, segment) = recv_gro(&c, &mut buf)
                .unwrap_or_else(|| panic!("round {r}: reply {k} of 16 lost\n{}", d.dump()));
            assert_eq!(
                (n, segment),
                (1400, None),
                "round {r}: replies over this MTU are single datagrams"
            );
            assert_eq!(
                &buf[..n],
                &sent[k * 1400..(k + 1) * 1400],
                "round {r}: reply {k} differs"
            );
        }
        r += 1;
    }
    assert!(
        d.count_logs(refused) > 0,
        "no batch of 1,400-byte replies in {r} rounds:\n{}",
        d.dump()
    );
    // Smaller replies still go as GSO on the same socket.
    let (coalesced, after) = rounds(&c, to, 16, 64, true);
    assert!(
        coalesced,
        "64 B replies stopped using GSO after the refusal ({after} rounds)"
    );
    d.assert_clean(&[]);
}

#[test]
fn gso_false_sends_every_reply_as_its_own_datagram() {
    let d = Daemon::start(
        "[daemon]\nwatch_config = false\nworkers = 1\n[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\ngso = false\n",
    );
    let c = gro_client();
    // The same bursts that the test above sees coalesced within a few rounds:
    // with `gso = false` no echo of ROUNDS of them arrives as one packet.
    let (coalesced, rounds_run) = rounds(&c, d.addr("u"), 16, 64, true);
    assert!(
        !coalesced,
        "an echo arrived as one GSO packet with gso = false"
    );
    assert_eq!(rounds_run, ROUNDS);
    d.assert_clean(&[]);
}
