//! How much the datastore is read, per kind: whole listings (a `list`, or a watch's resync) and
//! the records they held. An agent's readers multiply by the number of agents, so these are the
//! reads that decide a cluster's datastore load (`tortie_datastore_listings_total`,
//! `tortie_datastore_listed_records_total`). Single reads and names-only listings are not
//! counted.

use super::Kind;
use std::sync::atomic::{AtomicU64, Ordering};

/// Listings and records per kind, indexed as [`Kind::ALL`].
#[derive(Debug)]
pub struct Reads {
    listings: [AtomicU64; Kind::ALL.len()],
    records: [AtomicU64; Kind::ALL.len()],
}

impl Default for Reads {
    fn default() -> Self {
        Reads {
            listings: std::array::from_fn(|_| AtomicU64::new(0)),
            records: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Reads {
    /// One listing of `kind` that held `records` records.
    pub fn note(&self, kind: Kind, records: usize) {
        let i = index(kind);
        self.listings[i].fetch_add(1, Ordering::Relaxed);
        self.records[i].fetch_add(records as u64, Ordering::Relaxed);
    }

    /// Per kind: listings, records.
    pub fn of(&self, kind: Kind) -> (u64, u64) {
        let i = index(kind);
        (self.listings[i].load(Ordering::Relaxed), self.records[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_counts_on_its_own() {
        let reads = Reads::default();
        reads.note(Kind::IpamBlock, 3);
        reads.note(Kind::IpamBlock, 2);
        reads.note(Kind::Node, 7);
        assert_eq!(reads.of(Kind::IpamBlock), (2, 5));
        assert_eq!(reads.of(Kind::Node), (1, 7));
        assert_eq!(reads.of(Kind::IpPool), (0, 0));
        assert!(Kind::ALL.iter().all(|k| Kind::ALL[index(*k)] == *k), "every kind has its own index");
    }
}
