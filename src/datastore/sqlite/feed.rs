//! The change feed: one task per backend that reads, every poll interval and at once after a
//! write of this process, the newest revision of each kind in the change log, and publishes
//! them. A watch reads the log only when its kind has a change past its place, so an idle watch
//! costs nothing and a change wakes only the watches of its kind — not every watch of every
//! process polling on its own.

use super::ops;
use crate::datastore::{DatastoreError, Kind, Result};
use rusqlite::Connection;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

/// The newest revision of each kind the feed has read.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Newest {
    kinds: HashMap<&'static str, u64>,
    /// Every kind counts as changed up to here: changes the feed could not read (trimmed from
    /// the log before it got to them) may have been of any kind.
    floor: u64,
}

impl Newest {
    /// Whether `kind` has a change after `place`.
    pub(super) fn changed_after(&self, kind: Kind, place: u64) -> bool {
        self.kinds.get(kind.plural()).copied().unwrap_or(0).max(self.floor) > place
    }

    /// Takes in what one read of the log found past `seen`.
    fn update(&mut self, seen: u64, read: &ops::NewestRead) -> bool {
        let mut changed = false;
        if read.compacted > seen && read.revision > self.floor {
            self.floor = read.revision;
            changed = true;
        }
        for (plural, revision) in &read.kinds {
            let Some(kind) = Kind::from_plural(plural) else { continue };
            let known = self.kinds.entry(kind.plural()).or_insert(0);
            if *revision > *known {
                *known = *revision;
                changed = true;
            }
        }
        changed
    }
}

/// Starts the feed on `conn`; it ends once every receiver (the backend's and its watches') is
/// gone. `written` carries the revisions this process writes.
pub(super) fn spawn(conn: Connection, poll: Duration, mut written: watch::Receiver<u64>) -> watch::Receiver<Newest> {
    let (tx, rx) = watch::channel(Newest::default());
    tokio::spawn(async move {
        let mut conn = Some(conn);
        let mut seen = 0u64;
        let mut writes_open = true;
        loop {
            let Some(c) = conn.take() else { return };
            written.borrow_and_update();
            let joined = tokio::task::spawn_blocking(move || {
                let mut c = c;
                let read = ops::newest_after(&mut c, seen);
                (c, read)
            })
            .await;
            let read: Result<Option<ops::NewestRead>> = match joined {
                Ok((c, read)) => {
                    conn = Some(c);
                    read
                }
                Err(e) => Err(DatastoreError::unavailable(format!("sqlite change feed read failed: {e}"))),
            };
            match read {
                Ok(Some(read)) => {
                    tx.send_if_modified(|newest| newest.update(seen, &read));
                    seen = read.revision;
                }
                Ok(None) => {}
                // A locked or unreadable database: the watches hear of it when they read; the
                // feed tries again at the next poll.
                Err(e) => tracing::debug!(subsys = "datastore", error = %e, "sqlite change feed: cannot read the log"),
            }
            tokio::select! {
                _ = tx.closed() => return,
                changed = written.changed(), if writes_open => writes_open = changed.is_ok(),
                _ = tokio::time::sleep(poll) => {}
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::{IpPool, Node};
    use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
    use crate::datastore::{Datastore, WatchEvent};

    #[tokio::test]
    async fn a_watch_hears_another_backends_writes_of_its_kind_through_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        let open = || SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default());
        // Two backends on one file: two processes, each with its own change feed.
        let (reader, writer) = (Datastore::new(open().await.unwrap()), Datastore::new(open().await.unwrap()));
        let mut nodes = reader.watch::<Node>(None).await.unwrap();
        let mut pools = reader.watch::<IpPool>(None).await.unwrap();
        let deadline = Duration::from_secs(10);
        assert!(matches!(nodes.next().await, Some(Ok(WatchEvent::Resync(_)))));
        assert!(matches!(pools.next().await, Some(Ok(WatchEvent::Resync(_)))));
        writer.create("p1", &IpPool::new("10.80.0.0/16".parse().unwrap())).await.unwrap();
        writer.create("n1", &Node::default()).await.unwrap();
        let heard = tokio::time::timeout(deadline, nodes.next()).await.expect("node watch woken");
        assert!(matches!(&heard, Some(Ok(WatchEvent::Added(n))) if n.name == "n1"), "{heard:?}");
        let heard = tokio::time::timeout(deadline, pools.next()).await.expect("pool watch woken");
        assert!(matches!(&heard, Some(Ok(WatchEvent::Added(p))) if p.name == "p1"), "{heard:?}");
        // This process's own writes too.
        reader.create("n2", &Node::default()).await.unwrap();
        let heard = tokio::time::timeout(deadline, nodes.next()).await.expect("node watch woken");
        assert!(matches!(&heard, Some(Ok(WatchEvent::Added(n))) if n.name == "n2"), "{heard:?}");
    }

    fn read(revision: u64, compacted: u64, kinds: &[(&str, u64)]) -> ops::NewestRead {
        ops::NewestRead { revision, compacted, kinds: kinds.iter().map(|(k, r)| (k.to_string(), *r)).collect() }
    }

    #[test]
    fn a_change_wakes_only_its_kind_and_unread_trimmed_changes_wake_every_kind() {
        let mut newest = Newest::default();
        assert!(newest.update(0, &read(7, 0, &[("ipamblocks", 5), ("nodes", 7)])));
        assert!(newest.changed_after(Kind::IpamBlock, 4));
        assert!(!newest.changed_after(Kind::IpamBlock, 5));
        assert!(newest.changed_after(Kind::Node, 5));
        assert!(!newest.changed_after(Kind::IpPool, 0));
        assert!(!newest.update(7, &read(7, 0, &[])), "nothing new");
        // The log was trimmed past what the feed had read: any kind may have changed.
        assert!(newest.update(7, &read(20, 10, &[("nodes", 20)])));
        assert!(newest.changed_after(Kind::IpPool, 19));
        assert!(!newest.changed_after(Kind::IpPool, 20));
        assert!(!newest.changed_after(Kind::IpamBlock, 20));
    }
}
