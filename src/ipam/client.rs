//! `Ipam`: allocation and release by handle for one node, on the `Datastore` interface so every
//! backend works. Follows Calico's `autoAssign` (reference §2.3): the node's own blocks first,
//! then a newly claimed block (unless `autoAllocateBlocks` is off, up to the per-host block
//! limit), then — unless strict affinity is set or the node is at its block limit — borrowing
//! from other nodes' blocks. Every block write is a compare-and-swap with
//! bounded retries; a batch of requests shares one write per block (group commit).

use super::block_math::{block_count, block_of, family, nth_block, overlaps, start_index};
use super::block_ops::{self, Assigned, Released};
use super::claim::{self, RETRIES};
use super::error::{IpamError, Result};
use super::handles;
use super::pools::usable;
use super::tunnel::TunnelDevice;
use crate::datastore::resources::{
    AffinityState, AssignmentMode, BlockAffinity, IpPool, IpReservation, IpamBlock, IpamConfig, IpamHandle, Node,
    PoolUse, cidr_name, cidr_of_name,
};
use crate::datastore::{Datastore, DatastoreError, Kind, MAX_TRANSACTION_WRITES, Stored, Transaction};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

/// Calico's default per-host block limit when `maxBlocksPerHost` is 0.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

/// Who this allocator is and what it must never hand out.
#[derive(Clone, Debug, Default)]
pub struct IpamOptions {
    pub node: String,
    /// The node's labels, for pools' `nodeSelector`, when the datastore has no Node record for
    /// `node` (tools, tests); a recorded node's labels are read from its record.
    pub labels: BTreeMap<String, String>,
    /// Addresses never handed out, besides the datastore's IPReservations.
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
    /// Only from these pools (by CIDR), as Calico's `IPv4Pools` argument; empty: every pool the
    /// purpose may use.
    pub pools: Vec<IpNetwork>,
}

impl Request {
    /// A workload address for `pod` in `namespace` on `node`.
    pub fn workload(handle: &str, family: u8, pod: &str, namespace: &str, node: &str) -> Request {
        let attributes = BTreeMap::from([
            ("pod".to_string(), pod.to_string()),
            ("namespace".to_string(), namespace.to_string()),
            ("node".to_string(), node.to_string()),
        ]);
        Request { handle: handle.to_string(), family, purpose: PoolUse::Workload, attributes, pools: Vec::new() }
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

/// What start-up repair did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Affinities of half-made claims or releases finished or undone.
    pub claims: usize,
    /// Handles whose records were rebuilt from the blocks' allocations.
    pub handles_rebuilt: Vec<String>,
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
    /// The IPReservations' CIDRs and `IpamOptions::reservations`.
    reservations: Vec<IpNetwork>,
    /// This node's confirmed blocks inside `pools`.
    own: Vec<IpNetwork>,
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

    /// Finishes or undoes claims and releases this node left half-made, and rebuilds the
    /// handle records of its allocations a crash left short (call at start-up, before the
    /// node allocates).
    pub async fn repair(&self) -> Result<Repaired> {
        let claims = claim::repair(&self.store, &self.options.node).await?;
        let handles_rebuilt = super::repair::rebuild_handles(&self.store, &self.options.node).await?;
        Ok(Repaired { claims, handles_rebuilt })
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
        self.assign_batch(&requests, &mut BlockCache::default()).await
    }

    /// Assigns addresses to `requests`, each block's addresses written in one transaction with
    /// their handle records; `cache` holds the blocks as this node last wrote them.
    pub(crate) async fn assign_batch(&self, requests: &[Request], cache: &mut BlockCache) -> Vec<Result<Allocation>> {
        let mut results: Vec<Option<Result<Allocation>>> = requests.iter().map(|_| None).collect();
        let group_of = |r: &Request| (r.family, r.purpose as u8, r.pools.clone());
        let groups: BTreeSet<(u8, u8, Vec<IpNetwork>)> = requests.iter().map(group_of).collect();
        for group in groups {
            let members: Vec<usize> = (0..requests.len()).filter(|i| group_of(&requests[*i]) == group).collect();
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

    /// The batch's context. Its reads are independent, so they go out together: a batch waits
    /// for one round trip to the datastore, not five in a row.
    async fn context(&self, fam: u8, purpose: PoolUse, only: &[IpNetwork]) -> Result<Context> {
        let (config, labels, pools, reservation_records, affinities) = tokio::try_join!(
            self.config(),
            self.node_labels(),
            async { Ok(self.store.list::<IpPool>().await?.items) },
            async { Ok::<_, IpamError>(self.store.list::<IpReservation>().await?.items) },
            claim::own_affinities(&self.store, &self.options.node),
        )?;
        let pools: Vec<_> = pools
            .into_iter()
            .filter(|p| usable(&p.spec, fam, purpose, &labels))
            // A Manual pool serves only requests that name it.
            .filter(|p| match only.is_empty() {
                true => p.spec.assignment_mode == AssignmentMode::Automatic,
                false => only.contains(&p.spec.cidr),
            })
            .collect();
        if pools.is_empty() {
            let purpose = match purpose {
                PoolUse::Tunnel => "tunnel",
                PoolUse::LoadBalancer => "load-balancer",
                _ => "workload",
            };
            return Err(IpamError::NoPool { family: fam, purpose });
        }
        let mut reservations = self.options.reservations.clone();
        for r in reservation_records {
            reservations.extend(r.spec.reserved_cidrs);
        }
        // This node's confirmed blocks inside the pools.
        let own = affinities
            .into_iter()
            .filter(|a| a.spec.node == self.options.node && a.spec.state == AffinityState::Confirmed)
            .map(|a| a.spec.cidr)
            .filter(|c| pools.iter().any(|p| p.spec.cidr.contains(c.network())))
            .collect();
        Ok(Context { config, pools, reservations, own })
    }

    /// The node's labels as its record has them now, so a relabelled node picks pools by its new
    /// labels at its next block claim; `options.labels` when it has no record.
    async fn node_labels(&self) -> Result<BTreeMap<String, String>> {
        match self.store.get::<Node>(&self.options.node).await {
            Ok(node) => Ok(node.spec.labels),
            Err(DatastoreError::NotFound { .. }) => Ok(self.options.labels.clone()),
            Err(e) => Err(e.into()),
        }
    }

    async fn allocate_group(
        &self,
        requests: &[Request],
        members: Vec<usize>,
        cache: &mut BlockCache,
    ) -> Result<Vec<(usize, Result<Allocation>)>> {
        let first = &requests[members[0]];
        let ctx = self.context(first.family, first.purpose, &first.pools).await?;
        let mut pending: VecDeque<usize> = members.into();
        let mut done = Vec::new();
        for cidr in &ctx.own {
            if pending.is_empty() {
                break;
            }
            skip_broken(self.fill_block(*cidr, &ctx, requests, &mut pending, &mut done, Some(&mut *cache)).await)?;
        }
        let limit = match ctx.config.max_blocks_per_host {
            0 => DEFAULT_MAX_BLOCKS_PER_HOST,
            n => n,
        };
        let mut owned = ctx.own.len() as u32;
        let mut limited = false;
        let mut lost: BTreeSet<IpNetwork> = BTreeSet::new();
        while !pending.is_empty() && ctx.config.auto_allocate_blocks {
            if owned >= limit {
                limited = true;
                break;
            }
            let Some(cidr) = self.find_free_cidr(&ctx, &lost).await? else { break };
            if claim::claim(&self.store, &self.options.node, cidr).await?.is_some() {
                owned += 1;
                self.fill_block(cidr, &ctx, requests, &mut pending, &mut done, Some(&mut *cache)).await?;
            } else {
                // Another node holds it: never offered again in this batch, whatever the
                // listings say, so the search cannot offer it forever.
                lost.insert(cidr);
            }
        }
        // A host at its block limit does not borrow either (Calico's `ErrBlockLimit`).
        if !pending.is_empty() && !ctx.config.strict_affinity && !limited {
            // Borrowing (reference §2.3 step 4): any block of the pools with room, whoever owns it.
            let me = claim::host_affinity(&self.options.node);
            let blocks = self.store.list::<IpamBlock>().await?.items;
            for block in blocks {
                if pending.is_empty() {
                    break;
                }
                let in_pool = ctx.pools.iter().any(|p| p.spec.cidr.contains(block.spec.cidr.network()));
                let mine = block.spec.affinity.as_deref() == Some(me.as_str());
                if in_pool && !mine && block_ops::free_count(&block.spec, &ctx.reservations) > 0 {
                    skip_broken(self.fill_block(block.spec.cidr, &ctx, requests, &mut pending, &mut done, None).await)?;
                }
            }
        }
        for i in pending {
            let error = if limited {
                IpamError::BlockLimit { node: self.options.node.clone(), limit }
            } else {
                IpamError::PoolsExhausted { pools: ctx.pools.iter().map(|p| p.name.clone()).collect() }
            };
            done.push((i, Err(error)));
        }
        Ok(done)
    }

    /// A block CIDR of `pools` that has no block yet, walking each pool from this node's start
    /// index (so nodes spread out) and wrapping around; `lost`: CIDRs this batch found held.
    async fn find_free_cidr(&self, ctx: &Context, lost: &BTreeSet<IpNetwork>) -> Result<Option<IpNetwork>> {
        // A CIDR is taken if it has a block, or an affinity of any node in any state (a claim in
        // flight, or a block whose record does not decode). Blocks are large and only their
        // names are needed; a name that gives no CIDR (not written by Calico's rule) makes the
        // search read the blocks themselves.
        let (names, affinities) =
            tokio::try_join!(self.store.list_names::<IpamBlock>(), self.store.list::<BlockAffinity>())?;
        let mut taken: BTreeSet<IpNetwork> = match names.iter().map(|n| cidr_of_name(n)).collect::<Option<_>>() {
            Some(cidrs) => cidrs,
            None => self.store.list::<IpamBlock>().await?.items.iter().map(|b| b.spec.cidr).collect(),
        };
        taken.extend(affinities.items.iter().map(|a| a.spec.cidr));
        taken.extend(lost);
        for pool in &ctx.pools {
            let count = block_count(&pool.spec.cidr, pool.spec.block_size);
            let start = start_index(&self.options.node, count);
            // At most `taken` blocks are used and `reserved_blocks` wholly reserved, so a free
            // one is within that many steps plus one.
            let reserved_blocks: u128 = ctx
                .reservations
                .iter()
                .filter(|r| r.prefix() <= pool.spec.block_size && overlaps(r, &pool.spec.cidr))
                .map(|r| 1u128.checked_shl(u32::from(pool.spec.block_size - r.prefix())).unwrap_or(u128::MAX))
                .fold(0u128, u128::saturating_add);
            let steps = count.min((taken.len() as u128).saturating_add(reserved_blocks).saturating_add(1));
            for step in 0..steps {
                let cidr = nth_block(&pool.spec.cidr, pool.spec.block_size, (start + step) % count);
                // A block wholly reserved is never claimed (Calico's `MatchesWholeCIDR`).
                let reserved =
                    ctx.reservations.iter().any(|r| r.contains(cidr.network()) && r.prefix() <= cidr.prefix());
                if !taken.contains(&cidr) && !reserved {
                    return Ok(Some(cidr));
                }
            }
        }
        Ok(None)
    }

    /// Assigns as many pending requests as `cidr`'s block has room for, and writes the block and
    /// the requests' handle records in one transaction, so no crash can leave an address without
    /// its handle record (see `docs/ipam.md`, "Crash safety").
    async fn fill_block(
        &self,
        cidr: IpNetwork,
        ctx: &Context,
        requests: &[Request],
        pending: &mut VecDeque<usize>,
        done: &mut Vec<(usize, Result<Allocation>)>,
        mut cache: Option<&mut BlockCache>,
    ) -> Result<()> {
        let name = cidr_name(&cidr);
        // Own blocks are cached (the `cache`); borrowed ones are not.
        let borrowed = cache.is_none();
        // Handle records found to exist already (a handle's second address): updated, not created.
        let mut existing: BTreeMap<String, Stored<IpamHandle>> = BTreeMap::new();
        // The block as read, kept when only a handle write failed, so the retry need not read it.
        let mut unchanged: Option<Stored<IpamBlock>> = None;
        for _ in 0..RETRIES {
            // The cached copy saves a read when nobody else wrote the block since our last
            // write; if someone did, the write below conflicts and the next round reads it.
            let cached = unchanged.take().or_else(|| cache.as_mut().and_then(|c| c.blocks.remove(&cidr)));
            let original: Stored<IpamBlock> = match cached {
                Some(block) => block,
                None => match self.store.get(&name).await {
                    Err(DatastoreError::NotFound { .. }) => return Ok(()),
                    other => other?,
                },
            };
            let ours = original.spec.affinity.as_deref() == Some(claim::host_affinity(&self.options.node).as_str());
            // Released and re-claimed by another node since we listed it: no longer ours.
            if original.spec.deleted || (!borrowed && !ours) {
                return Ok(());
            }
            let mut block = original.spec.clone();
            let mut assigned: Vec<(usize, Assigned)> = Vec::new();
            // The handles served: one handle record write each, and the block's, per transaction.
            let mut served: BTreeSet<&str> = BTreeSet::new();
            for i in pending.iter() {
                let r = &requests[*i];
                if !served.contains(r.handle.as_str()) && served.len() + 1 >= MAX_TRANSACTION_WRITES {
                    break;
                }
                // The allocating node is always recorded: the speaker finds borrowed addresses by
                // it, and start-up repair the node's own allocations.
                let mut attributes = r.attributes.clone();
                attributes.insert(super::routes::NODE_ATTRIBUTE.to_string(), self.options.node.clone());
                match block_ops::assign(&mut block, &r.handle, &attributes, &ctx.reservations) {
                    Some(a) => {
                        assigned.push((*i, a));
                        served.insert(r.handle.as_str());
                    }
                    None => break,
                }
            }
            if assigned.is_empty() {
                return Ok(());
            }
            // The block first: a backend without atomic transactions writes in this order, and a
            // crash after the block leaves allocations whose handle records repair rebuilds.
            let mut txn = Transaction::new();
            txn.update(&name, &block, original.revision);
            for handle in &served {
                handles::set(&mut txn, handle, existing.get(*handle), &cidr, block_ops::count_of(&block, handle));
            }
            match self.store.commit(txn).await {
                Ok(revisions) => {
                    if let (Some(cache), Some(revision)) = (cache.as_mut(), revisions.first()) {
                        cache.blocks.insert(cidr, Stored { name: name.clone(), revision: *revision, spec: block });
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
                Err(
                    DatastoreError::Conflict { key, .. }
                    | DatastoreError::NotFound { key }
                    | DatastoreError::AlreadyExists { key },
                ) if key.kind == Kind::IpamHandle => {
                    match handles::get(&self.store, &key.name).await? {
                        Some(record) => existing.insert(key.name, record),
                        None => existing.remove(&key.name),
                    };
                    // Nothing was written where transactions are atomic; elsewhere the block
                    // may have been, so it is read again.
                    if self.store.atomic_transactions() {
                        unchanged = Some(original);
                    }
                }
                Err(DatastoreError::Conflict { .. }) | Err(DatastoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::RetriesExhausted { key: format!("IPAMBlock/{name}"), retries: RETRIES })
    }

    /// Releases every address of `handle`; how many were freed. The handle record's deletion
    /// and the blocks' releases are one transaction. Releasing twice frees nothing the second
    /// time.
    pub async fn release_handle(&self, handle: &str) -> Result<usize> {
        // The blocks the record named when last read: where transactions are not atomic, a
        // transaction that failed after deleting the record leaves them to be released alone.
        let mut named: Vec<IpNetwork> = Vec::new();
        for _ in 0..RETRIES {
            let Some(record) = handles::get(&self.store, handle).await? else {
                let mut freed = 0;
                for cidr in named {
                    freed += self.update_block(cidr, |b| block_ops::release_handle(b, handle)).await?;
                }
                return Ok(freed);
            };
            named = record.spec.block.keys().filter_map(|c| c.parse().ok()).collect();
            // The handle record first: a backend without atomic transactions writes in this
            // order, and a crash after it leaves allocations whose record repair rebuilds (the
            // release is undone, and the runtime's retried DEL does it again).
            let mut txn = Transaction::new();
            txn.delete::<IpamHandle>(handle, record.revision);
            let mut freed = 0;
            for cidr in &named {
                let mut block: Stored<IpamBlock> = match self.store.get(&cidr_name(cidr)).await {
                    Err(DatastoreError::NotFound { .. }) => continue,
                    other => other?,
                };
                let n = block_ops::release_handle(&mut block.spec, handle);
                if n > 0 {
                    txn.update(&block.name, &block.spec, block.revision);
                    freed += n;
                }
            }
            match self.store.commit(txn).await {
                Ok(_) => return Ok(freed),
                Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::RetriesExhausted { key: format!("IPAMHandle/{handle}"), retries: RETRIES })
    }

    /// Releases every address of each of `handles`; how many were freed. Handles are released
    /// in batches, each batch's handle records and blocks in one transaction of at most
    /// [`MAX_TRANSACTION_WRITES`] writes (a thousand one-by-one releases are a thousand commits).
    /// A batch that keeps conflicting is released handle by handle.
    pub async fn release_handles(&self, handles: &[String]) -> Result<usize> {
        let mut freed = 0;
        let mut rest = handles;
        while !rest.is_empty() {
            let (n, taken) = self.release_batch(rest).await?;
            freed += n;
            rest = &rest[taken..];
        }
        Ok(freed)
    }

    /// Releases a batch from the front of `handles` in one transaction: (freed, how many
    /// handles the batch took).
    async fn release_batch(&self, handles: &[String]) -> Result<(usize, usize)> {
        for _ in 0..RETRIES {
            let mut blocks: BTreeMap<IpNetwork, (Stored<IpamBlock>, usize)> = BTreeMap::new();
            let mut deleted: Vec<(&str, crate::datastore::Revision)> = Vec::new();
            let mut taken = 0;
            for handle in handles {
                let Some(record) = handles::get(&self.store, handle).await? else {
                    taken += 1;
                    continue;
                };
                let named: Vec<IpNetwork> = record.spec.block.keys().filter_map(|c| c.parse().ok()).collect();
                let new_blocks = named.iter().filter(|c| !blocks.contains_key(c)).count();
                if taken > 0 && deleted.len() + blocks.len() + 1 + new_blocks > MAX_TRANSACTION_WRITES {
                    break;
                }
                for cidr in named {
                    let entry = match blocks.entry(cidr) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            match self.store.get::<IpamBlock>(&cidr_name(&cidr)).await {
                                Err(DatastoreError::NotFound { .. }) => continue,
                                other => e.insert((other?, 0)),
                            }
                        }
                    };
                    entry.1 += block_ops::release_handle(&mut entry.0.spec, handle);
                }
                deleted.push((handle, record.revision));
                taken += 1;
            }
            // The handle records first, as in `release_handle`.
            let mut txn = Transaction::new();
            for (handle, revision) in &deleted {
                txn.delete::<IpamHandle>(handle, *revision);
            }
            let mut freed = 0;
            for (block, n) in blocks.values().filter(|(_, n)| *n > 0) {
                txn.update(&block.name, &block.spec, block.revision);
                freed += n;
            }
            if deleted.is_empty() {
                return Ok((0, taken));
            }
            match self.store.commit(txn).await {
                Ok(_) => return Ok((freed, taken)),
                Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let first = handles.first().map(String::as_str).unwrap_or_default();
        Ok((self.release_handle(first).await?, 1))
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

    /// Releases `ip`. With `sequence`, only if the address still carries that allocation's
    /// sequence number (else `StaleSequence`). `false`: it was free already. The block and the
    /// handle record are written in one transaction.
    pub async fn release_ip(&self, ip: IpAddr, sequence: Option<u64>) -> Result<bool> {
        let cidr = self.block_for(ip).await?;
        let name = cidr_name(&cidr);
        for _ in 0..RETRIES {
            let mut block: Stored<IpamBlock> = match self.store.get(&name).await {
                Err(DatastoreError::NotFound { .. }) => return Ok(false),
                other => other?,
            };
            let handle = match block_ops::release_ip(&mut block.spec, ip, sequence) {
                Released::Freed(handle) => handle,
                Released::AlreadyFree => return Ok(false),
                Released::Stale { current } => {
                    return Err(IpamError::StaleSequence { ip, given: sequence.unwrap_or(0), current });
                }
            };
            // The handle record first, as in `release_handle`.
            let mut txn = Transaction::new();
            if let Some(handle) = handle
                && let Some(record) = handles::get(&self.store, &handle).await?
            {
                handles::set(&mut txn, &handle, Some(&record), &cidr, block_ops::count_of(&block.spec, &handle));
            }
            txn.update(&name, &block.spec, block.revision);
            match self.store.commit(txn).await {
                Ok(_) => return Ok(true),
                Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::RetriesExhausted { key: format!("IPAMBlock/{name}"), retries: RETRIES })
    }

    async fn block_for(&self, ip: IpAddr) -> Result<IpNetwork> {
        let pools = self.store.list::<IpPool>().await?.items;
        pools
            .iter()
            .find(|p| p.spec.cidr.contains(ip))
            .and_then(|p| block_of(ip, p.spec.block_size))
            .ok_or(IpamError::NotInPool { ip })
    }

    /// The node's tunnel address of `fam` from a pool allowing tunnel use, allocated once under
    /// Calico's handle name (`ipip-tunnel-addr-<node>`; `ipv6-tunnel-addr-<node>` for IPv6) and
    /// returned as is on later calls.
    pub async fn tunnel_address(&self, fam: u8) -> Result<Allocation> {
        let device = if fam == 4 { TunnelDevice::Ipip } else { TunnelDevice::Ipv6 };
        self.tunnel_address_for(device, &[]).await
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
