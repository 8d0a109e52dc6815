//! The snapshot of one session that the peer task publishes through a
//! `watch` channel for status and metrics.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;

use super::fsm::{DownReason, State};
use super::negotiate::Negotiated;
use crate::bgp::packet::{MessageType, NotificationMessage};

/// Messages counted per type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageCounts {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub route_refresh: u64,
}

impl MessageCounts {
    pub fn count(&mut self, message_type: MessageType) {
        let slot = match message_type {
            MessageType::Open => &mut self.open,
            MessageType::Update => &mut self.update,
            MessageType::Notification => &mut self.notification,
            MessageType::Keepalive => &mut self.keepalive,
            MessageType::RouteRefresh => &mut self.route_refresh,
        };
        *slot = slot.saturating_add(1);
    }

    /// One message of `message_type`.
    pub fn one(message_type: MessageType) -> Self {
        let mut counts = MessageCounts::default();
        counts.count(message_type);
        counts
    }

    pub fn add(&mut self, other: &MessageCounts) {
        self.open = self.open.saturating_add(other.open);
        self.update = self.update.saturating_add(other.update);
        self.notification = self.notification.saturating_add(other.notification);
        self.keepalive = self.keepalive.saturating_add(other.keepalive);
        self.route_refresh = self.route_refresh.saturating_add(other.route_refresh);
    }

    pub fn total(&self) -> u64 {
        self.open + self.update + self.notification + self.keepalive + self.route_refresh
    }
}

/// A NOTIFICATION as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationSummary {
    pub code: u8,
    pub subcode: u8,
    pub text: String,
}

impl From<&NotificationMessage> for NotificationSummary {
    fn from(n: &NotificationMessage) -> Self {
        let text = match n.shutdown_communication() {
            Some(Ok(message)) => format!("{} / {}: {message}", n.code_name(), n.subcode_name()),
            _ => format!("{} / {}", n.code_name(), n.subcode_name()),
        };
        NotificationSummary { code: n.code, subcode: n.subcode, text }
    }
}

/// NOTIFICATIONs sent or received with one code and subcode, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationCount {
    /// `sent` or `received`.
    pub direction: &'static str,
    pub code: u8,
    pub subcode: u8,
    pub count: u64,
}

/// One session's state and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    pub remote_addr: IpAddr,
    pub state: State,
    /// When the session last reached Established (uptime is now minus this).
    pub established_since: Option<SystemTime>,
    /// How many times an Established session went down.
    pub flaps: u64,
    pub messages_in: MessageCounts,
    pub messages_out: MessageCounts,
    /// Why the session last went down.
    pub last_error: Option<DownReason>,
    pub last_notification_sent: Option<NotificationSummary>,
    pub last_notification_received: Option<NotificationSummary>,
    /// Every NOTIFICATION of the session's life, by direction, code and subcode.
    pub notifications: Vec<NotificationCount>,
    pub negotiated: Option<Negotiated>,
    pub connect_retry_counter: u32,
    /// Prefixes currently received from the peer (for the maximum-prefix limit).
    pub prefixes_received: u64,
    /// The peer's BFD session, when one is configured.
    pub bfd: Option<PeerBfdStatus>,
}

/// A BGP peer's BFD session as its status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerBfdStatus {
    pub state: crate::bfd::SessionState,
    /// RFC 5880's name of the diagnostic of its last change.
    pub diagnostic: String,
    /// State changes since the session started.
    pub transitions: u64,
    /// The detection time in effect, µs (0 before the peer was heard).
    pub detection_time_us: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Packets from the peer discarded (wrong TTL, malformed, unknown discriminator).
    pub packets_dropped: crate::bfd::DroppedCounts,
}

impl PeerBfdStatus {
    /// Why the BGP session is held down, while it is.
    pub fn holding(&self) -> Option<String> {
        (self.state != crate::bfd::SessionState::Up)
            .then(|| format!("BFD session {} ({}): BGP waits for it", self.state.name(), self.diagnostic))
    }
}

impl PeerStatus {
    /// Counts one NOTIFICATION (the set of codes seen is small: a handful of entries).
    pub fn count_notification(&mut self, direction: &'static str, code: u8, subcode: u8) {
        match self.notifications.iter_mut().find(|n| n.direction == direction && n.code == code && n.subcode == subcode)
        {
            Some(n) => n.count = n.count.saturating_add(1),
            None => self.notifications.push(NotificationCount { direction, code, subcode, count: 1 }),
        }
    }

    pub fn new(remote_addr: IpAddr) -> Self {
        PeerStatus {
            remote_addr,
            state: State::Idle,
            established_since: None,
            flaps: 0,
            messages_in: MessageCounts::default(),
            messages_out: MessageCounts::default(),
            last_error: None,
            last_notification_sent: None,
            last_notification_received: None,
            notifications: Vec::new(),
            negotiated: None,
            connect_retry_counter: 0,
            prefixes_received: 0,
            bfd: None,
        }
    }
}
