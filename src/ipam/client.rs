//! `Ipam`: allocation and release by handle for one node, on the `Datastore` interface so every
//! backend works. Follows Calico's `autoAssign` (reference §2.3): the node's own blocks first,
//! then a newly claimed block (up to the per-host block limit), then — unless strict affinity is
//! set — borrowing from other nodes' blocks. Every block write is a compare-and-swap with
//! bounded retries; a batch of requests shares one write per block (group commit).

use super::block_math::{block_count, block_of, family, nth_block, start_index};
use super::block_ops::{self, Assigned, Released};
use super::claim::{self, RETRIES};
use super::error::{IpamError, Result};
use super::handles;
use super::pools::usable;
use crate::datastore::resources::{AffinityState, BlockAffinity, IpPool, IpamBlock, IpamConfig, PoolUse, cidr_name};
use crate::datastore::{Datastore, DatastoreError, Stored};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

/// Calico's default per-host block limit when `maxBlocksPerHost` is 0.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

/// Who this allocator is and what it must never hand out.
#[derive(Clone, Debug, Default)]
pub struct IpamOptions {
    pub node: String,
    /// The node's labels, for pools' `nodeSelector`.
    pub labels: BTreeMap<String, String>,
    /// Addresses never handed out (Calico's IPReservation `reservedCIDRs`).
    pub reservations: Vec<IpNetwork>,
}

/// One address wanted.
#[derive(Clone, Debug)]
pub struct Request {
    /// Who will hold it (the container id for a pod: `k8s-pod-network.<id>` as Calico names it).
    pub handle: String,
    /// 4 or 6.
    pub family: u8,
    pub purpose: PoolUse,
    /// Owner attributes (pod, namespace), stored with the address; `node` is always set to the
    /// allocating node.
    pub attributes: BTreeMap<String, String>,
}

impl Request {
    /// A workload address for `pod` in `namespace` on `node`.
    pub fn workload(handle: &str, family: u8, pod: &str, namespace: &str, node: &str) -> Request {
        let attributes = BTreeMap::from([
            ("pod".to_string(), pod.to_string()),
            ("namespace".to_string(), namespace.to_string()),
            ("node".to_string(), node.to_string()),
        ]);
        Request { handle: handle.to_string(), family, purpose: PoolUse::Workload, attributes }
    }
}

/// One address handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub handle: String,
    pub ip: IpAddr,
    /// The block it came from (Calico returns block-masked CIDRs; the CNI narrows to /32, /128).
    pub block: IpNetwork,
    /// Pass to `release_ip` so a stale release cannot free the address once it is reused.
    pub sequence: u64,
    /// From another node's block: the speaker must announce it as a /32 (/128).
    pub borrowed: bool,
}

/// The IPAM client of one node. Cheap to clone.
#[derive(Clone)]
pub struct Ipam {
    store: Datastore,
    options: std::sync::Arc<IpamOptions>,
}

/// The allocator task's copies of its node's blocks as last written, so a batch need not read
/// a block it wrote itself. Owned by the allocator task; a one-off batch uses an empty one.
#[derive(Default)]
pub struct BlockCache {
    blocks: BTreeMap<IpNetwork, Stored<IpamBlock>>,
}

/// What a batch of one family and purpose works with, read once per batch.
struct Context {
    config: IpamConfig,
    pools: Vec<Stored<IpPool>>,
}

impl Ipam {
    pub fn new(store: Datastore, options: IpamOptions) -> Ipam {
        Ipam { store, options: std::sync::Arc::new(options) }
    }

    pub fn store(&self) -> &Datastore {
        &self.store
    }

    pub fn node(&self) -> &str {
        &self.options.node
    }

    /// Finishes or undoes claims and releases this node left half-made (call at start-up).
    pub async fn repair(&self) -> Result<usize> {
        claim::repair(&self.store, &self.options.node).await
    }

    /// The IPAM configuration (`default`), or Calico's defaults when there is none.
    pub async fn config(&self) -> Result<IpamConfig> {
        match self.store.get::<IpamConfig>("default").await {
            Ok(stored) => Ok(stored.spec),
            Err(DatastoreError::NotFound { .. }) => Ok(IpamConfig::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// One address.
    pub async fn allocate(&self, request: Request) -> Result<Allocation> {
        self.allocate_batch(vec![request]).await.pop().unwrap_or(Err(IpamError::Stopped))
    }

    /// Many addresses; results in request order. Requests sharing a block share its write.
    pub async fn allocate_batch(&self, requests: Vec<Request>) -> Vec<Result<Allocation>> {
        let assigned = self.assign_batch(&requests, &mut BlockCache::default()).await;
        let writes = assigned.into_iter().zip(&requests).map(|(result, request)| async move {
            match result {
                Ok(a) => self.record_handle(&request.handle, a).await,
                Err(e) => Err(e),
            }
        });
        futures::future::join_all(writes).await
    }

    /// Records an address under its handle (the index release-by-handle uses). A failed handle
    /// write gives the address back, so nothing is left allocated without a handle record.
    pub(crate) async fn record_handle(&self, handle: &str, allocation: Allocation) -> Result<Allocation> {
        match handles::add(&self.store, handle, &allocation.block).await {
            Ok(()) => Ok(allocation),
            Err(e) => {
                let _ = self.free_ip(allocation.ip, Some(allocation.sequence)).await;
                Err(e)
            }
        }
    }

    /// The block half of `allocate_batch`: addresses assigned in blocks, handles not yet recorded.
    pub(crate) async fn assign_batch(&self, requests: &[Request], cache: &mut BlockCache) -> Vec<Result<Allocation>> {
        let mut results: Vec<Option<Result<Allocation>>> = requests.iter().map(|_| None).collect();
        let groups: BTreeSet<(u8, u8)> = requests.iter().map(|r| (r.family, r.purpose as u8)).collect();
        for (fam, purpose) in groups {
            let members: Vec<usize> = (0..requests.len())
                .filter(|i| (requests[*i].family, requests[*i].purpose as u8) == (fam, purpose))
                .collect();
            match self.allocate_group(requests, members.clone(), cache).await {
                Ok(done) => {
                    for (i, result) in done {
                        results[i] = Some(result);
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    for i in members {
                        results[i] = Some(Err(share(&e, &text)));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Err(IpamError::Stopped))).collect()
    }

    async fn context(&self, fam: u8, purpose: PoolUse) -> Result<Context> {
        let config = self.config().await?;
        let pools = self.store.list::<IpPool>().await?.items;
        let pools: Vec<_> = pools.into_iter().filter(|p| usable(&p.spec, fam, purpose, &self.options.labels)).collect();
        if pools.is_empty() {
            let purpose = if purpose == PoolUse::Tunnel { "tunnel" } else { "workload" };
            return Err(IpamError::NoPool { family: fam, purpose });
        }
        Ok(Context { config, pools })
    }

    /// The CIDRs of this node's confirmed blocks inside `pools`.
    async fn own_blocks(&self, pools: &[Stored<IpPool>]) -> Result<Vec<IpNetwork>> {
        let listing = self.store.list::<BlockAffinity>().await?;
        Ok(listing
            .items
            .into_iter()
            .filter(|a| a.spec.node == self.options.node && a.spec.state == AffinityState::Confirmed)
            .map(|a| a.spec.cidr)
            .filter(|c| pools.iter().any(|p| p.spec.cidr.contains(c.network())))
            .collect())
    }

    async fn allocate_group(
        &self,
        requests: &[Request],
        members: Vec<usize>,
        cache: &mut BlockCache,
    ) -> Result<Vec<(usize, Result<Allocation>)>> {
        let first = &requests[members[0]];
        let ctx = self.context(first.family, first.purpose).await?;
        let mut pending: VecDeque<usize> = members.into();
        let mut done = Vec::new();
        let own = self.own_blocks(&ctx.pools).await?;
        for cidr in &own {
            if pending.is_empty() {
                break;
            }
            skip_broken(self.fill_block(*cidr, requests, &mut pending, &mut done, Some(&mut *cache)).await)?;
        }
        let limit = match ctx.config.max_blocks_per_host {
            0 => DEFAULT_MAX_BLOCKS_PER_HOST,
            n => n,
        };
        let mut owned = own.len() as u32;
        let mut limited = false;
        while !pending.is_empty() && ctx.config.auto_allocate_blocks {
            if owned >= limit {
                limited = true;
                break;
            }
            let Some(cidr) = self.find_free_cidr(&ctx.pools).await? else { break };
            if claim::claim(&self.store, &self.options.node, cidr).await?.is_some() {
                owned += 1;
                self.fill_block(cidr, requests, &mut pending, &mut done, Some(&mut *cache)).await?;
            }
        }
        if !pending.is_empty() && !ctx.config.strict_affinity {
            // Borrowing (reference §2.3 step 4): any block of the pools with room, whoever owns it.
            let me = claim::host_affinity(&self.options.node);
            let blocks = self.store.list::<IpamBlock>().await?.items;
            for block in blocks {
                if pending.is_empty() {
                    break;
                }
                let in_pool = ctx.pools.iter().any(|p| p.spec.cidr.contains(block.spec.cidr.network()));
                let mine = block.spec.affinity.as_deref() == Some(me.as_str());
                if in_pool && !mine && block_ops::free_count(&block.spec, &self.options.reservations) > 0 {
                    skip_broken(self.fill_block(block.spec.cidr, requests, &mut pending, &mut done, None).await)?;
                }
            }
        }
        for i in pending {
            let error = if limited && ctx.config.strict_affinity {
                IpamError::BlockLimit { node: self.options.node.clone(), limit }
            } else {
                IpamError::PoolsExhausted { pools: ctx.pools.iter().map(|p| p.name.clone()).collect() }
            };
            done.push((i, Err(error)));
        }
        Ok(done)
    }

    /// A block CIDR of `pools` that has no block yet, walking each pool from this node's start
    /// index (so nodes spread out) and wrapping around.
    async fn find_free_cidr(&self, pools: &[Stored<IpPool>]) -> Result<Option<IpNetwork>> {
        // A CIDR is taken if it has a block, or an affinity of any node in any state (a claim in
        // flight, or a block whose record does not decode).
        let mut taken: BTreeSet<IpNetwork> =
            self.store.list::<IpamBlock>().await?.items.iter().map(|b| b.spec.cidr).collect();
        taken.extend(self.store.list::<BlockAffinity>().await?.items.iter().map(|a| a.spec.cidr));
        for pool in pools {
            let count = block_count(&pool.spec.cidr, pool.spec.block_size);
            let start = start_index(&self.options.node, count);
            // At most `taken` blocks are used, so a free one is within taken + 1 steps.
            let steps = count.min(taken.len() as u128 + 1);
            for step in 0..steps {
                let cidr = nth_block(&pool.spec.cidr, pool.spec.block_size, (start + step) % count);
                let reserved =
                    self.options.reservations.iter().any(|r| r.contains(cidr.network()) && r.prefix() <= cidr.prefix());
                if !taken.contains(&cidr) && !reserved {
                    return Ok(Some(cidr));
                }
            }
        }
        Ok(None)
    }

    /// Assigns as many pending requests as `cidr`'s block has room for, in one compare-and-swap.
    async fn fill_block(
        &self,
        cidr: IpNetwork,
        requests: &[Request],
        pending: &mut VecDeque<usize>,
        done: &mut Vec<(usize, Result<Allocation>)>,
        mut cache: Option<&mut BlockCache>,
    ) -> Result<()> {
        let name = cidr_name(&cidr);
        // Own blocks are cached (the `cache`); borrowed ones are not.
        let borrowed = cache.is_none();
        for _ in 0..RETRIES {
            // The cached copy saves a read when nobody else wrote the block since our last
            // write; if someone did, the write below conflicts and the next round reads it.
            let cached = cache.as_mut().and_then(|c| c.blocks.remove(&cidr));
            let mut block: Stored<IpamBlock> = match cached {
                Some(block) => block,
                None => match self.store.get(&name).await {
                    Err(DatastoreError::NotFound { .. }) => return Ok(()),
                    other => other?,
                },
            };
            let ours = block.spec.affinity.as_deref() == Some(claim::host_affinity(&self.options.node).as_str());
            // Released and re-claimed by another node since we listed it: no longer ours.
            if block.spec.deleted || (!borrowed && !ours) {
                return Ok(());
            }
            let mut assigned: Vec<(usize, Assigned)> = Vec::new();
            for i in pending.iter() {
                let r = &requests[*i];
                // The allocating node is always recorded: the speaker finds borrowed addresses by it.
                let mut attributes = r.attributes.clone();
                attributes.insert(super::routes::NODE_ATTRIBUTE.to_string(), self.options.node.clone());
                match block_ops::assign(&mut block.spec, &r.handle, &attributes, &self.options.reservations) {
                    Some(a) => assigned.push((*i, a)),
                    None => break,
                }
            }
            if assigned.is_empty() {
                return Ok(());
            }
            match self.store.update(&name, &block.spec, block.revision).await {
                Ok(written) => {
                    if let Some(cache) = cache.as_mut() {
                        cache.blocks.insert(cidr, written);
                    }
                    for (i, a) in assigned {
                        pending.retain(|p| *p != i);
                        let allocation = Allocation {
                            handle: requests[i].handle.clone(),
                            ip: a.ip,
                            block: cidr,
                            sequence: a.sequence,
                            borrowed,
                        };
                        done.push((i, Ok(allocation)));
                    }
                    return Ok(());
                }
                Err(DatastoreError::Conflict { .. }) | Err(DatastoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::RetriesExhausted { key: format!("IPAMBlock/{name}"), retries: RETRIES })
    }

    /// Releases every address of `handle`; how many were freed. Releasing twice frees nothing
    /// the second time.
    pub async fn release_handle(&self, handle: &str) -> Result<usize> {
        let Some(record) = handles::get(&self.store, handle).await? else { return Ok(0) };
        let mut freed = 0;
        for cidr in record.spec.block.keys() {
            let Ok(cidr) = cidr.parse::<IpNetwork>() else { continue };
            freed += self.update_block(cidr, |b| block_ops::release_handle(b, handle)).await?;
        }
        handles::delete(&self.store, handle).await?;
        Ok(freed)
    }

    /// Releases `ip`. With `sequence`, only if the address still carries that allocation's
    /// sequence number (else `StaleSequence`). `false`: it was free already.
    pub async fn release_ip(&self, ip: IpAddr, sequence: Option<u64>) -> Result<bool> {
        match self.free_ip(ip, sequence).await? {
            Released::Freed(Some(handle)) => {
                let block = self.block_for(ip).await?;
                handles::remove(&self.store, &handle, &block).await?;
                Ok(true)
            }
            Released::Freed(None) => Ok(true),
            Released::AlreadyFree => Ok(false),
            Released::Stale { current } => Err(IpamError::StaleSequence { ip, given: sequence.unwrap_or(0), current }),
        }
    }

    async fn block_for(&self, ip: IpAddr) -> Result<IpNetwork> {
        let pools = self.store.list::<IpPool>().await?.items;
        pools
            .iter()
            .find(|p| p.spec.cidr.contains(ip))
            .and_then(|p| block_of(ip, p.spec.block_size))
            .ok_or(IpamError::NotInPool { ip })
    }

    /// Frees `ip` in its block without touching the handle record.
    async fn free_ip(&self, ip: IpAddr, sequence: Option<u64>) -> Result<Released> {
        let cidr = self.block_for(ip).await?;
        let mut outcome = Released::AlreadyFree;
        self.update_block(cidr, |b| {
            outcome = block_ops::release_ip(b, ip, sequence);
            usize::from(matches!(outcome, Released::Freed(_)))
        })
        .await?;
        Ok(outcome)
    }

    /// Applies `change` to the block with compare-and-swap retries; writes only when `change`
    /// reports it changed something (non-zero). A missing block changes nothing.
    async fn update_block(&self, cidr: IpNetwork, mut change: impl FnMut(&mut IpamBlock) -> usize) -> Result<usize> {
        let name = cidr_name(&cidr);
        for _ in 0..RETRIES {
            let mut block: Stored<IpamBlock> = match self.store.get(&name).await {
                Err(DatastoreError::NotFound { .. }) => return Ok(0),
                other => other?,
            };
            let changed = change(&mut block.spec);
            if changed == 0 {
                return Ok(0);
            }
            match self.store.update(&name, &block.spec, block.revision).await {
                Ok(_) => return Ok(changed),
                Err(DatastoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::RetriesExhausted { key: format!("IPAMBlock/{name}"), retries: RETRIES })
    }

    /// The node's tunnel address of `fam` from a pool allowing tunnel use, allocated once under
    /// Calico's handle name (`ipip-tunnel-addr-<node>`; `ipv6-tunnel-addr-<node>` for IPv6) and
    /// returned as is on later calls.
    pub async fn tunnel_address(&self, fam: u8) -> Result<Allocation> {
        let node = &self.options.node;
        let handle = if fam == 4 { format!("ipip-tunnel-addr-{node}") } else { format!("ipv6-tunnel-addr-{node}") };
        if let Some(record) = handles::get(&self.store, &handle).await? {
            for cidr in record.spec.block.keys().filter_map(|c| c.parse::<IpNetwork>().ok()) {
                let block: Stored<IpamBlock> = match self.store.get(&cidr_name(&cidr)).await {
                    Err(DatastoreError::NotFound { .. }) => continue,
                    other => other?,
                };
                if let Some(ordinal) =
                    (0..block.spec.allocations.len()).find(|o| block_ops::handle_at(&block.spec, *o) == Some(&handle))
                {
                    let sequence =
                        block.spec.sequence_number_for_allocation.get(&ordinal.to_string()).copied().unwrap_or(0);
                    let borrowed = block.spec.affinity.as_deref() != Some(claim::host_affinity(node).as_str());
                    let ip = super::block_math::ip_at(&cidr, ordinal);
                    return Ok(Allocation { handle, ip, block: cidr, sequence, borrowed });
                }
            }
        }
        let attributes = BTreeMap::from([
            ("type".to_string(), if fam == 4 { "ipipTunnelAddress" } else { "ipv6TunnelAddress" }.to_string()),
            ("node".to_string(), node.clone()),
        ]);
        self.allocate(Request { handle, family: fam, purpose: PoolUse::Tunnel, attributes }).await
    }
}

/// A block that does not decode is reported (its key named) and passed over, so one corrupt
/// record does not stop a node from allocating elsewhere; `ipam check` lists it.
fn skip_broken(result: Result<()>) -> Result<()> {
    match result {
        Err(IpamError::Datastore(e @ DatastoreError::InvalidData { .. })) => {
            tracing::warn!(error = %e, "skipping a block that does not decode");
            Ok(())
        }
        other => other,
    }
}

/// The same error for every request of a failed group (errors are not `Clone`).
fn share(e: &IpamError, text: &str) -> IpamError {
    match e {
        IpamError::NoPool { family, purpose } => IpamError::NoPool { family: *family, purpose },
        IpamError::PoolsExhausted { pools } => IpamError::PoolsExhausted { pools: pools.clone() },
        IpamError::BlockLimit { node, limit } => IpamError::BlockLimit { node: node.clone(), limit: *limit },
        IpamError::RetriesExhausted { key, retries } => {
            IpamError::RetriesExhausted { key: key.clone(), retries: *retries }
        }
        _ => IpamError::Datastore(DatastoreError::unavailable(text.to_string())),
    }
}

/// The family (4 or 6) of a network, re-exported for callers building requests from a pool.
pub fn family_of(net: &IpNetwork) -> u8 {
    family(net)
}
