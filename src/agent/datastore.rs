//! Opens the datastore the configuration names.

use crate::config::{Config, DatastoreType};
use crate::datastore::etcd::{EtcdBackend, EtcdOptions};
use crate::datastore::kubernetes::KubeBackend;
use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
use crate::datastore::{Datastore, DatastoreError};

/// Opens `config.datastore`; the error names the backend and the cause.
pub async fn open(config: &Config) -> Result<Datastore, String> {
    let d = &config.datastore;
    let err = |what: &str, e: DatastoreError| format!("cannot open the {what} datastore: {e}");
    match d.kind {
        DatastoreType::Sqlite => {
            if let Some(dir) = d.sqlite_path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {} for datastore.sqlite_path: {e}", dir.display()))?;
            }
            let backend =
                SqliteBackend::open(&d.sqlite_path, SqliteOptions::default()).await.map_err(|e| err("sqlite", e))?;
            Ok(Datastore::new(backend))
        }
        DatastoreType::Etcd => {
            let mut options = EtcdOptions::new(d.etcd_endpoints.clone());
            options.prefix = d.etcd_prefix.trim_end_matches('/').to_string();
            Ok(Datastore::new(EtcdBackend::connect(options).await.map_err(|e| err("etcd", e))?))
        }
        DatastoreType::Kubernetes => {
            if let Some(path) = &d.kubeconfig {
                return Err(format!(
                    "datastore.kubeconfig {:?} is not supported yet; use KUBECONFIG or in-cluster configuration",
                    path.display()
                ));
            }
            Ok(Datastore::new(KubeBackend::try_default().await.map_err(|e| err("kubernetes", e))?))
        }
    }
}
