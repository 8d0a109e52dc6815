//! Pool rules beyond one record's own: no two pools overlap, none overlaps link-local space, and
//! which pools a node may use (family, `allowedUses`, `disabled`, `nodeSelector`).

use super::block_math::overlaps;
use super::error::{IpamError, Result};
use crate::datastore::resources::{IpPool, PoolUse, Resource};
use crate::datastore::{Datastore, Stored};
use crate::selector::Selector;
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;

/// Checks `pool` (named `name`) against its own rules and against every other pool.
pub fn check_pool(name: &str, pool: &IpPool, existing: &[Stored<IpPool>]) -> Result<()> {
    let invalid = |reason: String| IpamError::InvalidPool { name: name.to_string(), reason };
    pool.validate().map_err(invalid)?;
    // Calico: a pool must not overlap 169.254.0.0/16 or fe80::/10.
    for link_local in ["169.254.0.0/16", "fe80::/10"] {
        let link_local: IpNetwork = link_local.parse().expect("a valid literal");
        if overlaps(&pool.cidr, &link_local) {
            return Err(invalid(format!("cidr: {} overlaps link-local {link_local}", pool.cidr)));
        }
    }
    for other in existing.iter().filter(|o| o.name != name) {
        if overlaps(&pool.cidr, &other.spec.cidr) {
            return Err(IpamError::PoolOverlap {
                new: name.to_string(),
                new_cidr: pool.cidr,
                existing: other.name.clone(),
                existing_cidr: other.spec.cidr,
            });
        }
    }
    Ok(())
}

/// Creates a pool after checking it against the pools stored now. (Two overlapping pools created
/// at the same instant by two writers can both pass; `ipam check` would not see it either — pools
/// are created by operators, rarely.)
pub async fn create_pool(store: &Datastore, name: &str, pool: &IpPool) -> Result<Stored<IpPool>> {
    let existing = store.list::<IpPool>().await?;
    check_pool(name, pool, &existing.items)?;
    Ok(store.create(name, pool).await?)
}

/// Whether a pool may give `purpose` addresses of `family` to a node with `labels`.
pub fn usable(pool: &IpPool, family: u8, purpose: PoolUse, labels: &BTreeMap<String, String>) -> bool {
    let pool_family = if pool.cidr.is_ipv4() { 4 } else { 6 };
    pool_family == family
        && !pool.disabled
        && pool.allowed_uses.contains(&purpose)
        && node_selector_matches(&pool.node_selector, labels)
}

/// Whether a pool's `namespaceSelector` selects a namespace with `labels` (Calico's
/// `SelectsNamespace`: an empty selector selects every namespace; a namespace that does not exist
/// has no labels). A selector that does not parse selects none, as for `nodeSelector`.
pub fn namespace_selector_matches(pool: &IpPool, labels: &BTreeMap<String, String>) -> bool {
    pool.namespace_selector.is_empty() || Selector::parse(&pool.namespace_selector).is_ok_and(|s| s.matches(labels))
}

/// Whether a pool's `nodeSelector` selects a node with `labels`. A selector that does not parse
/// (only a record written before selectors were checked on write) selects no node, so such a pool
/// is never used by mistake.
fn node_selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    Selector::parse(selector).is_ok_and(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::Revision;

    fn stored(name: &str, cidr: &str) -> Stored<IpPool> {
        Stored { name: name.into(), revision: Revision(1), spec: IpPool::new(cidr.parse().unwrap()) }
    }

    #[test]
    fn overlapping_pool_is_refused_naming_both() {
        let existing = [stored("a", "10.0.0.0/16")];
        let err = check_pool("b", &IpPool::new("10.0.128.0/17".parse().unwrap()), &existing).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("b (10.0.128.0/17)") && text.contains("a (10.0.0.0/16)"), "{text}");
        assert!(check_pool("c", &IpPool::new("10.1.0.0/16".parse().unwrap()), &existing).is_ok());
        // Updating a pool does not overlap itself.
        assert!(check_pool("a", &IpPool::new("10.0.0.0/16".parse().unwrap()), &existing).is_ok());
    }

    #[test]
    fn bad_block_size_and_link_local_are_refused() {
        let mut pool = IpPool::new("10.0.0.0/16".parse().unwrap());
        pool.block_size = 33;
        assert!(matches!(check_pool("p", &pool, &[]), Err(IpamError::InvalidPool { .. })));
        let mut v6 = IpPool::new("fd00::/64".parse().unwrap());
        assert_eq!(v6.block_size, 122);
        v6.block_size = 100;
        assert!(check_pool("p6", &v6, &[]).unwrap_err().to_string().contains("blockSize"));
        let ll = IpPool::new("169.254.0.0/20".parse().unwrap());
        assert!(check_pool("ll", &ll, &[]).unwrap_err().to_string().contains("link-local"));
    }

    #[test]
    fn usable_honours_family_use_disabled_and_selector() {
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let mut pool = IpPool::new("10.0.0.0/16".parse().unwrap());
        assert!(usable(&pool, 4, PoolUse::Workload, &labels));
        assert!(!usable(&pool, 6, PoolUse::Workload, &labels));
        pool.allowed_uses = vec![PoolUse::Tunnel];
        assert!(!usable(&pool, 4, PoolUse::Workload, &labels));
        assert!(usable(&pool, 4, PoolUse::Tunnel, &labels));
        pool.node_selector = "zone == 'b'".into();
        assert!(!usable(&pool, 4, PoolUse::Tunnel, &labels));
        pool.node_selector = "has(zone) && zone != 'b'".into();
        assert!(usable(&pool, 4, PoolUse::Tunnel, &labels));
        pool.disabled = true;
        assert!(!usable(&pool, 4, PoolUse::Tunnel, &labels));
        pool.disabled = false;
        pool.node_selector = "zone in {'a', 'c'} || zone starts with 'x'".into();
        assert!(usable(&pool, 4, PoolUse::Tunnel, &labels));
        pool.node_selector = "zone ==".into();
        assert!(!usable(&pool, 4, PoolUse::Tunnel, &labels));
    }

    /// A pool's `nodeSelector` is matched against the node's record as it is at the claim: a node
    /// labelled after its agent started claims from the pool its new labels select.
    #[tokio::test]
    async fn block_claims_pick_pools_by_the_node_records_current_labels() {
        use crate::datastore::resources::Node;
        use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
        use crate::ipam::{Ipam, IpamOptions, Request};
        let dir = tempfile::tempdir().unwrap();
        let store =
            Datastore::new(SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap());
        let mut rack = IpPool::new("10.20.0.0/24".parse().unwrap());
        rack.node_selector = "rack == 'r1'".into();
        create_pool(&store, "rack", &rack).await.unwrap();
        let mut others = IpPool::new("10.30.0.0/24".parse().unwrap());
        others.node_selector = "!has(rack)".into();
        create_pool(&store, "others", &others).await.unwrap();
        let created = store.create("n1", &Node::default()).await.unwrap();
        let ipam = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..IpamOptions::default() });
        let first = ipam.allocate(Request::workload("h1", 4, "p1", "default", "n1")).await.unwrap();
        assert!(others.cidr.contains(first.ip), "{first:?}");
        let relabelled = Node { labels: BTreeMap::from([("rack".into(), "r1".into())]), ..Node::default() };
        store.update("n1", &relabelled, created.revision).await.unwrap();
        let second = ipam.allocate(Request::workload("h2", 4, "p2", "default", "n1")).await.unwrap();
        assert!(rack.cidr.contains(second.ip), "{second:?}");
    }
}
