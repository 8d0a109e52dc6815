//! What the simulated cluster should look like and how far it is from it:
//! the one copy of the expected state every session compares against.

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tortie::bgp::packet::{Nlri, Prefix};

/// Bits in one word of a block set.
const WORD_BITS: u32 = u64::BITS;

/// The simulated nodes: client `i` has address `first_address + i` and
/// announces the block `block_base + i * block size` as one prefix.
pub struct Cluster {
    pub clients: u32,
    pub first_address: Ipv4Addr,
    pub block_base: Ipv4Addr,
    pub block_len: u8,
    pub as_number: u32,
    /// Sessions in all: clients × reflectors.
    pub sessions: usize,
    /// Which clients announce their block now (one bit per client).
    announced: Vec<AtomicU64>,
    /// Sessions holding exactly the announced blocks of the other clients.
    complete: AtomicUsize,
    established: AtomicUsize,
    /// Blocks held, summed over every session (at convergence: sessions × (announced − 1)).
    held_blocks: AtomicU64,
    pub wrong_next_hops: AtomicU64,
    pub unexpected_prefixes: AtomicU64,
}

/// One session's view: the blocks it holds, one bit per client.
pub struct Held {
    have: Vec<u64>,
    complete: bool,
    /// The blocks in `have` when last counted into the cluster's `held_blocks`.
    counted: u64,
}

impl Cluster {
    pub fn new(
        clients: u32,
        first_address: Ipv4Addr,
        block_base: Ipv4Addr,
        block_len: u8,
        as_number: u32,
        reflectors: usize,
    ) -> Result<Self, String> {
        if clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if !(1..=32).contains(&block_len) {
            return Err(format!("--block-len {block_len}: must be 1 to 32"));
        }
        let span = u64::from(clients) << (32 - u32::from(block_len));
        if u64::from(u32::from(block_base)) + span > 1 << 32 {
            return Err(format!(
                "--block-base {block_base}: {clients} blocks of /{block_len} run past 255.255.255.255"
            ));
        }
        if u64::from(u32::from(first_address)) + u64::from(clients) > 1 << 32 {
            return Err(format!("--first-address {first_address}: {clients} addresses run past 255.255.255.255"));
        }
        let words = clients.div_ceil(WORD_BITS) as usize;
        let cluster = Cluster {
            clients,
            first_address,
            block_base,
            block_len,
            as_number,
            sessions: clients as usize * reflectors,
            announced: (0..words).map(|_| AtomicU64::new(0)).collect(),
            complete: AtomicUsize::new(0),
            established: AtomicUsize::new(0),
            held_blocks: AtomicU64::new(0),
            wrong_next_hops: AtomicU64::new(0),
            unexpected_prefixes: AtomicU64::new(0),
        };
        for client in 0..clients {
            cluster.set_announced(client, true);
        }
        Ok(cluster)
    }

    pub fn address(&self, client: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.first_address) + client)
    }

    fn block_size(&self) -> u32 {
        1 << (32 - u32::from(self.block_len))
    }

    pub fn block(&self, client: u32) -> Nlri {
        let addr = Ipv4Addr::from(u32::from(self.block_base) + client * self.block_size());
        Nlri::new(Prefix::new(addr.into(), self.block_len).expect("a block length checked in new"))
    }

    /// The client whose block `prefix` is, if it is one.
    pub fn client_of(&self, prefix: &Prefix) -> Option<u32> {
        let std::net::IpAddr::V4(addr) = prefix.addr() else { return None };
        self.client_of_v4(u32::from(addr), prefix.len())
    }

    /// The client whose block is `addr`/`len`, if it is one.
    pub fn client_of_v4(&self, addr: u32, len: u8) -> Option<u32> {
        let offset = addr.checked_sub(u32::from(self.block_base))?;
        let client = offset / self.block_size();
        (len == self.block_len && offset % self.block_size() == 0 && client < self.clients).then_some(client)
    }

    pub fn is_announced(&self, client: u32) -> bool {
        let (word, bit) = position(client);
        self.announced[word].load(Ordering::Acquire) & bit != 0
    }

    pub fn set_announced(&self, client: u32, on: bool) {
        let (word, bit) = position(client);
        if on {
            self.announced[word].fetch_or(bit, Ordering::AcqRel);
        } else {
            self.announced[word].fetch_and(!bit, Ordering::AcqRel);
        }
    }

    pub fn held(&self) -> Held {
        Held { have: vec![0; self.announced.len()], complete: false, counted: 0 }
    }

    /// Marks a session up or down.
    pub fn established(&self, up: bool) {
        if up {
            self.established.fetch_add(1, Ordering::AcqRel);
        } else {
            self.established.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Compares a session's blocks with what `me` should hold and reports
    /// the moments the whole cluster becomes, or stops being, converged.
    pub fn recheck(&self, me: u32, held: &mut Held) {
        let count = held.have.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        if count != held.counted {
            self.held_blocks.fetch_add(count, Ordering::AcqRel);
            self.held_blocks.fetch_sub(held.counted, Ordering::AcqRel);
            held.counted = count;
        }
        let (my_word, my_bit) = position(me);
        let now = held.have.iter().zip(&self.announced).enumerate().all(|(i, (have, announced))| {
            let mut want = announced.load(Ordering::Acquire);
            if i == my_word {
                want &= !my_bit;
            }
            *have == want
        });
        if now == held.complete {
            return;
        }
        held.complete = now;
        if now {
            if self.complete.fetch_add(1, Ordering::AcqRel) + 1 == self.sessions {
                self.event("converged");
            }
        } else if self.complete.fetch_sub(1, Ordering::AcqRel) == self.sessions {
            self.event("diverged");
        }
    }

    /// One line on standard output: `<event> <unix time> k=v ...`.
    pub fn event(&self, name: &str) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{name} {now:.6} complete={}/{} established={} held={} wrong_next_hops={} unexpected={}",
            self.complete.load(Ordering::Acquire),
            self.sessions,
            self.established.load(Ordering::Acquire),
            self.held_blocks.load(Ordering::Acquire),
            self.wrong_next_hops.load(Ordering::Acquire),
            self.unexpected_prefixes.load(Ordering::Acquire),
        );
        let _ = out.flush();
    }
}

impl Held {
    pub fn set(&mut self, client: u32, on: bool) {
        let (word, bit) = position(client);
        if on {
            self.have[word] |= bit;
        } else {
            self.have[word] &= !bit;
        }
    }

    /// A new session starts from nothing.
    pub fn clear(&mut self) {
        self.have.iter_mut().for_each(|w| *w = 0);
    }
}

fn position(client: u32) -> (usize, u64) {
    ((client / WORD_BITS) as usize, 1 << (client % WORD_BITS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_map_back_to_their_client_and_others_do_not() {
        let c = Cluster::new(100, "10.100.0.1".parse().unwrap(), "10.244.0.0".parse().unwrap(), 26, 64512, 2).unwrap();
        assert_eq!(c.block(3).prefix.to_string(), "10.244.0.192/26");
        assert_eq!(c.client_of(&c.block(99).prefix), Some(99));
        let other = |s: &str, len| Prefix::new(s.parse().unwrap(), len).unwrap();
        assert_eq!(c.client_of(&other("10.244.0.64", 27)), None);
        assert_eq!(c.client_of(&other("10.244.25.0", 26)), None, "block 100 is past the last client");
        assert_eq!(c.client_of(&other("10.243.255.192", 26)), None);
    }

    #[test]
    fn a_session_is_complete_with_every_other_announced_block() {
        let c = Cluster::new(70, "10.100.0.1".parse().unwrap(), "10.244.0.0".parse().unwrap(), 26, 64512, 1).unwrap();
        let mut held = c.held();
        (1..70).for_each(|i| held.set(i, true));
        c.recheck(0, &mut held);
        assert!(held.complete);
        assert_eq!(c.held_blocks.load(Ordering::Acquire), 69, "the blocks this session holds are counted");
        c.set_announced(65, false);
        c.recheck(0, &mut held);
        assert!(!held.complete, "still holds a withdrawn block");
        held.set(65, false);
        c.recheck(0, &mut held);
        assert!(held.complete);
        held.clear();
        c.recheck(0, &mut held);
        assert_eq!(c.held_blocks.load(Ordering::Acquire), 0, "a lost session holds nothing");
    }

    #[test]
    fn blocks_past_the_address_space_are_refused() {
        let e = Cluster::new(1000, "10.0.0.1".parse().unwrap(), "255.255.255.0".parse().unwrap(), 26, 1, 1);
        assert!(e.err().unwrap().contains("--block-base 255.255.255.0"));
    }
}
