//! One async lock per pod, so the workload requests of one pod (an ADD of a new sandbox and
//! the late DEL of the old one) run one after the other; different pods never wait on each
//! other. A pod's entry is dropped when nobody holds or waits for its lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// The locks, by pod key (its host interface name: one per pod on a node).
#[derive(Default)]
pub struct PodLocks {
    /// std mutex: held only to find or insert an entry, never across an await.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds a pod's lock; dropping it lets the next request of that pod run.
pub struct PodGuard<'a> {
    guard: Option<OwnedMutexGuard<()>>,
    key: String,
    owner: &'a PodLocks,
}

impl PodLocks {
    /// Waits until no other request of pod `key` runs.
    pub async fn lock(&self, key: &str) -> PodGuard<'_> {
        let lock = self.locks.lock().expect("not poisoned").entry(key.to_string()).or_default().clone();
        let guard = lock.lock_owned().await;
        PodGuard { guard: Some(guard), key: key.to_string(), owner: self }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().expect("not poisoned").len()
    }
}

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.owner.locks.lock().expect("not poisoned");
        // Only the map holds it: nobody holds or waits for this pod's lock.
        if locks.get(&self.key).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn one_pod_waits_another_does_not_and_entries_go() {
        let locks = PodLocks::default();
        let a = locks.lock("tta").await;
        assert!(locks.lock("tta").now_or_never().is_none(), "the same pod waits");
        let b = locks.lock("ttb").now_or_never().expect("another pod does not wait");
        drop((a, b));
        assert_eq!(locks.len(), 0);
        assert!(locks.lock("tta").now_or_never().is_some(), "released");
    }
}
