//! Address families: AFI (RFC 4760, IANA "Address Family Numbers") and SAFI.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Address Family Identifier. A newtype rather than an enum so that any value
/// seen on the wire survives decode → encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Afi(pub u16);

impl Afi {
    pub const IPV4: Afi = Afi(1);
    pub const IPV6: Afi = Afi(2);
}

/// Subsequent Address Family Identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Safi(pub u8);

impl Safi {
    pub const UNICAST: Safi = Safi(1);
    pub const MULTICAST: Safi = Safi(2);
}

/// An AFI/SAFI pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Family {
    pub afi: Afi,
    pub safi: Safi,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family { afi: Afi::IPV4, safi: Safi::UNICAST };
    pub const IPV6_UNICAST: Family = Family { afi: Afi::IPV6, safi: Safi::UNICAST };

    pub const fn new(afi: Afi, safi: Safi) -> Self {
        Family { afi, safi }
    }

    /// True for the families whose NLRI this codec decodes into prefixes.
    pub fn is_ip_unicast(self) -> bool {
        self == Family::IPV4_UNICAST || self == Family::IPV6_UNICAST
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Family::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi{}-safi{}", afi.0, safi.0),
        }
    }
}

/// Error for [`Family::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown address family {0:?} (expected ipv4-unicast or ipv6-unicast)")]
pub struct UnknownFamily(pub String);

impl FromStr for Family {
    type Err = UnknownFamily;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "ipv4-unicast" => Ok(Family::IPV4_UNICAST),
            "ipv6-unicast" => Ok(Family::IPV6_UNICAST),
            other => Err(UnknownFamily(other.to_string())),
        }
    }
}
