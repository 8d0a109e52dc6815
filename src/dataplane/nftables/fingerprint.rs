//! What the owner last wrote, kept in a small file so that a restarted agent can tell that the
//! table in the kernel is exactly the one it would write and adopt it without a transaction:
//! a digest of the whole-table batch of the desired state, and a digest of the table as the
//! kernel listed it right after the write (normalized: no handles, no counter values). Both
//! must match to adopt; anything else (no file, another desired state, a table someone
//! changed) falls back to writing the table whole.

use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Digest of `render::replace_table` of the desired state.
    pub desired: String,
    /// Digest of the normalized listing read back after writing it.
    pub listing: String,
}

/// A digest of a value's JSON: stable for one build of tortie, which is all adoption needs (a
/// different build at worst writes the table once).
pub fn digest(value: &impl Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}-{}", h.finish(), text.len())
}

pub async fn load(path: &Path) -> Option<Fingerprint> {
    serde_json::from_str(&tokio::fs::read_to_string(path).await.ok()?).ok()
}

/// Writes through a temporary file and a rename, so a crash leaves the old fingerprint or the
/// new one.
pub async fn save(path: &Path, fingerprint: &Fingerprint) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, serde_json::to_vec(fingerprint)?).await?;
    tokio::fs::rename(&tmp, path).await
}

pub async fn remove(path: &Path) {
    let _ = tokio::fs::remove_file(path).await;
}
