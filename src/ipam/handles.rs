//! IpamHandle records: per handle, how many addresses it holds in which block, so release by
//! handle visits only those blocks (Calico's O(1) handle index).

use super::claim::RETRIES;
use super::error::{IpamError, Result};
use crate::datastore::resources::IpamHandle;
use crate::datastore::{Datastore, DatastoreError, Stored};
use ipnetwork::IpNetwork;

/// The handle record, if there is one.
pub async fn get(store: &Datastore, handle: &str) -> Result<Option<Stored<IpamHandle>>> {
    match store.get::<IpamHandle>(handle).await {
        Ok(h) => Ok(Some(h)),
        Err(DatastoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn exhausted(handle: &str) -> IpamError {
    IpamError::RetriesExhausted { key: format!("IPAMHandle/{handle}"), retries: RETRIES }
}

/// Counts one more address of `handle` in `block`. Tries the create first: a new handle (a new
/// pod) is the common case, and this saves a read per allocation.
pub async fn add(store: &Datastore, handle: &str, block: &IpNetwork) -> Result<()> {
    let mut record = IpamHandle { handle_id: handle.to_string(), ..IpamHandle::default() };
    record.block.insert(block.to_string(), 1);
    match store.create(handle, &record).await {
        Err(DatastoreError::AlreadyExists { .. }) => {}
        other => return other.map(|_| ()).map_err(Into::into),
    }
    for _ in 0..RETRIES {
        match get(store, handle).await? {
            None => {
                let mut record = IpamHandle { handle_id: handle.to_string(), ..IpamHandle::default() };
                record.block.insert(block.to_string(), 1);
                match store.create(handle, &record).await {
                    Err(DatastoreError::AlreadyExists { .. }) => continue,
                    other => return other.map(|_| ()).map_err(Into::into),
                }
            }
            Some(mut record) => {
                *record.spec.block.entry(block.to_string()).or_insert(0) += 1;
                match store.update(handle, &record.spec, record.revision).await {
                    Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => continue,
                    other => return other.map(|_| ()).map_err(Into::into),
                }
            }
        }
    }
    Err(exhausted(handle))
}

/// Counts one address of `handle` in `block` less; deletes the record when it holds nothing.
pub async fn remove(store: &Datastore, handle: &str, block: &IpNetwork) -> Result<()> {
    for _ in 0..RETRIES {
        let Some(mut record) = get(store, handle).await? else { return Ok(()) };
        let key = block.to_string();
        match record.spec.block.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                record.spec.block.remove(&key);
            }
            None => return Ok(()),
        }
        let outcome = if record.spec.block.is_empty() {
            store.delete::<IpamHandle>(handle, record.revision).await
        } else {
            store.update(handle, &record.spec, record.revision).await.map(|_| ())
        };
        match outcome {
            Err(DatastoreError::Conflict { .. }) => continue,
            Ok(()) | Err(DatastoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(exhausted(handle))
}

/// Deletes the record whatever it holds (after its addresses were released).
pub async fn delete(store: &Datastore, handle: &str) -> Result<()> {
    for _ in 0..RETRIES {
        let Some(record) = get(store, handle).await? else { return Ok(()) };
        match store.delete::<IpamHandle>(handle, record.revision).await {
            Err(DatastoreError::Conflict { .. }) => continue,
            Ok(()) | Err(DatastoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(exhausted(handle))
}
