//! Kernel IP-in-IP: the `tunl0` fallback device of the ipip module, set up
//! as Calico's Felix does (up, MTU = underlay − 20, the node's tunnel
//! address as a /32). Routes through it are `<block> via <node> dev tunl0
//! onlink`, written by the route programmer.

use crate::dataplane::netlink::RouteSocket;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use std::net::{IpAddr, Ipv4Addr};

/// The device the ipip module creates and Calico uses.
pub const TUNL0: &str = "tunl0";

/// RTM_NEWLINK body: create (or update) `tunl0` of kind ipip, up, with `mtu`.
pub fn tunl0_link_message(mtu: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::IfName(TUNL0.to_string()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::IpIp)]));
    msg
}

/// RTM_NEWADDR body: the node's tunnel address as a /32 on `ifindex`.
pub fn tunnel_address_message(ifindex: u32, address: Ipv4Addr) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = 32;
    msg.header.index = ifindex;
    msg.attributes.push(AddressAttribute::Local(IpAddr::V4(address)));
    msg.attributes.push(AddressAttribute::Address(IpAddr::V4(address)));
    msg
}

/// Why kernel IP-in-IP cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KernelIpipError {
    /// EOPNOTSUPP: this kernel has no ipip (and no module can add it).
    #[error("the kernel has no ipip support ({0})")]
    Unsupported(std::io::Error),
    #[error("cannot set up {TUNL0}: {0}")]
    Netlink(std::io::Error),
}

/// Ensures `tunl0` exists, is up with `mtu`, and carries `address`.
/// Returns its interface index.
pub fn ensure_tunl0(socket: &mut RouteSocket, mtu: u32, address: Option<Ipv4Addr>) -> Result<u32, KernelIpipError> {
    match socket.request_ack(RouteNetlinkMessage::NewLink(tunl0_link_message(mtu)), NLM_F_CREATE) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Err(KernelIpipError::Unsupported(e)),
        Err(e) => return Err(KernelIpipError::Netlink(e)),
    }
    let ifindex = socket.link_index(TUNL0).map_err(KernelIpipError::Netlink)?;
    if let Some(addr) = address {
        socket
            .request_ack(
                RouteNetlinkMessage::NewAddress(tunnel_address_message(ifindex, addr)),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .map_err(KernelIpipError::Netlink)?;
    }
    Ok(ifindex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};

    fn roundtrip(msg: RouteNetlinkMessage) -> RouteNetlinkMessage {
        let mut nl = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).unwrap().payload {
            NetlinkPayload::InnerMessage(m) => m,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tunl0_request_creates_an_ipip_device_up_with_the_tunnel_mtu() {
        let RouteNetlinkMessage::NewLink(m) = roundtrip(RouteNetlinkMessage::NewLink(tunl0_link_message(1480))) else {
            panic!("not a link message")
        };
        assert!(m.header.flags.contains(LinkFlags::Up) && m.header.change_mask.contains(LinkFlags::Up));
        assert!(m.attributes.contains(&LinkAttribute::IfName("tunl0".into())));
        assert!(m.attributes.contains(&LinkAttribute::Mtu(1480)));
        assert!(m.attributes.contains(&LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::IpIp)])));
    }

    #[test]
    fn tunnel_address_request_is_a_host_address_on_tunl0() {
        let addr = Ipv4Addr::new(10, 244, 1, 0);
        let RouteNetlinkMessage::NewAddress(m) =
            roundtrip(RouteNetlinkMessage::NewAddress(tunnel_address_message(7, addr)))
        else {
            panic!("not an address message")
        };
        assert_eq!((m.header.family, m.header.prefix_len, m.header.index), (AddressFamily::Inet, 32, 7));
        assert!(m.attributes.contains(&AddressAttribute::Local(IpAddr::V4(addr))));
    }
}
