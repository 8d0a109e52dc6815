//! Node address detection, as Calico's `IP_AUTODETECTION_METHOD`:
//! `first-found`, `can-reach=<ip>`, `interface=<regex>`,
//! `skip-interface=<regex>`, `cidr=<cidr>[,<cidr>...]`. The prefix length is
//! kept, because CrossSubnet decides "same subnet" with it (Calico #1584).

use ipnetwork::{IpNetwork, Ipv4Network};
use regex::Regex;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// One IPv4 address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub ifindex: u32,
    pub ifname: String,
    pub address: Ipv4Network,
}

/// Interfaces first-found never picks: virtual devices of container
/// runtimes and CNI plugins (Calico's list) and tortie's own.
const SKIPPED_BY_FIRST_FOUND: &str = r"^(lo|docker.*|cbr.*|dummy.*|virbr.*|lxcbr.*|veth.*|cali.*|tunl.*|flannel.*|kube-ipvs.*|cni.*|vxlan.*|wireguard.*|wg-.*|nodelocaldns.*|tort.*|tortie.*|lxc.*|cilium.*)$";

/// Why no address was found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DetectError {
    #[error("node.address_autodetection {method:?}: {reason}")]
    NotFound { method: String, reason: String },
    #[error("node.address_autodetection {0:?} is not a known method")]
    BadMethod(String),
}

fn not_found(method: &str, reason: impl Into<String>) -> DetectError {
    DetectError::NotFound { method: method.to_string(), reason: reason.into() }
}

fn usable(a: &InterfaceAddress) -> bool {
    let ip = a.address.ip();
    !(ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() || ip.is_multicast())
}

/// Picks the node address from `addresses` by `method`. `route_source`
/// answers can-reach: the source address the kernel would use toward a
/// destination.
pub fn select(
    method: &str,
    addresses: &[InterfaceAddress],
    route_source: impl Fn(IpAddr) -> Option<IpAddr>,
) -> Result<Ipv4Network, DetectError> {
    let mut sorted: Vec<&InterfaceAddress> = addresses.iter().filter(|a| usable(a)).collect();
    sorted.sort_by_key(|a| a.ifindex);
    let by_name = |re: &str, keep: bool| -> Result<Option<Ipv4Network>, DetectError> {
        let re = Regex::new(&format!("^(?:{re})$")).map_err(|_| DetectError::BadMethod(method.to_string()))?;
        Ok(sorted.iter().find(|a| re.is_match(&a.ifname) == keep).map(|a| a.address))
    };
    match method.split_once('=') {
        None if method == "first-found" => {
            let skip = Regex::new(SKIPPED_BY_FIRST_FOUND).expect("a valid built-in regex");
            sorted
                .iter()
                .find(|a| !skip.is_match(&a.ifname))
                .map(|a| a.address)
                .ok_or_else(|| not_found(method, "no interface outside the skipped virtual ones has an IPv4 address"))
        }
        Some(("interface", re)) => {
            by_name(re, true)?.ok_or_else(|| not_found(method, "no matching interface has an IPv4 address"))
        }
        Some(("skip-interface", re)) => {
            by_name(re, false)?.ok_or_else(|| not_found(method, "every interface with an IPv4 address is skipped"))
        }
        Some(("cidr", list)) => {
            let cidrs: Vec<IpNetwork> = list
                .split(',')
                .map(|c| c.trim().parse().map_err(|_| DetectError::BadMethod(method.to_string())))
                .collect::<Result<_, _>>()?;
            sorted
                .iter()
                .find(|a| cidrs.iter().any(|c| c.contains(IpAddr::V4(a.address.ip()))))
                .map(|a| a.address)
                .ok_or_else(|| not_found(method, "no interface address lies in the given CIDRs"))
        }
        Some(("can-reach", target)) => {
            let target: IpAddr = target.parse().map_err(|_| DetectError::BadMethod(method.to_string()))?;
            let Some(IpAddr::V4(src)) = route_source(target) else {
                return Err(not_found(method, "the kernel has no IPv4 route to it"));
            };
            // Keep the interface's prefix length, not a /32.
            sorted
                .iter()
                .find(|a| a.address.ip() == src)
                .map(|a| a.address)
                .ok_or_else(|| not_found(method, format!("source address {src} is on no interface")))
        }
        _ => Err(DetectError::BadMethod(method.to_string())),
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
            a(2, "docker0", "172.17.0.1/16"),
            a(3, "eth0", "10.0.0.5/24"),
            a(4, "eth1", "192.168.50.7/22"),
            a(5, "tortab12cd34ef0", "169.254.1.1/32"),
        ]
    }

    #[test]
    fn first_found_skips_virtual_interfaces_and_keeps_the_prefix() {
        assert_eq!(select("first-found", &addrs(), |_| None), Ok("10.0.0.5/24".parse().unwrap()));
    }

    #[test]
    fn interface_skip_interface_and_cidr() {
        assert_eq!(select("interface=eth1", &addrs(), |_| None), Ok("192.168.50.7/22".parse().unwrap()));
        assert_eq!(select("interface=eth.*", &addrs(), |_| None), Ok("10.0.0.5/24".parse().unwrap()));
        assert_eq!(
            select("skip-interface=lo|docker.*|eth0", &addrs(), |_| None),
            Ok("192.168.50.7/22".parse().unwrap())
        );
        assert_eq!(select("cidr=192.168.0.0/16", &addrs(), |_| None), Ok("192.168.50.7/22".parse().unwrap()));
        assert!(matches!(select("cidr=10.9.0.0/16", &addrs(), |_| None), Err(DetectError::NotFound { .. })));
    }

    #[test]
    fn can_reach_uses_the_kernels_source_address_with_its_prefix() {
        let src = |_| Some("192.168.50.7".parse().unwrap());
        assert_eq!(select("can-reach=8.8.8.8", &addrs(), src), Ok("192.168.50.7/22".parse().unwrap()));
        let err = select("can-reach=8.8.8.8", &addrs(), |_| None).unwrap_err();
        assert!(err.to_string().contains("no IPv4 route"), "{err}");
    }

    #[test]
    fn unknown_methods_are_named_in_the_error() {
        assert_eq!(select("nearest", &addrs(), |_| None), Err(DetectError::BadMethod("nearest".into())));
    }
}
