//! The containerlab topology file (`*.clab.yml`), the part a
//! network-namespace runner honours: nodes with `defaults` → `kinds` →
//! `groups` → node inheritance, `exec`, `cmd`, `env`, `binds`, `sysctls`,
//! brief `links` with optional `mtu`, `ipv4` and `ipv6` lists.
//! Unknown keys are accepted (containerlab has many that do not apply
//! here: images, ports, mgmt, …) — the ones that would change behaviour
//! and are not supported are refused in [`super::plan`].

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
pub struct TopologyFile {
    pub name: String,
    /// Namespace name prefix: absent = `clab`, "" = bare node names.
    #[serde(default)]
    pub prefix: Option<String>,
    pub topology: Topology,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Topology {
    #[serde(default)]
    pub defaults: NodeSpec,
    #[serde(default)]
    pub kinds: BTreeMap<String, NodeSpec>,
    #[serde(default)]
    pub groups: BTreeMap<String, NodeSpec>,
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeSpec>,
    #[serde(default)]
    pub links: Vec<LinkSpec>,
}

/// A node (or defaults, kind, group) as written; every field optional so
/// inheritance can fill it.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct NodeSpec {
    pub kind: Option<String>,
    pub group: Option<String>,
    pub image: Option<String>,
    pub cmd: Option<String>,
    pub entrypoint: Option<String>,
    pub exec: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub binds: Option<Vec<String>>,
    pub sysctls: Option<BTreeMap<String, serde_norway::Value>>,
    pub network_mode: Option<String>,
    pub startup_config: Option<String>,
}

/// A link in the brief form.
#[derive(Debug, Clone, Deserialize)]
pub struct LinkSpec {
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ipv4: Option<Vec<String>>,
    #[serde(default)]
    pub ipv6: Option<Vec<String>>,
    #[serde(rename = "type", default)]
    pub link_type: Option<String>,
}

impl NodeSpec {
    /// This spec with every field it leaves empty taken from `parent`;
    /// `env` maps merge with this level winning.
    pub fn inherit(&self, parent: &NodeSpec) -> NodeSpec {
        let mut env = parent.env.clone().unwrap_or_default();
        env.extend(self.env.clone().unwrap_or_default());
        NodeSpec {
            kind: self.kind.clone().or_else(|| parent.kind.clone()),
            group: self.group.clone().or_else(|| parent.group.clone()),
            image: self.image.clone().or_else(|| parent.image.clone()),
            cmd: self.cmd.clone().or_else(|| parent.cmd.clone()),
            entrypoint: self.entrypoint.clone().or_else(|| parent.entrypoint.clone()),
            exec: self.exec.clone().or_else(|| parent.exec.clone()),
            env: (!env.is_empty()).then_some(env),
            binds: self.binds.clone().or_else(|| parent.binds.clone()),
            sysctls: self.sysctls.clone().or_else(|| parent.sysctls.clone()),
            network_mode: self.network_mode.clone().or_else(|| parent.network_mode.clone()),
            startup_config: self.startup_config.clone().or_else(|| parent.startup_config.clone()),
        }
    }
}

/// Expands `${VAR}`, `${VAR:-default}` and `${VAR:=default}` from `lookup`
/// (containerlab expands these over the whole file before parsing).
pub fn expand_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-").or_else(|| expr.split_once(":=")) {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        let value = lookup(name).filter(|v| !v.is_empty()).or_else(|| default.map(str::to_string)).unwrap_or_default();
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion_with_defaults() {
        let lookup = |n: &str| (n == "SET").then(|| "yes".to_string());
        assert_eq!(expand_env("a ${SET} b ${UNSET:-dflt} c ${UNSET:=x} ${UNSET}", &lookup), "a yes b dflt c x ");
        assert_eq!(expand_env("no close ${X", &lookup), "no close ${X");
    }

    #[test]
    fn node_settings_inherit_and_env_merges() {
        let parent: NodeSpec = serde_norway::from_str("{kind: linux, image: alpine, env: {A: '1', B: '1'}}").unwrap();
        let node: NodeSpec = serde_norway::from_str("{image: tortie, env: {B: '2'}}").unwrap();
        let merged = node.inherit(&parent);
        assert_eq!(merged.kind.as_deref(), Some("linux"));
        assert_eq!(merged.image.as_deref(), Some("tortie"));
        let env = merged.env.unwrap();
        assert_eq!((env["A"].as_str(), env["B"].as_str()), ("1", "2"));
    }
}
