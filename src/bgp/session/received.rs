//! The prefixes a peer announces now, counted for its maximum-prefix limit.
//!
//! Kept only when a limit is configured: it is a second copy of the peer's
//! table (the RIB counts the same routes for status), so compact — unicast
//! prefixes without a path identifier, nearly all of them, take a 12-byte
//! [`PrefixMap`] entry; anything else an ordinary set entry. Nothing is
//! allocated before the first prefix: most peers of a reflector never have one here.

use std::collections::HashSet;

use ipnetwork::IpNetwork;

use crate::bgp::packet::{Family, Nlri};
use crate::prefix_map::PrefixMap;

#[derive(Debug, Default)]
pub struct Received(Option<Box<Tables>>);

#[derive(Debug, Default)]
struct Tables {
    unicast: PrefixMap,
    other: HashSet<(Family, Nlri)>,
}

/// The compact key of a unicast prefix without path identifier.
fn unicast(family: Family, nlri: &Nlri) -> Option<IpNetwork> {
    if nlri.path_id.is_some() || !family.is_ip_unicast() {
        return None;
    }
    IpNetwork::new(nlri.prefix.addr(), nlri.prefix.len()).ok()
}

impl Received {
    pub fn insert(&mut self, family: Family, nlri: &Nlri) {
        let tables = self.0.get_or_insert_default();
        match unicast(family, nlri) {
            Some(net) => {
                tables.unicast.insert(net, 0);
            }
            None => {
                tables.other.insert((family, *nlri));
            }
        }
    }

    pub fn remove(&mut self, family: Family, nlri: &Nlri) {
        let Some(tables) = self.0.as_mut() else { return };
        match unicast(family, nlri) {
            Some(net) => {
                tables.unicast.remove(&net);
            }
            None => {
                tables.other.remove(&(family, *nlri));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |tables| tables.unicast.len() + tables.other.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::packet::Prefix;

    fn nlri(s: &str, path_id: Option<u32>) -> Nlri {
        let net: IpNetwork = s.parse().unwrap();
        Nlri { path_id, prefix: Prefix::new(net.network(), net.prefix()).unwrap() }
    }

    #[test]
    fn counts_each_announced_prefix_once_whatever_its_kind() {
        let mut r = Received::default();
        r.insert(Family::IPV4_UNICAST, &nlri("10.0.0.0/24", None));
        r.insert(Family::IPV4_UNICAST, &nlri("10.0.0.0/24", None));
        r.insert(Family::IPV4_UNICAST, &nlri("10.0.0.0/24", Some(1)));
        r.insert(Family::IPV4_UNICAST, &nlri("10.0.0.0/24", Some(2)));
        r.insert(Family::IPV6_UNICAST, &nlri("fd00::/64", None));
        assert_eq!(r.len(), 4);
        r.remove(Family::IPV4_UNICAST, &nlri("10.0.0.0/24", Some(1)));
        r.remove(Family::IPV4_UNICAST, &nlri("10.9.0.0/24", None));
        assert_eq!(r.len(), 3, "a withdrawal of what was never announced counts nothing");
        r.clear();
        assert!(r.is_empty());
    }
}
