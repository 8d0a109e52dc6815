//! Dataplane metrics, read at scrape time from the route programmer's
//! counters and state and from the userspace tunnel's counters.

use crate::dataplane::{ProgrammerState, ProgrammerStats, RouteKind};
use crate::fallback_ipip::TunnelCounters;
use crate::fallback_ipip::packet::DropReason;
use crate::remote_routes::PathKind;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::watch;

/// Everything the dataplane exposes.
#[derive(Debug)]
pub struct DataplaneCollector {
    pub table: u32,
    pub stats: Arc<ProgrammerStats>,
    pub state: watch::Receiver<ProgrammerState>,
    /// Present when the userspace tunnel runs.
    pub tunnel: Option<Arc<TunnelCounters>>,
}

const KINDS: [RouteKind; 6] = [
    RouteKind::LocalWorkload,
    RouteKind::RemoteDirect,
    RouteKind::RemoteIpip,
    RouteKind::RemoteVxlan,
    RouteKind::Blackhole,
    RouteKind::PeerReachability,
];

impl Collector for DataplaneCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.state.borrow().clone();
        let table = self.table.to_string();
        let mut routes = encoder.encode_descriptor(
            "dataplane_routes",
            "Kernel routes tortie owns, by kind",
            None,
            MetricType::Gauge,
        )?;
        for kind in KINDS {
            let n = state.routes_by_kind.get(&kind).copied().unwrap_or(0) as i64;
            ConstGauge::new(n).encode(routes.encode_family(&[("table", table.as_str()), ("kind", kind.as_str())])?)?;
        }
        ConstGauge::new(i64::from(state.synced)).encode(encoder.encode_descriptor(
            "dataplane_synced",
            "1 once the first full route reconcile has completed",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(self.stats.shadowed.load(Relaxed) as i64).encode(encoder.encode_descriptor(
            "dataplane_routes_shadowed",
            "Wanted routes not installed because a route of another owner holds the destination",
            None,
            MetricType::Gauge,
        )?)?;
        let mut ops = encoder.encode_descriptor(
            "dataplane_route_operations",
            "Route changes written to the kernel",
            None,
            MetricType::Counter,
        )?;
        for (op, c) in [("add", &self.stats.adds), ("replace", &self.stats.replaces), ("delete", &self.stats.deletes)] {
            ConstCounter::new(c.load(Relaxed)).encode(ops.encode_family(&[("op", op)])?)?;
        }
        let mut failures = encoder.encode_descriptor(
            "dataplane_failures",
            "Route changes the kernel refused, and failed dumps, by operation",
            None,
            MetricType::Counter,
        )?;
        for (op, c) in crate::dataplane::programmer::FAILURE_OPS.iter().zip(&self.stats.failures_by_op) {
            ConstCounter::new(c.load(Relaxed)).encode(failures.encode_family(&[("op", *op)])?)?;
        }
        self.stats.resync_duration.encode(encoder.encode_descriptor(
            "dataplane_resync_duration_seconds",
            "Time each full dump-diff-replace reconcile took",
            None,
            MetricType::Histogram,
        )?)?;
        for (name, help, c) in [
            (
                "dataplane_drift_repairs",
                "Routes of ours changed or deleted outside tortie and restored",
                &self.stats.drift_repairs,
            ),
            ("dataplane_resyncs", "Full dump-diff-replace reconciles", &self.stats.resyncs),
        ] {
            ConstCounter::new(c.load(Relaxed)).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        if let Some(t) = &self.tunnel {
            let mut p = encoder.encode_descriptor(
                "ipip_packets",
                "Packets through the userspace IP-in-IP tunnel",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(t.encap_packets.load(Relaxed)).encode(p.encode_family(&[("direction", "encap")])?)?;
            ConstCounter::new(t.decap_packets.load(Relaxed)).encode(p.encode_family(&[("direction", "decap")])?)?;
            let mut b = encoder.encode_descriptor(
                "ipip",
                "Bytes through the userspace IP-in-IP tunnel",
                Some(&prometheus_client::registry::Unit::Bytes),
                MetricType::Counter,
            )?;
            ConstCounter::new(t.encap_bytes.load(Relaxed)).encode(b.encode_family(&[("direction", "encap")])?)?;
            ConstCounter::new(t.decap_bytes.load(Relaxed)).encode(b.encode_family(&[("direction", "decap")])?)?;
            let mut d = encoder.encode_descriptor(
                "ipip_dropped_packets",
                "Packets the userspace tunnel dropped, by reason",
                None,
                MetricType::Counter,
            )?;
            for r in DropReason::ALL {
                ConstCounter::new(t.dropped(r)).encode(d.encode_family(&[("reason", r.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// The path chosen toward each node whose blocks can be encapsulated (the
/// remote-routes stage's `paths`: blocks of pools that encapsulate, on a
/// node with that encapsulation): one series per node and path — direct and
/// each encapsulation of this node — 1 for the current one, so a cut direct
/// path shows up as `path="ipip"` or `path="vxlan"`. Other nodes have no
/// series: they are reached directly.
#[derive(Debug)]
pub struct PathCollector {
    pub paths: watch::Receiver<std::collections::HashMap<std::net::IpAddr, PathKind>>,
    /// The encapsulations of this node.
    pub encapsulations: Vec<PathKind>,
    /// The IP-in-IP implementation in use, if any.
    pub ipip: Option<PathKind>,
}

impl Collector for PathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut paths: Vec<_> = self.paths.borrow().iter().map(|(n, p)| (*n, *p)).collect();
        paths.sort_by_key(|(n, _)| *n);
        let mut family = encoder.encode_descriptor(
            "dataplane_node_path",
            "The path to each remote node's blocks: direct on the underlay or through an encapsulation",
            None,
            MetricType::Gauge,
        )?;
        let labels: Vec<PathKind> =
            std::iter::once(PathKind::Direct).chain(self.encapsulations.iter().copied()).collect();
        for (node, path) in paths {
            let node = node.to_string();
            for p in &labels {
                let l = [("node", node.as_str()), ("path", p.metric_label())];
                ConstGauge::new(i64::from(path == *p)).encode(family.encode_family(&l)?)?;
            }
        }
        let mut mode = encoder.encode_descriptor(
            "ipip_mode",
            "How this node encapsulates IP-in-IP (1 for the mode in use)",
            None,
            MetricType::Gauge,
        )?;
        let current = crate::fallback_ipip::implementation_label(self.ipip);
        for m in ["ipip-kernel", "ipip-userspace", "none"] {
            ConstGauge::new(i64::from(current == m)).encode(mode.encode_family(&[("mode", m)])?)?;
        }
        Ok(())
    }
}
