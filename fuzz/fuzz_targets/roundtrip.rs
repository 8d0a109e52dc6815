//! Encode → decode round trips: whatever decodes must, once encoded, decode
//! again to the same message and the same RFC 7606 outcome, and its JSON form
//! must encode back to the same octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tortie::bgp::packet::json::{decoded_to_json, json_to_wire};
use tortie::bgp::packet::{AddPathFamilies, DecodeContext, EncodeContext, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else { return };
    let ctx = DecodeContext {
        four_octet_as: selector & 1 == 0,
        add_path: AddPathFamilies { ipv4_unicast: selector & 2 != 0, ipv6_unicast: selector & 4 != 0 },
        ibgp: selector & 8 != 0,
        extended_message: selector & 16 != 0,
    };
    let Ok((first, _)) = Message::decode(message, &ctx) else { return };
    let encoded = first.message.to_bytes(&EncodeContext::from(&ctx)).expect("re-encodes");
    let (second, used) = Message::decode(&encoded, &ctx).expect("an encoded message decodes");
    assert_eq!(used, encoded.len());
    assert_eq!(second, first, "encode → decode gives the same message and outcome");
    let line = decoded_to_json(&first).to_string();
    let value = serde_json::from_str(&line).expect("valid JSON");
    let from_json = json_to_wire(&value).expect("JSON encodes");
    assert_eq!(from_json, encoded, "JSON → wire gives the same octets");
});
