//! Metrics of tortie's nftables table, read at scrape time from its owner's counters and state.

use crate::dataplane::nftables::{NftState, NftStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::watch;

#[derive(Debug)]
pub struct NftCollector {
    pub stats: Arc<NftStats>,
    pub state: watch::Receiver<NftState>,
}

impl Collector for NftCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = [
            ("nftables_applies", "Transactions written to tortie's nftables table", &self.stats.applies),
            (
                "nftables_element_writes",
                "Of those, set-element changes written over nfnetlink",
                &self.stats.element_writes,
            ),
            (
                "nftables_partial_writes",
                "Of those, changes of some chains and sets written by nft without rewriting the table",
                &self.stats.partial_writes,
            ),
            (
                "nftables_apply_errors",
                "nft runs on tortie's table that failed (writing or reading back)",
                &self.stats.apply_errors,
            ),
            (
                "nftables_repairs",
                "Rewrites of tortie's nftables table after someone else changed it",
                &self.stats.repairs,
            ),
        ];
        for (name, help, value) in counters {
            ConstCounter::new(value.load(Relaxed)).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        ConstGauge::new(i64::from(self.state.borrow().synced)).encode(encoder.encode_descriptor(
            "nftables_synced",
            "1 while tortie's nftables table in the kernel is the desired one",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}
