//! The default IP pools, created at start-up when the cluster has none of their family, from the
//! variables Calico users know: `TORTIE_IPV4POOL_*`, else `CALICO_IPV4POOL_*` (`CIDR`,
//! `BLOCK_SIZE`, `IPIP`, `VXLAN`, `NAT_OUTGOING`, `NODE_SELECTOR`, `DISABLE_BGP_EXPORT`), over the
//! `ipam.default_ipv4_*` fields; and `TORTIE_IPV6POOL_*`, else `CALICO_IPV6POOL_*` (the same but
//! `IPIP`, which has no IPv6 form), over the `ipam.default_ipv6_*` fields.

use crate::config::IpamConfig;
use crate::datastore::resources::{EncapMode, IpPool};
use crate::datastore::{Datastore, DatastoreError};
use crate::ipam::{IpamError, create_pool};
use ipnetwork::IpNetwork;

/// The name of the IPv4 pool created from the environment (Calico's).
pub const DEFAULT_POOL_NAME: &str = "default-ipv4-ippool";
/// The name of the IPv6 pool created from the environment (Calico's).
pub const DEFAULT_IPV6_POOL_NAME: &str = "default-ipv6-ippool";

/// What differs between the two families' variables.
struct Family {
    /// `TORTIE_IPV4POOL_`, `CALICO_IPV4POOL_` (the first wins).
    prefixes: [&'static str; 2],
    /// `4` or `6`, for messages and the `ipam.default_ipv<n>_*` field names.
    version: u8,
    /// Block sizes Calico allows.
    block_sizes: std::ops::RangeInclusive<u8>,
    example: &'static str,
}

const V4: Family = Family {
    prefixes: ["TORTIE_IPV4POOL_", "CALICO_IPV4POOL_"],
    version: 4,
    block_sizes: 20..=32,
    example: "192.168.0.0/16",
};
const V6: Family = Family {
    prefixes: ["TORTIE_IPV6POOL_", "CALICO_IPV6POOL_"],
    version: 6,
    block_sizes: 116..=128,
    example: "fd00:10:244::/64",
};

/// The variable `suffix` of `family` from `vars`, with its name: the TORTIE_ one wins.
fn lookup<'a>(family: &Family, vars: &'a [(String, String)], suffix: &str) -> Option<(String, &'a str)> {
    family.prefixes.iter().find_map(|prefix| {
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
    family: &Family,
    vars: &[(String, String)],
    suffix: &str,
    configured: (&str, EncapMode),
    errors: &mut Vec<String>,
) -> (String, EncapMode) {
    let Some((name, v)) = lookup(family, vars, suffix) else { return (configured.0.to_string(), configured.1) };
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

/// The default IPv4 pool `ipam` and the environment `vars` describe; `None` without a CIDR.
/// Every malformed variable is reported, naming it and its value.
pub fn pool_from_env(ipam: &IpamConfig, vars: &[(String, String)]) -> Result<Option<IpPool>, String> {
    let configured = Configured {
        cidr: ipam.default_ipv4_pool_cidr.map(IpNetwork::V4),
        block_size: ipam.default_ipv4_block_size,
        ipip: ipam.default_ipv4_ipip_mode,
        vxlan: ipam.default_ipv4_vxlan_mode,
    };
    from_env(&V4, &configured, vars, DEFAULT_POOL_NAME)
}

/// The default IPv6 pool, as [`pool_from_env`]: `*_IPV6POOL_*` over `ipam.default_ipv6_*`.
pub fn ipv6_pool_from_env(ipam: &IpamConfig, vars: &[(String, String)]) -> Result<Option<IpPool>, String> {
    let configured = Configured {
        cidr: ipam.default_ipv6_pool_cidr.map(IpNetwork::V6),
        block_size: ipam.default_ipv6_block_size,
        ipip: EncapMode::Never,
        vxlan: ipam.default_ipv6_vxlan_mode,
    };
    from_env(&V6, &configured, vars, DEFAULT_IPV6_POOL_NAME)
}

/// The configuration file's default pool of one family.
struct Configured {
    cidr: Option<IpNetwork>,
    block_size: u8,
    ipip: EncapMode,
    vxlan: EncapMode,
}

fn from_env(
    family: &Family,
    configured: &Configured,
    vars: &[(String, String)],
    pool_name: &str,
) -> Result<Option<IpPool>, String> {
    let mut errors = Vec::new();
    let n = family.version;
    let cidr = match lookup(family, vars, "CIDR") {
        Some((name, v)) => match v.parse::<IpNetwork>() {
            Ok(net) if (n == 4) != net.is_ipv4() => {
                errors.push(format!("{name}={v:?} is not an IPv{n} CIDR (like {})", family.example));
                None
            }
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
                errors.push(format!("{name}={v:?} is not an IPv{n} CIDR (like {})", family.example));
                None
            }
        },
        None => configured.cidr,
    };
    let block_size = match lookup(family, vars, "BLOCK_SIZE") {
        Some((name, v)) => v.parse::<u8>().ok().filter(|b| family.block_sizes.contains(b)).unwrap_or_else(|| {
            let (low, high) = (family.block_sizes.start(), family.block_sizes.end());
            errors.push(format!("{name}={v:?} is not an IPv{n} block size ({low} to {high})"));
            configured.block_size
        }),
        None => configured.block_size,
    };
    let ipip_field = format!("ipam.default_ipv{n}_ipip_mode");
    let (ipip_source, ipip_mode) = match n {
        4 => encap_mode(family, vars, "IPIP", (&ipip_field, configured.ipip), &mut errors),
        _ => {
            if let Some((name, v)) = lookup(family, vars, "IPIP") {
                errors.push(format!("{name}={v:?}: IP-in-IP carries IPv4 only; use {}VXLAN", family.prefixes[0]));
            }
            (ipip_field, EncapMode::Never)
        }
    };
    let vxlan_field = format!("ipam.default_ipv{n}_vxlan_mode");
    let (vxlan_source, vxlan_mode) = encap_mode(family, vars, "VXLAN", (&vxlan_field, configured.vxlan), &mut errors);
    if ipip_mode != EncapMode::Never && vxlan_mode != EncapMode::Never {
        errors.push(format!(
            "{ipip_source}={ipip_mode:?} and {vxlan_source}={vxlan_mode:?}: a pool has at most one encapsulation; \
             set one of them to Never"
        ));
    }
    // Calico's default is to masquerade traffic leaving the pool.
    let nat_outgoing = lookup(family, vars, "NAT_OUTGOING")
        .map(|(name, v)| parse_bool(&name, v).map_err(|e| errors.push(e)).unwrap_or(true))
        .unwrap_or(true);
    let disable_bgp_export = lookup(family, vars, "DISABLE_BGP_EXPORT")
        .map(|(name, v)| parse_bool(&name, v).map_err(|e| errors.push(e)).unwrap_or(false))
        .unwrap_or(false);
    let node_selector = lookup(family, vars, "NODE_SELECTOR").map(|(name, v)| {
        if let Err(e) = crate::selector::check_node_selector(&name, v) {
            errors.push(e);
        }
        v.to_string()
    });
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let Some(cidr) = cidr else { return Ok(None) };
    let mut pool = IpPool::new(cidr);
    pool.block_size = block_size;
    pool.ipip_mode = ipip_mode;
    pool.vxlan_mode = vxlan_mode;
    pool.nat_outgoing = nat_outgoing;
    pool.disable_bgp_export = disable_bgp_export;
    if let Some(selector) = node_selector.filter(|s| !s.is_empty()) {
        pool.node_selector = selector;
    }
    crate::ipam::pools::check_pool(pool_name, &pool, &[]).map_err(|e| e.to_string())?;
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
    fn the_ipv6_pool_comes_from_ipv6pool_variables_over_the_config() {
        let ipam = IpamConfig { default_ipv6_pool_cidr: "fd00:1::/64".parse().ok(), ..IpamConfig::default() };
        let pool = ipv6_pool_from_env(&ipam, &[]).unwrap().unwrap();
        assert_eq!((pool.cidr.to_string(), pool.block_size), ("fd00:1::/64".to_string(), 122));
        let env = vars(&[
            ("CALICO_IPV6POOL_CIDR", "fd00:2::/64"),
            ("TORTIE_IPV6POOL_CIDR", "fd00:3::/64"),
            ("CALICO_IPV6POOL_BLOCK_SIZE", "120"),
            ("CALICO_IPV6POOL_VXLAN", "CrossSubnet"),
            ("CALICO_IPV6POOL_NAT_OUTGOING", "false"),
            // The IPv4 variables are the IPv4 pool's.
            ("CALICO_IPV4POOL_CIDR", "10.9.0.0/16"),
        ]);
        let pool = ipv6_pool_from_env(&IpamConfig::default(), &env).unwrap().unwrap();
        assert_eq!((pool.cidr.to_string(), pool.block_size), ("fd00:3::/64".to_string(), 120));
        assert_eq!(
            (pool.vxlan_mode, pool.ipip_mode, pool.nat_outgoing),
            (EncapMode::CrossSubnet, EncapMode::Never, false)
        );
        assert_eq!(pool_from_env(&IpamConfig::default(), &env).unwrap().unwrap().cidr.to_string(), "10.9.0.0/16");
        let bad = vars(&[
            ("CALICO_IPV6POOL_CIDR", "10.0.0.0/16"),
            ("CALICO_IPV6POOL_BLOCK_SIZE", "26"),
            ("TORTIE_IPV6POOL_IPIP", "Always"),
        ]);
        let err = ipv6_pool_from_env(&IpamConfig::default(), &bad).unwrap_err();
        for part in [
            "CALICO_IPV6POOL_CIDR=\"10.0.0.0/16\" is not an IPv6 CIDR",
            "CALICO_IPV6POOL_BLOCK_SIZE=\"26\" is not an IPv6 block size (116 to 128)",
            "TORTIE_IPV6POOL_IPIP=\"Always\": IP-in-IP carries IPv4 only",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
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
