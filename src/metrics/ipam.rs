//! IPAM metrics: pool usage (read from the datastore by the agent every few
//! seconds and published as a sample), and the allocation path's duration
//! histogram and error counters, recorded where allocations happen.
//!
//! Pool usage is cluster-wide (every node sees the same datastore), as
//! Calico kube-controllers exports it; dashboards take `max` over nodes.

use crate::datastore::resources::{IpPool, IpamBlock};
use crate::ipam::block_math::size;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Usage of one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// The pool's CIDR (bounded: pools are few).
    pub pool: String,
    pub size: u128,
    pub in_use: u64,
    pub blocks: u64,
    /// How many blocks the pool holds (its size over the block size).
    pub block_slots: u128,
    /// Addresses allocated by a node other than the block's owner.
    pub borrowed: u64,
}

/// Pool usage from the pools and blocks stored.
pub fn usage(pools: &[IpPool], blocks: &[&IpamBlock]) -> Vec<PoolUsage> {
    pools
        .iter()
        .map(|pool| {
            let block_bits = u32::from(pool.block_size.saturating_sub(pool.cidr.prefix()));
            let mut u = PoolUsage {
                pool: pool.cidr.to_string(),
                size: size(&pool.cidr),
                block_slots: 1u128.checked_shl(block_bits).unwrap_or(u128::MAX),
                ..Default::default()
            };
            for b in
                blocks.iter().filter(|b| pool.cidr.contains(b.cidr.network()) && pool.cidr.prefix() <= b.cidr.prefix())
            {
                u.blocks += 1;
                let owner = b.affinity.as_deref().and_then(|a| a.strip_prefix("host:"));
                for index in b.allocations.iter().flatten() {
                    u.in_use += 1;
                    let by = b.attributes.get(*index as usize).and_then(|a| a.secondary.get("node"));
                    if by.is_some_and(|n| Some(n) != owner) {
                        u.borrowed += 1;
                    }
                }
            }
            u
        })
        .collect()
}

#[derive(Debug)]
pub struct IpamCollector {
    pub pools: watch::Receiver<Vec<PoolUsage>>,
}

impl Collector for IpamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools = self.pools.borrow().clone();
        type Pick = fn(&PoolUsage) -> i64;
        let gauges: [(&str, &str, Pick); 4] = [
            ("ipam_pool_size", "Addresses in the pool", |u| i64::try_from(u.size).unwrap_or(i64::MAX)),
            ("ipam_allocations_in_use", "Addresses of the pool allocated now", |u| u.in_use as i64),
            ("ipam_blocks", "Blocks carved from the pool", |u| u.blocks as i64),
            (
                "ipam_allocations_borrowed",
                "Allocated addresses of the pool held by a node other than the block's owner",
                |u| u.borrowed as i64,
            ),
        ];
        for (name, help, pick) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for u in &pools {
                ConstGauge::new(pick(u)).encode(family.encode_family(&[("pool", u.pool.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// The reasons allocations fail, as the `reason` label.
pub const ALLOCATION_ERROR_REASONS: [&str; 5] =
    ["no_pool", "pools_exhausted", "block_limit", "datastore", "invalid_request"];

/// Why an allocation failed, as a bounded label.
pub type ReasonLabels = Vec<(&'static str, &'static str)>;

/// Recorded by the allocation path (the agent's workload API).
#[derive(Debug, Clone)]
pub struct IpamMetrics {
    pub allocation_duration: Histogram,
    pub allocation_errors: Family<ReasonLabels, Counter>,
    pub gc_reclaimed: Counter,
}

impl IpamMetrics {
    /// Creates the metrics and registers them (and the pool collector) in `registry`.
    pub fn register(registry: &mut Registry, pools: watch::Receiver<Vec<PoolUsage>>) -> Self {
        let m = IpamMetrics {
            // 100 µs … ~3 s
            allocation_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            allocation_errors: Family::default(),
            gc_reclaimed: Counter::default(),
        };
        registry.register(
            "ipam_allocation_duration_seconds",
            "Time to allocate a workload's addresses",
            m.allocation_duration.clone(),
        );
        registry.register("ipam_allocation_errors", "Failed allocations by reason", m.allocation_errors.clone());
        registry.register("ipam_gc_reclamations", "Addresses released by garbage collection", m.gc_reclaimed.clone());
        registry.register_collector(Box::new(IpamCollector { pools }));
        // Every reason's series exists from the start (at 0), so alerts and rates see it.
        for reason in ALLOCATION_ERROR_REASONS {
            let _ = m.allocation_errors.get_or_create(&vec![("reason", reason)]);
        }
        m
    }

    /// Counts one failed allocation; `reason` is one of a fixed set.
    pub fn allocation_failed(&self, reason: &'static str) {
        self.allocation_errors.get_or_create(&vec![("reason", reason)]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::AllocationAttribute;

    fn block(cidr: &str, owner: &str, by: &[&str]) -> IpamBlock {
        let cidr: ipnetwork::IpNetwork = cidr.parse().unwrap();
        let n = size(&cidr) as usize;
        let mut allocations = vec![None; n];
        let mut attributes = Vec::new();
        for (i, node) in by.iter().enumerate() {
            allocations[i] = Some(i as u32);
            attributes.push(AllocationAttribute {
                handle_id: Some(format!("h{i}")),
                secondary: crate::datastore::resources::PackedMap::from([("node".to_string(), node.to_string())]),
                ..AllocationAttribute::default()
            });
        }
        IpamBlock {
            cidr,
            affinity: Some(format!("host:{owner}")),
            affinity_claim_time: None,
            allocations,
            unallocated: (by.len() as u32..n as u32).collect(),
            attributes,
            sequence_number: 0,
            sequence_number_for_allocation: Default::default(),
            ..serde_json::from_str(r#"{"cidr":"10.0.0.0/32","allocations":[],"unallocated":[]}"#).unwrap()
        }
    }

    #[test]
    fn usage_counts_blocks_addresses_and_borrowed_ones_per_pool() {
        let pools = [IpPool::new("10.244.0.0/16".parse().unwrap()), IpPool::new("10.96.0.0/16".parse().unwrap())];
        let blocks = [block("10.244.1.0/26", "a", &["a", "a", "b"]), block("10.244.2.0/26", "b", &[])];
        let u = usage(&pools, &blocks.iter().collect::<Vec<_>>());
        assert_eq!(
            u[0],
            PoolUsage {
                pool: "10.244.0.0/16".into(),
                size: 65536,
                in_use: 3,
                blocks: 2,
                block_slots: 1024,
                borrowed: 1
            }
        );
        assert_eq!(
            u[1],
            PoolUsage { pool: "10.96.0.0/16".into(), size: 65536, block_slots: 1024, ..Default::default() }
        );
    }
}
