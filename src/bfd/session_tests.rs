//! Transition tests for the BFD session, one RFC 5880 rule per test.

use super::*;

const LOCAL: u32 = 0x1111;
const REMOTE: u32 = 0x2222;
const MS: u32 = 1000;

fn config() -> Intervals {
    Intervals { desired_min_tx_us: 300 * MS, required_min_rx_us: 300 * MS, detect_mult: 3 }
}

fn ok(s: &Session) {
    s.check_invariants().unwrap();
}

/// The peer's packet: `state`, 200 ms both ways, multiplier 5.
fn peer(state: SessionState, your: u32) -> ControlPacket {
    ControlPacket {
        diagnostic: Diagnostic::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 5,
        my_discriminator: REMOTE,
        your_discriminator: your,
        desired_min_tx_us: 200 * MS,
        required_min_rx_us: 200 * MS,
        required_min_echo_rx_us: 0,
    }
}

fn sent(actions: &[Action]) -> Vec<ControlPacket> {
    actions.iter().filter_map(|a| if let Action::Send(p) = a { Some(*p) } else { None }).collect()
}

fn started(actions: &[Action], timer: Timer) -> Option<Duration> {
    actions.iter().rev().find_map(|a| match a {
        Action::StartTimer(t, d) if *t == timer => Some(*d),
        _ => None,
    })
}

fn changed(actions: &[Action]) -> Option<(SessionState, Diagnostic)> {
    actions.iter().find_map(|a| match a {
        Action::StateChanged { to, diagnostic, .. } => Some((*to, *diagnostic)),
        _ => None,
    })
}

/// A session brought Up by the three-way handshake, its poll to the
/// configured intervals answered.
fn up() -> Session {
    let (mut s, _) = Session::new(LOCAL, config(), false, 7);
    s.handle_event(Event::Received(peer(SessionState::Down, 0)));
    let actions = s.handle_event(Event::Received(peer(SessionState::Up, LOCAL)));
    assert_eq!(changed(&actions), Some((SessionState::Up, Diagnostic::None)));
    let mut fin = peer(SessionState::Up, LOCAL);
    fin.final_ = true;
    s.handle_event(Event::Received(fin));
    assert!(!s.polling());
    ok(&s);
    s
}

#[test]
fn starts_down_sending_at_one_second_at_most_every_second() {
    let (s, actions) = Session::new(LOCAL, config(), false, 7);
    ok(&s);
    assert_eq!(s.state(), SessionState::Down);
    let first = started(&actions, Timer::Transmit).expect("transmitting");
    assert!(first >= Duration::from_millis(750) && first <= Duration::from_secs(1), "{first:?}");
    assert!(!s.is_running(Timer::Detect));
}

#[test]
fn the_three_way_handshake_goes_down_init_up() {
    let (mut s, _) = Session::new(LOCAL, config(), false, 7);
    let actions = s.handle_event(Event::Received(peer(SessionState::Down, 0)));
    ok(&s);
    assert_eq!(changed(&actions), Some((SessionState::Init, Diagnostic::None)));
    let init = sent(&actions);
    assert_eq!(init.len(), 1, "{actions:?}");
    assert_eq!((init[0].state, init[0].your_discriminator), (SessionState::Init, REMOTE));
    assert_eq!(init[0].desired_min_tx_us, SLOW_TX_US, "slow while not Up");

    let actions = s.handle_event(Event::Received(peer(SessionState::Init, LOCAL)));
    ok(&s);
    assert_eq!(s.state(), SessionState::Up);
    // Up: a Poll Sequence moves to the configured 300 ms.
    let poll = sent(&actions);
    assert_eq!(poll.len(), 1, "{actions:?}");
    assert!(poll[0].poll && poll[0].state == SessionState::Up);
    assert_eq!(poll[0].desired_min_tx_us, 300 * MS);
}

#[test]
fn the_peer_in_init_takes_a_down_session_straight_up() {
    let (mut s, _) = Session::new(LOCAL, config(), false, 7);
    let actions = s.handle_event(Event::Received(peer(SessionState::Init, LOCAL)));
    assert_eq!(changed(&actions), Some((SessionState::Up, Diagnostic::None)));
    ok(&s);
}

#[test]
fn detection_time_is_the_peer_multiplier_times_the_slower_of_its_tx_and_our_rx() {
    let s = up();
    // 5 × max(300 ms ours, 200 ms theirs).
    assert_eq!(s.detection_time(), Duration::from_millis(1500));
    // We send at max(300 ms ours, 200 ms their rx).
    assert_eq!(s.transmit_interval(), Duration::from_millis(300));
}

#[test]
fn detection_time_expiry_takes_the_session_down_with_diagnostic_1() {
    let mut s = up();
    let actions = s.handle_event(Event::DetectTimerExpires);
    ok(&s);
    assert_eq!(changed(&actions), Some((SessionState::Down, Diagnostic::ControlDetectionTimeExpired)));
    assert_eq!(s.remote_discriminator(), 0, "bfd.RemoteDiscr is reset");
    let down = sent(&actions);
    assert_eq!(down[0].diagnostic, Diagnostic::ControlDetectionTimeExpired);
    assert_eq!((down[0].your_discriminator, down[0].desired_min_tx_us), (0, SLOW_TX_US));
}

#[test]
fn a_peer_going_down_or_admin_down_is_diagnostic_3() {
    for state in [SessionState::Down, SessionState::AdminDown] {
        let mut s = up();
        let actions = s.handle_event(Event::Received(peer(state, LOCAL)));
        ok(&s);
        assert_eq!(changed(&actions), Some((SessionState::Down, Diagnostic::NeighborSignaledSessionDown)));
    }
}

#[test]
fn a_poll_is_answered_at_once_with_final_and_without_poll() {
    let mut s = up();
    let mut poll = peer(SessionState::Up, LOCAL);
    poll.poll = true;
    let answer = sent(&s.handle_event(Event::Received(poll)));
    assert_eq!(answer.len(), 1);
    assert!(answer[0].final_ && !answer[0].poll);
}

#[test]
fn a_packet_for_another_discriminator_is_ignored() {
    let mut s = up();
    assert_eq!(s.handle_event(Event::Received(peer(SessionState::Down, LOCAL + 1))), vec![]);
    assert_eq!(s.state(), SessionState::Up);
}

#[test]
fn a_longer_tx_interval_waits_for_the_final() {
    let mut s = up();
    let slower = Intervals { desired_min_tx_us: 900 * MS, ..config() };
    let actions = s.handle_event(Event::SetIntervals(slower));
    ok(&s);
    let poll = sent(&actions);
    assert!(poll[0].poll && poll[0].desired_min_tx_us == 900 * MS);
    assert_eq!(s.transmit_interval(), Duration::from_millis(300), "unchanged until the Final");
    let mut fin = peer(SessionState::Up, LOCAL);
    fin.final_ = true;
    let actions = s.handle_event(Event::Received(fin));
    ok(&s);
    assert_eq!(s.transmit_interval(), Duration::from_millis(900));
    let next = started(&actions, Timer::Transmit).expect("rescheduled");
    assert!(next >= Duration::from_millis(675), "{next:?}");
    assert_eq!(s.state(), SessionState::Up, "no flap");
}

#[test]
fn a_shorter_rx_interval_keeps_the_old_detection_time_until_the_final() {
    let mut s = up();
    let faster = Intervals { required_min_rx_us: 100 * MS, ..config() };
    s.handle_event(Event::SetIntervals(faster));
    ok(&s);
    assert_eq!(s.detection_time(), Duration::from_millis(1500));
    let mut fin = peer(SessionState::Up, LOCAL);
    fin.final_ = true;
    fin.desired_min_tx_us = 100 * MS;
    s.handle_event(Event::Received(fin));
    ok(&s);
    assert_eq!(s.detection_time(), Duration::from_millis(500));
}

#[test]
fn a_change_during_a_poll_starts_the_next_poll_after_the_final() {
    let mut s = up();
    s.handle_event(Event::SetIntervals(Intervals { desired_min_tx_us: 500 * MS, ..config() }));
    let actions = s.handle_event(Event::SetIntervals(Intervals { desired_min_tx_us: 700 * MS, ..config() }));
    assert!(sent(&actions).is_empty(), "{actions:?}");
    let mut fin = peer(SessionState::Up, LOCAL);
    fin.final_ = true;
    let actions = s.handle_event(Event::Received(fin));
    ok(&s);
    assert_eq!(s.transmit_interval(), Duration::from_millis(500));
    let poll = sent(&actions);
    assert!(poll[0].poll && poll[0].desired_min_tx_us == 700 * MS, "{poll:?}");
}

#[test]
fn jitter_stays_within_75_to_100_percent_and_90_with_multiplier_1() {
    for (mult, max_percent) in [(3u8, 100u128), (1, 90)] {
        let (mut s, _) = Session::new(LOCAL, Intervals { detect_mult: mult, ..config() }, false, 42);
        let mut seen = Vec::new();
        for _ in 0..500 {
            let actions = s.handle_event(Event::TransmitTimerExpires);
            seen.push(started(&actions, Timer::Transmit).unwrap().as_micros());
        }
        let (min, max) = (*seen.iter().min().unwrap(), *seen.iter().max().unwrap());
        let interval = u128::from(SLOW_TX_US);
        assert!(min >= interval * 75 / 100 && max <= interval * max_percent / 100, "{min}..{max}");
        assert!(max - min > interval / 10, "jitter spreads: {min}..{max}");
    }
}

#[test]
fn a_passive_session_is_silent_until_the_peer_speaks() {
    let (mut s, actions) = Session::new(LOCAL, config(), true, 7);
    ok(&s);
    assert!(started(&actions, Timer::Transmit).is_none());
    let actions = s.handle_event(Event::Received(peer(SessionState::Down, 0)));
    ok(&s);
    assert!(started(&actions, Timer::Transmit).is_some());
    assert_eq!(sent(&actions)[0].state, SessionState::Init);
}

#[test]
fn admin_down_is_announced_for_a_detection_time_then_silent() {
    let mut s = up();
    let actions = s.handle_event(Event::AdminDown);
    ok(&s);
    assert_eq!(changed(&actions), Some((SessionState::AdminDown, Diagnostic::AdministrativelyDown)));
    assert_eq!(sent(&actions)[0].state, SessionState::AdminDown);
    let mut periodic = 0;
    while s.is_running(Timer::Transmit) {
        periodic += sent(&s.handle_event(Event::TransmitTimerExpires)).len();
        ok(&s);
    }
    assert_eq!(periodic, 3);
    // Packets from the peer change nothing while AdminDown.
    assert!(changed(&s.handle_event(Event::Received(peer(SessionState::Up, LOCAL)))).is_none());
    let actions = s.handle_event(Event::AdminUp);
    ok(&s);
    assert_eq!(changed(&actions), Some((SessionState::Down, Diagnostic::None)));
    assert!(s.is_running(Timer::Transmit));
}

#[test]
fn a_peer_in_demand_mode_stops_our_periodic_packets_while_both_are_up() {
    let mut s = up();
    let mut demand = peer(SessionState::Up, LOCAL);
    demand.demand = true;
    let actions = s.handle_event(Event::Received(demand));
    ok(&s);
    assert!(actions.contains(&Action::StopTimer(Timer::Transmit)), "{actions:?}");
}

#[test]
fn a_peer_asking_for_no_packets_gets_none() {
    let (mut s, _) = Session::new(LOCAL, config(), false, 7);
    let mut quiet = peer(SessionState::Down, 0);
    quiet.required_min_rx_us = 0;
    let actions = s.handle_event(Event::Received(quiet));
    ok(&s);
    assert!(!s.is_running(Timer::Transmit), "{actions:?}");
}

#[test]
fn the_c_bit_is_clear_and_the_peers_is_kept() {
    let mut s = up();
    let mut cpi = peer(SessionState::Up, LOCAL);
    cpi.control_plane_independent = true;
    s.handle_event(Event::Received(cpi));
    assert!(s.remote_control_plane_independent());
    let p = sent(&s.handle_event(Event::TransmitTimerExpires));
    assert!(!p[0].control_plane_independent && !p[0].demand);
}
