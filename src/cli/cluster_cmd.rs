//! `tortie cluster status` (and `kubectl tortie status`): every node's NodeStatus record from the
//! datastore the configuration names, as one table ([`super::cluster_view`]).

use super::apply_cmd::Failure;
use super::cluster_view::{render, view};
use super::status_cmd::{EXIT_NOT_READY, now};
use super::{ListFormat, StoreArgs};
use crate::config::{ConfigSource, load};
use crate::datastore::resources::NodeStatus;
use std::process::ExitCode;

/// The file name under which this binary is a kubectl plugin (`kubectl tortie …`).
pub const KUBECTL_PLUGIN: &str = "kubectl-tortie";

/// The command line `tortie` parses when run as `kubectl-tortie ARGS…`: `tortie cluster ARGS…`.
pub fn kubectl_plugin_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = vec!["tortie".into(), "cluster".into()];
    out.extend(args.into_iter().skip(1));
    out
}

/// Prints the cluster's status; exit 3 when a node is not ready or stale, or a session
/// asymmetric. As a kubectl plugin without a configuration, the datastore is the cluster
/// kubectl uses (kubernetes, from `KUBECONFIG` or `~/.kube/config`).
pub async fn status(store: &StoreArgs, output: ListFormat, kubectl_plugin: bool) -> Result<ExitCode, Failure> {
    let mut source = ConfigSource::from_process(store.config.as_deref());
    // `datastore.type` as a `TORTIE_*` override.
    let datastore_type = "TORTIE_DATASTORE_TYPE".to_string();
    if kubectl_plugin && source.file.is_none() && !source.env.iter().any(|(k, _)| *k == datastore_type) {
        source.env.push((datastore_type, "kubernetes".into()));
    }
    let loaded = load(&source)?;
    let ds = super::ipam_cmd::open_datastore(&loaded.config.datastore).await?;
    let listing = ds.list::<NodeStatus>().await?;
    let records: Vec<(String, NodeStatus)> = listing.items.into_iter().map(|s| (s.name, s.spec)).collect();
    let unreadable = listing.invalid.iter().map(ToString::to_string).collect();
    let now = now();
    let v = view(&records, unreadable, now);
    if !super::output::print(output, &v, |v, wide| render(v, now, wide)) {
        return Ok(ExitCode::from(1));
    }
    Ok(if v.healthy() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_NOT_READY) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubectl_plugin_is_tortie_cluster() {
        let args = kubectl_plugin_args(vec!["/usr/local/bin/kubectl-tortie".into(), "status".into(), "-o".into()]);
        assert_eq!(args, ["tortie", "cluster", "status", "-o"]);
    }
}
