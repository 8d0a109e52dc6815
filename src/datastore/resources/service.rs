//! Kubernetes' core/v1 Service as a tortie record (named `namespace/name`; on the kubernetes
//! datastore the API server's own object). The record is a projection: only the fields tortie
//! reads to advertise service addresses over BGP (`crate::services`) are kept; the rest of a
//! Service (ports, selector, session affinity …) belongs to the service proxy and is dropped when
//! a Kubernetes Service is read ([`super::kube_projection`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The Service types Kubernetes knows.
pub const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
/// The values of `externalTrafficPolicy` and `internalTrafficPolicy`.
pub const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
/// The `clusterIP` of a headless Service: no address.
pub const HEADLESS: &str = "None";
/// The `loadBalancerClass` values tortie's controller answers to: Calico's, so Services written
/// for Calico's controller keep their addresses, and tortie's own.
pub const LOAD_BALANCER_CLASSES: [&str; 2] = ["calico", "tortie"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The Service's `metadata.annotations`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "ServiceStatus::is_empty")]
    pub status: ServiceStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// `ClusterIP` when absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(rename = "clusterIP", default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    #[serde(rename = "externalIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    #[serde(rename = "loadBalancerIP", default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_ip: Option<String>,
    /// The load-balancer implementation meant to give the Service its address: tortie's
    /// controller takes Services without one and those of [`LOAD_BALANCER_CLASSES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// `Cluster` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    /// `Cluster` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceStatus {
    #[serde(default, skip_serializing_if = "LoadBalancerStatus::is_empty")]
    pub load_balancer: LoadBalancerStatus,
}

impl ServiceStatus {
    pub fn is_empty(&self) -> bool {
        self.load_balancer.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

impl LoadBalancerStatus {
    pub fn is_empty(&self) -> bool {
        self.ingress.is_empty()
    }
}

/// One load-balancer address (a `hostname` only ingress has no `ip` and is not tortie's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerIngress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

fn address(field: &str, text: &str) -> Result<(), String> {
    text.parse::<IpAddr>().map(|_| ()).map_err(|_| format!("{field}: {text:?} is not an IP address"))
}

fn one_of(field: &str, value: &Option<String>, allowed: &[&str]) -> Result<(), String> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => {
            Err(format!("{field}: {v:?} is not one of {}", allowed.join(", ")))
        }
        _ => Ok(()),
    }
}

impl Service {
    pub(super) fn check(&self) -> Result<(), String> {
        let spec = &self.spec;
        one_of("spec.type", &spec.service_type, &SERVICE_TYPES)?;
        one_of("spec.externalTrafficPolicy", &spec.external_traffic_policy, &TRAFFIC_POLICIES)?;
        one_of("spec.internalTrafficPolicy", &spec.internal_traffic_policy, &TRAFFIC_POLICIES)?;
        if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != HEADLESS) {
            address("spec.clusterIP", ip)?;
        }
        for (i, ip) in spec.cluster_ips.iter().enumerate().filter(|(_, ip)| ip.as_str() != HEADLESS) {
            address(&format!("spec.clusterIPs[{i}]"), ip)?;
        }
        for (i, ip) in spec.external_ips.iter().enumerate() {
            address(&format!("spec.externalIPs[{i}]"), ip)?;
        }
        if let Some(ip) = spec.load_balancer_ip.as_deref().filter(|ip| !ip.is_empty()) {
            address("spec.loadBalancerIP", ip)?;
        }
        for (i, ingress) in self.status.load_balancer.ingress.iter().enumerate() {
            if let Some(ip) = &ingress.ip {
                address(&format!("status.loadBalancer.ingress[{i}].ip"), ip)?;
            }
        }
        Ok(())
    }

    /// Whether tortie's load-balancer controller gives this Service its address: type
    /// LoadBalancer and no `loadBalancerClass`, or one of [`LOAD_BALANCER_CLASSES`].
    pub fn takes_tortie_load_balancer(&self) -> bool {
        self.service_type() == "LoadBalancer"
            && self.spec.load_balancer_class.as_deref().is_none_or(|class| LOAD_BALANCER_CLASSES.contains(&class))
    }

    /// The Service's type (`ClusterIP` when not given).
    pub fn service_type(&self) -> &str {
        self.spec.service_type.as_deref().unwrap_or("ClusterIP")
    }

    /// Its cluster addresses: `clusterIPs`, or `clusterIP` when that list is empty; none for a
    /// headless Service.
    pub fn cluster_addresses(&self) -> Vec<IpAddr> {
        let listed: Vec<&str> = if self.spec.cluster_ips.is_empty() {
            self.spec.cluster_ip.as_deref().into_iter().collect()
        } else {
            self.spec.cluster_ips.iter().map(String::as_str).collect()
        };
        listed.into_iter().filter_map(|ip| ip.parse().ok()).collect()
    }

    /// Whether `externalTrafficPolicy` is `Local`.
    pub fn external_local(&self) -> bool {
        self.spec.external_traffic_policy.as_deref() == Some("Local")
    }

    /// Whether `internalTrafficPolicy` is `Local`.
    pub fn internal_local(&self) -> bool {
        self.spec.internal_traffic_policy.as_deref() == Some("Local")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Service, String> {
        let s: Service = serde_json::from_str(json).map_err(|e| e.to_string())?;
        s.check().map(|()| s)
    }

    #[test]
    fn bad_values_name_their_field_and_value() {
        for (json, expected) in [
            (r#"{"spec": {"type": "Balanced"}}"#, "spec.type: \"Balanced\""),
            (r#"{"spec": {"externalTrafficPolicy": "local"}}"#, "spec.externalTrafficPolicy: \"local\""),
            (r#"{"spec": {"clusterIPs": ["10.96.0.1", "x"]}}"#, "spec.clusterIPs[1]: \"x\""),
            (r#"{"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3"}]}}}"#, "status.loadBalancer.ingress[0].ip"),
        ] {
            let error = parse(json).expect_err(json);
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn cluster_addresses_prefer_the_list_and_skip_headless() {
        let s = parse(r#"{"spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"]}}"#).unwrap();
        assert_eq!(s.cluster_addresses(), ["10.96.0.10".parse::<IpAddr>().unwrap(), "fd00::10".parse().unwrap()]);
        let s = parse(r#"{"spec": {"clusterIP": "None"}}"#).unwrap();
        assert!(s.cluster_addresses().is_empty());
        assert_eq!(s.service_type(), "ClusterIP");
    }
}
