//! A route dump kept compact while it streams in: at a million routes a
//! `Vec<Route>` is some 64 MB, this is 8 bytes per IPv4 route plus the
//! handful of distinct forms. Built on the blocking thread that dumps, read
//! by the programmer task that owns the route table.

use super::forms::{ID_BITS, KernelForm};
use super::route::Route;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;

const FORM_MASK: u32 = (1 << ID_BITS) - 1;

/// Our routes as one dump found them, in dump order (duplicates included).
#[derive(Default)]
pub struct Snapshot {
    /// Local form ids (not the route table's: those live on another thread).
    pub forms: Vec<KernelForm>,
    index: FxHashMap<KernelForm, u32>,
    /// (address, prefix length << 24 | local form id).
    v4: Vec<(u32, u32)>,
    v6: Vec<(Ipv6Network, u32)>,
}

impl Snapshot {
    pub fn push(&mut self, route: Route) {
        let form = KernelForm { target: route.target, mtu: route.mtu };
        let id = match self.index.get(&form) {
            Some(&id) => id,
            None => {
                let id = self.forms.len() as u32;
                assert!(id <= FORM_MASK, "more distinct route forms in one dump than ids");
                self.forms.push(form.clone());
                self.index.insert(form, id);
                id
            }
        };
        match route.dst {
            IpNetwork::V4(n) => self.v4.push((u32::from(n.network()), u32::from(n.prefix()) << 24 | id)),
            IpNetwork::V6(n) => self.v6.push((n, id)),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Every (prefix, local form id), IPv4 first.
    pub fn routes(&self) -> impl Iterator<Item = (IpNetwork, u32)> + '_ {
        let v4 = self.v4.iter().map(|&(addr, meta)| {
            let net = Ipv4Network::new(Ipv4Addr::from(addr), (meta >> 24) as u8).expect("pushed valid");
            (IpNetwork::V4(net), meta & FORM_MASK)
        });
        v4.chain(self.v6.iter().map(|&(net, id)| (IpNetwork::V6(net), id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::route::{NextHop, RouteTarget};

    #[test]
    fn routes_come_back_with_their_forms_each_stored_once() {
        let via =
            |gw: &str| RouteTarget::Via(NextHop { gateway: gw.parse().unwrap(), ifindex: Some(2), onlink: false });
        let r = |dst: &str, target: RouteTarget| Route { dst: dst.parse().unwrap(), target, mtu: None };
        let mut s = Snapshot::default();
        s.push(r("10.0.0.0/24", via("192.168.0.2")));
        s.push(r("10.0.1.0/24", via("192.168.0.2")));
        s.push(r("fd00::/64", via("fe80::1")));
        s.push(r("0.0.0.0/0", RouteTarget::Blackhole));
        assert_eq!(s.len(), 4);
        assert_eq!(s.forms.len(), 3);
        let back: Vec<Route> = s.routes().map(|(dst, id)| s.forms[id as usize].route(dst)).collect();
        assert_eq!(
            back,
            vec![
                r("10.0.0.0/24", via("192.168.0.2")),
                r("10.0.1.0/24", via("192.168.0.2")),
                r("0.0.0.0/0", RouteTarget::Blackhole),
                r("fd00::/64", via("fe80::1")),
            ]
        );
    }
}
