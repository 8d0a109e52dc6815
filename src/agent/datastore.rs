//! Opens the datastore the configuration names.

use crate::config::{Config, DatastoreType};
use crate::datastore::etcd::{EtcdBackend, EtcdOptions};
use crate::datastore::kubernetes::KubeBackend;
use crate::datastore::resources::IpPool;
use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
use crate::datastore::{Datastore, DatastoreError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::time::Duration;

/// The wait before the second attempt to reach the datastore; each further wait doubles.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Why an attempt to open the datastore failed.
enum OpenError {
    /// The datastore did not answer (etcd or the API server not up yet): worth another try.
    Unreachable(String),
    /// The configuration cannot work (a path, a kubeconfig): retrying will not help.
    Fatal(String),
}

/// Opens `config.datastore` and reads from it, retrying with back-off (every attempt logged)
/// while it is unreachable, so a node agent that starts before etcd waits for it. Errors that
/// a retry cannot fix are returned at once, naming the backend and the cause.
pub async fn connect(config: &Config) -> Result<Datastore, String> {
    let mut wait = FIRST_RETRY;
    for attempt in 1u32.. {
        let error = match open(config).await {
            Ok(ds) => match ds.list::<IpPool>().await {
                Ok(_) => return Ok(ds),
                Err(e) if e.is_retryable() => {
                    format!("cannot read from the {:?} datastore: {e}", config.datastore.kind)
                }
                Err(e) => return Err(format!("cannot read from the {:?} datastore: {e}", config.datastore.kind)),
            },
            Err(OpenError::Unreachable(e)) => e,
            Err(OpenError::Fatal(e)) => return Err(e),
        };
        tracing::warn!(subsys = "datastore", attempt, retry_in = ?wait, error = %error, "datastore unreachable; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
    unreachable!("the attempts never run out")
}

/// Opens `config.datastore`; the error names the backend and the cause.
async fn open(config: &Config) -> Result<Datastore, OpenError> {
    let d = &config.datastore;
    let err = |what: &str, e: DatastoreError| {
        let message = format!("cannot open the {what} datastore: {e}");
        if e.is_retryable() { OpenError::Unreachable(message) } else { OpenError::Fatal(message) }
    };
    match d.kind {
        DatastoreType::Sqlite => {
            if let Some(dir) = d.sqlite_path.parent() {
                std::fs::DirBuilder::new().recursive(true).mode(SQLITE_DIR_MODE).create(dir).map_err(|e| {
                    OpenError::Fatal(format!("cannot create {} for datastore.sqlite_path: {e}", dir.display()))
                })?;
            }
            create_sqlite_file(&d.sqlite_path)?;
            restrict_sqlite_files(&d.sqlite_path)?;
            let backend =
                SqliteBackend::open(&d.sqlite_path, SqliteOptions::default()).await.map_err(|e| err("sqlite", e))?;
            // SQLite gives its -wal and -shm files the database file's mode; files of an
            // earlier run may have had another. By path only: closing any descriptor of the
            // database file would drop this process's POSIX locks on it, so another process
            // closing its connection would think itself the last one and remove the WAL this
            // process still reads (it would never see that process's later writes).
            restrict_sqlite_files(&d.sqlite_path)?;
            Ok(Datastore::new(backend))
        }
        DatastoreType::Etcd => {
            let mut options = EtcdOptions::new(d.etcd_endpoints.clone());
            options.prefix = d.etcd_prefix.trim_end_matches('/').to_string();
            Ok(Datastore::new(EtcdBackend::connect(options).await.map_err(|e| err("etcd", e))?))
        }
        DatastoreType::Kubernetes => {
            Ok(Datastore::new(KubeBackend::new(kube_client(config).await.map_err(OpenError::Fatal)?)))
        }
    }
}

/// The sqlite files' mode: the datastore is the agent's alone (invariant 5).
const SQLITE_MODE: u32 = 0o600;
/// The mode of a directory the agent creates for the sqlite file.
const SQLITE_DIR_MODE: u32 = 0o755;

fn mode_error(p: &std::path::Path, e: std::io::Error) -> OpenError {
    OpenError::Fatal(format!("cannot set mode 0600 on {} (datastore.sqlite_path): {e}", p.display()))
}

/// Creates the sqlite file `path` with mode [`SQLITE_MODE`] whatever the umask (before
/// SQLite opens it: see [`restrict_sqlite_files`]).
fn create_sqlite_file(path: &std::path::Path) -> Result<(), OpenError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(SQLITE_MODE)
        .open(path)
        .map_err(|e| mode_error(path, e))?;
    Ok(())
}

/// Sets mode [`SQLITE_MODE`] on the sqlite file `path` and on its -wal and -shm files where
/// they exist, by path (chmod), never opening them.
fn restrict_sqlite_files(path: &std::path::Path) -> Result<(), OpenError> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(SQLITE_MODE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(mode_error(&file, e)),
            _ => {}
        }
    }
    Ok(())
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
