//! NLRI encoding (RFC 4271 section 4.3, RFC 4760 section 5, RFC 7911 section 3).
//!
//! ```text
//! +---------------------------+
//! |   Path Identifier (4 octets, ADD-PATH only)
//! +---------------------------+
//! |   Length (1 octet, in bits)
//! +---------------------------+
//! |   Prefix (variable: ceil(Length / 8) octets)
//! +---------------------------+
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::family::{Afi, Family};
use super::parse;

/// An IP prefix exactly as it was encoded: the octets after the prefix length
/// are zero, but bits inside the last octet beyond the length are kept (so a
/// sloppy encoder's host bits survive a round trip). Use [`Prefix::network`]
/// for the masked address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix length {len} exceeds {max}")]
    TooLong { len: u8, max: u8 },
    #[error("address has bits set beyond the octets that the prefix length covers")]
    TrailingOctets,
    #[error("not a prefix (expected ADDRESS/LENGTH)")]
    Syntax,
}

impl Prefix {
    /// A prefix; every octet past `ceil(len / 8)` must be zero, since the wire
    /// cannot carry it.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(PrefixError::TooLong { len, max });
        }
        let octets = octets_of(&addr);
        let used = usize::from(len).div_ceil(8);
        if octets.iter().skip(used).any(|&octet| octet != 0) {
            return Err(PrefixError::TrailingOctets);
        }
        Ok(Prefix { addr, len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for the default route, the only prefix of length 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(addr) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(addr) & mask))
            }
            IpAddr::V6(addr) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(addr) & mask))
            }
        }
    }

    pub fn afi(&self) -> Afi {
        if self.addr.is_ipv4() { Afi::IPV4 } else { Afi::IPV6 }
    }
}

fn octets_of(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(addr) => addr.octets().to_vec(),
        IpAddr::V6(addr) => addr.octets().to_vec(),
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.split_once('/').ok_or(PrefixError::Syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::Syntax)?;
        let len: u8 = len.parse().map_err(|_| PrefixError::Syntax)?;
        Prefix::new(addr, len)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One NLRI entry: a prefix and, under ADD-PATH, its path identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Nlri {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_id: Option<u32>,
    pub prefix: Prefix,
}

impl Nlri {
    pub fn new(prefix: Prefix) -> Self {
        Nlri { path_id: None, prefix }
    }

    pub fn with_path_id(path_id: u32, prefix: Prefix) -> Self {
        Nlri { path_id: Some(path_id), prefix }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        if let Some(path_id) = self.path_id {
            out.put_u32(path_id);
        }
        out.put_u8(self.prefix.len);
        let used = usize::from(self.prefix.len).div_ceil(8);
        match self.prefix.addr {
            IpAddr::V4(addr) => out.put_slice(addr.octets().get(..used).unwrap_or_default()),
            IpAddr::V6(addr) => out.put_slice(addr.octets().get(..used).unwrap_or_default()),
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        usize::from(self.path_id.is_some()) * 4 + 1 + usize::from(self.prefix.len).div_ceil(8)
    }
}

/// Why an NLRI field is syntactically incorrect (RFC 7606 section 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NlriError {
    #[error("a prefix length exceeds the maximum for the address family")]
    PrefixTooLong,
    #[error("the last prefix overruns the field")]
    Overrun,
    #[error("NLRI of this address family are not decoded")]
    UnsupportedFamily,
}

/// Decodes a whole NLRI field (NLRI, Withdrawn Routes, or the NLRI inside
/// MP_REACH_NLRI / MP_UNREACH_NLRI) of an IP unicast family.
pub fn decode_nlri(input: &[u8], family: Family, add_path: bool) -> Result<Vec<Nlri>, NlriError> {
    // A /24 with no path id takes 4 octets: a good guess to avoid regrowth.
    let mut prefixes = Vec::with_capacity(input.len() / 4);
    match family.afi {
        Afi::IPV4 => decode_prefixes::<4>(input, add_path, &mut prefixes)?,
        Afi::IPV6 => decode_prefixes::<16>(input, add_path, &mut prefixes)?,
        _ => return Err(NlriError::UnsupportedFamily),
    }
    Ok(prefixes)
}

/// The loop behind [`decode_nlri`], for addresses of N octets. This is the
/// hottest code when a full table arrives, hence the monomorphised loop.
fn decode_prefixes<const N: usize>(
    mut input: &[u8],
    add_path: bool,
    prefixes: &mut Vec<Nlri>,
) -> Result<(), NlriError> {
    let max_len = N * 8;
    while !input.is_empty() {
        let path_id = if add_path {
            let (rest, path_id) = parse::ok(parse::u32(input)).ok_or(NlriError::Overrun)?;
            input = rest;
            Some(path_id)
        } else {
            None
        };
        let (rest, len) = parse::ok(parse::u8(input)).ok_or(NlriError::Overrun)?;
        // RFC 7606 5.3: "The NLRI field or Withdrawn Routes field SHALL be
        // considered "syntactically incorrect" if [...] The length of any of
        // the included NLRI is greater than the maximum length for the address
        // family [...] or [...] the field length is not consistent with the
        // sum of the NLRI lengths."
        if usize::from(len) > max_len {
            return Err(NlriError::PrefixTooLong);
        }
        let used = usize::from(len).div_ceil(8);
        let (rest, octets) = parse::ok(parse::take(rest, used)).ok_or(NlriError::Overrun)?;
        input = rest;
        // Left-align the octets in a zeroed address; `used <= N` by the check above.
        let mut buf = [0u8; N];
        for (slot, octet) in buf.iter_mut().zip(octets) {
            *slot = *octet;
        }
        let addr = match <[u8; 4]>::try_from(&buf[..]) {
            Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&buf[..]).unwrap_or_default())),
        };
        prefixes.push(Nlri { path_id, prefix: Prefix { addr, len } });
    }
    Ok(())
}

pub(crate) fn encode_nlri(nlri: &[Nlri], out: &mut BytesMut) {
    for entry in nlri {
        entry.encode(out);
    }
}

pub(crate) fn encoded_nlri_len(nlri: &[Nlri]) -> usize {
    nlri.iter().map(Nlri::encoded_len).sum()
}
