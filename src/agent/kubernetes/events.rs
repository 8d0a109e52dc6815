//! Kubernetes Events on this node's Node (core/v1, in the `default` namespace, as the kubelet
//! records its own): a BGP session going up or down (with the reason), a pool nearly full, the
//! kernel refusing route changes. Repeats are aggregated as the kubelet does
//! ([`super::event_aggregator`]). Emitting never blocks: a full queue drops the event.

use crate::api::PeerStatus;
use crate::metrics::ipam::PoolUsage;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The namespace of the Events about a Node (cluster-scoped, so `default`, as the kubelet's).
pub const NAMESPACE: &str = "default";
/// The component named as the Events' source.
pub const COMPONENT: &str = "tortie-node";
pub use super::event_aggregator::{AGGREGATE_WINDOW, Aggregator, EventWrite, MIN_PATCH_GAP};

/// Events waiting for the writer; beyond this they are dropped.
pub const QUEUE: usize = 64;
/// A pool is nearly full beyond this share (per mille) of its addresses or blocks in use.
pub const NEARLY_FULL_PER_MILLE: u128 = 900;

/// One thing worth an Event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeEvent {
    /// `Normal` or `Warning`.
    pub kind: &'static str,
    /// CamelCase, as Kubernetes' reasons are.
    pub reason: &'static str,
    pub message: String,
}

impl NodeEvent {
    pub(super) fn warning(reason: &'static str, message: String) -> NodeEvent {
        NodeEvent { kind: "Warning", reason, message }
    }
}

/// The events of sessions that changed between `before` and `after`: Established reached
/// (`BGPSessionUp`) or left (`BGPSessionDown`, with the last error).
pub fn session_events(before: &[PeerStatus], after: &[PeerStatus]) -> Vec<NodeEvent> {
    let up = |p: &PeerStatus| p.state == "established";
    let mut events = Vec::new();
    for peer in after {
        let was_up = before.iter().find(|b| b.address == peer.address).is_some_and(up);
        if up(peer) && !was_up {
            events.push(NodeEvent {
                kind: "Normal",
                reason: "BGPSessionUp",
                message: format!("BGP session with {} ({}) established", peer.address, peer.peer_type),
            });
        } else if was_up && !up(peer) {
            let why = if peer.info.is_empty() { "connection lost".to_string() } else { peer.info.clone() };
            events.push(NodeEvent::warning(
                "BGPSessionDown",
                format!("BGP session with {} ({}) down: {why}", peer.address, peer.peer_type),
            ));
        }
    }
    events
}

/// Whether `u` has more than [`NEARLY_FULL_PER_MILLE`] of its addresses or blocks in use.
pub fn nearly_full(u: &PoolUsage) -> bool {
    let over =
        |part: u128, whole: u128| whole > 0 && part.saturating_mul(1000) > whole.saturating_mul(NEARLY_FULL_PER_MILLE);
    over(u128::from(u.in_use), u.size) || over(u128::from(u.blocks), u.block_slots)
}

/// `IPPoolNearlyFull` for each pool that became nearly full since the last call (`full` holds
/// the pools that were).
pub fn pool_events(full: &mut BTreeSet<String>, usage: &[PoolUsage]) -> Vec<NodeEvent> {
    let now: BTreeSet<String> = usage.iter().filter(|u| nearly_full(u)).map(|u| u.pool.clone()).collect();
    let events = usage
        .iter()
        .filter(|u| now.contains(&u.pool) && !full.contains(&u.pool))
        .map(|u| {
            NodeEvent::warning(
                "IPPoolNearlyFull",
                format!(
                    "IP pool {} is nearly full: {} of {} addresses and {} of {} blocks in use",
                    u.pool, u.in_use, u.size, u.blocks, u.block_slots
                ),
            )
        })
        .collect();
    *full = now;
    events
}

/// `DataplaneFailure` when the kernel refused route changes since the last count.
pub fn dataplane_event(failures_before: u64, failures_now: u64) -> Option<NodeEvent> {
    (failures_now > failures_before).then(|| {
        NodeEvent::warning(
            "DataplaneFailure",
            "the kernel refused a route change; tortie retries at each resync (see the agent's log)".into(),
        )
    })
}

/// RFC 3339 time of a unix time (seconds), as Kubernetes' timestamps.
fn timestamp(unix: u64) -> String {
    format!("{}T{}Z", crate::cli::table::date(unix), crate::cli::table::clock(unix))
}

/// Writes the Events of one node.
pub struct EventWriter {
    api: Api<DynamicObject>,
    node: String,
}

impl EventWriter {
    pub fn new(client: kube::Client, node: &str) -> EventWriter {
        let resource = ApiResource::erase::<k8s_openapi::api::core::v1::Event>(&());
        EventWriter { api: Api::namespaced_with(client, NAMESPACE, &resource), node: node.to_string() }
    }

    pub async fn write(&self, write: &EventWrite) -> Result<(), kube::Error> {
        match write {
            EventWrite::Create { name, event, count, first, last } => {
                let object = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self.node},
                    "type": event.kind,
                    "reason": event.reason,
                    "message": event.message,
                    "count": count,
                    "firstTimestamp": timestamp(*first),
                    "lastTimestamp": timestamp(*last),
                    "source": {"component": COMPONENT, "host": self.node},
                    "reportingComponent": COMPONENT,
                    "reportingInstance": self.node,
                });
                let object: DynamicObject = serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
                self.api.create(&PostParams::default(), &object).await.map(|_| ())
            }
            EventWrite::Patch { name, count, last, .. } => {
                let patch = serde_json::json!({"count": count, "lastTimestamp": timestamp(*last)});
                self.api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
            }
        }
    }
}

/// The sending side: cheap to clone, never waits.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<NodeEvent>,
}

impl Events {
    /// The handle and the receiving end for [`write_events`].
    pub fn channel() -> (Events, mpsc::Receiver<NodeEvent>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Events { tx }, rx)
    }

    /// Queues `event`; dropped when the writer is behind.
    pub fn emit(&self, event: NodeEvent) {
        if self.tx.try_send(event).is_err() {
            tracing::debug!(subsys = "kubernetes", "event queue full: an event was dropped");
        }
    }
}

/// Writes the queued events, aggregated, until `stop` or every sender is gone.
pub async fn write_events(writer: EventWriter, mut rx: mpsc::Receiver<NodeEvent>, mut stop: watch::Receiver<bool>) {
    let mut aggregator = Aggregator::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut failing = false;
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(e) => aggregator.record(e, super::super::unix_now(), Instant::now()),
                None => return,
            },
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for write in aggregator.due(&writer.node, Instant::now()) {
            match writer.write(&write).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(subsys = "kubernetes", error = %e, "cannot write a Kubernetes Event on the Node");
                }
                Err(e) => tracing::debug!(subsys = "kubernetes", error = %e, "cannot write a Kubernetes Event"),
            }
        }
    }
}

/// What the event detector reads.
pub struct EventSources {
    pub status: watch::Receiver<crate::api::StatusReport>,
    pub pools: watch::Receiver<Vec<PoolUsage>>,
    pub stats: std::sync::Arc<crate::dataplane::ProgrammerStats>,
}

/// Turns changes of the sources into events, until `stop`.
pub async fn detect(sources: EventSources, events: Events, mut stop: watch::Receiver<bool>) {
    use std::sync::atomic::Ordering;
    let EventSources { mut status, pools, stats } = sources;
    let mut peers: Vec<PeerStatus> = Vec::new();
    let mut full = BTreeSet::new();
    let mut failures = stats.failures.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let now_peers = status.borrow_and_update().peers.clone();
        let now_failures = stats.failures.load(Ordering::Relaxed);
        let found = session_events(&peers, &now_peers)
            .into_iter()
            .chain(pool_events(&mut full, &pools.borrow()))
            .chain(dataplane_event(failures, now_failures));
        for event in found {
            events.emit(event);
        }
        (peers, failures) = (now_peers, now_failures);
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(address: &str, state: &str, info: &str) -> PeerStatus {
        PeerStatus {
            address: address.into(),
            as_number: 64512,
            peer_type: "node-to-node mesh".into(),
            state: state.into(),
            since: 0,
            info: info.into(),
            prefixes_received: 0,
            prefixes_advertised: 0,
            tunnel_mode: "direct".into(),
            hold_time: None,
            keepalive: None,
            established_at: None,
            flaps: 0,
            bfd: None,
        }
    }

    #[test]
    fn sessions_going_up_and_down_are_events_with_the_reason() {
        let before = [peer("10.0.0.2", "established", ""), peer("10.0.0.3", "active", "")];
        let after =
            [peer("10.0.0.2", "active", "Hold Timer Expired (4/0) received"), peer("10.0.0.3", "established", "")];
        let events = session_events(&before, &after);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!((events[0].kind, events[0].reason), ("Warning", "BGPSessionDown"));
        assert!(events[0].message.contains("10.0.0.2") && events[0].message.contains("Hold Timer Expired"));
        assert_eq!((events[1].kind, events[1].reason), ("Normal", "BGPSessionUp"));
        assert!(session_events(&after, &after).is_empty(), "no change, no event");
        let lost = session_events(&[peer("10.0.0.2", "established", "")], &[peer("10.0.0.2", "idle", "")]);
        assert!(lost[0].message.ends_with("down: connection lost"), "{lost:?}");
    }

    #[test]
    fn a_pool_is_reported_once_when_it_becomes_nearly_full() {
        let pool = |in_use, blocks| PoolUsage {
            pool: "10.244.0.0/24".into(),
            size: 256,
            in_use,
            blocks,
            block_slots: 4,
            borrowed: 0,
        };
        let mut full = BTreeSet::new();
        assert!(pool_events(&mut full, &[pool(230, 3)]).is_empty(), "230/256 addresses, 3/4 blocks");
        let events = pool_events(&mut full, &[pool(231, 3)]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "IPPoolNearlyFull");
        assert_eq!(
            events[0].message,
            "IP pool 10.244.0.0/24 is nearly full: 231 of 256 addresses and 3 of 4 blocks in use"
        );
        assert!(pool_events(&mut full, &[pool(240, 3)]).is_empty(), "already reported");
        assert!(pool_events(&mut full, &[pool(10, 1)]).is_empty());
        assert_eq!(pool_events(&mut full, &[pool(10, 4)]).len(), 1, "every block taken, again");
    }

    #[test]
    fn dataplane_failures_are_an_event_when_the_count_grows() {
        assert_eq!(dataplane_event(3, 3), None);
        assert_eq!(dataplane_event(3, 5).map(|e| e.reason), Some("DataplaneFailure"));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(1_796_566_240), "2026-12-06T14:10:40Z");
    }
}
