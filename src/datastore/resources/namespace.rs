//! A namespace's labels, which policies' namespace selectors match (on the kubernetes datastore
//! the Kubernetes Namespace's own labels).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Namespace {
    pub(super) fn check(&self) -> Result<(), String> {
        super::check_labels(&self.labels).map_err(|e| format!("labels: {e}"))
    }
}
