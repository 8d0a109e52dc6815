//! The etcd backend, as Calico's etcd mode: each record is one key
//! `<prefix>/<kind plural>/<name>` holding the resource's JSON; compare-and-swap is a transaction
//! on the key's mod_revision; watches resume from the last revision they delivered after etcd or
//! the connection comes back, and resync when etcd has compacted that revision away.

mod watch;

use super::backend::{Backend, RawList, RawObject, RawWatch, RawWrite, check_transaction};
use super::{DatastoreError, Key, Kind, Result, Revision};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchClient,
};
use std::time::Duration;

/// Where and how to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prefix of every key tortie writes, without a trailing `/`.
    pub prefix: String,
    /// How long one request may take before it fails as `Unavailable`.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>) -> EtcdOptions {
        EtcdOptions { endpoints, prefix: "/tortie".to_string(), request_timeout: Duration::from_secs(5) }
    }
}

/// The largest response the backend takes from etcd (a listing, a watch message): etcd's own
/// client's limit (`MaxCallRecvMsgSize`). The gRPC default, 4 MiB, fails every listing of a kind
/// bigger than that: the IPAM blocks of a few hundred busy nodes.
pub const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// How long the connection may be silent before the client pings etcd. etcd closes a connection
/// (GOAWAY `too_many_pings`) whose client pings more often than its `--grpc-keepalive-min-time`
/// (5 s by default) three times in a row, so a shorter interval made every idle client reconnect
/// and reopen its watches every few seconds.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection counts as dead (then the client
/// reconnects and the watches resume).
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A datastore in etcd.
pub struct EtcdBackend {
    client: Client,
    /// Reads and writes, taking responses up to [`MAX_RESPONSE_BYTES`].
    kv: KvClient,
    /// Watches, taking messages up to [`MAX_RESPONSE_BYTES`].
    watches: WatchClient,
    prefix: String,
}

fn unavailable(e: etcd_client::Error) -> DatastoreError {
    DatastoreError::unavailable(e)
}

impl EtcdBackend {
    /// Connects to etcd. The connection is re-established by itself after etcd restarts.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdBackend> {
        let connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(options.request_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(&options.endpoints, Some(connect)).await.map_err(unavailable)?;
        let kv = client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES);
        let watches = client.watch_client().max_decoding_message_size(MAX_RESPONSE_BYTES);
        Ok(EtcdBackend { client, kv, watches, prefix: options.prefix.trim_end_matches('/').to_string() })
    }

    /// The etcd key of `key`.
    pub fn path(&self, key: &Key) -> String {
        format!("{}{}", self.kind_dir(key.kind), key.name)
    }

    /// The key prefix of every record of `kind`, ending in `/`.
    fn kind_dir(&self, kind: Kind) -> String {
        format!("{}/{}/", self.prefix, kind.plural())
    }

    /// The client, for tools and tests that need etcd itself (compaction, raw writes).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A transaction `compares → op`, or a read of the key if a compare fails; tells which
    /// failure it was.
    async fn guarded(&self, key: &Key, compares: Vec<Compare>, op: TxnOp, expected: Revision) -> Result<Revision> {
        let path = self.path(key);
        let txn = Txn::new().when(compares).and_then(vec![op]).or_else(vec![TxnOp::get(path, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(unavailable)?;
        if response.succeeded() {
            let revision = response.header().map(|h| h.revision()).unwrap_or_default();
            return Ok(Revision(revision.max(0) as u64));
        }
        let present =
            response.op_responses().into_iter().any(|r| matches!(r, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
        Err(if present {
            DatastoreError::Conflict { key: key.clone(), expected }
        } else {
            DatastoreError::NotFound { key: key.clone() }
        })
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    async fn get(&self, key: &Key) -> Result<RawObject> {
        let response = self.kv.clone().get(self.path(key), None).await.map_err(unavailable)?;
        let Some(kv) = response.kvs().first() else {
            return Err(DatastoreError::NotFound { key: key.clone() });
        };
        Ok(RawObject {
            key: key.clone(),
            revision: Revision(kv.mod_revision().max(0) as u64),
            value: kv.value().to_vec(),
        })
    }

    async fn list(&self, kind: Kind) -> Result<RawList> {
        self.list_prefix(kind, "").await
    }

    async fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<RawList> {
        let dir = self.kind_dir(kind);
        let range = format!("{dir}{prefix}");
        let response = self.kv.clone().get(range, Some(GetOptions::new().with_prefix())).await.map_err(unavailable)?;
        let revision = response.header().map(|h| h.revision()).unwrap_or_default();
        let mut objects = Vec::new();
        for kv in response.kvs() {
            objects.push(watch::object_of(&dir, kind, kv)?);
        }
        Ok(RawList { objects, revision: Revision(revision.max(0) as u64) })
    }

    async fn list_names(&self, kind: Kind) -> Result<Vec<String>> {
        let dir = self.kind_dir(kind);
        let options = GetOptions::new().with_prefix().with_keys_only();
        let response = self.kv.clone().get(dir.clone(), Some(options)).await.map_err(unavailable)?;
        response.kvs().iter().map(|kv| watch::key_of(&dir, kind, kv.key()).map(|key| key.name)).collect()
    }

    async fn create(&self, key: &Key, value: Vec<u8>) -> Result<Revision> {
        let path = self.path(key);
        let txn = Txn::new()
            .when(vec![Compare::version(path.clone(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(path, value, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(unavailable)?;
        if !response.succeeded() {
            return Err(DatastoreError::AlreadyExists { key: key.clone() });
        }
        Ok(Revision(response.header().map(|h| h.revision()).unwrap_or_default().max(0) as u64))
    }

    async fn update(&self, key: &Key, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let path = self.path(key);
        let compares = vec![
            Compare::version(path.clone(), CompareOp::Greater, 0),
            Compare::mod_revision(path.clone(), CompareOp::Equal, expected.0 as i64),
        ];
        self.guarded(key, compares, TxnOp::put(path, value, None), expected).await
    }

    async fn delete(&self, key: &Key, expected: Revision) -> Result<()> {
        let path = self.path(key);
        let compares = vec![
            Compare::version(path.clone(), CompareOp::Greater, 0),
            Compare::mod_revision(path.clone(), CompareOp::Equal, expected.0 as i64),
        ];
        self.guarded(key, compares, TxnOp::delete(path, None), expected).await.map(|_| ())
    }

    /// One etcd transaction: every write's compares, then every write; when a compare fails, a
    /// read of every key tells which write failed and why.
    async fn transact(&self, writes: Vec<RawWrite>) -> Result<Vec<Revision>> {
        check_transaction(&writes)?;
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut reads = Vec::new();
        for write in &writes {
            let path = self.path(write.key());
            match write {
                RawWrite::Create { value, .. } => {
                    compares.push(Compare::version(path.clone(), CompareOp::Equal, 0));
                    ops.push(TxnOp::put(path.clone(), value.clone(), None));
                }
                // One compare per write: etcd counts compares against its limit of operations
                // per transaction. A missing key's mod revision is 0, never an expected one.
                RawWrite::Update { value, expected, .. } => {
                    compares.push(Compare::mod_revision(path.clone(), CompareOp::Equal, expected.0 as i64));
                    ops.push(TxnOp::put(path.clone(), value.clone(), None));
                }
                RawWrite::Delete { expected, .. } => {
                    compares.push(Compare::mod_revision(path.clone(), CompareOp::Equal, expected.0 as i64));
                    ops.push(TxnOp::delete(path.clone(), None));
                }
            }
            reads.push(TxnOp::get(path, None));
        }
        let txn = Txn::new().when(compares).and_then(ops).or_else(reads);
        let response = self.kv.clone().txn(txn).await.map_err(unavailable)?;
        if response.succeeded() {
            let revision = Revision(response.header().map(|h| h.revision()).unwrap_or_default().max(0) as u64);
            return Ok(vec![revision; writes.len()]);
        }
        let found: Vec<Option<Revision>> = response
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| Revision(kv.mod_revision().max(0) as u64)),
                _ => None,
            })
            .collect();
        Err(first_failure(&writes, &found))
    }

    fn atomic_transactions(&self) -> bool {
        true
    }

    async fn watch(&self, kind: Kind, from: Option<Revision>) -> Result<RawWatch> {
        Ok(watch::spawn((self.kv.clone(), self.watches.clone()), self.kind_dir(kind), kind, from))
    }
}

/// The error of the first write whose condition `found` (each key's revision, `None` when
/// absent) breaks. If none does (the keys changed again since), a `Conflict` on the first key:
/// the caller re-reads and retries either way.
fn first_failure(writes: &[RawWrite], found: &[Option<Revision>]) -> DatastoreError {
    for (write, found) in writes.iter().zip(found) {
        let key = write.key().clone();
        match (write, found) {
            (RawWrite::Create { .. }, Some(_)) => return DatastoreError::AlreadyExists { key },
            (RawWrite::Update { .. } | RawWrite::Delete { .. }, None) => return DatastoreError::NotFound { key },
            (RawWrite::Update { expected, .. } | RawWrite::Delete { expected, .. }, Some(actual))
                if actual != expected =>
            {
                return DatastoreError::Conflict { key, expected: *expected };
            }
            _ => {}
        }
    }
    match writes.first() {
        Some(RawWrite::Update { key, expected, .. } | RawWrite::Delete { key, expected }) => {
            DatastoreError::Conflict { key: key.clone(), expected: *expected }
        }
        Some(RawWrite::Create { key, .. }) => DatastoreError::AlreadyExists { key: key.clone() },
        None => DatastoreError::unavailable("an empty etcd transaction failed"),
    }
}
