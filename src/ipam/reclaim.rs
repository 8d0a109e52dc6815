//! Taking one given address rather than the next free one: re-claiming an address found in use
//! (a workload's host route in the kernel) that the datastore does not hold — after the
//! datastore was lost or replaced — so it is never handed out to another workload; and a pod's
//! requested address (Calico's `cni.projectcalico.org/ipAddrs`, its `AssignIP`).

use super::block_math::{block_of, ordinal_of};
use super::block_ops;
use super::claim::{self, RETRIES};
use super::client::{Allocation, Ipam};
use super::error::{IpamError, Result};
use super::handles;
use crate::datastore::resources::{IpPool, IpamBlock, cidr_name};
use crate::datastore::{DatastoreError, Stored, Transaction};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What [`Ipam::reclaim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reclaim {
    /// The datastore holds the address already, under this handle.
    Held(Option<String>),
    /// It did not: the address is now allocated to the handle given.
    Claimed,
    /// The address is in no pool: nothing to protect it from.
    NotInPool,
}

/// What taking an address in a pool found.
enum Taken {
    Held(Option<String>),
    Claimed(Allocation),
}

impl Ipam {
    /// Allocates `ip` itself to `handle` (with `attributes`; `node` is set to this node) unless
    /// the datastore holds it already. Its block is claimed for this node when there is none.
    pub async fn reclaim(&self, ip: IpAddr, handle: &str, attributes: &BTreeMap<String, String>) -> Result<Reclaim> {
        let pools = self.store().list::<IpPool>().await?.items;
        let Some(pool) = pools.iter().find(|p| p.spec.cidr.contains(ip)) else {
            return Ok(Reclaim::NotInPool);
        };
        match self.take(pool, ip, handle, attributes).await {
            Ok(Taken::Held(holder)) => Ok(Reclaim::Held(holder)),
            Ok(Taken::Claimed(_)) => Ok(Reclaim::Claimed),
            Err(IpamError::NotInPool { .. }) => Ok(Reclaim::NotInPool),
            Err(e) => Err(e),
        }
    }

    /// Allocates exactly `ip` to `handle`, as Calico's `AssignIP`: it must be in an enabled pool
    /// and free (IPReservations and the pool's `assignmentMode` do not apply: the address was
    /// asked for by name). Its block is claimed for this node when there is none; in another
    /// node's block the address is borrowed.
    pub async fn assign_ip(
        &self,
        ip: IpAddr,
        handle: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Allocation> {
        let pools = self.store().list::<IpPool>().await?.items;
        let Some(pool) = pools.iter().find(|p| !p.spec.disabled && p.spec.cidr.contains(ip)) else {
            return Err(IpamError::NotInEnabledPool { ip });
        };
        match self.take(pool, ip, handle, attributes).await? {
            Taken::Claimed(allocation) => Ok(allocation),
            Taken::Held(holder) => Err(IpamError::InUse { ip, handle: holder.unwrap_or_default() }),
        }
    }

    /// Allocates `ip` of `pool` to `handle` unless it is allocated already.
    async fn take(
        &self,
        pool: &Stored<IpPool>,
        ip: IpAddr,
        handle: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Taken> {
        let store = self.store();
        let cidr = block_of(ip, pool.spec.block_size).ok_or(IpamError::NotInPool { ip })?;
        let name = cidr_name(&cidr);
        let ordinal = ordinal_of(&cidr, ip).ok_or(IpamError::NotInPool { ip })?;
        let mut attributes = attributes.clone();
        attributes.insert(super::routes::NODE_ATTRIBUTE.to_string(), self.node().to_string());
        for _ in 0..RETRIES {
            let block: Stored<IpamBlock> = match store.get(&name).await {
                Ok(block) => block,
                Err(DatastoreError::NotFound { .. }) => {
                    // Claimed for this node; if another node won it, its block is used as is.
                    claim::claim(store, self.node(), cidr).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut spec = block.spec.clone();
            if spec.allocations.get(ordinal).copied().flatten().is_some() {
                return Ok(Taken::Held(block_ops::handle_at(&spec, ordinal).map(str::to_string)));
            }
            let Some(assigned) = block_ops::assign_ordinal(&mut spec, ordinal, handle, &attributes) else {
                return Err(DatastoreError::invalid(
                    format!("IPAMBlock/{name}"),
                    format!("ordinal {ordinal} is neither allocated nor free"),
                )
                .into());
            };
            let borrowed = spec.affinity.as_deref() != Some(claim::host_affinity(self.node()).as_str());
            let existing = handles::get(store, handle).await?;
            let mut txn = Transaction::new();
            txn.update(&name, &spec, block.revision);
            handles::set(&mut txn, handle, existing.as_ref(), &cidr, block_ops::count_of(&spec, handle));
            match store.commit(txn).await {
                Ok(_) => {
                    let allocation = Allocation {
                        handle: handle.to_string(),
                        ip,
                        block: cidr,
                        sequence: assigned.sequence,
                        borrowed,
                    };
                    return Ok(Taken::Claimed(allocation));
                }
                Err(
                    DatastoreError::Conflict { .. }
                    | DatastoreError::NotFound { .. }
                    | DatastoreError::AlreadyExists { .. },
                ) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::RetriesExhausted { key: format!("IPAMBlock/{name}"), retries: RETRIES })
    }
}
