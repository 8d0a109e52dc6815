//! A link-layer (MAC) address as Calico writes it on a Node (`vxlanTunnelMACAddr`): six
//! colon-separated hex pairs, `aa:bb:cc:dd:ee:ff`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A MAC address, six octets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<MacAddress, String> {
        let wrong = || format!("{text:?} is not a MAC address (six hex pairs like aa:bb:cc:dd:ee:ff)");
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for octet in &mut octets {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(wrong)?;
            *octet = u8::from_str_radix(part, 16).map_err(|_| wrong())?;
        }
        if parts.next().is_some() {
            return Err(wrong());
        }
        Ok(MacAddress(octets))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MacAddress, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_colon_separated_hex_pairs() {
        let mac: MacAddress = "66:0A:bb:00:ee:ff".parse().unwrap();
        assert_eq!(mac.octets(), [0x66, 0x0a, 0xbb, 0x00, 0xee, 0xff]);
        assert_eq!(mac.to_string(), "66:0a:bb:00:ee:ff");
    }

    #[test]
    fn malformed_text_is_refused_quoting_it() {
        for bad in [
            "",
            "66:0a:bb:00:ee",
            "66:0a:bb:00:ee:ff:00",
            "66-0a-bb-00-ee-ff",
            "6:0a:bb:00:ee:ff0",
            "zz:0a:bb:00:ee:ff",
        ] {
            let err = bad.parse::<MacAddress>().unwrap_err();
            assert!(err.contains(&format!("{bad:?} is not a MAC address")), "{err}");
        }
    }
}
