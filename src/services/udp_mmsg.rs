//! Batched datagram I/O for `udp_echo` on Linux: one `recvmmsg` takes up to
//! [`BATCH`] datagrams (each into its own `max_datagram_bytes + 1` slot, so
//! an oversized one still shows as oversized), and one `sendmmsg` sends every
//! reply of the batch back to its source. Both run under tokio's readiness
//! (`try_io`), so a call that would block clears readiness and the service
//! waits in `readable()` like any tokio socket.
//!
//! Replies use UDP GSO (`UDP_SEGMENT`) where they can: consecutive replies to
//! one source, all of one size but a shorter last, go as one message of
//! several iovecs, so the stack is walked once for the run and the kernel (or
//! the NIC) splits it into the same datagrams. A route that refuses a segment
//! size (over its MTU: EINVAL; no offload: EIO) lowers the largest size this
//! batch coalesces and the message is sent again one datagram per message, so
//! a refusal costs one failed call and loses nothing.
//!
//! Buffers live on the heap in plain arrays (slot bytes, source addresses)
//! and hold no pointers. The kernel's `mmsghdr`/`iovec` descriptions of them
//! are built per call on the stack, as quinn-udp does: a few hundred bytes of
//! stores next to a system call, and no raw pointer outlives the call (so
//! `Batch` is `Send` without an `unsafe impl`). Slots are allocated zeroed
//! and lazily paged in, so memory follows the datagram sizes actually received.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call: enough to amortise the syscall, few enough
/// that the first reply of a batch is not held back long by the copies of
/// the rest. With the C generator's 32 datagrams in flight, 8 was always
/// full (0.26 syscalls per message at 64 B against the C echo's 0.14, whose
/// batches of 64 averaged 14.5); 16 averages 13.7 (0.15 per message; 4 KiB:
/// 1.11 -> 0.73) and cut server CPU per message at 64 B from 1.12x to 1.06x
/// the C echo's (perf stat -e 'syscalls:sys_enter_*'). 32 was tried only
/// with a readiness change since dropped, so it is not ruled out.
pub const BATCH: usize = 16;

/// The slots of one batch and what the last receive put in them.
pub struct Batch {
    /// Bytes per slot: `max_datagram_bytes + 1`.
    slot: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    /// Bytes of each datagram of the last receive.
    lens: [usize; BATCH],
    /// Length of each source address of the last receive.
    namelens: [libc::socklen_t; BATCH],
    /// Largest datagram that replies may carry in a GSO message (0: GSO off).
    gso_max: usize,
}

/// An all-zero `mmsghdr`, to be pointed at one slot.
fn empty_header() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain C data (integers and raw pointers); all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// An `iovec` describing all of `buf`.
fn iovec_of(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }
}

impl Batch {
    /// Slots of `slot` bytes for datagrams of `sock`, whose replies use UDP
    /// GSO if `gso` and the kernel has it (probed as quinn-udp does: reading the option).
    pub fn new(slot: usize, sock: &UdpSocket, gso: bool) -> Batch {
        // SAFETY: sockaddr_storage is plain C data; all-zero is a valid value.
        let ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Batch {
            slot,
            data: vec![0; slot * BATCH],
            addrs: vec![ss; BATCH],
            lens: [0; BATCH],
            namelens: [0; BATCH],
            gso_max: if gso && gso_supported(sock.as_raw_fd()) {
                u16::MAX as usize
            } else {
                0
            },
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `WouldBlock` when none is queued.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let fd = sock.as_raw_fd();
        sock.try_io(Interest::READABLE, || {
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH];
            let mut hdrs = [empty_header(); BATCH];
            let slots = self.data.chunks_exact_mut(self.slot);
            for (((v, h), buf), addr) in iov
                .iter_mut()
                .zip(&mut hdrs)
                .zip(slots)
                .zip(&mut self.addrs)
            {
                *v = iovec_of(buf);
                h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iovlen = 1;
            }
            for (h, v) in hdrs.iter_mut().zip(&mut iov) {
                h.msg_hdr.msg_iov = v;
            }
            // SAFETY: each of the BATCH headers points at its own live iovec (a
            // writable slot of `slot` bytes) and address buffer of the stated
            // sizes, all borrowed from `self` or this frame for the whole call.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            let got = r as usize;
            for (i, h) in hdrs[..got].iter().enumerate() {
                self.lens[i] = h.msg_len as usize;
                self.namelens[i] = h.msg_hdr.msg_namelen;
            }
            Ok(got)
        })
    }

    /// Datagram `i` of the last receive: its source (None if the kernel gave
    /// an address family we do not know) and its bytes, which may be edited in place.
    pub fn datagram(&mut self, i: usize) -> (Option<SocketAddr>, &mut [u8]) {
        let src = to_socket_addr(&self.addrs[i], self.namelens[i]);
        let (at, len) = (i * self.slot, self.lens[i]);
        (src, &mut self.data[at..at + len])
    }

    /// Sends datagrams `which` (indices from the last receive) back to their
    /// sources. Returns how many of them, from the front, were sent; an error
    /// is about `which[0]` (nothing was sent).
    pub fn send(&mut self, sock: &UdpSocket, which: &[usize]) -> io::Result<usize> {
        let fd = sock.as_raw_fd();
        let which = &which[..which.len().min(BATCH)];
        sock.try_io(Interest::WRITABLE, || {
            loop {
                match self.sendmmsg(fd, which) {
                    Ok(sent) => return Ok(sent),
                    Err((e, Some(segment))) if gso_refused(&e) => self.refuse_gso(segment, &e),
                    Err((e, _)) => return Err(e),
                }
            }
        })
    }

    /// One `sendmmsg` of `which`: a run of replies to one source, all of one
    /// size but the last, goes as one GSO message while GSO may carry it. On
    /// error, also the segment size of the first message if it was a GSO one.
    fn sendmmsg(
        &mut self,
        fd: RawFd,
        which: &[usize],
    ) -> Result<usize, (io::Error, Option<usize>)> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // First every iovec, then the headers: a message of several datagrams
        // points at its run of iovecs through one pointer into the whole array.
        for (v, &i) in iov.iter_mut().zip(which) {
            let at = i * self.slot;
            *v = iovec_of(&mut self.data[at..at + self.lens[i]]);
        }
        // Datagrams carried by each message, and the GSO segment size of the first.
        let mut carried = [0usize; BATCH];
        let mut msgs = 0;
        let mut k = 0;
        while k < which.len() {
            carried[msgs] = self.gso_run(&which[k..]);
            k += carried[msgs];
            msgs += 1;
        }
        let mut hdrs = [empty_header(); BATCH];
        let mut control = [Control([0; CONTROL]); BATCH];
        let first_segment = (carried[0] > 1).then(|| self.lens[which[0]]);
        let base = iov.as_mut_ptr();
        let mut k = 0;
        for ((h, c), &run) in hdrs.iter_mut().zip(&mut control).zip(&carried[..msgs]) {
            let first = which[k];
            let h = &mut h.msg_hdr;
            h.msg_name = (&mut self.addrs[first] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.namelens[first];
            h.msg_iov = base.wrapping_add(k);
            h.msg_iovlen = run;
            if run > 1 {
                c.segment(h, self.lens[first] as u16);
            }
            k += run;
        }
        // SAFETY: the first `msgs` headers point at live iovecs (each the received
        // bytes of one slot), at the address of their first datagram's source and,
        // for GSO ones, at their own control buffer, all borrowed from `self` or
        // this frame for the whole call; the kernel only reads them.
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), msgs as libc::c_uint, 0) };
        if r < 0 {
            return Err((io::Error::last_os_error(), first_segment));
        }
        Ok(carried[..r as usize].iter().sum())
    }

    /// How many datagrams from the front of `which` one GSO message can carry:
    /// the same source, each as long as the first (the last may be shorter),
    /// within the kernel's limits; 1 when GSO is off or the first is too big for it.
    fn gso_run(&self, which: &[usize]) -> usize {
        let first = which[0];
        let segment = self.lens[first];
        if segment == 0 || segment > self.gso_max {
            return 1;
        }
        let src = self.addr_bytes(first);
        let mut run = 1;
        let mut bytes = segment;
        for &i in &which[1..] {
            let len = self.lens[i];
            if len == 0 || len > segment || bytes + len > GSO_MAX_BYTES || self.addr_bytes(i) != src
            {
                break;
            }
            run += 1;
            bytes += len;
            if len < segment {
                break; // only the last segment may be short
            }
        }
        run
    }

    /// The source address of datagram `i` as the kernel wrote it.
    fn addr_bytes(&self, i: usize) -> &[u8] {
        let len = (self.namelens[i] as usize).min(size_of::<libc::sockaddr_storage>());
        // SAFETY: sockaddr_storage is plain C data, `len` bytes of it are in bounds,
        // and the borrow of `self` keeps it alive and unchanged.
        unsafe {
            std::slice::from_raw_parts(
                (&self.addrs[i] as *const libc::sockaddr_storage).cast(),
                len,
            )
        }
    }

    /// The kernel refused a GSO message of `segment`-byte datagrams: EIO when
    /// the route cannot offload it (quinn-udp turns GSO off for good then),
    /// EINVAL or EMSGSIZE when the segment is over the route's MTU. Datagrams
    /// of that size and larger go one per message from now on.
    fn refuse_gso(&mut self, segment: usize, e: &io::Error) {
        let before = self.gso_max;
        self.gso_max = if e.raw_os_error() == Some(libc::EIO) {
            0
        } else {
            segment - 1
        };
        tracing::debug!(segment, error = %e, gso_max_before = before, gso_max = self.gso_max,
            "UDP segmentation offload refused; such replies are sent one datagram per message");
    }
}

/// `UDP_SEGMENT` (linux/udp.h, since 4.18): one send carries several datagrams
/// of one size to one destination, and the stack is walked once for all of them.
const UDP_SEGMENT: libc::c_int = 103;

/// Bytes of one GSO message: the largest UDP payload over IPv4 (65,535 - 20 - 8).
const GSO_MAX_BYTES: usize = 65_507;

// Every kernel with UDP_SEGMENT takes at least 64 segments per message (UDP_MAX_SEGMENTS).
const _: () = assert!(BATCH <= 64);

/// Bytes of one control buffer: CMSG_SPACE of a u16, rounded up.
const CONTROL: usize = 32;

/// One message's control buffer, aligned as `cmsghdr` must be.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL]);

impl Control {
    /// Points `h` at this buffer holding one `UDP_SEGMENT` of `segment` bytes.
    fn segment(&mut self, h: &mut libc::msghdr, segment: u16) {
        h.msg_control = self.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
        let (space, len) = unsafe { (libc::CMSG_SPACE(2), libc::CMSG_LEN(2)) };
        debug_assert!(space as usize <= CONTROL);
        h.msg_controllen = space as _;
        // SAFETY: `h` points at this buffer (8-aligned, CONTROL >= CMSG_SPACE(2)
        // bytes), so CMSG_FIRSTHDR is a cmsghdr inside it with room for its data.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = len as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
        }
    }
}

/// Whether this kernel knows `UDP_SEGMENT` (4.18 and later).
fn gso_supported(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and sized as the call states.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

/// Whether a send error may be the kernel refusing GSO rather than the datagrams.
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE)
    )
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
