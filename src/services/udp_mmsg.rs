//! Batched datagram I/O for `udp_echo` on Linux: one `recvmmsg` takes up to
//! [`BATCH`] datagrams (each into its own `max_datagram_bytes + 1` slot, so
//! an oversized one still shows as oversized), and one `sendmmsg` sends every
//! reply of the batch back to its source. Both run under tokio's readiness
//! (`try_io`), so a call that would block clears readiness and the service
//! waits in `readable()` like any tokio socket.
//!
//! Buffers live on the heap in plain arrays: slot bytes, source addresses,
//! and the kernel's `mmsghdr`/`iovec` descriptions of them, which are kept
//! between calls (only their pointers and lengths are refreshed) so a call
//! costs no zeroing or rebuilding. Slots are allocated zeroed and lazily paged
//! in, so memory follows the datagram sizes actually received.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call: enough to amortise the syscall, few enough
/// that the first reply of a batch is not held back long by the copies of
/// the rest. Measured against 32 with 32 datagrams in flight (3 runs each):
/// 8 gave +3 % at 64 B and +4 % at 4 KiB, with lower p50; 4 was no better.
pub const BATCH: usize = 8;

pub struct Batch {
    /// Bytes per slot: `max_datagram_bytes + 1`.
    slot: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    /// The kernel's descriptions of the slots, kept between calls so a call
    /// does not zero and rebuild them (at one or two datagrams per wake-up,
    /// that setup would cost as much as the datagram).
    recv_iov: Vec<libc::iovec>,
    recv_hdrs: Vec<libc::mmsghdr>,
    send_iov: Vec<libc::iovec>,
    send_hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside the headers only ever point into this
// struct's own heap buffers (never resized after `new`, and re-derived before
// every call), so the struct moves between threads as one unit.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(slot: usize) -> Batch {
        // SAFETY: these C structs are plain data; all-zero is a valid value for each.
        let (ss, iov, hdr): (libc::sockaddr_storage, libc::iovec, libc::mmsghdr) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed(), std::mem::zeroed()) };
        Batch {
            slot,
            data: vec![0; slot * BATCH],
            addrs: vec![ss; BATCH],
            recv_iov: vec![iov; BATCH],
            recv_hdrs: vec![hdr; BATCH],
            send_iov: vec![iov; BATCH],
            send_hdrs: vec![hdr; BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `WouldBlock` when none is queued.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let fd = sock.as_raw_fd();
        sock.try_io(Interest::READABLE, || {
            let (data, addrs, iov) = (
                self.data.as_mut_ptr(),
                self.addrs.as_mut_ptr(),
                self.recv_iov.as_mut_ptr(),
            );
            for (i, h) in self.recv_hdrs.iter_mut().enumerate() {
                // SAFETY: i < BATCH, so every pointer stays inside its buffer.
                unsafe {
                    *iov.add(i) = libc::iovec {
                        iov_base: data.add(i * self.slot).cast(),
                        iov_len: self.slot,
                    };
                    h.msg_hdr.msg_name = addrs.add(i).cast();
                    h.msg_hdr.msg_iov = iov.add(i);
                }
                h.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the headers describe BATCH writable slots and address buffers of the stated sizes.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.recv_hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as usize)
            }
        })
    }

    /// Datagram `i` of the last receive: its source (None if the kernel gave
    /// an address family we do not know) and its bytes, which may be edited in place.
    pub fn datagram(&mut self, i: usize) -> (Option<SocketAddr>, &mut [u8]) {
        let h = &self.recv_hdrs[i];
        let src = to_socket_addr(&self.addrs[i], h.msg_hdr.msg_namelen);
        let (at, len) = (i * self.slot, h.msg_len as usize);
        (src, &mut self.data[at..at + len])
    }

    /// Sends datagrams `which` (indices from the last receive) back to their
    /// sources. Returns how many of them, from the front, were sent; an error
    /// is about `which[0]` (nothing was sent).
    pub fn send(&mut self, sock: &UdpSocket, which: &[usize]) -> io::Result<usize> {
        let fd = sock.as_raw_fd();
        let n = which.len().min(BATCH);
        sock.try_io(Interest::WRITABLE, || {
            let (data, addrs, iov) = (
                self.data.as_mut_ptr(),
                self.addrs.as_mut_ptr(),
                self.send_iov.as_mut_ptr(),
            );
            for (k, &i) in which[..n].iter().enumerate() {
                let r = &self.recv_hdrs[i];
                let h = &mut self.send_hdrs[k];
                // SAFETY: i, k < BATCH; the reply is the received bytes, sent to the address they came from.
                unsafe {
                    *iov.add(k) = libc::iovec {
                        iov_base: data.add(i * self.slot).cast(),
                        iov_len: r.msg_len as usize,
                    };
                    h.msg_hdr.msg_name = addrs.add(i).cast();
                    h.msg_hdr.msg_iov = iov.add(k);
                }
                h.msg_hdr.msg_namelen = r.msg_hdr.msg_namelen;
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first n headers describe valid buffers and addresses.
            let r =
                unsafe { libc::sendmmsg(fd, self.send_hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as usize)
            }
        })
    }
}

/// The source address the kernel wrote, for IPv4 and IPv6.
fn to_socket_addr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
