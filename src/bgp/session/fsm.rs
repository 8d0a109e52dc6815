//! The RFC 4271 section 8 finite state machine as a pure type: an event in,
//! a list of actions out. It never fails and never panics, so any sequence
//! of events is valid input for tests and fuzzing; it owns no socket and no
//! clock (timers are actions for the peer task to run).
//!
//! Deviations from the RFC, each for one reason:
//! - Events 4 and 5 (`*_with_PassiveTcpEstablishment`) are events 1 and 3
//!   with [`PeerConfig::passive`] set: passivity is configuration here.
//! - Events 16 and 17 are one event, [`Event::TcpConnected`]: the FSM does not
//!   care who initiated the connection.
//! - Event 20 (`BGPOpen with DelayOpenTimer running`) is [`Event::BgpOpen`]
//!   received in Connect or Active: the state says whether DelayOpen runs.
//! - A timer expiry for a timer the FSM has stopped is dropped: the peer task
//!   may deliver one that raced with the stop.
//! - After `OpenCollisionDump` (event 23) the FSM waits in Active for the
//!   connection that won, instead of going to Idle: one FSM serves one peer.
//! - A failed connect (TcpConnectionFails in Connect) goes to Active and
//!   retries when the running ConnectRetryTimer expires, instead of going to
//!   Idle: a peer that is away for long is taken back within one
//!   ConnectRetry time of its return.
//! - Idle accepts a connection from the peer (as BIRD and FRR do) unless the
//!   session was stopped (ManualStop) or is held down for a given time (the
//!   maximum-prefix restart); it is the automatic start, with that connection.
//! - Going to Idle after a failure starts the IdleHoldTimer, whose expiry is
//!   an automatic start (RFC 4271 8.1.1 DampPeerOscillations). Only sessions
//!   that failed after exchanging messages (from OpenSent on) count as
//!   failures: the time doubles for each until the session has been stable.
//! - SendHoldTimer_Expires (RFC 9687) is an event from the peer task, which
//!   alone sees whether writing makes progress; it is not an FSM timer.

use std::time::Duration;

use super::config::PeerConfig;
use super::negotiate::{Negotiated, local_open, negotiate};
use crate::bgp::packet::notification::code;
use crate::bgp::packet::{NotificationMessage, OpenMessage, RouteRefreshMessage};

/// RFC 4271 section 8.2.2: "a large value" for the hold timer while waiting
/// for the peer's OPEN; "A HoldTimer value of 4 minutes is suggested."
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

/// The six session states (RFC 4271 section 8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// The FSM's timers (RFC 4271 section 8.1.3), plus the stability timer that
/// ends the idle-hold back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    DelayOpen,
    IdleHold,
    /// Not in RFC 4271: once it expires in Established, the flap count starts over.
    Stable,
}

impl Timer {
    pub const ALL: [Timer; 6] =
        [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive, Timer::DelayOpen, Timer::IdleHold, Timer::Stable];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// An input to the FSM, with its RFC 4271 section 8.1 name and number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Event 1: ManualStart (event 4, ManualStart_with_PassiveTcpEstablishment, when the peer is passive).
    ManualStart,
    /// Event 2: ManualStop. The text goes into the Cease NOTIFICATION (RFC 8203).
    ManualStop { message: String },
    /// Event 3: AutomaticStart (event 5 when the peer is passive).
    AutomaticStart,
    /// Event 8: AutomaticStop, e.g. the maximum-prefix limit (Cease/1); the
    /// session restarts after `restart_after` if given.
    AutomaticStop { notification: NotificationMessage, restart_after: Option<Duration> },
    /// Event 9: ConnectRetryTimer_Expires.
    ConnectRetryTimerExpires,
    /// Event 10: HoldTimer_Expires.
    HoldTimerExpires,
    /// Event 11: KeepaliveTimer_Expires.
    KeepaliveTimerExpires,
    /// Event 12: DelayOpenTimer_Expires.
    DelayOpenTimerExpires,
    /// Event 13: IdleHoldTimer_Expires.
    IdleHoldTimerExpires,
    /// Not in RFC 4271: the session has been Established for `stable_after`.
    StableTimerExpires,
    /// Events 16 and 17: Tcp_CR_Acked / TcpConnectionConfirmed.
    TcpConnected,
    /// Event 18: TcpConnectionFails.
    TcpConnectionFails,
    /// Events 19 and 20: BGPOpen (with DelayOpenTimer running in Connect and Active).
    BgpOpen(OpenMessage),
    /// Event 21: BGPHeaderErr, with the NOTIFICATION the codec chose.
    BgpHeaderErr(NotificationMessage),
    /// Event 22: BGPOpenMsgErr, with the NOTIFICATION the codec chose.
    BgpOpenMsgErr(NotificationMessage),
    /// Event 23: OpenCollisionDump — collision detection (RFC 4271 6.8) chose the other connection.
    OpenCollisionDump,
    /// Event 24: NotifMsgVerErr.
    NotifMsgVerErr(NotificationMessage),
    /// Event 25: NotifMsg.
    NotifMsg(NotificationMessage),
    /// Event 26: KeepAliveMsg.
    KeepAliveMsg,
    /// Event 27: UpdateMsg (the peer task holds the decoded message).
    UpdateMsg,
    /// Event 28: UpdateMsgErr, with the NOTIFICATION the codec chose.
    UpdateMsgErr(NotificationMessage),
    /// Not in RFC 4271: a ROUTE-REFRESH message (RFC 2918, RFC 7313).
    RouteRefreshMsg(RouteRefreshMessage),
    /// Event 29 (RFC 9687): SendHoldTimer_Expires -- queued output made no
    /// progress for the send hold time (reported by the connection's writer).
    SendHoldTimerExpires,
}

/// Why an Established session went down, kept for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum DownReason {
    /// We sent this NOTIFICATION (an error of the peer, a stop, hold timer expiry).
    NotificationSent { code: u8, subcode: u8, message: String },
    /// The peer sent this NOTIFICATION.
    NotificationReceived { code: u8, subcode: u8, message: String },
    /// The TCP connection failed or closed without a NOTIFICATION.
    ConnectionLost,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::NotificationSent { code, subcode, message } => {
                write!(f, "NOTIFICATION sent ({code}/{subcode} {message})")
            }
            DownReason::NotificationReceived { code, subcode, message } => {
                write!(f, "NOTIFICATION received ({code}/{subcode} {message})")
            }
            DownReason::ConnectionLost => write!(f, "connection lost without a NOTIFICATION"),
        }
    }
}

impl DownReason {
    fn from_notification(n: &NotificationMessage, sent: bool) -> Self {
        let message = match n.shutdown_communication() {
            Some(Ok(text)) => format!("{}: {text}", n.subcode_name()),
            _ => format!("{} / {}", n.code_name(), n.subcode_name()),
        };
        if sent {
            DownReason::NotificationSent { code: n.code, subcode: n.subcode, message }
        } else {
            DownReason::NotificationReceived { code: n.code, subcode: n.subcode, message }
        }
    }
}

/// What the peer task must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Initiate a TCP connection to the peer (and keep accepting one from it).
    Connect,
    /// Close the TCP connection (after sending what came before).
    DropConnection,
    /// Close the connection just offered with [`Event::TcpConnected`]; the current one stays.
    RefuseConnection,
    SendOpen(Box<OpenMessage>),
    SendKeepalive,
    SendNotification(NotificationMessage),
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// The session is Established with these parameters.
    SessionUp(Box<Negotiated>),
    /// The Established session ended.
    SessionDown(DownReason),
    /// Hand the UPDATE just received to the RIB.
    ProcessUpdate,
    /// Answer a route refresh request (or pass on a BoRR/EoRR) for a negotiated family.
    ProcessRouteRefresh(RouteRefreshMessage),
}

/// One peer's FSM.
#[derive(Debug, Clone)]
pub struct Fsm {
    config: PeerConfig,
    state: State,
    /// Bit set of running [`Timer`]s, as the FSM last ordered them.
    timers: u8,
    /// Whether the FSM believes a TCP connection exists.
    connected: bool,
    /// RFC 4271 ConnectRetryCounter.
    connect_retry_counter: u32,
    /// Consecutive failures since the session was last stable: the back-off exponent.
    failures: u32,
    /// After ManualStop the session stays down until ManualStart.
    auto_restart: bool,
    /// Idle for a given time (AutomaticStop with `restart_after`): the peer's
    /// connections are refused until the IdleHoldTimer expires.
    held_down: bool,
    negotiated: Option<Negotiated>,
}

impl Fsm {
    pub fn new(config: PeerConfig) -> Self {
        Fsm {
            config,
            state: State::Idle,
            timers: 0,
            connected: false,
            connect_retry_counter: 0,
            failures: 0,
            auto_restart: false,
            held_down: false,
            negotiated: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The parameters of the current session, from the peer's OPEN on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    pub fn is_running(&self, timer: Timer) -> bool {
        self.timers & timer.bit() != 0
    }

    /// Whether a connection from the peer would be taken now: Idle takes one
    /// unless stopped or held down; the other states take one when they have
    /// none (collisions are the peer task's, see [`Event::TcpConnected`]).
    pub fn accepts_connection(&self) -> bool {
        match self.state {
            State::Idle => self.auto_restart && !self.held_down,
            State::Connect | State::Active => !self.connected,
            _ => false,
        }
    }

    /// Replaces the configuration; it takes effect at the next connection.
    pub fn set_config(&mut self, config: PeerConfig) {
        self.config = config;
    }

    /// The idle hold time after `failures` consecutive failures: the base
    /// time doubled for each failure after the first, capped.
    pub fn idle_hold_time(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        self.config.idle_hold.saturating_mul(1 << doublings).min(self.config.idle_hold_max)
    }

    /// Checks the FSM's own invariants; `Err` names the broken one. Used by
    /// the property tests, cheap enough for debug assertions.
    pub fn check_invariants(&self) -> Result<(), String> {
        let running: Vec<Timer> = Timer::ALL.into_iter().filter(|t| self.is_running(*t)).collect();
        let allowed: &[Timer] = match self.state {
            State::Idle => &[Timer::IdleHold],
            State::Connect | State::Active => &[Timer::ConnectRetry, Timer::DelayOpen],
            State::OpenSent => &[Timer::ConnectRetry, Timer::Hold],
            State::OpenConfirm => &[Timer::Hold, Timer::Keepalive],
            State::Established => &[Timer::Hold, Timer::Keepalive, Timer::Stable],
        };
        if let Some(bad) = running.iter().find(|t| !allowed.contains(t)) {
            return Err(format!("{bad:?} runs in {:?}", self.state));
        }
        let must_connect = matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established);
        if must_connect && !self.connected {
            return Err(format!("{:?} without a connection", self.state));
        }
        if self.state == State::Idle && self.connected {
            return Err("Idle with a connection".into());
        }
        if self.is_running(Timer::DelayOpen) && !self.connected {
            return Err("DelayOpen runs without a connection".into());
        }
        // Liveness: every state that waits has a way out.
        let waiting = matches!(self.state, State::Connect | State::Active);
        if waiting && self.connected && !self.is_running(Timer::DelayOpen) {
            return Err(format!("{:?} with a connection but no DelayOpen", self.state));
        }
        if waiting && !self.connected && !self.config.passive && !self.is_running(Timer::ConnectRetry) {
            return Err(format!("{:?} will never connect again", self.state));
        }
        if self.state == State::Idle && self.auto_restart && !self.is_running(Timer::IdleHold) {
            return Err("Idle will never restart".into());
        }
        if self.held_down && self.state != State::Idle {
            return Err(format!("held down in {:?}", self.state));
        }
        let negotiated = matches!(self.state, State::OpenConfirm | State::Established);
        if negotiated != self.negotiated.is_some() {
            return Err(format!("{:?} with negotiated = {}", self.state, self.negotiated.is_some()));
        }
        Ok(())
    }

    /// Feeds one event; returns what to do. Never fails.
    pub fn handle_event(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(timer) = timer_of(&event)
            && !self.is_running(timer)
        {
            return out;
        }
        if let Some(timer) = timer_of(&event) {
            self.timers &= !timer.bit();
        }
        match self.state {
            State::Idle => self.idle(event, &mut out),
            State::Connect | State::Active => self.connect_or_active(event, &mut out),
            State::OpenSent => self.open_sent(event, &mut out),
            State::OpenConfirm => self.open_confirm(event, &mut out),
            State::Established => self.established(event, &mut out),
        }
        out
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

    fn stop_all(&mut self, out: &mut Vec<Action>) {
        for timer in Timer::ALL {
            self.stop(timer, out);
        }
    }

    fn drop_connection(&mut self, out: &mut Vec<Action>) {
        if self.connected {
            self.connected = false;
            out.push(Action::DropConnection);
        }
    }

    fn send_notification(&mut self, notification: NotificationMessage, out: &mut Vec<Action>) {
        out.push(Action::SendNotification(notification));
    }

    /// RFC 4271 8.2.1.1: ManualStart / AutomaticStart in Idle: "initializes
    /// all BGP resources for the peer connection, sets ConnectRetryCounter to
    /// zero, starts the ConnectRetryTimer with the initial value, initiates a
    /// TCP connection to the other BGP peer, listens for a connection that may
    /// be initiated by the remote BGP peer, and changes its state to Connect."
    /// A passive peer goes to Active and only listens.
    fn start_session(&mut self, out: &mut Vec<Action>) {
        self.stop(Timer::IdleHold, out);
        self.held_down = false;
        if self.config.passive {
            self.state = State::Active;
        } else {
            self.start(Timer::ConnectRetry, self.config.connect_retry, out);
            out.push(Action::Connect);
            self.state = State::Connect;
        }
    }

    /// Every error path to Idle: stop timers, drop the connection, report a
    /// lost Established session, count the failure and schedule the automatic
    /// restart (DampPeerOscillations). Only a session that got as far as
    /// exchanging messages counts as a failure: a connect that fails is no
    /// reason to wait longer for the next one.
    fn go_idle(&mut self, reason: DownReason, restart_after: Option<Duration>, out: &mut Vec<Action>) {
        self.stop_all(out);
        self.drop_connection(out);
        if self.state == State::Established {
            out.push(Action::SessionDown(reason));
        }
        // A stop with its own restart time (a configuration change, a prefix-limit hold-down)
        // is not a flap: it must not lengthen the back-off of the next real failure.
        if restart_after.is_none() && matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established) {
            self.failures = self.failures.saturating_add(1);
        }
        self.negotiated = None;
        self.state = State::Idle;
        if self.auto_restart {
            self.held_down = restart_after.is_some_and(|wait| !wait.is_zero());
            let wait = restart_after.unwrap_or_else(|| self.idle_hold_time());
            self.start(Timer::IdleHold, wait, out);
        }
    }

    fn notify_and_idle(&mut self, notification: NotificationMessage, out: &mut Vec<Action>) {
        let reason = DownReason::from_notification(&notification, true);
        if self.connected {
            self.send_notification(notification, out);
        }
        self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        self.go_idle(reason, None, out);
    }

    /// ManualStop in any state but Idle: RFC 4271 8.2.2 "sends the
    /// NOTIFICATION with a Cease, [...] sets the ConnectRetryCounter to zero,
    /// and changes its state to Idle"; RFC 8203 puts the operator's text in it.
    fn manual_stop(&mut self, message: &str, out: &mut Vec<Action>) {
        let notification = NotificationMessage::cease_with_communication(code::cease::ADMINISTRATIVE_SHUTDOWN, message);
        let reason = DownReason::from_notification(&notification, true);
        if self.connected && !matches!(self.state, State::Connect | State::Active) {
            self.send_notification(notification, out);
        }
        self.auto_restart = false;
        self.connect_retry_counter = 0;
        self.go_idle(reason, None, out);
    }

    fn automatic_stop(
        &mut self,
        notification: NotificationMessage,
        restart_after: Option<Duration>,
        out: &mut Vec<Action>,
    ) {
        let reason = DownReason::from_notification(&notification, true);
        if self.connected && !matches!(self.state, State::Connect | State::Active) {
            self.send_notification(notification, out);
        }
        self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        self.go_idle(reason, restart_after, out);
    }

    /// RFC 9687 section 4, in OpenSent, OpenConfirm and Established: send
    /// Send Hold Timer Expired if it can be sent without blocking (the peer
    /// task only tries), drop the connection, count the failure, go Idle --
    /// hold timer expiry with another code.
    fn send_hold_expired(&mut self, out: &mut Vec<Action>) {
        self.notify_and_idle(NotificationMessage::new(code::SEND_HOLD_TIMER_EXPIRED, 0, Vec::new()), out)
    }

    fn fsm_error(&mut self, out: &mut Vec<Action>) {
        // RFC 6608 section 4: the subcode names the state the unexpected message arrived in.
        let subcode = match self.state {
            State::OpenSent => 1,
            State::OpenConfirm => 2,
            State::Established => 3,
            _ => 0,
        };
        self.notify_and_idle(NotificationMessage::new(code::FINITE_STATE_MACHINE_ERROR, subcode, Vec::new()), out);
    }

    fn send_open(&mut self, out: &mut Vec<Action>) {
        out.push(Action::SendOpen(Box::new(local_open(&self.config))));
    }

    /// Checks the peer's OPEN; on success sends KEEPALIVE, sets the
    /// negotiated hold and keepalive timers and goes to OpenConfirm.
    fn accept_open(&mut self, open: &OpenMessage, out: &mut Vec<Action>) {
        match negotiate(&self.config, open) {
            Err(notification) => self.notify_and_idle(notification, out),
            Ok(negotiated) => {
                self.stop(Timer::ConnectRetry, out);
                self.stop(Timer::DelayOpen, out);
                self.stop(Timer::Hold, out);
                out.push(Action::SendKeepalive);
                // RFC 4271 4.4: "If the negotiated Hold Time interval is zero,
                // then periodic KEEPALIVE messages MUST NOT be sent."
                if negotiated.hold_time != 0 {
                    self.start(Timer::Keepalive, secs(negotiated.keepalive), out);
                    self.start(Timer::Hold, secs(negotiated.hold_time), out);
                }
                self.negotiated = Some(negotiated);
                self.state = State::OpenConfirm;
            }
        }
    }

    fn restart_hold(&mut self, out: &mut Vec<Action>) {
        if let Some(n) = &self.negotiated
            && n.hold_time != 0
        {
            let hold = secs(n.hold_time);
            self.start(Timer::Hold, hold, out);
        }
    }

    fn idle(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart => {
                self.auto_restart = true;
                self.failures = 0;
                self.connect_retry_counter = 0;
                self.start_session(out);
            }
            Event::AutomaticStart | Event::IdleHoldTimerExpires if self.auto_restart => self.start_session(out),
            // Not RFC 4271 (Idle refuses every connection there): the peer's
            // connection is an automatic start that needs no connect of ours,
            // unless the session is stopped or held down.
            Event::TcpConnected if self.accepts_connection() => {
                self.stop(Timer::IdleHold, out);
                self.held_down = false;
                self.state = State::Active;
                self.connect_or_active(Event::TcpConnected, out);
            }
            Event::TcpConnected => out.push(Action::RefuseConnection),
            Event::ManualStop { .. } => {
                self.auto_restart = false;
                self.held_down = false;
                self.stop(Timer::IdleHold, out);
            }
            _ => {}
        }
    }

    fn connect_or_active(&mut self, event: Event, out: &mut Vec<Action>) {
        let active = self.state == State::Active;
        match event {
            Event::ManualStart | Event::AutomaticStart => {}
            Event::ManualStop { message } => self.manual_stop(&message, out),
            Event::ConnectRetryTimerExpires => {
                // Connect: "drops the TCP connection, restarts the
                // ConnectRetryTimer, stops the DelayOpenTimer, initiates a TCP
                // connection"; Active: the same and "changes its state to Connect".
                self.drop_connection(out);
                self.stop(Timer::DelayOpen, out);
                self.start(Timer::ConnectRetry, self.config.connect_retry, out);
                out.push(Action::Connect);
                self.state = State::Connect;
            }
            Event::DelayOpenTimerExpires => {
                // "sends an OPEN message to its peer, sets the HoldTimer to a
                // large value, and changes its state to OpenSent."
                self.send_open(out);
                self.start(Timer::Hold, LARGE_HOLD_TIME, out);
                self.state = State::OpenSent;
            }
            // A second connection while one is up: the peer task resolves
            // collisions before the FSM sees a connection, so refuse it.
            Event::TcpConnected if self.connected => out.push(Action::RefuseConnection),
            Event::TcpConnected => {
                self.connected = true;
                self.stop(Timer::ConnectRetry, out);
                if let Some(delay) = self.config.delay_open {
                    // "If the DelayOpen attribute is set to TRUE, the local
                    // system: stops the ConnectRetryTimer [...], sets the
                    // DelayOpenTimer to the initial value".
                    self.start(Timer::DelayOpen, delay, out);
                } else {
                    self.send_open(out);
                    self.start(Timer::Hold, LARGE_HOLD_TIME, out);
                    self.state = State::OpenSent;
                }
            }
            Event::TcpConnectionFails if self.is_running(Timer::DelayOpen) || active => {
                // "If the DelayOpenTimer is running, the local system: restarts
                // the ConnectRetryTimer [...], stops the DelayOpenTimer [...],
                // continues to listen for a connection [...], and changes its
                // state to Active."
                self.stop(Timer::DelayOpen, out);
                self.drop_connection(out);
                if !self.config.passive {
                    self.start(Timer::ConnectRetry, self.config.connect_retry, out);
                }
                self.state = State::Active;
            }
            // Not RFC 4271 (Connect goes to Idle here): the connect failed;
            // the next one starts when the running ConnectRetryTimer expires.
            Event::TcpConnectionFails => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                if !self.is_running(Timer::ConnectRetry) {
                    self.start(Timer::ConnectRetry, self.config.connect_retry, out);
                }
                self.state = State::Active;
            }
            Event::BgpOpen(open) if self.is_running(Timer::DelayOpen) => {
                // Event 20: "sends an OPEN message, sends a KEEPALIVE message
                // [...] and changes its state to OpenConfirm."
                self.send_open(out);
                self.accept_open(&open, out);
            }
            Event::BgpHeaderErr(notification) | Event::BgpOpenMsgErr(notification) => {
                self.notify_and_idle(notification, out)
            }
            Event::NotifMsgVerErr(_) => {
                self.stop_all(out);
                self.go_idle(DownReason::ConnectionLost, None, out);
            }
            Event::AutomaticStop { notification, restart_after } => {
                self.automatic_stop(notification, restart_after, out)
            }
            // "In response to any other event [...] the local system: [...]
            // drops the TCP connection, [...] increments the
            // ConnectRetryCounter by 1, performs peer oscillation damping [...]
            // and changes its state to Idle."
            _ => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.go_idle(DownReason::ConnectionLost, None, out);
            }
        }
    }

    fn open_sent(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart => {}
            Event::ManualStop { message } => self.manual_stop(&message, out),
            Event::AutomaticStop { notification, restart_after } => {
                self.automatic_stop(notification, restart_after, out)
            }
            // "If the HoldTimer_Expires (Event 10), the local system sends a
            // NOTIFICATION message with the error code Hold Timer Expired".
            Event::HoldTimerExpires => {
                self.notify_and_idle(NotificationMessage::new(code::HOLD_TIMER_EXPIRED, 0, Vec::new()), out)
            }
            Event::SendHoldTimerExpires => self.send_hold_expired(out),
            // "If a TcpConnectionFails event (Event 18) is received, the local
            // system: closes the BGP connection, restarts the ConnectRetryTimer,
            // continues to listen for a connection [...], and changes its state to Active."
            Event::TcpConnectionFails => {
                self.stop_all(out);
                self.drop_connection(out);
                if !self.config.passive {
                    self.start(Timer::ConnectRetry, self.config.connect_retry, out);
                }
                self.state = State::Active;
            }
            Event::BgpOpen(open) => self.accept_open(&open, out),
            Event::BgpHeaderErr(notification) | Event::BgpOpenMsgErr(notification) => {
                self.notify_and_idle(notification, out)
            }
            Event::OpenCollisionDump => self.collision_dump(out),
            // RFC 4271 lists NotifMsg among the events answered with an FSM
            // error here; answering a NOTIFICATION with one helps nobody, so
            // the session just ends with the peer's reason.
            Event::NotifMsgVerErr(_) => self.go_idle(DownReason::ConnectionLost, None, out),
            Event::NotifMsg(notification) => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.go_idle(DownReason::from_notification(&notification, false), None, out)
            }
            Event::TcpConnected => out.push(Action::RefuseConnection),
            _ => self.fsm_error(out),
        }
    }

    /// RFC 4271 6.8: the connection that loses is closed with Cease /
    /// Connection Collision Resolution; the FSM then waits for the winner.
    fn collision_dump(&mut self, out: &mut Vec<Action>) {
        self.send_notification(
            NotificationMessage::new(code::CEASE, code::cease::CONNECTION_COLLISION_RESOLUTION, Vec::new()),
            out,
        );
        self.stop_all(out);
        self.drop_connection(out);
        self.negotiated = None;
        if !self.config.passive {
            self.start(Timer::ConnectRetry, self.config.connect_retry, out);
        }
        self.state = State::Active;
    }

    fn open_confirm(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart => {}
            Event::ManualStop { message } => self.manual_stop(&message, out),
            Event::AutomaticStop { notification, restart_after } => {
                self.automatic_stop(notification, restart_after, out)
            }
            Event::HoldTimerExpires => {
                self.notify_and_idle(NotificationMessage::new(code::HOLD_TIMER_EXPIRED, 0, Vec::new()), out)
            }
            Event::SendHoldTimerExpires => self.send_hold_expired(out),
            Event::KeepaliveTimerExpires => self.keepalive_due(out),
            Event::TcpConnectionFails | Event::NotifMsgVerErr(_) => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.go_idle(DownReason::ConnectionLost, None, out)
            }
            Event::NotifMsg(notification) => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.go_idle(DownReason::from_notification(&notification, false), None, out)
            }
            // "If the local system receives a KEEPALIVE message (KeepAliveMsg
            // (Event 26)), the local system: restarts the HoldTimer and
            // changes its state to Established."
            Event::KeepAliveMsg => {
                self.stop(Timer::Hold, out);
                self.restart_hold(out);
                self.start(Timer::Stable, self.config.stable_after, out);
                self.state = State::Established;
                if let Some(negotiated) = &self.negotiated {
                    out.push(Action::SessionUp(Box::new(negotiated.clone())));
                }
            }
            Event::BgpHeaderErr(notification) | Event::BgpOpenMsgErr(notification) => {
                self.notify_and_idle(notification, out)
            }
            Event::OpenCollisionDump => self.collision_dump(out),
            Event::TcpConnected => out.push(Action::RefuseConnection),
            _ => self.fsm_error(out),
        }
    }

    fn keepalive_due(&mut self, out: &mut Vec<Action>) {
        out.push(Action::SendKeepalive);
        if let Some(n) = &self.negotiated
            && n.keepalive != 0
        {
            let keepalive = secs(n.keepalive);
            self.start(Timer::Keepalive, keepalive, out);
        }
    }

    fn established(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::ManualStart | Event::AutomaticStart => {}
            Event::ManualStop { message } => self.manual_stop(&message, out),
            Event::AutomaticStop { notification, restart_after } => {
                self.automatic_stop(notification, restart_after, out)
            }
            Event::HoldTimerExpires => {
                self.notify_and_idle(NotificationMessage::new(code::HOLD_TIMER_EXPIRED, 0, Vec::new()), out)
            }
            Event::SendHoldTimerExpires => self.send_hold_expired(out),
            Event::KeepaliveTimerExpires => self.keepalive_due(out),
            Event::StableTimerExpires => self.failures = 0,
            Event::TcpConnectionFails | Event::NotifMsgVerErr(_) => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.go_idle(DownReason::ConnectionLost, None, out)
            }
            Event::NotifMsg(notification) => {
                self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
                self.go_idle(DownReason::from_notification(&notification, false), None, out)
            }
            // "If the local system receives a KEEPALIVE message (Event 26),
            // the local system: restarts its HoldTimer, if the negotiated
            // HoldTime value is non-zero".
            Event::KeepAliveMsg => self.restart_hold(out),
            Event::UpdateMsg => {
                self.restart_hold(out);
                out.push(Action::ProcessUpdate);
            }
            Event::RouteRefreshMsg(refresh) => {
                self.restart_hold(out);
                // RFC 2918 section 4: a request for a family that was not
                // negotiated "shall" be ignored.
                // RFC 7313 section 5: BoRR and EoRR mean something only with
                // enhanced route refresh; "the BGP speaker MUST ignore" a
                // ROUTE-REFRESH message with any other subtype.
                let subtype_ok = match refresh.subtype {
                    0 => true,
                    1 | 2 => self.negotiated.as_ref().is_some_and(|n| n.enhanced_route_refresh),
                    _ => false,
                };
                let negotiated =
                    self.negotiated.as_ref().is_some_and(|n| n.route_refresh && n.families.contains(&refresh.family));
                if negotiated && subtype_ok {
                    out.push(Action::ProcessRouteRefresh(refresh));
                }
            }
            Event::UpdateMsgErr(notification)
            | Event::BgpHeaderErr(notification)
            | Event::BgpOpenMsgErr(notification) => self.notify_and_idle(notification, out),
            Event::OpenCollisionDump => self.collision_dump_established(out),
            // RFC 4271 6.8: "collision with existing BGP connection that is in
            // the Established state causes closing of the newly created
            // connection" -- the peer task refuses it.
            Event::TcpConnected => out.push(Action::RefuseConnection),
            _ => self.fsm_error(out),
        }
    }

    fn collision_dump_established(&mut self, out: &mut Vec<Action>) {
        let notification =
            NotificationMessage::new(code::CEASE, code::cease::CONNECTION_COLLISION_RESOLUTION, Vec::new());
        self.notify_and_idle(notification, out);
    }
}

fn secs(seconds: u16) -> Duration {
    Duration::from_secs(u64::from(seconds))
}

fn timer_of(event: &Event) -> Option<Timer> {
    match event {
        Event::ConnectRetryTimerExpires => Some(Timer::ConnectRetry),
        Event::HoldTimerExpires => Some(Timer::Hold),
        Event::KeepaliveTimerExpires => Some(Timer::Keepalive),
        Event::DelayOpenTimerExpires => Some(Timer::DelayOpen),
        Event::IdleHoldTimerExpires => Some(Timer::IdleHold),
        Event::StableTimerExpires => Some(Timer::Stable),
        _ => None,
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
