//! AS_PATH and AS4_PATH (RFC 4271 section 4.3, RFC 6793, RFC 5065).
//!
//! ```text
//! +-----------------+-----------------+---------------------------+
//! | segment type(1) | segment len(1)  | len x AS number (2 or 4)  | ...
//! +-----------------+-----------------+---------------------------+
//! ```

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::error::{EncodeError, fits};
use super::parse;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentType {
    AsSet,
    AsSequence,
    AsConfedSequence,
    AsConfedSet,
}

impl SegmentType {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(SegmentType::AsSet),
            2 => Some(SegmentType::AsSequence),
            3 => Some(SegmentType::AsConfedSequence),
            4 => Some(SegmentType::AsConfedSet),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            SegmentType::AsSet => 1,
            SegmentType::AsSequence => 2,
            SegmentType::AsConfedSequence => 3,
            SegmentType::AsConfedSet => 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AsSegment {
    #[serde(rename = "type")]
    pub segment_type: SegmentType,
    pub asns: Vec<u32>,
}

/// An AS path. `four_octet` records the AS number width it was (or will be)
/// encoded with, which the session's 4-octet AS negotiation decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AsPath {
    pub four_octet: bool,
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn sequence(four_octet: bool, asns: Vec<u32>) -> Self {
        let segments =
            if asns.is_empty() { Vec::new() } else { vec![AsSegment { segment_type: SegmentType::AsSequence, asns }] };
        AsPath { four_octet, segments }
    }

    /// The first AS of the first AS_SEQUENCE: the neighbour AS.
    pub fn first_asn(&self) -> Option<u32> {
        let first = self.segments.first()?;
        if first.segment_type != SegmentType::AsSequence {
            return None;
        }
        first.asns.first().copied()
    }

    /// RFC 4271 9.1.2.2: an AS_SET counts as 1, confederation segments as 0.
    pub fn path_length(&self) -> usize {
        self.segments
            .iter()
            .map(|segment| match segment.segment_type {
                SegmentType::AsSequence => segment.asns.len(),
                SegmentType::AsSet => 1,
                SegmentType::AsConfedSequence | SegmentType::AsConfedSet => 0,
            })
            .sum()
    }

    /// Decodes an AS path; `None` when it is malformed.
    pub(crate) fn decode(mut input: &[u8], four_octet: bool) -> Option<AsPath> {
        let width = if four_octet { 4 } else { 2 };
        let mut segments = Vec::with_capacity(1);
        while !input.is_empty() {
            // RFC 7606 7.2: "An AS_PATH is considered malformed if an
            // unrecognized segment type is encountered or if it contains a
            // malformed segment. A segment is considered malformed if any of
            // the following are true: o There is an overrun where the Path
            // Segment Length field of the last segment encountered would cause
            // the Attribute Length to be exceeded. o There is an underrun
            // where after processing the last segment, there are octets
            // remaining that are not enough to constitute a full segment
            // header. o It has a Path Segment Length field of zero."
            let (rest, type_code) = parse::ok(parse::u8(input))?;
            let segment_type = SegmentType::from_code(type_code)?;
            let (rest, count) = parse::ok(parse::u8(rest))?;
            if count == 0 {
                return None;
            }
            let (rest, octets) = parse::ok(parse::take(rest, usize::from(count) * width))?;
            let asns = if four_octet {
                octets
                    .chunks_exact(4)
                    .map(|chunk| u32::from_be_bytes(<[u8; 4]>::try_from(chunk).unwrap_or_default()))
                    .collect()
            } else {
                octets
                    .chunks_exact(2)
                    .map(|chunk| u32::from(u16::from_be_bytes(<[u8; 2]>::try_from(chunk).unwrap_or_default())))
                    .collect()
            };
            segments.push(AsSegment { segment_type, asns });
            input = rest;
        }
        Some(AsPath { four_octet, segments })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        for segment in &self.segments {
            fits("AS path segment", segment.asns.len(), 255)?;
            out.put_u8(segment.segment_type.code());
            out.put_u8(segment.asns.len() as u8);
            for &asn in &segment.asns {
                if self.four_octet {
                    out.put_u32(asn);
                } else {
                    // RFC 6793 section 4.2.2: an AS number that does not fit
                    // in 2 octets is replaced by AS_TRANS.
                    out.put_u16(u16::try_from(asn).unwrap_or(super::open::AS_TRANS));
                }
            }
        }
        Ok(())
    }
}
