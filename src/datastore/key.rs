//! What a record is called: its [`Kind`] and its name.

use std::fmt;

/// The kinds of resource the datastore holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    IpPool,
    IpamBlock,
    BlockAffinity,
    IpamHandle,
    IpamConfig,
    IpReservation,
    Node,
    BgpPeer,
    BgpConfiguration,
    /// Passwords (BGP MD5 keys); a Kubernetes Secret in the agent's namespace on Kubernetes.
    Secret,
    BgpFilter,
    /// Calico's namespaced NetworkPolicy; named `namespace/name`.
    NetworkPolicy,
    GlobalNetworkPolicy,
    /// Kubernetes' `networking.k8s.io/v1` NetworkPolicy (the API server's own object on
    /// Kubernetes); named `namespace/name`.
    KubeNetworkPolicy,
    /// A namespace's labels (the Kubernetes Namespace on Kubernetes).
    Namespace,
    /// Kubernetes' core/v1 Service, the fields tortie reads (the API server's own object on
    /// Kubernetes); named `namespace/name`.
    Service,
    /// Kubernetes' discovery.k8s.io/v1 EndpointSlice, the fields tortie reads; named
    /// `namespace/name`.
    EndpointSlice,
    /// Which agent holds a cluster-wide duty (the load-balancer controller).
    Lease,
    /// A node's own report of its sessions and readiness, written by its agent.
    NodeStatus,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 19] = [
        Kind::IpPool,
        Kind::IpamBlock,
        Kind::BlockAffinity,
        Kind::IpamHandle,
        Kind::IpamConfig,
        Kind::IpReservation,
        Kind::Node,
        Kind::BgpPeer,
        Kind::BgpConfiguration,
        Kind::Secret,
        Kind::BgpFilter,
        Kind::NetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::KubeNetworkPolicy,
        Kind::Namespace,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Lease,
        Kind::NodeStatus,
    ];

    /// The kind as Calico spells it (and as the Kubernetes CRD kind).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IpPool => "IPPool",
            Kind::IpamBlock => "IPAMBlock",
            Kind::BlockAffinity => "BlockAffinity",
            Kind::IpamHandle => "IPAMHandle",
            Kind::IpamConfig => "IPAMConfig",
            Kind::IpReservation => "IPReservation",
            Kind::Node => "Node",
            Kind::BgpPeer => "BGPPeer",
            Kind::BgpConfiguration => "BGPConfiguration",
            Kind::Secret => "Secret",
            Kind::BgpFilter => "BGPFilter",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::KubeNetworkPolicy => "KubernetesNetworkPolicy",
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Lease => "Lease",
            Kind::NodeStatus => "NodeStatus",
        }
    }

    /// The lower-case plural: the Kubernetes resource name and the etcd key segment.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::IpPool => "ippools",
            Kind::IpamBlock => "ipamblocks",
            Kind::BlockAffinity => "blockaffinities",
            Kind::IpamHandle => "ipamhandles",
            Kind::IpamConfig => "ipamconfigs",
            Kind::IpReservation => "ipreservations",
            Kind::Node => "nodes",
            Kind::BgpPeer => "bgppeers",
            Kind::BgpConfiguration => "bgpconfigurations",
            Kind::Secret => "secrets",
            Kind::BgpFilter => "bgpfilters",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::GlobalNetworkPolicy => "globalnetworkpolicies",
            Kind::KubeNetworkPolicy => "kubernetesnetworkpolicies",
            Kind::Namespace => "namespaces",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Lease => "leases",
            Kind::NodeStatus => "nodestatuses",
        }
    }

    /// Whether its records live in a namespace: their names are `namespace/name`.
    pub fn namespaced(self) -> bool {
        matches!(self, Kind::NetworkPolicy | Kind::KubeNetworkPolicy | Kind::Service | Kind::EndpointSlice)
    }

    /// The kind whose [`Kind::plural`] is `plural`.
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == plural)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record's address: kind and name. Displays as `Kind/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    pub name: String,
}

impl Key {
    pub fn new(kind: Kind, name: impl Into<String>) -> Key {
        Key { kind, name: name.into() }
    }

    /// Why `name` cannot name a record, if it cannot. Names follow Kubernetes' DNS-1123
    /// subdomain rule so that every backend can store every name unchanged.
    pub fn name_problem(name: &str) -> Option<String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if name.is_empty() || name.len() > 253 {
            Some(format!("name {name:?} must be 1 to 253 characters"))
        } else if !name.chars().all(ok_char) || !alnum(name.chars().next()) || !alnum(name.chars().last()) {
            Some(format!(
                "name {name:?} must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
            ))
        } else {
            None
        }
    }
}

impl Key {
    /// Why `name` cannot name a record of `kind`, if it cannot: a namespaced kind's names are
    /// `namespace/name`, a namespace's and a namespace part are DNS-1123 labels.
    pub fn problem_of(kind: Kind, name: &str) -> Option<String> {
        if kind == Kind::Namespace {
            return Key::namespace_problem(name);
        }
        if !kind.namespaced() {
            return Key::name_problem(name);
        }
        match name.split_once('/') {
            Some((namespace, name)) => Key::namespace_problem(namespace).or_else(|| Key::name_problem(name)),
            None => Some(format!("name {name:?} of a {kind} must be namespace/name")),
        }
    }

    /// Why `name` cannot name a namespace (a DNS-1123 label), if it cannot.
    pub fn namespace_problem(name: &str) -> Option<String> {
        if name.contains('.') || name.len() > MAX_NAMESPACE_LEN {
            return Some(format!(
                "namespace {name:?} must be 1 to {MAX_NAMESPACE_LEN} lower-case letters, digits and '-'"
            ));
        }
        Key::name_problem(name)
    }

    /// A namespaced record's namespace and name (`None` and the whole name for the others).
    pub fn split_namespace(&self) -> (Option<&str>, &str) {
        match self.name.split_once('/') {
            Some((ns, name)) if self.kind.namespaced() => (Some(ns), name),
            _ => (None, &self.name),
        }
    }
}

/// The longest namespace name (a DNS-1123 label).
pub const MAX_NAMESPACE_LEN: usize = 63;

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_plural(kind.plural()), Some(kind));
        }
    }

    #[test]
    fn names_follow_dns_1123() {
        assert_eq!(Key::name_problem("10-0-0-0-26"), None);
        assert!(Key::name_problem("Upper").is_some());
        assert!(Key::name_problem("-x").is_some());
        assert!(Key::name_problem("").is_some());
        assert!(Key::name_problem("a/b").is_some());
    }

    #[test]
    fn namespaced_names_are_namespace_slash_name() {
        assert_eq!(Key::problem_of(Kind::NetworkPolicy, "prod/allow-web"), None);
        assert!(Key::problem_of(Kind::NetworkPolicy, "allow-web").unwrap().contains("must be namespace/name"));
        assert!(Key::problem_of(Kind::KubeNetworkPolicy, "a.b/x").is_some());
        assert!(Key::problem_of(Kind::GlobalNetworkPolicy, "a/x").is_some());
        assert!(Key::problem_of(Kind::Namespace, "a.b").is_some());
        let key = Key::new(Kind::NetworkPolicy, "prod/allow-web");
        assert_eq!(key.split_namespace(), (Some("prod"), "allow-web"));
    }
}
