//! ROUTE-REFRESH message (RFC 2918) with the RFC 7313 message subtypes.
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Subtype | SAFI |
//! +-------+-------+-------+-------+
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::error::{HeaderError, MessageError, RouteRefreshError};
use super::family::{Afi, Family, Safi};

/// RFC 7313 section 3.2 message subtypes.
pub mod subtype {
    /// A normal route refresh request (RFC 2918).
    pub const NORMAL: u8 = 0;
    /// Beginning of Route Refresh.
    pub const BORR: u8 = 1;
    /// End of Route Refresh.
    pub const EORR: u8 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRefreshMessage {
    pub family: Family,
    /// 0 = request, 1 = BoRR, 2 = EoRR; others are kept so that the session
    /// can ignore them as RFC 7313 says.
    pub subtype: u8,
}

impl RouteRefreshMessage {
    pub fn request(family: Family) -> Self {
        RouteRefreshMessage { family, subtype: subtype::NORMAL }
    }

    pub(crate) fn decode(body: &[u8], whole_message: &[u8]) -> Result<Self, MessageError> {
        match *body {
            [afi_high, afi_low, subtype, safi] => Ok(RouteRefreshMessage {
                family: Family::new(Afi(u16::from_be_bytes([afi_high, afi_low])), Safi(safi)),
                subtype,
            }),
            // RFC 7313 section 5: "If the length, excluding the fixed-size
            // message header, of the received ROUTE-REFRESH message with
            // Message Subtype 1 and 2 is not 4, then the BGP speaker MUST send
            // a NOTIFICATION message with the Error Code of "ROUTE-REFRESH
            // Message Error" and the subcode of "Invalid Message Length"."
            [_, _, subtype::BORR | subtype::EORR, ..] => {
                Err(RouteRefreshError::InvalidMessageLength { message: Bytes::copy_from_slice(whole_message) }.into())
            }
            // RFC 4271 6.1: a Length field that is wrong for the message
            // type is a Bad Message Length.
            _ => {
                Err(HeaderError::BadMessageLength { length: u16::try_from(whole_message.len()).unwrap_or(u16::MAX) }
                    .into())
            }
        }
    }

    pub(crate) fn encode_body(&self, out: &mut BytesMut) {
        out.put_u16(self.family.afi.0);
        out.put_u8(self.subtype);
        out.put_u8(self.family.safi.0);
    }
}
