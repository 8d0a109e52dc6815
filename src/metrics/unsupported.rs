//! `tortie_unsupported_fields{kind, field}`: how many stored objects carry a field that has no
//! effect in tortie (`datastore::unsupported`), read at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct UnsupportedFieldsCollector;

impl Collector for UnsupportedFieldsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counts: BTreeMap<(&'static str, String), i64> = BTreeMap::new();
        for f in crate::datastore::unsupported::snapshot() {
            *counts.entry((f.kind.as_str(), f.field)).or_default() += 1;
        }
        let mut family = encoder.encode_descriptor(
            "unsupported_fields",
            "Stored objects carrying a field that has no effect in tortie, by kind and field",
            None,
            MetricType::Gauge,
        )?;
        for ((kind, field), n) in counts {
            let labels = [("kind", kind), ("field", field.as_str())];
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
