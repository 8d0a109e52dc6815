//! Re-claiming an address found in use (a workload's host route in the kernel) that the
//! datastore does not hold — after the datastore was lost or replaced — so it is never handed
//! out to another workload.

use super::block_math::{block_of, ordinal_of};
use super::block_ops;
use super::claim::{self, RETRIES};
use super::client::Ipam;
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

impl Ipam {
    /// Allocates `ip` itself to `handle` (with `attributes`; `node` is set to this node) unless
    /// the datastore holds it already. Its block is claimed for this node when there is none.
    pub async fn reclaim(&self, ip: IpAddr, handle: &str, attributes: &BTreeMap<String, String>) -> Result<Reclaim> {
        let store = self.store();
        let pools = store.list::<IpPool>().await?.items;
        let Some(cidr) = pools.iter().find(|p| p.spec.cidr.contains(ip)).and_then(|p| block_of(ip, p.spec.block_size))
        else {
            return Ok(Reclaim::NotInPool);
        };
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
                return Ok(Reclaim::Held(block_ops::handle_at(&spec, ordinal).map(str::to_string)));
            }
            if block_ops::assign_ordinal(&mut spec, ordinal, handle, &attributes).is_none() {
                return Err(DatastoreError::invalid(
                    format!("IPAMBlock/{name}"),
                    format!("ordinal {ordinal} is neither allocated nor free"),
                )
                .into());
            }
            let existing = handles::get(store, handle).await?;
            let mut txn = Transaction::new();
            txn.update(&name, &spec, block.revision);
            handles::set(&mut txn, handle, existing.as_ref(), &cidr, block_ops::count_of(&spec, handle));
            match store.commit(txn).await {
                Ok(_) => return Ok(Reclaim::Claimed),
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
