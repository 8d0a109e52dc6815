//! Default pools: when the datastore holds no pool of a family, the agent
//! creates the one the configuration names (`ipam.default_ipv4_pool_cidr`,
//! Calico's `CALICO_IPV4POOL_CIDR`; `ipam.default_ipv6_pool_cidr` with its
//! `default_ipv6_vxlan_mode`, Calico's `CALICO_IPV6POOL_CIDR`), as calico-node does on start. Several
//! nodes starting at once race for the same name: exactly one create wins,
//! the others see it exists, which is fine.

use super::kubernetes::pool::{
    DEFAULT_IPV6_POOL_NAME as DEFAULT_IPV6_POOL, DEFAULT_POOL_NAME as DEFAULT_IPV4_POOL, ipv6_pool_from_env,
    pool_from_env,
};
use crate::config::Config;
use crate::datastore::resources::IpPool;
use crate::datastore::{Datastore, DatastoreError};
use crate::ipam::IpamError;

/// Creates the configured default pools of the families that have none;
/// returns every pool stored afterwards.
pub async fn ensure_default(ds: &Datastore, config: &Config) -> Result<Vec<IpPool>, String> {
    let existing = ds.list::<IpPool>().await.map_err(|e| format!("cannot list IP pools: {e}"))?;
    let has = |v4: bool| existing.items.iter().any(|p| p.spec.cidr.is_ipv4() == v4);
    let mut wanted = Vec::new();
    // TORTIE_IPV4POOL_* / CALICO_IPV4POOL_* over ipam.default_ipv4_*; a malformed variable stops the agent.
    let env: Vec<(String, String)> = std::env::vars().collect();
    if let Some(pool) = pool_from_env(&config.ipam, &env)?.filter(|_| !has(true)) {
        wanted.push((DEFAULT_IPV4_POOL, pool));
    }
    // TORTIE_IPV6POOL_* / CALICO_IPV6POOL_* over ipam.default_ipv6_*.
    if let Some(pool) = ipv6_pool_from_env(&config.ipam, &env)?.filter(|_| !has(false)) {
        wanted.push((DEFAULT_IPV6_POOL, pool));
    }
    for (name, pool) in wanted {
        match crate::ipam::create_pool(ds, name, &pool).await {
            Ok(_) => tracing::info!(subsys = "ipam", pool = name, cidr = %pool.cidr, "default pool created"),
            Err(IpamError::Datastore(DatastoreError::AlreadyExists { .. })) => {}
            Err(e) => return Err(format!("cannot create the default pool {name} ({}): {e}", pool.cidr)),
        }
    }
    let pools = ds.list::<IpPool>().await.map_err(|e| format!("cannot list IP pools: {e}"))?;
    Ok(pools.items.into_iter().map(|s| s.spec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::EncapMode;
    use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};

    #[tokio::test]
    async fn the_default_ipv6_pool_takes_the_configured_vxlan_mode() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap();
        let ds = Datastore::new(backend);
        let text = "ipam:\n  default_ipv6_pool_cidr: fd00:245::/64\n  default_ipv6_vxlan_mode: CrossSubnet\n";
        let config = crate::config::load_from_str(text, "test.yaml", &[]).unwrap().config;
        let pools = ensure_default(&ds, &config).await.unwrap();
        let v6: Vec<(String, EncapMode, EncapMode)> = pools
            .iter()
            .filter(|p| p.cidr.is_ipv6())
            .map(|p| (p.cidr.to_string(), p.vxlan_mode, p.ipip_mode))
            .collect();
        assert_eq!(v6, vec![("fd00:245::/64".to_string(), EncapMode::CrossSubnet, EncapMode::Never)]);
    }
}
