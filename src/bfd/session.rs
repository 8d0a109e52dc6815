//! One BFD session (RFC 5880 section 6.8) as a pure state machine: an event
//! in, a list of actions out. It never fails and never panics, so any
//! sequence of events is valid input for tests; it owns no socket and no
//! clock (timers are actions for the session's task to run) and draws the
//! transmit jitter from its own generator, seeded by its owner.
//!
//! What it does and does not do:
//! - Asynchronous mode only: we never set the D bit. A peer that asks for
//!   Demand mode while both sides are Up is honoured (we stop periodic
//!   transmission, section 6.8.7) but never detected by us while silent.
//! - No Echo function: we advertise a Required Min Echo RX Interval of 0.
//! - No authentication: the codec refuses packets with the A bit.
//! - The C bit is always clear: the agent's BFD shares fate with its BGP
//!   (both run in one process). The peer's C bit is kept for RFC 5882.
//! - While not Up we advertise at least [`SLOW_TX_US`] (section 6.8.3); the
//!   configured intervals are reached by a Poll Sequence once Up.
//! - Timer changes while Up run a Poll Sequence (section 6.5): a longer
//!   transmit interval and a shorter receive interval take effect only when
//!   the peer's Final arrives; a change made during a poll waits for it.

use std::time::Duration;

use super::packet::{ControlPacket, Diagnostic, SessionState};

/// RFC 5880 section 6.8.3: the Desired Min TX Interval while not Up.
pub const SLOW_TX_US: u32 = 1_000_000;
/// RFC 5880 section 6.8.1: bfd.RemoteMinRxInterval's initial value.
const INITIAL_REMOTE_MIN_RX_US: u32 = 1;
/// Section 6.8.7: transmission intervals are reduced by 0 to 25 % ...
const JITTER_MIN_PERCENT: u64 = 75;
const JITTER_MAX_PERCENT: u64 = 100;
/// ... and to at most 90 % when bfd.DetectMult is 1.
const JITTER_MAX_PERCENT_MULT_1: u64 = 90;

/// The session's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The next periodic Control packet.
    Transmit,
    /// The Detection Time since the last packet received.
    Detect,
}

impl Timer {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The intervals and multiplier a session is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Intervals {
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub detect_mult: u8,
}

impl Intervals {
    pub fn new(min_tx: Duration, min_rx: Duration, detect_mult: u8) -> Self {
        let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        Intervals { desired_min_tx_us: us(min_tx), required_min_rx_us: us(min_rx), detect_mult }
    }

    /// The values the protocol allows: a nonzero transmit interval (zero is
    /// reserved) and multiplier.
    fn usable(self) -> Self {
        Intervals {
            desired_min_tx_us: self.desired_min_tx_us.max(1),
            required_min_rx_us: self.required_min_rx_us,
            detect_mult: self.detect_mult.max(1),
        }
    }
}

/// An input to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A packet the codec accepted, demultiplexed to this session.
    Received(ControlPacket),
    TransmitTimerExpires,
    DetectTimerExpires,
    /// Take the session administratively down (section 6.8.16).
    AdminDown,
    /// Leave AdminDown.
    AdminUp,
    /// New configured intervals (a Poll Sequence when Up).
    SetIntervals(Intervals),
}

/// What the session's task must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(ControlPacket),
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// bfd.SessionState changed; `diagnostic` says why.
    StateChanged {
        from: SessionState,
        to: SessionState,
        diagnostic: Diagnostic,
    },
}

/// A pair of intervals as advertised or in effect, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pair {
    tx_us: u32,
    rx_us: u32,
}

/// One BFD session.
#[derive(Debug, Clone)]
pub struct Session {
    state: SessionState,
    local_discr: u32,
    local_diag: Diagnostic,
    /// Passive role (section 6.1): silent until the peer's packet arrives.
    passive: bool,
    configured: Intervals,
    /// The intervals in the packets we send.
    advertised: Pair,
    /// The intervals our transmission and detection use; they differ from
    /// `advertised` only during a Poll Sequence.
    effective: Pair,
    polling: bool,
    remote_discr: u32,
    remote_state: SessionState,
    remote_min_rx_us: u32,
    remote_desired_min_tx_us: u32,
    remote_detect_mult: u8,
    remote_demand: bool,
    remote_control_plane_independent: bool,
    /// AdminDown packets still to send before going silent (section 6.8.16).
    admin_down_left: u8,
    timers: u8,
    /// The transmit interval the running Transmit timer was drawn from.
    scheduled_tx_us: u32,
    rng: u64,
}

impl Session {
    /// A session in Down with nonzero `local_discr`, and its first actions.
    /// `seed` feeds the jitter.
    pub fn new(local_discr: u32, configured: Intervals, passive: bool, seed: u64) -> (Self, Vec<Action>) {
        let configured = configured.usable();
        let slow = Pair { tx_us: configured.desired_min_tx_us.max(SLOW_TX_US), rx_us: configured.required_min_rx_us };
        let mut session = Session {
            state: SessionState::Down,
            local_discr: local_discr.max(1),
            local_diag: Diagnostic::None,
            passive,
            configured,
            advertised: slow,
            effective: slow,
            polling: false,
            remote_discr: 0,
            remote_state: SessionState::Down,
            remote_min_rx_us: INITIAL_REMOTE_MIN_RX_US,
            remote_desired_min_tx_us: 0,
            remote_detect_mult: 0,
            remote_demand: false,
            remote_control_plane_independent: false,
            admin_down_left: 0,
            timers: 0,
            scheduled_tx_us: 0,
            rng: seed | 1,
        };
        let mut out = Vec::new();
        session.sync_transmit(&mut out);
        (session, out)
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    pub fn remote_state(&self) -> SessionState {
        self.remote_state
    }

    pub fn local_diagnostic(&self) -> Diagnostic {
        self.local_diag
    }

    pub fn configured(&self) -> Intervals {
        self.configured
    }

    pub fn polling(&self) -> bool {
        self.polling
    }

    /// The peer's C bit as last received (RFC 5882 section 4.3).
    pub fn remote_control_plane_independent(&self) -> bool {
        self.remote_control_plane_independent
    }

    pub fn is_running(&self, timer: Timer) -> bool {
        self.timers & timer.bit() != 0
    }

    /// The negotiated transmit interval before jitter: the larger of our
    /// Desired Min TX and the peer's Required Min RX (section 6.8.7).
    pub fn transmit_interval(&self) -> Duration {
        Duration::from_micros(self.transmit_interval_us().into())
    }

    fn transmit_interval_us(&self) -> u32 {
        self.effective.tx_us.max(self.remote_min_rx_us)
    }

    /// Section 6.8.4: the peer's Detect Mult times the agreed transmit
    /// interval of the peer (the larger of our Required Min RX and its
    /// Desired Min TX). Zero before the peer has been heard.
    pub fn detection_time(&self) -> Duration {
        let interval = u64::from(self.effective.rx_us.max(self.remote_desired_min_tx_us));
        Duration::from_micros(u64::from(self.remote_detect_mult) * interval)
    }

    /// Checks the session's invariants; `Err` names the broken one. Used by
    /// the property tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.local_discr == 0 {
            return Err("local discriminator 0".into());
        }
        let running = matches!(self.state, SessionState::Init | SessionState::Up);
        if running && self.remote_discr == 0 {
            return Err(format!("{} without a remote discriminator", self.state.name()));
        }
        if running && !self.is_running(Timer::Detect) {
            return Err(format!("{} without detection", self.state.name()));
        }
        if self.is_running(Timer::Detect) && (self.state == SessionState::AdminDown || self.remote_discr == 0) {
            return Err(format!("Detect runs in {} for remote {}", self.state.name(), self.remote_discr));
        }
        if self.is_running(Timer::Transmit) != self.should_transmit() {
            return Err(format!(
                "Transmit running = {} in {} (remote min rx {}, passive {})",
                self.is_running(Timer::Transmit),
                self.state.name(),
                self.remote_min_rx_us,
                self.passive
            ));
        }
        if self.polling && self.state != SessionState::Up {
            return Err(format!("polling in {}", self.state.name()));
        }
        if self.state != SessionState::Up && self.advertised.tx_us < SLOW_TX_US {
            return Err(format!("advertising {} µs in {}", self.advertised.tx_us, self.state.name()));
        }
        if !self.polling && self.advertised != self.effective {
            return Err(format!("{:?} advertised but {:?} in effect without a poll", self.advertised, self.effective));
        }
        if self.effective.tx_us > self.advertised.tx_us || self.effective.rx_us < self.advertised.rx_us {
            return Err(format!("{:?} in effect is not the safer of it and {:?}", self.effective, self.advertised));
        }
        if self.configured.detect_mult == 0 || self.configured.desired_min_tx_us == 0 {
            return Err(format!("unusable configuration {:?}", self.configured));
        }
        Ok(())
    }

    /// Feeds one event; returns what to do. Never fails.
    pub fn handle_event(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Received(packet) => self.receive(packet, &mut out),
            Event::TransmitTimerExpires => {
                if self.is_running(Timer::Transmit) {
                    self.timers &= !Timer::Transmit.bit();
                    out.push(Action::Send(self.packet()));
                    if self.state == SessionState::AdminDown {
                        self.admin_down_left = self.admin_down_left.saturating_sub(1);
                    }
                }
            }
            Event::DetectTimerExpires => {
                if self.is_running(Timer::Detect) {
                    self.timers &= !Timer::Detect.bit();
                    self.forget_remote();
                    if matches!(self.state, SessionState::Init | SessionState::Up) {
                        self.set_state(SessionState::Down, Diagnostic::ControlDetectionTimeExpired, &mut out);
                    }
                }
            }
            Event::AdminDown => {
                if self.state != SessionState::AdminDown {
                    self.stop(Timer::Detect, &mut out);
                    self.admin_down_left = self.configured.detect_mult;
                    self.set_state(SessionState::AdminDown, Diagnostic::AdministrativelyDown, &mut out);
                }
            }
            Event::AdminUp => {
                if self.state == SessionState::AdminDown {
                    self.admin_down_left = 0;
                    self.set_state(SessionState::Down, Diagnostic::None, &mut out);
                }
            }
            Event::SetIntervals(intervals) => {
                self.configured = intervals.usable();
                self.retarget(&mut out);
            }
        }
        self.sync_transmit(&mut out);
        out
    }

    /// Section 6.8.6 from "If the A bit is set" on (the codec did the rest).
    fn receive(&mut self, p: ControlPacket, out: &mut Vec<Action>) {
        if p.your_discriminator != 0 && p.your_discriminator != self.local_discr {
            return;
        }
        // The codec refuses these already; the session stays total without it.
        let unusable = p.my_discriminator == 0 || p.detect_mult == 0;
        if unusable || (p.your_discriminator == 0 && matches!(p.state, SessionState::Init | SessionState::Up)) {
            return;
        }
        self.remote_discr = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_demand = p.demand;
        self.remote_min_rx_us = p.required_min_rx_us;
        self.remote_desired_min_tx_us = p.desired_min_tx_us;
        self.remote_detect_mult = p.detect_mult;
        self.remote_control_plane_independent = p.control_plane_independent;
        if p.final_ && self.polling {
            self.polling = false;
            self.effective = self.advertised;
            self.retarget(out);
        }
        if self.state == SessionState::AdminDown {
            return;
        }
        if p.state == SessionState::AdminDown {
            if self.state != SessionState::Down {
                self.set_state(SessionState::Down, Diagnostic::NeighborSignaledSessionDown, out);
            }
        } else {
            match (self.state, p.state) {
                (SessionState::Down, SessionState::Down) => self.set_state(SessionState::Init, Diagnostic::None, out),
                (SessionState::Down, SessionState::Init)
                | (SessionState::Init, SessionState::Init | SessionState::Up) => {
                    self.set_state(SessionState::Up, Diagnostic::None, out)
                }
                (SessionState::Up, SessionState::Down) => {
                    self.set_state(SessionState::Down, Diagnostic::NeighborSignaledSessionDown, out)
                }
                _ => {}
            }
        }
        if p.poll {
            let mut answer = self.packet();
            answer.poll = false;
            answer.final_ = true;
            out.push(Action::Send(answer));
        }
        let detection = self.detection_time();
        self.start(Timer::Detect, detection, out);
    }

    /// The remote's variables back to their initial values (section 6.8.1:
    /// bfd.RemoteDiscr is reset when the Detection Time passes).
    fn forget_remote(&mut self) {
        self.remote_discr = 0;
        self.remote_state = SessionState::Down;
        self.remote_min_rx_us = INITIAL_REMOTE_MIN_RX_US;
        self.remote_demand = false;
    }

    fn set_state(&mut self, to: SessionState, diagnostic: Diagnostic, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        self.local_diag = diagnostic;
        if to != SessionState::Up {
            self.polling = false;
            self.effective = self.advertised;
        }
        out.push(Action::StateChanged { from, to, diagnostic });
        let polled = self.retarget(out);
        // The peer learns of the change now, not one interval later.
        if !polled && self.state_is_announced() {
            out.push(Action::Send(self.packet()));
        }
    }

    fn state_is_announced(&self) -> bool {
        !(self.passive && self.remote_discr == 0)
    }

    /// The intervals to advertise in the current state.
    fn target(&self) -> Pair {
        let tx = self.configured.desired_min_tx_us;
        Pair {
            tx_us: if self.state == SessionState::Up { tx } else { tx.max(SLOW_TX_US) },
            rx_us: self.configured.required_min_rx_us,
        }
    }

    /// Moves the advertised intervals toward the target: at once when not
    /// Up, by a Poll Sequence when Up (after the running one ends). True
    /// when it sent the poll's first packet.
    fn retarget(&mut self, out: &mut Vec<Action>) -> bool {
        let target = self.target();
        if target == self.advertised || self.polling {
            return false;
        }
        self.advertised = target;
        if self.state != SessionState::Up {
            self.effective = target;
            return false;
        }
        self.polling = true;
        self.effective =
            Pair { tx_us: self.effective.tx_us.min(target.tx_us), rx_us: self.effective.rx_us.max(target.rx_us) };
        out.push(Action::Send(self.packet()));
        true
    }

    /// Section 6.8.7: periodic transmission unless AdminDown has been
    /// announced long enough, we are passive and have not heard the peer,
    /// the peer asked for no packets, or the peer runs Demand mode.
    fn should_transmit(&self) -> bool {
        if self.state == SessionState::AdminDown && self.admin_down_left == 0 {
            return false;
        }
        let remote_demand_active =
            self.remote_demand && self.state == SessionState::Up && self.remote_state == SessionState::Up;
        self.state_is_announced() && self.remote_min_rx_us != 0 && !remote_demand_active
    }

    /// Starts or stops the Transmit timer as the state asks; restarts it
    /// when the interval it was drawn from changed.
    fn sync_transmit(&mut self, out: &mut Vec<Action>) {
        if !self.should_transmit() {
            self.stop(Timer::Transmit, out);
            return;
        }
        let interval = self.transmit_interval_us();
        if !self.is_running(Timer::Transmit) || self.scheduled_tx_us != interval {
            self.scheduled_tx_us = interval;
            let jittered = self.jittered(interval);
            self.start(Timer::Transmit, jittered, out);
        }
    }

    /// The interval reduced by a random 0–25 % (at least 10 % when
    /// bfd.DetectMult is 1).
    fn jittered(&mut self, interval_us: u32) -> Duration {
        let max = if self.configured.detect_mult == 1 { JITTER_MAX_PERCENT_MULT_1 } else { JITTER_MAX_PERCENT };
        let percent = JITTER_MIN_PERCENT + self.next_random() % (max - JITTER_MIN_PERCENT + 1);
        Duration::from_micros(u64::from(interval_us) * percent / 100)
    }

    /// xorshift64: enough for jitter, and reproducible from the seed.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn start(&mut self, timer: Timer, duration: Duration, out: &mut Vec<Action>) {
        self.timers |= timer.bit();
        out.push(Action::StartTimer(timer, duration));
    }

    fn stop(&mut self, timer: Timer, out: &mut Vec<Action>) {
        if self.is_running(timer) {
            self.timers &= !timer.bit();
            out.push(Action::StopTimer(timer));
        }
    }

    /// Our Control packet as of now.
    fn packet(&self) -> ControlPacket {
        ControlPacket {
            diagnostic: self.local_diag,
            state: self.state,
            poll: self.polling,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.configured.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: self.advertised.tx_us,
            required_min_rx_us: self.advertised.rx_us,
            required_min_echo_rx_us: 0,
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
