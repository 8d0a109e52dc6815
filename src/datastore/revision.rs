//! The revision that guards every write: a store-wide, strictly increasing counter (sqlite's
//! change counter, etcd's mod_revision, Kubernetes' resourceVersion).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in the datastore's history. Each write gets a revision greater than every earlier one,
/// so revisions order changes across all keys of one datastore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
