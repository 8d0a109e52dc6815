//! `ipam check`: a consistency report over pools, blocks, affinities and handles, as calicoctl's
//! `ipam check` (leaks, addresses in use but not allocated, handles without addresses, broken
//! blocks). It reads each kind with one list, so run it when allocation is quiet: a write between
//! two lists can show as a transient mismatch.

use super::block_math::{ip_at, overlaps, size};
use super::block_ops;
use super::liveness::{Holder, Liveness};
use crate::datastore::resources::PackedMap;
use crate::datastore::resources::{AffinityState, BlockAffinity, IpPool, IpReservation, IpamBlock, IpamHandle};
use crate::datastore::{Datastore, Result};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What the caller knows that the datastore does not.
#[derive(Clone, Debug, Default)]
pub struct CheckInput {
    /// Handles whose workload still exists (from the CNI side and the agent); `None`: unknown,
    /// so no leak detection.
    pub alive_handles: Option<BTreeSet<String>>,
    /// The Nodes and Pods that exist: leaks are the addresses no live workload holds
    /// ([`Liveness::holder`]), and affinities of missing nodes are reported. Wins over
    /// `alive_handles`.
    pub liveness: Option<Liveness>,
    /// Addresses seen in use on nodes (workload interfaces), to find ones not allocated.
    pub in_use: Vec<IpAddr>,
    /// Reserved ranges besides the datastore's IPReservations, counted in the usage table.
    pub reservations: Vec<IpNetwork>,
}

/// Address counts of one pool or block (calicoctl's `ipam show` columns).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub name: String,
    pub cidr: String,
    pub total: u128,
    pub in_use: u128,
    pub reserved: u128,
    pub free: u128,
    /// `host:<node>` for a block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
}

/// An address whose record disagrees with the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddressProblem {
    pub ip: IpAddr,
    pub handle: Option<String>,
    pub block: String,
    /// The allocation's sequence number when read: `ipam release --from-report` frees the
    /// address only while it still has it (so never once it is handed out again).
    #[serde(default, rename = "sequenceNumber", skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    /// The workload the attributes name (`namespace/pod`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Why a leaked address's workload is taken as gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A block with addresses used by nodes other than its affine one (Calico's borrowed IPs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BorrowedBlock {
    pub block: String,
    /// The node the block is affine to; `None` for a block affine to no host.
    pub affine_node: Option<String>,
    /// The node using its addresses.
    pub used_by: String,
    pub addresses: u32,
}

/// A handle record whose counts differ from the addresses blocks hold for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandleProblem {
    pub handle: String,
    pub recorded: u32,
    pub actual: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckReport {
    pub pools: Vec<Usage>,
    pub blocks: Vec<Usage>,
    pub allocations: usize,
    /// Records that do not decode or break their rules, each naming its key.
    pub invalid_records: Vec<String>,
    /// Affinities still pending or pendingDeletion: a claim or release left half-made.
    pub unfinished_affinities: Vec<String>,
    /// Confirmed affinities whose block is missing or affine to someone else.
    pub affinities_without_block: Vec<String>,
    /// Blocks affine to a host that holds no confirmed affinity for them.
    pub blocks_without_affinity: Vec<String>,
    pub overlapping_blocks: Vec<(String, String)>,
    pub blocks_outside_pools: Vec<String>,
    /// Allocated addresses with no handle, or whose handle has no record.
    pub allocations_without_handle: Vec<AddressProblem>,
    /// Handle records that claim more (or fewer) addresses than the blocks hold.
    pub handle_mismatches: Vec<HandleProblem>,
    /// Allocated to a handle that is no longer alive.
    pub leaked: Vec<AddressProblem>,
    /// Seen in use but not allocated (missing: a workload with no allocation).
    pub in_use_not_allocated: Vec<IpAddr>,
    /// Confirmed affinities for a node with no Node record (only with [`CheckInput::liveness`]).
    pub affinities_of_missing_nodes: Vec<String>,
    /// Blocks whose addresses other nodes use: information, not a problem.
    pub borrowed: Vec<BorrowedBlock>,
}

impl CheckReport {
    /// Number of problems found (usage figures are not problems).
    pub fn problems(&self) -> usize {
        self.invalid_records.len()
            + self.unfinished_affinities.len()
            + self.affinities_without_block.len()
            + self.blocks_without_affinity.len()
            + self.overlapping_blocks.len()
            + self.blocks_outside_pools.len()
            + self.allocations_without_handle.len()
            + self.handle_mismatches.len()
            + self.leaked.len()
            + self.in_use_not_allocated.len()
            + self.affinities_of_missing_nodes.len()
    }

    pub fn is_clean(&self) -> bool {
        self.problems() == 0
    }
}

/// Reads everything and reports.
pub async fn check(store: &Datastore, input: &CheckInput) -> Result<CheckReport> {
    let pools = store.list::<IpPool>().await?;
    let blocks = store.list::<IpamBlock>().await?;
    let affinities = store.list::<BlockAffinity>().await?;
    let handles = store.list::<IpamHandle>().await?;
    let reservations = store.list::<IpReservation>().await?;
    let mut report = CheckReport::default();
    for invalid in pools.invalid.iter().chain(&blocks.invalid).chain(&affinities.invalid).chain(&handles.invalid) {
        report.invalid_records.push(invalid.to_string());
    }
    report.invalid_records.extend(reservations.invalid.iter().map(|i| i.to_string()));
    let reserved_cidrs: Vec<IpNetwork> = input
        .reservations
        .iter()
        .copied()
        .chain(reservations.items.iter().flat_map(|r| r.spec.reserved_cidrs.iter().copied()))
        .collect();

    let confirmed: BTreeMap<IpNetwork, &str> = affinities
        .items
        .iter()
        .filter(|a| a.spec.state == AffinityState::Confirmed)
        .map(|a| (a.spec.cidr, a.spec.node.as_str()))
        .collect();
    for a in &affinities.items {
        if a.spec.state != AffinityState::Confirmed {
            report.unfinished_affinities.push(format!("{} ({:?})", a.name, a.spec.state));
            continue;
        }
        if let Some(l) = &input.liveness
            && !l.nodes.contains(&a.spec.node)
            && a.spec.node != super::handles::LOAD_BALANCER_NODE
        {
            report.affinities_of_missing_nodes.push(format!("{} (node {})", a.name, a.spec.node));
        }
        let owner = format!("host:{}", a.spec.node);
        if !blocks.items.iter().any(|b| b.spec.cidr == a.spec.cidr && b.spec.affinity.as_deref() == Some(&owner)) {
            report.affinities_without_block.push(a.name.clone());
        }
    }

    let handle_records: BTreeMap<&str, &IpamHandle> =
        handles.items.iter().map(|h| (h.name.as_str(), &h.spec)).collect();
    let mut actual: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut allocated: BTreeSet<IpAddr> = BTreeSet::new();
    for (i, b) in blocks.items.iter().enumerate() {
        let cidr = b.spec.cidr;
        let affine_node = b.spec.affinity.as_deref().and_then(|a| a.strip_prefix("host:"));
        let mut borrowers: BTreeMap<&str, u32> = BTreeMap::new();
        if let Some(host) = b.spec.affinity.as_deref().and_then(|a| a.strip_prefix("host:"))
            && confirmed.get(&cidr) != Some(&host)
        {
            report.blocks_without_affinity.push(b.name.clone());
        }
        if !pools.items.iter().any(|p| p.spec.cidr.contains(cidr.network())) {
            report.blocks_outside_pools.push(b.name.clone());
        }
        for other in &blocks.items[i + 1..] {
            if overlaps(&cidr, &other.spec.cidr) {
                report.overlapping_blocks.push((b.name.clone(), other.name.clone()));
            }
        }
        for ordinal in 0..b.spec.allocations.len() {
            if b.spec.allocations[ordinal].is_none() {
                continue;
            }
            let ip = ip_at(&cidr, ordinal);
            allocated.insert(ip);
            report.allocations += 1;
            let handle = block_ops::handle_at(&b.spec, ordinal).map(str::to_string);
            let attributes = b.spec.allocations[ordinal]
                .and_then(|index| b.spec.attributes.get(index as usize))
                .map(|a| &a.secondary);
            if let Some(user) = attributes.and_then(|a| a.get("node"))
                && affine_node != Some(user)
            {
                *borrowers.entry(user).or_insert(0) += 1;
            }
            let mut problem = AddressProblem {
                ip,
                handle: handle.clone(),
                block: b.name.clone(),
                sequence_number: b.spec.sequence_number_for_allocation.get(&ordinal.to_string()),
                workload: None,
                why: None,
            };
            match &handle {
                Some(h) if handle_records.contains_key(h.as_str()) => {
                    *actual.entry((h.clone(), cidr.to_string())).or_insert(0) += 1;
                    if let Some(l) = &input.liveness {
                        let none = PackedMap::new();
                        let holder = l.holder(Some(h), attributes.unwrap_or(&none));
                        match holder {
                            Holder::Gone { workload, why } => {
                                (problem.workload, problem.why) = (Some(workload), Some(why));
                                report.leaked.push(problem);
                            }
                            Holder::Unowned => {
                                problem.why = Some("no workload named in its attributes".into());
                                report.leaked.push(problem);
                            }
                            Holder::Live { .. } | Holder::Infrastructure => {}
                        }
                    } else if let Some(alive) = &input.alive_handles
                        && !alive.contains(h)
                        && !super::gc::is_tunnel_handle(h)
                        && !super::gc::is_load_balancer_handle(h)
                    {
                        report.leaked.push(problem);
                    }
                }
                _ => report.allocations_without_handle.push(problem),
            }
        }
        report.borrowed.extend(borrowers.into_iter().map(|(user, addresses)| BorrowedBlock {
            block: cidr.to_string(),
            affine_node: affine_node.map(str::to_string),
            used_by: user.to_string(),
            addresses,
        }));
        let reserved = (0..b.spec.allocations.len())
            .filter(|o| b.spec.allocations[*o].is_none() && reserved_cidrs.iter().any(|r| r.contains(ip_at(&cidr, *o))))
            .count() as u128;
        let in_use = block_ops::in_use(&b.spec) as u128;
        let total = b.spec.allocations.len() as u128;
        report.blocks.push(Usage {
            name: b.name.clone(),
            cidr: cidr.to_string(),
            total,
            in_use,
            reserved,
            free: total - in_use - reserved,
            affinity: b.spec.affinity.clone(),
        });
    }
    for h in &handles.items {
        for (cidr, recorded) in &h.spec.block {
            let found = actual.get(&(h.name.clone(), cidr.clone())).copied().unwrap_or(0);
            if found != *recorded {
                report.handle_mismatches.push(HandleProblem {
                    handle: h.name.clone(),
                    recorded: *recorded,
                    actual: found,
                });
            }
        }
        if h.spec.block.is_empty() {
            report.handle_mismatches.push(HandleProblem { handle: h.name.clone(), recorded: 0, actual: 0 });
        }
    }
    report.in_use_not_allocated = input.in_use.iter().filter(|ip| !allocated.contains(ip)).copied().collect();

    for p in &pools.items {
        let inside = report
            .blocks
            .iter()
            .filter(|b| b.cidr.parse::<IpNetwork>().is_ok_and(|c| p.spec.cidr.contains(c.network())));
        let (in_use, reserved_in_blocks) = inside.fold((0, 0), |(u, r), b| (u + b.in_use, r + b.reserved));
        let total = size(&p.spec.cidr);
        // Reservations outside any block still count against the pool.
        let reserved = reserved_cidrs
            .iter()
            .filter(|r| p.spec.cidr.contains(r.network()))
            .map(size)
            .sum::<u128>()
            .max(reserved_in_blocks);
        report.pools.push(Usage {
            name: p.name.clone(),
            cidr: p.spec.cidr.to_string(),
            total,
            in_use,
            reserved,
            free: total.saturating_sub(in_use + reserved),
            affinity: None,
        });
    }
    Ok(report)
}
