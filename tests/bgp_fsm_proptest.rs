//! Any sequence of events is valid FSM input: it never panics, and the
//! FSM's invariants (timers per state, connection per state) always hold.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;
use tortie::bgp::packet::{Capability, Family, NotificationMessage, OpenMessage, RouteRefreshMessage};
use tortie::bgp::session::{Action, Event, Fsm, PeerConfig, State};

fn open() -> impl Strategy<Value = OpenMessage> {
    (prop_oneof![Just(65002u32), Just(65001), any::<u32>()], any::<u16>(), any::<u32>(), any::<bool>()).prop_map(
        |(asn, hold, id, four)| {
            let caps = if four { vec![Capability::FourOctetAs(asn), Capability::RouteRefresh] } else { vec![] };
            OpenMessage::new(asn, hold, Ipv4Addr::from(id), caps)
        },
    )
}

fn notification() -> impl Strategy<Value = NotificationMessage> {
    (1u8..9, 0u8..12, proptest::collection::vec(any::<u8>(), 0..8))
        .prop_map(|(code, subcode, data)| NotificationMessage::new(code, subcode, data))
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::ManualStart),
        ".{0,20}".prop_map(|message| Event::ManualStop { message }),
        Just(Event::AutomaticStart),
        (notification(), proptest::option::of(0u64..100)).prop_map(|(notification, s)| Event::AutomaticStop {
            notification,
            restart_after: s.map(Duration::from_secs)
        }),
        Just(Event::ConnectRetryTimerExpires),
        Just(Event::HoldTimerExpires),
        Just(Event::SendHoldTimerExpires),
        Just(Event::KeepaliveTimerExpires),
        Just(Event::DelayOpenTimerExpires),
        Just(Event::IdleHoldTimerExpires),
        Just(Event::StableTimerExpires),
        Just(Event::TcpConnected),
        Just(Event::TcpConnected),
        Just(Event::TcpConnectionFails),
        open().prop_map(Event::BgpOpen),
        Just(Event::BgpOpen(OpenMessage::new(65002, 9, Ipv4Addr::new(192, 0, 2, 2), vec![]))),
        notification().prop_map(Event::BgpHeaderErr),
        notification().prop_map(Event::BgpOpenMsgErr),
        Just(Event::OpenCollisionDump),
        notification().prop_map(Event::NotifMsgVerErr),
        notification().prop_map(Event::NotifMsg),
        Just(Event::KeepAliveMsg),
        Just(Event::KeepAliveMsg),
        Just(Event::UpdateMsg),
        notification().prop_map(Event::UpdateMsgErr),
        Just(Event::RouteRefreshMsg(RouteRefreshMessage::request(Family::IPV4_UNICAST))),
    ]
}

fn config() -> impl Strategy<Value = PeerConfig> {
    (any::<bool>(), proptest::option::of(1u64..10), 0u16..100).prop_map(|(passive, delay, hold)| {
        let mut c = PeerConfig::new(IpAddr::from([192, 0, 2, 2]), 65002, 65001, Ipv4Addr::new(192, 0, 2, 1));
        c.passive = passive;
        c.delay_open = delay.map(Duration::from_secs);
        c.hold_time = hold;
        c
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_event_sequences_keep_the_fsm_valid(config in config(), events in proptest::collection::vec(event(), 0..60)) {
        let mut fsm = Fsm::new(config);
        let mut up = false;
        for event in events {
            let actions = fsm.handle_event(event);
            if let Err(broken) = fsm.check_invariants() {
                prop_assert!(false, "invariant broken: {broken}");
            }
            for action in &actions {
                match action {
                    Action::SessionUp(_) => { prop_assert!(!up, "SessionUp twice"); up = true; }
                    Action::SessionDown(_) => { prop_assert!(up, "SessionDown without SessionUp"); up = false; }
                    _ => {}
                }
            }
            prop_assert_eq!(up, fsm.state() == State::Established);
        }
    }

    /// Whatever happened before, a peer that comes back and dials in is taken
    /// at once unless the session was stopped or is held down: the
    /// connection drops (the peer went away), the peer connects again, sends
    /// its OPEN and KEEPALIVE, and the session is Established.
    #[test]
    fn a_returning_peer_is_taken_back_unless_stopped(config in config(), events in proptest::collection::vec(event(), 0..60)) {
        let mut fsm = Fsm::new(config);
        for event in events {
            fsm.handle_event(event);
        }
        fsm.handle_event(Event::TcpConnectionFails);
        prop_assert!(matches!(fsm.state(), State::Idle | State::Active), "{:?}", fsm.state());
        if !fsm.accepts_connection() {
            prop_assert_eq!(fsm.state(), State::Idle);
            return Ok(());
        }
        let accepted = fsm.handle_event(Event::TcpConnected);
        prop_assert!(!accepted.contains(&Action::RefuseConnection), "{accepted:?}");
        fsm.handle_event(Event::BgpOpen(OpenMessage::new(65002, 9, Ipv4Addr::new(192, 0, 2, 2), vec![])));
        fsm.handle_event(Event::KeepAliveMsg);
        prop_assert_eq!(fsm.state(), State::Established);
        prop_assert!(fsm.check_invariants().is_ok());
    }
}
