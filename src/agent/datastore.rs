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
        DatastoreType::Kubernetes => Ok(Datastore::new(KubeBackend::new(kube_client(config).await?))),
    }
}

/// A client for the Kubernetes API: `datastore.kubeconfig`, else in-cluster or `KUBECONFIG`.
pub(super) async fn kube_client(config: &Config) -> Result<kube::Client, String> {
    if let Some(path) = &config.datastore.kubeconfig {
        let at = |e: &dyn std::fmt::Display| format!("datastore.kubeconfig {}: {e}", path.display());
        let file = kube::config::Kubeconfig::read_from(path).map_err(|e| at(&e))?;
        let cfg = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.map_err(|e| at(&e))?;
        return kube::Client::try_from(cfg).map_err(|e| at(&e));
    }
    kube::Client::try_default().await.map_err(|e| format!("cannot open the kubernetes datastore: {e}"))
}
