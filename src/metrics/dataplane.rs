//! Dataplane metrics, read at scrape time from the route programmer's
//! counters and state and from the userspace tunnel's counters.

use crate::dataplane::{ProgrammerState, ProgrammerStats, RouteKind};
use crate::fallback_ipip::TunnelCounters;
use crate::fallback_ipip::packet::DropReason;
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

const KINDS: [RouteKind; 4] =
    [RouteKind::LocalWorkload, RouteKind::RemoteDirect, RouteKind::RemoteTunnel, RouteKind::Blackhole];

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
        let mut ops = encoder.encode_descriptor(
            "dataplane_route_operations",
            "Route changes written to the kernel",
            None,
            MetricType::Counter,
        )?;
        for (op, c) in [("add", &self.stats.adds), ("replace", &self.stats.replaces), ("delete", &self.stats.deletes)] {
            ConstCounter::new(c.load(Relaxed)).encode(ops.encode_family(&[("op", op)])?)?;
        }
        for (name, help, c) in [
            ("dataplane_failures", "Route changes the kernel refused, and failed dumps", &self.stats.failures),
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
