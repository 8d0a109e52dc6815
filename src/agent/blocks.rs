//! The agent's one picture of the IPAM blocks, shared by the tasks that compute from every
//! block: the local prefixes (`routes`) and pool usage (`usage`). One watch keeps it current;
//! it is listed only at start (the watch's own first listing), at every resync and after the
//! watch fails. So a block change
//! anywhere in the cluster costs each agent one decoded event, not a listing of every block per
//! consumer: at 1 000 nodes a listing is about 3 MB, and every pod started or deleted anywhere
//! changes a block.
//!
//! The policy follower keeps its own block watch: it works on each event's block, not on the
//! whole picture.

use crate::datastore::resources::IpamBlock;
use crate::datastore::{Datastore, Stored, WatchEvent};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// How often the picture is listed again although the watch reported nothing wrong, so that a
/// change a watch lost without noticing is not kept for long.
pub const RESYNC: Duration = Duration::from_secs(30);

/// The blocks by name, each at the revision last seen.
#[derive(Clone, Debug, Default)]
pub struct KnownBlocks {
    blocks: BTreeMap<String, Stored<IpamBlock>>,
}

impl KnownBlocks {
    pub fn from_listing(items: Vec<Stored<IpamBlock>>) -> KnownBlocks {
        KnownBlocks { blocks: items.into_iter().map(|b| (b.name.clone(), b)).collect() }
    }

    /// Applies a watch event; one older than what is known (a listing read after it was
    /// queued) is skipped. Whether the picture changed.
    pub fn apply(&mut self, event: WatchEvent<IpamBlock>) -> bool {
        let newer = |known: Option<&Stored<IpamBlock>>, revision| known.is_none_or(|k| k.revision < revision);
        match event {
            WatchEvent::Added(b) | WatchEvent::Modified(b) => {
                let apply = newer(self.blocks.get(&b.name), b.revision);
                if apply {
                    self.blocks.insert(b.name.clone(), b);
                }
                apply
            }
            WatchEvent::Deleted { name, revision } => {
                let known = self.blocks.contains_key(&name);
                let apply = known && newer(self.blocks.get(&name), revision);
                if apply {
                    self.blocks.remove(&name);
                }
                apply
            }
            WatchEvent::Resync(listing) => {
                *self = KnownBlocks::from_listing(listing.items);
                true
            }
            WatchEvent::Bookmark(_) => false,
        }
    }

    pub fn specs(&self) -> impl Iterator<Item = &IpamBlock> + Clone {
        self.blocks.values().map(|b| &b.spec)
    }
}

/// Keeps `out` equal to the datastore's blocks until `stop` changes: `None` until the first
/// listing, and again after a watch error until a listing is read (consumers keep what they
/// computed last). The first listing is the watch's own (its `Resync`), so a start reads the
/// blocks once.
pub async fn follow(ds: Datastore, out: watch::Sender<Option<KnownBlocks>>, mut stop: watch::Receiver<bool>) {
    let mut blocks_watch = ds.watch::<IpamBlock>(None).await.ok();
    // The first resync one period after the start (an interval's first tick is at once).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
    // The picture is not known: events are not applied until a listing is.
    let mut unknown = true;
    // The open watch's first event is its listing: nothing else to read meanwhile.
    let mut awaiting_watch_listing = blocks_watch.is_some();
    loop {
        if unknown && !awaiting_watch_listing {
            unknown = !relist(&ds, &out).await;
        }
        tokio::select! {
            _ = stop.changed() => return,
            // A failed resync keeps the picture, still kept current from the watch; one that
            // succeeds also ends a wait for the picture (the loop would list again).
            _ = tick.tick() => {
                if relist(&ds, &out).await {
                    unknown = false;
                    awaiting_watch_listing = false;
                }
            }
            ev = super::routes::next_event(&mut blocks_watch) => match ev {
                // The watch ended: from now on only the resyncs list the blocks.
                None => {
                    blocks_watch = None;
                    awaiting_watch_listing = false;
                }
                Some(Ok(WatchEvent::Resync(listing))) => {
                    out.send_replace(Some(KnownBlocks::from_listing(listing.items)));
                    unknown = false;
                    awaiting_watch_listing = false;
                }
                Some(Ok(event)) if !unknown => {
                    out.send_if_modified(|known| known.as_mut().is_some_and(|known| known.apply(event)));
                }
                Some(Ok(_)) => {}
                // An undecodable block or an unreadable store: read the whole state again.
                Some(Err(_)) => {
                    unknown = true;
                    awaiting_watch_listing = false;
                    out.send_replace(None);
                }
            }
        }
    }
}

/// Replaces the picture with a listing; whether it could be read.
async fn relist(ds: &Datastore, out: &watch::Sender<Option<KnownBlocks>>) -> bool {
    match ds.list::<IpamBlock>().await {
        Ok(listing) => {
            out.send_replace(Some(KnownBlocks::from_listing(listing.items)));
            true
        }
        Err(e) => {
            tracing::warn!(subsys = "ipam", error = %e, "cannot list the IPAM blocks; keeping what was computed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::IpPool;
    use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
    use crate::datastore::{Backend, RawList, RawObject, RawWatch, RawWrite};
    use crate::datastore::{Key, Kind, Result, Revision};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// A backend that counts the block listings it serves.
    struct Counting {
        inner: SqliteBackend,
        block_listings: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Backend for Counting {
        async fn get(&self, key: &Key) -> Result<RawObject> {
            self.inner.get(key).await
        }
        async fn list(&self, kind: Kind) -> Result<RawList> {
            if kind == Kind::IpamBlock {
                self.block_listings.fetch_add(1, Ordering::SeqCst);
            }
            self.inner.list(kind).await
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
        async fn watch(&self, kind: Kind, from: Option<Revision>) -> Result<RawWatch> {
            self.inner.watch(kind, from).await
        }
    }

    async fn until<T>(rx: &watch::Receiver<T>, deadline: Instant, done: impl FnMut(&T) -> bool) {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, rx.clone().wait_for(done)).await.expect("in time").expect("open");
    }

    /// Blocks changing one after another reach the local prefixes' picture and the pool usage
    /// without a listing: the picture starts from the watch's own, and no consumer lists the
    /// blocks on an event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn block_changes_reach_every_consumer_without_a_listing() {
        let dir = tempfile::tempdir().unwrap();
        let block_listings = Arc::new(AtomicUsize::new(0));
        let inner = SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap();
        let ds = Datastore::new(Counting { inner, block_listings: block_listings.clone() });
        ds.create("pool", &IpPool::new("10.244.0.0/16".parse().unwrap())).await.unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (blocks_tx, blocks) = watch::channel(None);
        let (usage_tx, usage) = watch::channel(Vec::new());
        let (pools_tx, pools) = watch::channel(Vec::new());
        tokio::spawn(follow(ds.clone(), blocks_tx, stop.clone()));
        tokio::spawn(super::super::routes::follow_pools(ds.clone(), pools_tx, stop.clone()));
        tokio::spawn(super::super::usage::follow(blocks.clone(), pools, usage_tx, stop));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        until(&blocks, deadline, |k| k.is_some()).await;
        const BLOCKS: usize = 5;
        for i in 0..BLOCKS {
            let cidr: ipnetwork::IpNetwork = format!("10.244.{i}.0/26").parse().unwrap();
            let block = IpamBlock::empty(cidr, Some(crate::ipam::claim::host_affinity("n1")));
            ds.create(&crate::datastore::resources::cidr_name(&cidr), &block).await.unwrap();
        }
        until(&blocks, deadline, |k| k.as_ref().is_some_and(|k| k.specs().count() == BLOCKS)).await;
        until(&usage, deadline, |u| u.first().is_some_and(|u| u.blocks == BLOCKS as u64)).await;
        // The watch's own listing starts the picture; a resync may list once per period.
        let resyncs = (started.elapsed().as_secs() / RESYNC.as_secs()) as usize;
        let listed = block_listings.load(Ordering::SeqCst);
        assert!(listed <= resyncs, "{listed} block listings in {:?}", started.elapsed());
        stop_tx.send_replace(true);
    }
}
