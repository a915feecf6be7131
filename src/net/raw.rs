//! setsockopt/getsockopt of an `int` option that socket2 does not wrap
//! (SO_RCVLOWAT, SO_DONTROUTE, TCP_FASTOPEN on Unix;
//! SO_EXCLUSIVEADDRUSE, IPV6_TCLASS, SIO_UDP_CONNRESET on Windows), on the
//! same descriptor socket2 built.

use std::io;

use socket2::Socket;

#[cfg(unix)]
pub fn set(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    set_value(sock, level, name, &value)
}

/// setsockopt with `value` as the option's bytes (a c_int, or a struct such as
/// `sock_fprog` that the kernel copies before returning).
#[cfg(unix)]
fn set_value<T>(sock: &Socket, level: i32, name: i32, value: &T) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is live for the call; `value` is an initialised T
    // of the size given, and whatever it points to outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
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

/// Steers new connections of this socket's SO_REUSEPORT group to the socket
/// at index 1 (a classic BPF program attached with SO_ATTACH_REUSEPORT_CBPF).
/// The kernel keeps the group's sockets in join order and moves the last one
/// into a hole, so with an old listener and its replacement beside it, index
/// 1 is the replacement: the old one's queue gets nothing new while it
/// accepts what it already holds. With one socket the index is out of range
/// and the kernel falls back to its hash, which picks that socket.
#[cfg(target_os = "linux")]
pub fn steer_to_newest(sock: &Socket) -> io::Result<()> {
    let mut code = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 1,
    }];
    attach_reuseport_cbpf(sock, &mut code)
}

/// Attaches a classic BPF program that picks the socket of this socket's
/// SO_REUSEPORT group (SO_ATTACH_REUSEPORT_CBPF): the TCP steering above and
/// the UDP socket sets' guard (`reuseport_udp`).
#[cfg(target_os = "linux")]
pub fn attach_reuseport_cbpf(sock: &Socket, code: &mut [libc::sock_filter]) -> io::Result<()> {
    // asm-generic/socket.h; the architectures with their own numbering are not steered.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    const SO_ATTACH_REUSEPORT_CBPF: i32 = 51;
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )))]
    return Err(io::Error::from(io::ErrorKind::Unsupported));
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // `prog` and the instructions it points to outlive the call; the kernel copies them.
    set_value(sock, libc::SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog)
}

/// SO_DETACH_REUSEPORT_BPF (Linux 5.3): back to the kernel's hash once the
/// old listener is gone.
#[cfg(target_os = "linux")]
pub fn unsteer(sock: &Socket) -> io::Result<()> {
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    return set(sock, libc::SOL_SOCKET, 68, 0); // SO_DETACH_REUSEPORT_BPF, asm-generic
    #[allow(unreachable_code)]
    {
        let _ = sock;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}
