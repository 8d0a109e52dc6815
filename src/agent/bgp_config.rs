//! The node's effective BGP settings: the configuration file's `bgp` section, the `default`
//! BGPConfiguration and this node's `node.<name>` one, combined as follows (first that sets a
//! field wins):
//!
//! - cluster-wide fields — `asNumber`, `nodeToNodeMeshEnabled`, `nodeMeshMaxRestartTime`: the
//!   `default` resource, then the file (`bgp.as_number`, `bgp.node_to_node_mesh`,
//!   `bgp.graceful_restart_seconds`); `nodeMeshPassword` (the TCP-MD5 key of the sessions to
//!   other nodes) from `default` only. Calico reads them from `default` only; set on a
//!   `node.<name>` resource they are reported unsupported.
//! - per-node fields — `listenPort`, `bindMode`, `logSeverityScreen`, `prefixAdvertisements`:
//!   `node.<name>`, then `default`, then the file (`bgp.listen_port`, `bgp.listen_address`,
//!   `log.level`; no communities). A `node.<name>` list of prefix advertisements replaces the
//!   `default` one whole, as Calico's.
//!
//! Fields tortie does not act on are listed in [`Effective::unsupported`] (logged, in
//! `tortie status`, and the `tortie_unsupported_fields` metric, through `datastore::unsupported`):
//! never silently accepted.

use crate::bgp::rib::CommunityRule;
use crate::config::BgpConfig;
use crate::datastore::resources::{BgpConfiguration, BindMode, GoDuration, SecretKeyRef};
use crate::datastore::{Datastore, DatastoreError};
use std::net::{IpAddr, SocketAddr};

/// The name of the cluster-wide resource.
pub const DEFAULT: &str = "default";

/// The name of `node`'s own resource.
pub fn node_resource(node: &str) -> String {
    format!("node.{node}")
}

/// A set field the agent does not act on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unsupported {
    /// `default` or `node.<name>`.
    pub name: String,
    /// The field's name as Calico spells it.
    pub field: &'static str,
    pub reason: &'static str,
}

/// The settings the BGP side runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub as_number: u32,
    pub mesh: bool,
    /// Graceful restart time announced on mesh sessions (seconds).
    pub mesh_restart_time: u16,
    /// The secret holding the TCP-MD5 key of the sessions to other nodes.
    pub mesh_password: Option<SecretKeyRef>,
    /// Where the listener binds; mesh peers dial the same port (Calico's is cluster-wide).
    pub listen: SocketAddr,
    /// The `tracing` level a resource asks for; `None`: the level given at start.
    pub log_level: Option<String>,
    /// Communities of the node's own blocks, by range.
    pub communities: Vec<CommunityRule>,
    pub unsupported: Vec<Unsupported>,
}

/// Calico's `logSeverityScreen` as a `tracing` level (`Fatal` has no match: `error`).
fn tracing_level(severity: &str) -> Option<&'static str> {
    match severity.to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warning" => Some("warn"),
        "error" | "fatal" => Some("error"),
        _ => None,
    }
}

fn rules(resource: &BgpConfiguration) -> Vec<CommunityRule> {
    resource
        .prefix_advertisements
        .iter()
        .filter_map(|ad| Some(CommunityRule::new(ad.cidr.parse().ok()?, resource.advertisement_values(ad))))
        .collect()
}

/// The fields of `r` tortie does not act on in this place: on a node's own resource, those Calico
/// reads only from `default`. (Fields that never take effect are listed in
/// `datastore::resources::coverage` and reported wherever they are set.)
fn unsupported_fields(r: &BgpConfiguration, node_specific: bool) -> Vec<(&'static str, &'static str)> {
    const DEFAULT_ONLY: &str = "read only from BGPConfiguration default";
    let mut out = Vec::new();
    let mut add = |set: bool, field, reason| {
        if set {
            out.push((field, reason));
        }
    };
    if node_specific {
        add(r.as_number.is_some(), "asNumber", DEFAULT_ONLY);
        add(r.node_to_node_mesh_enabled.is_some(), "nodeToNodeMeshEnabled", DEFAULT_ONLY);
        add(r.node_mesh_max_restart_time.is_some(), "nodeMeshMaxRestartTime", DEFAULT_ONLY);
        add(r.node_mesh_password.is_some(), "nodeMeshPassword", DEFAULT_ONLY);
    }
    out
}

/// A per-node field: the node's resource's, else the default's.
fn per_node<'a, T>(
    node: Option<&'a BgpConfiguration>,
    default: Option<&'a BgpConfiguration>,
    pick: impl Fn(&'a BgpConfiguration) -> Option<T>,
) -> Option<T> {
    node.and_then(&pick).or_else(|| default.and_then(&pick))
}

/// The effective settings of a node whose address is `node_ip`.
pub fn effective(
    file: &BgpConfig,
    node_ip: IpAddr,
    default: Option<&BgpConfiguration>,
    node: Option<(&str, &BgpConfiguration)>,
) -> Effective {
    let node_spec = node.map(|(_, r)| r);
    let port = per_node(node_spec, default, |r| r.listen_port).unwrap_or(file.listen_port);
    let address = match per_node(node_spec, default, |r| r.bind_mode) {
        Some(BindMode::NodeIp) => node_ip,
        Some(BindMode::None) | None => file.listen_address,
    };
    let log_level = per_node(node_spec, default, |r| {
        r.log_severity_screen.as_deref().filter(|s| !s.is_empty()).and_then(tracing_level)
    })
    .map(str::to_string);
    let communities = match (node_spec, default) {
        (Some(n), _) if !n.prefix_advertisements.is_empty() => rules(n),
        (_, Some(d)) => rules(d),
        _ => Vec::new(),
    };
    let mut unsupported = Vec::new();
    if let Some(d) = default {
        for (field, reason) in unsupported_fields(d, false) {
            unsupported.push(Unsupported { name: DEFAULT.to_string(), field, reason });
        }
    }
    if let Some((name, n)) = node {
        for (field, reason) in unsupported_fields(n, true) {
            unsupported.push(Unsupported { name: name.to_string(), field, reason });
        }
    }
    Effective {
        as_number: default.and_then(|d| d.as_number).unwrap_or(file.as_number.0),
        mesh: default.and_then(|d| d.node_to_node_mesh_enabled).unwrap_or(file.node_to_node_mesh),
        mesh_restart_time: default
            .and_then(|d| d.node_mesh_max_restart_time.as_ref())
            .and_then(GoDuration::timer_seconds)
            .unwrap_or(file.graceful_restart_seconds),
        mesh_password: default.and_then(|d| d.node_mesh_password.as_ref()).map(|p| p.secret_key_ref.clone()),
        listen: SocketAddr::new(address, port),
        log_level,
        communities,
        unsupported,
    }
}

/// Both resources that apply to `node` (each `None` when absent), or why they cannot be read
/// (a datastore outage, or a record that breaks the schema: the message names field and value).
pub async fn read(ds: &Datastore, node: &str) -> Result<Resources, String> {
    let get = |name: String| async move {
        match ds.get::<BgpConfiguration>(&name).await {
            Ok(stored) => Ok(Some(stored.spec)),
            Err(DatastoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!("BGPConfiguration {name}: {e}")),
        }
    };
    let name = node_resource(node);
    Ok(Resources { default: get(DEFAULT.to_string()).await?, node: get(name.clone()).await?.map(|r| (name, r)) })
}

/// The BGPConfigurations of one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub default: Option<BgpConfiguration>,
    /// `node.<name>` and its spec.
    pub node: Option<(String, BgpConfiguration)>,
}

impl Resources {
    pub fn effective(&self, file: &BgpConfig, node_ip: IpAddr) -> Effective {
        effective(file, node_ip, self.default.as_ref(), self.node.as_ref().map(|(n, r)| (n.as_str(), r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::packet::community::{Community, LargeCommunity};

    fn resource(json: &str) -> BgpConfiguration {
        serde_json::from_str(json).unwrap()
    }

    const NODE_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5));

    #[test]
    fn without_resources_the_file_decides() {
        let file = BgpConfig::default();
        let e = effective(&file, NODE_IP, None, None);
        assert_eq!((e.as_number, e.mesh, e.mesh_restart_time), (64512, true, 120));
        assert_eq!(e.listen, SocketAddr::new(file.listen_address, 179));
        assert_eq!((e.log_level, e.communities, e.unsupported), (None, vec![], vec![]));
    }

    #[test]
    fn default_wins_for_cluster_fields_and_node_for_per_node_ones() {
        let default = resource(
            r#"{"asNumber": 65000, "nodeToNodeMeshEnabled": false, "listenPort": 1179, "logSeverityScreen": "Warning",
                "prefixAdvertisements": [{"cidr": "10.244.0.0/16", "communities": ["65000:1"]}]}"#,
        );
        let node = resource(
            r#"{"listenPort": 2179, "bindMode": "NodeIP", "asNumber": 1, "logSeverityScreen": "debug",
                "prefixAdvertisements": [{"cidr": "10.244.1.0/24", "communities": ["1:2:3"]}]}"#,
        );
        let e = effective(&BgpConfig::default(), NODE_IP, Some(&default), Some(("node.a", &node)));
        assert_eq!((e.as_number, e.mesh), (65000, false));
        assert_eq!(e.listen, SocketAddr::new(NODE_IP, 2179));
        assert_eq!(e.log_level.as_deref(), Some("debug"));
        assert_eq!(
            e.communities,
            vec![CommunityRule {
                within: "10.244.1.0/24".parse().unwrap(),
                communities: vec![],
                large: vec![LargeCommunity { global_admin: 1, local_data_1: 2, local_data_2: 3 }],
            }]
        );
        // asNumber on a node's resource: Calico ignores it; tortie says so.
        assert_eq!(
            e.unsupported,
            vec![Unsupported {
                name: "node.a".into(),
                field: "asNumber",
                reason: "read only from BGPConfiguration default"
            }]
        );
        let e = effective(&BgpConfig::default(), NODE_IP, Some(&default), None);
        assert_eq!((e.listen.port(), e.log_level.as_deref()), (1179, Some("warn")));
        assert_eq!(e.communities[0].communities, vec![Community((65000 << 16) | 1)]);
    }

    #[test]
    fn fields_not_acted_on_are_reported() {
        let default = resource(
            r#"{"serviceClusterIPs": [{"cidr": "10.96.0.0/12"}], "ignoredInterfaces": ["eth9"],
                "programClusterRoutes": "Enabled", "nodeMeshPassword": {"secretKeyRef": {"name": "s", "key": "k"}},
                "nodeMeshMaxRestartTime": "90s"}"#,
        );
        let e = effective(&BgpConfig::default(), NODE_IP, Some(&default), None);
        // Fields that never take effect are the coverage table's, reported where they are decoded.
        assert!(e.unsupported.is_empty());
        let document = serde_json::to_value(&default).unwrap();
        let declared = crate::datastore::resources::coverage::unsupported(crate::datastore::Kind::BgpConfiguration);
        let fields: Vec<String> =
            crate::datastore::unsupported::declared_in(&document, &declared).into_iter().map(|(f, _)| f).collect();
        // serviceClusterIPs takes effect (`crate::services`): not among them.
        assert_eq!(fields, vec!["ignoredInterfaces[]", "programClusterRoutes"]);
        assert_eq!(e.mesh_restart_time, 90);
        let key = SecretKeyRef { name: "s".into(), key: "k".into(), optional: false };
        assert_eq!(e.mesh_password, Some(key));
        // On a node's own resource the mesh password is Calico's cluster-wide field: reported.
        let node = resource(r#"{"nodeMeshPassword": {"secretKeyRef": {"name": "s", "key": "k"}}}"#);
        let e = effective(&BgpConfig::default(), NODE_IP, None, Some(("node.a", &node)));
        assert_eq!((e.mesh_password, e.unsupported[0].field), (None, "nodeMeshPassword"));
    }
}
