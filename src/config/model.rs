//! The configuration model. Every field has a default, so an empty file is a
//! valid configuration for a single node with the embedded datastore.

use super::types::{AsNumber, HoldTime, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// The route protocol number tortie writes on every kernel route it owns.
/// Unused by other daemons (Felix 80, BIRD 12, zebra 11 and 186–192, kube-router 17).
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 116;

/// The port of the metrics and health endpoint. It collides with none of the
/// defaults of Calico (9091/9093/9094/9099), Cilium (9962–9965, 9879),
/// kube-router (20241–20244, 50051), the BGP exporters (9324, 9342, 9474) or 9100.
pub const DEFAULT_METRICS_PORT: u16 = 9478;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub datastore: DatastoreConfig,
    pub bgp: BgpConfig,
    pub dataplane: DataplaneConfig,
    pub ipip: IpipConfig,
    pub vxlan: VxlanConfig,
    pub ipam: IpamConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub kubernetes: super::kubernetes::KubernetesConfig,
}

/// `node.ipv6_address_autodetection` when the node has no IPv6 address.
pub const NO_IPV6_ADDRESS: &str = "none";

/// This node's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name; defaults to the host name.
    pub name: Option<String>,
    /// The node's IPv4 address with prefix length (e.g. `10.0.0.5/24`); absent = autodetect.
    #[schemars(with = "Option<String>")]
    pub address: Option<ipnetwork::Ipv4Network>,
    /// The node's IPv6 address with prefix length; absent = `ipv6_address_autodetection` decides.
    #[schemars(with = "Option<String>")]
    pub ipv6_address: Option<ipnetwork::Ipv6Network>,
    /// How to find the IPv4 address when it is not given, as Calico's
    /// `IP_AUTODETECTION_METHOD`: `first-found`, `can-reach=<ip>`,
    /// `interface=<regex>[,<regex>...]`, `skip-interface=<regex>[,<regex>...]`,
    /// `cidr=<cidr>[,<cidr>...]`, `kubernetes-internal-ip` (the Kubernetes Node's InternalIP).
    pub address_autodetection: String,
    /// How to find the IPv6 address when it is not given: `none` (the node has no IPv6 address,
    /// as Calico's `IP6` defaults to) or one of the methods of `address_autodetection`, as
    /// Calico's `IP6_AUTODETECTION_METHOD` with `IP6=autodetect`.
    pub ipv6_address_autodetection: String,
    /// Labels set on this node's record at start (Calico Node `metadata.labels`), for pools' and
    /// BGP peers' selectors; labels the record has and this map does not name are kept (on the
    /// Kubernetes datastore they are the Kubernetes Node's labels).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: None,
            address: None,
            ipv6_address: None,
            address_autodetection: "first-found".to_string(),
            ipv6_address_autodetection: NO_IPV6_ADDRESS.to_string(),
            labels: BTreeMap::new(),
        }
    }
}

/// Which datastore backend holds the cluster's shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatastoreType {
    /// An embedded SQLite file: one host or the lab.
    #[default]
    Sqlite,
    /// etcd v3, as Calico's etcd mode.
    Etcd,
    /// Custom resources in the Kubernetes API.
    Kubernetes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatastoreConfig {
    #[serde(rename = "type")]
    pub kind: DatastoreType,
    /// SQLite database file shared by every tortie process on the host.
    pub sqlite_path: PathBuf,
    /// etcd client URLs.
    pub etcd_endpoints: Vec<String>,
    /// Key prefix under which tortie keeps its etcd data.
    pub etcd_prefix: String,
    /// kubeconfig file; absent = in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        DatastoreConfig {
            kind: DatastoreType::Sqlite,
            sqlite_path: PathBuf::from("/var/lib/tortie/tortie.db"),
            etcd_endpoints: vec!["http://127.0.0.1:2379".to_string()],
            etcd_prefix: "/tortie".to_string(),
            kubeconfig: None,
        }
    }
}

/// The BGP speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BgpConfig {
    pub enabled: bool,
    /// This node's AS number (Calico's default is 64512).
    pub as_number: AsNumber,
    /// BGP identifier; defaults to the node's IPv4 address.
    pub router_id: Option<Ipv4Addr>,
    pub listen_address: IpAddr,
    pub listen_port: u16,
    /// Peer with every other node (iBGP full mesh).
    pub node_to_node_mesh: bool,
    pub hold_time_seconds: HoldTime,
    /// Defaults to a third of the hold time.
    pub keepalive_seconds: Option<u16>,
    pub connect_retry_seconds: u16,
    /// Restart time announced in the graceful restart capability (RFC 4724).
    pub graceful_restart_seconds: u16,
    /// Set on nodes that act as route reflectors (RFC 4456).
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// Statically configured peers (routers); more come from the datastore.
    pub peers: Vec<PeerConfig>,
    /// BFD for the sessions with other nodes (mesh and route reflection).
    pub mesh_bfd: BfdConfig,
}

impl Default for BgpConfig {
    fn default() -> Self {
        BgpConfig {
            enabled: true,
            as_number: AsNumber(64512),
            router_id: None,
            listen_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen_port: 179,
            node_to_node_mesh: true,
            hold_time_seconds: HoldTime(90),
            keepalive_seconds: None,
            connect_retry_seconds: 10,
            graceful_restart_seconds: 120,
            route_reflector_cluster_id: None,
            peers: Vec::new(),
            mesh_bfd: BfdConfig::default(),
        }
    }
}

/// One statically configured BGP peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub as_number: AsNumber,
    /// A name for status output; defaults to the address.
    #[serde(default)]
    pub name: Option<String>,
    /// TCP-MD5 key (RFC 2385). Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub hold_time_seconds: Option<HoldTime>,
    /// Local address to connect from.
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// eBGP multihop TTL (1 = directly connected).
    #[serde(default)]
    pub ebgp_multihop: Option<u8>,
    /// GTSM (RFC 5082): accept only packets with TTL ≥ 255 - hops.
    #[serde(default)]
    pub ttl_security_hops: Option<u8>,
    /// Tear the session down (Cease/1) when the peer sends more prefixes.
    #[serde(default)]
    pub max_prefixes: Option<u32>,
    /// Only accept connections from the peer; never connect.
    #[serde(default)]
    pub passive: bool,
    /// BFD for this session (off when absent).
    #[serde(default)]
    pub bfd: Option<BfdConfig>,
}

/// A BFD session (RFC 5880) beside a BGP session: the BGP session comes up
/// only while BFD is Up and goes down as soon as BFD does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BfdConfig {
    pub enabled: bool,
    /// Desired Min TX Interval: how often we send, at most.
    pub min_tx_ms: u32,
    /// Required Min RX Interval: how often the peer may send, at most.
    pub min_rx_ms: u32,
    /// Detect Mult: packets missed before the session is down.
    pub multiplier: u8,
    /// RFC 5883 multihop (UDP 4784) instead of single hop (RFC 5881, 3784).
    pub multihop: bool,
    /// Passive role (RFC 5880 6.1): send nothing until the peer's first packet.
    pub passive: bool,
    /// Treat BFD down from a peer with a clear C bit that offered graceful restart as that peer
    /// restarting: keep its routes stale for its restart time instead of removing them at once.
    pub graceful_restart: bool,
}

/// The largest interval the protocol carries: 2^32 - 1 microseconds.
pub const BFD_MAX_INTERVAL_MS: u32 = u32::MAX / 1000;

impl Default for BfdConfig {
    fn default() -> Self {
        BfdConfig {
            enabled: false,
            min_tx_ms: 300,
            min_rx_ms: 300,
            multiplier: 3,
            multihop: false,
            passive: false,
            graceful_restart: false,
        }
    }
}

impl BfdConfig {
    /// The BGP session's BFD settings, when enabled.
    pub fn peer_bfd(&self) -> Option<crate::bgp::session::config::PeerBfd> {
        self.enabled.then(|| crate::bgp::session::config::PeerBfd {
            intervals: crate::bfd::Intervals::new(
                std::time::Duration::from_millis(u64::from(self.min_tx_ms)),
                std::time::Duration::from_millis(u64::from(self.min_rx_ms)),
                self.multiplier,
            ),
            multihop: self.multihop,
            passive: self.passive,
            graceful_restart: self.graceful_restart,
        })
    }
}

/// The kernel route programmer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Route protocol number on every route tortie owns; tortie never
    /// changes a route that carries another.
    pub route_protocol: u8,
    /// Routing table for remote-block and workload routes (254 = main).
    pub route_table: u32,
    /// Full dump-diff-replace resync interval.
    pub resync_interval_seconds: u32,
    /// Workload MTU; absent = underlay MTU minus tunnel overhead.
    pub mtu: Option<u32>,
    /// Prefix of host-side workload veth names (at most 4 characters).
    pub workload_interface_prefix: String,
    /// Remove tortie's routes on exit (default keeps them for graceful restart).
    pub cleanup_on_exit: bool,
    /// Install the routes learned over BGP. Off on a dedicated route
    /// reflector, which passes routes on without forwarding along them (as
    /// Calico's standalone reflectors): learned routes stay in the RIB only;
    /// the node's own blocks are still blackholed and its pods routed.
    pub install_learned_routes: bool,
    /// Write routes with a single next hop by kernel nexthop object
    /// (`ip route ... nhid N`, Linux 5.3+), as FRR does: the kernel takes
    /// them in about half the time. Falls back to plain routes by itself
    /// on a kernel without nexthop objects; off writes plain routes always
    /// (for tools that do not understand `nhid`).
    pub nexthop_objects: bool,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            route_protocol: DEFAULT_ROUTE_PROTOCOL,
            route_table: 254,
            resync_interval_seconds: 90,
            mtu: None,
            workload_interface_prefix: "tt".to_string(),
            cleanup_on_exit: false,
            install_learned_routes: true,
            nexthop_objects: true,
        }
    }
}

/// How IP-in-IP is implemented on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpipImplementation {
    /// The kernel's `tunl0` when the kernel has ipip, else userspace.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IpipConfig {
    pub implementation: IpipImplementation,
    /// Name of the TUN device of the userspace encapsulator.
    pub userspace_device: String,
    /// The userspace implementation moves packets in the kernel with BPF
    /// when the kernel takes it (CAP_BPF): a program on each remote block's
    /// route encapsulates (lightweight-tunnel BPF), one on the underlay
    /// device's ingress decapsulates (tcx); false: every packet through the
    /// TUN device and the raw socket.
    pub userspace_bpf: bool,
}

impl Default for IpipConfig {
    fn default() -> Self {
        IpipConfig {
            implementation: IpipImplementation::Auto,
            userspace_device: "tortie-ipip".to_string(),
            userspace_bpf: true,
        }
    }
}

/// The largest VXLAN network identifier: the field is 24 bits wide (RFC 7348).
pub const MAX_VXLAN_VNI: u32 = (1 << 24) - 1;

/// The longest interface name the kernel takes (`IFNAMSIZ` less the terminating NUL).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// The VXLAN devices, as Felix's `vxlanVNI`, `vxlanPort` (the MTU comes from the underlay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct VxlanConfig {
    /// VXLAN network identifier, 1 to 16777215 (Calico's 4096).
    pub vni: u32,
    /// UDP destination port (Calico's and the IANA port 4789).
    pub port: u16,
    /// Name of the IPv4 VXLAN device.
    pub device: String,
    /// Name of the IPv6 VXLAN device.
    pub device_v6: String,
}

impl Default for VxlanConfig {
    fn default() -> Self {
        VxlanConfig {
            vni: 4096,
            port: 4789,
            device: "vxlan.tortie".to_string(),
            device_v6: "vxlan-v6.tortie".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IpamConfig {
    /// Pool created when the datastore holds none (Calico's `CALICO_IPV4POOL_CIDR`).
    #[schemars(with = "Option<String>")]
    pub default_ipv4_pool_cidr: Option<ipnetwork::Ipv4Network>,
    pub default_ipv4_block_size: u8,
    /// The default pool's `ipipMode` (Calico's `CALICO_IPV4POOL_IPIP`).
    pub default_ipv4_ipip_mode: crate::datastore::resources::EncapMode,
    /// The default pool's `vxlanMode` (Calico's `CALICO_IPV4POOL_VXLAN`); at most one of this and
    /// `default_ipv4_ipip_mode` may be other than `Never`.
    pub default_ipv4_vxlan_mode: crate::datastore::resources::EncapMode,
    /// Pool created when the datastore holds no IPv6 pool (Calico's `CALICO_IPV6POOL_CIDR`).
    #[schemars(with = "Option<String>")]
    pub default_ipv6_pool_cidr: Option<ipnetwork::Ipv6Network>,
    pub default_ipv6_block_size: u8,
    /// The default IPv6 pool's `vxlanMode` (Calico's `CALICO_IPV6POOL_VXLAN`); its blocks go
    /// through `vxlan.device_v6` over the IPv6 underlay (`node.ipv6_address`).
    pub default_ipv6_vxlan_mode: crate::datastore::resources::EncapMode,
    /// Never borrow addresses from other nodes' blocks.
    pub strict_affinity: bool,
    /// Most blocks one node may claim; absent = no limit.
    pub max_blocks_per_node: Option<u32>,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            default_ipv4_pool_cidr: None,
            default_ipv4_block_size: 26,
            default_ipv4_ipip_mode: crate::datastore::resources::EncapMode::Never,
            default_ipv4_vxlan_mode: crate::datastore::resources::EncapMode::Never,
            default_ipv6_pool_cidr: None,
            default_ipv6_block_size: 122,
            default_ipv6_vxlan_mode: crate::datastore::resources::EncapMode::Never,
            strict_affinity: false,
            max_blocks_per_node: None,
        }
    }
}

/// The local API used by the CLI and the CNI plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Unix socket path; never exposed on the network. Mode 0660, owned by the agent's user.
    pub socket: PathBuf,
    /// The group owning the socket (a name or a numeric id): its members may call the API.
    /// Unset: the agent's own group.
    pub socket_group: Option<String>,
}

/// The default path of the agent's unix socket.
pub const DEFAULT_API_SOCKET: &str = "/run/tortie/tortie.sock";

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { socket: PathBuf::from(DEFAULT_API_SOCKET), socket_group: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Address of `/metrics`, `/livez` and `/readyz`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_METRICS_PORT)) }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text with key=value fields.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, or per module `info,tortie::bgp=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".to_string(), format: LogFormat::Text }
    }
}
