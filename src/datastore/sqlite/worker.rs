//! The thread that owns this process's write connection. Requests arrive over a bounded channel
//! as closures and answer through a oneshot, so sqlite's blocking calls never run on the async
//! runtime's threads.

use super::{SqliteOptions, ops};
use crate::datastore::{DatastoreError, Result};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot, watch};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Requests queued for the connection thread before callers wait to enqueue.
const QUEUE: usize = 64;

pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
    written: watch::Sender<u64>,
}

/// Opens a connection with the pragmas every connection needs.
pub(super) fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let conn = Connection::open(path).map_err(DatastoreError::unavailable)?;
    conn.busy_timeout(options.busy_timeout).map_err(DatastoreError::unavailable)?;
    let synchronous = if options.durable { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF;"))
        .map_err(DatastoreError::unavailable)?;
    Ok(conn)
}

impl Worker {
    pub(super) async fn start(path: PathBuf, options: SqliteOptions, written: watch::Sender<u64>) -> Result<Worker> {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("tortie-sqlite".into())
            .spawn(move || {
                let opened = connect(&path, &options).and_then(|mut c| ops::init_schema(&mut c).map(|()| c));
                let mut conn = match opened {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Ends when every sender (the backend) is dropped.
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
            })
            .map_err(DatastoreError::unavailable)?;
        ready_rx.await.map_err(|_| DatastoreError::unavailable("the sqlite thread died while opening"))??;
        Ok(Worker { jobs, written })
    }

    /// Runs `f` on the connection thread.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).await.map_err(|_| DatastoreError::unavailable("the sqlite thread has stopped"))?;
        rx.await.map_err(|_| DatastoreError::unavailable("the sqlite thread dropped a request"))?
    }

    /// Runs a write returning its revision, then wakes the change feed.
    pub(super) async fn write(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<u64> + Send + 'static,
    ) -> Result<crate::datastore::Revision> {
        let revision = self.call(f).await?;
        self.wake(revision);
        Ok(crate::datastore::Revision(revision))
    }

    /// Runs a transaction returning each write's revision, then wakes the change feed.
    pub(super) async fn write_many(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<Vec<u64>> + Send + 'static,
    ) -> Result<Vec<u64>> {
        let revisions = self.call(f).await?;
        if let Some(last) = revisions.iter().max() {
            self.wake(*last);
        }
        Ok(revisions)
    }

    fn wake(&self, revision: u64) {
        self.written.send_if_modified(|latest| {
            let newer = revision > *latest;
            if newer {
                *latest = revision;
            }
            newer
        });
    }
}
