//! The default IP pool, created at start-up when the cluster has none, from the variables
//! Calico users know: `TORTIE_IPV4POOL_*`, else `CALICO_IPV4POOL_*` (`CIDR`, `BLOCK_SIZE`, `IPIP`,
//! `VXLAN`, `NAT_OUTGOING`, `NODE_SELECTOR`, `DISABLE_BGP_EXPORT`), over the `ipam.default_ipv4_*` fields.

use crate::config::IpamConfig;
use crate::datastore::resources::{EncapMode, IpPool};
use crate::datastore::{Datastore, DatastoreError};
use crate::ipam::{IpamError, create_pool};
use ipnetwork::{IpNetwork, Ipv4Network};

/// The name of the pool created from the environment (Calico's).
pub const DEFAULT_POOL_NAME: &str = "default-ipv4-ippool";

/// The variable `suffix` from `vars`: `TORTIE_IPV4POOL_<suffix>` wins over `CALICO_IPV4POOL_<suffix>`.
fn lookup<'a>(vars: &'a [(String, String)], suffix: &str) -> Option<(String, &'a str)> {
    ["TORTIE_IPV4POOL_", "CALICO_IPV4POOL_"].iter().find_map(|prefix| {
        let name = format!("{prefix}{suffix}");
        vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (name, v.trim()))
    })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{name}={value:?} is not a boolean (true or false)")),
    }
}

/// The encapsulation mode variable `suffix` names, else `configured` (field path, value); with
/// where it came from. A malformed value is reported and taken as `Never`.
fn encap_mode(
    vars: &[(String, String)],
    suffix: &str,
    configured: (&str, EncapMode),
    errors: &mut Vec<String>,
) -> (String, EncapMode) {
    let Some((name, v)) = lookup(vars, suffix) else { return (configured.0.to_string(), configured.1) };
    let mode = match v.to_ascii_lowercase().as_str() {
        "always" => EncapMode::Always,
        "crosssubnet" => EncapMode::CrossSubnet,
        "never" | "off" => EncapMode::Never,
        _ => {
            errors.push(format!("{name}={v:?} is not one of Always, CrossSubnet, Never"));
            EncapMode::Never
        }
    };
    (name, mode)
}

/// The default pool `ipam` and the environment `vars` describe; `None` without a CIDR. Every
/// malformed variable is reported, naming it and its value.
pub fn pool_from_env(ipam: &IpamConfig, vars: &[(String, String)]) -> Result<Option<IpPool>, String> {
    let mut errors = Vec::new();
    let cidr = match lookup(vars, "CIDR") {
        Some((name, v)) => match v.parse::<Ipv4Network>() {
            Ok(net) if net.ip() == net.network() => Some(net),
            Ok(net) => {
                errors.push(format!(
                    "{name}={v:?} has host bits set; did you mean \"{}/{}\"?",
                    net.network(),
                    net.prefix()
                ));
                None
            }
            Err(_) => {
                errors.push(format!("{name}={v:?} is not an IPv4 CIDR (like 192.168.0.0/16)"));
                None
            }
        },
        None => ipam.default_ipv4_pool_cidr,
    };
    let block_size = match lookup(vars, "BLOCK_SIZE") {
        Some((name, v)) => v.parse::<u8>().ok().filter(|b| (20..=32).contains(b)).unwrap_or_else(|| {
            errors.push(format!("{name}={v:?} is not an IPv4 block size (20 to 32)"));
            ipam.default_ipv4_block_size
        }),
        None => ipam.default_ipv4_block_size,
    };
    let (ipip_source, ipip_mode) =
        encap_mode(vars, "IPIP", ("ipam.default_ipv4_ipip_mode", ipam.default_ipv4_ipip_mode), &mut errors);
    let (vxlan_source, vxlan_mode) =
        encap_mode(vars, "VXLAN", ("ipam.default_ipv4_vxlan_mode", ipam.default_ipv4_vxlan_mode), &mut errors);
    if ipip_mode != EncapMode::Never && vxlan_mode != EncapMode::Never {
        errors.push(format!(
            "{ipip_source}={ipip_mode:?} and {vxlan_source}={vxlan_mode:?}: a pool has at most one encapsulation; \
             set one of them to Never"
        ));
    }
    // Calico's default is to masquerade traffic leaving the pool.
    let nat_outgoing = lookup(vars, "NAT_OUTGOING")
        .map(|(name, v)| parse_bool(&name, v).map_err(|e| errors.push(e)).unwrap_or(true))
        .unwrap_or(true);
    let disable_bgp_export = lookup(vars, "DISABLE_BGP_EXPORT")
        .map(|(name, v)| parse_bool(&name, v).map_err(|e| errors.push(e)).unwrap_or(false))
        .unwrap_or(false);
    let node_selector = lookup(vars, "NODE_SELECTOR").map(|(name, v)| {
        if let Err(e) = crate::selector::check_node_selector(&name, v) {
            errors.push(e);
        }
        v.to_string()
    });
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let Some(cidr) = cidr else { return Ok(None) };
    let mut pool = IpPool::new(IpNetwork::V4(cidr));
    pool.block_size = block_size;
    pool.ipip_mode = ipip_mode;
    pool.vxlan_mode = vxlan_mode;
    pool.nat_outgoing = nat_outgoing;
    pool.disable_bgp_export = disable_bgp_export;
    if let Some(selector) = node_selector.filter(|s| !s.is_empty()) {
        pool.node_selector = selector;
    }
    crate::ipam::pools::check_pool(DEFAULT_POOL_NAME, &pool, &[]).map_err(|e| e.to_string())?;
    Ok(Some(pool))
}

/// Creates `pool` as [`DEFAULT_POOL_NAME`] unless some pool exists. `true` when created; another
/// node creating one at the same time is not an error.
pub async fn ensure_default_pool(ds: &Datastore, pool: &IpPool) -> Result<bool, String> {
    let existing = ds.list::<IpPool>().await.map_err(|e| format!("cannot list IP pools: {e}"))?;
    if !existing.items.is_empty() {
        return Ok(false);
    }
    match create_pool(ds, DEFAULT_POOL_NAME, pool).await {
        Ok(_) => Ok(true),
        Err(IpamError::Datastore(DatastoreError::AlreadyExists { .. }) | IpamError::PoolOverlap { .. }) => Ok(false),
        Err(e) => Err(format!("cannot create the default pool {}: {e}", pool.cidr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn tortie_variables_win_over_calico_ones_and_the_config() {
        let ipam = IpamConfig { default_ipv4_pool_cidr: "10.1.0.0/16".parse().ok(), ..IpamConfig::default() };
        let env = vars(&[
            ("CALICO_IPV4POOL_CIDR", "10.2.0.0/16"),
            ("TORTIE_IPV4POOL_CIDR", "10.3.0.0/16"),
            ("CALICO_IPV4POOL_BLOCK_SIZE", "28"),
            ("CALICO_IPV4POOL_IPIP", "CrossSubnet"),
            ("TORTIE_IPV4POOL_NAT_OUTGOING", "false"),
            ("TORTIE_IPV4POOL_NODE_SELECTOR", "zone == 'a'"),
        ]);
        let pool = pool_from_env(&ipam, &env).unwrap().unwrap();
        assert_eq!(pool.cidr.to_string(), "10.3.0.0/16");
        assert_eq!(pool.block_size, 28);
        assert_eq!(pool.ipip_mode, EncapMode::CrossSubnet);
        assert!(!pool.nat_outgoing);
        assert_eq!(pool.node_selector, "zone == 'a'");
    }

    #[test]
    fn vxlan_mode_comes_from_the_variables_or_the_config() {
        let ipam = IpamConfig {
            default_ipv4_pool_cidr: "10.1.0.0/16".parse().ok(),
            default_ipv4_vxlan_mode: EncapMode::Always,
            ..IpamConfig::default()
        };
        let pool = pool_from_env(&ipam, &[]).unwrap().unwrap();
        assert_eq!((pool.ipip_mode, pool.vxlan_mode), (EncapMode::Never, EncapMode::Always));
        let env = vars(&[("CALICO_IPV4POOL_VXLAN", "CrossSubnet"), ("TORTIE_IPV4POOL_VXLAN", "Never")]);
        let pool = pool_from_env(&ipam, &env).unwrap().unwrap();
        assert_eq!(pool.vxlan_mode, EncapMode::Never);
        let plain = IpamConfig { default_ipv4_pool_cidr: ipam.default_ipv4_pool_cidr, ..IpamConfig::default() };
        let env = vars(&[("CALICO_IPV4POOL_VXLAN", "CrossSubnet"), ("CALICO_IPV4POOL_IPIP", "Never")]);
        let pool = pool_from_env(&plain, &env).unwrap().unwrap();
        assert_eq!((pool.ipip_mode, pool.vxlan_mode), (EncapMode::Never, EncapMode::CrossSubnet));
        let err = pool_from_env(&ipam, &vars(&[("TORTIE_IPV4POOL_VXLAN", "sometimes")])).unwrap_err();
        assert!(err.contains("TORTIE_IPV4POOL_VXLAN=\"sometimes\" is not one of Always, CrossSubnet, Never"), "{err}");
    }

    #[test]
    fn without_a_cidr_there_is_no_pool_and_the_config_is_the_fallback() {
        assert_eq!(pool_from_env(&IpamConfig::default(), &[]).unwrap(), None);
        let ipam = IpamConfig { default_ipv4_pool_cidr: "10.1.0.0/16".parse().ok(), ..IpamConfig::default() };
        let pool = pool_from_env(&ipam, &[]).unwrap().unwrap();
        assert_eq!((pool.cidr.to_string(), pool.block_size, pool.nat_outgoing), ("10.1.0.0/16".into(), 26, true));
    }

    #[test]
    fn every_bad_variable_is_named_with_its_value() {
        let env = vars(&[
            ("TORTIE_IPV4POOL_CIDR", "10.0.0.1/16"),
            ("TORTIE_IPV4POOL_BLOCK_SIZE", "33"),
            ("CALICO_IPV4POOL_IPIP", "sometimes"),
            ("TORTIE_IPV4POOL_NAT_OUTGOING", "maybe"),
            ("CALICO_IPV4POOL_NODE_SELECTOR", "zone = 'a'"),
        ]);
        let err = pool_from_env(&IpamConfig::default(), &env).unwrap_err();
        for part in [
            "CALICO_IPV4POOL_NODE_SELECTOR: \"zone = 'a'\" is not a valid selector: column 6: expected ==",
            "TORTIE_IPV4POOL_CIDR=\"10.0.0.1/16\" has host bits set",
            "TORTIE_IPV4POOL_BLOCK_SIZE=\"33\"",
            "CALICO_IPV4POOL_IPIP=\"sometimes\"",
            "TORTIE_IPV4POOL_NAT_OUTGOING=\"maybe\"",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
        let both = vars(&[("TORTIE_IPV4POOL_CIDR", "10.0.0.0/16"), ("CALICO_IPV4POOL_VXLAN", "always")]);
        let ipam = IpamConfig { default_ipv4_ipip_mode: EncapMode::CrossSubnet, ..IpamConfig::default() };
        let err = pool_from_env(&ipam, &both).unwrap_err();
        assert!(
            err.contains(
                "ipam.default_ipv4_ipip_mode=CrossSubnet and CALICO_IPV4POOL_VXLAN=Always: a pool has at most one"
            ),
            "{err}"
        );
        let small = vars(&[("TORTIE_IPV4POOL_CIDR", "10.0.0.0/28"), ("TORTIE_IPV4POOL_BLOCK_SIZE", "26")]);
        let err = pool_from_env(&IpamConfig::default(), &small).unwrap_err();
        assert!(err.contains("blockSize: 26 is larger than the pool 10.0.0.0/28"), "{err}");
    }
}
