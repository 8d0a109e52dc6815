//! A Kubernetes NetworkPolicy as the Calico policy Calico makes of it (libcalico-go's
//! `k8s_network_policy` converter): named `knp.default.<name>` in the same namespace, order
//! 1000, selecting its `podSelector`; one Allow rule per peer and port (every peer or port
//! when none is given); a pod selector alone looks in the policy's namespace, a namespace
//! selector in the namespaces it selects (with the pod selector, if any, inside them); an
//! `ipBlock` is `nets` with its `except` as `notNets`; `endPort` makes a range.

use super::calico;
use super::model::Policy;
use crate::datastore::resources::{
    Action, EntityRule, IntOrString, KubeNetworkPolicy, KubePolicyType, LabelOperator, LabelSelector, NetworkPolicy,
    PolicyPeer, PolicyPort, PolicyType, Rule,
};

/// The order Calico gives every Kubernetes NetworkPolicy.
pub const KUBE_POLICY_ORDER: f64 = 1000.0;
/// The prefix of a converted policy's name.
pub const NAME_PREFIX: &str = "knp.default.";

/// The model of Kubernetes NetworkPolicy `name` in `namespace`.
pub fn policy(namespace: &str, name: &str, kube: &KubeNetworkPolicy) -> Result<Policy, String> {
    calico::namespaced(namespace, &format!("{NAME_PREFIX}{name}"), &to_calico(kube))
}

/// The Calico policy Calico makes of `kube`.
pub fn to_calico(kube: &KubeNetworkPolicy) -> NetworkPolicy {
    let types = kube
        .effective_types()
        .into_iter()
        .map(|t| match t {
            KubePolicyType::Ingress => PolicyType::Ingress,
            KubePolicyType::Egress => PolicyType::Egress,
        })
        .collect();
    NetworkPolicy {
        order: Some(KUBE_POLICY_ORDER),
        selector: Some(selector_text(&kube.pod_selector)),
        types,
        ingress: kube.ingress.iter().flat_map(|r| rules(&r.from, &r.ports, true)).collect(),
        egress: kube.egress.iter().flat_map(|r| rules(&r.to, &r.ports, false)).collect(),
        ..NetworkPolicy::default()
    }
}

/// Kubernetes' label selector in Calico's language (empty: `all()`).
pub fn selector_text(selector: &LabelSelector) -> String {
    let quote = |v: &str| if v.contains('\'') { format!("\"{v}\"") } else { format!("'{v}'") };
    let list = |values: &[String]| values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ");
    let mut terms: Vec<String> = selector.match_labels.iter().map(|(k, v)| format!("{k} == {}", quote(v))).collect();
    for r in &selector.match_expressions {
        terms.push(match r.operator {
            LabelOperator::In => format!("{} in {{ {} }}", r.key, list(&r.values)),
            LabelOperator::NotIn => format!("{} not in {{ {} }}", r.key, list(&r.values)),
            LabelOperator::Exists => format!("has({})", r.key),
            LabelOperator::DoesNotExist => format!("!has({})", r.key),
        });
    }
    if terms.is_empty() { "all()".to_string() } else { terms.join(" && ") }
}

/// The Allow rules of one Kubernetes rule: peers × ports.
fn rules(peers: &[PolicyPeer], ports: &[PolicyPort], ingress: bool) -> Vec<Rule> {
    let peers: Vec<Option<&PolicyPeer>> = if peers.is_empty() { vec![None] } else { peers.iter().map(Some).collect() };
    let ports: Vec<Option<&PolicyPort>> = if ports.is_empty() { vec![None] } else { ports.iter().map(Some).collect() };
    let mut out = Vec::new();
    for peer in &peers {
        for port in &ports {
            let mut far = peer.map(peer_entity).unwrap_or_default();
            let mut near = EntityRule::default();
            if let Some(p) = port.and_then(|p| p.port.as_ref()) {
                near.ports = vec![match (p, port.and_then(|p| p.end_port)) {
                    (IntOrString::Int(lo), Some(hi)) => IntOrString::String(format!("{lo}:{hi}")),
                    (p, _) => p.clone(),
                }];
            }
            // Ports are the destination's: the pod's own on ingress, the peer's on egress.
            let (source, destination) = if ingress {
                (far, near)
            } else {
                far.ports = std::mem::take(&mut near.ports);
                (near, far)
            };
            out.push(Rule {
                action: Action::Allow,
                ip_version: None,
                protocol: port.map(|p| IntOrString::Int(i64::from(p.protocol_number()))),
                not_protocol: None,
                icmp: None,
                not_icmp: None,
                source,
                destination,
                http: None,
                metadata: None,
            });
        }
    }
    out
}

fn peer_entity(peer: &PolicyPeer) -> EntityRule {
    let mut entity = EntityRule::default();
    if let Some(block) = &peer.ip_block {
        entity.nets = vec![block.cidr.clone()];
        entity.not_nets = block.except.clone();
        return entity;
    }
    entity.selector = Some(peer.pod_selector.as_ref().map_or_else(|| "all()".to_string(), selector_text));
    entity.namespace_selector = peer.namespace_selector.as_ref().map(selector_text);
    entity
}
