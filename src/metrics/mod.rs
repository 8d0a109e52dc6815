//! Prometheus metrics and health endpoints.
//!
//! An explicit registry (never the global default) whose metrics carry the
//! `tortie_` prefix, plus the standard `process_*` metrics; collectors read
//! the owning tasks' counters and snapshots at scrape time, so every
//! series exists from the start and nothing is copied on the hot path.
//! Served on port 9478 (no Calico, Cilium, kube-router or exporter default)
//! with `/livez` and `/readyz`.

pub mod bgp;
pub mod dataplane;
pub mod datastore;
pub mod ipam;
pub mod nftables;
pub mod policy;
pub mod process;
pub mod readiness;
pub mod server;
pub mod unsupported;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The registry: `process_*` at the top, tortie's own under `tortie_`.
pub struct Metrics {
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(process::ProcessCollector));
        registry.sub_registry_with_prefix("tortie").register_collector(Box::new(BuildInfo));
        registry
            .sub_registry_with_prefix("tortie")
            .register_collector(Box::new(unsupported::UnsupportedFieldsCollector));
        Metrics { registry }
    }

    /// Where components register their collectors: names get the `tortie_` prefix.
    pub fn tortie(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("tortie")
    }
}

/// `tortie_build_info{version, rustc_version} 1`: a gauge, as exporters
/// publish it, because promtool and Prometheus' text parser predate the
/// OpenMetrics `info` type.
#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family =
            encoder.encode_descriptor("build_info", "tortie build information", None, MetricType::Gauge)?;
        let labels = [("version", crate::VERSION), ("rustc_version", env!("BUILD_INFO_RUSTC_VERSION"))];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)
    }
}
