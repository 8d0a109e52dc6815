//! The `kubernetes` section: what the agent does beyond the datastore when it runs as a
//! DaemonSet — install the CNI plugin and its conflist, and collect addresses of deleted pods.

use super::error::FieldError;
use super::model::DatastoreType;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Kubernetes mode (see `docs/operator-guide.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Copy this binary into `cni_bin_dir` and write the conflist once the agent is ready.
    /// Absent: on exactly when `datastore.type` is `kubernetes`.
    pub install_cni: Option<bool>,
    /// Where the container runtime looks for CNI plugins (the host's `/opt/cni/bin`, as mounted).
    pub cni_bin_dir: PathBuf,
    /// Where the container runtime looks for network configurations (the host's `/etc/cni/net.d`).
    pub cni_net_dir: PathBuf,
    /// File name of the conflist; runtimes take the lexically first file, so the prefix matters.
    pub cni_conf_name: String,
    /// File name of the plugin in `cni_bin_dir`, and the conflist's plugin `type`.
    pub cni_plugin_name: String,
    /// The conflist's network `name`.
    pub cni_network_name: String,
    /// How often this node's IPAM handles are compared with the Pods on the node.
    pub pod_gc_interval_seconds: u32,
    /// How long a handle's pod must have been gone before its addresses are released.
    pub pod_gc_grace_seconds: u32,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            install_cni: None,
            cni_bin_dir: PathBuf::from("/opt/cni/bin"),
            cni_net_dir: PathBuf::from("/etc/cni/net.d"),
            cni_conf_name: "10-tortie.conflist".to_string(),
            cni_plugin_name: "tortie".to_string(),
            cni_network_name: "k8s-pod-network".to_string(),
            pod_gc_interval_seconds: 60,
            pod_gc_grace_seconds: 300,
        }
    }
}

impl KubernetesConfig {
    /// Whether the agent installs the CNI plugin, given the datastore in use.
    pub fn installs_cni(&self, datastore: DatastoreType) -> bool {
        self.install_cni.unwrap_or(datastore == DatastoreType::Kubernetes)
    }

    /// Problems with this section, each naming its field.
    pub(super) fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut err = |path: &str, msg: String| errs.push(FieldError::new(format!("kubernetes.{path}"), msg));
        for (field, dir) in [("cni_bin_dir", &self.cni_bin_dir), ("cni_net_dir", &self.cni_net_dir)] {
            if !dir.is_absolute() {
                err(field, format!("{:?} is not an absolute path", dir.display().to_string()));
            }
        }
        if !self.cni_conf_name.ends_with(".conflist") || self.cni_conf_name.contains('/') {
            err("cni_conf_name", format!("{:?} must be a file name ending in .conflist", self.cni_conf_name));
        }
        if self.cni_plugin_name.is_empty() || self.cni_plugin_name.contains('/') {
            err("cni_plugin_name", format!("{:?} must be a plain file name", self.cni_plugin_name));
        }
        if self.cni_network_name.is_empty() {
            err("cni_network_name", "\"\" is empty; CNI requires a network name".into());
        }
        if self.pod_gc_interval_seconds == 0 {
            err("pod_gc_interval_seconds", "0 is too short; use at least 1 second".into());
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_install_is_on_by_default_only_with_the_kubernetes_datastore() {
        let k = KubernetesConfig::default();
        assert!(k.installs_cni(DatastoreType::Kubernetes));
        assert!(!k.installs_cni(DatastoreType::Sqlite));
        assert!(!k.installs_cni(DatastoreType::Etcd));
        let forced = KubernetesConfig { install_cni: Some(true), ..KubernetesConfig::default() };
        assert!(forced.installs_cni(DatastoreType::Sqlite));
    }

    #[test]
    fn bad_fields_are_named_with_their_values() {
        let k = KubernetesConfig {
            cni_bin_dir: PathBuf::from("opt/cni"),
            cni_conf_name: "tortie.conf".into(),
            pod_gc_interval_seconds: 0,
            ..KubernetesConfig::default()
        };
        let errs: Vec<String> = k.validate().iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("kubernetes.cni_bin_dir: \"opt/cni\""), "{errs:?}");
        assert!(errs[1].starts_with("kubernetes.cni_conf_name: \"tortie.conf\""), "{errs:?}");
        assert!(errs[2].starts_with("kubernetes.pod_gc_interval_seconds: 0"), "{errs:?}");
    }
}
