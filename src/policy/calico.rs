//! Calico's NetworkPolicy and GlobalNetworkPolicy resources as model policies, scoped as
//! libcalico-go scopes them (`updateprocessors/rules.go`): a namespaced policy applies in its
//! namespace, and its rules' selectors look in its namespace unless they give a namespace
//! selector; a global policy's look everywhere. A `notSelector` is never scoped, but in a
//! namespaced policy a rule with only a `notSelector` still matches only its own namespace.

use super::model::{Applies, EndpointSelector, Entity, Icmp, NamespaceScope, Policy, Rule};
use crate::datastore::resources::policy_rule::{self, parse_net, port_match, protocol_number};
use crate::datastore::resources::{
    EntityRule, GlobalNetworkPolicy, IcmpFields, NetworkPolicy, PolicyType, Rule as ResourceRule,
};
use crate::selector::Selector;

/// The canonical text of a selector field (absent or empty: `all()`); an error names the field.
fn canonical(field: &str, text: Option<&str>) -> Result<String, String> {
    match text.filter(|t| !t.trim().is_empty()) {
        Some(t) => crate::selector::check_field(field, t).map(|s| s.to_string()),
        None => Ok(Selector::all().to_string()),
    }
}

/// The namespaces a namespace selector field selects.
fn namespace_scope(field: &str, text: &str) -> Result<NamespaceScope, String> {
    Ok(NamespaceScope::Matching(canonical(field, Some(text))?.replace("global()", "!all()")))
}

/// The model of namespaced Calico policy `name` in `namespace`.
pub fn namespaced(namespace: &str, name: &str, policy: &NetworkPolicy) -> Result<Policy, String> {
    let own = NamespaceScope::Only(namespace.to_string());
    let types = policy.effective_types();
    Ok(Policy {
        name: format!("{namespace}/{name}"),
        order: policy.order,
        applies: Applies {
            selector: EndpointSelector {
                selector: canonical("selector", policy.selector.as_deref())?,
                namespaces: own.clone(),
            },
            service_accounts: service_accounts(policy.service_account_selector.as_deref())?,
        },
        ingress: rules("ingress", &types, PolicyType::Ingress, &policy.ingress, &own)?,
        egress: rules("egress", &types, PolicyType::Egress, &policy.egress, &own)?,
    })
}

/// The model of global Calico policy `name`.
pub fn global(name: &str, policy: &GlobalNetworkPolicy) -> Result<Policy, String> {
    let namespaces = match policy.namespace_selector.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(text) => namespace_scope("namespaceSelector", text)?,
        None => NamespaceScope::Any,
    };
    let types = policy.effective_types();
    Ok(Policy {
        name: format!("global/{name}"),
        order: policy.order,
        applies: Applies {
            selector: EndpointSelector { selector: canonical("selector", policy.selector.as_deref())?, namespaces },
            service_accounts: service_accounts(policy.service_account_selector.as_deref())?,
        },
        ingress: rules("ingress", &types, PolicyType::Ingress, &policy.ingress, &NamespaceScope::Any)?,
        egress: rules("egress", &types, PolicyType::Egress, &policy.egress, &NamespaceScope::Any)?,
    })
}

fn service_accounts(text: Option<&str>) -> Result<Option<String>, String> {
    text.filter(|t| !t.trim().is_empty()).map(|t| canonical("serviceAccountSelector", Some(t))).transpose()
}

fn rules(
    field: &str,
    types: &[PolicyType],
    direction: PolicyType,
    rules: &[ResourceRule],
    scope: &NamespaceScope,
) -> Result<Option<Vec<Rule>>, String> {
    if !types.contains(&direction) {
        return Ok(None);
    }
    let converted = rules.iter().enumerate().map(|(i, r)| rule(r, scope).map_err(|e| format!("{field}[{i}].{e}")));
    converted.collect::<Result<Vec<_>, _>>().map(Some)
}

fn icmp(field: &str, fields: &Option<IcmpFields>) -> Result<Option<Icmp>, String> {
    let Some(fields) = fields else { return Ok(None) };
    let Some(icmp_type) = fields.icmp_type else { return Ok(None) };
    let icmp_type = u8::try_from(icmp_type).map_err(|_| format!("{field}.type: {icmp_type} is not an ICMP type"))?;
    let code = fields.code.map(|c| u8::try_from(c).map_err(|_| format!("{field}.code: {c} is not an ICMP code")));
    Ok(Some(Icmp { icmp_type, code: code.transpose()? }))
}

fn rule(rule: &ResourceRule, scope: &NamespaceScope) -> Result<Rule, String> {
    // The resource's own check gives the precise errors; the conversion only repeats it.
    let checked = rule.clone();
    let protocol = checked.protocol.as_ref().map(protocol_number).transpose().map_err(|e| format!("protocol: {e}"))?;
    let not_protocol =
        checked.not_protocol.as_ref().map(protocol_number).transpose().map_err(|e| format!("notProtocol: {e}"))?;
    let ip_version = checked
        .ip_version
        .map(|v| u8::try_from(v).ok().filter(|v| *v == 4 || *v == 6).ok_or(format!("ipVersion: {v} is not 4 or 6")))
        .transpose()?;
    Ok(Rule {
        action: checked.action,
        ip_version,
        protocol,
        not_protocol,
        icmp: icmp("icmp", &checked.icmp)?,
        not_icmp: icmp("notICMP", &checked.not_icmp)?,
        source: entity(&checked.source, scope).map_err(|e| format!("source.{e}"))?,
        destination: entity(&checked.destination, scope).map_err(|e| format!("destination.{e}"))?,
    })
}

fn entity(side: &EntityRule, scope: &NamespaceScope) -> Result<Entity, String> {
    let nets = |field: &str, list: &[String]| -> Result<Vec<_>, String> {
        list.iter().enumerate().map(|(i, n)| parse_net(n).map_err(|e| format!("{field}[{i}]: {e}"))).collect()
    };
    let ports = |field: &str, list: &[crate::datastore::resources::IntOrString]| -> Result<Vec<_>, String> {
        list.iter().enumerate().map(|(i, p)| port_match(p).map_err(|e| format!("{field}[{i}]: {e}"))).collect()
    };
    let namespaces = match side.namespace_selector.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(text) => Some(namespace_scope("namespaceSelector", text)?),
        None => None,
    };
    let given = |t: &Option<String>| t.as_deref().is_some_and(|t| !t.trim().is_empty());
    let scoped = !matches!(scope, NamespaceScope::Any);
    let selector = if given(&side.selector) || namespaces.is_some() || (scoped && given(&side.not_selector)) {
        Some(EndpointSelector {
            selector: canonical("selector", side.selector.as_deref())?,
            namespaces: namespaces.unwrap_or_else(|| scope.clone()),
        })
    } else {
        None
    };
    let not_selector = if given(&side.not_selector) {
        Some(EndpointSelector {
            selector: canonical("notSelector", side.not_selector.as_deref())?,
            namespaces: NamespaceScope::Any,
        })
    } else {
        None
    };
    Ok(Entity {
        nets: nets("nets", &side.nets)?,
        not_nets: nets("notNets", &side.not_nets)?,
        selector,
        not_selector,
        ports: ports("ports", &side.ports)?,
        not_ports: ports("notPorts", &side.not_ports)?,
    })
}

/// Whether a rule's protocol has ports (so that its port matches mean something).
pub fn rule_has_ports(rule: &Rule) -> bool {
    rule.protocol.is_some_and(policy_rule::has_ports)
}
