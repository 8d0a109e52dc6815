//! The system calls of the userspace tunnel's data path that std, socket2
//! and tun-rs do not offer: `sendmmsg` and `recvmmsg` (one system call per
//! batch of packets on the raw socket) and `poll` with a timeout (so the
//! blocking loops notice when they are to stop). The only unsafe code of
//! the tunnel lives here.
#![allow(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// One packet of a send batch: `len` bytes at `offset` of the arena, to `dest`.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing {
    pub offset: usize,
    pub len: usize,
    pub dest: Ipv4Addr,
}

/// The message headers `sendmmsg`/`recvmmsg` read, kept between calls so
/// a batch allocates nothing. Holds raw pointers only while a call runs.
pub struct MmsgScratch {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
}

// SAFETY: the raw pointers inside are rebuilt before every call and never
// dereferenced outside one, so the scratch space may move between threads.
unsafe impl Send for MmsgScratch {}

impl MmsgScratch {
    pub fn new(batch: usize) -> Self {
        MmsgScratch {
            headers: Vec::with_capacity(batch),
            iovecs: Vec::with_capacity(batch),
            addrs: Vec::with_capacity(batch),
        }
    }

    fn clear(&mut self) {
        self.headers.clear();
        self.iovecs.clear();
        self.addrs.clear();
    }
}

fn sockaddr(dest: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(dest.octets()) },
        sin_zero: [0; 8],
    }
}

/// Sends `packets` (slices of `arena`) with one `sendmmsg`; returns how
/// many the kernel took (at least one), or the error of the first.
pub fn send_batch(
    fd: BorrowedFd<'_>,
    arena: &[u8],
    packets: &[Outgoing],
    scratch: &mut MmsgScratch,
) -> io::Result<usize> {
    scratch.clear();
    for p in packets {
        let bytes = &arena[p.offset..p.offset + p.len];
        scratch.iovecs.push(libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() });
        scratch.addrs.push(sockaddr(p.dest));
    }
    for i in 0..packets.len() {
        // SAFETY: all-zero octets are a valid `msghdr`/`mmsghdr` (null
        // pointers, zero lengths).
        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        h.msg_hdr.msg_name = (&mut scratch.addrs[i] as *mut libc::sockaddr_in).cast();
        h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_hdr.msg_iov = &mut scratch.iovecs[i];
        h.msg_hdr.msg_iovlen = 1;
        scratch.headers.push(h);
    }
    // SAFETY: `headers` holds `packets.len()` initialised entries whose
    // pointers reach into `scratch.addrs`, `scratch.iovecs` (not resized
    // since) and `arena` (borrowed for the call); the kernel only reads them.
    let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), scratch.headers.as_mut_ptr(), packets.len() as libc::c_uint, 0) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc as usize) }
}

/// Receives up to `lens.len()` datagrams without waiting, the i-th into
/// `arena[i * slot..(i + 1) * slot]`, its length into `lens[i]`; returns how
/// many (`WouldBlock` when none is queued). A datagram longer than `slot`
/// is cut short.
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    arena: &mut [u8],
    slot: usize,
    lens: &mut [usize],
    scratch: &mut MmsgScratch,
) -> io::Result<usize> {
    scratch.clear();
    let n = lens.len().min(arena.len() / slot);
    for chunk in arena.chunks_exact_mut(slot).take(n) {
        scratch.iovecs.push(libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: slot });
    }
    for i in 0..n {
        // SAFETY: all-zero octets are a valid `mmsghdr`.
        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        h.msg_hdr.msg_iov = &mut scratch.iovecs[i];
        h.msg_hdr.msg_iovlen = 1;
        scratch.headers.push(h);
    }
    // SAFETY: `headers` holds `n` initialised entries, each pointing at one
    // iovec over a distinct `slot`-byte chunk of `arena`, which is mutably
    // borrowed for the call; no timeout pointer is passed.
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            scratch.headers.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = rc as usize;
    for (len, h) in lens.iter_mut().zip(&scratch.headers[..got]) {
        *len = (h.msg_len as usize).min(slot);
    }
    Ok(got)
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one live, initialised pollfd for the call's duration.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    match rc {
        r if r < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}
