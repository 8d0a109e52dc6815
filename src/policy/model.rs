//! The policy model every kind is converted to (Calico's: a Kubernetes NetworkPolicy is a
//! Calico policy at order 1000), the endpoints it applies to, and the packets it judges.

use crate::datastore::resources::Action;
use crate::datastore::resources::policy_rule::PortMatch;
use crate::selector::Selector;
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The label Calico gives every endpoint with its namespace's name.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// The label Calico gives every endpoint with its service account's name.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// The label Calico gives every endpoint with its orchestrator.
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// The label Calico gives namespaces and service accounts with their own name.
pub const NAME_LABEL: &str = "projectcalico.org/name";
/// The label Kubernetes gives every namespace with its name.
pub const KUBE_NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A port an endpoint names (a container port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamedPort {
    pub name: String,
    pub protocol: u8,
    pub port: u16,
}

/// A workload endpoint: a pod anywhere in the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// `namespace/name`.
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
}

impl Endpoint {
    /// Its labels as selectors see them: its own and Calico's (namespace, orchestrator,
    /// service account).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(NAMESPACE_LABEL.into(), self.namespace.clone());
        labels.insert(ORCHESTRATOR_LABEL.into(), "k8s".into());
        if let Some(sa) = &self.service_account {
            labels.insert(SERVICE_ACCOUNT_LABEL.into(), sa.clone());
        }
        labels
    }

    /// The labels a `serviceAccountSelector` sees: the account's name.
    pub fn service_account_labels(&self) -> BTreeMap<String, String> {
        self.service_account.iter().map(|sa| (NAME_LABEL.to_string(), sa.clone())).collect()
    }
}

/// Every namespace's labels, as namespace selectors see them (own labels plus its name under
/// Calico's and Kubernetes' name labels; a namespace without a record has only those).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaces(pub BTreeMap<String, BTreeMap<String, String>>);

impl Namespaces {
    pub fn labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self.0.get(namespace).cloned().unwrap_or_default();
        labels.insert(NAME_LABEL.into(), namespace.into());
        labels.insert(KUBE_NAMESPACE_NAME_LABEL.into(), namespace.into());
        labels
    }
}

/// Which namespaces an endpoint selector looks in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceScope {
    /// This one (a namespaced policy's rule without a namespace selector).
    Only(String),
    /// Those whose labels match (the text is the selector's canonical form, with `global()`
    /// written `!all()`: it selects non-namespaced endpoints, and every workload is namespaced).
    Matching(String),
    /// Every namespace (a global policy's rule without a namespace selector).
    Any,
}

/// Endpoints by their labels and namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointSelector {
    /// Canonical text of the label selector.
    pub selector: String,
    pub namespaces: NamespaceScope,
}

impl EndpointSelector {
    /// Whether `endpoint` is selected. Selector texts are canonical forms of parsed selectors,
    /// so they parse.
    pub fn matches(&self, endpoint: &Endpoint, namespaces: &Namespaces) -> bool {
        let in_scope = match &self.namespaces {
            NamespaceScope::Only(ns) => *ns == endpoint.namespace,
            NamespaceScope::Matching(text) => parse(text).matches(&namespaces.labels(&endpoint.namespace)),
            NamespaceScope::Any => true,
        };
        in_scope && parse(&self.selector).matches(&endpoint.selector_labels())
    }
}

/// A canonical selector text parsed (it always parses; `all()` stands in should it not).
pub fn parse(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|_| Selector::all())
}

/// One side of a rule (the packet's source or destination); every part given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entity {
    pub nets: Vec<IpNetwork>,
    pub not_nets: Vec<IpNetwork>,
    pub selector: Option<EndpointSelector>,
    pub not_selector: Option<EndpointSelector>,
    pub ports: Vec<PortMatch>,
    pub not_ports: Vec<PortMatch>,
}

/// An ICMP type with, optionally, its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Icmp {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

/// One rule of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub ip_version: Option<u8>,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<Icmp>,
    pub not_icmp: Option<Icmp>,
    pub source: Entity,
    pub destination: Entity,
}

/// Which endpoints a policy applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applies {
    pub selector: EndpointSelector,
    /// Over the endpoint's service account (Calico's `serviceAccountSelector`).
    pub service_accounts: Option<String>,
}

/// A policy of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Unique; the tie-breaker between equal orders, and the name in logs
    /// (`knp.default.ns/name` for a Kubernetes policy, `ns/name`, `global/name`).
    pub name: String,
    /// `None` is after every number.
    pub order: Option<f64>,
    pub applies: Applies,
    /// `Some` when the policy applies to ingress (its rules, perhaps none).
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    /// Whether it applies to `endpoint` at all (either direction).
    pub fn selects(&self, endpoint: &Endpoint, namespaces: &Namespaces) -> bool {
        self.applies.selector.matches(endpoint, namespaces)
            && self
                .applies
                .service_accounts
                .as_deref()
                .is_none_or(|s| parse(s).matches(&endpoint.service_account_labels()))
    }

    /// The rules of a direction, if the policy applies to it.
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

/// Policies in the order they apply: by order (none last), then name.
pub fn sorted(policies: &[Policy]) -> Vec<&Policy> {
    let mut out: Vec<&Policy> = policies.iter().collect();
    out.sort_by(|a, b| {
        let key = |p: &Policy| p.order.unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Into the endpoint (the packet's destination).
    Ingress,
    /// Out of the endpoint (the packet's source).
    Egress,
}

/// A packet's header fields that policy reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: u8,
    /// Ports for TCP, UDP, SCTP, UDPLite; 0 otherwise.
    pub source_port: u16,
    pub destination_port: u16,
    /// For ICMP and ICMPv6.
    pub icmp: Option<(u8, u8)>,
}

/// The verdict of one direction at one endpoint, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No policy selects the endpoint for this direction.
    Unselected,
    /// Rule `rule` of policy `policy` decided with `action` (Allow, Deny or Pass).
    Rule { policy: String, rule: usize, action: Action },
    /// Selected, and no rule decided.
    EndOfTier,
}

impl Verdict {
    pub fn allows(&self) -> bool {
        match self {
            Verdict::Unselected => true,
            // Pass leaves the only tier; the namespace's profile then allows, as Calico's does.
            Verdict::Rule { action, .. } => matches!(action, Action::Allow | Action::Pass),
            Verdict::EndOfTier => false,
        }
    }
}
