//! Batched datagram I/O for `udp_echo` on Linux: one `recvmmsg` takes up to
//! [`BATCH`] datagrams (each into its own `max_datagram_bytes + 1` slot, so
//! an oversized one still shows as oversized), and one `sendmmsg` sends every
//! reply of the batch back to its source. Both run under tokio's readiness
//! (`try_io`), so a call that would block clears readiness and the service
//! waits in `readable()` like any tokio socket.
//!
//! Buffers live on the heap in plain arrays (bytes, source addresses,
//! lengths); the kernel's `mmsghdr`/`iovec` arrays, which hold raw pointers
//! into them, are built on the stack for each call and never kept, so the
//! service future stays `Send`. Slots are allocated zeroed and lazily paged
//! in, so memory follows the datagram sizes actually received.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call: enough to amortise the syscall, small enough
/// that one turn of the loop stays short.
pub const BATCH: usize = 32;

pub struct Batch {
    /// Bytes per slot: `max_datagram_bytes + 1`.
    slot: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    lens: Vec<usize>,
}

impl Batch {
    pub fn new(slot: usize) -> Batch {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Batch {
            slot,
            data: vec![0; slot * BATCH],
            addrs: vec![zero; BATCH],
            addr_lens: vec![0; BATCH],
            lens: vec![0; BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `WouldBlock` when none is queued.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let fd = sock.as_raw_fd();
        let n = sock.try_io(Interest::READABLE, || {
            // SAFETY: all-zero is valid for these C structs; every pointer set below points into
            // self's buffers, which outlive the call and are not otherwise borrowed during it.
            let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for i in 0..BATCH {
                iov[i] = libc::iovec {
                    iov_base: self.data[i * self.slot..].as_mut_ptr().cast(),
                    iov_len: self.slot,
                };
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut iov[i];
                h.msg_iovlen = 1;
            }
            // SAFETY: msgs describes BATCH valid, writable buffers of the stated sizes.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            for (i, m) in msgs.iter().enumerate().take(r as usize) {
                self.lens[i] = m.msg_len as usize;
                self.addr_lens[i] = m.msg_hdr.msg_namelen;
            }
            Ok(r as usize)
        })?;
        Ok(n)
    }

    /// Datagram `i` of the last receive: its source (None if the kernel gave
    /// an address family we do not know) and its bytes, which may be edited in place.
    pub fn datagram(&mut self, i: usize) -> (Option<SocketAddr>, &mut [u8]) {
        let src = to_socket_addr(&self.addrs[i], self.addr_lens[i]);
        let at = i * self.slot;
        (src, &mut self.data[at..at + self.lens[i]])
    }

    /// Sends datagrams `which` (indices from the last receive) back to their
    /// sources. Returns how many of them, from the front, were sent; an error
    /// is about `which[0]` (nothing was sent).
    pub fn send(&mut self, sock: &UdpSocket, which: &[usize]) -> io::Result<usize> {
        let fd = sock.as_raw_fd();
        let n = which.len().min(BATCH);
        sock.try_io(Interest::WRITABLE, || {
            // SAFETY: as in recv; the pointers refer to self's buffers for the duration of the call.
            let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (k, &i) in which[..n].iter().enumerate() {
                iov[k] = libc::iovec {
                    iov_base: self.data[i * self.slot..].as_mut_ptr().cast(),
                    iov_len: self.lens[i],
                };
                let h = &mut msgs[k].msg_hdr;
                h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = self.addr_lens[i];
                h.msg_iov = &mut iov[k];
                h.msg_iovlen = 1;
            }
            // SAFETY: msgs describes n valid buffers and addresses.
            let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0) };
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
