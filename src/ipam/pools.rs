//! Pool rules beyond one record's own: no two pools overlap, none overlaps link-local space, and
//! which pools a node may use (family, `allowedUses`, `disabled`, `nodeSelector`).

use super::block_math::overlaps;
use super::error::{IpamError, Result};
use crate::datastore::resources::{IpPool, PoolUse, Resource};
use crate::datastore::{Datastore, Stored};
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
        && selector_matches(&pool.node_selector, labels)
}

/// The subset of Calico's selector language pools use in practice: `all()`, `has(k)`, `!has(k)`,
/// `k == 'v'`, `k != 'v'`, joined by `&&`. Anything else matches no node, so a pool with a
/// selector we cannot read is never used by mistake.
pub fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    let selector = selector.trim();
    if selector.is_empty() {
        return true;
    }
    selector.split("&&").all(|term| term_matches(term.trim(), labels))
}

fn term_matches(term: &str, labels: &BTreeMap<String, String>) -> bool {
    let unquote = |v: &str| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
    if term == "all()" {
        return true;
    }
    if let Some(key) = term.strip_prefix("!has(").and_then(|t| t.strip_suffix(')')) {
        return !labels.contains_key(key.trim());
    }
    if let Some(key) = term.strip_prefix("has(").and_then(|t| t.strip_suffix(')')) {
        return labels.contains_key(key.trim());
    }
    if let Some((key, value)) = term.split_once("!=") {
        return labels.get(key.trim()) != Some(&unquote(value));
    }
    if let Some((key, value)) = term.split_once("==") {
        return labels.get(key.trim()) == Some(&unquote(value));
    }
    false
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
        assert!(!selector_matches("global()", &labels));
    }
}
