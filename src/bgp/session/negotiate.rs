//! Our OPEN, and checking the peer's: either the negotiated session
//! parameters or the exact NOTIFICATION that refuses the peer.

use std::net::{IpAddr, Ipv4Addr};

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use super::config::PeerConfig;
use crate::bgp::packet::notification::code;
use crate::bgp::packet::open::AS_TRANS;
use crate::bgp::packet::{
    AddPathFamilies, AddPathFamily, Capability, DecodeContext, Family, GracefulRestartFamily, NotificationMessage,
    OpenMessage,
};

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    /// Seconds; 0 means neither keepalives nor a hold timer.
    pub hold_time: u16,
    /// Seconds between our keepalives; 0 when the hold time is 0.
    pub keepalive: u16,
    pub four_octet_as: bool,
    pub families: Vec<Family>,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// The peer's restart time and the families it preserves, when it offered graceful restart.
    pub peer_graceful_restart: Option<(u16, Vec<GracefulRestartFamily>)>,
    /// Families whose received NLRI carry path identifiers.
    pub add_path_receive: Vec<Family>,
    /// Families whose sent NLRI must carry path identifiers.
    pub add_path_send: Vec<Family>,
    pub extended_message: bool,
    pub ibgp: bool,
    /// Our address on the session's connection (next hop self); filled in
    /// by the peer task, `None` from [`negotiate`] alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_addr: Option<IpAddr>,
}

impl Negotiated {
    /// How the peer's messages must be decoded.
    pub fn decode_context(&self) -> DecodeContext {
        let mut add_path = AddPathFamilies::default();
        for family in &self.add_path_receive {
            add_path.insert(*family);
        }
        DecodeContext {
            four_octet_as: self.four_octet_as,
            add_path,
            ibgp: self.ibgp,
            extended_message: self.extended_message,
        }
    }
}

/// The OPEN we send. A local AS above 65535 goes out as AS_TRANS with the
/// real number in the 4-octet AS capability (RFC 6793 section 4.1).
pub fn local_open(config: &PeerConfig) -> OpenMessage {
    let mut capabilities: Vec<Capability> = config.families.iter().copied().map(Capability::Multiprotocol).collect();
    if config.route_refresh {
        capabilities.push(Capability::RouteRefresh);
    }
    if config.enhanced_route_refresh {
        capabilities.push(Capability::EnhancedRouteRefresh);
    }
    capabilities.push(Capability::FourOctetAs(config.local_as));
    if let Some(restart_time) = config.graceful_restart {
        // RFC 4724 section 3: Restart State (0x8) after a restart, and
        // Forwarding State (0x80) per family when forwarding survived it.
        let forwarding = if config.forwarding_preserved { 0x80 } else { 0 };
        capabilities.push(Capability::GracefulRestart {
            restart_flags: if config.restarting { 0x8 } else { 0 },
            restart_time: restart_time & 0x0fff,
            families: config
                .families
                .iter()
                .map(|&family| GracefulRestartFamily { family, flags: forwarding })
                .collect(),
        });
    }
    let send_receive = u8::from(config.add_path_receive) | (u8::from(config.add_path_send) << 1);
    if send_receive != 0 {
        capabilities.push(Capability::AddPath(
            config.families.iter().map(|&family| AddPathFamily { family, send_receive }).collect(),
        ));
    }
    OpenMessage::new(config.local_as, config.hold_time, config.local_id, capabilities)
}

fn open_error(subcode: u8, data: impl Into<Bytes>) -> NotificationMessage {
    NotificationMessage::new(code::OPEN_MESSAGE_ERROR, subcode, data)
}

/// Checks the peer's OPEN against the configuration (RFC 4271 section 6.2,
/// RFC 5492, RFC 6793).
pub fn negotiate(config: &PeerConfig, open: &OpenMessage) -> Result<Negotiated, NotificationMessage> {
    let four_octet = open.capabilities().find_map(|c| match c {
        Capability::FourOctetAs(asn) => Some(*asn),
        _ => None,
    });
    // RFC 6793 section 4.1: a speaker with a 4-octet AS that cannot be
    // represented in 2 octets puts AS_TRANS in My Autonomous System.
    // RFC 4271 6.2: "If the Autonomous System field of the OPEN message is
    // unacceptable, then the Error Subcode MUST be set to Bad Peer AS."
    let peer_as = four_octet.unwrap_or(u32::from(open.my_as));
    let two_octet_consistent =
        four_octet.is_none_or(|asn| u32::from(open.my_as) == asn || (asn > 0xffff && open.my_as == AS_TRANS));
    if peer_as != config.peer_as || !two_octet_consistent {
        return Err(open_error(code::open::BAD_PEER_AS, Bytes::new()));
    }
    // RFC 6286 section 2.2: the identifier is a non-zero 4-octet value, and
    // "the BGP Identifier MUST be unique" within an AS: an internal peer
    // using ours is refused. RFC 4271 6.2: "If the BGP Identifier field of the
    // OPEN message is syntactically incorrect, then the Error Subcode MUST be
    // set to Bad BGP Identifier."
    if open.bgp_identifier.is_unspecified() || (config.is_ibgp() && open.bgp_identifier == config.local_id) {
        return Err(open_error(code::open::BAD_BGP_IDENTIFIER, Bytes::new()));
    }
    // RFC 4271 6.2: "An implementation MUST reject Hold Time values of one or
    // two seconds." An implementation MAY reject on the basis of the Hold
    // Time, which is how a configuration that refuses 0 is honoured.
    if open.hold_time == 1 || open.hold_time == 2 || (open.hold_time == 0 && !config.accept_hold_time_zero) {
        return Err(open_error(code::open::UNACCEPTABLE_HOLD_TIME, Bytes::new()));
    }
    let has = |wanted: u8| open.capabilities().any(|c| c.code() == wanted);
    use crate::bgp::packet::capability::capability_code as cap;
    // RFC 5492 section 5: "the Data field [...] contains the capability or
    // capabilities that cause the speaker to send the message."
    if config.require_four_octet_as && four_octet.is_none() {
        let mut data = BytesMut::new();
        // Encoding a fixed-size capability cannot fail.
        let _ = Capability::FourOctetAs(config.local_as).encode(&mut data);
        return Err(open_error(code::open::UNSUPPORTED_CAPABILITY, data.freeze()));
    }
    // RFC 4760 section 8: a peer that advertises no Multiprotocol capability
    // speaks IPv4 unicast only.
    let peer_families: Vec<Family> = open
        .capabilities()
        .filter_map(|c| match c {
            Capability::Multiprotocol(family) => Some(*family),
            _ => None,
        })
        .collect();
    let peer_families = if peer_families.is_empty() { vec![Family::IPV4_UNICAST] } else { peer_families };
    let families: Vec<Family> = config.families.iter().copied().filter(|f| peer_families.contains(f)).collect();
    if families.is_empty() {
        let mut data = BytesMut::new();
        for family in &config.families {
            let _ = Capability::Multiprotocol(*family).encode(&mut data);
        }
        return Err(open_error(code::open::UNSUPPORTED_CAPABILITY, data.freeze()));
    }
    let peer_add_path: Vec<AddPathFamily> = open
        .capabilities()
        .filter_map(|c| match c {
            Capability::AddPath(entries) => Some(entries.clone()),
            _ => None,
        })
        .flatten()
        .filter(|entry| families.contains(&entry.family))
        .collect();
    // RFC 7911 section 5: path identifiers flow where one side sends and the other receives.
    let add_path_receive = peer_add_path
        .iter()
        .filter(|entry| config.add_path_receive && entry.can_send())
        .map(|entry| entry.family)
        .collect();
    let add_path_send = peer_add_path
        .iter()
        .filter(|entry| config.add_path_send && entry.can_receive())
        .map(|entry| entry.family)
        .collect();
    // RFC 4271 4.4: "the Hold Time MUST be set to the smaller of its
    // configured value and the value received in the OPEN."
    let hold_time = config.hold_time.min(open.hold_time);
    // A configured hold time of 1 or 2 (refused from peers, but possible in
    // a PeerConfig) would make a third of it 0: keep at least one second.
    let max_keepalive = (hold_time / 3).max(1);
    let keepalive = if hold_time == 0 { 0 } else { config.keepalive.unwrap_or(max_keepalive).clamp(1, max_keepalive) };
    let peer_graceful_restart = open.capabilities().find_map(|c| match c {
        Capability::GracefulRestart { restart_time, families, .. } => Some((*restart_time, families.clone())),
        _ => None,
    });
    Ok(Negotiated {
        peer_as,
        peer_id: open.bgp_identifier,
        hold_time,
        keepalive,
        four_octet_as: four_octet.is_some(),
        families,
        route_refresh: config.route_refresh && has(cap::ROUTE_REFRESH),
        enhanced_route_refresh: config.enhanced_route_refresh && has(cap::ENHANCED_ROUTE_REFRESH),
        peer_graceful_restart: peer_graceful_restart.filter(|_| config.graceful_restart.is_some()),
        add_path_receive,
        add_path_send,
        extended_message: false,
        ibgp: config.is_ibgp(),
        local_addr: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PeerConfig {
        PeerConfig::new(IpAddr::from([192, 0, 2, 2]), 65002, 65001, Ipv4Addr::new(192, 0, 2, 1))
    }

    fn peer_open(asn: u32, hold: u16, caps: Vec<Capability>) -> OpenMessage {
        OpenMessage::new(asn, hold, Ipv4Addr::new(192, 0, 2, 2), caps)
    }

    #[test]
    fn a_modern_peer_negotiates_the_common_families_and_the_smaller_hold_time() {
        let open = peer_open(
            65002,
            30,
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::FourOctetAs(65002),
            ],
        );
        let n = negotiate(&config(), &open).unwrap();
        assert_eq!(n.hold_time, 30);
        assert_eq!(n.keepalive, 10);
        assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
        assert!(n.four_octet_as && n.route_refresh && !n.enhanced_route_refresh);
        assert!(n.decode_context().four_octet_as);
    }

    #[test]
    fn a_restarted_speaker_sets_restart_state_and_forwarding_state() {
        let gr = |config: &PeerConfig| {
            local_open(config).capabilities().find_map(|c| match c {
                Capability::GracefulRestart { restart_flags, families, .. } => {
                    Some((*restart_flags, families.iter().map(|f| f.flags).collect::<Vec<_>>()))
                }
                _ => None,
            })
        };
        assert_eq!(gr(&config()), Some((0, vec![0, 0])));
        let mut restarted = config();
        restarted.restarting = true;
        restarted.forwarding_preserved = true;
        assert_eq!(gr(&restarted), Some((0x8, vec![0x80, 0x80])));
    }

    #[test]
    fn a_wrong_peer_as_is_refused_with_bad_peer_as() {
        let n = negotiate(&config(), &peer_open(65003, 90, vec![Capability::FourOctetAs(65003)])).unwrap_err();
        assert_eq!((n.code, n.subcode), (2, 2));
    }

    #[test]
    fn hold_times_of_one_and_two_seconds_are_refused() {
        for hold in [1, 2] {
            let n = negotiate(&config(), &peer_open(65002, hold, vec![])).unwrap_err();
            assert_eq!((n.code, n.subcode), (2, 6));
        }
        let n = negotiate(&config(), &peer_open(65002, 0, vec![])).unwrap();
        assert_eq!((n.hold_time, n.keepalive), (0, 0));
    }

    #[test]
    fn a_configured_hold_time_below_three_keeps_a_one_second_keepalive() {
        // Found by tests/bgp_fsm_proptest.rs: a third of 1 is 0, and clamp(1, 0) panicked.
        for hold in [1, 2] {
            let mut c = config();
            c.hold_time = hold;
            let n = negotiate(&c, &peer_open(65002, 90, vec![])).unwrap();
            assert_eq!((n.hold_time, n.keepalive), (hold, 1));
        }
    }

    #[test]
    fn a_zero_identifier_is_refused() {
        let mut open = peer_open(65002, 90, vec![]);
        open.bgp_identifier = Ipv4Addr::UNSPECIFIED;
        assert_eq!(negotiate(&config(), &open).unwrap_err().subcode, 3);
    }

    #[test]
    fn an_internal_peer_with_our_identifier_is_refused() {
        let mut config = config();
        config.peer_as = 65001;
        let mut open = peer_open(65001, 90, vec![]);
        open.bgp_identifier = config.local_id;
        assert_eq!(negotiate(&config, &open).unwrap_err().subcode, 3);
    }

    #[test]
    fn a_two_octet_peer_is_refused_only_when_four_octet_as_is_required() {
        let open = peer_open(65002, 90, vec![]);
        let n = negotiate(&config(), &open).unwrap();
        assert!(!n.four_octet_as);
        assert_eq!(n.families, vec![Family::IPV4_UNICAST], "no MP capability means IPv4 unicast");
        let mut strict = config();
        strict.require_four_octet_as = true;
        let refused = negotiate(&strict, &open).unwrap_err();
        assert_eq!((refused.code, refused.subcode), (2, 7));
        assert_eq!(&refused.data[..], &[65, 4, 0, 0, 0xfd, 0xe9]);
    }

    #[test]
    fn no_common_family_is_an_unsupported_capability() {
        let mut config = config();
        config.families = vec![Family::IPV6_UNICAST];
        let n = negotiate(&config, &peer_open(65002, 90, vec![])).unwrap_err();
        assert_eq!((n.code, n.subcode), (2, 7));
    }

    #[test]
    fn a_large_local_as_goes_out_as_as_trans() {
        let mut config = config();
        config.local_as = 4_200_000_001;
        let open = local_open(&config);
        assert_eq!(open.my_as, AS_TRANS);
        assert_eq!(open.asn(), 4_200_000_001);
        // And a peer doing the same is accepted.
        config.peer_as = 4_200_000_002;
        let peer = peer_open(4_200_000_002, 90, vec![Capability::FourOctetAs(4_200_000_002)]);
        assert_eq!(negotiate(&config, &peer).unwrap().peer_as, 4_200_000_002);
    }

    #[test]
    fn add_path_flows_where_one_side_sends_and_the_other_receives() {
        let mut config = config();
        config.add_path_receive = true;
        let peer = peer_open(
            65002,
            90,
            vec![Capability::AddPath(vec![AddPathFamily { family: Family::IPV4_UNICAST, send_receive: 2 }])],
        );
        let n = negotiate(&config, &peer).unwrap();
        assert_eq!(n.add_path_receive, vec![Family::IPV4_UNICAST]);
        assert!(n.add_path_send.is_empty());
        assert!(n.decode_context().add_path.ipv4_unicast);
    }
}
