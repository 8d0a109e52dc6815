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
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 11] = [
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
        }
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
}
