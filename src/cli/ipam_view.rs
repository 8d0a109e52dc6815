//! The tables of `tortie ipam show|check|release` (calicoctl's layouts), pure so that golden
//! tests pin every format.

use super::table;
use crate::ipam::admin::{AddressView, ConfigurationView, ReleaseAnswer};
use crate::ipam::check::{BorrowedBlock, CheckReport, Usage};
use crate::ipam::liveness::Holder;
use serde::Serialize;

/// What `ipam show` prints as documents: the pools, and the blocks with `--show-blocks`.
#[derive(Debug, Serialize)]
pub struct UsageView {
    pub pools: Vec<Usage>,
    pub blocks: Vec<Usage>,
}

impl UsageView {
    pub fn of(report: &CheckReport, show_blocks: bool) -> UsageView {
        UsageView { pools: report.pools.clone(), blocks: if show_blocks { report.blocks.clone() } else { Vec::new() } }
    }
}

fn percent(part: u128, total: u128) -> String {
    let pct = (part * 100).checked_div(total).unwrap_or(0);
    format!("{part} ({pct}%)")
}

fn usage_row(grouping: &str, u: &Usage, wide: bool) -> Vec<String> {
    let mut row = vec![
        grouping.to_string(),
        u.cidr.clone(),
        u.total.to_string(),
        percent(u.in_use, u.total),
        percent(u.reserved, u.total),
        percent(u.free, u.total),
    ];
    if wide {
        row.push(u.affinity.clone().unwrap_or_default());
    }
    row
}

/// Pools, each followed by its blocks; wide adds the blocks' affinity.
pub fn usage(v: &UsageView, wide: bool) -> String {
    let mut rows = Vec::new();
    for pool in &v.pools {
        rows.push(usage_row("IP Pool", pool, wide));
        let net: Option<ipnetwork::IpNetwork> = pool.cidr.parse().ok();
        for block in v.blocks.iter().filter(|b| {
            let inner: Option<ipnetwork::IpNetwork> = b.cidr.parse().ok();
            matches!((net, inner), (Some(n), Some(i)) if n.contains(i.network()))
        }) {
            rows.push(usage_row("Block", block, wide));
        }
    }
    let mut headers = vec!["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS RESERVED", "IPS FREE"];
    if wide {
        headers.push("AFFINITY");
    }
    table::render(&headers, &rows)
}

/// `--show-borrowed`: each block with the node it is affine to and a node using its addresses.
pub fn borrowed(blocks: &[BorrowedBlock]) -> String {
    if blocks.is_empty() {
        return "No borrowed addresses.\n".to_string();
    }
    let rows: Vec<Vec<String>> = blocks
        .iter()
        .map(|b| {
            vec![
                b.block.clone(),
                b.affine_node.clone().unwrap_or_else(|| "-".into()),
                b.used_by.clone(),
                b.addresses.to_string(),
            ]
        })
        .collect();
    table::render(&["BLOCK", "BLOCK OWNER", "BORROWING NODE", "ADDRESSES"], &rows)
}

/// `--show-configuration`.
pub fn configuration(c: &ConfigurationView) -> String {
    let max = if c.max_blocks_per_host == 0 {
        format!("0 (default: {})", c.effective_max_blocks_per_host)
    } else {
        c.max_blocks_per_host.to_string()
    };
    let rows = vec![
        vec!["StrictAffinity".to_string(), c.strict_affinity.to_string()],
        vec!["AutoAllocateBlocks".to_string(), c.auto_allocate_blocks.to_string()],
        vec!["MaxBlocksPerHost".to_string(), max],
    ];
    format!("{}From: {}\n", table::render(&["PROPERTY", "VALUE"], &rows), c.source)
}

fn holder_text(h: &Holder) -> String {
    match h {
        Holder::Live { workload } => format!("live workload {workload}"),
        Holder::Gone { workload, why } => format!("workload {workload}, gone: {why}"),
        Holder::Infrastructure => "a node's tunnel or a load balancer".into(),
        Holder::Unowned => "no workload".into(),
    }
}

/// `--ip`.
pub fn address(a: &AddressView) -> String {
    if !a.allocated {
        return format!("IP {} is not assigned (pool {}, block {})\n", a.ip, a.pool, a.block);
    }
    let mut out = format!("IP {} is in use (pool {}, block {})\n", a.ip, a.pool, a.block);
    out.push_str(&format!("Handle ID: {}\n", a.handle.as_deref().unwrap_or("<none>")));
    for (k, v) in a.attributes.iter().flatten() {
        out.push_str(&format!("  {k}: {v}\n"));
    }
    if let Some(h) = &a.holder {
        out.push_str(&format!("Held by: {}\n", holder_text(h)));
    }
    out.push_str(&format!("Addresses in block: {} of {}\n", a.block_in_use, a.block_size));
    out
}

/// The check report; wide also lists the borrowed blocks.
pub fn check(report: &CheckReport, wide: bool) -> String {
    let mut out = String::from("Checking IPAM for inconsistencies...\n");
    out.push_str(&format!(
        "Found {} IP pools, {} blocks, {} allocations.\n",
        report.pools.len(),
        report.blocks.len(),
        report.allocations
    ));
    let mut rows = Vec::new();
    let mut add = |kind: &str, what: String| rows.push(vec![kind.to_string(), what]);
    report.invalid_records.iter().for_each(|r| add("invalid record", r.clone()));
    report.unfinished_affinities.iter().for_each(|r| add("unfinished affinity", r.clone()));
    report.affinities_without_block.iter().for_each(|r| add("affinity without block", r.clone()));
    report.affinities_of_missing_nodes.iter().for_each(|r| add("affinity of a missing node", r.clone()));
    report.blocks_without_affinity.iter().for_each(|r| add("block without affinity", r.clone()));
    report.overlapping_blocks.iter().for_each(|(a, b)| add("overlapping blocks", format!("{a} {b}")));
    report.blocks_outside_pools.iter().for_each(|r| add("block outside pools", r.clone()));
    for p in &report.allocations_without_handle {
        add("allocation without handle", format!("{} in {} ({})", p.ip, p.block, p.handle.as_deref().unwrap_or("-")));
    }
    for h in &report.handle_mismatches {
        add("handle mismatch", format!("{}: records {}, blocks hold {}", h.handle, h.recorded, h.actual));
    }
    for p in &report.leaked {
        let owner = p.workload.as_deref().map(|w| format!(", {w}")).unwrap_or_default();
        let why = p.why.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
        add("leaked", format!("{} (handle {}{owner}){why}", p.ip, p.handle.as_deref().unwrap_or("-")));
    }
    report.in_use_not_allocated.iter().for_each(|ip| add("missing: in use, not allocated", ip.to_string()));
    if rows.is_empty() {
        out.push_str("No problems found.\n");
    } else {
        out.push_str(&table::render(&["PROBLEM", "DETAIL"], &rows));
        out.push_str(&format!("Found {} problem(s).\n", report.problems()));
    }
    if wide && !report.borrowed.is_empty() {
        out.push_str("Borrowed addresses (not a problem):\n");
        out.push_str(&borrowed(&report.borrowed));
    }
    out
}

/// What a release did, or would do.
pub fn release(a: &ReleaseAnswer) -> String {
    let verb = if a.dry_run { "Would release" } else { "Released" };
    let mut out = String::new();
    for r in &a.released {
        out.push_str(&format!(
            "{verb} {} (handle {}, {})\n",
            r.ip,
            r.handle.as_deref().unwrap_or("-"),
            holder_text(&r.holder)
        ));
    }
    for s in &a.skipped {
        out.push_str(&format!("Skipped {}: {}\n", s.ip, s.why));
    }
    out.push_str(&format!("{verb} {} address(es)\n", a.released.len()));
    out
}

#[cfg(test)]
#[path = "ipam_view_tests.rs"]
mod tests;
