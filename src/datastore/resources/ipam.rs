//! IPAM resources: IPPool, IPAMBlock, BlockAffinity, IPAMHandle and IPAMConfig (Calico §2).

use super::{PackedCounts, PackedMap};
use ipnetwork::IpNetwork;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How traffic to a pool's addresses is encapsulated (`ipipMode`, `vxlanMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

/// What addresses of a pool may be used for (`allowedUses`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PoolUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

/// Whether a pool serves requests that name no pool (`assignmentMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AssignmentMode {
    /// Chosen for any request its uses and selectors allow.
    #[default]
    Automatic,
    /// Only for requests that name it (the `cni.projectcalico.org/ipv4pools` annotation).
    Manual,
}

fn default_node_selector() -> String {
    "all()".to_string()
}

fn default_allowed_uses() -> Vec<PoolUse> {
    vec![PoolUse::Workload, PoolUse::Tunnel]
}

/// A range pods get addresses from, cut into blocks of `blockSize`.
// Read through `IpPoolWire`, so a missing `blockSize` defaults by the CIDR's family.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = block_size_optional)]
pub struct IpPool {
    /// Strictly masked; immutable.
    #[schemars(with = "String")]
    pub cidr: IpNetwork,
    /// Prefix length of the blocks: 20–32 for IPv4, 116–128 for IPv6; when absent Calico's
    /// default for the family, 26 or 122.
    pub block_size: u8,
    #[serde(default)]
    pub ipip_mode: EncapMode,
    #[serde(default)]
    pub vxlan_mode: EncapMode,
    #[serde(default)]
    pub nat_outgoing: bool,
    /// No new allocations from this pool.
    #[serde(default)]
    pub disabled: bool,
    /// Keep the pool's routes out of BGP.
    #[serde(default, rename = "disableBGPExport")]
    pub disable_bgp_export: bool,
    #[serde(default = "default_node_selector")]
    pub node_selector: String,
    /// The namespaces whose pods get automatic addresses from the pool (their Namespace's
    /// labels); empty or absent: every namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    /// Empty or absent: Workload and Tunnel. LoadBalancer combines with neither.
    #[serde(default = "default_allowed_uses")]
    pub allowed_uses: Vec<PoolUse>,
    #[serde(default)]
    pub assignment_mode: AssignmentMode,
}

/// Calico's block size for an IPv4 pool that names none.
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
/// Calico's block size for an IPv6 pool that names none.
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;

/// Calico's default block size for a pool of `cidr`'s family.
pub fn default_block_size(cidr: &IpNetwork) -> u8 {
    if cidr.is_ipv4() { DEFAULT_BLOCK_SIZE_V4 } else { DEFAULT_BLOCK_SIZE_V6 }
}

/// An IPPool as written: `blockSize` may be absent or 0 and `allowedUses` empty (Calico's
/// defaults then apply). Read straight from the caller's deserialiser, so fields it does not know
/// are seen by whoever tracks them (`datastore::unsupported`, `tortie apply`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpPoolWire {
    cidr: IpNetwork,
    #[serde(default)]
    block_size: Option<u8>,
    #[serde(default)]
    ipip_mode: EncapMode,
    #[serde(default)]
    vxlan_mode: EncapMode,
    #[serde(default)]
    nat_outgoing: bool,
    #[serde(default)]
    disabled: bool,
    #[serde(default, rename = "disableBGPExport")]
    disable_bgp_export: bool,
    #[serde(default = "default_node_selector")]
    node_selector: String,
    #[serde(default)]
    namespace_selector: String,
    #[serde(default)]
    allowed_uses: Vec<PoolUse>,
    #[serde(default)]
    assignment_mode: AssignmentMode,
}

impl<'de> Deserialize<'de> for IpPool {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IpPool, D::Error> {
        let w = IpPoolWire::deserialize(deserializer)?;
        Ok(IpPool {
            block_size: w.block_size.filter(|b| *b != 0).unwrap_or_else(|| default_block_size(&w.cidr)),
            allowed_uses: if w.allowed_uses.is_empty() { default_allowed_uses() } else { w.allowed_uses },
            cidr: w.cidr,
            ipip_mode: w.ipip_mode,
            vxlan_mode: w.vxlan_mode,
            nat_outgoing: w.nat_outgoing,
            disabled: w.disabled,
            disable_bgp_export: w.disable_bgp_export,
            node_selector: w.node_selector,
            namespace_selector: w.namespace_selector,
            assignment_mode: w.assignment_mode,
        })
    }
}

/// The schema's side of the family default: `blockSize` is not required.
fn block_size_optional(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::Array(required)) = schema.get_mut("required") {
        required.retain(|field| field != "blockSize");
    }
}

impl IpPool {
    /// A pool with Calico's defaults: the family's block size, no encapsulation.
    pub fn new(cidr: IpNetwork) -> IpPool {
        IpPool {
            cidr,
            block_size: default_block_size(&cidr),
            ipip_mode: EncapMode::Never,
            vxlan_mode: EncapMode::Never,
            nat_outgoing: false,
            disabled: false,
            disable_bgp_export: false,
            node_selector: default_node_selector(),
            namespace_selector: String::new(),
            allowed_uses: default_allowed_uses(),
            assignment_mode: AssignmentMode::Automatic,
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        check_masked("cidr", &self.cidr)?;
        let range = if self.cidr.is_ipv4() { 20..=32 } else { 116..=128 };
        if !range.contains(&self.block_size) {
            return Err(format!("blockSize: {} is outside {range:?} for {}", self.block_size, self.cidr));
        }
        if self.block_size < self.cidr.prefix() {
            return Err(format!("blockSize: {} is larger than the pool {}", self.block_size, self.cidr));
        }
        if self.cidr.is_ipv6() && self.ipip_mode != EncapMode::Never {
            return Err("ipipMode: IP-in-IP is not possible for an IPv6 pool".to_string());
        }
        if self.ipip_mode != EncapMode::Never && self.vxlan_mode != EncapMode::Never {
            return Err("vxlanMode: cannot be combined with ipipMode".to_string());
        }
        crate::selector::check_node_selector("nodeSelector", &self.node_selector)?;
        if !self.namespace_selector.is_empty() {
            crate::selector::check_field("namespaceSelector", &self.namespace_selector)?;
        }
        if self.allowed_uses.contains(&PoolUse::LoadBalancer) {
            self.check_load_balancer()?;
        }
        Ok(())
    }

    /// Calico's rules for a LoadBalancer pool: its addresses are announced from every node.
    fn check_load_balancer(&self) -> Result<(), String> {
        if let Some(other) = self.allowed_uses.iter().find(|u| **u != PoolUse::LoadBalancer) {
            return Err(format!("allowedUses: LoadBalancer cannot be combined with {other:?}"));
        }
        if self.ipip_mode != EncapMode::Never {
            return Err(format!("ipipMode: {:?} is not possible for a LoadBalancer pool", self.ipip_mode));
        }
        if self.vxlan_mode != EncapMode::Never {
            return Err(format!("vxlanMode: {:?} is not possible for a LoadBalancer pool", self.vxlan_mode));
        }
        if self.disable_bgp_export {
            return Err("disableBGPExport: true is not possible for a LoadBalancer pool".to_string());
        }
        if self.node_selector.trim() != "all()" {
            return Err(format!("nodeSelector: {:?} must be all() for a LoadBalancer pool", self.node_selector));
        }
        Ok(())
    }
}

/// The name Calico gives a block or affinity for `cidr`: the CIDR with `.`, `:` and `/` as `-`.
pub fn cidr_name(cidr: &IpNetwork) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// The CIDR a block named `name` by [`cidr_name`] is for; `None` for a name `cidr_name` gives
/// no CIDR, or gives two: an IPv6 address ending in a dotted quad (`::ffff:10.0.0.64`) is named
/// like one written in hex groups (`::ffff:10:0:0:64`), and the caller must read the record.
pub fn cidr_of_name(name: &str) -> Option<IpNetwork> {
    let (address, prefix) = name.rsplit_once('-')?;
    let parts: Vec<&str> = address.split('-').collect();
    let named = |text: String| text.parse::<IpNetwork>().ok().filter(|c| cidr_name(c) == name);
    // An IPv4 name has four dotted-quad parts; anything else is IPv6 (`::` gives empty parts).
    if parts.len() == 4 && parts.iter().all(|p| !p.is_empty()) {
        return named(format!("{}/{prefix}", parts.join(".")));
    }
    let hex = named(format!("{}/{prefix}", parts.join(":")));
    let dotted_tail = parts
        .len()
        .checked_sub(4)
        .and_then(|head| named(format!("{}:{}/{prefix}", parts[..head].join(":"), parts[head..].join("."))));
    match (hex, dotted_tail) {
        (Some(cidr), None) | (None, Some(cidr)) => Some(cidr),
        _ => None,
    }
}

fn check_masked(field: &str, cidr: &IpNetwork) -> Result<(), String> {
    if cidr.ip() != cidr.network() {
        return Err(format!("{field}: {cidr} is not strictly masked (the network is {})", cidr.network()));
    }
    Ok(())
}

/// Who holds one allocated address of a block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AllocationAttribute {
    /// The IPAM handle the address belongs to (Calico spells it `handle_id`).
    #[serde(default, rename = "handle_id", skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Owner attributes: pod, namespace, node.
    // Packed (`PackedMap`): every agent holds every block's.
    #[serde(default, skip_serializing_if = "PackedMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub secondary: PackedMap,
    /// Calico's previous or potential owner (a live migration's other pod); kept as read.
    #[serde(default, rename = "alternateOwnerAttrs", skip_serializing_if = "PackedMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub alternate_owner_attrs: PackedMap,
    /// RFC 3339 time Calico released the address into its cool-down; the address stays
    /// allocated, as it does in Calico until the cool-down ends.
    #[serde(default, rename = "releasedAt", skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
}

/// A block of addresses, usually affine to one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpamBlock {
    #[schemars(with = "String")]
    pub cidr: IpNetwork,
    /// `host:<node>` or `virtual:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// RFC 3339 time the affinity was claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    /// One entry per address (by ordinal): `None` when free, else an index into `attributes`.
    pub allocations: Vec<Option<u32>>,
    /// Free ordinals, oldest-freed first: allocation pops the head, release pushes the tail.
    pub unallocated: Vec<u32>,
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    #[serde(default)]
    pub sequence_number: u64,
    /// Ordinal → the block's sequence number when that address was allocated.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, u64>")]
    pub sequence_number_for_allocation: PackedCounts,
    /// Soft-deleted: being released, not to be allocated from.
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub strict_affinity: bool,
}

impl IpamBlock {
    /// An empty block for `cidr` with every ordinal free, in order.
    pub fn empty(cidr: IpNetwork, affinity: Option<String>) -> IpamBlock {
        let size = block_len(&cidr).unwrap_or(0);
        IpamBlock {
            cidr,
            affinity,
            affinity_claim_time: None,
            allocations: vec![None; size],
            unallocated: (0..size as u32).collect(),
            attributes: Vec::new(),
            sequence_number: 0,
            sequence_number_for_allocation: PackedCounts::new(),
            deleted: false,
            strict_affinity: false,
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        check_masked("cidr", &self.cidr)?;
        let size = block_len(&self.cidr).ok_or_else(|| format!("cidr: {} is too large for a block", self.cidr))?;
        if self.allocations.len() != size {
            return Err(format!("allocations: {} entries for a block of {size} addresses", self.allocations.len()));
        }
        for (i, a) in self.allocations.iter().enumerate() {
            if let Some(attr) = a
                && *attr as usize >= self.attributes.len()
            {
                return Err(format!("allocations[{i}]: attribute index {attr} is out of range"));
            }
        }
        for (i, ordinal) in self.unallocated.iter().enumerate() {
            match self.allocations.get(*ordinal as usize) {
                None => return Err(format!("unallocated[{i}]: ordinal {ordinal} is outside the block")),
                Some(Some(_)) => return Err(format!("unallocated[{i}]: ordinal {ordinal} is allocated")),
                Some(None) => {}
            }
        }
        Ok(())
    }
}

/// Addresses in a block of `cidr`, if small enough to list (at most 2^16).
fn block_len(cidr: &IpNetwork) -> Option<usize> {
    let bits = if cidr.is_ipv4() { 32 } else { 128 };
    let host_bits = bits - u32::from(cidr.prefix());
    (host_bits <= 16).then(|| 1usize << host_bits)
}

/// Where a host's claim on a block stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    Pending,
    Confirmed,
    PendingDeletion,
}

/// A host's claim on a block: none → pending → confirmed → pendingDeletion → none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockAffinity {
    pub state: AffinityState,
    pub node: String,
    /// `host` or `virtual`.
    #[serde(rename = "type", default = "default_affinity_type")]
    pub affinity_type: String,
    #[schemars(with = "String")]
    pub cidr: IpNetwork,
    /// A boolean; read also as Calico's `crd.projectcalico.org/v1` string (`"false"`).
    #[serde(default, deserialize_with = "bool_or_string")]
    pub deleted: bool,
}

/// A boolean, or a string Go's `strconv.ParseBool` accepts (as Calico's v1 CRDs store some).
fn bool_or_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bool(bool),
        Text(String),
    }
    match Either::deserialize(deserializer)? {
        Either::Bool(b) => Ok(b),
        Either::Text(text) => match text.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(D::Error::custom(format!("{text:?} is neither true nor false"))),
        },
    }
}

fn default_affinity_type() -> String {
    "host".to_string()
}

impl BlockAffinity {
    pub(super) fn check(&self) -> Result<(), String> {
        check_masked("cidr", &self.cidr)?;
        if self.node.is_empty() {
            return Err("node: is required".to_string());
        }
        // Calico's `virtual` affinities hold its load-balancer blocks, which tortie does not manage.
        if self.affinity_type != "host" {
            return Err(format!("type: {:?} is not supported: only host affinities are", self.affinity_type));
        }
        Ok(())
    }
}

/// The addresses one owner (a pod, a tunnel) holds: block CIDR → how many in that block, so a
/// release by handle visits only those blocks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpamHandle {
    #[serde(rename = "handleID")]
    pub handle_id: String,
    #[serde(default)]
    pub block: BTreeMap<String, u32>,
    #[serde(default)]
    pub deleted: bool,
}

impl IpamHandle {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.handle_id.is_empty() {
            return Err("handleID: is required".to_string());
        }
        Ok(())
    }
}

/// Addresses IPAM never hands out (Calico's IPReservation): whole blocks are never claimed,
/// single addresses skipped. Addresses already allocated stay so.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpReservation {
    #[serde(default, rename = "reservedCIDRs")]
    #[schemars(with = "Vec<String>")]
    pub reserved_cidrs: Vec<IpNetwork>,
}

impl IpReservation {
    pub(super) fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

fn default_true() -> bool {
    true
}

/// The IPAM settings, a singleton named `default`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpamConfig {
    /// Hosts only use addresses from blocks affine to them.
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default = "default_true")]
    pub auto_allocate_blocks: bool,
    /// 0 means the default of 20; above 0 requires `strictAffinity`.
    #[serde(default)]
    pub max_blocks_per_host: u32,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig { strict_affinity: false, auto_allocate_blocks: true, max_blocks_per_host: 0 }
    }
}

impl IpamConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.max_blocks_per_host > 0 && !self.strict_affinity {
            return Err("maxBlocksPerHost: above 0 requires strictAffinity".to_string());
        }
        if !self.auto_allocate_blocks && !self.strict_affinity {
            return Err("autoAllocateBlocks: false requires strictAffinity".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        /// Every masked CIDR's name gives the CIDR back, IPv4 and IPv6 (`::` anywhere).
        #[test]
        fn a_block_name_gives_its_cidr_back(v4 in any::<u32>(), v6 in any::<u128>(), p4 in 0u8..=32, p6 in 0u8..=128, zeros in 0u32..8) {
            let v6 = v6 & !(0xffff_u128 << (16 * zeros)) & !(0xffff_u128 << (16 * ((zeros + 1) % 8)));
            for cidr in [
                IpNetwork::new(std::net::Ipv4Addr::from(v4).into(), p4).unwrap(),
                IpNetwork::new(std::net::Ipv6Addr::from(v6).into(), p6).unwrap(),
            ] {
                let masked = IpNetwork::new(cidr.network(), cidr.prefix()).unwrap();
                prop_assert_eq!(cidr_of_name(&cidr_name(&masked)), Some(masked));
            }
            // An IPv4-mapped address is written with a dotted quad: its name is another's too,
            // so it gives either itself or nothing, never another CIDR.
            let mapped = std::net::Ipv4Addr::from(v4).to_ipv6_mapped();
            let mapped = IpNetwork::new(mapped.into(), p6.max(96)).unwrap();
            let masked = IpNetwork::new(mapped.network(), mapped.prefix()).unwrap();
            let back = cidr_of_name(&cidr_name(&masked));
            prop_assert!(back.is_none() || back == Some(masked), "{} gave {:?}", masked, back);
        }
    }

    #[test]
    fn names_of_no_cidr_give_none() {
        for name in ["", "default", "10-0-0-0", "10-0-0-0-33", "10-0-0-256-26", "node1-10-0-0-0-26", "10-00-0-0-26"] {
            assert_eq!(cidr_of_name(name), None, "{name}");
        }
        assert_eq!(cidr_of_name("fd00--40-122"), Some("fd00::40/122".parse().unwrap()));
        // `::ffff:10.0.0.64/122` and `::ffff:10:0:0:64/122` share this name.
        assert_eq!(cidr_name(&"::ffff:10.0.0.64/122".parse().unwrap()), "--ffff-10-0-0-64-122");
        assert_eq!(cidr_of_name("--ffff-10-0-0-64-122"), None);
    }

    #[test]
    fn pool_uses_calico_field_names_and_defaults() {
        let pool: IpPool = serde_json::from_value(json!({"cidr": "10.0.0.0/16", "blockSize": 26})).unwrap();
        assert_eq!(pool, IpPool::new("10.0.0.0/16".parse().unwrap()));
        let wire = serde_json::to_value(&pool).unwrap();
        assert_eq!(wire["disableBGPExport"], json!(false));
        assert_eq!(wire["ipipMode"], json!("Never"));
    }

    #[test]
    fn pool_without_block_size_gets_calico_default_per_family() {
        let v4: IpPool = serde_json::from_value(json!({"cidr": "10.0.0.0/16"})).unwrap();
        assert_eq!(v4.block_size, 26);
        let v6: IpPool = serde_json::from_value(json!({"cidr": "fd00::/48"})).unwrap();
        assert_eq!(v6.block_size, 122);
        let explicit: IpPool = serde_json::from_value(json!({"cidr": "fd00::/48", "blockSize": 116})).unwrap();
        assert_eq!(explicit.block_size, 116);
        assert_eq!(serde_json::to_value(&v4).unwrap()["blockSize"], json!(26));
        let zero: IpPool = serde_json::from_value(json!({"cidr": "10.0.0.0/16", "blockSize": 0})).unwrap();
        assert_eq!(zero.block_size, 26);
        let bad = serde_path_to_error::deserialize::<_, IpPool>(json!({"cidr": "10.0.0.0/16", "blockSize": "x"}))
            .unwrap_err();
        assert_eq!(bad.path().to_string(), "blockSize", "{bad}");
        let schema = serde_json::to_value(schemars::schema_for!(IpPool)).unwrap();
        assert!(!schema["required"].as_array().unwrap().contains(&json!("blockSize")), "{schema}");
    }

    #[test]
    fn only_host_affinities_are_accepted() {
        let of = |t: &str| -> BlockAffinity {
            serde_json::from_value(json!({"state": "confirmed", "node": "n1", "cidr": "10.0.0.0/26", "type": t}))
                .unwrap()
        };
        assert_eq!(of("host").check(), Ok(()));
        assert_eq!(
            of("virtual").check(),
            Err("type: \"virtual\" is not supported: only host affinities are".to_string())
        );
    }

    #[test]
    fn affinity_deleted_reads_calico_string_and_boolean() {
        // crd.projectcalico.org/v1 as Calico writes it: `deleted` a string, no `type`.
        let v1: BlockAffinity = serde_json::from_value(
            json!({"state": "confirmed", "node": "n1", "cidr": "10.0.0.0/26", "deleted": "false"}),
        )
        .unwrap();
        assert!(!v1.deleted);
        assert_eq!(v1.affinity_type, "host");
        let v3: BlockAffinity =
            serde_json::from_value(json!({"state": "pending", "node": "n1", "cidr": "10.0.0.0/26", "deleted": true}))
                .unwrap();
        assert!(v3.deleted);
        let yes: BlockAffinity =
            serde_json::from_value(json!({"state": "pending", "node": "n", "cidr": "10.0.0.0/26", "deleted": "true"}))
                .unwrap();
        assert!(yes.deleted);
        // Written back in tortie's canonical form.
        assert_eq!(serde_json::to_value(&v1).unwrap()["deleted"], json!(false));
        let bad = serde_json::from_value::<BlockAffinity>(
            json!({"state": "pending", "node": "n", "cidr": "10.0.0.0/26", "deleted": "maybe"}),
        )
        .unwrap_err();
        assert!(bad.to_string().contains("maybe"), "{bad}");
    }

    #[test]
    fn calico_block_attributes_survive_a_round_trip() {
        let calico = json!({
            "cidr": "10.0.0.0/30",
            "affinity": "host:n1",
            "allocations": [0, null, null, null],
            "unallocated": [1, 2, 3],
            "attributes": [{
                "handle_id": "k8s-pod-network.abc",
                "secondary": {"pod": "p", "namespace": "default", "node": "n1"},
                "alternateOwnerAttrs": {"pod": "p-target", "namespace": "default"},
                "releasedAt": "2026-12-06T10:00:00Z"
            }],
            "sequenceNumber": 1,
            "sequenceNumberForAllocation": {"0": 1}
        });
        let block: IpamBlock = serde_json::from_value(calico.clone()).unwrap();
        assert!(!block.deleted && !block.strict_affinity);
        let wire = serde_json::to_value(&block).unwrap();
        assert_eq!(wire["attributes"], calico["attributes"]);
    }

    #[test]
    fn pool_reads_assignment_mode_and_empty_allowed_uses_as_calico_does() {
        let manual: IpPool =
            serde_json::from_value(json!({"cidr": "10.0.0.0/16", "assignmentMode": "Manual", "allowedUses": []}))
                .unwrap();
        assert_eq!(manual.assignment_mode, AssignmentMode::Manual);
        assert_eq!(manual.allowed_uses, default_allowed_uses());
        assert_eq!(IpPool::new(manual.cidr).assignment_mode, AssignmentMode::Automatic);
        let bad = serde_path_to_error::deserialize::<_, IpPool>(
            json!({"cidr": "10.0.0.0/16", "assignmentMode": "Sometimes"}),
        );
        assert_eq!(bad.unwrap_err().path().to_string(), "assignmentMode");
    }

    #[test]
    fn unmasked_pool_is_rejected() {
        let pool = IpPool::new("10.0.0.1/16".parse().unwrap());
        assert!(pool.check().unwrap_err().starts_with("cidr:"));
    }

    #[test]
    fn empty_block_is_consistent_and_named_like_calico() {
        let cidr: IpNetwork = "10.0.0.64/26".parse().unwrap();
        let block = IpamBlock::empty(cidr, Some("host:n1".into()));
        assert_eq!(block.allocations.len(), 64);
        assert_eq!(block.check(), Ok(()));
        assert_eq!(cidr_name(&cidr), "10-0-0-64-26");
    }

    #[test]
    fn block_with_dangling_attribute_index_is_rejected() {
        let mut block = IpamBlock::empty("10.0.0.0/30".parse().unwrap(), None);
        block.allocations[1] = Some(3);
        block.unallocated.retain(|o| *o != 1);
        assert!(block.check().unwrap_err().starts_with("allocations[1]"));
    }
}
