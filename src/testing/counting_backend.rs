//! A datastore backend around another that counts the full listings it serves and the watches
//! it opens, per kind, and can refuse the first watches or have them report the store
//! unreachable once: for tests of what a follower reads, and of how it copes with a watch it
//! cannot open or that cannot read.

use crate::datastore::{
    Backend, DatastoreError, Key, Kind, RawList, RawObject, RawWatch, RawWrite, Result, Revision,
    WATCH_CHANNEL_CAPACITY,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Full listings served and watches opened, by kind (names-only listings and single reads are
/// not counted).
#[derive(Clone, Default)]
pub struct Listings {
    listed: Arc<Mutex<BTreeMap<Kind, usize>>>,
    watched: Arc<Mutex<BTreeMap<Kind, usize>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Listings {
    pub fn of(&self, kind: Kind) -> usize {
        self.listed.lock().expect("not poisoned").get(&kind).copied().unwrap_or(0)
    }

    pub fn watches(&self, kind: Kind) -> usize {
        self.watched.lock().expect("not poisoned").get(&kind).copied().unwrap_or(0)
    }

    /// From now on every listing fails as `Unavailable` (`false`: they are served again); a
    /// failed listing is counted too.
    pub fn fail_listings(&self, fail: bool) {
        self.failing.store(fail, Ordering::SeqCst);
    }
}

pub struct CountingBackend<B> {
    inner: B,
    listings: Listings,
    refused_watches: AtomicUsize,
    unreachable_once: AtomicUsize,
}

impl<B: Backend> CountingBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> (CountingBackend<B>, Listings) {
        let listings = Listings::default();
        let backend = CountingBackend {
            inner,
            listings: listings.clone(),
            refused_watches: 0.into(),
            unreachable_once: 0.into(),
        };
        (backend, listings)
    }

    /// The next `n` watches fail as `Unavailable`.
    pub fn refuse_watches(self, n: usize) -> Self {
        self.refused_watches.store(n, Ordering::SeqCst);
        self
    }

    /// The next `n` watches opened report the store unreachable (`Err(Unavailable)`) once,
    /// after their first event, and go on.
    pub fn unreachable_once(self, n: usize) -> Self {
        self.unreachable_once.store(n, Ordering::SeqCst);
        self
    }
}

impl CountingBackend<crate::datastore::sqlite::SqliteBackend> {
    /// Around a new sqlite store at `dir/ds.db`.
    pub async fn sqlite(dir: &std::path::Path) -> (Self, Listings) {
        use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
        let inner = SqliteBackend::open(dir.join("ds.db"), SqliteOptions::default()).await.expect("a sqlite store");
        CountingBackend::new(inner)
    }
}

#[async_trait::async_trait]
impl<B: Backend> Backend for CountingBackend<B> {
    async fn get(&self, key: &Key) -> Result<RawObject> {
        self.inner.get(key).await
    }
    async fn list(&self, kind: Kind) -> Result<RawList> {
        *self.listings.listed.lock().expect("not poisoned").entry(kind).or_default() += 1;
        if self.listings.failing.load(Ordering::SeqCst) {
            return Err(DatastoreError::unavailable("listings fail, says the test"));
        }
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
        let take = |n: &AtomicUsize| n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if take(&self.refused_watches) {
            return Err(DatastoreError::unavailable("refused by the test"));
        }
        let mut inner = self.inner.watch(kind, from).await?;
        *self.listings.watched.lock().expect("not poisoned").entry(kind).or_default() += 1;
        if !take(&self.unreachable_once) {
            return Ok(inner);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_CHANNEL_CAPACITY);
        tokio::spawn(async move {
            let mut first = true;
            while let Some(event) = inner.recv().await {
                if tx.send(event).await.is_err() {
                    return;
                }
                if std::mem::take(&mut first)
                    && tx.send(Err(DatastoreError::unavailable("unreachable, says the test"))).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
