//! setsockopt/getsockopt of an `int` option that socket2 does not wrap
//! (SO_RCVLOWAT, SO_DONTROUTE, TCP_FASTOPEN, IP(V6)_MULTICAST_ALL on Unix;
//! SO_EXCLUSIVEADDRUSE, IPV6_TCLASS, SIO_UDP_CONNRESET on Windows), on the
//! same descriptor socket2 built.

use std::io;

use socket2::Socket;

#[cfg(unix)]
pub fn set(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is live for the call; the value is a plain c_int.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(unix)]
pub fn get(sock: &Socket, level: i32, name: i32) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: as above; `len` tells the kernel the buffer size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(windows)]
pub fn set(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock;
    // SAFETY: the socket is live for the call; the value is a plain BOOL/int.
    let rc = unsafe {
        WinSock::setsockopt(
            sock.as_raw_socket() as usize,
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as i32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(windows)]
pub fn get(sock: &Socket, level: i32, name: i32) -> io::Result<i32> {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock;
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as i32;
    // SAFETY: as above.
    let rc = unsafe {
        WinSock::getsockopt(
            sock.as_raw_socket() as usize,
            level,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIO_UDP_CONNRESET = FALSE: no WSAECONNRESET on receive after an ICMP port unreachable.
#[cfg(windows)]
pub fn udp_connreset_off(sock: &Socket) -> io::Result<()> {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock;
    let off: u32 = 0; // BOOL FALSE
    let mut returned = 0u32;
    // SAFETY: the socket is live; the input is a 4-byte BOOL; no output buffer, no overlapped I/O.
    let rc = unsafe {
        WinSock::WSAIoctl(
            sock.as_raw_socket() as usize,
            WinSock::SIO_UDP_CONNRESET,
            (&off as *const u32).cast(),
            size_of::<u32>() as u32,
            std::ptr::null_mut(),
            0,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
