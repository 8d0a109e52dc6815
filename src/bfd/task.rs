//! One BFD session's task: it alone owns the [`Session`], its sending
//! socket and its two timers, takes the packets the demultiplexer hands it,
//! and publishes a [`SessionStatus`] through `watch`.

use std::net::IpAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::packet::{ControlPacket, Diagnostic, SessionState};
use super::session::{Action, Event, Intervals, Session, Timer};
use super::transport::Hops;

/// Packets waiting for a session; more than a few means it is not keeping up,
/// and a dropped packet is one the detection time already allows for.
pub const PACKETS_CAPACITY: usize = 16;
pub const COMMANDS_CAPACITY: usize = 16;

/// What the demultiplexer hands a session: a packet for it, or the reason
/// a packet from its peer was discarded (for the counts).
#[derive(Debug)]
pub(super) enum Delivery {
    Packet(ControlPacket),
    Dropped(Dropped),
}

/// Why a received packet was discarded before reaching a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// A single-hop packet without TTL (Hop Limit) 255 (RFC 5881 5).
    WrongTtl,
    /// It did not decode as a Control packet (RFC 5880 6.8.6).
    Malformed,
    /// Its Your Discriminator names no session of its source (RFC 5880 6.8.6).
    Discriminator,
}

/// Packets from the peer discarded, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DroppedCounts {
    pub wrong_ttl: u64,
    pub malformed: u64,
    pub discriminator: u64,
}

impl DroppedCounts {
    fn count(&mut self, reason: Dropped) {
        let n = match reason {
            Dropped::WrongTtl => &mut self.wrong_ttl,
            Dropped::Malformed => &mut self.malformed,
            Dropped::Discriminator => &mut self.discriminator,
        };
        *n += 1;
    }
}

/// What a session's owner may ask of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    SetIntervals(Intervals),
    AdminDown,
    AdminUp,
}

/// A session as status, metrics and the BGP peer see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionStatus {
    pub peer: IpAddr,
    pub hops: Hops,
    pub state: SessionState,
    pub remote_state: SessionState,
    /// Why the state last changed (RFC 5880's diagnostic name).
    pub diagnostic: String,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub configured: Intervals,
    pub transmit_interval_ms: f64,
    pub detection_time_ms: f64,
    /// The peer's C bit: its BFD does not share fate with its control plane.
    pub remote_control_plane_independent: bool,
    pub transitions: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Packets from the peer discarded before they reached the session.
    pub packets_dropped: DroppedCounts,
    pub send_errors: u64,
}

impl SessionStatus {
    fn of(peer: IpAddr, hops: Hops, s: &Session) -> Self {
        SessionStatus {
            peer,
            hops,
            state: s.state(),
            remote_state: s.remote_state(),
            diagnostic: s.local_diagnostic().name().to_string(),
            local_discriminator: s.local_discriminator(),
            remote_discriminator: s.remote_discriminator(),
            configured: s.configured(),
            transmit_interval_ms: millis(s.transmit_interval()),
            detection_time_ms: millis(s.detection_time()),
            remote_control_plane_independent: s.remote_control_plane_independent(),
            transitions: 0,
            packets_sent: 0,
            packets_received: 0,
            packets_dropped: DroppedCounts::default(),
            send_errors: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.state == SessionState::Up
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A session task's channels: packets from the demultiplexer, commands from
/// the owner, its status out.
pub(super) struct Channels {
    pub packets: mpsc::Receiver<Delivery>,
    pub commands: mpsc::Receiver<SessionCommand>,
    pub status: watch::Sender<SessionStatus>,
}

/// Runs the session until its owner drops the command sender.
pub(super) async fn run(
    mut session: Session,
    first: Vec<Action>,
    socket: UdpSocket,
    (peer, hops): (IpAddr, Hops),
    channels: Channels,
) {
    let Channels { mut packets, mut commands, status } = channels;
    let mut timers = Timers::default();
    let mut counters = Counters::default();
    execute(first, &socket, &mut timers, &mut counters, peer);
    loop {
        let event = tokio::select! {
            Some(delivery) = packets.recv() => match delivery {
                Delivery::Packet(packet) => {
                    counters.received += 1;
                    Event::Received(packet)
                }
                Delivery::Dropped(reason) => {
                    counters.dropped.count(reason);
                    status.send_modify(|s| s.packets_dropped = counters.dropped);
                    continue;
                }
            },
            command = commands.recv() => match command {
                None => return,
                Some(SessionCommand::SetIntervals(i)) => Event::SetIntervals(i),
                Some(SessionCommand::AdminDown) => Event::AdminDown,
                Some(SessionCommand::AdminUp) => Event::AdminUp,
            },
            () = sleep_until(timers.transmit) => { timers.transmit = None; Event::TransmitTimerExpires }
            () = sleep_until(timers.detect) => { timers.detect = None; Event::DetectTimerExpires }
        };
        let actions = session.handle_event(event);
        execute(actions, &socket, &mut timers, &mut counters, peer);
        status.send_if_modified(|s| {
            let mut now = SessionStatus::of(peer, hops, &session);
            now.transitions = counters.transitions;
            now.packets_sent = counters.sent;
            now.packets_received = counters.received;
            now.packets_dropped = counters.dropped;
            now.send_errors = counters.send_errors;
            let changed = *s != now;
            *s = now;
            changed
        });
    }
}

#[derive(Default)]
struct Timers {
    transmit: Option<Instant>,
    detect: Option<Instant>,
}

#[derive(Default)]
struct Counters {
    transitions: u64,
    sent: u64,
    received: u64,
    dropped: DroppedCounts,
    send_errors: u64,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn execute(actions: Vec<Action>, socket: &UdpSocket, timers: &mut Timers, counters: &mut Counters, peer: IpAddr) {
    for action in actions {
        match action {
            Action::Send(packet) => match socket.try_send(&packet.encode()) {
                Ok(_) => counters.sent += 1,
                // A full buffer or an ICMP error from the last send: this
                // packet is lost like one on the wire, which the peer's
                // detection time allows for.
                Err(_) => counters.send_errors += 1,
            },
            Action::StartTimer(timer, after) => {
                let at = Some(Instant::now() + after);
                match timer {
                    Timer::Transmit => timers.transmit = at,
                    Timer::Detect => timers.detect = at,
                }
            }
            Action::StopTimer(Timer::Transmit) => timers.transmit = None,
            Action::StopTimer(Timer::Detect) => timers.detect = None,
            Action::StateChanged { from, to, diagnostic } => {
                counters.transitions += 1;
                log_change(peer, from, to, diagnostic);
            }
        }
    }
}

fn log_change(peer: IpAddr, from: SessionState, to: SessionState, diagnostic: Diagnostic) {
    if to == SessionState::Up || from == SessionState::Up {
        tracing::info!(%peer, from = from.name(), to = to.name(), diagnostic = diagnostic.name(), "BFD session state");
    } else {
        tracing::debug!(%peer, from = from.name(), to = to.name(), diagnostic = diagnostic.name(), "BFD session state");
    }
}

/// The status a new session publishes before its first event.
pub(super) fn initial_status(peer: IpAddr, hops: Hops, session: &Session) -> SessionStatus {
    SessionStatus::of(peer, hops, session)
}
