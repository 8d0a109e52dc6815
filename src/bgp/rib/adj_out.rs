//! Where a peer's ADD-PATH Adj-RIB-Out is kept, by number: the RIB numbers
//! each prefix some peer was sent ([`PrefixIndex`], one entry a prefix however
//! many peers hold it), and a peer keeps the id of the list it was sent for a
//! prefix at the prefix's number ([`PeerSent`], in pages of [`PAGE`] ids).
//!
//! A reflector with a thousand clients holds a million (peer, prefix) pairs:
//! here 4 octets each, where a hashed prefix map per peer took 12 in its slot
//! and about 21 with the room it keeps free.

use ipnetwork::IpNetwork;

use crate::prefix_map::PrefixMap;

/// Ids a page holds (a power of two): a peer sent a few prefixes scattered
/// over a large table pays a page for each, 4 octets an id.
pub const PAGE: usize = 256;

/// The number of the users of a prefix's number, above its 32 bits in the map's value.
const USERS_SHIFT: u32 = 32;
const ONE_USER: u64 = 1 << USERS_SHIFT;

/// The numbers of the prefixes held in some peer's Adj-RIB-Out, each with
/// how many peers hold it; a number goes back to be given out again with
/// its last user.
#[derive(Debug, Default)]
pub struct PrefixIndex {
    /// prefix → its number (low 32 bits) and users (the bits above).
    numbers: PrefixMap,
    /// number → prefix (a free number's entry is stale).
    nets: Vec<IpNetwork>,
    free: Vec<u32>,
}

impl PrefixIndex {
    /// The number of `net`, if some peer holds it.
    pub fn find(&self, net: &IpNetwork) -> Option<u32> {
        self.numbers.get(net).map(|v| v as u32)
    }

    /// The prefix numbered `number`.
    pub fn net(&self, number: u32) -> IpNetwork {
        self.nets[number as usize]
    }

    /// The number of `net` for one more user.
    fn hold(&mut self, net: IpNetwork) -> u32 {
        if let Some(value) = self.numbers.get(&net) {
            debug_assert!(
                value + ONE_USER <= crate::prefix_map::VALUE_MAX,
                "more users of {net} than the map's value holds"
            );
            self.numbers.insert(net, value + ONE_USER);
            return value as u32;
        }
        let number = match self.free.pop() {
            Some(number) => {
                self.nets[number as usize] = net;
                number
            }
            None => {
                self.nets.push(net);
                u32::try_from(self.nets.len() - 1).expect("fewer than 2^32 prefixes")
            }
        };
        self.numbers.insert(net, ONE_USER | u64::from(number));
        number
    }

    /// One user less of `number`.
    fn let_go(&mut self, number: u32) {
        let net = self.net(number);
        match self.numbers.get(&net) {
            Some(value) if value >> USERS_SHIFT > 1 => {
                self.numbers.insert(net, value - ONE_USER);
            }
            Some(_) => {
                self.numbers.remove(&net);
                self.free.push(number);
                self.numbers.maybe_shrink();
            }
            None => debug_assert!(false, "{net} let go more often than held"),
        }
    }

    /// Prefixes numbered.
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }
}

/// One page of a peer's ids: `ids[i]` is 1 + the list id sent for the
/// prefix numbered `page × PAGE + i`, 0 when none.
#[derive(Debug)]
struct Page {
    ids: [u32; PAGE],
    used: u32,
}

/// A peer's ADD-PATH Adj-RIB-Out: a list id per prefix number.
#[derive(Debug, Default)]
pub struct PeerSent {
    pages: Vec<Option<Box<Page>>>,
    len: usize,
}

fn place(number: u32) -> (usize, usize) {
    (number as usize / PAGE, number as usize % PAGE)
}

impl PeerSent {
    /// Prefixes held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The list id held for `net`.
    pub fn get(&self, index: &PrefixIndex, net: &IpNetwork) -> Option<u32> {
        self.get_number(index.find(net)?)
    }

    fn get_number(&self, number: u32) -> Option<u32> {
        let (page, at) = place(number);
        let id = self.pages.get(page)?.as_ref()?.ids[at];
        id.checked_sub(1)
    }

    /// Holds `id` for `net`; the id it held before.
    pub fn insert(&mut self, index: &mut PrefixIndex, net: IpNetwork, id: u32) -> Option<u32> {
        if let Some(number) = index.find(&net)
            && let Some(old) = self.get_number(number)
        {
            self.set(number, Some(id));
            return Some(old);
        }
        let number = index.hold(net);
        self.set(number, Some(id));
        None
    }

    /// Forgets `net`; the id it held.
    pub fn remove(&mut self, index: &mut PrefixIndex, net: &IpNetwork) -> Option<u32> {
        let number = index.find(net)?;
        let old = self.get_number(number)?;
        self.set(number, None);
        index.let_go(number);
        Some(old)
    }

    /// Every (prefix number, list id) held.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.pages.iter().enumerate().flat_map(|(p, page)| {
            page.iter().flat_map(move |page| {
                page.ids
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| **id != 0)
                    .map(move |(at, id)| ((p * PAGE + at) as u32, id - 1))
            })
        })
    }

    /// Replaces the id held for the prefix numbered `number` (which it holds).
    pub fn replace(&mut self, number: u32, id: u32) {
        debug_assert!(self.get_number(number).is_some(), "replacing an id not held");
        self.set(number, Some(id));
    }

    /// Forgets everything, giving back its prefix numbers.
    pub fn clear(&mut self, index: &mut PrefixIndex) {
        for (number, _) in self.iter() {
            index.let_go(number);
        }
        *self = PeerSent::default();
    }

    fn set(&mut self, number: u32, id: Option<u32>) {
        let (page, at) = place(number);
        if self.pages.len() <= page {
            if id.is_none() {
                return;
            }
            self.pages.resize_with(page + 1, || None);
        }
        let slot = &mut self.pages[page];
        let page_ref = match slot {
            Some(p) => p,
            None if id.is_none() => return,
            None => slot.insert(Box::new(Page { ids: [0; PAGE], used: 0 })),
        };
        let was = page_ref.ids[at] != 0;
        page_ref.ids[at] = id.map_or(0, |id| id + 1);
        match (was, id.is_some()) {
            (false, true) => {
                page_ref.used += 1;
                self.len += 1;
            }
            (true, false) => {
                page_ref.used -= 1;
                self.len -= 1;
                if page_ref.used == 0 {
                    *slot = None;
                    while self.pages.last().is_some_and(Option::is_none) {
                        self.pages.pop();
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn net(i: u16) -> IpNetwork {
        if i < 1000 {
            format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()
        } else {
            format!("2001:db8:{i:x}::/48").parse().unwrap()
        }
    }

    proptest! {
        /// Peers' tables against one plain map each; the prefix numbers are
        /// held exactly while some peer holds the prefix.
        #[test]
        fn peers_hold_what_a_map_would_and_numbers_go_with_their_last_user(
            ops in prop::collection::vec((0usize..3, 0u16..1200, prop::option::of(0u32..5)), 1..400),
        ) {
            let mut index = PrefixIndex::default();
            let mut peers: Vec<PeerSent> = (0..3).map(|_| PeerSent::default()).collect();
            let mut model: Vec<HashMap<IpNetwork, u32>> = vec![HashMap::new(); 3];
            for (peer, n, id) in ops {
                let n = net(n);
                match id {
                    Some(id) => prop_assert_eq!(peers[peer].insert(&mut index, n, id), model[peer].insert(n, id)),
                    None => prop_assert_eq!(peers[peer].remove(&mut index, &n), model[peer].remove(&n)),
                }
                for (p, m) in peers.iter().zip(&model) {
                    prop_assert_eq!(p.len(), m.len());
                    let mut got: Vec<(IpNetwork, u32)> = p.iter().map(|(num, id)| (index.net(num), id)).collect();
                    let mut want: Vec<(IpNetwork, u32)> = m.iter().map(|(n, id)| (*n, *id)).collect();
                    got.sort();
                    want.sort();
                    prop_assert_eq!(got, want);
                }
                let held: std::collections::HashSet<IpNetwork> = model.iter().flat_map(|m| m.keys().copied()).collect();
                prop_assert_eq!(index.len(), held.len());
                for n in &held {
                    prop_assert!(index.find(n).is_some());
                }
            }
            for p in &mut peers {
                p.clear(&mut index);
                prop_assert!(p.is_empty() && p.pages.is_empty());
            }
            prop_assert!(index.is_empty());
        }
    }
}
