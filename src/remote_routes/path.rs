//! Whether a remote block is encapsulated: Calico's rule (mode Always /
//! CrossSubnet / Never, the node's prefix length deciding "same subnet"),
//! plus one step beyond Calico: a same-subnet node whose direct path does
//! not answer the liveness probe is reached encapsulated until it answers
//! again. The same for every encapsulation.

use crate::datastore::resources::EncapMode;

/// The chosen path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Direct,
    Encapsulated,
}

/// Chooses the path to a node under `mode`. `same_subnet`: the node's
/// underlay address is inside this node's prefix; `direct_alive` is the
/// liveness probe's verdict, `None` when the node is not probed.
pub fn choose(mode: EncapMode, same_subnet: bool, direct_alive: Option<bool>) -> Path {
    match mode {
        EncapMode::Always => Path::Encapsulated,
        // A node in another subnet cannot be reached directly without a
        // router that knows pod routes; under Never that is the operator's choice.
        EncapMode::Never => Path::Direct,
        EncapMode::CrossSubnet if !same_subnet => Path::Encapsulated,
        EncapMode::CrossSubnet => match direct_alive {
            Some(false) => Path::Encapsulated,
            _ => Path::Direct,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_and_never_ignore_the_subnet() {
        assert_eq!(choose(EncapMode::Always, true, None), Path::Encapsulated);
        assert_eq!(choose(EncapMode::Never, false, Some(false)), Path::Direct);
    }

    #[test]
    fn cross_subnet_encapsulates_only_outside_the_node_prefix() {
        assert_eq!(choose(EncapMode::CrossSubnet, true, None), Path::Direct);
        assert_eq!(choose(EncapMode::CrossSubnet, false, None), Path::Encapsulated);
    }

    #[test]
    fn a_same_subnet_node_whose_direct_path_is_dead_is_encapsulated() {
        assert_eq!(choose(EncapMode::CrossSubnet, true, Some(false)), Path::Encapsulated);
        assert_eq!(choose(EncapMode::CrossSubnet, true, Some(true)), Path::Direct);
    }
}
