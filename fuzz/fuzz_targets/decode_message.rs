//! Decodes arbitrary octets as a stream of BGP messages: it must never panic,
//! and every message that decodes must re-encode to exactly its input octets
//! (the wire model is lossless).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tortie::bgp::packet::{AddPathFamilies, DecodeContext, DecodeError, EncodeContext, Message};

/// The first octet chooses the session context, so every branch is reachable.
pub fn context(selector: u8) -> DecodeContext {
    DecodeContext {
        four_octet_as: selector & 1 == 0,
        add_path: AddPathFamilies { ipv4_unicast: selector & 2 != 0, ipv6_unicast: selector & 4 != 0 },
        ibgp: selector & 8 != 0,
        extended_message: selector & 16 != 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let ctx = context(selector);
    while !rest.is_empty() {
        match Message::decode(rest, &ctx) {
            Ok((decoded, used)) => {
                let encoded = decoded.message.to_bytes(&EncodeContext::from(&ctx)).expect("re-encodes");
                assert_eq!(&encoded[..], &rest[..used], "decode → encode is lossless");
                rest = &rest[used..];
            }
            Err(DecodeError::SessionReset(reset)) => {
                let _ = reset.notification();
                match reset.length {
                    Some(length) if length <= rest.len() => rest = &rest[length..],
                    _ => break,
                }
            }
            Err(DecodeError::Incomplete { .. }) => break,
        }
    }
});
