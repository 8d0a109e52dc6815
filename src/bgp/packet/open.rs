//! OPEN message (RFC 4271 section 4.2) with optional parameters, including
//! the extended optional parameters length of RFC 9072.

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::capability::Capability;
use super::error::{EncodeError, OpenError, fits};
use super::parse;

/// Optional parameter type carrying capabilities (RFC 5492).
pub const PARAMETER_CAPABILITIES: u8 = 2;
/// RFC 9072: the Non-Ext OP Type value that announces the extended format.
const EXTENDED_FORMAT_MARKER: u8 = 255;
/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;

/// An OPEN message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Optional Parameters (variable)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///
/// RFC 9072 extended form of the parameter area:
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Non-Ext OP Len | Non-Ext OP Type (255) | Extended Opt. Parm. Length |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// and every parameter then has a 2-octet Parm. Length.
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenMessage {
    pub version: u8,
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_identifier: Ipv4Addr,
    /// The parameters use the RFC 9072 extended length encoding.
    #[serde(default)]
    pub extended_parameters: bool,
    pub parameters: Vec<OptionalParameter>,
}

/// An optional parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptionalParameter {
    /// Type 2: one or more capabilities (RFC 5492 allows several per parameter).
    Capabilities(Vec<Capability>),
    /// Any other type. Decoding rejects these (RFC 4271 6.2), but the model
    /// can carry them so that tests can build such an OPEN.
    Unknown {
        parameter_type: u8,
        #[serde(with = "super::hex_bytes")]
        data: Bytes,
    },
}

impl OpenMessage {
    /// An OPEN with one capabilities parameter. A `my_as` above 65535 goes in
    /// the 4-octet AS capability, with AS_TRANS in the 2-octet field.
    pub fn new(my_as: u32, hold_time: u16, bgp_identifier: Ipv4Addr, capabilities: Vec<Capability>) -> Self {
        OpenMessage {
            version: 4,
            my_as: u16::try_from(my_as).unwrap_or(AS_TRANS),
            hold_time,
            bgp_identifier,
            extended_parameters: false,
            parameters: vec![OptionalParameter::Capabilities(capabilities)],
        }
    }

    /// Every capability, across all capability parameters.
    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> {
        self.parameters.iter().flat_map(|parameter| match parameter {
            OptionalParameter::Capabilities(capabilities) => capabilities.as_slice(),
            OptionalParameter::Unknown { .. } => &[],
        })
    }

    /// The speaker's AS: the 4-octet AS capability if present, else My AS.
    pub fn asn(&self) -> u32 {
        self.capabilities()
            .find_map(|capability| match capability {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Self, OpenError> {
        let truncated = OpenError::Malformed { reason: "truncated" };
        let (rest, version) = parse::ok(parse::u8(body)).ok_or(truncated.clone())?;
        // RFC 4271 6.2: "If the version number in the Version field of the
        // received OPEN message is not supported, then the Error Subcode MUST
        // be set to Unsupported Version Number."
        if version != 4 {
            return Err(OpenError::UnsupportedVersionNumber { version });
        }
        let (rest, my_as) = parse::ok(parse::u16(rest)).ok_or(truncated.clone())?;
        let (rest, hold_time) = parse::ok(parse::u16(rest)).ok_or(truncated.clone())?;
        let (rest, bgp_identifier) = parse::ok(parse::ipv4(rest)).ok_or(truncated.clone())?;
        let (rest, parameters_len) = parse::ok(parse::u8(rest)).ok_or(truncated)?;
        // RFC 4271 6.2: "If the Hold Time field of the OPEN message is
        // unacceptable, then the Error Subcode MUST be set to Unacceptable
        // Hold Time. An implementation MUST reject Hold Time values of one or
        // two seconds."
        if hold_time == 1 || hold_time == 2 {
            return Err(OpenError::UnacceptableHoldTime { hold_time });
        }
        // RFC 6286 section 2.1: "the BGP Identifier [...] is a 4-octet,
        // unsigned, non-zero integer" -- zero is syntactically incorrect, and
        // RFC 4271 6.2: "If the BGP Identifier field of the OPEN message is
        // syntactically incorrect, then the Error Subcode MUST be set to Bad
        // BGP Identifier."
        if bgp_identifier.is_unspecified() {
            return Err(OpenError::BadBgpIdentifier { identifier: bgp_identifier });
        }
        let (extended_parameters, parameters) = decode_parameters(rest, parameters_len)?;
        let open = OpenMessage { version, my_as, hold_time, bgp_identifier, extended_parameters, parameters };
        // RFC 7607 section 2: "If a BGP speaker receives zero as the peer AS
        // in an OPEN message, it MUST abort the connection and send a
        // NOTIFICATION with Error Code "OPEN Message Error" and subcode "Bad
        // Peer AS"" -- in My Autonomous System or the 4-octet AS capability.
        let four_octet_zero = open.capabilities().any(|c| *c == Capability::FourOctetAs(0));
        if my_as == 0 || four_octet_zero {
            return Err(OpenError::BadPeerAs { asn: 0 });
        }
        Ok(open)
    }

    pub(crate) fn encode_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.version);
        out.put_u16(self.my_as);
        out.put_u16(self.hold_time);
        out.put_slice(&self.bgp_identifier.octets());
        let mut parameters = BytesMut::new();
        for parameter in &self.parameters {
            let mut value = BytesMut::new();
            let parameter_type = match parameter {
                OptionalParameter::Capabilities(capabilities) => {
                    for capability in capabilities {
                        capability.encode(&mut value)?;
                    }
                    PARAMETER_CAPABILITIES
                }
                OptionalParameter::Unknown { parameter_type, data } => {
                    value.put_slice(data);
                    *parameter_type
                }
            };
            parameters.put_u8(parameter_type);
            if self.extended_parameters {
                fits("optional parameter", value.len(), usize::from(u16::MAX))?;
                parameters.put_u16(value.len() as u16);
            } else {
                fits("optional parameter", value.len(), 255)?;
                parameters.put_u8(value.len() as u8);
            }
            parameters.put_slice(&value);
        }
        if self.extended_parameters {
            fits("optional parameters", parameters.len(), usize::from(u16::MAX))?;
            out.put_u8(255);
            out.put_u8(EXTENDED_FORMAT_MARKER);
            out.put_u16(parameters.len() as u16);
        } else {
            fits("optional parameters", parameters.len(), 255)?;
            out.put_u8(parameters.len() as u8);
        }
        out.put_slice(&parameters);
        Ok(())
    }
}

fn decode_parameters(rest: &[u8], parameters_len: u8) -> Result<(bool, Vec<OptionalParameter>), OpenError> {
    let malformed = |reason| OpenError::Malformed { reason };
    // RFC 9072 section 2: "If the value of the "Non-Ext OP Type" field is 255,
    // then the encoding described above is used for the Optional Parameters
    // length."
    let extended = parameters_len != 0 && rest.first() == Some(&EXTENDED_FORMAT_MARKER);
    // RFC 9072 section 2: "the Non-Ext OP Len field MUST be set to 255" with
    // the extended format. Any other value is refused rather than silently
    // re-encoded as 255, which would break decode → encode losslessness.
    if extended && parameters_len != 255 {
        return Err(malformed("extended parameters without Non-Ext OP Len 255"));
    }
    let (area, after) = if extended {
        let (rest, _marker) = parse::ok(parse::u8(rest)).ok_or(malformed("truncated"))?;
        let (rest, length) = parse::ok(parse::u16(rest)).ok_or(malformed("truncated"))?;
        let area = rest.get(..usize::from(length)).ok_or(malformed("parameters overrun"))?;
        (area, rest.get(usize::from(length)..).unwrap_or_default())
    } else {
        let length = usize::from(parameters_len);
        let area = rest.get(..length).ok_or(malformed("parameters overrun"))?;
        (area, rest.get(length..).unwrap_or_default())
    };
    if !after.is_empty() {
        return Err(malformed("octets after the optional parameters"));
    }
    let mut parameters = Vec::new();
    let mut input = area;
    while !input.is_empty() {
        let (rest, parameter_type) = parse::ok(parse::u8(input)).ok_or(malformed("truncated"))?;
        let (rest, length) = if extended {
            parse::ok(parse::u16(rest)).ok_or(malformed("truncated"))?
        } else {
            let (rest, length) = parse::ok(parse::u8(rest)).ok_or(malformed("truncated"))?;
            (rest, u16::from(length))
        };
        let (rest, value) =
            parse::ok(parse::take(rest, usize::from(length))).ok_or(malformed("parameter overruns the parameters"))?;
        input = rest;
        // RFC 4271 6.2: "If one of the Optional Parameters in the OPEN message
        // is not recognized, then the Error Subcode MUST be set to Unsupported
        // Optional Parameters."
        if parameter_type != PARAMETER_CAPABILITIES {
            return Err(OpenError::UnsupportedOptionalParameter { parameter_type });
        }
        parameters.push(OptionalParameter::Capabilities(decode_capabilities(value)?));
    }
    Ok((extended, parameters))
}

fn decode_capabilities(mut input: &[u8]) -> Result<Vec<Capability>, OpenError> {
    let malformed = OpenError::Malformed { reason: "capability overruns its parameter" };
    let mut capabilities = Vec::new();
    while !input.is_empty() {
        let (rest, code) = parse::ok(parse::u8(input)).ok_or(malformed.clone())?;
        let (rest, value) = parse::ok(parse::u8_length_data(rest)).ok_or(malformed.clone())?;
        capabilities.push(Capability::decode(code, value));
        input = rest;
    }
    Ok(capabilities)
}
