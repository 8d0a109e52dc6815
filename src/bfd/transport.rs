//! BFD's UDP sockets: the shared listening sockets on port 3784 (single hop,
//! RFC 5881) and 4784 (multihop, RFC 5883) that report each packet's TTL or
//! Hop Limit, and a session's sending socket (TTL 255, source port from the
//! RFC's 49152–65535, the same port for the session's life).

use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// RFC 5881 section 4: single-hop Control packets go to this port.
pub const SINGLE_HOP_PORT: u16 = 3784;
/// RFC 5883 section 5: multihop Control packets go to this port.
pub const MULTIHOP_PORT: u16 = 4784;
/// RFC 5881 section 4: the source port of a session's packets.
pub const SOURCE_PORTS: RangeInclusive<u16> = 49152..=65535;
/// RFC 5881 section 5: single-hop packets are sent with TTL 255 and
/// received only with TTL 255 (GTSM, RFC 5082); we send multihop ones with
/// 255 as well.
pub const TTL: u8 = 255;
/// Larger than any Control packet (24 octets, at most 255 with authentication).
const RECEIVE_BUFFER: usize = 512;

/// Single hop or multihop: the port, and whether the TTL is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hops {
    Single,
    Multi,
}

impl Hops {
    pub fn port(self) -> u16 {
        match self {
            Hops::Single => SINGLE_HOP_PORT,
            Hops::Multi => MULTIHOP_PORT,
        }
    }
}

/// One datagram as received: payload length, sender, TTL or Hop Limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub len: usize,
    pub from: IpAddr,
    pub ttl: Option<u8>,
}

/// A listening socket of one family on `hops`' port, asking the kernel for
/// every packet's TTL (IP_RECVTTL) or Hop Limit (IPV6_RECVHOPLIMIT).
pub fn listen(ipv6: bool, hops: Hops) -> io::Result<UdpSocket> {
    let (domain, any) = if ipv6 {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    } else {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if ipv6 {
        socket.set_only_v6(true)?;
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)?;
    } else {
        setsockopt(&socket, sockopt::Ipv4RecvTtl, &true).map_err(io::Error::from)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(any, hops.port()).into())?;
    UdpSocket::from_std(socket.into())
}

/// Receives one datagram into `buf` with its TTL or Hop Limit.
pub async fn receive(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    socket
        .async_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let mut cmsg = nix::cmsg_space!(libc::c_int, libc::c_int);
            let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                .map_err(io::Error::from)?;
            let mut ttl = None;
            for c in msg.cmsgs().map_err(io::Error::from)? {
                match c {
                    ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                        ttl = u8::try_from(t).ok()
                    }
                    _ => {}
                }
            }
            let from = msg
                .address
                .and_then(|a: SockaddrStorage| {
                    a.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                })
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a sender address"))?;
            Ok(Datagram { len: msg.bytes, from, ttl })
        })
        .await
}

/// A buffer large enough for any Control packet.
pub fn receive_buffer() -> Vec<u8> {
    vec![0; RECEIVE_BUFFER]
}

/// Whether a datagram may be a packet for `hops` (RFC 5881 section 5: a
/// single-hop packet arrives with TTL 255, or it came from further away).
pub fn ttl_acceptable(hops: Hops, ttl: Option<u8>) -> bool {
    match hops {
        Hops::Single => ttl == Some(TTL),
        Hops::Multi => true,
    }
}

/// A session's sending socket: connected to the peer's port, TTL 255, bound
/// to `local` (or the unspecified address) on a source port from
/// [`SOURCE_PORTS`], starting the search at `seed`'s place in the range.
pub fn sender(local: Option<IpAddr>, peer: IpAddr, hops: Hops, seed: u64) -> io::Result<UdpSocket> {
    let ipv6 = peer.is_ipv6();
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let local =
        local.unwrap_or(if ipv6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) });
    let span = u64::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "every BFD source port is in use");
    for step in 0..span {
        let port = SOURCE_PORTS.start() + ((seed.wrapping_add(step)) % span) as u16;
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if ipv6 {
            socket.set_only_v6(true)?;
            socket.set_unicast_hops_v6(u32::from(TTL))?;
        } else {
            socket.set_ttl_v4(u32::from(TTL))?;
        }
        socket.set_nonblocking(true)?;
        match socket.bind(&SocketAddr::new(local, port).into()) {
            Ok(()) => {
                socket.connect(&SocketAddr::new(peer, hops.port()).into())?;
                return UdpSocket::from_std(socket.into());
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// A random 64-bit value from the standard library's hasher keys (no
/// generator crate needed for discriminators, ports and jitter seeds).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}
