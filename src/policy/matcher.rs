//! Selector matching for the compiler: each selector text parsed once and each namespace's
//! labels built once, so matching every selector against every endpoint of a large cluster
//! costs one evaluation per pair (the model's own `matches` parses on every call, which is
//! fine for the reference but not for 10 000 endpoints × thousands of selectors).

use super::model::{Endpoint, EndpointSelector, NamespaceScope, Namespaces, Policy, parse};
use crate::selector::Selector;
use std::collections::{BTreeMap, HashMap};

type LabelMap = BTreeMap<String, String>;

#[derive(Default)]
pub struct Matcher {
    parsed: HashMap<String, Selector>,
    namespace_labels: HashMap<String, LabelMap>,
}

impl Matcher {
    fn selector(&mut self, text: &str) -> &Selector {
        self.parsed.entry(text.to_string()).or_insert_with(|| parse(text))
    }

    fn in_scope(&mut self, scope: &NamespaceScope, endpoint: &Endpoint, namespaces: &Namespaces) -> bool {
        match scope {
            NamespaceScope::Only(ns) => *ns == endpoint.namespace,
            NamespaceScope::Any => true,
            NamespaceScope::Matching(text) => {
                if !self.namespace_labels.contains_key(&endpoint.namespace) {
                    let labels = namespaces.labels(&endpoint.namespace);
                    self.namespace_labels.insert(endpoint.namespace.clone(), labels);
                }
                let selector = self.parsed.entry(text.clone()).or_insert_with(|| parse(text));
                selector.matches(&self.namespace_labels[&endpoint.namespace])
            }
        }
    }

    /// [`EndpointSelector::matches`], with `labels` the endpoint's `selector_labels()`.
    pub fn matches(
        &mut self,
        selector: &EndpointSelector,
        endpoint: &Endpoint,
        labels: &LabelMap,
        namespaces: &Namespaces,
    ) -> bool {
        self.in_scope(&selector.namespaces, endpoint, namespaces) && self.selector(&selector.selector).matches(labels)
    }

    /// [`Policy::selects`], with `labels` the endpoint's `selector_labels()`.
    pub fn selects(
        &mut self,
        policy: &Policy,
        endpoint: &Endpoint,
        labels: &LabelMap,
        namespaces: &Namespaces,
    ) -> bool {
        self.matches(&policy.applies.selector, endpoint, labels, namespaces)
            && policy
                .applies
                .service_accounts
                .as_deref()
                .is_none_or(|s| self.selector(s).matches(&endpoint.service_account_labels()))
    }
}
