//! The socket options std, tokio and socket2 do not offer: TCP-MD5
//! signatures (RFC 2385) and the minimum TTL of GTSM (RFC 5082). The only
//! unsafe code of the BGP speaker lives here.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::{c_int, c_void, socklen_t};

/// `TCP_MD5SIG_MAXKEYLEN` of `<linux/tcp.h>`.
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` of `<linux/tcp.h>`, 216 octets.
#[repr(C)]
struct TcpMd5Sig {
    tcpm_addr: libc::sockaddr_storage,
    tcpm_flags: u8,
    tcpm_prefixlen: u8,
    tcpm_keylen: u16,
    tcpm_ifindex: c_int,
    tcpm_key: [u8; MD5_MAX_KEY_LEN],
}

const _: () = assert!(size_of::<TcpMd5Sig>() == 216);

fn setsockopt<T>(fd: BorrowedFd<'_>, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised `T` for the duration of
    // the call and the length passed is exactly its size; the kernel only
    // reads from it. `fd` is a borrowed, open descriptor.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast::<c_void>(), size_of::<T>() as socklen_t)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Sets (or, with an empty key, removes) the TCP-MD5 key for segments to and
/// from `peer` on `fd`: on a connecting socket before `connect`, on a
/// listening socket once per peer. An IPv4 peer on an IPv6 socket is keyed by
/// its IPv4-mapped address, which is how the kernel sees it there.
pub fn set_md5_key(fd: BorrowedFd<'_>, socket_is_ipv6: bool, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a TCP-MD5 key has at most 80 octets"));
    }
    let peer = match peer {
        IpAddr::V4(v4) if socket_is_ipv6 => IpAddr::V6(v4.to_ipv6_mapped()),
        other => other,
    };
    let address = socket2::SockAddr::from(SocketAddr::new(peer, 0));
    // SAFETY: all-zero octets are a valid value of this plain C struct
    // (integers, arrays of integers and a `sockaddr_storage`).
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let len = (address.len() as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `address.as_ptr()` points to at least `address.len()` readable
    // octets, `len` is capped at the destination's size, and the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            address.as_ptr().cast::<u8>(),
            (&mut sig.tcpm_addr as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    sig.tcpm_keylen = key.len() as u16;
    sig.tcpm_key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// GTSM (RFC 5082 section 3): drop received packets whose TTL (hop limit)
/// is below `min_ttl`.
pub fn set_min_ttl(fd: BorrowedFd<'_>, ipv6: bool, min_ttl: u8) -> io::Result<()> {
    let value = c_int::from(min_ttl);
    if ipv6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &value)
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &value)
    }
}
