//! Network-policy metrics, read at scrape time from the policy follower's state:
//! `tortie_policy_invalid{kind, name}` is 1 for each policy the agent skips (it does not decode,
//! convert, or nft refuses it). Its series are bounded by the number of invalid policies.
//! `tortie_policy_full_passes_total` counts the times every policy was compiled.

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
        let (invalid, full_passes) = {
            let state = self.state.borrow();
            (state.invalid.clone(), state.full_passes)
        };
        let family = encoder.encode_descriptor(
            "policy_full_passes",
            "Times the policy inputs were read and compiled whole (a burst of changes is one)",
            None,
            MetricType::Counter,
        )?;
        prometheus_client::metrics::counter::ConstCounter::new(full_passes).encode(family)?;
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

/// `tortie_policy_rule_packets_total` / `_bytes_total{policy, rule, direction}` and
/// `tortie_policy_denied_packets_total{namespace, pod}`, from the counters the agent reads
/// from nftables (`agent::policy_counters`).
#[derive(Debug)]
pub struct PolicyCountersCollector {
    pub counters: watch::Receiver<crate::agent::policy_counters::PolicyCounters>,
}

impl Collector for PolicyCountersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::counter::ConstCounter;
        let counters = self.counters.borrow().clone();
        for (name, help, bytes) in [
            (
                "policy_rule_packets",
                "Packets matched by a network-policy rule, by policy, rule index and direction",
                false,
            ),
            ("policy_rule_bytes", "Bytes matched by a network-policy rule, by policy, rule index and direction", true),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((policy, rule, direction), (packets, octets)) in &counters.rules {
                let rule = rule.to_string();
                let labels = [("policy", policy.as_str()), ("rule", rule.as_str()), ("direction", direction)];
                ConstCounter::new(if bytes { *octets } else { *packets }).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "policy_denied_packets",
            "Packets a local pod's policy chains dropped because no rule allowed them, by pod",
            None,
            MetricType::Counter,
        )?;
        for (endpoint, packets) in &counters.denied {
            let (namespace, pod) = endpoint.split_once('/').unwrap_or(("", endpoint));
            let labels = [("namespace", namespace), ("pod", pod)];
            ConstCounter::new(*packets).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
