//! The little of an UPDATE the simulator checks, read in place: withdrawn
//! IPv4 prefixes, announced IPv4 prefixes and the NEXT_HOP they came with.
//! An UPDATE of another shape (MP_REACH_NLRI / MP_UNREACH_NLRI, anything
//! that does not add up) is left to tortie's full decoder.

use std::net::Ipv4Addr;

/// Path attribute type codes read here.
const NEXT_HOP: u8 = 3;
const MP_REACH_NLRI: u8 = 14;
const MP_UNREACH_NLRI: u8 = 15;
/// The Extended Length bit of an attribute's flags.
const EXTENDED_LENGTH: u8 = 0x10;

/// One IPv4 prefix: its address (host bits as sent) and length.
pub type V4Prefix = (u32, u8);

/// An UPDATE's body (after the 19-octet header) in the simple shape: the
/// withdrawn and announced prefixes, and the NEXT_HOP (if any). `None`: not
/// that shape, decode it fully.
pub fn scan(
    body: &[u8],
    add_path: bool,
    withdrawn: &mut Vec<V4Prefix>,
    announced: &mut Vec<V4Prefix>,
) -> Option<Option<Ipv4Addr>> {
    withdrawn.clear();
    announced.clear();
    let (withdrawn_field, rest) = field(body)?;
    prefixes(withdrawn_field, add_path, withdrawn)?;
    let (mut attributes, nlri) = field(rest)?;
    let mut next_hop = None;
    while !attributes.is_empty() {
        let (&flags, rest) = attributes.split_first()?;
        let (&code, rest) = rest.split_first()?;
        let (len, rest) = if flags & EXTENDED_LENGTH != 0 {
            let (len, rest) = rest.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([len[0], len[1]])), rest)
        } else {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        };
        let (value, rest) = rest.split_at_checked(len)?;
        match code {
            NEXT_HOP => next_hop = Some(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?)),
            MP_REACH_NLRI | MP_UNREACH_NLRI => return None,
            _ => {}
        }
        attributes = rest;
    }
    prefixes(nlri, add_path, announced)?;
    Some(next_hop)
}

/// A field behind its 2-octet length, and what follows it.
fn field(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = input.split_at_checked(2)?;
    rest.split_at_checked(usize::from(u16::from_be_bytes([len[0], len[1]])))
}

fn prefixes(mut input: &[u8], add_path: bool, out: &mut Vec<V4Prefix>) -> Option<()> {
    while !input.is_empty() {
        if add_path {
            input = input.get(4..)?;
        }
        let (&len, rest) = input.split_first()?;
        if len > 32 {
            return None;
        }
        let used = usize::from(len).div_ceil(8);
        let (octets, rest) = rest.split_at_checked(used)?;
        let mut addr = [0u8; 4];
        addr[..used].copy_from_slice(octets);
        out.push((u32::from_be_bytes(addr), len));
        input = rest;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie::bgp::packet::{
        AsPath, AttributeValue, EncodeContext, Message, Nlri, Origin, PathAttribute, Prefix, UpdateMessage,
    };

    fn prefix(s: &str, len: u8, id: Option<u32>) -> Nlri {
        Nlri { path_id: id, prefix: Prefix::new(s.parse().unwrap(), len).unwrap() }
    }

    fn body(update: UpdateMessage) -> Vec<u8> {
        Message::Update(update).to_bytes(&EncodeContext::default()).unwrap()[19..].to_vec()
    }

    #[test]
    fn the_simple_shape_reads_as_the_decoder_would() {
        for id in [None, Some(7)] {
            let update = UpdateMessage {
                withdrawn: vec![prefix("10.244.0.64", 26, id)],
                attributes: vec![
                    PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
                    PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(true, Vec::new()))),
                    PathAttribute::new(AttributeValue::NextHop("10.101.0.9".parse().unwrap())),
                    PathAttribute::new(AttributeValue::LocalPref(100)),
                    PathAttribute::new(AttributeValue::ClusterList(vec!["10.255.0.1".parse().unwrap(); 80])),
                ],
                nlri: vec![prefix("10.244.0.128", 26, id), prefix("0.0.0.0", 0, id), prefix("10.1.2.3", 32, id)],
                ..UpdateMessage::default()
            };
            let (mut w, mut a) = (Vec::new(), Vec::new());
            let hop = scan(&body(update), id.is_some(), &mut w, &mut a).expect("the simple shape");
            assert_eq!(hop, Some("10.101.0.9".parse().unwrap()));
            assert_eq!(w, vec![(0x0af4_0040, 26)]);
            assert_eq!(a, vec![(0x0af4_0080, 26), (0, 0), (0x0a01_0203, 32)]);
        }
    }

    #[test]
    fn other_shapes_and_truncations_go_to_the_decoder() {
        let update = UpdateMessage { nlri: vec![prefix("10.244.0.128", 26, None)], ..UpdateMessage::default() };
        let whole = body(update);
        let (mut w, mut a) = (Vec::new(), Vec::new());
        for cut in 0..whole.len() {
            // Never a panic; a cut inside a field is not the simple shape.
            let _ = scan(&whole[..cut], false, &mut w, &mut a);
        }
        assert!(scan(&[0, 0, 0, 3, 0x80, MP_UNREACH_NLRI, 0], false, &mut w, &mut a).is_none());
        assert!(scan(&[0, 0, 0, 0, 33, 1, 2, 3, 4], false, &mut w, &mut a).is_none(), "a /33");
    }
}
