//! Which routes `tortie bgp routes PREFIX [--longer] [--peer ADDR]` asks for, as BIRD's
//! `show route for PREFIX` / `show route in PREFIX` / `protocol P` choose them, and the form the
//! query takes in the URL of `GET /v1/bgp/routes`.

use ipnetwork::IpNetwork;
use std::net::IpAddr;

/// A selection of the Loc-RIB's paths; the default selects every path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteQuery {
    /// Without `longer`: the longest prefix in the RIB covering this one (an address is a host
    /// prefix), so the prefix itself when present. With `longer`: every prefix within it.
    pub prefix: Option<IpNetwork>,
    /// Every prefix within `prefix`, itself included, instead of the longest match.
    pub longer: bool,
    /// Only the paths learned from this peer.
    pub peer: Option<IpAddr>,
}

/// The query-string parameter names.
const PREFIX: &str = "prefix";
const LONGER: &str = "longer";
const PEER: &str = "peer";

impl RouteQuery {
    /// The prefixes of `nets` (each once) that the query selects, in `nets`' order.
    pub fn select(&self, nets: Vec<IpNetwork>) -> Vec<IpNetwork> {
        let Some(wanted) = self.prefix else { return nets };
        if self.longer {
            return nets.into_iter().filter(|n| within(*n, wanted)).collect();
        }
        nets.into_iter().filter(|n| within(wanted, *n)).max_by_key(IpNetwork::prefix).into_iter().collect()
    }

    /// Whether a path from `source` (`None`: our own) is selected, its prefix being.
    pub fn wants_path(&self, source: Option<IpAddr>) -> bool {
        self.peer.is_none_or(|peer| source == Some(peer))
    }

    /// The URL query string (without `?`); empty for everything. Addresses and prefixes need
    /// no escaping (digits, hex letters, `.`, `:` and `/` are all allowed in a query).
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(prefix) = self.prefix {
            parts.push(format!("{PREFIX}={prefix}"));
        }
        if self.longer {
            parts.push(format!("{LONGER}=true"));
        }
        if let Some(peer) = self.peer {
            parts.push(format!("{PEER}={peer}"));
        }
        parts.join("&")
    }

    /// Reads [`Self::to_query_string`]'s form; the error names the parameter and its value.
    pub fn from_query_string(query: &str) -> Result<RouteQuery, String> {
        let mut out = RouteQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.replace("%2F", "/").replace("%2f", "/").replace("%3A", ":").replace("%3a", ":");
            let bad = |why: &str| format!("query parameter {name}={value:?}: {why}");
            match name {
                PREFIX => out.prefix = Some(value.parse().map_err(|_| bad("not an address or prefix"))?),
                LONGER => out.longer = value.parse().map_err(|_| bad("write true or false"))?,
                PEER => out.peer = Some(value.parse().map_err(|_| bad("not an address"))?),
                _ => return Err(format!("unknown query parameter {name:?} (known: {PREFIX}, {LONGER}, {PEER})")),
            }
        }
        if out.longer && out.prefix.is_none() {
            return Err(format!("query parameter {LONGER}=true needs {PREFIX}"));
        }
        Ok(out)
    }
}

/// Whether `inner` lies within `outer` (same family, at least as long, inside it).
fn within(inner: IpNetwork, outer: IpNetwork) -> bool {
    inner.is_ipv4() == outer.is_ipv4() && inner.prefix() >= outer.prefix() && outer.contains(inner.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNetwork> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn query(prefix: &str, longer: bool) -> RouteQuery {
        RouteQuery { prefix: Some(prefix.parse().unwrap()), longer, peer: None }
    }

    const RIB: &[&str] = &["10.0.0.0/8", "10.244.0.0/16", "10.244.1.0/26", "10.244.1.64/26", "fd00::/8", "0.0.0.0/0"];

    #[test]
    fn an_address_or_a_prefix_alone_selects_the_longest_match() {
        assert_eq!(query("10.244.1.7", false).select(nets(RIB)), nets(&["10.244.1.0/26"]));
        assert_eq!(query("10.244.0.0/16", false).select(nets(RIB)), nets(&["10.244.0.0/16"]), "exact prefix");
        assert_eq!(query("10.244.2.0/24", false).select(nets(RIB)), nets(&["10.244.0.0/16"]), "covering prefix");
        assert_eq!(query("192.0.2.1", false).select(nets(RIB)), nets(&["0.0.0.0/0"]), "the default route");
        assert_eq!(query("fd00::1", false).select(nets(RIB)), nets(&["fd00::/8"]));
        assert!(query("2001:db8::1", false).select(nets(RIB)).is_empty(), "no covering IPv6 prefix");
    }

    #[test]
    fn longer_selects_every_prefix_within_itself_included() {
        assert_eq!(
            query("10.244.0.0/16", true).select(nets(RIB)),
            nets(&["10.244.0.0/16", "10.244.1.0/26", "10.244.1.64/26"])
        );
        assert_eq!(query("10.244.1.0/24", true).select(nets(RIB)), nets(&["10.244.1.0/26", "10.244.1.64/26"]));
        assert_eq!(query("0.0.0.0/0", true).select(nets(RIB)).len(), 5, "every IPv4 prefix, no IPv6 one");
        assert_eq!(RouteQuery::default().select(nets(RIB)), nets(RIB));
    }

    #[test]
    fn peer_selects_the_paths_from_that_peer_only() {
        let q = RouteQuery { peer: Some("192.0.2.2".parse().unwrap()), ..Default::default() };
        assert!(q.wants_path(Some("192.0.2.2".parse().unwrap())));
        assert!(!q.wants_path(Some("192.0.2.3".parse().unwrap())));
        assert!(!q.wants_path(None), "our own paths were learned from no peer");
        assert!(RouteQuery::default().wants_path(None));
    }

    #[test]
    fn the_query_string_round_trips_and_bad_values_are_named() {
        let q = RouteQuery {
            prefix: Some("fd00:1::/64".parse().unwrap()),
            longer: true,
            peer: Some("10.0.0.2".parse().unwrap()),
        };
        assert_eq!(q.to_query_string(), "prefix=fd00:1::/64&longer=true&peer=10.0.0.2");
        assert_eq!(RouteQuery::from_query_string(&q.to_query_string()), Ok(q));
        assert_eq!(RouteQuery::from_query_string("prefix=10.0.0.0%2F8").unwrap().prefix, Some(nets(RIB)[0]));
        assert_eq!(RouteQuery::from_query_string(""), Ok(RouteQuery::default()));
        assert_eq!(RouteQuery::default().to_query_string(), "");
        let e = RouteQuery::from_query_string("prefix=10.0.0.0/99").unwrap_err();
        assert_eq!(e, "query parameter prefix=\"10.0.0.0/99\": not an address or prefix");
        let e = RouteQuery::from_query_string("peer=nope").unwrap_err();
        assert!(e.contains("peer=\"nope\""), "{e}");
        assert!(RouteQuery::from_query_string("longer=true").unwrap_err().contains("needs prefix"));
        assert!(RouteQuery::from_query_string("colour=red").unwrap_err().contains("\"colour\""));
    }
}
