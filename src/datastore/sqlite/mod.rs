//! The sqlite backend: the embedded default, one database file shared safely by several tortie
//! processes on one host.
//!
//! - WAL journal, `BEGIN IMMEDIATE` for every write (so a compare-and-swap reads and writes under
//!   the one write lock), and a busy timeout so contending processes wait instead of failing.
//! - Every write bumps one store-wide revision and appends a row to a `changes` log; watches read
//!   that log, so they see writes from every process. Old changes are trimmed (keeping
//!   `changes_retained`); a watch whose place was trimmed resyncs.
//! - One change feed per backend (`feed`) reads the newest revision of each kind every poll
//!   interval (at once after this process's writes); a watch reads the log only when its kind
//!   changed.

mod feed;
mod ops;
mod watch;
mod worker;

use super::backend::{Backend, RawList, RawObject, RawWatch, RawWrite, check_transaction};
use super::{DatastoreError, Key, Kind, Result, Revision};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch as latest;
use worker::Worker;

/// Tuning for [`SqliteBackend`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a write waits for another process's write lock before `Unavailable`.
    pub busy_timeout: Duration,
    /// How many changes the log keeps for watches that fall behind.
    pub changes_retained: u64,
    /// How often the change feed looks for writes made by other processes (writes from this
    /// process wake it at once); the watches read the log when it saw a change of their kind.
    pub poll_interval: Duration,
    /// `synchronous=FULL`: fsync at every commit, so an acknowledged write survives power loss.
    /// `false` uses `NORMAL` (survives a crash of the process, not of the machine).
    pub durable: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(10),
            changes_retained: 10_000,
            poll_interval: Duration::from_millis(25),
            durable: true,
        }
    }
}

/// A datastore in one sqlite file.
pub struct SqliteBackend {
    worker: Worker,
    path: PathBuf,
    options: SqliteOptions,
    /// The latest revision this process wrote, to wake the change feed.
    written: latest::Receiver<u64>,
    /// The change feed, started by the first watch.
    feed: std::sync::Mutex<Option<latest::Receiver<feed::Newest>>>,
    /// Device and inode of the file opened: a file deleted or replaced under this process must
    /// not be written to (nobody would read it again).
    identity: (u64, u64),
}

/// The device and inode of `path`, or why it has none.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteBackend> {
        let path = path.as_ref().to_path_buf();
        let (written_tx, written) = latest::channel(0);
        let worker = Worker::start(path.clone(), options.clone(), written_tx).await?;
        let identity = file_identity(&path)
            .map_err(|e| DatastoreError::unavailable(format!("cannot read the sqlite file {}: {e}", path.display())))?;
        Ok(SqliteBackend { worker, path, options, written, feed: std::sync::Mutex::new(None), identity })
    }

    /// Drops the change log up to and including `upto` (as automatic trimming does); watches
    /// that had not read past it resync.
    pub async fn compact(&self, upto: Revision) -> Result<()> {
        self.worker.call(move |conn| ops::compact(conn, upto.0)).await
    }

    /// The newest revision in the store.
    pub async fn current_revision(&self) -> Result<Revision> {
        self.worker.call(|conn| ops::current_revision(conn).map(Revision)).await
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn get(&self, key: &Key) -> Result<RawObject> {
        let key = key.clone();
        self.worker.call(move |conn| ops::get(conn, &key)).await
    }

    async fn list(&self, kind: Kind) -> Result<RawList> {
        self.worker.call(move |conn| ops::list(conn, kind, "")).await
    }

    async fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<RawList> {
        let prefix = prefix.to_string();
        self.worker.call(move |conn| ops::list(conn, kind, &prefix)).await
    }

    async fn list_names(&self, kind: Kind) -> Result<Vec<String>> {
        self.worker.call(move |conn| ops::list_names(conn, kind)).await
    }

    async fn create(&self, key: &Key, value: Vec<u8>) -> Result<Revision> {
        self.check()?;
        let key = key.clone();
        let retained = self.options.changes_retained;
        self.worker.write(move |conn| ops::write(conn, &key, ops::Write::Create(value), retained)).await
    }

    async fn update(&self, key: &Key, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        self.check()?;
        let key = key.clone();
        let retained = self.options.changes_retained;
        self.worker.write(move |conn| ops::write(conn, &key, ops::Write::Update(value, expected.0), retained)).await
    }

    async fn delete(&self, key: &Key, expected: Revision) -> Result<()> {
        self.check()?;
        let key = key.clone();
        let retained = self.options.changes_retained;
        self.worker.write(move |conn| ops::write(conn, &key, ops::Write::Delete(expected.0), retained)).await?;
        Ok(())
    }

    async fn transact(&self, writes: Vec<RawWrite>) -> Result<Vec<Revision>> {
        self.check()?;
        check_transaction(&writes)?;
        let retained = self.options.changes_retained;
        let writes: Vec<(Key, ops::Write)> = writes
            .into_iter()
            .map(|w| match w {
                RawWrite::Create { key, value } => (key, ops::Write::Create(value)),
                RawWrite::Update { key, value, expected } => (key, ops::Write::Update(value, expected.0)),
                RawWrite::Delete { key, expected } => (key, ops::Write::Delete(expected.0)),
            })
            .collect();
        let revisions = self.worker.write_many(move |conn| ops::transact(conn, &writes, retained)).await?;
        Ok(revisions.into_iter().map(Revision).collect())
    }

    fn atomic_transactions(&self) -> bool {
        true
    }

    /// The file at the path still the one opened (checked before every write).
    fn check(&self) -> Result<()> {
        let path = self.path.display();
        match file_identity(&self.path) {
            Ok(now) if now == self.identity => Ok(()),
            Ok(_) => Err(DatastoreError::unavailable(format!(
                "the sqlite file {path} was replaced by another file since this process opened it; restart to use the new one"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DatastoreError::unavailable(format!(
                "the sqlite file {path} was deleted since this process opened it; restart to create a new one"
            ))),
            Err(e) => Err(DatastoreError::unavailable(format!("cannot read the sqlite file {path}: {e}"))),
        }
    }

    async fn watch(&self, kind: Kind, from: Option<Revision>) -> Result<RawWatch> {
        let feed = {
            let mut feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
            match feed.as_ref() {
                Some(rx) => rx.clone(),
                None => {
                    let conn = worker::connect(&self.path, &self.options)?;
                    feed.insert(feed::spawn(conn, self.options.poll_interval, self.written.clone())).clone()
                }
            }
        };
        let conn = worker::connect(&self.path, &self.options)?;
        Ok(watch::spawn(conn, kind, from, self.options.poll_interval, feed))
    }
}
