//! Network-policy metrics, read at scrape time from the policy follower's state:
//! `tortie_policy_invalid{kind, name}` is 1 for each policy the agent skips (it does not decode,
//! convert, or nft refuses it). Its series are bounded by the number of invalid policies.

use crate::agent::policy::PolicyState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::watch;

#[derive(Debug)]
pub struct PolicyCollector {
    pub state: watch::Receiver<PolicyState>,
}

impl Collector for PolicyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let invalid = self.state.borrow().invalid.clone();
        let mut family = encoder.encode_descriptor(
            "policy_invalid",
            "1 for each network policy the agent skips (it does not decode or convert, or nftables refuses it)",
            None,
            MetricType::Gauge,
        )?;
        for p in &invalid {
            let labels = [("kind", p.kind.as_str()), ("name", p.name.as_str())];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
