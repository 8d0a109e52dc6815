//! [`Datastore`]: the typed face of a [`Backend`]. It validates what is written and decodes what
//! is read, so that a corrupt record is an `InvalidData` error naming its key, never a panic.

use super::backend::{Backend, RawList, RawObject, RawWrite};
use super::reads::Reads;
use super::resources::Resource;
use super::watch::WatchStream;
use super::{DatastoreError, Key, Result, Revision};
use std::sync::Arc;

/// A resource as stored, with the revision to pass to the next update or delete.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored<R> {
    pub name: String,
    pub revision: Revision,
    pub spec: R,
}

/// Every record of one kind at `revision`. Records that do not decode are reported in `invalid`
/// (each an `InvalidData` naming its key) instead of failing the whole listing or vanishing.
#[derive(Debug)]
pub struct Listing<R> {
    pub items: Vec<Stored<R>>,
    pub invalid: Vec<DatastoreError>,
    pub revision: Revision,
}

/// The datastore handle callers use; cheap to clone (the clones share their [`Reads`]).
#[derive(Clone)]
pub struct Datastore {
    backend: Arc<dyn Backend>,
    reads: Arc<Reads>,
}

impl Datastore {
    pub fn new(backend: impl Backend) -> Datastore {
        Datastore::from_arc(Arc::new(backend))
    }

    pub fn from_arc(backend: Arc<dyn Backend>) -> Datastore {
        Datastore { backend, reads: Arc::default() }
    }

    /// The listings made through this handle and its clones, their watches' resyncs included.
    pub fn reads(&self) -> Arc<Reads> {
        self.reads.clone()
    }

    /// The untyped backend, for tools that move records without knowing their types.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub async fn get<R: Resource>(&self, name: &str) -> Result<Stored<R>> {
        decode(self.backend.get(&Key::new(R::KIND, name)).await?)
    }

    pub async fn list<R: Resource>(&self) -> Result<Listing<R>> {
        let raw = self.backend.list(R::KIND).await?;
        self.reads.note(R::KIND, raw.objects.len());
        Ok(decode_list(raw))
    }

    /// The records of `R`'s kind whose names start with `prefix`.
    pub async fn list_prefix<R: Resource>(&self, prefix: &str) -> Result<Listing<R>> {
        let raw = self.backend.list_prefix(R::KIND, prefix).await?;
        self.reads.note(R::KIND, raw.objects.len());
        Ok(decode_list(raw))
    }

    /// The names of every record of `R`'s kind, without reading their values.
    pub async fn list_names<R: Resource>(&self) -> Result<Vec<String>> {
        self.backend.list_names(R::KIND).await
    }

    /// Stores a new resource; `AlreadyExists` if one has this name.
    pub async fn create<R: Resource>(&self, name: &str, spec: &R) -> Result<Stored<R>> {
        let key = Key::new(R::KIND, name);
        let value = encode(&key, spec)?;
        let revision = self.backend.create(&key, value).await?;
        Ok(Stored { name: name.to_string(), revision, spec: spec.clone() })
    }

    /// Replaces the resource if it is still at `expected`; `Conflict` otherwise.
    pub async fn update<R: Resource>(&self, name: &str, spec: &R, expected: Revision) -> Result<Stored<R>> {
        let key = Key::new(R::KIND, name);
        let value = encode(&key, spec)?;
        let revision = self.backend.update(&key, value, expected).await?;
        Ok(Stored { name: name.to_string(), revision, spec: spec.clone() })
    }

    /// Deletes the resource if it is still at `expected`; `Conflict` otherwise.
    pub async fn delete<R: Resource>(&self, name: &str, expected: Revision) -> Result<()> {
        self.backend.delete(&Key::new(R::KIND, name), expected).await
    }

    /// Applies the writes of `txn` together (see [`Backend::transact`]); each write's new
    /// revision, in the order they were added.
    pub async fn commit(&self, txn: Transaction) -> Result<Vec<Revision>> {
        let writes = txn.writes?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.transact(writes).await
    }

    /// Whether [`Datastore::commit`] is all-or-nothing on this backend.
    pub fn atomic_transactions(&self) -> bool {
        self.backend.atomic_transactions()
    }

    /// Changes after `from` (or the current state then changes, without `from`).
    pub async fn watch<R: Resource>(&self, from: Option<Revision>) -> Result<WatchStream<R>> {
        Ok(WatchStream::new(self.backend.watch(R::KIND, from).await?, self.reads.clone()))
    }
}

/// Writes to several records, applied together by [`Datastore::commit`]. A resource that does
/// not validate makes the commit fail with `InvalidData` naming it, before anything is sent.
pub struct Transaction {
    writes: Result<Vec<RawWrite>>,
}

impl Default for Transaction {
    fn default() -> Self {
        Transaction { writes: Ok(Vec::new()) }
    }
}

impl Transaction {
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// How many writes it holds.
    pub fn len(&self) -> usize {
        self.writes.as_ref().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, write: impl FnOnce() -> Result<RawWrite>) -> &mut Self {
        if let Ok(writes) = &mut self.writes {
            match write() {
                Ok(w) => writes.push(w),
                Err(e) => self.writes = Err(e),
            }
        }
        self
    }

    /// Stores a new resource; the commit fails with `AlreadyExists` if one has this name.
    pub fn create<R: Resource>(&mut self, name: &str, spec: &R) -> &mut Self {
        self.push(|| {
            let key = Key::new(R::KIND, name);
            Ok(RawWrite::Create { value: encode(&key, spec)?, key })
        })
    }

    /// Replaces the resource if it is still at `expected`.
    pub fn update<R: Resource>(&mut self, name: &str, spec: &R, expected: Revision) -> &mut Self {
        self.push(|| {
            let key = Key::new(R::KIND, name);
            Ok(RawWrite::Update { value: encode(&key, spec)?, key, expected })
        })
    }

    /// Deletes the resource if it is still at `expected`.
    pub fn delete<R: Resource>(&mut self, name: &str, expected: Revision) -> &mut Self {
        self.push(|| Ok(RawWrite::Delete { key: Key::new(R::KIND, name), expected }))
    }
}

fn encode<R: Resource>(key: &Key, spec: &R) -> Result<Vec<u8>> {
    if let Some(problem) = Key::problem_of(key.kind, &key.name) {
        return Err(DatastoreError::invalid(key, problem));
    }
    spec.validate().map_err(|reason| DatastoreError::invalid(key, reason))?;
    serde_json::to_vec(spec).map_err(|e| DatastoreError::invalid(key, e.to_string()))
}

/// Decodes one stored record, naming the key and the field path of whatever is wrong.
/// Fields that have no effect are reported ([`super::unsupported`]).
pub(crate) fn decode<R: Resource>(raw: RawObject) -> Result<Stored<R>> {
    let mut de = serde_json::Deserializer::from_slice(&raw.value);
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let tracked = serde_ignored::Deserializer::new(&mut de, &mut note);
    let spec: R = serde_path_to_error::deserialize(tracked).map_err(|e| {
        let path = e.path().to_string();
        let reason = if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) };
        DatastoreError::invalid(&raw.key, reason)
    })?;
    de.end().map_err(|e| DatastoreError::invalid(&raw.key, e.to_string()))?;
    spec.validate().map_err(|reason| DatastoreError::invalid(&raw.key, reason))?;
    report_unsupported::<R>(&raw, unknown);
    Ok(Stored { name: raw.key.name, revision: raw.revision, spec })
}

fn report_unsupported<R: Resource>(raw: &RawObject, unknown: Vec<String>) {
    use super::unsupported::{Finding, UNKNOWN_FIELD, declared_in, record};
    let finding = |field: String, reason: String| Finding { kind: R::KIND, name: raw.key.name.clone(), field, reason };
    let mut findings: Vec<Finding> = unknown.into_iter().map(|field| finding(field, UNKNOWN_FIELD.into())).collect();
    let declared = super::resources::coverage::unsupported(R::KIND);
    // Parsed a second time only for kinds with declared-unsupported fields.
    if !declared.is_empty()
        && let Ok(document) = serde_json::from_slice::<serde_json::Value>(&raw.value)
    {
        findings.extend(declared_in(&document, &declared).into_iter().map(|(f, r)| finding(f, r)));
    }
    record(R::KIND, &raw.key.name, findings);
}

pub(crate) fn decode_list<R: Resource>(raw: RawList) -> Listing<R> {
    let mut listing = Listing { items: Vec::new(), invalid: Vec::new(), revision: raw.revision };
    for object in raw.objects {
        match decode(object) {
            Ok(stored) => listing.items.push(stored),
            Err(e) => listing.invalid.push(e),
        }
    }
    listing
}
