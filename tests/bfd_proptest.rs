//! Any sequence of events is valid BFD session input: it never panics, its
//! invariants (timers per state, the Poll Sequence's intervals, the slow
//! rate while not Up) always hold, and any byte string decodes or is
//! refused without a panic.

use proptest::prelude::*;
use tortie::bfd::{Action, ControlPacket, Diagnostic, Event, Intervals, Session, SessionState};

const LOCAL: u32 = 0x1111;

fn state() -> impl Strategy<Value = SessionState> {
    prop_oneof![
        Just(SessionState::AdminDown),
        Just(SessionState::Down),
        Just(SessionState::Init),
        Just(SessionState::Up)
    ]
}

fn interval() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1), Just(100_000), Just(300_000), Just(1_000_000), any::<u32>()]
}

fn packet() -> impl Strategy<Value = ControlPacket> {
    (
        state(),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        prop_oneof![Just(3u8), any::<u8>()],
        prop_oneof![Just(0x2222u32), any::<u32>()],
        prop_oneof![Just(0u32), Just(LOCAL), any::<u32>()],
        (interval(), interval()),
    )
        .prop_map(|(state, (poll, final_, cpi, demand), detect_mult, my, your, (tx, rx))| ControlPacket {
            diagnostic: Diagnostic::None,
            state,
            poll,
            final_,
            control_plane_independent: cpi,
            demand,
            detect_mult,
            my_discriminator: my,
            your_discriminator: your,
            desired_min_tx_us: tx,
            required_min_rx_us: rx,
            required_min_echo_rx_us: 0,
        })
}

fn intervals() -> impl Strategy<Value = Intervals> {
    (interval(), interval(), any::<u8>()).prop_map(|(tx, rx, mult)| Intervals {
        desired_min_tx_us: tx,
        required_min_rx_us: rx,
        detect_mult: mult,
    })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => packet().prop_map(Event::Received),
        2 => Just(Event::TransmitTimerExpires),
        2 => Just(Event::DetectTimerExpires),
        1 => Just(Event::AdminDown),
        1 => Just(Event::AdminUp),
        1 => intervals().prop_map(Event::SetIntervals),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_event_sequences_keep_the_session_valid(
        config in intervals(),
        passive in any::<bool>(),
        seed in any::<u64>(),
        events in proptest::collection::vec(event(), 0..80),
    ) {
        let (mut session, _) = Session::new(LOCAL, config, passive, seed);
        prop_assert!(session.check_invariants().is_ok(), "{:?}", session.check_invariants());
        for event in events {
            let before = session.state();
            let actions = session.handle_event(event);
            if let Err(broken) = session.check_invariants() {
                prop_assert!(false, "invariant broken: {broken}");
            }
            for action in &actions {
                match action {
                    Action::Send(p) => {
                        // What we send always decodes: never a reserved value.
                        prop_assert!(p.detect_mult >= 1 && p.my_discriminator == LOCAL);
                        prop_assert!(!(p.poll && p.final_), "P and F together: {p:?}");
                        let wire = p.encode();
                        prop_assert_eq!(ControlPacket::decode(&wire), Ok(*p));
                    }
                    Action::StateChanged { from, to, .. } => {
                        prop_assert_eq!(*from, before);
                        prop_assert_eq!(*to, session.state());
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(p) = ControlPacket::decode(&bytes) {
            prop_assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
        }
    }
}
