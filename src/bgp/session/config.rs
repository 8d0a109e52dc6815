//! What one peer's session is configured with. Pure data: the FSM reads it,
//! the peer task reads the transport part (addresses, MD5, TTL).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::bfd::Intervals;
use crate::bgp::packet::Family;

/// The lower bound of the default send hold time (RFC 9687 section 4).
pub const MIN_DEFAULT_SEND_HOLD_TIME: Duration = Duration::from_secs(8 * 60);

/// The configuration of one BGP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's address: the key of the session, and where we connect to.
    pub remote_addr: IpAddr,
    /// TCP port of the peer when we connect (179).
    pub remote_port: u16,
    /// The AS the peer must announce in its OPEN.
    pub peer_as: u32,
    pub local_as: u32,
    pub local_id: Ipv4Addr,
    /// Only wait for the peer to connect (RFC 4271 PassiveTcpEstablishment).
    pub passive: bool,
    /// Hold time we offer, seconds; 0 disables keepalives and the hold timer.
    pub hold_time: u16,
    /// Keepalive interval, seconds; `None` means a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    /// Accept a peer that offers a hold time of 0.
    pub accept_hold_time_zero: bool,
    /// RFC 9687 SendHoldTime: how long queued output may make no progress
    /// before the session ends with Send Hold Timer Expired; `None` means
    /// the RFC's default, see [`PeerConfig::send_hold_time`].
    pub send_hold: Option<Duration>,
    pub connect_retry: Duration,
    /// RFC 4271 DelayOpen: wait this long for the peer's OPEN before sending ours.
    pub delay_open: Option<Duration>,
    /// Idle hold time after the first failure; it doubles for every further
    /// failure (DampPeerOscillations) up to `idle_hold_max`.
    pub idle_hold: Duration,
    pub idle_hold_max: Duration,
    /// How long a session must stay Established for the back-off to start over.
    pub stable_after: Duration,
    /// Families we offer; the session carries those both sides offer.
    pub families: Vec<Family>,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// Graceful restart (RFC 4724): our restart time in seconds.
    pub graceful_restart: Option<u16>,
    /// Graceful restart, restarting side: set the Restart State bit in our
    /// OPEN (tortie restarted and the agent adopted the previous run's routes).
    pub restarting: bool,
    /// Set the Forwarding State bit for every family: kernel routes survived the restart.
    pub forwarding_preserved: bool,
    /// ADD-PATH (RFC 7911): receive path identifiers from the peer.
    pub add_path_receive: bool,
    /// ADD-PATH: send path identifiers to the peer.
    pub add_path_send: bool,
    /// Refuse a peer without the 4-octet AS capability (Unsupported Capability).
    pub require_four_octet_as: bool,
    /// TCP-MD5 key (RFC 2385), at most 80 octets.
    pub md5_key: Option<Vec<u8>>,
    /// GTSM (RFC 5082): send with TTL 255 and accept only TTL ≥ 255 - hops + 1.
    pub ttl_security: Option<u8>,
    /// eBGP multihop: the TTL of our packets when GTSM is off (1 for directly connected eBGP).
    pub multihop_ttl: Option<u8>,
    /// Source address to bind the connecting socket to.
    pub local_addr: Option<IpAddr>,
    /// Maximum number of prefixes accepted before Cease/1, and how long to wait before restarting.
    pub max_prefixes: Option<(u32, Duration)>,
    /// A BFD session to the peer: the BGP session comes up only while it is
    /// Up and goes down with Cease / BFD Down (RFC 9384) when it goes down.
    pub bfd: Option<PeerBfd>,
}

/// The BFD session a BGP peer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerBfd {
    pub intervals: Intervals,
    /// RFC 5883 multihop (port 4784) instead of single hop (RFC 5881).
    pub multihop: bool,
    /// Passive role (RFC 5880 6.1): silent until the peer's first packet.
    pub passive: bool,
    /// BFD down from a peer whose C bit is clear and that offered graceful restart is handled
    /// as that peer restarting (its routes kept stale), not as a failure (BIRD's `bfd
    /// graceful`, FRR's `check-control-plane-failure`); off, BFD down removes them at once.
    pub graceful_restart: bool,
}

impl PeerConfig {
    /// Defaults of a modern eBGP session to `remote_addr`.
    pub fn new(remote_addr: IpAddr, peer_as: u32, local_as: u32, local_id: Ipv4Addr) -> Self {
        PeerConfig {
            remote_addr,
            remote_port: 179,
            peer_as,
            local_as,
            local_id,
            passive: false,
            hold_time: 90,
            keepalive: None,
            accept_hold_time_zero: true,
            send_hold: None,
            connect_retry: Duration::from_secs(30),
            delay_open: None,
            idle_hold: Duration::from_secs(1),
            idle_hold_max: Duration::from_secs(120),
            stable_after: Duration::from_secs(60),
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            route_refresh: true,
            enhanced_route_refresh: true,
            graceful_restart: Some(120),
            restarting: false,
            forwarding_preserved: false,
            add_path_receive: false,
            add_path_send: false,
            require_four_octet_as: false,
            md5_key: None,
            ttl_security: None,
            multihop_ttl: None,
            local_addr: None,
            max_prefixes: None,
            bfd: None,
        }
    }

    /// The send hold time of a session with this negotiated hold time
    /// (seconds): by default the longer of 8 minutes and twice the hold
    /// time, as RFC 9687 suggests.
    pub fn send_hold_time(&self, negotiated_hold_time: u16) -> Duration {
        self.send_hold
            .unwrap_or_else(|| MIN_DEFAULT_SEND_HOLD_TIME.max(Duration::from_secs(u64::from(negotiated_hold_time)) * 2))
    }

    /// True for an internal (same-AS) peer.
    pub fn is_ibgp(&self) -> bool {
        self.peer_as == self.local_as
    }
}
