//! A sqlite watch: a task that reads the change log from its place, on its own connection, and
//! resyncs when the log was trimmed past that place (it fell behind, or started too far back).

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
    written: watch::Receiver<u64>,
) -> RawWatch {
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
    tokio::spawn(run(conn, kind, from, poll, written, tx));
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

async fn run(
    conn: Connection,
    kind: Kind,
    from: Option<Revision>,
    poll: Duration,
    mut written: watch::Receiver<u64>,
    tx: mpsc::Sender<Result<RawEvent>>,
) {
    let mut conn = Some(conn);
    // `None`: the next step is a resync.
    let mut place = from.map(|r| r.0);
    loop {
        let Some(c) = conn.take() else { return };
        written.borrow_and_update();
        let (back, step) = match place {
            None => {
                let (back, listed) = blocking(c, move |c| ops::list(c, kind)).await;
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
        let idle = match step {
            Ok((next, events)) => {
                let idle = events.is_empty() && next == place;
                place = next;
                for event in events {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                idle
            }
            Err(e) => {
                // A locked or unreadable database: report it and try again at the next poll.
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                true
            }
        };
        if idle {
            tokio::select! {
                _ = tx.closed() => return,
                changed = written.changed() => {
                    if changed.is_err() {
                        // The backend is gone; other processes may still write, so keep polling.
                        tokio::time::sleep(poll).await;
                    }
                }
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}
