//! TCP sockets for sessions: the connecting socket (source address, TTL or
//! GTSM, TCP-MD5 before connect) and the listening socket.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::config::PeerConfig;
use super::sockopt;

fn new_socket(ipv6: bool) -> io::Result<TcpSocket> {
    if ipv6 { TcpSocket::new_v6() } else { TcpSocket::new_v4() }
}

/// Sets the outgoing TTL and, with GTSM, the minimum incoming TTL.
pub fn apply_ttl(socket: SockRef<'_>, config: &PeerConfig) -> io::Result<()> {
    let ipv6 = config.remote_addr.is_ipv6();
    // RFC 5082 section 3: "sending BGP packets with a TTL of 255" and
    // accepting only those with a TTL of at least 255 - hops + 1.
    let (ttl, min_ttl) = match (config.ttl_security, config.multihop_ttl) {
        (Some(hops), _) => (255, Some(255u8.saturating_sub(hops.max(1)) + 1)),
        (None, Some(ttl)) => (u32::from(ttl), None),
        // RFC 4271 does not fix the TTL; a directly connected eBGP peer gets 1
        // like the other daemons do, an internal peer the system default.
        (None, None) if !config.is_ibgp() => (1, None),
        (None, None) => return Ok(()),
    };
    if ipv6 {
        socket.set_unicast_hops_v6(ttl)?;
    } else {
        socket.set_ttl_v4(ttl)?;
    }
    if let Some(min_ttl) = min_ttl {
        sockopt::set_min_ttl(socket.as_fd(), ipv6, min_ttl)?;
    }
    Ok(())
}

/// Opens the TCP connection to the peer.
pub async fn connect(config: &PeerConfig) -> io::Result<TcpStream> {
    let ipv6 = config.remote_addr.is_ipv6();
    let socket = new_socket(ipv6)?;
    if let Some(key) = &config.md5_key {
        sockopt::set_md5_key(socket.as_fd(), ipv6, config.remote_addr, key)?;
    }
    apply_ttl(SockRef::from(&socket), config)?;
    if let Some(local) = config.local_addr {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let stream = socket.connect(SocketAddr::new(config.remote_addr, config.remote_port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Binds the listening socket (address reuse, so a restart does not wait for TIME_WAIT).
pub fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(address.is_ipv6())?;
    socket.set_reuseaddr(true)?;
    // The SYN-ACK leaves with the listening socket's TTL, before the
    // accepted socket gets the peer's own: 255 lets a GTSM peer (RFC 5082)
    // accept it, and every later segment uses the peer's setting.
    let listening = SockRef::from(&socket);
    if address.is_ipv6() {
        listening.set_unicast_hops_v6(255)?;
    } else {
        listening.set_ttl_v4(255)?;
    }
    socket.bind(address)?;
    socket.listen(128)
}

/// Sets or removes a peer's TCP-MD5 key on the listening socket.
pub fn set_listener_md5(listener: &TcpListener, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let ipv6 = listener.local_addr()?.is_ipv6();
    sockopt::set_md5_key(listener.as_fd(), ipv6, peer, key.unwrap_or_default())
}
