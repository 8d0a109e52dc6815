//! The per-peer task: the only owner of one session's FSM, connection,
//! timers and counters. It turns connection events, timer expiries and
//! commands into FSM events and carries out the FSM's actions. It never
//! awaits a socket write: the connection's writer task does (see
//! [`super::connection`]), so a peer that stops reading cannot stop the
//! timers.

use std::collections::VecDeque;

use super::received::Received;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::config::PeerConfig;
use super::connection::{CLOSE_LINGER, Connection, ConnectionEvent};
use super::fsm::{Action, DownReason, Event, Fsm, LARGE_HOLD_TIME, State, Timer};
use super::negotiate::Negotiated;
use super::outbound::Outbound;
use super::status::MessageCounts;
use super::status::{NotificationSummary, PeerBfdStatus, PeerStatus};
use super::transport;
use crate::bfd::SessionStatus as BfdStatus;
use crate::bgp::packet::notification::code;
use crate::bgp::packet::{
    Capability, DecodeContext, DecodeError, EncodeContext, Family, Message, MessageError, MessageType,
    NotificationMessage, Rfc7606Action, RouteRefreshMessage, UpdateMessage, UpdateOutcome,
};

/// Capacity of a peer's command channel: commands are rare.
pub const COMMAND_CAPACITY: usize = 16;
/// Capacity of a peer's outbound channel: when it is full the RIB builds no
/// more for the peer (it never waits on one peer). A slot holds one of the
/// RIB's batches already encoded (a few kilobytes, at most 4 096 prefixes);
/// one is enough beside the connection's send queue (`SEND_QUEUE_OCTETS`),
/// which keeps the socket fed while the RIB builds the next, and a reflector
/// holds little per client.
pub const OUTBOUND_CAPACITY: usize = 1;

/// The Restart State bit of the graceful-restart capability's flags (RFC 4724 section 3).
const RESTART_STATE: u8 = 0x8;
/// How late the peer's OPEN of a simultaneous open can come after our own connection reached
/// Established (a SYN retransmitted after the initial 1 s timeout, twice).
const SIMULTANEOUS_OPEN_RACE: Duration = Duration::from_secs(3);

/// What the owner of a peer can ask of it.
#[derive(Debug)]
pub enum PeerCommand {
    /// ManualStart.
    Start,
    /// ManualStop with an RFC 8203 shutdown communication.
    Stop { message: String },
    /// New configuration; a running session restarts with Cease / Other Configuration Change.
    Reconfigure(Box<PeerConfig>),
    /// A connection from the peer's address, accepted by the listener.
    Incoming(TcpStream),
    /// Ask the peer to resend a family (RFC 2918).
    RequestRefresh(Family),
    /// This process is stopping and will be back (graceful restart, restarting
    /// side): close the connection without a NOTIFICATION and end the task, so
    /// the peer keeps our routes as stale (RFC 4724 section 4.2).
    Abandon,
    /// The BFD session the BGP session follows from now on (`None`: none).
    SetBfd(Option<watch::Receiver<BfdStatus>>),
}

/// What a peer reports to the RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    SessionUp {
        peer: IpAddr,
        negotiated: Box<Negotiated>,
    },
    SessionDown {
        peer: IpAddr,
        reason: DownReason,
        /// BFD took the session down, and that may be the peer's control
        /// plane restarting ([`super::bfd_down`]): its routes are kept for
        /// graceful restart as after a connection lost without a NOTIFICATION.
        possible_restart: bool,
    },
    /// A decoded UPDATE with its RFC 7606 outcome (never a session reset).
    Update {
        peer: IpAddr,
        update: Box<UpdateMessage>,
        outcome: UpdateOutcome,
    },
    /// The peer asks us to resend a family (or marks a BoRR/EoRR, RFC 7313).
    RouteRefresh {
        peer: IpAddr,
        message: RouteRefreshMessage,
    },
}

/// The owner's side of a peer task. Dropping it ends the session with
/// Cease / Peer De-configured and ends the task.
pub struct PeerHandle {
    pub commands: flume::Sender<PeerCommand>,
    pub status: watch::Receiver<PeerStatus>,
    /// UPDATEs to send while Established; ones that arrive while the session
    /// is not (or was queued for an earlier session) are discarded, so that a
    /// stale announcement never follows the new session's table.
    pub outbound: mpsc::Sender<Outbound>,
    pub task: tokio::task::JoinHandle<()>,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Spawns the task of one peer; `events` is shared by all peers and bounded,
/// so a slow RIB slows the peers down instead of growing memory. With `bfd`
/// the session comes up only while that BFD session is Up.
pub fn spawn_peer(
    config: PeerConfig,
    events: mpsc::Sender<PeerEvent>,
    bfd: Option<watch::Receiver<BfdStatus>>,
) -> PeerHandle {
    let (command_tx, commands) = flume::bounded(COMMAND_CAPACITY);
    let (outbound_tx, outbound) = mpsc::channel(OUTBOUND_CAPACITY);
    let (status_tx, status) = watch::channel(PeerStatus::new(config.remote_addr));
    let mut peer = Peer {
        peer: config.remote_addr,
        status: PeerStatus::new(config.remote_addr),
        fsm: Fsm::new(config),
        connection: None,
        stream_outbound: false,
        // Allocated on the first bytes received: a thousand configured peers are not a
        // thousand sessions.
        read_buf: BytesMut::new(),
        contender: None,
        connecting: None,
        deadlines: [None; Timer::ALL.len()],
        pending: VecDeque::new(),
        pending_update: None,
        received: Received::default(),
        refreshing: Vec::new(),
        last_peer_id: None,
        status_tx,
        events,
        commands,
        outbound,
        bfd: None,
        bfd_up: false,
        bfd_possible_restart: false,
        deferred_start: None,
    };
    peer.set_bfd(bfd);
    let task = tokio::spawn(Box::new(peer).run());
    PeerHandle { commands: command_tx, status, outbound: outbound_tx, task }
}

struct Peer {
    peer: IpAddr,
    fsm: Fsm,
    connection: Option<Connection>,
    /// The current connection was initiated by us (for collision detection).
    stream_outbound: bool,
    read_buf: BytesMut,
    /// A second connection from the peer while ours is in OpenSent: held
    /// until its OPEN names the peer's identifier (RFC 4271 6.8).
    contender: Option<(TcpStream, BytesMut)>,
    connecting: Option<Connecting>,
    /// Timer deadlines by [`Timer`] index; a timer is cancelled by clearing
    /// its slot, and all of them go with the task.
    deadlines: [Option<Instant>; Timer::ALL.len()],
    /// Events produced while carrying out actions (a failed write).
    pending: VecDeque<Event>,
    pending_update: Option<(UpdateMessage, UpdateOutcome)>,
    /// Prefixes the peer currently announces, for its maximum-prefix limit
    /// (empty without one: the RIB counts them for status).
    received: Received,
    /// Families for which we sent BoRR: the RIB's End-of-RIB for one of them
    /// ends the re-advertisement and goes out as EoRR (RFC 7313).
    refreshing: Vec<Family>,
    /// The peer's identifier from the last OPEN, for collision detection.
    last_peer_id: Option<Ipv4Addr>,
    status: PeerStatus,
    status_tx: watch::Sender<PeerStatus>,
    events: mpsc::Sender<PeerEvent>,
    commands: flume::Receiver<PeerCommand>,
    outbound: mpsc::Receiver<Outbound>,
    /// The BFD session this session follows, if any.
    bfd: Option<watch::Receiver<BfdStatus>>,
    /// Whether that BFD session was Up when last looked at.
    bfd_up: bool,
    /// The session is being closed because BFD went down, which may be the
    /// peer's control plane restarting (reported with the session's end).
    bfd_possible_restart: bool,
    /// A start (manual, automatic, IdleHold expiry) held back while the BFD
    /// session is not Up; fed to the FSM when it comes Up.
    deferred_start: Option<Event>,
}

async fn bfd_changed(bfd: &mut Option<watch::Receiver<BfdStatus>>) -> Result<(), watch::error::RecvError> {
    match bfd {
        Some(bfd) => bfd.changed().await,
        None => std::future::pending().await,
    }
}

async fn connection_event(connection: &mut Option<Connection>) -> ConnectionEvent {
    match connection {
        Some(connection) => connection.next_event().await,
        None => std::future::pending().await,
    }
}

async fn read_contender(contender: &mut Option<(TcpStream, BytesMut)>) -> io::Result<usize> {
    match contender {
        Some((stream, buf)) => stream.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

async fn connected(connecting: &mut Option<Connecting>) -> io::Result<TcpStream> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Peer {
    /// The peer's life. The peer is boxed and so is each handler's future:
    /// an `async fn` keeps its arguments twice, and the largest handler
    /// would size every idle peer's task. A reflector holds a thousand idle
    /// tasks: each 0.6 KB and its peer 2.1 KB (debug build; 5.8 KB in all
    /// inline).
    async fn run(mut self: Box<Self>) {
        loop {
            while let Some(event) = self.pending.pop_front() {
                Box::pin(self.handle(event)).await;
            }
            // Our connection's OPEN may have named the peer first (an
            // Established session's contender waits for its own OPEN).
            if let Some(remote) = self.last_peer_id
                && self.fsm.state() != State::Established
                && let Some((stream, buf)) = self.contender.take()
            {
                Box::pin(self.decide(stream, buf, remote)).await;
                continue;
            }
            self.publish();
            let next_timer = self.deadlines.iter().flatten().min().copied();
            let established = self.fsm.state() == State::Established;
            // While the connection's send queue is full the RIB's UPDATEs
            // wait in their bounded channel (and then in the RIB).
            let room = self.connection.as_ref().is_none_or(Connection::has_room);
            tokio::select! {
                command = self.commands.recv_async() => match command.ok() {
                    Some(PeerCommand::Abandon) => {
                        // Dropping the connection sends a FIN and no NOTIFICATION.
                        self.connection = None;
                        self.contender = None;
                        return;
                    }
                    Some(command) => Box::pin(self.command(command)).await,
                    None => {
                        // RFC 4486: the peer was removed from the configuration.
                        let notification = NotificationMessage::new(code::CEASE, code::cease::PEER_DE_CONFIGURED, Vec::new());
                        Box::pin(self.handle(Event::AutomaticStop { notification, restart_after: None })).await;
                        self.publish();
                        return;
                    }
                },
                event = connection_event(&mut self.connection) => Box::pin(self.connection_event(event)).await,
                read = read_contender(&mut self.contender) => match read {
                    Ok(n) if n > 0 => Box::pin(self.resolve_collision()).await,
                    _ => self.contender = None,
                },
                result = connected(&mut self.connecting) => {
                    self.connecting = None;
                    match result {
                        Ok(stream) => Box::pin(self.offer(stream, true)).await,
                        Err(_) => Box::pin(self.handle(Event::TcpConnectionFails)).await,
                    }
                }
                () = sleep_until(next_timer) => Box::pin(self.fire_timers()).await,
                changed = bfd_changed(&mut self.bfd) => {
                    if changed.is_err() {
                        // The BFD session was removed with its configuration.
                        self.set_bfd(None);
                    }
                    Box::pin(self.follow_bfd()).await;
                }
                Some(outbound) = self.outbound.recv(), if room || !established => {
                    if established {
                        self.send_outbound(outbound);
                    }
                }
            }
        }
    }

    async fn connection_event(&mut self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::Received(bytes) => {
                // The reader already copied the read out at its length: an empty buffer takes
                // that allocation over rather than copying it again.
                if self.read_buf.is_empty() {
                    self.read_buf = BytesMut::from(bytes);
                } else {
                    self.read_buf.extend_from_slice(&bytes);
                }
                self.decode_input().await;
            }
            ConnectionEvent::Sent { messages, .. } => self.status.messages_out.add(&messages),
            ConnectionEvent::Failed => self.handle(Event::TcpConnectionFails).await,
            ConnectionEvent::SendHoldTimerExpired => {
                tracing::warn!(peer = %self.peer, "the peer has not taken our messages for the send hold time");
                self.handle(Event::SendHoldTimerExpires).await;
            }
        }
    }

    /// The send hold time of the current connection (RFC 9687): from the
    /// negotiated hold time, or the large one while waiting for the OPEN.
    fn send_hold_time(&self) -> Duration {
        let hold = self.fsm.negotiated().map_or(LARGE_HOLD_TIME.as_secs() as u16, |n| n.hold_time);
        self.fsm.config().send_hold_time(hold)
    }

    fn connect(&mut self, stream: TcpStream) {
        self.connection = Some(Connection::spawn(stream, self.send_hold_time()));
    }

    fn publish(&mut self) {
        self.status.state = self.fsm.state();
        self.status.connect_retry_counter = self.fsm.connect_retry_counter();
        if self.fsm.config().max_prefixes.is_some() {
            self.status.prefixes_received = self.received.len() as u64;
        }
        let status = self.status.clone();
        self.status_tx.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    async fn command(&mut self, command: PeerCommand) {
        match command {
            PeerCommand::Start => self.handle(Event::ManualStart).await,
            PeerCommand::Stop { message } => self.handle(Event::ManualStop { message }).await,
            PeerCommand::Reconfigure(config) => {
                let running = self.fsm.state() != State::Idle;
                self.fsm.set_config(*config);
                if running {
                    let notification =
                        NotificationMessage::new(code::CEASE, code::cease::OTHER_CONFIGURATION_CHANGE, Vec::new());
                    self.handle(Event::AutomaticStop { notification, restart_after: Some(Duration::ZERO) }).await;
                }
            }
            // Refused while BFD holds the session down.
            PeerCommand::Incoming(_) if self.held_by_bfd() => {}
            PeerCommand::Incoming(stream) => self.offer(stream, false).await,
            PeerCommand::RequestRefresh(family) => {
                let negotiated = self.fsm.negotiated().is_some_and(|n| n.route_refresh && n.families.contains(&family));
                if self.fsm.state() == State::Established && negotiated {
                    self.write(&Message::RouteRefresh(RouteRefreshMessage::request(family)));
                }
            }
            // Handled by the run loop, which ends the task.
            PeerCommand::Abandon => {}
            PeerCommand::SetBfd(bfd) => {
                self.set_bfd(bfd);
                self.follow_bfd().await;
            }
        }
    }

    fn set_bfd(&mut self, bfd: Option<watch::Receiver<BfdStatus>>) {
        self.bfd = bfd;
        self.bfd_up = self.bfd.as_ref().is_some_and(|b| b.borrow().is_up());
        self.status.bfd = self.bfd_status();
        if self.bfd.is_none()
            && let Some(start) = self.deferred_start.take()
        {
            self.pending.push_back(start);
        }
    }

    fn bfd_status(&self) -> Option<PeerBfdStatus> {
        self.bfd.as_ref().map(|b| {
            let s = b.borrow();
            PeerBfdStatus {
                state: s.state,
                diagnostic: s.diagnostic.clone(),
                transitions: s.transitions,
                detection_time_us: (s.detection_time_ms * 1000.0).round() as u64,
                packets_sent: s.packets_sent,
                packets_received: s.packets_received,
                packets_dropped: s.packets_dropped,
            }
        })
    }

    /// True while a BFD session is configured and not Up: the BGP session
    /// must not come up (RFC 5882 section 4.3: BFD down means the peer is).
    fn held_by_bfd(&self) -> bool {
        self.bfd.is_some() && !self.bfd_up
    }

    /// Follows the BFD session: down takes the BGP session down at once with
    /// Cease / BFD Down (RFC 9384), up lets a held-back start through.
    async fn follow_bfd(&mut self) {
        let up = self.bfd.as_mut().is_some_and(|b| b.borrow_and_update().is_up());
        self.status.bfd = self.bfd_status();
        if self.bfd.is_none() {
            return;
        }
        self.bfd_up = up;
        if up {
            if let Some(start) = self.deferred_start.take() {
                self.handle(start).await;
            }
        } else if self.fsm.state() != State::Idle {
            let independent = self.bfd.as_ref().is_some_and(|b| b.borrow().remote_control_plane_independent);
            // A capability without families (a helper-only peer) preserves nothing.
            let offered = self.fsm.negotiated().is_some_and(|n| {
                n.peer_graceful_restart.as_ref().is_some_and(|(time, families)| *time > 0 && !families.is_empty())
            });
            let opted_in = self.fsm.config().bfd.is_some_and(|b| b.graceful_restart);
            self.bfd_possible_restart = super::bfd_down::possible_restart(opted_in, independent, offered);
            tracing::warn!(
                peer = %self.peer,
                keep_routes = self.bfd_possible_restart,
                "BFD session down: BGP session closed"
            );
            let notification = NotificationMessage::new(code::CEASE, code::cease::BFD_DOWN, Vec::new());
            self.handle(Event::AutomaticStop { notification, restart_after: None }).await;
        }
    }

    /// A new connection, ours or the peer's. RFC 4271 6.8: "If the value of
    /// the local BGP Identifier is less than the remote one, the local system
    /// closes the BGP connection that already exists [...] and accepts the BGP
    /// connection initiated by the remote system. [...] Otherwise, the local
    /// system closes the newly created BGP connection". A collision with an
    /// Established session closes the new connection, unless the peer offered
    /// graceful restart: then its OPEN decides (see `resolve_collision`).
    async fn offer(&mut self, stream: TcpStream, outbound: bool) {
        if self.connection.is_none() {
            self.connecting = None;
            self.connect(stream);
            self.stream_outbound = outbound;
            self.handle(Event::TcpConnected).await;
            return;
        }
        let remote_id = self.fsm.negotiated().map(|n| n.peer_id).or(self.last_peer_id);
        let state = self.fsm.state();
        // Only the peer restarts: a connect of ours cannot be its new session.
        let restarted = !outbound && self.fsm.negotiated().is_some_and(|n| n.peer_graceful_restart.is_some());
        if state == State::Established && !restarted {
            refuse(stream);
        } else if state == State::Established {
            if let Some((old, _)) = self.contender.replace((stream, BytesMut::new())) {
                refuse(old);
            }
        } else if !self.stream_outbound {
            // The peer gave up on its earlier connection and dialled again.
            self.replace_connection(stream, BytesMut::new()).await;
        } else if let Some(remote) = remote_id {
            self.decide(stream, BytesMut::new(), remote).await;
        } else {
            // "if a BGP speaker has a connection in OpenSent, it may also
            // examine it if it knows the BGP Identifier by means outside of
            // the protocol": here, the contender's own OPEN.
            if let Some((old, _)) = self.contender.replace((stream, BytesMut::new())) {
                refuse(old);
            }
        }
    }

    /// The contender's OPEN (or the current connection's) names the peer.
    async fn resolve_collision(&mut self) {
        let Some((_, buf)) = &self.contender else { return };
        let (remote, graceful_restart) = match Message::decode(buf, &DecodeContext::default()) {
            Ok((decoded, _)) => match decoded.message {
                Message::Open(open) => {
                    let restart_flags = open.capabilities().find_map(|c| match c {
                        Capability::GracefulRestart { restart_flags, .. } => Some(*restart_flags),
                        _ => None,
                    });
                    (open.bgp_identifier, restart_flags)
                }
                _ => return self.drop_contender().await,
            },
            Err(DecodeError::Incomplete { .. }) => return,
            Err(DecodeError::SessionReset(_)) => return self.drop_contender().await,
        };
        if self.fsm.state() == State::Established {
            // RFC 4724 section 4.2: a peer that offered graceful restart and
            // sends an OPEN on a new connection has restarted; the old session
            // ends as if its connection had failed (its routes stay, stale)
            // and the new connection carries the next one. A peer without the
            // capability in its new OPEN gets the RFC 4271 6.8 answer.
            // A late OPEN of a simultaneous open also arrives while Established: it is a
            // restart only if the peer says so (Restart State) or our session is older than
            // any such race.
            let established_for =
                self.status.established_since.and_then(|since| since.elapsed().ok()).unwrap_or_default();
            let restarted = graceful_restart
                .is_some_and(|flags| flags & RESTART_STATE != 0 || established_for > SIMULTANEOUS_OPEN_RACE);
            if !restarted {
                return self.drop_contender().await;
            }
            if let Some((stream, buf)) = self.contender.take() {
                tracing::info!(peer = %self.peer, "the peer restarted: its new connection replaces the session");
                self.replace_connection(stream, buf).await;
            }
            return;
        }
        self.last_peer_id = Some(remote);
        if let Some((stream, buf)) = self.contender.take() {
            self.decide(stream, buf, remote).await;
        }
    }

    async fn drop_contender(&mut self) {
        if let Some((stream, _)) = self.contender.take() {
            refuse(stream);
        }
    }

    /// RFC 4271 6.8 between our connection and the peer's `stream`.
    async fn decide(&mut self, stream: TcpStream, buf: BytesMut, remote: Ipv4Addr) {
        if self.connection.is_none() || u32::from(self.fsm.config().local_id) < u32::from(remote) {
            self.replace_connection(stream, buf).await;
        } else {
            refuse(stream);
        }
    }

    /// Closes the current connection for `stream`, whose first octets are `buf`.
    async fn replace_connection(&mut self, stream: TcpStream, buf: BytesMut) {
        // Before an OPEN was sent (DelayOpen) and after Established (a
        // restarted peer) the old connection just fails.
        let dump = match self.fsm.state() {
            State::OpenSent | State::OpenConfirm => Event::OpenCollisionDump,
            _ => Event::TcpConnectionFails,
        };
        self.handle(dump).await;
        self.connect(stream);
        self.stream_outbound = false;
        self.handle(Event::TcpConnected).await;
        if self.connection.is_some() && !buf.is_empty() {
            self.read_buf = buf;
            self.decode_input().await;
        }
    }

    fn decode_context(&self) -> DecodeContext {
        self.fsm.negotiated().map(Negotiated::decode_context).unwrap_or_default()
    }

    /// Decodes every whole message in the read buffer, in order.
    async fn decode_input(&mut self) {
        while self.connection.is_some() {
            let decoded = Message::decode(&self.read_buf, &self.decode_context());
            let event = match decoded {
                Err(DecodeError::Incomplete { .. }) => {
                    // Everything read is decoded: the buffer's allocation goes too, so an idle
                    // session keeps none (the next bytes allocate what they need).
                    if self.read_buf.is_empty() {
                        self.read_buf = BytesMut::new();
                    }
                    return;
                }
                Err(DecodeError::SessionReset(reset)) => {
                    self.read_buf = BytesMut::new();
                    let notification = reset.notification();
                    match reset.message_type {
                        Some(MessageType::Open) => Event::BgpOpenMsgErr(notification),
                        Some(MessageType::Update) => Event::UpdateMsgErr(notification),
                        _ => Event::BgpHeaderErr(notification),
                    }
                }
                Ok((decoded, length)) => {
                    self.read_buf.advance(length);
                    self.status.messages_in.count(decoded.message.message_type());
                    self.message_event(decoded.message, decoded.outcome)
                }
            };
            self.handle(event).await;
            while let Some(event) = self.pending.pop_front() {
                self.handle(event).await;
            }
        }
    }

    fn message_event(&mut self, message: Message, outcome: UpdateOutcome) -> Event {
        match message {
            Message::Open(open) => {
                self.last_peer_id = Some(open.bgp_identifier);
                Event::BgpOpen(open)
            }
            Message::Update(update) => {
                if outcome.action() == Rfc7606Action::SessionReset
                    && let Some(fault) = outcome.faults.iter().find(|f| f.action == Rfc7606Action::SessionReset)
                {
                    return Event::UpdateMsgErr(MessageError::Update(fault.error.clone()).notification());
                }
                self.pending_update = Some((update, outcome));
                Event::UpdateMsg
            }
            Message::Notification(notification) => {
                self.status.last_notification_received = Some(NotificationSummary::from(&notification));
                self.status.count_notification("received", notification.code, notification.subcode);
                // RFC 4271 8.1.2 event 24: a NOTIFICATION with a version error.
                if notification.code == code::OPEN_MESSAGE_ERROR
                    && notification.subcode == code::open::UNSUPPORTED_VERSION_NUMBER
                {
                    Event::NotifMsgVerErr(notification)
                } else {
                    Event::NotifMsg(notification)
                }
            }
            Message::Keepalive => Event::KeepAliveMsg,
            Message::RouteRefresh(refresh) => Event::RouteRefreshMsg(refresh),
        }
    }

    async fn fire_timers(&mut self) {
        let now = Instant::now();
        for timer in Timer::ALL {
            let slot = &mut self.deadlines[timer as usize];
            if slot.is_some_and(|deadline| deadline <= now) {
                *slot = None;
                let event = match timer {
                    Timer::ConnectRetry => Event::ConnectRetryTimerExpires,
                    Timer::Hold => Event::HoldTimerExpires,
                    Timer::Keepalive => Event::KeepaliveTimerExpires,
                    Timer::DelayOpen => Event::DelayOpenTimerExpires,
                    Timer::IdleHold => Event::IdleHoldTimerExpires,
                    Timer::Stable => Event::StableTimerExpires,
                };
                self.pending.push_back(event);
            }
        }
    }

    async fn handle(&mut self, event: Event) {
        if self.held_by_bfd() {
            match event {
                Event::ManualStart => {
                    self.deferred_start = Some(event);
                    return;
                }
                Event::AutomaticStart | Event::IdleHoldTimerExpires => {
                    if self.deferred_start.is_none() {
                        self.deferred_start = Some(event);
                    }
                    return;
                }
                Event::ManualStop { .. } => self.deferred_start = None,
                _ => {}
            }
        }
        let actions = self.fsm.handle_event(event);
        for action in actions {
            self.act(action).await;
        }
        if self.fsm.state() == State::Idle {
            // Whatever the FSM no longer knows about goes: a connect in
            // flight, a connection it already dropped.
            self.connecting = None;
            self.connection = None;
        }
        let send_hold = self.send_hold_time();
        if let Some(connection) = &self.connection {
            connection.set_send_hold(send_hold);
        }
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Connect => {
                let config = self.fsm.config().clone();
                self.connecting = Some(Box::pin(async move { transport::connect(&config).await }));
            }
            Action::DropConnection | Action::RefuseConnection => {
                if let Some(connection) = self.connection.take() {
                    connection.close(None);
                }
                self.read_buf = BytesMut::new();
                self.connecting = None;
            }
            Action::SendOpen(open) => self.write(&Message::Open(*open)),
            Action::SendKeepalive => self.write(&Message::Keepalive),
            Action::SendNotification(notification) => {
                self.status.last_notification_sent = Some(NotificationSummary::from(&notification));
                self.status.count_notification("sent", notification.code, notification.subcode);
                // A NOTIFICATION ends the connection (RFC 4271 4.5): it goes
                // out after the message being written, ahead of the queue,
                // and is counted as handed over, not as written.
                let message = Message::Notification(notification);
                if let Some(bytes) = self.encode(&message)
                    && let Some(connection) = self.connection.take()
                {
                    self.status.messages_out.count(MessageType::Notification);
                    connection.close(Some(bytes));
                }
            }
            Action::StartTimer(timer, duration) => self.deadlines[timer as usize] = Some(Instant::now() + duration),
            Action::StopTimer(timer) => self.deadlines[timer as usize] = None,
            Action::SessionUp(mut negotiated) => {
                negotiated.local_addr = self.connection.as_ref().and_then(|c| c.local_addr).map(|a| a.ip());
                // Whatever was queued before the RIB hears of this session
                // belongs to an earlier one.
                self.discard_outbound();
                self.refreshing.clear();
                self.status.established_since = Some(SystemTime::now());
                self.status.negotiated = Some((*negotiated).clone());
                tracing::info!(
                    subsys = "bgp",
                    peer = %self.peer,
                    peer_as = negotiated.peer_as,
                    router_id = %negotiated.peer_id,
                    hold_time = negotiated.hold_time,
                    graceful_restart = negotiated.peer_graceful_restart.is_some(),
                    "BGP session established"
                );
                self.publish();
                let _ = self.events.send(PeerEvent::SessionUp { peer: self.peer, negotiated }).await;
            }
            Action::SessionDown(reason) => {
                tracing::info!(subsys = "bgp", peer = %self.peer, reason = %reason, "BGP session down");
                self.status.flaps = self.status.flaps.saturating_add(1);
                self.status.established_since = None;
                self.status.negotiated = None;
                self.status.last_error = Some(reason.clone());
                self.received.clear();
                self.refreshing.clear();
                self.discard_outbound();
                self.publish();
                let possible_restart = std::mem::take(&mut self.bfd_possible_restart);
                let _ = self.events.send(PeerEvent::SessionDown { peer: self.peer, reason, possible_restart }).await;
            }
            Action::ProcessUpdate => self.process_update().await,
            Action::ProcessRouteRefresh(message) => {
                // RFC 7313 section 4: "the BGP speaker MUST send a BoRR
                // message before it starts the route re-advertisement".
                let enhanced = self.fsm.negotiated().is_some_and(|n| n.enhanced_route_refresh);
                if enhanced && message.subtype == crate::bgp::packet::route_refresh::subtype::NORMAL {
                    let borr = RouteRefreshMessage {
                        family: message.family,
                        subtype: crate::bgp::packet::route_refresh::subtype::BORR,
                    };
                    self.write(&Message::RouteRefresh(borr));
                    if !self.refreshing.contains(&message.family) {
                        self.refreshing.push(message.family);
                    }
                }
                let _ = self.events.send(PeerEvent::RouteRefresh { peer: self.peer, message }).await;
            }
        }
    }

    /// Counts the prefixes for the maximum-prefix limit, if there is one,
    /// and hands the UPDATE on.
    async fn process_update(&mut self) {
        let Some((update, outcome)) = self.pending_update.take() else { return };
        let limit = self.fsm.config().max_prefixes;
        if limit.is_some() {
            for (family, nlri) in update.withdrawn_routes() {
                self.received.remove(family, nlri);
            }
            let withdraw = outcome.action() == Rfc7606Action::TreatAsWithdraw;
            for (family, nlri) in update.announced() {
                if withdraw {
                    self.received.remove(family, nlri);
                } else {
                    self.received.insert(family, nlri);
                }
            }
        }
        let over_limit = limit.filter(|(max, _)| self.received.len() as u64 > u64::from(*max));
        let first_family = update.announced().next().map(|(family, _)| family).unwrap_or(Family::IPV4_UNICAST);
        let _ = self.events.send(PeerEvent::Update { peer: self.peer, update: Box::new(update), outcome }).await;
        if let Some((max, restart_after)) = over_limit {
            // RFC 4486 section 4: "the speaker MAY include in the Data field
            // [...] AFI (2 octets), SAFI (1 octet), and the upper bound".
            let mut data = Vec::with_capacity(7);
            data.extend_from_slice(&first_family.afi.0.to_be_bytes());
            data.push(first_family.safi.0);
            data.extend_from_slice(&max.to_be_bytes());
            let notification =
                NotificationMessage::new(code::CEASE, code::cease::MAXIMUM_NUMBER_OF_PREFIXES_REACHED, data);
            self.pending.push_back(Event::AutomaticStop { notification, restart_after: Some(restart_after) });
        }
    }

    fn send_outbound(&mut self, outbound: Outbound) {
        match outbound {
            Outbound::Update(update) => self.send_update(*update),
            Outbound::Encoded(encoded) => {
                if let Some(connection) = self.connection.as_mut() {
                    let messages = MessageCounts { update: encoded.updates, ..MessageCounts::default() };
                    connection.send_many(messages, encoded.bytes);
                }
            }
        }
    }

    fn send_update(&mut self, update: UpdateMessage) {
        if let Some(family) = update.as_end_of_rib()
            && let Some(at) = self.refreshing.iter().position(|f| *f == family)
        {
            self.refreshing.remove(at);
            let eorr = RouteRefreshMessage { family, subtype: crate::bgp::packet::route_refresh::subtype::EORR };
            self.write(&Message::RouteRefresh(eorr));
            return;
        }
        self.write(&Message::Update(update));
    }

    /// Drops the UPDATEs queued so far.
    fn discard_outbound(&mut self) {
        while self.outbound.try_recv().is_ok() {}
    }

    fn encode(&self, message: &Message) -> Option<Bytes> {
        let ctx = EncodeContext::from(&self.fsm.negotiated().map(Negotiated::decode_context).unwrap_or_default());
        match message.to_bytes(&ctx) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                tracing::warn!(peer = %self.peer, "an outbound message does not encode; dropped");
                None
            }
        }
    }

    /// Queues one message on the connection; it is counted once written (a
    /// failed write becomes TcpConnectionFails, a stalled one SendHoldTimer_Expires).
    fn write(&mut self, message: &Message) {
        if self.connection.is_none() {
            return;
        }
        let Some(bytes) = self.encode(message) else { return };
        if let Some(connection) = self.connection.as_mut() {
            connection.send(message.message_type(), bytes);
        }
    }
}

/// Closes a losing connection with Cease / Connection Collision Resolution,
/// in a task of its own: the peer task never waits on a socket.
fn refuse(mut stream: TcpStream) {
    let cease = Message::Notification(NotificationMessage::new(
        code::CEASE,
        code::cease::CONNECTION_COLLISION_RESOLUTION,
        Vec::new(),
    ));
    tokio::spawn(async move {
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            if let Ok(bytes) = cease.to_bytes(&EncodeContext::default()) {
                stream.write_all(&bytes).await?;
            }
            stream.shutdown().await
        })
        .await;
    });
}
