//! The agent's one picture of the IPAM blocks ([`picture`](super::picture)), shared by the
//! tasks that compute from every block: the local prefixes (`routes`), pool usage (`usage`) and
//! the network-policy follower's pods (`policy`). So a block change anywhere in the cluster costs
//! each agent one decoded event from one watch stream, not a listing of every block per consumer
//! (at 1 000 nodes a listing is about 3 MB, and every pod started or deleted anywhere changes a
//! block), nor a watch stream per consumer for etcd to send it on.

use super::picture::{self, Known};
use crate::datastore::Datastore;
use crate::datastore::resources::IpamBlock;
use tokio::sync::watch;

/// The blocks by name, each at the revision last seen.
pub type KnownBlocks = Known<IpamBlock>;

/// Keeps `out` equal to the datastore's blocks until `stop` changes (see [`picture::follow`]).
pub async fn follow(ds: Datastore, out: watch::Sender<Option<KnownBlocks>>, stop: watch::Receiver<bool>) {
    picture::follow(ds, out, stop).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::Kind;
    use crate::datastore::resources::IpPool;
    use crate::testing::{CountingBackend, Listings};
    use std::time::{Duration, Instant};

    /// The datastore, and the count of its block listings; its first `refused_watches` watches
    /// fail.
    async fn counting(dir: &std::path::Path, refused_watches: usize) -> (Datastore, Listings) {
        let (backend, listings) = CountingBackend::sqlite(dir).await;
        (Datastore::new(backend.refuse_watches(refused_watches)), listings)
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
        let (ds, listings) = counting(dir.path(), 0).await;
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
        // The watch's own listing starts the picture.
        assert_eq!(listings.of(Kind::IpamBlock), 0, "block listings in {:?}", started.elapsed());
        stop_tx.send_replace(true);
    }

    fn block(i: usize) -> (String, IpamBlock) {
        let cidr: ipnetwork::IpNetwork = format!("10.244.{i}.0/26").parse().unwrap();
        (crate::datastore::resources::cidr_name(&cidr), IpamBlock::empty(cidr, None))
    }

    /// Waits until the picture holds `n` blocks. The deadline is on the paused clock, which
    /// runs ahead while the runtime waits for the store: an hour of it is a few seconds.
    async fn holds(blocks: &watch::Receiver<Option<KnownBlocks>>, n: usize) {
        let mut blocks = blocks.clone();
        let wait = blocks.wait_for(|k| k.as_ref().is_some_and(|k| k.len() == n));
        tokio::time::timeout(Duration::from_secs(3600), wait).await.expect("in time").expect("open");
    }

    /// Starts the picture on `ds`, which holds one block; once the picture has it, lets `idle`
    /// pass, writes a second block and waits until the picture has that too. How long the
    /// picture took to have the first.
    async fn one_block_then_another(ds: &Datastore, idle: Duration) -> Duration {
        let (name, b) = block(0);
        ds.create(&name, &b).await.unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let (blocks_tx, blocks) = watch::channel(None);
        let started = tokio::time::Instant::now();
        tokio::spawn(follow(ds.clone(), blocks_tx, stop));
        holds(&blocks, 1).await;
        let first = started.elapsed();
        // The paused clock runs ahead whenever the runtime waits.
        tokio::time::sleep(idle).await;
        let (name, b) = block(1);
        ds.create(&name, &b).await.unwrap();
        holds(&blocks, 2).await;
        stop_tx.send_replace(true);
        first
    }

    /// While its watch holds, the picture reads nothing: no listing however long it is idle
    /// (at 1 000 nodes every listing of the blocks is about 3 MB for etcd to serve), and a change
    /// after the idle time still arrives.
    #[tokio::test(start_paused = true)]
    async fn an_idle_picture_lists_nothing_while_its_watch_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, listings) = counting(dir.path(), 0).await;
        one_block_then_another(&ds, Duration::from_secs(600)).await;
        assert_eq!(listings.of(Kind::IpamBlock), 0);
    }

    /// A watch that reports the store unreachable goes on: it retries on its own and its events
    /// keep coming, so the picture neither opens another watch nor lists (on etcd and Kubernetes
    /// that error comes from the watch's own listing failing; a new watch for each would be a
    /// listing per error, without the watch's backoff).
    #[tokio::test(start_paused = true)]
    async fn a_watch_reporting_the_store_unreachable_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, listings) = CountingBackend::sqlite(dir.path()).await;
        let ds = Datastore::new(backend.unreachable_once(1));
        one_block_then_another(&ds, super::picture::RETRY * 3).await;
        assert_eq!((listings.watches(Kind::IpamBlock), listings.of(Kind::IpamBlock)), (1, 0), "watches, listings");
    }

    /// A watch that cannot be opened (the datastore not reachable yet) is tried again until one
    /// is; its listing starts the picture, and its events keep it current.
    #[tokio::test(start_paused = true)]
    async fn a_watch_that_cannot_be_opened_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, _) = counting(dir.path(), 3).await;
        let first = one_block_then_another(&ds, Duration::ZERO).await;
        assert!(first >= super::picture::RETRY * 3, "known after {first:?}");
    }
}
