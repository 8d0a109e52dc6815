//! A datastore backend around another that counts the full listings it serves, per kind, and
//! can refuse the first watches: for tests of what a follower reads, and of how it copes with a
//! watch it cannot open.

use crate::datastore::{Backend, DatastoreError, Key, Kind, RawList, RawObject, RawWatch, RawWrite, Result, Revision};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Full listings served, by kind (names-only listings and single reads are not counted).
#[derive(Clone, Default)]
pub struct Listings(Arc<Mutex<BTreeMap<Kind, usize>>>);

impl Listings {
    pub fn of(&self, kind: Kind) -> usize {
        self.0.lock().expect("not poisoned").get(&kind).copied().unwrap_or(0)
    }
}

pub struct CountingBackend<B> {
    inner: B,
    listings: Listings,
    refused_watches: AtomicUsize,
}

impl<B: Backend> CountingBackend<B> {
    /// Wraps `inner`; its first `refused_watches` watches fail as `Unavailable`.
    pub fn new(inner: B, refused_watches: usize) -> (CountingBackend<B>, Listings) {
        let listings = Listings::default();
        (CountingBackend { inner, listings: listings.clone(), refused_watches: refused_watches.into() }, listings)
    }
}

#[async_trait::async_trait]
impl<B: Backend> Backend for CountingBackend<B> {
    async fn get(&self, key: &Key) -> Result<RawObject> {
        self.inner.get(key).await
    }
    async fn list(&self, kind: Kind) -> Result<RawList> {
        *self.listings.0.lock().expect("not poisoned").entry(kind).or_default() += 1;
        self.inner.list(kind).await
    }
    async fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<RawList> {
        self.inner.list_prefix(kind, prefix).await
    }
    async fn list_names(&self, kind: Kind) -> Result<Vec<String>> {
        self.inner.list_names(kind).await
    }
    async fn create(&self, key: &Key, value: Vec<u8>) -> Result<Revision> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &Key, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &Key, expected: Revision) -> Result<()> {
        self.inner.delete(key, expected).await
    }
    async fn transact(&self, writes: Vec<RawWrite>) -> Result<Vec<Revision>> {
        self.inner.transact(writes).await
    }
    fn atomic_transactions(&self) -> bool {
        self.inner.atomic_transactions()
    }
    fn check(&self) -> Result<()> {
        self.inner.check()
    }
    async fn watch(&self, kind: Kind, from: Option<Revision>) -> Result<RawWatch> {
        if self.refused_watches.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(DatastoreError::unavailable("refused by the test"));
        }
        self.inner.watch(kind, from).await
    }
}
