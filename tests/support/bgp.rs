//! Running a tortie speaker inside a test namespace and watching it from the
//! (synchronous) test thread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tortie::bgp::packet::{
    AsPath, AttributeValue, Family, MpNlri, MpReachNlri, NextHop, Nlri, Origin, PathAttribute, Prefix, UpdateMessage,
};
use tortie::bgp::session::{PeerConfig, PeerEvent, PeerStatus, Speaker, State};
use tortie::netns::{NamespaceThread, spawn_in_namespace};
use tortie::testing::wait_until;

/// What the test thread asks of the speaker.
pub enum Control {
    Send(UpdateMessage),
    Shutdown(String),
}

/// A speaker with one peer, running in a namespace.
pub struct TortieNode {
    _thread: NamespaceThread,
    pub events: Arc<Mutex<Vec<PeerEvent>>>,
    pub status: Arc<Mutex<Option<PeerStatus>>>,
    control: mpsc::Sender<Control>,
}

impl TortieNode {
    pub fn start(ns: &str, listen: Option<SocketAddr>, config: PeerConfig) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(Some(PeerStatus::new(config.remote_addr))));
        let (control, mut control_rx) = mpsc::channel(16);
        let (events_out, status_out) = (events.clone(), status.clone());
        let thread = spawn_in_namespace(ns, move |mut stop| async move {
            let (tx, mut rx) = mpsc::channel(1024);
            let mut speaker = Speaker::new(listen, tx).expect("the speaker listens");
            let addr = config.remote_addr;
            let mut watch = speaker.add_peer(config).await.expect("the peer is added");
            *status_out.lock().unwrap() = Some(watch.borrow().clone());
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    Some(event) = rx.recv() => events_out.lock().unwrap().push(event),
                    Ok(()) = watch.changed() => *status_out.lock().unwrap() = Some(watch.borrow().clone()),
                    Some(command) = control_rx.recv() => match command {
                        Control::Send(update) => {
                            let _ = speaker.outbound(addr).expect("the peer").send(update.into()).await;
                        }
                        Control::Shutdown(message) => {
                            let _ = speaker.shutdown_peer(addr, &message).await;
                        }
                    },
                }
            }
        })
        .expect("a thread in the namespace");
        TortieNode { _thread: thread, events, status, control }
    }

    pub fn status(&self) -> PeerStatus {
        self.status.lock().unwrap().clone().expect("a status")
    }

    pub fn send(&self, update: UpdateMessage) {
        self.control.blocking_send(Control::Send(update)).expect("the speaker runs");
    }

    pub fn shutdown(&self, message: &str) {
        self.control.blocking_send(Control::Shutdown(message.into())).expect("the speaker runs");
    }

    pub fn wait_state(&self, state: State, timeout: Duration) -> Result<PeerStatus, String> {
        wait_until(&format!("session state {state:?}"), timeout, || {
            Some(self.status()).filter(|status| status.state == state)
        })
    }

    /// Asserts that within `window` the session neither comes up nor
    /// receives a single message (a bounded negative check, e.g. for a
    /// wrong TCP-MD5 key whose SYNs the peer drops).
    pub fn assert_never_up(&self, window: Duration, why: &str) {
        let never = wait_until(why, window, || {
            let status = self.status();
            (status.state == State::Established || status.messages_in.total() > 0).then_some(())
        });
        assert!(never.is_err(), "{why}: the session came up or heard from the peer");
    }

    /// Waits until an Established session has gone down (flapped).
    pub fn wait_down(&self, timeout: Duration) -> Result<PeerStatus, String> {
        wait_until("the session to go down", timeout, || {
            let status = self.status();
            (status.state != State::Established && status.flaps > 0).then_some(status)
        })
    }

    /// Prefixes announced to us so far ("10.0.0.0/8").
    pub fn received(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter_map(|event| match event {
                PeerEvent::Update { update, .. } => {
                    Some(update.announced().map(|(_, n)| n.prefix.to_string()).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    pub fn wait_received(&self, prefix: &str, timeout: Duration) -> Result<(), String> {
        wait_until(&format!("{prefix} from the peer"), timeout, || {
            self.received().iter().any(|p| p == prefix).then_some(())
        })
    }

    /// The AS path of the first announcement of `prefix`.
    pub fn as_path_of(&self, prefix: &str) -> Option<Vec<u32>> {
        let events = self.events.lock().unwrap();
        events.iter().find_map(|event| match event {
            PeerEvent::Update { update, .. } if update.announced().any(|(_, n)| n.prefix.to_string() == prefix) => {
                update.as_path().map(|path| path.segments.iter().flat_map(|s| s.asns.clone()).collect())
            }
            _ => None,
        })
    }
}

fn prefix(text: &str) -> Prefix {
    let (addr, len) = text.split_once('/').expect("addr/len");
    Prefix::new(addr.parse::<IpAddr>().unwrap(), len.parse().unwrap()).unwrap()
}

/// An IPv4 unicast announcement.
pub fn ipv4_update(text: &str, next_hop: Ipv4Addr, path: Vec<u32>, four_octet: bool) -> UpdateMessage {
    UpdateMessage {
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(four_octet, path))),
            PathAttribute::new(AttributeValue::NextHop(next_hop)),
        ],
        nlri: vec![Nlri::new(prefix(text))],
        ..UpdateMessage::default()
    }
}

/// An IPv6 unicast announcement (MP_REACH_NLRI).
pub fn ipv6_update(text: &str, next_hop: Ipv6Addr, path: Vec<u32>, four_octet: bool) -> UpdateMessage {
    UpdateMessage {
        attributes: vec![
            PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::Ipv6(next_hop),
                reserved: 0,
                nlri: MpNlri::Prefixes(vec![Nlri::new(prefix(text))]),
            })),
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(four_octet, path))),
        ],
        ..UpdateMessage::default()
    }
}
