//! The VXLAN device: created with the configured VNI, port, local address
//! and parent, learning off (every remote MAC comes from the datastore,
//! none from traffic), up with its MTU and the node's tunnel address as a
//! host address. A device of our name with these parameters is adopted —
//! its MAC, which remote nodes know, survives a restart; one with others,
//! or not a vxlan device, is replaced.

use super::VxlanError;
use crate::dataplane::netlink::RouteSocket;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::mem::discriminant;
use std::net::IpAddr;

/// What the device should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub name: String,
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// The underlay device the encapsulated packets leave by.
    pub parent_ifindex: u32,
    /// Our underlay address, the outer source of every packet.
    pub local: IpAddr,
    pub mtu: u32,
    /// The node's tunnel address, put on the device as a host address;
    /// `None` leaves the device's addresses alone.
    pub address: Option<IpAddr>,
}

/// The device as the kernel has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// VNIs are 24 bits on the wire.
const VNI_MAX: u32 = (1 << 24) - 1;
/// Interface names hold IFNAMSIZ bytes with the terminating NUL.
const IFNAME_MAX: usize = 16 - 1;

fn validate(cfg: &DeviceConfig) -> Result<(), VxlanError> {
    let invalid = |field, value: String, reason| Err(VxlanError::Invalid { field, value, reason });
    if cfg.name.is_empty() || cfg.name.len() > IFNAME_MAX || cfg.name.contains(['/', ' ']) {
        return invalid("name", cfg.name.clone(), "an interface name has 1 to 15 characters, no '/' or space");
    }
    if cfg.vni > VNI_MAX {
        return invalid("vni", cfg.vni.to_string(), "a VNI has 24 bits (at most 16777215)");
    }
    if cfg.port == 0 {
        return invalid("port", cfg.port.to_string(), "the UDP port must not be 0");
    }
    if cfg.local.is_unspecified() || cfg.local.is_multicast() {
        return invalid("local", cfg.local.to_string(), "the local underlay address must be a unicast address");
    }
    Ok(())
}

/// The vxlan parameters of `cfg`, as a creation request carries them.
fn vxlan_params(cfg: &DeviceConfig) -> Vec<InfoVxlan> {
    // No outer UDP checksum over IPv4 (RFC 7348: it SHOULD be zero; the
    // inner packet carries its own), as Felix's device; the kernel's
    // default computes one for every packet.
    let mut params =
        vec![InfoVxlan::Id(cfg.vni), InfoVxlan::Port(cfg.port), InfoVxlan::Learning(false), InfoVxlan::UDPCsum(false)];
    if cfg.parent_ifindex != 0 {
        params.push(InfoVxlan::Link(cfg.parent_ifindex));
    }
    match cfg.local {
        IpAddr::V4(v4) => params.push(InfoVxlan::Local(v4)),
        IpAddr::V6(v6) => {
            // As Felix: no UDP checksum over IPv6 (RFC 6935 allows it for
            // tunnels; the inner packet carries its own).
            params.extend([InfoVxlan::Local6(v6), InfoVxlan::UDPZeroCsumTX(true), InfoVxlan::UDPZeroCsumRX(true)]);
        }
    }
    params
}

/// The parameters that decide whether a device can be adopted, with the
/// kernel's "not set" values (false, 0, the unspecified address) left out,
/// so a request and a dump of the same device compare equal.
fn compared(params: &[InfoVxlan]) -> Vec<InfoVxlan> {
    params
        .iter()
        .filter(|p| match p {
            InfoVxlan::Id(_) | InfoVxlan::Port(_) | InfoVxlan::UDPCsum(_) => true,
            InfoVxlan::Link(i) => *i != 0,
            InfoVxlan::Learning(on) | InfoVxlan::UDPZeroCsumTX(on) | InfoVxlan::UDPZeroCsumRX(on) => *on,
            InfoVxlan::Local(a) | InfoVxlan::Group(a) => !a.is_unspecified(),
            InfoVxlan::Local6(a) | InfoVxlan::Group6(a) => !a.is_unspecified(),
            _ => false,
        })
        .cloned()
        .collect()
}

/// Why `link` cannot be adopted for `cfg`, or `None` when it can.
fn difference(link: &LinkMessage, cfg: &DeviceConfig) -> Option<String> {
    let info = link.attributes.iter().find_map(|a| if let LinkAttribute::LinkInfo(i) = a { Some(i) } else { None });
    let kind = info.and_then(|i| i.iter().find_map(|x| if let LinkInfo::Kind(k) = x { Some(k) } else { None }));
    if kind != Some(&InfoKind::Vxlan) {
        return Some(format!("it is of kind {kind:?}, not vxlan"));
    }
    let data = info
        .and_then(|i| i.iter().find_map(|x| if let LinkInfo::Data(InfoData::Vxlan(d)) = x { Some(d) } else { None }));
    let has = compared(data.map_or(&[][..], |d| d.as_slice()));
    let wants = compared(&vxlan_params(cfg));
    let same = has.len() == wants.len()
        && wants.iter().all(|w| has.iter().any(|h| discriminant(h) == discriminant(w) && h == w));
    (!same).then(|| format!("it has {has:?}, we want {wants:?}"))
}

/// RTM_NEWLINK body creating the device, up, with its MTU.
fn create_message(cfg: &DeviceConfig) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::IfName(cfg.name.clone()));
    msg.attributes.push(LinkAttribute::Mtu(cfg.mtu));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(vxlan_params(cfg))),
    ]));
    msg
}

fn mac_of(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(mac) => mac.as_slice().try_into().ok(),
        _ => None,
    })
}

fn mtu_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| if let LinkAttribute::Mtu(m) = a { Some(*m) } else { None })
}

/// Creates or adopts the device `cfg` describes and gives it its MTU, up
/// state and tunnel address (other addresses on it, but IPv6 link-local
/// ones, are then removed: the device is ours).
pub fn ensure_device(socket: &mut RouteSocket, cfg: &DeviceConfig) -> Result<Device, VxlanError> {
    validate(cfg)?;
    let failed = |what| move |source| VxlanError::Netlink { what, device: cfg.name.clone(), source };
    let existing = socket.get_link(&cfg.name).map_err(failed("read"))?;
    let link = match existing {
        Some(link) => match difference(&link, cfg) {
            None => {
                tracing::debug!(subsys = "vxlan", device = %cfg.name, ifindex = link.header.index, "adopting the existing device");
                Some(link)
            }
            Some(why) => {
                tracing::warn!(subsys = "vxlan", device = %cfg.name, %why, "replacing a device of our name that differs from the configuration");
                delete_link(socket, link.header.index).map_err(failed("delete"))?;
                None
            }
        },
        None => None,
    };
    let link = match link {
        Some(link) => {
            if mtu_of(&link) != Some(cfg.mtu) || !link.header.flags.contains(LinkFlags::Up) {
                let mut set = LinkMessage::default();
                set.header.index = link.header.index;
                set.header.flags = LinkFlags::Up;
                set.header.change_mask = LinkFlags::Up;
                set.attributes.push(LinkAttribute::Mtu(cfg.mtu));
                socket.request_ack(RouteNetlinkMessage::SetLink(set), 0).map_err(failed("set the MTU of"))?;
            }
            link
        }
        None => {
            match socket.request_ack(RouteNetlinkMessage::NewLink(create_message(cfg)), NLM_F_CREATE | NLM_F_EXCL) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Err(VxlanError::Unsupported(e)),
                Err(e) => return Err(failed("create")(e)),
            }
            tracing::info!(subsys = "vxlan", device = %cfg.name, vni = cfg.vni, port = cfg.port, local = %cfg.local, "created the vxlan device");
            socket
                .get_link(&cfg.name)
                .map_err(failed("read"))?
                .ok_or_else(|| failed("read")(std::io::Error::from_raw_os_error(libc::ENODEV)))?
        }
    };
    let mac = mac_of(&link)
        .ok_or_else(|| failed("read the MAC of")(std::io::Error::other("the kernel reported no Ethernet address")))?;
    let ifindex = link.header.index;
    ensure_address(socket, ifindex, cfg.address).map_err(failed("set the tunnel address of"))?;
    Ok(Device { ifindex, mac })
}

/// Deletes the vxlan device `name` (for `dataplane.cleanup_on_exit`); true
/// when there was one. A device of that name of another kind is left.
pub fn remove_device(socket: &mut RouteSocket, name: &str) -> Result<bool, VxlanError> {
    let failed = |what| move |source| VxlanError::Netlink { what, device: name.to_string(), source };
    let Some(link) = socket.get_link(name).map_err(failed("read"))? else { return Ok(false) };
    let is_vxlan = link
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::LinkInfo(info) if info.contains(&LinkInfo::Kind(InfoKind::Vxlan))));
    if !is_vxlan {
        tracing::warn!(subsys = "vxlan", device = name, "not removing a device of our name that is not vxlan");
        return Ok(false);
    }
    match delete_link(socket, link.header.index) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(failed("delete")(e)),
    }
}

fn delete_link(socket: &mut RouteSocket, ifindex: u32) -> std::io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    socket.request_ack(RouteNetlinkMessage::DelLink(msg), 0)
}

/// An address on the device: (address, prefix length).
type HostAddress = (IpAddr, u8);

fn host_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn is_ipv6_link_local(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

fn address_message(ifindex: u32, (ip, prefix_len): HostAddress) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    msg.header.prefix_len = prefix_len;
    msg.header.index = ifindex;
    if ip.is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(ip));
    }
    msg.attributes.push(AddressAttribute::Address(ip));
    msg
}

/// The device's addresses but IPv6 link-local ones.
fn device_addresses(socket: &mut RouteSocket, ifindex: u32) -> std::io::Result<Vec<HostAddress>> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut request = AddressMessage::default();
        request.header.family = family;
        request.header.index = ifindex;
        for m in socket.dump_messages(RouteNetlinkMessage::GetAddress(request))? {
            let RouteNetlinkMessage::NewAddress(a) = m else { continue };
            if a.header.index != ifindex {
                continue;
            }
            let local =
                a.attributes.iter().find_map(|x| if let AddressAttribute::Local(ip) = x { Some(*ip) } else { None });
            let address =
                a.attributes.iter().find_map(|x| if let AddressAttribute::Address(ip) = x { Some(*ip) } else { None });
            if let Some(ip) = local.or(address)
                && !is_ipv6_link_local(&ip)
            {
                out.push((ip, a.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// Makes `address` (as a host address) the device's only address but
/// IPv6 link-local ones; `None` leaves the addresses as they are (the
/// agent reads the MAC before it knows the address, and a restart must not
/// take the address away meanwhile).
fn ensure_address(socket: &mut RouteSocket, ifindex: u32, address: Option<IpAddr>) -> std::io::Result<()> {
    let Some(ip) = address else { return Ok(()) };
    let wanted = Some((ip, host_prefix(&ip)));
    let present = device_addresses(socket, ifindex)?;
    for &stale in present.iter().filter(|a| Some(**a) != wanted) {
        tracing::info!(subsys = "vxlan", address = %stale.0, prefix_len = stale.1, "removing an address that is not our tunnel address");
        match socket.request_ack(RouteNetlinkMessage::DelAddress(address_message(ifindex, stale)), 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(wanted) = wanted.filter(|w| !present.contains(w)) {
        let mut msg = address_message(ifindex, wanted);
        // The address comes from IPAM, unique by construction; without
        // duplicate address detection an IPv6 one is usable at once.
        msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        socket.request_ack(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_REPLACE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(local: &str) -> DeviceConfig {
        DeviceConfig {
            name: "vxlan.tortie".into(),
            vni: 4096,
            port: 4789,
            parent_ifindex: 2,
            local: local.parse().unwrap(),
            mtu: 1450,
            address: None,
        }
    }

    /// The link as the kernel dumps it: every parameter, defaults included.
    fn reported(cfg: &DeviceConfig, vni: u32) -> LinkMessage {
        let mut data = vec![
            InfoVxlan::Id(vni),
            InfoVxlan::Link(cfg.parent_ifindex),
            InfoVxlan::Port(cfg.port),
            InfoVxlan::Learning(false),
            InfoVxlan::Ttl(0),
            InfoVxlan::UDPCsum(false),
            InfoVxlan::Ageing(300),
        ];
        match cfg.local {
            IpAddr::V4(v4) => {
                data.extend([InfoVxlan::Local(v4), InfoVxlan::UDPZeroCsumTX(false), InfoVxlan::UDPZeroCsumRX(false)])
            }
            IpAddr::V6(v6) => {
                data.extend([InfoVxlan::Local6(v6), InfoVxlan::UDPZeroCsumTX(true), InfoVxlan::UDPZeroCsumRX(true)])
            }
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ]));
        msg
    }

    #[test]
    fn a_device_with_our_parameters_is_adopted_over_either_underlay() {
        for c in [cfg("10.0.0.1"), cfg("fd00::1")] {
            assert_eq!(difference(&reported(&c, c.vni), &c), None, "{c:?}");
        }
    }

    #[test]
    fn another_vni_local_parent_or_kind_is_a_difference() {
        let c = cfg("10.0.0.1");
        assert!(difference(&reported(&c, 4097), &c).is_some());
        assert!(
            difference(&reported(&c, 4096), &DeviceConfig { local: "10.0.0.2".parse().unwrap(), ..c.clone() })
                .is_some()
        );
        assert!(difference(&reported(&c, 4096), &DeviceConfig { parent_ifindex: 3, ..c.clone() }).is_some());
        assert!(difference(&reported(&c, 4096), &DeviceConfig { port: 8472, ..c.clone() }).is_some());
        // One made with the kernel's default outer UDP checksum is replaced.
        let mut checksummed = reported(&c, 4096);
        for a in &mut checksummed.attributes {
            if let LinkAttribute::LinkInfo(info) = a {
                for i in info {
                    if let LinkInfo::Data(InfoData::Vxlan(d)) = i {
                        d.retain(|p| !matches!(p, InfoVxlan::UDPCsum(_)));
                        d.push(InfoVxlan::UDPCsum(true));
                    }
                }
            }
        }
        assert!(difference(&checksummed, &c).is_some());
        let mut bridge = LinkMessage::default();
        bridge.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        assert!(difference(&bridge, &c).unwrap().contains("not vxlan"));
        assert!(difference(&LinkMessage::default(), &c).is_some(), "a device without link info");
    }

    #[test]
    fn bad_values_are_refused_naming_field_and_value() {
        let err = validate(&DeviceConfig { vni: 1 << 24, ..cfg("10.0.0.1") }).unwrap_err().to_string();
        assert!(err.contains("vni = 16777216"), "{err}");
        let err =
            validate(&DeviceConfig { name: "a-name-far-too-long".into(), ..cfg("10.0.0.1") }).unwrap_err().to_string();
        assert!(err.contains("name = a-name-far-too-long"), "{err}");
        let err = validate(&cfg("0.0.0.0")).unwrap_err().to_string();
        assert!(err.contains("local = 0.0.0.0"), "{err}");
        assert!(validate(&DeviceConfig { name: "vxlan-v6.tortie".into(), ..cfg("fd00::1") }).is_ok());
    }

    #[test]
    fn the_creation_request_carries_learning_off_and_ipv6_zero_checksums() {
        let v4 = vxlan_params(&cfg("10.0.0.1"));
        assert!(v4.contains(&InfoVxlan::Learning(false)) && !v4.contains(&InfoVxlan::UDPZeroCsumTX(true)));
        let v6 = vxlan_params(&cfg("fd00::1"));
        assert!(v6.contains(&InfoVxlan::UDPZeroCsumTX(true)) && v6.contains(&InfoVxlan::UDPZeroCsumRX(true)));
        assert!(v6.contains(&InfoVxlan::Local6("fd00::1".parse().unwrap())));
    }
}
