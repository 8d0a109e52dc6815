//! 4-octet AS numbers toward and from a peer that only speaks 2-octet ones
//! (RFC 6793 sections 4.2.2 and 4.2.3).

use crate::bgp::packet::open::AS_TRANS;
use crate::bgp::packet::{AsPath, AsSegment, AttributeValue, SegmentType};

/// The AS path attributes to send: the path as is to a 4-octet peer; to a
/// 2-octet peer an AS_PATH with AS_TRANS for every large number and, when
/// there was one, the real path in AS4_PATH.
pub fn outbound_as_path(path: &AsPath, peer_four_octet: bool) -> Vec<AttributeValue> {
    if peer_four_octet {
        return vec![AttributeValue::AsPath(AsPath { four_octet: true, segments: path.segments.clone() })];
    }
    // RFC 6793 4.2.2: "the NEW BGP speaker [...] MUST substitute AS_TRANS
    // for each 4-octet AS number that cannot be represented in 2 octets"
    // and "SHOULD NOT send the AS4_PATH attribute if it can be determined
    // that the AS_PATH contains only 2-octet ASes".
    let narrow = AsPath {
        four_octet: false,
        segments: path
            .segments
            .iter()
            .map(|segment| AsSegment {
                segment_type: segment.segment_type,
                asns: segment.asns.iter().map(|&asn| if asn > 0xffff { u32::from(AS_TRANS) } else { asn }).collect(),
            })
            .collect(),
    };
    let needs_as4 = path.segments.iter().flat_map(|s| &s.asns).any(|&asn| asn > 0xffff);
    let mut out = vec![AttributeValue::AsPath(narrow)];
    if needs_as4 {
        // "the confederation segments [...] MUST NOT be included in AS4_PATH".
        let segments = path
            .segments
            .iter()
            .filter(|s| matches!(s.segment_type, SegmentType::AsSequence | SegmentType::AsSet))
            .cloned()
            .collect();
        out.push(AttributeValue::As4Path(AsPath { four_octet: true, segments }));
    }
    out
}

/// The real path of a route from a 2-octet peer, from its AS_PATH and AS4_PATH.
///
/// RFC 6793 4.2.3: "if the number of AS numbers in the AS_PATH attribute is
/// less than the number of AS numbers in the AS4_PATH attribute, then the
/// AS4_PATH attribute SHALL be ignored, and the AS_PATH attribute SHALL be
/// taken as the AS path information. [...] Otherwise, [...] take as many AS
/// numbers and path segments as necessary from the leading part of the
/// AS_PATH attribute, and then prepend them to the AS4_PATH attribute".
pub fn merge_as4_path(as_path: &AsPath, as4_path: Option<&AsPath>) -> AsPath {
    let Some(as4_path) = as4_path else { return AsPath { four_octet: true, ..as_path.clone() } };
    let (have, take) = (as_path.path_length(), as4_path.path_length());
    if have < take {
        return AsPath { four_octet: true, ..as_path.clone() };
    }
    let mut lead = have - take;
    let mut segments = Vec::new();
    for segment in &as_path.segments {
        if lead == 0 {
            break;
        }
        match segment.segment_type {
            SegmentType::AsSequence => {
                let n = segment.asns.len().min(lead);
                segments.push(AsSegment { segment_type: SegmentType::AsSequence, asns: segment.asns[..n].to_vec() });
                lead -= n;
            }
            SegmentType::AsSet => {
                segments.push(segment.clone());
                lead -= 1;
            }
            SegmentType::AsConfedSequence | SegmentType::AsConfedSet => segments.push(segment.clone()),
        }
    }
    segments.extend(as4_path.segments.iter().cloned());
    AsPath { four_octet: true, segments }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_octet_peer_gets_as_trans_and_the_real_path_in_as4_path() {
        let path = AsPath::sequence(true, vec![4_200_000_001, 65010]);
        let out = outbound_as_path(&path, false);
        assert_eq!(out[0], AttributeValue::AsPath(AsPath::sequence(false, vec![23456, 65010])));
        assert_eq!(out[1], AttributeValue::As4Path(path));
    }

    #[test]
    fn a_two_octet_only_path_needs_no_as4_path() {
        let out = outbound_as_path(&AsPath::sequence(true, vec![65001, 65010]), false);
        assert_eq!(out, vec![AttributeValue::AsPath(AsPath::sequence(false, vec![65001, 65010]))]);
    }

    #[test]
    fn the_real_path_is_rebuilt_from_as_path_and_as4_path() {
        // A 2-octet speaker (65002) prepended itself in front of AS_TRANS.
        let as_path = AsPath::sequence(false, vec![65002, 23456, 65010]);
        let as4 = AsPath::sequence(true, vec![4_200_000_001, 65010]);
        let merged = merge_as4_path(&as_path, Some(&as4));
        assert_eq!(
            merged.segments.iter().flat_map(|s| s.asns.clone()).collect::<Vec<_>>(),
            vec![65002, 4_200_000_001, 65010]
        );
        // An AS4_PATH longer than the AS_PATH is ignored.
        let short = AsPath::sequence(false, vec![65002]);
        assert_eq!(merge_as4_path(&short, Some(&as4)).segments, short.segments);
    }
}
