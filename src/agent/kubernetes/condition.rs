//! The Kubernetes Node's `NetworkUnavailable` condition. Cloud route controllers and some
//! installers set it True until a network plugin says otherwise; the scheduler keeps pods off a
//! node whose network is unavailable. tortie sets it False (reason `TortieIsUp`, as Calico's
//! `CalicoIsUp`) once its route programmer has synced.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::json;

/// The condition's reason.
pub const REASON: &str = "TortieIsUp";

/// Patches the node's status subresource with a strategic merge patch, which merges
/// `conditions` by `type`: the kubelet's own conditions are left alone.
pub async fn set_network_available(client: &kube::Client, node: &str) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<Node>(&()));
    // Time serialises as Kubernetes expects (RFC 3339, whole seconds).
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let patch = json!({"status": {"conditions": [{
        "type": "NetworkUnavailable",
        "status": "False",
        "reason": REASON,
        "message": "tortie is running on this node",
        "lastTransitionTime": now,
        "lastHeartbeatTime": now,
    }]}});
    api.patch_status(node, &PatchParams::default(), &Patch::Strategic(patch)).await?;
    Ok(())
}
