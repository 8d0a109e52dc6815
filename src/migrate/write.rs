//! Writing checked objects: planned in full first (each one created, left unchanged or
//! replaced), then written in an order that keeps IPAM consistent at every step — the IPAM
//! configuration and pools before the blocks cut from them, blocks before the handles counting
//! their addresses, handles before the affinities that make blocks usable — and the BGP
//! resources after the Nodes they select.

use super::Object;
use crate::datastore::{Datastore, DatastoreError, Key, Kind, Revision};
use std::collections::BTreeSet;

/// Where a kind's objects go in the write order.
fn write_rank(kind: Kind) -> u8 {
    match kind {
        // Reservations before the pools whose addresses they keep out of use.
        Kind::IpamConfig | Kind::IpReservation => 0,
        Kind::IpPool => 1,
        Kind::IpamBlock => 2,
        Kind::IpamHandle => 3,
        Kind::BlockAffinity => 4,
        Kind::Node => 5,
        // The BGP resources after what they refer to: passwords and filters before the peers.
        Kind::Secret => 6,
        Kind::BgpFilter => 7,
        Kind::BgpConfiguration => 8,
        Kind::BgpPeer => 9,
        // Namespaces before the policies whose namespace selectors read their labels.
        Kind::Namespace => 10,
        Kind::GlobalNetworkPolicy | Kind::NetworkPolicy | Kind::KubeNetworkPolicy => 11,
        // Services before the endpoint slices that name them.
        Kind::Service => 12,
        Kind::EndpointSlice => 13,
        // Written by agents; restored last, as it refers to the nodes.
        Kind::NodeStatus => 14,
        // Nothing refers to a lease.
        Kind::Lease => 15,
    }
}

/// Sorts `objects` into the order they are written in (stable within a kind).
pub fn in_write_order(objects: &mut [Object]) {
    objects.sort_by_key(|o| write_rank(o.kind));
}

/// `objects` with each object given more than once kept once (the same resource often is in
/// several exports); one refusal per key given with different specs.
pub fn without_repeats(objects: Vec<Object>) -> (Vec<Object>, Vec<String>) {
    let mut kept: Vec<Object> = Vec::new();
    let mut refusals = BTreeSet::new();
    for object in objects {
        match kept.iter().find(|k| k.key() == object.key()) {
            None => kept.push(object),
            Some(k) if k.spec == object.spec => {}
            Some(_) => {
                refusals.insert(format!("{}: given twice with different specs", object.key()));
            }
        }
    }
    (kept, refusals.into_iter().collect())
}

/// What writing one object does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Create,
    Unchanged,
    /// Replace the record found at this revision.
    Replace(Revision),
}

/// The writes to make, in order; nothing is written yet.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub writes: Vec<(Object, Outcome)>,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The input itself is refused (each line names the object): nothing was written.
    #[error("{}", .0.join("\n"))]
    Refused(Vec<String>),
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}

/// Checks every object, compares it with what is stored and orders the writes. An object that
/// exists and differs is replaced when `replace`, else refused (with every other refusal).
pub async fn plan_writes(store: &Datastore, objects: Vec<Object>, replace: bool) -> Result<Plan, PlanError> {
    let (objects, mut refusals) = without_repeats(objects);
    let mut checked = Vec::new();
    for mut object in objects {
        match object.check() {
            Ok(c) if !c.unknown_fields.is_empty() => {
                c.unknown_fields.iter().for_each(|f| refusals.push(format!("{}: {f}: unknown field", object.key())));
            }
            Ok(c) => {
                object.spec = c.spec;
                checked.push(object);
            }
            Err(e) => refusals.push(e),
        }
    }
    in_write_order(&mut checked);
    let mut plan = Plan::default();
    for object in checked {
        let outcome = match store.backend().get(&object.key()).await {
            Err(DatastoreError::NotFound { .. }) => Outcome::Create,
            Err(e) => return Err(e.into()),
            Ok(raw) => {
                let stored =
                    serde_json::from_slice(&raw.value).ok().and_then(|v| super::check_spec(object.kind, &v).ok());
                if stored.is_some_and(|s| s.spec == object.spec) {
                    Outcome::Unchanged
                } else if replace {
                    Outcome::Replace(raw.revision)
                } else {
                    refusals.push(format!("{}: exists with a different spec (--force replaces it)", object.key()));
                    continue;
                }
            }
        };
        plan.writes.push((object, outcome));
    }
    if refusals.is_empty() { Ok(plan) } else { Err(PlanError::Refused(refusals)) }
}

/// Makes the writes of `plan` in order; calls `done` after each.
pub async fn execute(
    store: &Datastore,
    plan: &Plan,
    mut done: impl FnMut(&Key, Outcome),
) -> Result<(), DatastoreError> {
    for (object, outcome) in &plan.writes {
        let key = object.key();
        let value = serde_json::to_vec(&object.spec).map_err(|e| DatastoreError::invalid(&key, e.to_string()))?;
        match outcome {
            Outcome::Create => {
                store.backend().create(&key, value).await?;
            }
            Outcome::Replace(revision) => {
                store.backend().update(&key, value, *revision).await?;
            }
            Outcome::Unchanged => {}
        }
        done(&key, *outcome);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
    use serde_json::json;

    fn pool(name: &str, cidr: &str) -> Object {
        Object { kind: Kind::IpPool, name: name.into(), spec: json!({"cidr": cidr, "blockSize": 26}) }
    }

    #[tokio::test]
    async fn writes_are_ordered_and_a_differing_record_is_refused_unless_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Datastore::new(SqliteBackend::open(&dir.path().join("t.db"), SqliteOptions::default()).await.unwrap());
        let handle = Object { kind: Kind::IpamHandle, name: "h".into(), spec: json!({"handleID": "h"}) };
        let plan = plan_writes(&store, vec![handle, pool("p", "10.0.0.0/16")], false).await.unwrap();
        let kinds: Vec<Kind> = plan.writes.iter().map(|(o, _)| o.kind).collect();
        assert_eq!(kinds, vec![Kind::IpPool, Kind::IpamHandle]);
        execute(&store, &plan, |_, _| {}).await.unwrap();

        let again = plan_writes(&store, vec![pool("p", "10.0.0.0/16")], false).await.unwrap();
        assert_eq!(again.writes[0].1, Outcome::Unchanged);
        let PlanError::Refused(why) = plan_writes(&store, vec![pool("p", "10.1.0.0/16")], false).await.unwrap_err()
        else {
            panic!("refused expected")
        };
        assert_eq!(why, vec!["IPPool/p: exists with a different spec (--force replaces it)"]);
        let replace = plan_writes(&store, vec![pool("p", "10.1.0.0/16")], true).await.unwrap();
        assert!(matches!(replace.writes[0].1, Outcome::Replace(_)));
    }
}
