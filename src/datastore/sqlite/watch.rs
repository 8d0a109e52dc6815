//! A sqlite watch: a task that reads the change log from its place, on its own connection, when
//! the change feed saw a change of its kind past that place, and resyncs when the log was
//! trimmed past that place (it fell behind, or started too far back).

use super::feed::Newest;
use super::ops::{self, Changes};
use crate::datastore::backend::{RawEvent, RawWatch, WATCH_CHANNEL_CAPACITY};
use crate::datastore::{DatastoreError, Kind, Result, Revision};
use rusqlite::Connection;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Changes read per snapshot: small enough that a stalled consumer leaves most of the log unread
/// (so it resyncs rather than hold a stale batch), large enough to amortise the read.
const BATCH: usize = 128;

pub(super) fn spawn(
    conn: Connection,
    kind: Kind,
    from: Option<Revision>,
    poll: Duration,
    feed: watch::Receiver<Newest>,
) -> RawWatch {
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
    tokio::spawn(run(conn, kind, from, poll, feed, tx));
    rx
}

/// Runs `f` on the connection in the blocking pool, handing the connection back.
async fn blocking<T: Send + 'static>(
    conn: Connection,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> (Option<Connection>, Result<T>) {
    let joined = tokio::task::spawn_blocking(move || {
        let mut conn = conn;
        let out = f(&mut conn);
        (conn, out)
    })
    .await;
    match joined {
        Ok((conn, out)) => (Some(conn), out),
        Err(e) => (None, Err(DatastoreError::unavailable(format!("sqlite watch read failed: {e}")))),
    }
}

/// What a watch waits for before its next read.
enum Next {
    /// Read again at once (a batch was full, or a resync is due).
    Read,
    /// A change of its kind past its place.
    Change,
    /// The poll interval: the last read failed.
    Retry,
}

async fn run(
    conn: Connection,
    kind: Kind,
    from: Option<Revision>,
    poll: Duration,
    mut feed: watch::Receiver<Newest>,
    tx: mpsc::Sender<Result<RawEvent>>,
) {
    let mut conn = Some(conn);
    // `None`: the next step is a resync.
    let mut place = from.map(|r| r.0);
    loop {
        let Some(c) = conn.take() else { return };
        let (back, step) = match place {
            None => {
                let (back, listed) = blocking(c, move |c| ops::list(c, kind, "")).await;
                (back, listed.map(|l| (Some(l.revision.0), vec![Ok(RawEvent::Resync(l))])))
            }
            Some(after) => {
                let (back, read) = blocking(c, move |c| ops::changes_after(c, kind, after, BATCH)).await;
                (
                    back,
                    read.map(|changes| match changes {
                        Changes::Lost => (None, Vec::new()),
                        Changes::Events(events, upto) => (Some(upto), events),
                    }),
                )
            }
        };
        conn = back;
        let next = match step {
            Ok((next, events)) => {
                let idle = events.is_empty() && next == place;
                place = next;
                for event in events {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                if idle || place.is_some_and(|p| !feed.borrow().changed_after(kind, p)) {
                    Next::Change
                } else {
                    Next::Read
                }
            }
            Err(e) => {
                // A locked or unreadable database: report it and try again at the next poll.
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                Next::Retry
            }
        };
        match (next, place) {
            (Next::Change, Some(after)) => {
                let ended = tokio::select! {
                    _ = tx.closed() => return,
                    fed = feed.wait_for(|newest| newest.changed_after(kind, after)) => fed.is_err(),
                };
                if ended {
                    // The feed ended (its task failed): poll instead.
                    tokio::time::sleep(poll).await;
                }
            }
            (Next::Retry, _) => {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            _ => {}
        }
    }
}
