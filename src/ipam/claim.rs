//! Claiming a block for a node in three steps, as Calico's `ipam_block_reader_writer.go`:
//! 1. create the node's `pending` BlockAffinity for the CIDR;
//! 2. create the IpamBlock with `affinity: host:<node>` — the create is the arbiter: whoever
//!    creates the block owns it;
//! 3. confirm the affinity (pending → confirmed).
//!
//! A process killed between the steps leaves a pending affinity (and maybe the block): `repair`
//! on the next start finishes what it can and undoes what it cannot, so nothing half-made stays.
//!
//! Where transactions are atomic (etcd, sqlite) a claim first tries the three steps' end state
//! in one transaction — the confirmed affinity and the block created together — which leaves
//! nothing half-made and costs one round trip instead of four. A block another node holds ends
//! the claim there, nothing of ours written. The steps remain for backends without atomic
//! transactions, and for a CIDR where this node's affinity or block is already recorded.

use super::error::{IpamError, Result};
use crate::datastore::resources::{AffinityState, BlockAffinity, IpamBlock, cidr_name};
use crate::datastore::{Datastore, DatastoreError, Kind, Stored, Transaction};
use ipnetwork::IpNetwork;

/// Bounded compare-and-swap retries, as Calico's `datastoreRetries`.
pub const RETRIES: u32 = 100;

/// The name of `node`'s affinity for `cidr` (Calico: `<host>-<cidr name>`).
pub fn affinity_name(node: &str, cidr: &IpNetwork) -> String {
    format!("{node}-{}", cidr_name(cidr))
}

/// The longest name `cidr_name` gives (an IPv6 address written out whole, `/128`).
const LONGEST_CIDR_NAME: usize = "ffff-ffff-ffff-ffff-ffff-ffff-ffff-ffff-128".len();
/// Calico shortens an affinity name this long or longer (its end replaced by a hash), so such a
/// name no longer starts with `<node>-`.
const SHORTENED_NAME_LENGTH: usize = 253;

/// `node`'s affinities (every state): listed by the name prefix `<node>-` (one node's records,
/// not the cluster's), or all of them, filtered, for a node whose affinity names Calico may have
/// shortened.
pub async fn own_affinities(store: &Datastore, node: &str) -> Result<Vec<Stored<BlockAffinity>>> {
    let listing = if node.len() + 1 + LONGEST_CIDR_NAME < SHORTENED_NAME_LENGTH {
        store.list_prefix::<BlockAffinity>(&format!("{node}-")).await?
    } else {
        store.list::<BlockAffinity>().await?
    };
    // The prefix also matches a node named `<node>-<more>`.
    Ok(listing.items.into_iter().filter(|a| a.spec.node == node).collect())
}

/// What the `affinity` field of a block affine to a host starts with; the node name follows.
pub const HOST_AFFINITY_PREFIX: &str = "host:";

/// The `affinity` field of a block affine to `node`.
pub fn host_affinity(node: &str) -> String {
    format!("{HOST_AFFINITY_PREFIX}{node}")
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`affinityClaimTime`).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Step 1: the pending affinity (an existing one of ours is taken as is: a retry or a repair).
pub async fn write_pending(store: &Datastore, node: &str, cidr: IpNetwork) -> Result<Stored<BlockAffinity>> {
    let name = affinity_name(node, &cidr);
    let affinity = BlockAffinity {
        state: AffinityState::Pending,
        node: node.to_string(),
        affinity_type: "host".into(),
        cidr,
        deleted: false,
    };
    match store.create(&name, &affinity).await {
        Err(DatastoreError::AlreadyExists { .. }) => Ok(store.get(&name).await?),
        other => Ok(other?),
    }
}

/// Step 2: create the block. `Some` when the block is ours (created now, or found already
/// affine to us), `None` when another node holds it.
pub async fn create_block(store: &Datastore, node: &str, cidr: IpNetwork) -> Result<Option<Stored<IpamBlock>>> {
    let mut block = IpamBlock::empty(cidr, Some(host_affinity(node)));
    block.affinity_claim_time = Some(rfc3339_now());
    match store.create(&cidr_name(&cidr), &block).await {
        Ok(stored) => Ok(Some(stored)),
        Err(DatastoreError::AlreadyExists { .. }) => {
            let existing: Stored<IpamBlock> = store.get(&cidr_name(&cidr)).await?;
            Ok((existing.spec.affinity.as_deref() == Some(host_affinity(node).as_str())).then_some(existing))
        }
        Err(e) => Err(e.into()),
    }
}

/// Step 3: pending → confirmed.
pub async fn confirm(store: &Datastore, node: &str, cidr: IpNetwork) -> Result<()> {
    set_state(store, node, cidr, AffinityState::Confirmed).await
}

async fn set_state(store: &Datastore, node: &str, cidr: IpNetwork, state: AffinityState) -> Result<()> {
    let name = affinity_name(node, &cidr);
    for _ in 0..RETRIES {
        let mut current: Stored<BlockAffinity> = store.get(&name).await?;
        if current.spec.state == state {
            return Ok(());
        }
        current.spec.state = state;
        match store.update(&name, &current.spec, current.revision).await {
            Err(DatastoreError::Conflict { .. }) => continue,
            other => return other.map(|_| ()).map_err(Into::into),
        }
    }
    Err(IpamError::RetriesExhausted { key: format!("BlockAffinity/{name}"), retries: RETRIES })
}

/// Deletes `node`'s affinity for `cidr`, whatever its revision (absent is fine).
pub async fn delete_affinity(store: &Datastore, node: &str, cidr: IpNetwork) -> Result<()> {
    let name = affinity_name(node, &cidr);
    for _ in 0..RETRIES {
        let current: Stored<BlockAffinity> = match store.get(&name).await {
            Err(DatastoreError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        match store.delete::<BlockAffinity>(&name, current.revision).await {
            Ok(()) | Err(DatastoreError::NotFound { .. }) => return Ok(()),
            Err(DatastoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(IpamError::RetriesExhausted { key: format!("BlockAffinity/{name}"), retries: RETRIES })
}

/// All three steps. `None`: another node won the block; our pending affinity is removed.
pub async fn claim(store: &Datastore, node: &str, cidr: IpNetwork) -> Result<Option<Stored<IpamBlock>>> {
    if store.atomic_transactions()
        && let Some(outcome) = claim_at_once(store, node, cidr).await?
    {
        return Ok(outcome);
    }
    write_pending(store, node, cidr).await?;
    match create_block(store, node, cidr).await? {
        Some(block) => {
            confirm(store, node, cidr).await?;
            Ok(Some(block))
        }
        None => {
            delete_affinity(store, node, cidr).await?;
            Ok(None)
        }
    }
}

/// The claim as one transaction: `Some(Some(block))` claimed, `Some(None)` another node holds
/// the block (nothing of ours was written), `None` when the steps must sort it out (our
/// affinity exists already, or the block is ours from an earlier claim).
async fn claim_at_once(store: &Datastore, node: &str, cidr: IpNetwork) -> Result<Option<Option<Stored<IpamBlock>>>> {
    let affinity = BlockAffinity {
        state: AffinityState::Confirmed,
        node: node.to_string(),
        affinity_type: "host".into(),
        cidr,
        deleted: false,
    };
    let mut block = IpamBlock::empty(cidr, Some(host_affinity(node)));
    block.affinity_claim_time = Some(rfc3339_now());
    let name = cidr_name(&cidr);
    let mut txn = Transaction::new();
    txn.create(&affinity_name(node, &cidr), &affinity).create(&name, &block);
    match store.commit(txn).await {
        Ok(revisions) => {
            let revision = revisions.get(1).copied().ok_or_else(|| {
                DatastoreError::unavailable(format!("a claim's commit gave {} revisions for 2 writes", revisions.len()))
            })?;
            Ok(Some(Some(Stored { name, revision, spec: block })))
        }
        Err(DatastoreError::AlreadyExists { key }) if key.kind == Kind::IpamBlock => {
            let existing: Stored<IpamBlock> = match store.get(&name).await {
                Err(DatastoreError::NotFound { .. }) => return Ok(None),
                other => other?,
            };
            let ours = existing.spec.affinity.as_deref() == Some(host_affinity(node).as_str());
            Ok((!ours).then_some(None))
        }
        Err(DatastoreError::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Finishes or undoes every half-made claim or release of `node`: a pending affinity is claimed
/// again (which confirms it, or removes it when another node owns the block); a
/// pendingDeletion one is released if its block is empty or gone, else confirmed again. Returns
/// how many affinities it touched.
pub async fn repair(store: &Datastore, node: &str) -> Result<usize> {
    let mut touched = 0;
    for affinity in own_affinities(store, node).await? {
        let cidr = affinity.spec.cidr;
        match affinity.spec.state {
            AffinityState::Confirmed => continue,
            AffinityState::Pending => {
                claim(store, node, cidr).await?;
            }
            AffinityState::PendingDeletion => match store.get::<IpamBlock>(&cidr_name(&cidr)).await {
                Err(DatastoreError::NotFound { .. }) => delete_affinity(store, node, cidr).await?,
                Ok(block) if super::block_ops::in_use(&block.spec) == 0 => {
                    match store.delete::<IpamBlock>(&block.name, block.revision).await {
                        Ok(()) | Err(DatastoreError::NotFound { .. }) => delete_affinity(store, node, cidr).await?,
                        Err(DatastoreError::Conflict { .. }) => confirm(store, node, cidr).await?,
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(_) => confirm(store, node, cidr).await?,
                Err(e) => return Err(e.into()),
            },
        }
        touched += 1;
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_time_is_rfc3339() {
        let now = rfc3339_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z') && &now[10..11] == "T", "{now}");
    }

    #[test]
    fn affinity_names_follow_calico() {
        assert_eq!(affinity_name("n1", &"10.0.0.64/26".parse().unwrap()), "n1-10-0-0-64-26");
    }
}
