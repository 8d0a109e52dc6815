//! Publishes this node's NodeStatus record (its sessions, readiness, version, route counts) for
//! `tortie cluster status`. A session changing state or readiness changing is written at once;
//! other changes (prefix counts, route counts) at most every [`MIN_WRITE_GAP`]; an unchanged
//! report only once per [`UPDATE_PERIOD`], so that readers can tell a live agent's record from
//! a stale one.

use super::picture::Known;
use crate::api::StatusReport;
use crate::dataplane::ProgrammerState;
use crate::datastore::resources::{BgpSessionStatus, NodeStatus};
use crate::datastore::{Datastore, DatastoreError, Revision};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often an unchanged report is rewritten.
pub const UPDATE_PERIOD: Duration = Duration::from_secs(10);
/// The shortest time between two writes of changes that are not a session's state.
pub const MIN_WRITE_GAP: Duration = Duration::from_secs(2);
/// How often the report is compared with the last one written, when nothing wakes the task.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The record for the agent's `status`, the programmer's wanted routes and the node's
/// `addresses`, written at `now` (unix seconds).
pub fn report(status: &StatusReport, routes: &ProgrammerState, addresses: &[String], now: u64) -> NodeStatus {
    use crate::dataplane::RouteKind;
    NodeStatus {
        addresses: addresses.to_vec(),
        agent_version: status.version.clone(),
        ready: status.ready,
        not_ready_reasons: status.not_ready_reasons.clone(),
        updated_at: now,
        update_period_seconds: UPDATE_PERIOD.as_secs() as u32,
        sessions: status
            .peers
            .iter()
            .map(|p| BgpSessionStatus {
                peer: p.address.clone(),
                peer_type: p.peer_type.clone(),
                state: p.state.clone(),
                since: p.since,
                info: p.info.clone(),
                prefixes_received: p.prefixes_received,
                prefixes_advertised: p.prefixes_advertised,
                bfd: p.bfd.clone(),
                path: p.tunnel_mode.clone(),
            })
            .collect(),
        routes: routes.routes_by_kind.iter().map(|(k, n)| (k.as_str().to_string(), *n as u64)).collect(),
        pod_addresses: routes.routes_by_kind.get(&RouteKind::LocalWorkload).map_or(0, |n| *n as u64),
    }
}

/// Whether `next` is to be written, `last` having been written `since_write` ago.
pub fn write_due(last: Option<&NodeStatus>, next: &NodeStatus, since_write: Duration) -> bool {
    let Some(last) = last else { return true };
    if last.session_states() != next.session_states() || last.ready != next.ready {
        return true;
    }
    since_write >= UPDATE_PERIOD || (since_write >= MIN_WRITE_GAP && !last.same_content(next))
}

/// Writes one node's record by compare-and-swap, remembering its revision.
pub struct StatusWriter {
    ds: Datastore,
    name: String,
    revision: Option<Revision>,
}

impl StatusWriter {
    pub fn new(ds: Datastore, name: String) -> StatusWriter {
        StatusWriter { ds, name, revision: None }
    }

    /// Creates or replaces the record. After a failure the next write reads the record first
    /// (someone else may have written or deleted it).
    pub async fn write(&mut self, status: &NodeStatus) -> Result<(), DatastoreError> {
        if self.revision.is_none() {
            match self.ds.get::<NodeStatus>(&self.name).await {
                Ok(stored) => self.revision = Some(stored.revision),
                Err(DatastoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let written = match self.revision {
            Some(revision) => self.ds.update(&self.name, status, revision).await,
            None => self.ds.create(&self.name, status).await,
        };
        self.revision = written.as_ref().ok().map(|s| s.revision);
        written.map(|_| ())
    }
}

/// Deletes the records of nodes whose Node is gone and whose agent stopped writing them (stale):
/// a deleted node's record would otherwise show in `tortie cluster status` for ever. `nodes` are
/// the Nodes' names (from the agent's picture of them): only the records' names are listed, and a
/// record is read only when its Node is gone. Every agent does this (compare-and-swap, so two agents
/// deleting at once do no harm); a record whose agent still writes it stays until that agent
/// stops. Returns the records deleted.
pub async fn remove_orphans(ds: &Datastore, nodes: &BTreeSet<String>, now: u64) -> Result<Vec<String>, DatastoreError> {
    let mut removed = Vec::new();
    let names = ds.list_names::<NodeStatus>().await?;
    for name in names.into_iter().filter(|name| !nodes.contains(name)) {
        let record = match ds.get::<NodeStatus>(&name).await {
            Ok(record) if record.spec.is_stale(now) => record,
            Ok(_) | Err(DatastoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        match ds.delete::<NodeStatus>(&record.name, record.revision).await {
            Ok(()) => removed.push(record.name),
            // Deleted or rewritten meanwhile: another agent's, or its own, and fine either way.
            Err(DatastoreError::NotFound { .. } | DatastoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// How often one agent looks for deleted nodes' records: [`UPDATE_PERIOD`] times the number of
/// nodes, so that the cluster as a whole looks about once per [`UPDATE_PERIOD`] whatever its size
/// (a record goes stale only [`STALE_PERIODS`](crate::datastore::resources::node_status) periods
/// after its agent stopped, so there is no hurry), instead of every agent every period.
pub fn orphan_check_period(nodes: usize) -> Duration {
    UPDATE_PERIOD * u32::try_from(nodes.max(1)).unwrap_or(u32::MAX)
}

/// Keeps the node's record up to date until `stop`, and every [`orphan_check_period`] removes
/// the records of deleted nodes ([`remove_orphans`]; once the Nodes are known, the first time).
pub async fn publish(
    mut writer: StatusWriter,
    addresses: Vec<String>,
    mut status: watch::Receiver<StatusReport>,
    routes: watch::Receiver<ProgrammerState>,
    nodes: watch::Receiver<Option<Known<crate::datastore::resources::Node>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: Option<(NodeStatus, Instant)> = None;
    let mut failed_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    // When the next look for deleted nodes' records is due; `None`: as soon as the Nodes are
    // known.
    let mut next_orphan_check: Option<Instant> = None;
    loop {
        // The names only when a check is due (a watch borrow is not held across the reads).
        let due = next_orphan_check.is_none_or(|at| Instant::now() >= at);
        let names: Option<BTreeSet<String>> =
            if due { nodes.borrow().as_ref().map(|k| k.stored().map(|n| n.name.clone()).collect()) } else { None };
        if let Some(names) = names {
            let wait = match remove_orphans(&writer.ds, &names, super::unix_now()).await {
                Ok(removed) => {
                    for node in removed {
                        tracing::info!(subsys = "agent", node = %node, "removed the status record of a deleted node");
                    }
                    orphan_check_period(names.len())
                }
                // Tried again one period later, not a whole cluster's period.
                Err(e) => {
                    tracing::debug!(subsys = "agent", error = %e, "cannot look for deleted nodes' status records");
                    UPDATE_PERIOD
                }
            };
            next_orphan_check = Some(Instant::now() + wait);
        }
        let next = report(&status.borrow_and_update(), &routes.borrow(), &addresses, super::unix_now());
        let since_write = last.as_ref().map_or(Duration::MAX, |(_, at)| at.elapsed());
        let retry_wait = failed_at.is_some_and(|at| at.elapsed() < MIN_WRITE_GAP);
        if !retry_wait && write_due(last.as_ref().map(|(s, _)| s), &next, since_write) {
            match writer.write(&next).await {
                Ok(()) => {
                    if failed_at.take().is_some() {
                        tracing::info!(subsys = "agent", node = %writer.name, "node status written again");
                    }
                    last = Some((next, Instant::now()));
                }
                Err(e) => {
                    if failed_at.is_none() {
                        tracing::warn!(subsys = "agent", node = %writer.name, error = %e, "cannot write the node status; retrying");
                    }
                    failed_at = Some(Instant::now());
                }
            }
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PeerStatus;

    fn peer(address: &str, state: &str, received: u64) -> PeerStatus {
        PeerStatus {
            address: address.into(),
            as_number: 64512,
            peer_type: "node-to-node mesh".into(),
            state: state.into(),
            since: 100,
            info: String::new(),
            prefixes_received: received,
            prefixes_advertised: 1,
            tunnel_mode: "ipip".into(),
            hold_time: None,
            keepalive: None,
            established_at: None,
            flaps: 0,
            bfd: Some("up".into()),
        }
    }

    fn status(peers: Vec<PeerStatus>) -> StatusReport {
        StatusReport {
            node: "n1".into(),
            version: "1.2.3".into(),
            started_at: 0,
            ready: true,
            not_ready_reasons: vec![],
            ipip_mode: "ipip-kernel".into(),
            peers,
            paths: vec![],
            unsupported_fields: vec![],
            nat_outgoing_pools: vec![],
            nftables_error: None,
            invalid_policies: vec![],
        }
    }

    fn routes() -> ProgrammerState {
        use crate::dataplane::RouteKind;
        ProgrammerState {
            synced: true,
            routes_by_kind: [(RouteKind::LocalWorkload, 3), (RouteKind::Blackhole, 1)].into_iter().collect(),
        }
    }

    #[test]
    fn the_report_carries_sessions_counts_and_pod_addresses() {
        let r = report(&status(vec![peer("10.0.0.2", "established", 4)]), &routes(), &["10.0.0.1".into()], 500);
        assert_eq!(r.sessions.len(), 1);
        let s = &r.sessions[0];
        assert_eq!((s.peer.as_str(), s.state.as_str(), s.path.as_str()), ("10.0.0.2", "established", "ipip"));
        assert_eq!((s.prefixes_received, s.prefixes_advertised, s.bfd.as_deref()), (4, 1, Some("up")));
        assert_eq!((r.pod_addresses, r.routes["blackhole"], r.updated_at), (3, 1, 500));
        assert_eq!((r.agent_version.as_str(), r.update_period_seconds), ("1.2.3", 10));
    }

    #[test]
    fn a_session_state_change_is_written_at_once_other_changes_rate_limited() {
        let written = report(&status(vec![peer("10.0.0.2", "established", 4)]), &routes(), &[], 500);
        let same = report(&status(vec![peer("10.0.0.2", "established", 4)]), &routes(), &[], 501);
        let down = report(&status(vec![peer("10.0.0.2", "active", 0)]), &routes(), &[], 501);
        let more = report(&status(vec![peer("10.0.0.2", "established", 5)]), &routes(), &[], 501);
        let just = Duration::from_millis(100);
        assert!(write_due(None, &same, just), "the first report");
        assert!(!write_due(Some(&written), &same, just), "unchanged");
        assert!(!write_due(Some(&written), &same, UPDATE_PERIOD - just), "unchanged within the period");
        assert!(write_due(Some(&written), &same, UPDATE_PERIOD), "the period's rewrite");
        assert!(write_due(Some(&written), &down, just), "a session state change");
        assert!(!write_due(Some(&written), &more, just), "a count change waits");
        assert!(write_due(Some(&written), &more, MIN_WRITE_GAP), "and is written after the gap");
    }

    /// A deleted node's record goes once its agent stopped writing it; a record whose Node exists,
    /// or whose agent still writes it, stays (`tortie cluster status` shows the first as stale).
    /// Neither the records nor the Nodes are listed whole: the Nodes come from their picture, the
    /// records by name.
    #[tokio::test]
    async fn the_record_of_a_deleted_node_goes_once_stale() {
        use crate::datastore::Kind;
        use crate::datastore::resources::Node;
        let dir = tempfile::tempdir().unwrap();
        let (backend, listings) = crate::testing::CountingBackend::sqlite(dir.path()).await;
        let ds = Datastore::new(backend);
        let now = crate::agent::unix_now();
        let old = now - UPDATE_PERIOD.as_secs() * (crate::datastore::resources::STALE_PERIODS + 1);
        let record = |at: u64| NodeStatus {
            updated_at: at,
            update_period_seconds: UPDATE_PERIOD.as_secs() as u32,
            ..Default::default()
        };
        for node in ["n1", "stopped"] {
            ds.create(node, &Node::default()).await.unwrap();
        }
        ds.create("deleted", &record(old)).await.unwrap();
        ds.create("stopped", &record(old)).await.unwrap();
        ds.create("unregistered-but-live", &record(now)).await.unwrap();

        let (_status_tx, status_rx) = watch::channel(status(vec![]));
        let (_routes_tx, routes_rx) = watch::channel(routes());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (nodes_tx, nodes_rx) = watch::channel(None);
        tokio::spawn(super::super::picture::follow::<Node>(ds.clone(), nodes_tx, stop_rx.clone()));
        let writer = StatusWriter::new(ds.clone(), "n1".into());
        let task = tokio::spawn(publish(writer, vec![], status_rx, routes_rx, nodes_rx, stop_rx));
        let names = || async {
            let mut n: Vec<String> = ds.list_names::<NodeStatus>().await.unwrap();
            n.sort();
            n
        };
        let wanted = vec!["n1".to_string(), "stopped".into(), "unregistered-but-live".into()];
        crate::testing::wait_until_async("the deleted node's record to go", Duration::from_secs(5), || async {
            (names().await == wanted).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((listings.of(Kind::Node), listings.of(Kind::NodeStatus)), (0, 0), "listings of Nodes, records");
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
