//! Transition tests for the FSM, one scenario per test.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;
use crate::bgp::packet::{Capability, Family};

fn config() -> PeerConfig {
    let mut c = PeerConfig::new(IpAddr::from([192, 0, 2, 2]), 65002, 65001, Ipv4Addr::new(192, 0, 2, 1));
    c.hold_time = 9;
    c.connect_retry = Duration::from_secs(5);
    c
}

fn peer_open(hold: u16) -> OpenMessage {
    OpenMessage::new(
        65002,
        hold,
        Ipv4Addr::new(192, 0, 2, 2),
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST), Capability::RouteRefresh, Capability::FourOctetAs(65002)],
    )
}

fn ok(fsm: &Fsm) {
    fsm.check_invariants().unwrap();
}

fn established(config: PeerConfig) -> Fsm {
    let mut fsm = Fsm::new(config);
    fsm.handle_event(Event::ManualStart);
    fsm.handle_event(Event::TcpConnected);
    fsm.handle_event(Event::BgpOpen(peer_open(9)));
    let up = fsm.handle_event(Event::KeepAliveMsg);
    assert!(up.iter().any(|a| matches!(a, Action::SessionUp(_))), "{up:?}");
    assert_eq!(fsm.state(), State::Established);
    ok(&fsm);
    fsm
}

fn sent_notification(actions: &[Action]) -> Option<(u8, u8)> {
    actions.iter().find_map(|a| match a {
        Action::SendNotification(n) => Some((n.code, n.subcode)),
        _ => None,
    })
}

#[test]
fn manual_start_connects_and_starts_the_connect_retry_timer() {
    let mut fsm = Fsm::new(config());
    let out = fsm.handle_event(Event::ManualStart);
    assert_eq!(out, vec![Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5)), Action::Connect]);
    assert_eq!(fsm.state(), State::Connect);
    ok(&fsm);
}

#[test]
fn a_passive_peer_waits_in_active_without_connecting() {
    let mut c = config();
    c.passive = true;
    let mut fsm = Fsm::new(c);
    let out = fsm.handle_event(Event::ManualStart);
    assert!(!out.contains(&Action::Connect));
    assert_eq!(fsm.state(), State::Active);
    fsm.handle_event(Event::TcpConnected);
    assert_eq!(fsm.state(), State::OpenSent);
    ok(&fsm);
}

#[test]
fn the_full_handshake_reaches_established_with_negotiated_timers() {
    let mut fsm = Fsm::new(config());
    fsm.handle_event(Event::ManualStart);
    let out = fsm.handle_event(Event::TcpConnected);
    assert!(
        matches!(
            out.as_slice(),
            [
                Action::StopTimer(Timer::ConnectRetry),
                Action::SendOpen(_),
                Action::StartTimer(Timer::Hold, LARGE_HOLD_TIME)
            ]
        ),
        "{out:?}"
    );
    let out = fsm.handle_event(Event::BgpOpen(peer_open(6)));
    assert_eq!(fsm.state(), State::OpenConfirm);
    assert!(out.contains(&Action::SendKeepalive));
    assert!(out.contains(&Action::StartTimer(Timer::Hold, Duration::from_secs(6))));
    assert!(out.contains(&Action::StartTimer(Timer::Keepalive, Duration::from_secs(2))));
    let out = fsm.handle_event(Event::KeepAliveMsg);
    assert_eq!(fsm.state(), State::Established);
    assert!(out.iter().any(|a| matches!(a, Action::SessionUp(n) if n.hold_time == 6)));
    ok(&fsm);
}

#[test]
fn a_bad_peer_as_gets_open_message_error_bad_peer_as() {
    let mut fsm = Fsm::new(config());
    fsm.handle_event(Event::ManualStart);
    fsm.handle_event(Event::TcpConnected);
    let mut open = peer_open(9);
    open.parameters = vec![crate::bgp::packet::OptionalParameter::Capabilities(vec![Capability::FourOctetAs(65099)])];
    open.my_as = 65099;
    let out = fsm.handle_event(Event::BgpOpen(open));
    assert_eq!(sent_notification(&out), Some((2, 2)));
    assert!(out.contains(&Action::DropConnection));
    assert_eq!(fsm.state(), State::Idle);
    ok(&fsm);
}

#[test]
fn hold_time_zero_runs_neither_keepalive_nor_hold_timer() {
    let mut fsm = Fsm::new(config());
    fsm.handle_event(Event::ManualStart);
    fsm.handle_event(Event::TcpConnected);
    let out = fsm.handle_event(Event::BgpOpen(peer_open(0)));
    assert!(!out.iter().any(|a| matches!(a, Action::StartTimer(Timer::Hold | Timer::Keepalive, _))), "{out:?}");
    fsm.handle_event(Event::KeepAliveMsg);
    assert_eq!(fsm.state(), State::Established);
    assert!(!fsm.is_running(Timer::Hold) && !fsm.is_running(Timer::Keepalive));
}

#[test]
fn send_hold_timer_expiry_sends_code_eight_drops_the_connection_and_restarts_later() {
    let mut fsm = established(config());
    let out = fsm.handle_event(Event::SendHoldTimerExpires);
    assert_eq!(sent_notification(&out), Some((8, 0)));
    assert!(out.contains(&Action::DropConnection));
    assert!(out.iter().any(|a| matches!(a, Action::SessionDown(DownReason::NotificationSent { code: 8, .. }))));
    assert_eq!(fsm.state(), State::Idle);
    assert!(fsm.is_running(Timer::IdleHold), "an automatic restart is scheduled");
    ok(&fsm);
}

#[test]
fn hold_timer_expiry_sends_hold_timer_expired_and_reports_the_session_down() {
    let mut fsm = established(config());
    let out = fsm.handle_event(Event::HoldTimerExpires);
    assert_eq!(sent_notification(&out), Some((4, 0)));
    assert!(out.iter().any(|a| matches!(a, Action::SessionDown(DownReason::NotificationSent { code: 4, .. }))));
    assert_eq!(fsm.state(), State::Idle);
    assert!(fsm.is_running(Timer::IdleHold), "an automatic restart is scheduled");
    ok(&fsm);
}

#[test]
fn updates_and_keepalives_restart_the_hold_timer_in_established() {
    let mut fsm = established(config());
    let out = fsm.handle_event(Event::UpdateMsg);
    assert_eq!(out, vec![Action::StartTimer(Timer::Hold, Duration::from_secs(9)), Action::ProcessUpdate]);
    let out = fsm.handle_event(Event::KeepAliveMsg);
    assert_eq!(out, vec![Action::StartTimer(Timer::Hold, Duration::from_secs(9))]);
}

#[test]
fn keepalive_timer_expiry_sends_a_keepalive_and_restarts_it() {
    let mut fsm = established(config());
    let out = fsm.handle_event(Event::KeepaliveTimerExpires);
    assert_eq!(out, vec![Action::SendKeepalive, Action::StartTimer(Timer::Keepalive, Duration::from_secs(3))]);
}

#[test]
fn manual_stop_sends_cease_with_the_shutdown_communication_and_stays_down() {
    let mut fsm = established(config());
    let out = fsm.handle_event(Event::ManualStop { message: "maintenance".into() });
    let Some(Action::SendNotification(n)) = out.iter().find(|a| matches!(a, Action::SendNotification(_))) else {
        panic!("no NOTIFICATION in {out:?}")
    };
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.shutdown_communication(), Some(Ok("maintenance")));
    assert!(out.iter().any(|a| matches!(a, Action::SessionDown(DownReason::NotificationSent { message, .. }) if message.contains("maintenance"))));
    assert_eq!(fsm.state(), State::Idle);
    assert!(!fsm.is_running(Timer::IdleHold), "no automatic restart after a manual stop");
    assert!(fsm.handle_event(Event::AutomaticStart).is_empty());
}

#[test]
fn a_notification_from_the_peer_is_the_reason_the_session_went_down() {
    let mut fsm = established(config());
    let n = NotificationMessage::cease_with_communication(2, "bye");
    let out = fsm.handle_event(Event::NotifMsg(n));
    assert!(sent_notification(&out).is_none());
    assert!(out.iter().any(|a| matches!(a, Action::SessionDown(DownReason::NotificationReceived { code: 6, subcode: 2, message }) if message.contains("bye"))));
}

#[test]
fn the_idle_hold_time_doubles_for_a_flapping_peer_up_to_the_maximum() {
    let mut c = config();
    c.idle_hold = Duration::from_secs(1);
    c.idle_hold_max = Duration::from_secs(6);
    let mut fsm = established(c);
    let mut waits = Vec::new();
    for _ in 0..5 {
        let out = fsm.handle_event(Event::HoldTimerExpires);
        waits.extend(out.iter().filter_map(|a| match a {
            Action::StartTimer(Timer::IdleHold, d) => Some(d.as_secs()),
            _ => None,
        }));
        fsm.handle_event(Event::IdleHoldTimerExpires);
        assert_eq!(fsm.state(), State::Connect);
        fsm.handle_event(Event::TcpConnected);
        fsm.handle_event(Event::BgpOpen(peer_open(9)));
        fsm.handle_event(Event::KeepAliveMsg);
        assert_eq!(fsm.state(), State::Established);
    }
    assert_eq!(waits, vec![1, 2, 4, 6, 6]);
}

#[test]
fn a_configuration_change_does_not_lengthen_the_next_back_off() {
    let mut c = config();
    c.idle_hold = Duration::from_secs(1);
    c.idle_hold_max = Duration::from_secs(60);
    let mut fsm = established(c);
    for _ in 0..3 {
        let n = NotificationMessage::new(6, 6, Vec::new());
        fsm.handle_event(Event::AutomaticStop { notification: n, restart_after: Some(Duration::ZERO) });
        fsm.handle_event(Event::IdleHoldTimerExpires);
        fsm.handle_event(Event::TcpConnected);
        fsm.handle_event(Event::BgpOpen(peer_open(9)));
        fsm.handle_event(Event::KeepAliveMsg);
        assert_eq!(fsm.state(), State::Established);
    }
    let out = fsm.handle_event(Event::HoldTimerExpires);
    assert!(out.contains(&Action::StartTimer(Timer::IdleHold, Duration::from_secs(1))), "{out:?}");
}

#[test]
fn a_failed_connect_waits_for_the_connect_retry_timer_not_in_idle() {
    let mut fsm = Fsm::new(config());
    fsm.handle_event(Event::ManualStart);
    for _ in 0..20 {
        let out = fsm.handle_event(Event::TcpConnectionFails);
        assert_eq!(fsm.state(), State::Active, "{out:?}");
        assert!(!out.iter().any(|a| matches!(a, Action::StartTimer(Timer::IdleHold, _))), "{out:?}");
        assert!(fsm.is_running(Timer::ConnectRetry));
        ok(&fsm);
        let out = fsm.handle_event(Event::ConnectRetryTimerExpires);
        assert!(out.contains(&Action::Connect), "{out:?}");
        assert!(out.contains(&Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5))), "{out:?}");
    }
    // However long the peer was away, the first connection that works is taken.
    fsm.handle_event(Event::TcpConnectionFails);
    let out = fsm.handle_event(Event::TcpConnected);
    assert!(out.iter().any(|a| matches!(a, Action::SendOpen(_))), "{out:?}");
    assert_eq!(fsm.state(), State::OpenSent);
    ok(&fsm);
}

#[test]
fn idle_after_a_flap_accepts_the_peers_connection() {
    let mut c = config();
    c.idle_hold = Duration::from_secs(60);
    let mut fsm = established(c);
    fsm.handle_event(Event::TcpConnectionFails);
    assert_eq!(fsm.state(), State::Idle);
    assert!(fsm.is_running(Timer::IdleHold));
    let out = fsm.handle_event(Event::TcpConnected);
    assert!(!out.contains(&Action::RefuseConnection), "{out:?}");
    assert!(out.iter().any(|a| matches!(a, Action::SendOpen(_))), "{out:?}");
    assert!(!out.contains(&Action::Connect), "the peer's connection is the one: {out:?}");
    assert_eq!(fsm.state(), State::OpenSent);
    ok(&fsm);
    fsm.handle_event(Event::BgpOpen(peer_open(9)));
    fsm.handle_event(Event::KeepAliveMsg);
    assert_eq!(fsm.state(), State::Established);
}

#[test]
fn idle_after_a_manual_stop_or_a_prefix_limit_refuses_connections() {
    let mut fsm = established(config());
    fsm.handle_event(Event::ManualStop { message: String::new() });
    assert_eq!(fsm.handle_event(Event::TcpConnected), vec![Action::RefuseConnection]);
    assert_eq!(fsm.state(), State::Idle);
    let mut fsm = established(config());
    let n = NotificationMessage::new(6, 1, Vec::new());
    fsm.handle_event(Event::AutomaticStop { notification: n, restart_after: Some(Duration::from_secs(30)) });
    assert_eq!(fsm.handle_event(Event::TcpConnected), vec![Action::RefuseConnection]);
    assert_eq!(fsm.state(), State::Idle);
    ok(&fsm);
}

#[test]
fn a_failed_open_exchange_backs_off_but_a_failed_connect_does_not_count() {
    let mut c = config();
    c.idle_hold = Duration::from_secs(1);
    let mut fsm = Fsm::new(c);
    fsm.handle_event(Event::ManualStart);
    let mut waits = Vec::new();
    for _ in 0..3 {
        fsm.handle_event(Event::TcpConnectionFails);
        fsm.handle_event(Event::TcpConnected);
        let out = fsm.handle_event(Event::NotifMsg(NotificationMessage::new(2, 2, Vec::new())));
        waits.extend(out.iter().filter_map(|a| match a {
            Action::StartTimer(Timer::IdleHold, d) => Some(d.as_secs()),
            _ => None,
        }));
        fsm.handle_event(Event::IdleHoldTimerExpires);
    }
    assert_eq!(waits, vec![1, 2, 4]);
}

#[test]
fn a_stable_session_resets_the_back_off() {
    let mut c = config();
    c.idle_hold = Duration::from_secs(1);
    let mut fsm = established(c);
    fsm.handle_event(Event::HoldTimerExpires);
    fsm.handle_event(Event::IdleHoldTimerExpires);
    fsm.handle_event(Event::TcpConnected);
    fsm.handle_event(Event::BgpOpen(peer_open(9)));
    fsm.handle_event(Event::KeepAliveMsg);
    fsm.handle_event(Event::StableTimerExpires);
    let out = fsm.handle_event(Event::HoldTimerExpires);
    assert!(out.contains(&Action::StartTimer(Timer::IdleHold, Duration::from_secs(1))), "{out:?}");
}

#[test]
fn delay_open_waits_for_the_peer_and_answers_its_open_with_ours() {
    let mut c = config();
    c.delay_open = Some(Duration::from_secs(3));
    let mut fsm = Fsm::new(c);
    fsm.handle_event(Event::ManualStart);
    let out = fsm.handle_event(Event::TcpConnected);
    assert!(out.contains(&Action::StartTimer(Timer::DelayOpen, Duration::from_secs(3))));
    assert!(!out.iter().any(|a| matches!(a, Action::SendOpen(_))));
    assert_eq!(fsm.state(), State::Connect);
    let out = fsm.handle_event(Event::BgpOpen(peer_open(9)));
    assert!(matches!(out.first(), Some(Action::SendOpen(_))), "{out:?}");
    assert_eq!(fsm.state(), State::OpenConfirm);
    ok(&fsm);
}

#[test]
fn delay_open_expiry_sends_our_open() {
    let mut c = config();
    c.delay_open = Some(Duration::from_secs(3));
    let mut fsm = Fsm::new(c);
    fsm.handle_event(Event::ManualStart);
    fsm.handle_event(Event::TcpConnected);
    let out = fsm.handle_event(Event::DelayOpenTimerExpires);
    assert!(matches!(out.first(), Some(Action::SendOpen(_))));
    assert_eq!(fsm.state(), State::OpenSent);
}

#[test]
fn an_unexpected_message_in_open_sent_is_an_fsm_error_naming_the_state() {
    let mut fsm = Fsm::new(config());
    fsm.handle_event(Event::ManualStart);
    fsm.handle_event(Event::TcpConnected);
    let out = fsm.handle_event(Event::UpdateMsg);
    assert_eq!(sent_notification(&out), Some((5, 1)));
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn a_collision_dump_sends_cease_seven_and_waits_for_the_winner() {
    let mut fsm = Fsm::new(config());
    fsm.handle_event(Event::ManualStart);
    fsm.handle_event(Event::TcpConnected);
    fsm.handle_event(Event::BgpOpen(peer_open(9)));
    let out = fsm.handle_event(Event::OpenCollisionDump);
    assert_eq!(sent_notification(&out), Some((6, 7)));
    assert_eq!(fsm.state(), State::Active);
    fsm.handle_event(Event::TcpConnected);
    assert_eq!(fsm.state(), State::OpenSent);
    ok(&fsm);
}

#[test]
fn a_stale_timer_expiry_is_ignored() {
    let mut fsm = established(config());
    assert!(fsm.handle_event(Event::ConnectRetryTimerExpires).is_empty());
    assert_eq!(fsm.state(), State::Established);
}

#[test]
fn route_refresh_is_passed_on_only_for_negotiated_families() {
    let mut fsm = established(config());
    let v4 = RouteRefreshMessage::request(Family::IPV4_UNICAST);
    assert!(fsm.handle_event(Event::RouteRefreshMsg(v4)).contains(&Action::ProcessRouteRefresh(v4)));
    let v6 = RouteRefreshMessage::request(Family::IPV6_UNICAST);
    assert!(!fsm.handle_event(Event::RouteRefreshMsg(v6)).iter().any(|a| matches!(a, Action::ProcessRouteRefresh(_))));
}

#[test]
fn maximum_prefix_stop_sends_cease_one_and_restarts_after_the_given_time() {
    let mut fsm = established(config());
    let n = NotificationMessage::new(6, 1, Vec::new());
    let out = fsm.handle_event(Event::AutomaticStop { notification: n, restart_after: Some(Duration::from_secs(30)) });
    assert_eq!(sent_notification(&out), Some((6, 1)));
    assert!(out.contains(&Action::StartTimer(Timer::IdleHold, Duration::from_secs(30))));
    fsm.handle_event(Event::IdleHoldTimerExpires);
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn borr_and_unknown_subtypes_are_ignored_without_enhanced_route_refresh() {
    // The peer's OPEN in `established` offers route refresh but not the enhanced kind.
    let mut fsm = established(config());
    let borr = RouteRefreshMessage { family: Family::IPV4_UNICAST, subtype: 1 };
    assert!(
        !fsm.handle_event(Event::RouteRefreshMsg(borr)).iter().any(|a| matches!(a, Action::ProcessRouteRefresh(_)))
    );
    let odd = RouteRefreshMessage { family: Family::IPV4_UNICAST, subtype: 7 };
    assert!(!fsm.handle_event(Event::RouteRefreshMsg(odd)).iter().any(|a| matches!(a, Action::ProcessRouteRefresh(_))));
    assert_eq!(fsm.state(), State::Established);
}
