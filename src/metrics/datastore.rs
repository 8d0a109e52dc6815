//! `tortie_datastore_listings_total{kind}` and `tortie_datastore_listed_records_total{kind}`:
//! the whole listings the agent made (its watches' resyncs included) and the records they held,
//! from the datastore handle's [`Reads`]. Every kind has a series from the start. What one agent
//! lists, every agent lists: a kind whose listings grow while nothing changes is a datastore
//! load that grows with the cluster.

use crate::datastore::Kind;
use crate::datastore::reads::Reads;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use std::sync::Arc;

/// A family: its name, help, and which of a kind's (listings, records) it counts.
type Family = (&'static str, &'static str, fn((u64, u64)) -> u64);

#[derive(Debug)]
pub struct DatastoreCollector {
    pub reads: Arc<Reads>,
}

impl Collector for DatastoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts: Vec<(Kind, (u64, u64))> = Kind::ALL.iter().map(|k| (*k, self.reads.of(*k))).collect();
        let families: [Family; 2] = [
            (
                "datastore_listings",
                "Whole listings of a kind this agent read from the datastore (a list, or a watch's resync)",
                |(listings, _)| listings,
            ),
            ("datastore_listed_records", "Records those listings held", |(_, records)| records),
        ];
        for (name, help, pick) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (kind, read) in &counts {
                ConstCounter::new(pick(*read)).encode(family.encode_family(&[("kind", kind.as_str())])?)?;
            }
        }
        Ok(())
    }
}
