//! Windows: the destination address of each received datagram, so multicast
//! listeners sharing a port can tell their group's datagrams from another's.
//! IP_PKTINFO / IPV6_PKTINFO make Winsock attach the destination as a
//! control message, which only `WSARecvMsg` returns (it is an extension
//! function, resolved per socket with SIO_GET_EXTENSION_FUNCTION_POINTER).
//!
//! Written against windows-sys rather than taken from a crate: socket2's
//! `recvmsg` is Unix-only, and quinn-udp's socket setup reads IPV6_V6ONLY on
//! IPv4 sockets too, which Wine (our Windows test bed) refuses.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::windows::io::AsRawSocket;

use socket2::{SockAddr, Socket};
use windows_sys::Win32::Networking::WinSock;

/// `WSARecvMsg` of one socket, with destination addresses switched on.
pub struct DestAddrs {
    recvmsg: unsafe extern "system" fn(
        WinSock::SOCKET,
        *mut WinSock::WSAMSG,
        *mut u32,
        *mut windows_sys::Win32::System::IO::OVERLAPPED,
        WinSock::LPWSAOVERLAPPED_COMPLETION_ROUTINE,
    ) -> i32,
}

/// One received datagram.
pub struct Received {
    pub len: usize,
    pub src: SocketAddr,
    /// Where it was sent (the group, for multicast); None if Winsock did not say.
    pub dst: Option<IpAddr>,
}

impl DestAddrs {
    /// Switches IP_PKTINFO (or IPV6_PKTINFO) on and resolves `WSARecvMsg` for `sock`.
    pub fn enable(sock: &Socket, v6: bool) -> io::Result<DestAddrs> {
        let (level, name) = if v6 {
            (WinSock::IPPROTO_IPV6, WinSock::IPV6_PKTINFO)
        } else {
            (WinSock::IPPROTO_IP, WinSock::IP_PKTINFO)
        };
        super::raw::set(sock, level, name, 1)?;
        let guid = WinSock::WSAID_WSARECVMSG;
        let mut f: WinSock::LPFN_WSARECVMSG = None;
        let mut n = 0u32;
        // SAFETY: in and out buffers are a GUID and a function pointer, with their sizes.
        let rc = unsafe {
            WinSock::WSAIoctl(
                sock.as_raw_socket() as WinSock::SOCKET,
                WinSock::SIO_GET_EXTENSION_FUNCTION_POINTER,
                (&guid as *const windows_sys::core::GUID).cast(),
                size_of_val(&guid) as u32,
                (&mut f as *mut WinSock::LPFN_WSARECVMSG).cast(),
                size_of_val(&f) as u32,
                &mut n,
                std::ptr::null_mut(),
                None,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let recvmsg = f.ok_or_else(|| io::Error::other("Winsock has no WSARecvMsg"))?;
        Ok(DestAddrs { recvmsg })
    }

    /// Receives one datagram into `buf` without blocking (`WouldBlock` when none is queued).
    pub fn recv(&self, sock: &impl AsRawSocket, buf: &mut [u8]) -> io::Result<Received> {
        // Room for one IN6_PKTINFO control message (16-byte header + 20 bytes), 8-aligned.
        let mut control = [0u64; 8];
        let mut data = WinSock::WSABUF {
            len: buf.len().min(u32::MAX as usize) as u32,
            buf: buf.as_mut_ptr(),
        };
        let mut len = 0u32;
        let mut msg = WinSock::WSAMSG {
            name: std::ptr::null_mut(),
            namelen: 0,
            lpBuffers: &mut data,
            dwBufferCount: 1,
            Control: WinSock::WSABUF {
                len: size_of_val(&control) as u32,
                buf: control.as_mut_ptr().cast(),
            },
            dwFlags: 0,
        };
        // SAFETY: `msg` points at live buffers of the stated sizes; socket2 hands
        // us a zeroed sockaddr storage and its size, and keeps the length we set.
        let ((), src) = unsafe {
            SockAddr::try_init(|storage, storage_len| {
                msg.name = storage.cast();
                msg.namelen = *storage_len;
                let rc = (self.recvmsg)(
                    sock.as_raw_socket() as WinSock::SOCKET,
                    &mut msg,
                    &mut len,
                    std::ptr::null_mut(),
                    None,
                );
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                *storage_len = msg.namelen;
                Ok(())
            })?
        };
        let src = src
            .as_socket()
            .ok_or_else(|| io::Error::other("datagram from a non-IP address"))?;
        Ok(Received {
            len: len as usize,
            src,
            dst: destination(&control, msg.Control.len as usize),
        })
    }
}

/// The destination in the control messages Winsock wrote (`used` bytes of `control`).
fn destination(control: &[u64; 8], used: usize) -> Option<IpAddr> {
    let bytes: &[u8] = {
        // SAFETY: a u64 array viewed as its bytes.
        let all = unsafe {
            std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), size_of_val(control))
        };
        &all[..used.min(all.len())]
    };
    // WSA_CMSGHDR_ALIGN / WSA_CMSGDATA_ALIGN: 8 on 64-bit Windows.
    const ALIGN: usize = align_of::<usize>();
    let header = size_of::<WinSock::CMSGHDR>().next_multiple_of(ALIGN);
    let mut at = 0;
    while at + header <= bytes.len() {
        // SAFETY: a whole header fits in `bytes` from `at`.
        let h =
            unsafe { std::ptr::read_unaligned(bytes[at..].as_ptr().cast::<WinSock::CMSGHDR>()) };
        if h.cmsg_len < header || at + h.cmsg_len > bytes.len() {
            return None;
        }
        let payload = &bytes[at + header..at + h.cmsg_len];
        match (h.cmsg_level, h.cmsg_type) {
            (WinSock::IPPROTO_IP, WinSock::IP_PKTINFO)
                if payload.len() >= size_of::<WinSock::IN_PKTINFO>() =>
            {
                // ipi_addr comes first, in network byte order.
                let a: [u8; 4] = payload[..4].try_into().ok()?;
                return Some(IpAddr::V4(Ipv4Addr::from(a)));
            }
            (WinSock::IPPROTO_IPV6, WinSock::IPV6_PKTINFO)
                if payload.len() >= size_of::<WinSock::IN6_PKTINFO>() =>
            {
                let a: [u8; 16] = payload[..16].try_into().ok()?;
                return Some(IpAddr::V6(Ipv6Addr::from(a)));
            }
            _ => {}
        }
        at += h.cmsg_len.next_multiple_of(ALIGN);
    }
    None
}
