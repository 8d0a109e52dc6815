//! Semantic checks that the types alone cannot express. Every check adds a
//! [`FieldError`] and goes on, so the user sees every problem at once.

use super::error::FieldError;
use super::model::*;
use crate::datastore::resources::EncapMode;
use std::collections::HashSet;

/// Route protocol numbers owned by other software: writing ours with one of
/// these would make tortie take over (and delete) someone else's routes.
const FOREIGN_ROUTE_PROTOCOLS: &[(u8, &str)] = &[
    (11, "zebra (FRR)"),
    (12, "BIRD"),
    (16, "DHCP clients"),
    (17, "kube-router"),
    (18, "keepalived"),
    (42, "babel"),
    (80, "Calico Felix"),
    (99, "Open/R"),
    (186, "FRR bgpd"),
    (187, "FRR isisd"),
    (188, "FRR ospfd"),
    (189, "FRR ripd"),
    (192, "FRR eigrpd"),
];

/// Returns every semantic problem in `c`.
pub fn validate(c: &Config) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut err = |path: &str, msg: String| errs.push(FieldError::new(path, msg));

    if let Some(name) = &c.node.name
        && !is_dns_subdomain(name)
    {
        err(
            "node.name",
            format!(
                "{name:?} is not a valid node name (lower-case letters, digits, '-' and '.', at most 253 characters)"
            ),
        );
    }
    if let Err(why) = check_autodetection(&c.node.address_autodetection, c.datastore.kind) {
        err("node.address_autodetection", format!("{:?} {why}", c.node.address_autodetection));
    }
    let v6 = &c.node.ipv6_address_autodetection;
    if v6 != super::model::NO_IPV6_ADDRESS
        && let Err(why) = check_autodetection(v6, c.datastore.kind)
    {
        err("node.ipv6_address_autodetection", format!("{v6:?} {why}"));
    }
    if let Err(why) = crate::datastore::resources::check_labels(&c.node.labels) {
        err("node.labels", why);
    }

    match c.datastore.kind {
        DatastoreType::Sqlite if c.datastore.sqlite_path.as_os_str().is_empty() => {
            err("datastore.sqlite_path", "\"\" is empty; the sqlite datastore needs a file path".into())
        }
        DatastoreType::Etcd if c.datastore.etcd_endpoints.is_empty() => {
            err("datastore.etcd_endpoints", "[] is empty; the etcd datastore needs at least one endpoint".into())
        }
        _ => {}
    }
    for (i, ep) in c.datastore.etcd_endpoints.iter().enumerate() {
        if !(ep.starts_with("http://") || ep.starts_with("https://"))
            || ep.split_once("://").is_some_and(|(_, h)| h.is_empty())
        {
            err(
                &format!("datastore.etcd_endpoints[{i}]"),
                format!("{ep:?} is not an etcd URL (http://host:port or https://host:port)"),
            );
        }
    }
    if !c.datastore.etcd_prefix.starts_with('/') {
        err("datastore.etcd_prefix", format!("{:?} must start with '/'", c.datastore.etcd_prefix));
    }

    let bgp = &c.bgp;
    if bgp.listen_port == 0 {
        err("bgp.listen_port", "0 is not a usable port".into());
    }
    if bgp.router_id.is_some_and(|r| r.is_unspecified()) {
        err("bgp.router_id", "\"0.0.0.0\" is not a valid BGP identifier (RFC 6286: it must be non-zero)".into());
    }
    check_keepalive("bgp", bgp.hold_time_seconds.0, bgp.keepalive_seconds, &mut err);
    if bgp.connect_retry_seconds == 0 {
        err("bgp.connect_retry_seconds", "0 is too short; use at least 1 second".into());
    }
    check_bfd("bgp.mesh_bfd", &bgp.mesh_bfd, &mut err);
    let mut seen = HashSet::new();
    for (i, p) in bgp.peers.iter().enumerate() {
        if let Some(bfd) = &p.bfd {
            check_bfd(&format!("bgp.peers[{i}].bfd"), bfd, &mut err);
        }
        let at = |f: &str| format!("bgp.peers[{i}].{f}");
        if !seen.insert(p.address) {
            err(&at("address"), format!("\"{}\" is configured twice", p.address));
        }
        if p.address.is_unspecified() || p.address.is_multicast() {
            err(&at("address"), format!("\"{}\" is not a unicast peer address", p.address));
        }
        if let Some(hold) = p.hold_time_seconds {
            check_keepalive(&format!("bgp.peers[{i}]"), hold.0, bgp.keepalive_seconds, &mut err);
        }
        if p.password.as_ref().is_some_and(|s| s.expose().is_empty()) {
            err(&at("password"), "is empty; omit the field for no password".into());
        }
        match (p.ebgp_multihop, p.ttl_security_hops) {
            (Some(0), _) => err(&at("ebgp_multihop"), "0 is not a valid TTL (1 to 255)".into()),
            (Some(_), Some(_)) => err(
                &at("ttl_security_hops"),
                "cannot be combined with ebgp_multihop (RFC 5082 fixes the TTL at 255)".into(),
            ),
            _ => {}
        }
        if let Some(h) = p.ttl_security_hops
            && (h == 0 || h == 255)
        {
            err(&at("ttl_security_hops"), format!("{h} is not a valid hop count (1 to 254)"));
        }
        if p.max_prefixes == Some(0) {
            err(&at("max_prefixes"), "0 would refuse every route; omit the field for no limit".into());
        }
        if p.source_address.is_some_and(|s| s.is_ipv4() != p.address.is_ipv4()) {
            err(
                &at("source_address"),
                format!("\"{}\" is not of the same family as the peer address", p.source_address.unwrap_or(p.address)),
            );
        }
    }

    let dp = &c.dataplane;
    match dp.route_protocol {
        0..=4 => err(
            "dataplane.route_protocol",
            format!(
                "{} is reserved by the kernel (0 unspec, 1 redirect, 2 kernel, 3 boot, 4 static)",
                dp.route_protocol
            ),
        ),
        n => {
            if let Some((_, owner)) = FOREIGN_ROUTE_PROTOCOLS.iter().find(|(p, _)| *p == n) {
                err(
                    "dataplane.route_protocol",
                    format!("{n} is the route protocol of {owner}; tortie would take over its routes"),
                );
            }
        }
    }
    if matches!(dp.route_table, 0 | 253 | 255) {
        err(
            "dataplane.route_table",
            format!("{} is a reserved table (0 unspec, 253 default, 255 local)", dp.route_table),
        );
    }
    if dp.resync_interval_seconds == 0 {
        err("dataplane.resync_interval_seconds", "0 is too short; use at least 1 second".into());
    }
    if let Some(mtu) = dp.mtu
        && !(576..=65535).contains(&mtu)
    {
        err("dataplane.mtu", format!("{mtu} is not a usable MTU (576 to 65535)"));
    }
    let prefix = &dp.workload_interface_prefix;
    if prefix.is_empty() || prefix.len() > 4 || !prefix.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
    {
        err(
            "dataplane.workload_interface_prefix",
            format!(
                "{prefix:?} must be 1 to 4 lower-case letters or digits (the rest of the 15-character name is a hash)"
            ),
        );
    } else if prefix == "cali" || prefix == "lxc" {
        err(
            "dataplane.workload_interface_prefix",
            format!("{prefix:?} belongs to another CNI plugin (Calico or Cilium)"),
        );
    }

    for (path, dev) in [
        ("ipip.userspace_device", &c.ipip.userspace_device),
        ("vxlan.device", &c.vxlan.device),
        ("vxlan.device_v6", &c.vxlan.device_v6),
    ] {
        if !is_interface_name(dev) {
            err(
                path,
                format!(
                    "{dev:?} is not a valid interface name (1 to {MAX_INTERFACE_NAME_LEN} bytes, no '/' or spaces)"
                ),
            );
        }
    }
    let vxlan = &c.vxlan;
    if !(1..=MAX_VXLAN_VNI).contains(&vxlan.vni) {
        err("vxlan.vni", format!("{} is not a VXLAN network identifier (1 to {MAX_VXLAN_VNI})", vxlan.vni));
    }
    if vxlan.port == 0 {
        err("vxlan.port", "0 is not a usable port".into());
    }
    if vxlan.device == vxlan.device_v6 {
        err("vxlan.device_v6", format!("{:?} is also vxlan.device; each family needs its own device", vxlan.device_v6));
    }

    let ipam = &c.ipam;
    if !(20..=32).contains(&ipam.default_ipv4_block_size) {
        err(
            "ipam.default_ipv4_block_size",
            format!("{} is not a valid IPv4 block size (20 to 32)", ipam.default_ipv4_block_size),
        );
    }
    if !(116..=128).contains(&ipam.default_ipv6_block_size) {
        err(
            "ipam.default_ipv6_block_size",
            format!("{} is not a valid IPv6 block size (116 to 128)", ipam.default_ipv6_block_size),
        );
    }
    if let Some(pool) = ipam.default_ipv4_pool_cidr {
        if pool.ip() != pool.network() {
            err(
                "ipam.default_ipv4_pool_cidr",
                format!("\"{pool}\" has host bits set; did you mean \"{}/{}\"?", pool.network(), pool.prefix()),
            );
        } else if pool.prefix() > ipam.default_ipv4_block_size {
            err(
                "ipam.default_ipv4_pool_cidr",
                format!("\"{pool}\" is smaller than one block (/{})", ipam.default_ipv4_block_size),
            );
        }
    }
    if let Some(pool) = ipam.default_ipv6_pool_cidr {
        if pool.ip() != pool.network() {
            err(
                "ipam.default_ipv6_pool_cidr",
                format!("\"{pool}\" has host bits set; did you mean \"{}/{}\"?", pool.network(), pool.prefix()),
            );
        } else if pool.prefix() > ipam.default_ipv6_block_size {
            err(
                "ipam.default_ipv6_pool_cidr",
                format!("\"{pool}\" is smaller than one block (/{})", ipam.default_ipv6_block_size),
            );
        }
    }
    if ipam.default_ipv4_ipip_mode != EncapMode::Never && ipam.default_ipv4_vxlan_mode != EncapMode::Never {
        err(
            "ipam.default_ipv4_vxlan_mode",
            format!(
                "{:?} cannot be combined with default_ipv4_ipip_mode {:?}: a pool has at most one encapsulation",
                ipam.default_ipv4_vxlan_mode, ipam.default_ipv4_ipip_mode
            ),
        );
    }
    if ipam.max_blocks_per_node == Some(0) {
        err("ipam.max_blocks_per_node", "0 would allow no addresses; omit the field for no limit".into());
    }

    if c.api.socket.as_os_str().is_empty() {
        err("api.socket", "\"\" is empty; the agent needs a socket path".into());
    }
    if let Some(group) = c.api.socket_group.as_ref().filter(|g| !is_group_name(g)) {
        err(
            "api.socket_group",
            format!("{group:?} is not a group name (1 to 32 letters, digits, '.', '_' or '-') or a numeric id"),
        );
    }
    if c.metrics.enabled && c.metrics.listen.port() == 0 {
        err("metrics.listen", format!("\"{}\" has port 0", c.metrics.listen));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log.level) {
        err("log.level", format!("{:?} is not a valid log filter: {e}", c.log.level));
    }
    errs.extend(c.kubernetes.validate());
    errs
}

fn check_keepalive(section: &str, hold: u16, keepalive: Option<u16>, err: &mut impl FnMut(&str, String)) {
    if let Some(k) = keepalive
        && hold != 0
        && (k == 0 || k >= hold)
    {
        err(
            &format!("{section}.keepalive_seconds"),
            format!("{k} must be between 1 and the hold time ({hold}) exclusive; a third of the hold time is usual"),
        );
    }
}

/// BFD intervals the protocol can carry and a multiplier that detects.
fn check_bfd(section: &str, bfd: &BfdConfig, err: &mut impl FnMut(&str, String)) {
    for (field, value) in [("min_tx_ms", bfd.min_tx_ms), ("min_rx_ms", bfd.min_rx_ms)] {
        if value == 0 || value > BFD_MAX_INTERVAL_MS {
            err(&format!("{section}.{field}"), format!("{value} must be between 1 and {BFD_MAX_INTERVAL_MS}"));
        }
    }
    if bfd.multiplier == 0 {
        err(&format!("{section}.multiplier"), "0 would never detect a failure; 3 is usual".into());
    }
}

/// A name the kernel takes for an interface.
fn is_interface_name(dev: &str) -> bool {
    !dev.is_empty()
        && dev.len() <= MAX_INTERFACE_NAME_LEN
        && !dev.contains(['/', ' ', '\t', '\n'])
        && dev != "."
        && dev != ".."
}

/// A DNS-1123 subdomain, as Kubernetes node names are.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Checks an address autodetection method (Calico's `IP_AUTODETECTION_METHOD` syntax).
pub(crate) fn check_autodetection(method: &str, datastore: super::model::DatastoreType) -> Result<(), String> {
    use crate::dataplane::address::KUBERNETES_INTERNAL_IP;
    let list = |text: &str| text.split(',').map(str::trim).map(str::to_string).collect::<Vec<_>>();
    match method.split_once('=') {
        None if method == "first-found" => Ok(()),
        None if method == KUBERNETES_INTERNAL_IP => match datastore {
            super::model::DatastoreType::Kubernetes => Ok(()),
            other => Err(format!("needs datastore.type kubernetes, not {}", format!("{other:?}").to_lowercase())),
        },
        Some(("can-reach", target)) => target
            .parse::<std::net::IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("names {target:?}, which is not an IP address")),
        Some(("interface" | "skip-interface", res)) => list(res)
            .iter()
            .try_for_each(|re| regex::Regex::new(re).map(|_| ()).map_err(|e| format!("has an invalid regular expression: {e}"))),
        Some(("cidr", cidrs)) => list(cidrs)
            .iter()
            .try_for_each(|c| c.parse::<ipnetwork::IpNetwork>().map(|_| ()).map_err(|_| format!("names {c:?}, which is not a CIDR"))),
        _ => Err("is not one of first-found, can-reach=<ip>, interface=<regex>[,<regex>...], skip-interface=<regex>[,<regex>...], cidr=<cidr>[,<cidr>...], kubernetes-internal-ip".into()),
    }
}

/// A POSIX-style group name (what `groupadd` accepts) or a numeric id.
fn is_group_name(group: &str) -> bool {
    let portable = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    !group.is_empty() && group.len() <= 32 && !group.starts_with('-') && group.chars().all(portable)
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, load_from_str};
    use crate::datastore::resources::EncapMode;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn problems(text: &str, env: &[(&str, &str)]) -> String {
        match load_from_str(text, "test.yaml", &vars(env)) {
            Err(ConfigError::Invalid { errors, .. }) => {
                errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
            }
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn node_labels_are_read_and_a_key_no_selector_can_name_is_refused() {
        let loaded = load_from_str("node: {labels: {route-reflector: 'true'}}", "test.yaml", &[]).unwrap();
        assert_eq!(loaded.config.node.labels["route-reflector"], "true");
        let text = problems("node: {labels: {'rack 1': a}}", &[]);
        assert!(text.contains("node.labels") && text.contains("\"rack 1\" is not a label key"), "{text}");
    }

    #[test]
    fn address_detection_methods_are_checked_for_both_families() {
        let loaded = load_from_str("", "test.yaml", &[]).unwrap();
        assert_eq!(loaded.config.node.ipv6_address_autodetection, "none");
        let env = [("TORTIE_NODE_IPV6_ADDRESS_AUTODETECTION", "interface=eth0, ens.*")];
        let loaded = load_from_str("", "test.yaml", &vars(&env)).unwrap();
        assert_eq!(loaded.config.node.ipv6_address_autodetection, "interface=eth0, ens.*");
        let text = problems("node: {ipv6_address_autodetection: nearest}", &[]);
        assert!(
            text.contains("node.ipv6_address_autodetection") && text.contains("\"nearest\" is not one of"),
            "{text}"
        );
        let text = problems("node: {address_autodetection: kubernetes-internal-ip}", &[]);
        assert!(
            text.contains("node.address_autodetection") && text.contains("needs datastore.type kubernetes, not sqlite"),
            "{text}"
        );
        let k8s = "node: {address_autodetection: kubernetes-internal-ip, ipv6_address_autodetection: kubernetes-internal-ip}\ndatastore: {type: kubernetes}";
        assert!(load_from_str(k8s, "test.yaml", &[]).is_ok());
    }

    #[test]
    fn vxlan_defaults_are_calicos_and_env_overrides_them() {
        let loaded = load_from_str("", "test.yaml", &[]).unwrap();
        let vxlan = &loaded.config.vxlan;
        assert_eq!(
            (vxlan.vni, vxlan.port, vxlan.device.as_str(), vxlan.device_v6.as_str()),
            (4096, 4789, "vxlan.tortie", "vxlan-v6.tortie")
        );
        assert_eq!(loaded.config.ipam.default_ipv4_vxlan_mode, EncapMode::Never);
        let env = [
            ("TORTIE_VXLAN_VNI", "7"),
            ("TORTIE_VXLAN_PORT", "8472"),
            ("TORTIE_VXLAN_DEVICE", "vx4"),
            ("TORTIE_VXLAN_DEVICE_V6", "vx6"),
            ("TORTIE_IPAM_DEFAULT_IPV4_VXLAN_MODE", "CrossSubnet"),
        ];
        let loaded = load_from_str("", "test.yaml", &vars(&env)).unwrap();
        let vxlan = &loaded.config.vxlan;
        assert_eq!((vxlan.vni, vxlan.port, vxlan.device.as_str(), vxlan.device_v6.as_str()), (7, 8472, "vx4", "vx6"));
        assert_eq!(loaded.config.ipam.default_ipv4_vxlan_mode, EncapMode::CrossSubnet);
    }

    #[test]
    fn bad_vxlan_fields_are_named_with_their_values() {
        let text = "vxlan:\n  vni: 16777216\n  port: 0\n  device: vxlan.tortie.too.long\n  device_v6: \"\"\n";
        let all = problems(text, &[]);
        for expected in [
            "vxlan.vni: 16777216 is not a VXLAN network identifier (1 to 16777215)",
            "vxlan.port: 0 is not a usable port",
            "vxlan.device: \"vxlan.tortie.too.long\" is not a valid interface name",
            "vxlan.device_v6: \"\" is not a valid interface name",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        let all = problems("vxlan:\n  vni: 0\n  device: same\n  device_v6: same\n", &[]);
        assert!(all.contains("vxlan.vni: 0 is not a VXLAN network identifier"), "{all}");
        assert!(all.contains("vxlan.device_v6: \"same\" is also vxlan.device"), "{all}");
    }

    #[test]
    fn default_pool_with_both_encapsulations_is_refused() {
        let text = "ipam:\n  default_ipv4_ipip_mode: Always\n  default_ipv4_vxlan_mode: CrossSubnet\n";
        let all = problems(text, &[]);
        assert!(
            all.contains(
                "ipam.default_ipv4_vxlan_mode: CrossSubnet cannot be combined with default_ipv4_ipip_mode Always"
            ),
            "{all}"
        );
    }

    #[test]
    fn bfd_defaults_to_off_at_300_ms_times_3_and_is_read_per_peer_and_for_the_mesh() {
        let loaded = load_from_str("", "test.yaml", &[]).unwrap();
        assert_eq!(loaded.config.bgp.mesh_bfd, super::BfdConfig::default());
        assert_eq!(loaded.config.bgp.mesh_bfd.peer_bfd(), None);
        let text = "bgp:\n  mesh_bfd: {enabled: true}\n  peers:\n    - {address: 10.0.0.254, as_number: 65000, bfd: {enabled: true, min_tx_ms: 100, multihop: true, passive: true}}\n";
        let loaded = load_from_str(text, "test.yaml", &[]).unwrap();
        let mesh = loaded.config.bgp.mesh_bfd.peer_bfd().unwrap();
        assert_eq!(
            (mesh.intervals.desired_min_tx_us, mesh.intervals.required_min_rx_us, mesh.intervals.detect_mult),
            (300_000, 300_000, 3)
        );
        let peer = loaded.config.bgp.peers[0].bfd.unwrap().peer_bfd().unwrap();
        assert_eq!((peer.intervals.desired_min_tx_us, peer.multihop, peer.passive), (100_000, true, true));
        assert!(!mesh.passive, "active unless asked");
    }

    #[test]
    fn bad_bfd_fields_are_named_with_their_values() {
        let text = "bgp:\n  mesh_bfd: {min_tx_ms: 0, multiplier: 0}\n  peers:\n    - {address: 10.0.0.254, as_number: 65000, bfd: {min_rx_ms: 5000000}}\n";
        let all = problems(text, &[]);
        for expected in [
            "bgp.mesh_bfd.min_tx_ms: 0 must be between 1 and 4294967",
            "bgp.mesh_bfd.multiplier: 0 would never detect a failure",
            "bgp.peers[0].bfd.min_rx_ms: 5000000 must be between 1 and 4294967",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert!(problems("bgp: {mesh_bfd: {min_tx: 3}}", &[]).contains("min_tx"));
    }
}
