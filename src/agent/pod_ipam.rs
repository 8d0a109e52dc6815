//! Calico's per-pod IPAM annotations: `cni.projectcalico.org/ipAddrs` (the exact addresses, a
//! JSON list, at most one per family) and `cni.projectcalico.org/ipv4pools` / `ipv6pools` (a
//! JSON list of pool names or CIDRs; the pod's annotation wins over its namespace's). Parsed
//! here against the pools; every error names the annotation and its value. The workload service
//! applies them at CNI ADD (`agent::workloads`), reading them from the Pod in Kubernetes mode
//! (`agent::kubernetes::pod_annotations`), else from the runtime's CNI_ARGS.

use crate::datastore::Stored;
use crate::datastore::resources::IpPool;
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const IP_ADDRS: &str = "cni.projectcalico.org/ipAddrs";
pub use crate::datastore::resources::namespace::{IPV4_POOLS, IPV6_POOLS};
/// Addresses used without IPAM: refused, since every pod address of tortie's is in its IPAM
/// (where routes, release and GC find it).
pub const IP_ADDRS_NO_IPAM: &str = "cni.projectcalico.org/ipAddrsNoIpam";

/// What a pod's annotations ask of IPAM. Empty lists: no constraint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodIpam {
    /// Exactly these addresses (at most one IPv4 and one IPv6).
    pub addresses: Vec<IpAddr>,
    /// Only from these pools (their CIDRs), per family.
    pub ipv4_pools: Vec<IpNetwork>,
    pub ipv6_pools: Vec<IpNetwork>,
}

/// Reads the annotations of a pod and of its namespace (for the pool lists only, as Calico).
pub fn parse(
    pod: &BTreeMap<String, String>,
    namespace: &BTreeMap<String, String>,
    pools: &[Stored<IpPool>],
) -> Result<PodIpam, String> {
    // The pod's own list, else its namespace's (errors then say whose it is).
    let pick = |key: &str| -> Option<(&String, &'static str)> {
        pod.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| (v, ""))
            .or_else(|| namespace.get(key).map(|v| (v, "namespace ")))
    };
    let mut out = PodIpam::default();
    if let Some(value) = pod.get(IP_ADDRS_NO_IPAM) {
        return Err(bad(
            IP_ADDRS_NO_IPAM,
            value,
            format!("is not supported: tortie gives every pod address through its IPAM (use {IP_ADDRS})"),
        ));
    }
    if let Some(value) = pod.get(IP_ADDRS) {
        out.addresses = addresses(value)?;
    }
    if let Some((value, whose)) = pick(IPV4_POOLS) {
        out.ipv4_pools = pool_cidrs(IPV4_POOLS, value, 4, pools).map_err(|e| format!("{whose}{e}"))?;
    }
    if let Some((value, whose)) = pick(IPV6_POOLS) {
        out.ipv6_pools = pool_cidrs(IPV6_POOLS, value, 6, pools).map_err(|e| format!("{whose}{e}"))?;
    }
    Ok(out)
}

fn bad(annotation: &str, value: &str, why: impl std::fmt::Display) -> String {
    format!("annotation {annotation} {value:?}: {why}")
}

fn string_list(annotation: &str, value: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> =
        serde_json::from_str(value).map_err(|e| bad(annotation, value, format!("not a JSON list of strings ({e})")))?;
    if list.is_empty() {
        return Err(bad(annotation, value, "is empty"));
    }
    Ok(list)
}

fn addresses(value: &str) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::new();
    for text in string_list(IP_ADDRS, value)? {
        let ip: IpAddr =
            text.trim().parse().map_err(|_| bad(IP_ADDRS, value, format!("{text:?} is not an IP address")))?;
        if out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(bad(IP_ADDRS, value, format!("more than one {family} address")));
        }
        out.push(ip);
    }
    Ok(out)
}

/// Each entry is a pool's name or its CIDR; the pool must exist, be enabled and be of `family`.
fn pool_cidrs(annotation: &str, value: &str, family: u8, pools: &[Stored<IpPool>]) -> Result<Vec<IpNetwork>, String> {
    let mut out = Vec::new();
    for entry in string_list(annotation, value)? {
        let cidr: Option<IpNetwork> = entry.parse().ok();
        let pool = pools.iter().find(|p| p.name == entry || Some(p.spec.cidr) == cidr);
        let Some(pool) = pool.filter(|p| !p.spec.disabled) else {
            return Err(bad(annotation, value, format!("pool {entry:?} does not exist or is disabled")));
        };
        if pool.spec.cidr.is_ipv4() != (family == 4) {
            return Err(bad(annotation, value, format!("pool {entry:?} ({}) is not IPv{family}", pool.spec.cidr)));
        }
        out.push(pool.spec.cidr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::Revision;

    fn pools() -> Vec<Stored<IpPool>> {
        let stored = |name: &str, cidr: &str| Stored {
            name: name.into(),
            revision: Revision(1),
            spec: IpPool::new(cidr.parse().unwrap()),
        };
        vec![stored("blue", "10.1.0.0/16"), stored("green", "10.2.0.0/16"), stored("six", "fd00::/48")]
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn names_and_cidrs_resolve_and_the_pod_wins_over_its_namespace() {
        let pod = map(&[(IPV4_POOLS, r#"["blue", "10.2.0.0/16"]"#)]);
        let namespace = map(&[(IPV4_POOLS, r#"["green"]"#), (IPV6_POOLS, r#"["six"]"#)]);
        let got = parse(&pod, &namespace, &pools()).unwrap();
        assert_eq!(got.ipv4_pools, vec!["10.1.0.0/16".parse().unwrap(), "10.2.0.0/16".parse().unwrap()]);
        assert_eq!(got.ipv6_pools, vec!["fd00::/48".parse().unwrap()]);
        assert!(got.addresses.is_empty());
        let addrs = parse(&map(&[(IP_ADDRS, r#"["10.1.0.7", "fd00::7"]"#)]), &BTreeMap::new(), &pools()).unwrap();
        assert_eq!(addrs.addresses, vec!["10.1.0.7".parse::<IpAddr>().unwrap(), "fd00::7".parse().unwrap()]);
    }

    #[test]
    fn bad_values_name_the_annotation_and_value() {
        for (key, value, why) in [
            (IP_ADDRS, "10.1.0.7", "not a JSON list"),
            (IP_ADDRS, "[]", "is empty"),
            (IP_ADDRS, r#"["10.1.0.300"]"#, "not an IP address"),
            (IP_ADDRS, r#"["10.1.0.7", "10.1.0.8"]"#, "more than one IPv4"),
            (IPV4_POOLS, r#"["red"]"#, "does not exist"),
            (IPV4_POOLS, r#"["six"]"#, "is not IPv4"),
            (IPV6_POOLS, r#"["10.1.0.0/16"]"#, "is not IPv6"),
            (IP_ADDRS_NO_IPAM, r#"["10.9.0.1"]"#, "is not supported"),
        ] {
            let err = parse(&map(&[(key, value)]), &BTreeMap::new(), &pools()).unwrap_err();
            assert!(err.starts_with(&format!("annotation {key} {value:?}: ")) && err.contains(why), "{err}");
        }
    }
}
