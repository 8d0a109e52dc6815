//! The best-path change queue: what the consumer has not taken yet, at most
//! one entry per prefix (the latest), so a slow consumer costs memory
//! bounded by the number of prefixes and never blocks the RIB.

use std::collections::VecDeque;

use ipnetwork::IpNetwork;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::BestPathChange;

#[derive(Debug, Default)]
pub struct Pending {
    order: VecDeque<IpNetwork>,
    latest: FxHashMap<IpNetwork, BestPathChange>,
}

impl Pending {
    /// Queues a change, replacing a pending one for the same prefix.
    pub fn push(&mut self, change: BestPathChange) {
        let prefix = change.prefix;
        if self.latest.insert(prefix, change).is_none() {
            self.order.push_back(prefix);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The oldest pending change.
    pub fn pop(&mut self) -> Option<BestPathChange> {
        let prefix = self.order.pop_front()?;
        self.latest.remove(&prefix)
    }

    /// Sends what the channel takes without waiting.
    pub fn drain_into(&mut self, tx: &mpsc::Sender<BestPathChange>) {
        while let Some(change) = self.pop() {
            match tx.try_send(change) {
                Ok(()) => {}
                Err(TrySendError::Full(change)) => {
                    // Back to the front: it is still the oldest.
                    self.order.push_front(change.prefix);
                    self.latest.insert(change.prefix, change);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.order.clear();
                    self.latest.clear();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(prefix: &str, hop: &str) -> BestPathChange {
        BestPathChange { prefix: prefix.parse().unwrap(), next_hops: vec![hop.parse().unwrap()], peers: vec![] }
    }

    #[test]
    fn a_full_channel_coalesces_per_prefix_keeping_the_latest() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut pending = Pending::default();
        pending.push(change("10.0.0.0/24", "192.0.2.1"));
        pending.push(change("10.0.1.0/24", "192.0.2.1"));
        pending.drain_into(&tx);
        assert_eq!(pending.len(), 1, "one went into the channel");
        for i in 2..100 {
            pending.push(change("10.0.1.0/24", &format!("192.0.2.{i}")));
        }
        assert_eq!(pending.len(), 1);
        assert_eq!(rx.try_recv().unwrap(), change("10.0.0.0/24", "192.0.2.1"));
        pending.drain_into(&tx);
        assert_eq!(rx.try_recv().unwrap(), change("10.0.1.0/24", "192.0.2.99"));
        assert!(pending.is_empty());
    }
}
