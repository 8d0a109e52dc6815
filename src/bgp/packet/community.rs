//! COMMUNITIES (RFC 1997), EXTENDED_COMMUNITIES (RFC 4360) and
//! LARGE_COMMUNITY (RFC 8092) values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A community, written `ASN:VALUE` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

impl FromStr for Community {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad community {s:?} (expected ASN:VALUE with 16-bit parts)");
        let (high, low) = s.split_once(':').ok_or_else(bad)?;
        let high: u16 = high.parse().map_err(|_| bad())?;
        let low: u16 = low.parse().map_err(|_| bad())?;
        Ok(Community((u32::from(high) << 16) | u32::from(low)))
    }
}

/// A large community, written `GLOBAL:LOCAL1:LOCAL2` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local_data_1: u32,
    pub local_data_2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global_admin, self.local_data_1, self.local_data_2)
    }
}

impl FromStr for LargeCommunity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad large community {s:?} (expected A:B:C)");
        let mut parts = s.split(':').map(|part| part.parse::<u32>().map_err(|_| bad()));
        let community = LargeCommunity {
            global_admin: parts.next().ok_or_else(bad)??,
            local_data_1: parts.next().ok_or_else(bad)??,
            local_data_2: parts.next().ok_or_else(bad)??,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(community)
    }
}

/// An extended community: eight octets, written as 16 hex digits in JSON.
/// The octets are kept whole because the type registry is large and open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedCommunity(pub [u8; 8]);

impl ExtendedCommunity {
    /// The high-order type octet.
    pub fn type_high(&self) -> u8 {
        self.0[0]
    }

    /// The low-order type (subtype) octet.
    pub fn subtype(&self) -> u8 {
        self.0[1]
    }
}

impl fmt::Display for ExtendedCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for ExtendedCommunity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut octets = [0u8; 8];
        hex::decode_to_slice(s, &mut octets)
            .map_err(|_| format!("bad extended community {s:?} (expected 16 hex digits)"))?;
        Ok(ExtendedCommunity(octets))
    }
}

macro_rules! serde_via_string {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_string!(Community);
serde_via_string!(LargeCommunity);
serde_via_string!(ExtendedCommunity);
