//! BGP metrics, read at scrape time from the latest sample the agent
//! publishes (session snapshots plus the RIB's counters). Every configured
//! peer is in the sample from the moment it is configured, so its series
//! exist (at 0) before its session ever comes up. Labels are bounded: the
//! peer address (as many as configured peers), never prefixes.

use crate::bgp::session::{PeerStatus, State};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;
use tokio::sync::watch;

/// Route counters of one peer (and one address family): the RIB's.
pub type RouteCounts = crate::bgp::rib::PeerRibStats;

/// One configured peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSample {
    pub address: IpAddr,
    pub peer_as: u32,
    /// `mesh`, `reflector` or `external`.
    pub peer_type: &'static str,
    pub session: PeerStatus,
    /// Per address family (`ipv4`, `ipv6`).
    pub routes: Vec<(&'static str, RouteCounts)>,
}

/// Everything BGP exposes, as one consistent snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BgpSample {
    pub peers: Vec<PeerSample>,
    /// `(afi, table, routes)` with table `loc`, `adj_in` or `adj_out`.
    pub rib: Vec<(&'static str, &'static str, u64)>,
}

#[derive(Debug)]
pub struct BgpCollector {
    pub sample: watch::Receiver<BgpSample>,
}

const STATES: [State; 6] =
    [State::Idle, State::Connect, State::Active, State::OpenSent, State::OpenConfirm, State::Established];

/// The state as the metrics label shows it (lower case, as kube-router and Cilium).
pub fn state_label(state: State) -> &'static str {
    match state {
        State::Idle => "idle",
        State::Connect => "connect",
        State::Active => "active",
        State::OpenSent => "opensent",
        State::OpenConfirm => "openconfirm",
        State::Established => "established",
    }
}

type Counts = crate::bgp::session::MessageCounts;

fn by_type(c: &Counts) -> [(&'static str, u64); 5] {
    [
        ("open", c.open),
        ("update", c.update),
        ("notification", c.notification),
        ("keepalive", c.keepalive),
        ("route_refresh", c.route_refresh),
    ]
}

impl Collector for BgpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = self.sample.borrow().clone();
        let peers: Vec<(String, String, &PeerSample)> =
            sample.peers.iter().map(|p| (p.address.to_string(), p.peer_as.to_string(), p)).collect();

        let mut up = encoder.encode_descriptor(
            "bgp_session_up",
            "1 when the BGP session is Established",
            None,
            MetricType::Gauge,
        )?;
        for (peer, asn, p) in &peers {
            let labels = [("peer", peer.as_str()), ("peer_asn", asn.as_str()), ("peer_type", p.peer_type)];
            ConstGauge::new(i64::from(p.session.state == State::Established)).encode(up.encode_family(&labels)?)?;
        }
        let mut state = encoder.encode_descriptor(
            "bgp_session_state",
            "The RFC 4271 state of the session, one series per state set to 1 for the current one",
            None,
            MetricType::Gauge,
        )?;
        for (peer, asn, p) in &peers {
            for s in STATES {
                let labels = [("peer", peer.as_str()), ("peer_asn", asn.as_str()), ("state", state_label(s))];
                ConstGauge::new(i64::from(p.session.state == s)).encode(state.encode_family(&labels)?)?;
            }
        }
        let mut since = encoder.encode_descriptor(
            "bgp_session_established_timestamp_seconds",
            "Unix time the session last reached Established (0 if never)",
            None,
            MetricType::Gauge,
        )?;
        for (peer, _, p) in &peers {
            let t = p.session.established_since.and_then(|t| t.duration_since(UNIX_EPOCH).ok());
            let t = t.map(|d| d.as_secs() as i64).unwrap_or(0);
            ConstGauge::new(t).encode(since.encode_family(&[("peer", peer.as_str())])?)?;
        }
        let mut flaps = encoder.encode_descriptor(
            "bgp_session_flaps",
            "Times an Established session went down",
            None,
            MetricType::Counter,
        )?;
        for (peer, _, p) in &peers {
            ConstCounter::new(p.session.flaps).encode(flaps.encode_family(&[("peer", peer.as_str())])?)?;
        }
        let mut bfd_up = encoder.encode_descriptor(
            "bfd_session_up",
            "1 when the peer's BFD session is Up (only peers with BFD)",
            None,
            MetricType::Gauge,
        )?;
        for (peer, _, p) in &peers {
            if let Some(bfd) = &p.session.bfd {
                let up = i64::from(bfd.state == crate::bfd::SessionState::Up);
                ConstGauge::new(up).encode(bfd_up.encode_family(&[("peer", peer.as_str())])?)?;
            }
        }
        let mut bfd_transitions = encoder.encode_descriptor(
            "bfd_session_transitions",
            "State changes of the peer's BFD session",
            None,
            MetricType::Counter,
        )?;
        for (peer, _, p) in &peers {
            if let Some(bfd) = &p.session.bfd {
                ConstCounter::new(bfd.transitions)
                    .encode(bfd_transitions.encode_family(&[("peer", peer.as_str())])?)?;
            }
        }
        let mut bfd_detection = encoder.encode_descriptor(
            "bfd_detection_time_seconds",
            "The BFD detection time in effect (0 before the peer was heard)",
            None,
            MetricType::Gauge,
        )?;
        for (peer, _, p) in &peers {
            if let Some(bfd) = &p.session.bfd {
                ConstGauge::new(bfd.detection_time_us as f64 / 1e6)
                    .encode(bfd_detection.encode_family(&[("peer", peer.as_str())])?)?;
            }
        }
        let mut bfd_sent = encoder.encode_descriptor(
            "bfd_packets_sent",
            "BFD Control packets sent to the peer",
            None,
            MetricType::Counter,
        )?;
        for (peer, _, p) in &peers {
            if let Some(bfd) = &p.session.bfd {
                ConstCounter::new(bfd.packets_sent).encode(bfd_sent.encode_family(&[("peer", peer.as_str())])?)?;
            }
        }
        let mut bfd_received = encoder.encode_descriptor(
            "bfd_packets_received",
            "BFD Control packets from the peer handed to its session",
            None,
            MetricType::Counter,
        )?;
        for (peer, _, p) in &peers {
            if let Some(bfd) = &p.session.bfd {
                ConstCounter::new(bfd.packets_received)
                    .encode(bfd_received.encode_family(&[("peer", peer.as_str())])?)?;
            }
        }
        let mut bfd_dropped = encoder.encode_descriptor(
            "bfd_packets_dropped",
            "BFD packets from the peer discarded, by reason (wrong_ttl, malformed, discriminator)",
            None,
            MetricType::Counter,
        )?;
        for (peer, _, p) in &peers {
            if let Some(bfd) = &p.session.bfd {
                let d = bfd.packets_dropped;
                for (reason, n) in
                    [("wrong_ttl", d.wrong_ttl), ("malformed", d.malformed), ("discriminator", d.discriminator)]
                {
                    ConstCounter::new(n)
                        .encode(bfd_dropped.encode_family(&[("peer", peer.as_str()), ("reason", reason)])?)?;
                }
            }
        }
        let mut refused = encoder.encode_descriptor(
            "bgp_refused_connections",
            "BGP connections the listener closed at once, by reason (unknown_peer: not a configured peer)",
            None,
            MetricType::Counter,
        )?;
        for reason in crate::bgp::session::refused::Reason::ALL {
            ConstCounter::new(reason.count()).encode(refused.encode_family(&[("reason", reason.label())])?)?;
        }
        for (name, help, pick) in [
            ("bgp_messages_received", "BGP messages received, by type", true),
            ("bgp_messages_sent", "BGP messages sent, by type", false),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (peer, _, p) in &peers {
                let counts = if pick { &p.session.messages_in } else { &p.session.messages_out };
                for (t, n) in by_type(counts) {
                    ConstCounter::new(n)
                        .encode(family.encode_family(&[("peer", peer.as_str()), ("message_type", t)])?)?;
                }
            }
        }
        let mut notes = encoder.encode_descriptor(
            "bgp_notifications",
            "NOTIFICATION messages by direction, error code and subcode",
            None,
            MetricType::Counter,
        )?;
        for (peer, _, p) in &peers {
            for n in &p.session.notifications {
                let (code, subcode) = (n.code.to_string(), n.subcode.to_string());
                let labels = [
                    ("peer", peer.as_str()),
                    ("direction", n.direction),
                    ("code", code.as_str()),
                    ("subcode", subcode.as_str()),
                ];
                ConstCounter::new(n.count).encode(notes.encode_family(&labels)?)?;
            }
        }
        type Pick = fn(&RouteCounts) -> u64;
        let gauges: [(&str, &str, Pick); 3] = [
            ("bgp_routes_received", "Prefixes the peer announces to us now", |c| c.received),
            ("bgp_routes_accepted", "Prefixes from the peer that import policy accepted", |c| c.accepted),
            ("bgp_routes_advertised", "Prefixes we announce to the peer now", |c| c.advertised),
        ];
        for (name, help, pick) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (peer, _, p) in &peers {
                for (afi, c) in &p.routes {
                    let labels = [("peer", peer.as_str()), ("afi", *afi), ("safi", "unicast")];
                    ConstGauge::new(pick(c) as i64).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let counters: [(&str, &str, Pick); 4] = [
            ("bgp_updates_received", "Prefixes announced to us in UPDATE messages", |c| c.updates_received),
            ("bgp_withdraws_received", "Prefixes withdrawn from us in UPDATE messages", |c| c.withdraws_received),
            (
                "bgp_rfc7606_treat_as_withdraw",
                "UPDATEs with a malformed attribute treated as withdrawals (RFC 7606)",
                |c| c.treat_as_withdraw,
            ),
            ("bgp_rfc7606_attribute_discard", "Malformed optional attributes discarded (RFC 7606)", |c| {
                c.attribute_discard
            }),
        ];
        for (name, help, pick) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (peer, _, p) in &peers {
                for (afi, c) in &p.routes {
                    ConstCounter::new(pick(c))
                        .encode(family.encode_family(&[("peer", peer.as_str()), ("afi", *afi)])?)?;
                }
            }
        }
        let mut rib =
            encoder.encode_descriptor("bgp_rib_routes", "Routes held in the RIB, by table", None, MetricType::Gauge)?;
        for (afi, table, n) in &sample.rib {
            ConstGauge::new(*n as i64).encode(rib.encode_family(&[("afi", *afi), ("table", *table)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    fn scrape(sample: BgpSample) -> String {
        let (_tx, rx) = watch::channel(sample);
        let mut registry = Registry::default();
        registry.sub_registry_with_prefix("tortie").register_collector(Box::new(BgpCollector { sample: rx }));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    fn peer(state: State) -> PeerSample {
        let mut session = PeerStatus::new("10.0.0.2".parse().unwrap());
        session.state = state;
        session.flaps = 3;
        session.bfd = Some(crate::bgp::session::status::PeerBfdStatus {
            state: crate::bfd::SessionState::Up,
            diagnostic: "no diagnostic".into(),
            transitions: 2,
            detection_time_us: 900_000,
            packets_sent: 40,
            packets_received: 38,
            packets_dropped: crate::bfd::DroppedCounts { wrong_ttl: 1, malformed: 0, discriminator: 2 },
        });
        session.messages_in.update = 7;
        session.count_notification("received", 6, 4);
        session.count_notification("received", 6, 4);
        PeerSample {
            address: "10.0.0.2".parse().unwrap(),
            peer_as: 64512,
            peer_type: "mesh",
            session,
            routes: vec![("ipv4", RouteCounts { received: 5, accepted: 4, advertised: 2, ..Default::default() })],
        }
    }

    #[test]
    fn a_configured_peer_has_its_series_before_it_is_up() {
        let text = scrape(BgpSample { peers: vec![peer(State::Active)], ..BgpSample::default() });
        assert!(
            text.contains(r#"tortie_bgp_session_up{peer="10.0.0.2",peer_asn="64512",peer_type="mesh"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"tortie_bgp_session_state{peer="10.0.0.2",peer_asn="64512",state="active"} 1"#));
        assert!(text.contains(r#"tortie_bgp_session_state{peer="10.0.0.2",peer_asn="64512",state="established"} 0"#));
        assert!(text.contains(r#"tortie_bgp_session_established_timestamp_seconds{peer="10.0.0.2"} 0"#));
    }

    #[test]
    fn counters_carry_the_session_and_rib_figures() {
        let text = scrape(BgpSample { peers: vec![peer(State::Established)], rib: vec![("ipv4", "loc", 9)] });
        assert!(text.contains(r#"tortie_bgp_session_up{peer="10.0.0.2",peer_asn="64512",peer_type="mesh"} 1"#));
        assert!(text.contains(r#"tortie_bgp_session_flaps_total{peer="10.0.0.2"} 3"#), "{text}");
        assert!(text.contains(r#"tortie_bfd_session_up{peer="10.0.0.2"} 1"#), "{text}");
        assert!(text.contains(r#"tortie_bfd_session_transitions_total{peer="10.0.0.2"} 2"#), "{text}");
        assert!(text.contains(r#"tortie_bfd_detection_time_seconds{peer="10.0.0.2"} 0.9"#), "{text}");
        assert!(text.contains(r#"tortie_bfd_packets_sent_total{peer="10.0.0.2"} 40"#), "{text}");
        assert!(text.contains(r#"tortie_bfd_packets_received_total{peer="10.0.0.2"} 38"#), "{text}");
        assert!(text.contains(r#"tortie_bfd_packets_dropped_total{peer="10.0.0.2",reason="wrong_ttl"} 1"#), "{text}");
        assert!(text.contains(r#"tortie_bfd_packets_dropped_total{peer="10.0.0.2",reason="malformed"} 0"#), "{text}");
        assert!(text.contains(r#"tortie_bfd_packets_dropped_total{peer="10.0.0.2",reason="discriminator"} 2"#));
        assert!(text.contains(r#"tortie_bgp_messages_received_total{peer="10.0.0.2",message_type="update"} 7"#));
        assert!(text.contains(
            r#"tortie_bgp_notifications_total{peer="10.0.0.2",direction="received",code="6",subcode="4"} 2"#
        ));
        assert!(text.contains(r#"tortie_bgp_routes_accepted{peer="10.0.0.2",afi="ipv4",safi="unicast"} 4"#));
        assert!(text.contains(r#"tortie_bgp_rib_routes{afi="ipv4",table="loc"} 9"#));
    }
}
