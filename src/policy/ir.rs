//! The compiled form of policy: per policy and direction a chain of rules over address sets,
//! per local endpoint and direction the list of policy chains that apply, in order. Rules
//! name sets, never endpoints: a pod appearing, leaving or relabelled changes set elements
//! only, and the rule count grows with policies, not with pods × policies. Names are stable
//! hashes of what they stand for, so an unchanged policy keeps its chain and set names.

use crate::datastore::resources::Action;
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Which address or port of the packet a match reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Source,
    Destination,
}

/// One condition of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Match {
    /// IP version 4 or 6.
    Family(u8),
    Protocol(u8),
    NotProtocol(u8),
    Icmp {
        icmp_type: u8,
        code: Option<u8>,
    },
    NotIcmp {
        icmp_type: u8,
        code: Option<u8>,
    },
    /// The address is (or, negated, is not) in the named set.
    Address {
        side: Side,
        set: String,
        negated: bool,
    },
    /// The port is (not) in one of the inclusive ranges.
    Port {
        side: Side,
        ranges: Vec<(u16, u16)>,
        negated: bool,
    },
}

/// A rule: all matches hold → action. `origin` is its index among the policy's rules of the
/// direction (one policy rule may compile to several: one per port alternative).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IrRule {
    pub matches: Vec<Match>,
    pub action: Action,
    pub origin: usize,
}

/// One policy's chains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyChains {
    pub name: String,
    /// The chain-name stem (a hash of the name).
    pub id: String,
    pub ingress: Vec<IrRule>,
    pub egress: Vec<IrRule>,
}

/// One local endpoint's dispatch: the policies of each direction in order (indices into
/// [`Program::policies`]); `None` when no policy selects it for that direction (allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointChains {
    pub endpoint: String,
    /// The host side of its veth.
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    pub ingress: Option<Vec<usize>>,
    pub egress: Option<Vec<usize>>,
}

/// Everything compiled for one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    /// Address sets by name (both families mixed; the renderer splits them).
    pub sets: BTreeMap<String, Vec<IpNetwork>>,
    /// In the order they apply; each shared, so that a renderer tells an unchanged policy by
    /// pointer (a pod's change leaves every one alone, a policy's change all but that one).
    pub policies: Vec<Arc<PolicyChains>>,
    pub endpoints: Vec<EndpointChains>,
}

impl Program {
    /// The program without set elements: equal for two programs that differ only in set
    /// membership, so that an update can rewrite elements alone.
    pub fn shape(&self) -> Program {
        Program {
            sets: self.sets.keys().map(|k| (k.clone(), Vec::new())).collect(),
            policies: self.policies.clone(),
            endpoints: self.endpoints.clone(),
        }
    }
}

/// A stable 64-bit FNV-1a hash, in hex: names that do not change between runs or builds.
pub fn stable_id(text: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = text.bytes().fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}
