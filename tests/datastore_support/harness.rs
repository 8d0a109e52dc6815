//! One harness per backend: how the generic suite reaches a fresh datastore, and the few things
//! it must do behind the datastore's back (compact history, corrupt a record).

use super::etcd_process::EtcdProcess;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tortie::datastore::etcd::{EtcdBackend, EtcdOptions};
use tortie::datastore::kube_standin::StandIn;
use tortie::datastore::kubernetes::{GROUP, KubeBackend};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::datastore::{Datastore, Key, Revision};

#[async_trait]
pub trait Harness: Send + Sync {
    /// The datastore under test.
    fn store(&self) -> &Datastore;
    /// A second, independent client of the same datastore (its own connection).
    async fn another_client(&self) -> Datastore;
    /// Drops all history up to the current revision.
    async fn compact(&self);
    /// Overwrites the stored bytes of `key`, bypassing every check.
    async fn corrupt(&self, key: &Key, bytes: &[u8]);
    /// Makes `name` a node the backend can attach BGP fields to.
    async fn prepare_node(&self, _name: &str) {}
    /// Whether compaction makes a live watch that has not read its backlog lose its place (so a
    /// resync is certain, not merely allowed).
    fn compaction_cuts_live_watches(&self) -> bool {
        false
    }
    /// How a child process reaches this datastore, if the backend can be shared across processes.
    fn child_target(&self) -> Option<ChildTarget> {
        None
    }
}

/// What a child process of the multi-process test connects to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChildTarget {
    Sqlite { path: String },
    Etcd { endpoint: String, prefix: String },
}

impl ChildTarget {
    pub async fn connect(&self) -> Datastore {
        match self {
            ChildTarget::Sqlite { path } => {
                Datastore::new(SqliteBackend::open(path, SqliteOptions::default()).await.expect("open sqlite"))
            }
            ChildTarget::Etcd { endpoint, prefix } => Datastore::new(
                EtcdBackend::connect(EtcdOptions {
                    prefix: prefix.clone(),
                    ..EtcdOptions::new(vec![endpoint.clone()])
                })
                .await
                .expect("connect to etcd"),
            ),
        }
    }
}

pub struct SqliteHarness {
    dir: TempDir,
    store: Datastore,
    backend: std::sync::Arc<SqliteBackend>,
}

impl SqliteHarness {
    pub async fn new() -> SqliteHarness {
        let dir = tempfile::Builder::new().prefix("tortie-sqlite-").tempdir().expect("temporary directory");
        let backend = std::sync::Arc::new(
            SqliteBackend::open(dir.path().join("tortie.db"), SqliteOptions::default()).await.expect("open sqlite"),
        );
        let store = Datastore::from_arc(backend.clone());
        SqliteHarness { dir, store, backend }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("tortie.db")
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    fn store(&self) -> &Datastore {
        &self.store
    }

    async fn another_client(&self) -> Datastore {
        Datastore::new(SqliteBackend::open(self.path(), SqliteOptions::default()).await.expect("open sqlite"))
    }

    async fn compact(&self) {
        let current = self.backend.current_revision().await.expect("current revision");
        self.backend.compact(current).await.expect("compact");
    }

    async fn corrupt(&self, key: &Key, bytes: &[u8]) {
        let conn = rusqlite::Connection::open(self.path()).expect("open sqlite directly");
        conn.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
        let changed = conn
            .execute(
                "UPDATE objects SET value = ?1 WHERE kind = ?2 AND name = ?3",
                rusqlite::params![bytes, key.kind.plural(), key.name],
            )
            .expect("overwrite the record");
        assert_eq!(changed, 1, "{key} should exist before it is corrupted");
    }

    fn compaction_cuts_live_watches(&self) -> bool {
        true
    }

    fn child_target(&self) -> Option<ChildTarget> {
        Some(ChildTarget::Sqlite { path: self.path().to_string_lossy().into_owned() })
    }
}

pub struct EtcdHarness {
    pub etcd: EtcdProcess,
    store: Datastore,
    backend: std::sync::Arc<EtcdBackend>,
    prefix: String,
}

impl EtcdHarness {
    pub async fn new() -> EtcdHarness {
        let etcd = EtcdProcess::start().await;
        let prefix = "/tortie-conformance".to_string();
        let backend = std::sync::Arc::new(Self::connect(&etcd, &prefix).await);
        EtcdHarness { store: Datastore::from_arc(backend.clone()), etcd, backend, prefix }
    }

    async fn connect(etcd: &EtcdProcess, prefix: &str) -> EtcdBackend {
        let options = EtcdOptions { prefix: prefix.to_string(), ..EtcdOptions::new(vec![etcd.endpoint()]) };
        EtcdBackend::connect(options).await.expect("connect to etcd")
    }

    /// The etcd revision now.
    pub async fn current_revision(&self) -> Revision {
        let response = self.backend.client().get("/", None).await.expect("read etcd revision");
        Revision(response.header().expect("header").revision() as u64)
    }
}

#[async_trait]
impl Harness for EtcdHarness {
    fn store(&self) -> &Datastore {
        &self.store
    }

    async fn another_client(&self) -> Datastore {
        Datastore::new(Self::connect(&self.etcd, &self.prefix).await)
    }

    async fn compact(&self) {
        let current = self.current_revision().await;
        let options = etcd_client::CompactionOptions::new().with_physical();
        self.backend.client().compact(current.0 as i64, Some(options)).await.expect("compact etcd");
    }

    async fn corrupt(&self, key: &Key, bytes: &[u8]) {
        self.backend.client().put(self.backend.path(key), bytes.to_vec(), None).await.expect("overwrite the key");
    }

    fn child_target(&self) -> Option<ChildTarget> {
        Some(ChildTarget::Etcd { endpoint: self.etcd.endpoint(), prefix: self.prefix.clone() })
    }
}

pub struct KubeHarness {
    pub standin: StandIn,
    store: Datastore,
}

impl KubeHarness {
    pub async fn new() -> KubeHarness {
        let standin =
            StandIn::start(std::time::Duration::from_millis(200)).await.expect("start the stand-in API server");
        let store = Datastore::new(KubeBackend::new(standin.client()));
        KubeHarness { standin, store }
    }
}

#[async_trait]
impl Harness for KubeHarness {
    fn store(&self) -> &Datastore {
        &self.store
    }

    async fn another_client(&self) -> Datastore {
        Datastore::new(KubeBackend::new(self.standin.client()))
    }

    async fn compact(&self) {
        self.standin.compact();
    }

    async fn corrupt(&self, key: &Key, bytes: &[u8]) {
        let collection = format!("{GROUP}/{}", key.kind.plural());
        let mut object = self.standin.get_raw(&collection, &key.name).expect("the record exists");
        // The API server only stores JSON: bytes that are not JSON become a string spec.
        object["spec"] = serde_json::from_slice(bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()));
        self.standin.put_raw(&collection, &key.name, object);
    }

    async fn prepare_node(&self, name: &str) {
        self.standin.add_node(name);
    }
}
