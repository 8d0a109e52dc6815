//! UPDATE decoding throughput on a realistic stream (IPv4 and IPv6, many
//! prefixes, mixed attributes), for tortie and, on the same bytes, zettabgp.
//!
//!     cargo bench --bench bgp_decode
//!
//! Criterion prints time per stream, bytes/s (group `bytes`) and prefixes/s
//! (group `prefixes`); the ratio is zettabgp's time over tortie's.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tortie::bgp::packet::*;
use zettabgp::prelude::{BgpCapability, BgpMessage, BgpSessionParams, BgpTransportMode, BgpUpdateMessage};

/// A small deterministic generator, so every run decodes the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

fn v4_prefix(rng: &mut Lcg) -> Prefix {
    let len = [16, 20, 22, 23, 24, 24, 24, 24, 32][rng.below(9) as usize];
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    Prefix::new(IpAddr::V4(Ipv4Addr::from(rng.next() & mask)), len).unwrap()
}

fn v6_prefix(rng: &mut Lcg) -> Prefix {
    let len = [32, 40, 44, 48, 48, 48, 56, 64][rng.below(8) as usize];
    let bits = (u128::from(0x2001_0db8u32) << 96) | (u128::from(rng.next()) << 64) | u128::from(rng.next());
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    Prefix::new(IpAddr::V6(Ipv6Addr::from(bits & mask)), len).unwrap()
}

fn common_attributes(rng: &mut Lcg) -> Vec<PathAttribute> {
    let path: Vec<u32> = (0..1 + rng.below(6)).map(|_| 64512 + rng.below(1000)).collect();
    let mut attributes = vec![
        PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
        PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(true, path))),
    ];
    if rng.below(2) == 0 {
        attributes.push(PathAttribute::new(AttributeValue::MultiExitDisc(rng.below(1000))));
    }
    let communities: Vec<Community> = (0..rng.below(6)).map(|_| Community(rng.next())).collect();
    if !communities.is_empty() {
        attributes.push(PathAttribute::new(AttributeValue::Communities(communities)));
    }
    if rng.below(3) == 0 {
        attributes.push(PathAttribute::new(AttributeValue::ExtendedCommunities(vec![ExtendedCommunity([
            0, 2, 0xfd, 0xe8, 0, 0, 0, 100,
        ])])));
    }
    if rng.below(4) == 0 {
        attributes.push(PathAttribute::new(AttributeValue::LargeCommunities(vec![LargeCommunity {
            global_admin: 65000,
            local_data_1: rng.next(),
            local_data_2: rng.next(),
        }])));
    }
    attributes
}

/// About 3000 UPDATEs: two thirds IPv4 (NLRI field), one third IPv6
/// (MP_REACH_NLRI with a global + link-local next hop), some withdrawals.
fn realistic_stream() -> (Vec<u8>, u64) {
    let mut rng = Lcg(7);
    let mut out = bytes::BytesMut::new();
    let mut prefixes = 0u64;
    for _ in 0..3000 {
        let mut update = UpdateMessage { attributes: common_attributes(&mut rng), ..UpdateMessage::default() };
        match rng.below(6) {
            0..=3 => {
                update.attributes.insert(
                    2,
                    PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(192, 0, 2, rng.below(250) as u8 + 1))),
                );
                update.nlri = (0..1 + rng.below(40)).map(|_| Nlri::new(v4_prefix(&mut rng))).collect();
                if rng.below(5) == 0 {
                    update.withdrawn = (0..1 + rng.below(10)).map(|_| Nlri::new(v4_prefix(&mut rng))).collect();
                }
            }
            _ => {
                let nlri: Vec<Nlri> = (0..1 + rng.below(30)).map(|_| Nlri::new(v6_prefix(&mut rng))).collect();
                update.attributes.insert(
                    0,
                    PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri {
                        family: Family::IPV6_UNICAST,
                        next_hop: NextHop::Ipv6WithLinkLocal {
                            global: "2001:db8:ff::1".parse().unwrap(),
                            link_local: "fe80::1".parse().unwrap(),
                        },
                        reserved: 0,
                        nlri: MpNlri::Prefixes(nlri),
                    })),
                );
            }
        }
        prefixes += (update.nlri.len() + update.withdrawn.len()) as u64;
        prefixes += update.mp_reach().map_or(0, |reach| reach.nlri.prefixes().len()) as u64;
        Message::Update(update).encode(&mut out, &EncodeContext::default()).unwrap();
    }
    (out.to_vec(), prefixes)
}

/// tortie: decode every message, counting the prefixes it yields.
fn decode_tortie(stream: &[u8], ctx: &DecodeContext) -> u64 {
    let mut offset = 0;
    let mut prefixes = 0u64;
    while offset < stream.len() {
        let (decoded, used) = Message::decode(&stream[offset..], ctx).unwrap();
        if let Message::Update(update) = &decoded.message {
            prefixes += (update.announced().count() + update.withdrawn_routes().count()) as u64;
        }
        black_box(&decoded);
        offset += used;
    }
    prefixes
}

fn zettabgp_params() -> BgpSessionParams {
    let mut params = BgpSessionParams::new(
        65000,
        90,
        BgpTransportMode::IPv4,
        Ipv4Addr::new(192, 0, 2, 2),
        vec![BgpCapability::SafiIPv4u, BgpCapability::SafiIPv6u, BgpCapability::CapASN32(65000)],
    );
    params.check_caps();
    // The stream has no path identifiers: don't let zettabgp guess.
    params.fuzzy_pathid = false;
    params
}

/// zettabgp: the same framing loop, decoding each UPDATE body.
fn decode_zettabgp(stream: &[u8], params: &BgpSessionParams) -> u64 {
    let mut offset = 0;
    let mut messages = 0u64;
    while offset < stream.len() {
        let (_, body_len) = params.decode_message_head(&stream[offset..]).unwrap();
        let body = &stream[offset + 19..offset + 19 + body_len];
        let mut update = BgpUpdateMessage::new();
        update.decode_from(params, body).unwrap();
        black_box(&update);
        messages += 1;
        offset += 19 + body_len;
    }
    messages
}

fn bench(c: &mut Criterion) {
    let (stream, prefixes) = realistic_stream();
    let ctx = DecodeContext::default();
    let params = zettabgp_params();
    assert_eq!(decode_tortie(&stream, &ctx), prefixes, "tortie sees every prefix");
    assert_eq!(decode_zettabgp(&stream, &params), 3000, "zettabgp decodes every message");
    eprintln!("stream: {} octets, 3000 UPDATEs, {prefixes} prefixes", stream.len());

    let mut group = c.benchmark_group("bytes");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("tortie", |b| b.iter(|| decode_tortie(black_box(&stream), &ctx)));
    group.bench_function("zettabgp", |b| b.iter(|| decode_zettabgp(black_box(&stream), &params)));
    group.finish();

    let mut group = c.benchmark_group("prefixes");
    group.throughput(Throughput::Elements(prefixes));
    group.bench_function("tortie", |b| b.iter(|| decode_tortie(black_box(&stream), &ctx)));
    group.bench_function("zettabgp", |b| b.iter(|| decode_zettabgp(black_box(&stream), &params)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
