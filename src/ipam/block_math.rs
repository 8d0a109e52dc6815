//! Address arithmetic for pools and blocks, the same for IPv4 and IPv6 (as u128).

use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn bits(net: &IpNetwork) -> u32 {
    if net.is_ipv4() { 32 } else { 128 }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v4: bool, value: u128) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from(value as u32)) } else { IpAddr::V6(Ipv6Addr::from(value)) }
}

/// The IP family as Calico numbers it (4 or 6).
pub fn family(net: &IpNetwork) -> u8 {
    if net.is_ipv4() { 4 } else { 6 }
}

/// Addresses in `net` (saturating for a whole IPv6 space, which no pool is).
pub fn size(net: &IpNetwork) -> u128 {
    let host_bits = bits(net) - u32::from(net.prefix());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// Whether two networks share any address (one contains the other's first address).
pub fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

/// How many blocks of `block_size` fit in `pool`.
pub fn block_count(pool: &IpNetwork, block_size: u8) -> u128 {
    let diff = u32::from(block_size.saturating_sub(pool.prefix()));
    1u128.checked_shl(diff).unwrap_or(u128::MAX)
}

/// The `n`th block of `block_size` in `pool`.
pub fn nth_block(pool: &IpNetwork, block_size: u8, n: u128) -> IpNetwork {
    let step = size(&IpNetwork::new(pool.network(), block_size).unwrap_or(*pool));
    let base = to_u128(pool.network()) + n * step;
    IpNetwork::new(from_u128(pool.is_ipv4(), base), block_size).unwrap_or(*pool)
}

/// The block of `block_size` holding `ip`.
pub fn block_of(ip: IpAddr, block_size: u8) -> Option<IpNetwork> {
    let net = IpNetwork::new(ip, block_size).ok()?;
    IpNetwork::new(net.network(), block_size).ok()
}

/// The ordinal of `ip` inside `block`, if it is inside.
pub fn ordinal_of(block: &IpNetwork, ip: IpAddr) -> Option<usize> {
    block.contains(ip).then(|| (to_u128(ip) - to_u128(block.network())) as usize)
}

/// The address at `ordinal` in `block`.
pub fn ip_at(block: &IpNetwork, ordinal: usize) -> IpAddr {
    from_u128(block.is_ipv4(), to_u128(block.network()) + ordinal as u128)
}

/// Where a node starts walking a pool for a free block: an FNV-1a hash of its name, as Calico's
/// `randomBlockGenerator` seeds its start, so nodes spread out instead of racing for block 0.
pub fn start_index(node: &str, count: u128) -> u128 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    if count == 0 { 0 } else { u128::from(hash) % count }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks_and_ordinals() {
        let pool = net("10.1.0.0/16");
        assert_eq!(block_count(&pool, 26), 1024);
        assert_eq!(nth_block(&pool, 26, 1), net("10.1.0.64/26"));
        assert_eq!(nth_block(&pool, 26, 1023), net("10.1.255.192/26"));
        let block = net("10.1.0.64/26");
        assert_eq!(ordinal_of(&block, "10.1.0.70".parse().unwrap()), Some(6));
        assert_eq!(ordinal_of(&block, "10.1.0.63".parse().unwrap()), None);
        assert_eq!(ip_at(&block, 63), "10.1.0.127".parse::<IpAddr>().unwrap());
        assert_eq!(block_of("10.1.0.70".parse().unwrap(), 26), Some(block));
    }

    #[test]
    fn ipv6_blocks_and_ordinals() {
        let pool = net("fd00:10::/112");
        assert_eq!(block_count(&pool, 122), 1024);
        assert_eq!(nth_block(&pool, 122, 2), net("fd00:10::80/122"));
        let block = net("fd00:10::80/122");
        assert_eq!(ip_at(&block, 5), "fd00:10::85".parse::<IpAddr>().unwrap());
        assert_eq!(ordinal_of(&block, "fd00:10::85".parse().unwrap()), Some(5));
        assert_eq!(size(&block), 64);
    }

    #[test]
    fn overlap_is_symmetric_and_per_family() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.5.0.0/16")));
        assert!(overlaps(&net("10.5.0.0/16"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("10.0.0.0/16"), &net("10.1.0.0/16")));
        assert!(!overlaps(&net("10.0.0.0/8"), &net("::/0")));
    }

    #[test]
    fn start_index_is_stable_and_in_range() {
        assert_eq!(start_index("node-a", 16), start_index("node-a", 16));
        assert!(start_index("node-b", 16) < 16);
        assert_eq!(start_index("x", 0), 0);
    }
}
