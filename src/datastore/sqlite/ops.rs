//! The SQL: schema, reads, compare-and-swap writes, the change log. Plain functions on a
//! connection, called from the connection thread or a watch's blocking reads.

use crate::datastore::backend::{RawEvent, RawList, RawObject};
use crate::datastore::{DatastoreError, Key, Kind, Result, Revision};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, name TEXT NOT NULL, revision INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (kind, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, op TEXT NOT NULL, value BLOB);
CREATE INDEX IF NOT EXISTS changes_by_kind ON changes (kind, revision);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
";

/// The change log is trimmed once per this many revisions: batches keep the common write at
/// one extra row.
const TRIM_EVERY: u64 = 64;

fn unavailable(e: rusqlite::Error) -> DatastoreError {
    DatastoreError::unavailable(e)
}

/// Creates the tables if missing; safe when several processes open the file at once.
pub(super) fn init_schema(conn: &mut Connection) -> Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DatastoreError::unavailable(format!("sqlite refused WAL mode (journal_mode is {mode})")));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;
    tx.execute_batch(SCHEMA).map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

/// A stored revision, or `InvalidData` if the column holds something else.
fn revision_at(value: ValueRef<'_>, what: &dyn std::fmt::Display) -> Result<u64> {
    match value {
        ValueRef::Integer(i) if i >= 0 => Ok(i as u64),
        other => Err(DatastoreError::invalid(what, format!("revision column holds {other:?}, not a revision"))),
    }
}

/// A stored value as bytes (text or blob); decoding is the typed layer's job.
fn bytes_at(value: ValueRef<'_>, what: &dyn std::fmt::Display) -> Result<Vec<u8>> {
    match value {
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b.to_vec()),
        other => Err(DatastoreError::invalid(what, format!("value column holds {other:?}, not a document"))),
    }
}

fn meta(conn: &Connection, key: &str) -> Result<u64> {
    let what = format!("meta/{key}");
    // Cached: the watches and the change feed read it many times a second.
    let mut stmt = conn.prepare_cached("SELECT value FROM meta WHERE key = ?1").map_err(unavailable)?;
    let raw: Option<i64> = stmt.query_row([key], |r| r.get(0)).optional().map_err(unavailable)?;
    match raw {
        Some(v) if v >= 0 => Ok(v as u64),
        other => Err(DatastoreError::invalid(what, format!("holds {other:?}"))),
    }
}

pub(super) fn current_revision(conn: &mut Connection) -> Result<u64> {
    meta(conn, "revision")
}

pub(super) fn get(conn: &mut Connection, key: &Key) -> Result<RawObject> {
    let mut stmt = conn
        .prepare_cached("SELECT revision, value FROM objects WHERE kind = ?1 AND name = ?2")
        .map_err(unavailable)?;
    let mut rows = stmt.query(params![key.kind.plural(), key.name]).map_err(unavailable)?;
    let Some(row) = rows.next().map_err(unavailable)? else {
        return Err(DatastoreError::NotFound { key: key.clone() });
    };
    let revision = revision_at(row.get_ref(0).map_err(unavailable)?, key)?;
    let value = bytes_at(row.get_ref(1).map_err(unavailable)?, key)?;
    Ok(RawObject { key: key.clone(), revision: Revision(revision), value })
}

/// The names of every record of `kind`, values unread.
pub(super) fn list_names(conn: &mut Connection, kind: Kind) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT name FROM objects WHERE kind = ?1 ORDER BY name").map_err(unavailable)?;
    let names = stmt.query_map([kind.plural()], |row| row.get::<_, String>(0)).map_err(unavailable)?;
    names.collect::<std::result::Result<Vec<_>, _>>().map_err(unavailable)
}

/// The least string greater than every string starting with `prefix`: its last character that
/// has a successor bumped, the rest dropped; `None` when there is none (the empty prefix).
fn after_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The records of `kind` whose names start with `prefix` (every record for "") and the
/// revision, read in one snapshot.
pub(super) fn list(conn: &mut Connection, kind: Kind, prefix: &str) -> Result<RawList> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(unavailable)?;
    let revision = meta(&tx, "revision")?;
    let mut objects = Vec::new();
    {
        // Names with the prefix are the range [prefix, the prefix with its last character
        // bumped): the primary key's order (BINARY: UTF-8 bytes, code point order).
        let upper = after_prefix(prefix);
        let mut stmt = tx
            .prepare_cached(match upper {
                Some(_) => "SELECT name, revision, value FROM objects WHERE kind = ?1 AND name >= ?2 AND name < ?3 ORDER BY name",
                None => "SELECT name, revision, value FROM objects WHERE kind = ?1 AND name >= ?2 ORDER BY name",
            })
            .map_err(unavailable)?;
        let mut rows = match &upper {
            Some(upper) => stmt.query([kind.plural(), prefix, upper.as_str()]),
            None => stmt.query([kind.plural(), prefix]),
        }
        .map_err(unavailable)?;
        while let Some(row) = rows.next().map_err(unavailable)? {
            let name: String = row.get(0).map_err(unavailable)?;
            let key = Key::new(kind, name);
            // A record whose revision column is corrupt still reaches the typed layer, as a value
            // that cannot decode, so the listing reports it by key instead of failing.
            let (revision, value) = match (
                revision_at(row.get_ref(1).map_err(unavailable)?, &key),
                bytes_at(row.get_ref(2).map_err(unavailable)?, &key),
            ) {
                (Ok(r), Ok(v)) => (r, v),
                _ => (0, Vec::new()),
            };
            objects.push(RawObject { key, revision: Revision(revision), value });
        }
    }
    tx.commit().map_err(unavailable)?;
    Ok(RawList { objects, revision: Revision(revision) })
}

/// One compare-and-swap write.
pub(super) enum Write {
    Create(Vec<u8>),
    Update(Vec<u8>, u64),
    Delete(u64),
}

/// Applies `write` under the write lock; returns the new store revision.
pub(super) fn write(conn: &mut Connection, key: &Key, write: Write, retained: u64) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;
    let revision = apply(&tx, key, &write)?;
    finish(tx, revision, revision, retained)?;
    Ok(revision)
}

/// Applies every write in one transaction (each gets its own revision, in order), or none:
/// returning early drops the transaction, which rolls it back.
pub(super) fn transact(conn: &mut Connection, writes: &[(Key, Write)], retained: u64) -> Result<Vec<u64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;
    let mut revisions = Vec::with_capacity(writes.len());
    for (key, write) in writes {
        revisions.push(apply(&tx, key, write)?);
    }
    if let (Some(first), Some(last)) = (revisions.first(), revisions.last()) {
        finish(tx, *first, *last, retained)?;
    }
    Ok(revisions)
}

/// Trims the change log when the revisions `first..=last` passed a multiple of
/// [`TRIM_EVERY`], and commits.
fn finish(tx: rusqlite::Transaction<'_>, first: u64, last: u64, retained: u64) -> Result<()> {
    if last / TRIM_EVERY > (first - 1) / TRIM_EVERY && last > retained {
        trim(&tx, last - retained)?;
    }
    tx.commit().map_err(unavailable)
}

/// Checks and applies one write inside `tx`; returns its revision.
fn apply(tx: &Connection, key: &Key, write: &Write) -> Result<u64> {
    let current = {
        let mut stmt =
            tx.prepare_cached("SELECT revision FROM objects WHERE kind = ?1 AND name = ?2").map_err(unavailable)?;
        let mut rows = stmt.query(params![key.kind.plural(), key.name]).map_err(unavailable)?;
        match rows.next().map_err(unavailable)? {
            Some(row) => Some(revision_at(row.get_ref(0).map_err(unavailable)?, key)?),
            None => None,
        }
    };
    match (write, current) {
        (Write::Create(_), Some(_)) => return Err(DatastoreError::AlreadyExists { key: key.clone() }),
        (Write::Update(..) | Write::Delete(_), None) => return Err(DatastoreError::NotFound { key: key.clone() }),
        (Write::Update(_, expected) | Write::Delete(expected), Some(actual)) if *expected != actual => {
            return Err(DatastoreError::Conflict { key: key.clone(), expected: Revision(*expected) });
        }
        _ => {}
    }
    let revision: i64 = tx
        .query_row("UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value", [], |r| r.get(0))
        .map_err(unavailable)?;
    let (op, value) = match write {
        Write::Create(v) => ("added", Some(v)),
        Write::Update(v, _) => ("modified", Some(v)),
        Write::Delete(_) => ("deleted", None),
    };
    match value {
        Some(v) => tx.execute(
            "INSERT OR REPLACE INTO objects (kind, name, revision, value) VALUES (?1, ?2, ?3, ?4)",
            params![key.kind.plural(), key.name, revision, v],
        ),
        None => tx.execute("DELETE FROM objects WHERE kind = ?1 AND name = ?2", params![key.kind.plural(), key.name]),
    }
    .map_err(unavailable)?;
    tx.execute(
        "INSERT INTO changes (revision, kind, name, op, value) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![revision, key.kind.plural(), key.name, op, value],
    )
    .map_err(unavailable)?;
    Ok(revision as u64)
}

fn trim(conn: &Connection, upto: u64) -> Result<()> {
    conn.execute("DELETE FROM changes WHERE revision <= ?1", [upto as i64]).map_err(unavailable)?;
    conn.execute("UPDATE meta SET value = max(value, ?1) WHERE key = 'compacted'", [upto as i64])
        .map_err(unavailable)?;
    Ok(())
}

pub(super) fn compact(conn: &mut Connection, upto: u64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;
    trim(&tx, upto)?;
    tx.commit().map_err(unavailable)
}

/// What a watch reads in one snapshot.
pub(super) enum Changes {
    /// The log no longer reaches back to the watch's place.
    Lost,
    /// Changes of the kind after the place, and the revision the watch has now seen up to.
    Events(Vec<Result<RawEvent>>, u64),
}

pub(super) fn changes_after(conn: &mut Connection, kind: Kind, after: u64, limit: usize) -> Result<Changes> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(unavailable)?;
    let current = meta(&tx, "revision")?;
    if after < meta(&tx, "compacted")? {
        return Ok(Changes::Lost);
    }
    let mut events = Vec::new();
    let mut last = after;
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT revision, name, op, value FROM changes
                 WHERE kind = ?1 AND revision > ?2 AND revision <= ?3 ORDER BY revision LIMIT ?4",
            )
            .map_err(unavailable)?;
        let mut rows =
            stmt.query(params![kind.plural(), after as i64, current as i64, limit as i64]).map_err(unavailable)?;
        while let Some(row) = rows.next().map_err(unavailable)? {
            let revision: i64 = row.get(0).map_err(unavailable)?;
            last = revision as u64;
            let name: String = row.get(1).map_err(unavailable)?;
            let op: String = row.get(2).map_err(unavailable)?;
            events.push(change_event(Key::new(kind, name), last, &op, row.get_ref(3).map_err(unavailable)?));
        }
    }
    tx.commit().map_err(unavailable)?;
    let upto = if events.len() == limit { last } else { current };
    Ok(Changes::Events(events, upto))
}

/// What one read of the change feed found (see `feed`).
pub(super) struct NewestRead {
    /// The store's revision.
    pub revision: u64,
    /// The log holds no changes at or before this one.
    pub compacted: u64,
    /// The newest revision of each kind (plural) changed after the place read from.
    pub kinds: Vec<(String, u64)>,
}

/// The newest change of each kind after `after`, read in one snapshot; `None` when the store
/// has no change after it.
pub(super) fn newest_after(conn: &mut Connection, after: u64) -> Result<Option<NewestRead>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(unavailable)?;
    let revision = meta(&tx, "revision")?;
    if revision == after {
        return Ok(None);
    }
    let compacted = meta(&tx, "compacted")?;
    let mut kinds = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT kind, MAX(revision) FROM changes WHERE revision > ?1 AND revision <= ?2 GROUP BY kind",
            )
            .map_err(unavailable)?;
        let mut rows = stmt.query(params![after as i64, revision as i64]).map_err(unavailable)?;
        while let Some(row) = rows.next().map_err(unavailable)? {
            let kind: String = row.get(0).map_err(unavailable)?;
            let newest = revision_at(row.get_ref(1).map_err(unavailable)?, &format!("changes/{kind}"))?;
            kinds.push((kind, newest));
        }
    }
    tx.commit().map_err(unavailable)?;
    Ok(Some(NewestRead { revision, compacted, kinds }))
}

fn change_event(key: Key, revision: u64, op: &str, value: ValueRef<'_>) -> Result<RawEvent> {
    let revision = Revision(revision);
    match op {
        "deleted" => Ok(RawEvent::Deleted { key, revision }),
        "added" => Ok(RawEvent::Added(RawObject { value: bytes_at(value, &key)?, key, revision })),
        "modified" => Ok(RawEvent::Modified(RawObject { value: bytes_at(value, &key)?, key, revision })),
        other => Err(DatastoreError::invalid(&key, format!("change log entry {revision} has unknown op {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::after_prefix;

    #[test]
    fn the_bound_after_a_prefix_is_its_last_character_bumped() {
        assert_eq!(after_prefix(""), None);
        assert_eq!(after_prefix("n1-").as_deref(), Some("n1."));
        assert_eq!(after_prefix("a\u{10FFFF}").as_deref(), Some("b"));
        // U+D7FF's successor is U+E000: surrogates are not characters.
        assert_eq!(after_prefix("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(after_prefix("\u{10FFFF}"), None);
    }
}
