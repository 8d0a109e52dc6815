//! Node address detection, as Calico's `IP_AUTODETECTION_METHOD` / `IP6_AUTODETECTION_METHOD`:
//! `first-found`, `can-reach=<ip>`, `interface=<regex>[,<regex>...]`,
//! `skip-interface=<regex>[,<regex>...]`, `cidr=<cidr>[,<cidr>...]`, `kubernetes-internal-ip`,
//! for either family. The prefix length is kept, because CrossSubnet decides "same subnet" with
//! it (Calico #1584).

use ipnetwork::IpNetwork;
use regex::Regex;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub ifindex: u32,
    pub ifname: String,
    pub address: IpNetwork,
}

/// An IP family, named as Calico names it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn holds(self, ip: IpAddr) -> bool {
        matches!((self, ip), (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_)))
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The configuration field that holds this family's detection method.
    pub fn method_field(self) -> &'static str {
        match self {
            Family::V4 => "node.address_autodetection",
            Family::V6 => "node.ipv6_address_autodetection",
        }
    }
}

/// The method that reads the Kubernetes Node's `InternalIP` addresses.
pub const KUBERNETES_INTERNAL_IP: &str = "kubernetes-internal-ip";

/// Interfaces first-found never picks: virtual devices of container
/// runtimes and CNI plugins (Calico's list) and tortie's own.
const SKIPPED_BY_FIRST_FOUND: &str = r"^(lo|docker.*|cbr.*|dummy.*|virbr.*|lxcbr.*|veth.*|cali.*|tunl.*|flannel.*|kube-ipvs.*|cni.*|vxlan.*|wireguard.*|wg-.*|nodelocaldns.*|tort.*|tortie.*|lxc.*|cilium.*)$";

/// Why no address was found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DetectError {
    #[error("{field} {method:?}: {reason}")]
    NotFound { field: &'static str, method: String, reason: String },
    #[error("{field} {method:?} is not a known method")]
    BadMethod { field: &'static str, method: String },
}

/// What detection may consult besides the interfaces.
pub struct Sources<'a> {
    /// The source address the kernel would use toward a destination (for `can-reach`).
    pub route_source: &'a dyn Fn(IpAddr) -> Option<IpAddr>,
    /// The Kubernetes Node's `InternalIP` addresses; `None` outside Kubernetes.
    pub kubernetes_internal_ips: Option<&'a [IpAddr]>,
}

/// An address worth announcing: Go's `IsGlobalUnicast`, which Calico applies (private and unique
/// local ranges included).
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local()),
    }
}

/// Splits Calico's comma-separated list, trimming around commas.
fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim)
}

/// Picks the node's `family` address from `addresses` by `method`.
pub fn select(
    method: &str,
    family: Family,
    addresses: &[InterfaceAddress],
    sources: &Sources,
) -> Result<IpNetwork, DetectError> {
    let field = family.method_field();
    let bad = || DetectError::BadMethod { field, method: method.to_string() };
    let not_found = |reason: String| DetectError::NotFound { field, method: method.to_string(), reason };
    let fam = family.name();
    let mut sorted: Vec<&InterfaceAddress> =
        addresses.iter().filter(|a| family.holds(a.address.ip()) && usable(a.address.ip())).collect();
    sorted.sort_by_key(|a| a.ifindex);
    let regexes = |res: &str| -> Result<Vec<Regex>, DetectError> {
        list(res).map(|re| Regex::new(&format!("^(?:{re})$")).map_err(|_| bad())).collect()
    };
    let skip = Regex::new(SKIPPED_BY_FIRST_FOUND).expect("a valid built-in regex");
    match method.split_once('=') {
        None if method == "first-found" => sorted
            .iter()
            .find(|a| !skip.is_match(&a.ifname))
            .map(|a| a.address)
            .ok_or_else(|| not_found(format!("no interface outside the skipped virtual ones has an {fam} address"))),
        None if method == KUBERNETES_INTERNAL_IP => {
            let Some(internal) = sources.kubernetes_internal_ips else {
                return Err(not_found("needs the Kubernetes datastore (datastore.type kubernetes)".into()));
            };
            let Some(ip) = internal.iter().copied().find(|ip| family.holds(*ip)) else {
                return Err(not_found(format!("the Kubernetes Node has no {fam} InternalIP address")));
            };
            // Keep the interface's prefix length, as Calico does; a host route when no interface has it.
            Ok(sorted.iter().find(|a| a.address.ip() == ip).map(|a| a.address).unwrap_or_else(|| IpNetwork::from(ip)))
        }
        Some(("interface", res)) => {
            let res = regexes(res)?;
            sorted
                .iter()
                .find(|a| res.iter().any(|re| re.is_match(&a.ifname)))
                .map(|a| a.address)
                .ok_or_else(|| not_found(format!("no matching interface has an {fam} address")))
        }
        Some(("skip-interface", res)) => {
            let res = regexes(res)?;
            sorted
                .iter()
                .find(|a| !skip.is_match(&a.ifname) && !res.iter().any(|re| re.is_match(&a.ifname)))
                .map(|a| a.address)
                .ok_or_else(|| not_found(format!("every interface with an {fam} address is skipped")))
        }
        Some(("cidr", cidrs)) => {
            let cidrs: Vec<IpNetwork> = list(cidrs).map(|c| c.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
            sorted
                .iter()
                .find(|a| cidrs.iter().any(|c| c.contains(a.address.ip())))
                .map(|a| a.address)
                .ok_or_else(|| not_found("no interface address lies in the given CIDRs".into()))
        }
        Some(("can-reach", target)) => {
            let target: IpAddr = target.parse().map_err(|_| bad())?;
            if !family.holds(target) {
                return Err(not_found(format!("{target} is not an {fam} address")));
            }
            let Some(src) = (sources.route_source)(target).filter(|s| family.holds(*s)) else {
                return Err(not_found(format!("the kernel has no {fam} route to it")));
            };
            // Keep the interface's prefix length, not a host route.
            sorted
                .iter()
                .find(|a| a.address.ip() == src)
                .map(|a| a.address)
                .ok_or_else(|| not_found(format!("source address {src} is on no interface")))
        }
        _ => Err(bad()),
    }
}

/// The source address the kernel picks toward `target` (a UDP connect
/// sends nothing; it only asks the routing table).
pub fn kernel_route_source(target: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match target {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect((target, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<InterfaceAddress> {
        let a = |ifindex, ifname: &str, addr: &str| InterfaceAddress {
            ifindex,
            ifname: ifname.into(),
            address: addr.parse().unwrap(),
        };
        vec![
            a(1, "lo", "127.0.0.1/8"),
            a(1, "lo", "::1/128"),
            a(2, "docker0", "172.17.0.1/16"),
            a(3, "eth0", "10.0.0.5/24"),
            a(3, "eth0", "fe80::1/64"),
            a(4, "eth1", "192.168.50.7/22"),
            a(4, "eth1", "fd40:1::7/64"),
            a(5, "tortab12cd34ef0", "169.254.1.1/32"),
            a(6, "eth2", "2001:db8:6::9/48"),
        ]
    }

    fn none(_: IpAddr) -> Option<IpAddr> {
        None
    }

    fn pick(method: &str, family: Family) -> Result<IpNetwork, DetectError> {
        select(method, family, &addrs(), &Sources { route_source: &none, kubernetes_internal_ips: None })
    }

    fn net(s: &str) -> Result<IpNetwork, DetectError> {
        Ok(s.parse().unwrap())
    }

    #[test]
    fn first_found_skips_virtual_interfaces_and_keeps_the_prefix() {
        assert_eq!(pick("first-found", Family::V4), net("10.0.0.5/24"));
    }

    #[test]
    fn ipv6_first_found_skips_link_local_and_loopback() {
        assert_eq!(pick("first-found", Family::V6), net("fd40:1::7/64"));
    }

    #[test]
    fn interface_skip_interface_and_cidr() {
        assert_eq!(pick("interface=eth1", Family::V4), net("192.168.50.7/22"));
        assert_eq!(pick("interface=eth.*", Family::V4), net("10.0.0.5/24"));
        assert_eq!(pick("skip-interface=lo|docker.*|eth0", Family::V4), net("192.168.50.7/22"));
        assert_eq!(pick("cidr=192.168.0.0/16", Family::V4), net("192.168.50.7/22"));
        assert!(matches!(pick("cidr=10.9.0.0/16", Family::V4), Err(DetectError::NotFound { .. })));
        assert_eq!(pick("interface=eth2", Family::V6), net("2001:db8:6::9/48"));
        assert_eq!(pick("cidr=2001:db8::/32", Family::V6), net("2001:db8:6::9/48"));
        assert_eq!(pick("skip-interface=eth1", Family::V6), net("2001:db8:6::9/48"));
    }

    #[test]
    fn interface_lists_are_comma_separated_as_in_calico() {
        assert_eq!(pick("interface=nope, eth2", Family::V6), net("2001:db8:6::9/48"));
        assert_eq!(
            pick("skip-interface=eth0 ,eth1", Family::V4),
            Err(DetectError::NotFound {
                field: "node.address_autodetection",
                method: "skip-interface=eth0 ,eth1".into(),
                reason: "every interface with an IPv4 address is skipped".into(),
            })
        );
    }

    #[test]
    fn can_reach_uses_the_kernels_source_address_with_its_prefix() {
        let src = |_| Some("192.168.50.7".parse().unwrap());
        let sources = Sources { route_source: &src, kubernetes_internal_ips: None };
        assert_eq!(select("can-reach=8.8.8.8", Family::V4, &addrs(), &sources), net("192.168.50.7/22"));
        let err = pick("can-reach=8.8.8.8", Family::V4).unwrap_err();
        assert!(err.to_string().contains("no IPv4 route"), "{err}");
        let err = pick("can-reach=8.8.8.8", Family::V6).unwrap_err();
        assert!(
            err.to_string().contains("node.ipv6_address_autodetection") && err.to_string().contains("not an IPv6"),
            "{err}"
        );
    }

    #[test]
    fn kubernetes_internal_ip_takes_the_nodes_address_with_the_interfaces_prefix() {
        let internal: Vec<IpAddr> = vec!["192.168.50.7".parse().unwrap(), "2001:db8:6::9".parse().unwrap()];
        let sources = Sources { route_source: &none, kubernetes_internal_ips: Some(&internal) };
        assert_eq!(select(KUBERNETES_INTERNAL_IP, Family::V4, &addrs(), &sources), net("192.168.50.7/22"));
        assert_eq!(select(KUBERNETES_INTERNAL_IP, Family::V6, &addrs(), &sources), net("2001:db8:6::9/48"));
        let v4_only: Vec<IpAddr> = vec!["10.99.0.1".parse().unwrap()];
        let sources = Sources { route_source: &none, kubernetes_internal_ips: Some(&v4_only) };
        assert_eq!(select(KUBERNETES_INTERNAL_IP, Family::V4, &addrs(), &sources), net("10.99.0.1/32"));
        let err = select(KUBERNETES_INTERNAL_IP, Family::V6, &addrs(), &sources).unwrap_err();
        assert!(err.to_string().contains("no IPv6 InternalIP"), "{err}");
        let err = pick(KUBERNETES_INTERNAL_IP, Family::V4).unwrap_err();
        assert!(err.to_string().contains("datastore.type kubernetes"), "{err}");
    }

    #[test]
    fn unknown_methods_are_named_in_the_error() {
        assert_eq!(
            pick("nearest", Family::V6),
            Err(DetectError::BadMethod { field: "node.ipv6_address_autodetection", method: "nearest".into() })
        );
    }
}
