//! The userspace IP-in-IP tunnel's receive side inside the kernel: a tc
//! program on the underlay device's ingress (tcx) takes an IP-in-IP packet
//! from a known node addressed to this node, strips the outer header
//! (`bpf_skb_adjust_room`, the inner packet's GSO size kept) and hands the
//! inner packet to the TUN device's ingress (`bpf_redirect`), where it
//! arrives as if the userspace decapsulator had written it: same device,
//! same reverse-path check, but a TCP super-packet stays one packet and
//! never crosses into userspace.
//!
//! The known nodes are a BPF hash map the agent keeps in step with the
//! tunnel's peers, so a node joining changes one map entry, not the
//! program. Whatever the program leaves alone — an unknown sender, outer
//! options or fragments, a non-IPv4 inner packet, a failed adjustment —
//! goes on to the stack and the raw socket as before, where the userspace
//! decapsulator handles or drops it (and counts why).

use super::bpf_asm::{
    Cond, FP, Insn, R0, R1, R2, R3, R4, R6, SKB_DATA, SKB_DATA_END, Size, add64_imm, and64_imm, call, exit, jmp_imm,
    jmp_reg, jmp32_imm, ld_map_fd, ldx, mov64_imm, mov64_reg, stx,
};
use super::bpf_load::{self, BPF_PROG_TYPE_SCHED_CLS, LoadError, load};
use super::packet::{IPPROTO_IPIP, OVERHEAD};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// The program's name (one per node: it is not per peer).
pub const PROGRAM_NAME: &str = "tortie_ipip_rx";
/// Room in the known-node map: a cluster's nodes.
pub const MAX_NODES: u32 = 65_536;

/// `BPF_FUNC_map_lookup_elem`, `BPF_FUNC_redirect`, `BPF_FUNC_skb_adjust_room`.
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_REDIRECT: i32 = 23;
const HELPER_SKB_ADJUST_ROOM: i32 = 50;
/// `bpf_skb_adjust_room` mode and flags: remove right after the MAC
/// header; keep the GSO size (the inner segments do not change); the
/// packet left is IPv4.
const ADJ_ROOM_MAC: i32 = 1;
const ADJ_ROOM_FIXED_GSO: i32 = 1;
const ADJ_ROOM_DECAP_L3_IPV4: i32 = 1 << 7;
const BPF_F_INGRESS: i32 = 1;
/// tcx verdict for a packet left alone: on to the next program attached
/// there (another agent's), or the stack when none (`TCX_NEXT`; `TCX_PASS`
/// would skip the programs after ours).
const TCX_NEXT: i32 = -1;
/// The Ethernet header, then the outer IPv4 header at its offsets.
const ETH_LEN: i16 = 14;
const ETH_TYPE: i16 = 12;
const OUTER: i16 = ETH_LEN;
const OUTER_FRAG: i16 = OUTER + 6;
const OUTER_PROTOCOL: i16 = OUTER + 9;
const OUTER_SOURCE: i16 = OUTER + 12;
const OUTER_DEST: i16 = OUTER + 16;
const INNER: i16 = OUTER + OVERHEAD as i16;
/// Bytes that must be in the linear part before any field is read: the
/// Ethernet header, the outer header, and the inner header's first word.
const NEEDED: i32 = INNER as i32 + 4;
/// Where the sender's address is put as the map key.
const KEY: i16 = -4;

/// A field's value as a load from memory holding `bytes` reads it.
fn imm16(bytes: [u8; 2]) -> i32 {
    i32::from(u16::from_ne_bytes(bytes))
}

/// The program for this node's `local` address, handing packets to device
/// `tunnel`, with the known senders in map `nodes`.
pub fn program(local: Ipv4Addr, tunnel: u32, nodes: i32) -> Vec<Insn> {
    // `pass(..)` marks a jump to the pass block (the last two
    // instructions); its offset is filled in once the program is laid out.
    let pass = |i: Insn| (i, true);
    let op = |i: Insn| (i, false);
    let mut p: Vec<(Insn, bool)> = vec![
        op(mov64_reg(R6, R1)),
        op(ldx(Size::W, R2, R6, SKB_DATA)),
        op(ldx(Size::W, R3, R6, SKB_DATA_END)),
        op(mov64_reg(R4, R2)),
        op(add64_imm(R4, NEEDED)),
        pass(jmp_reg(Cond::Gt, R4, R3, 0)),
        op(ldx(Size::H, R4, R2, ETH_TYPE)),
        pass(jmp_imm(Cond::Ne, R4, imm16(0x0800u16.to_be_bytes()), 0)),
        op(ldx(Size::B, R4, R2, OUTER)),
        pass(jmp_imm(Cond::Ne, R4, 0x45, 0)),
        op(ldx(Size::B, R4, R2, OUTER_PROTOCOL)),
        pass(jmp_imm(Cond::Ne, R4, i32::from(IPPROTO_IPIP), 0)),
        // More-fragments flag or an offset: reassembly is the stack's job.
        op(ldx(Size::H, R4, R2, OUTER_FRAG)),
        op(and64_imm(R4, imm16(0x3fffu16.to_be_bytes()))),
        pass(jmp_imm(Cond::Ne, R4, 0, 0)),
        op(ldx(Size::W, R4, R2, OUTER_DEST)),
        pass(jmp32_imm(Cond::Ne, R4, i32::from_ne_bytes(local.octets()), 0)),
        op(ldx(Size::B, R4, R2, INNER)),
        op(and64_imm(R4, 0xf0)),
        pass(jmp_imm(Cond::Ne, R4, 0x40, 0)),
        op(ldx(Size::W, R4, R2, OUTER_SOURCE)),
        op(stx(Size::W, FP, R4, KEY)),
    ];
    let [map0, map1] = ld_map_fd(R1, nodes);
    p.extend([
        (map0, false),
        (map1, false),
        (mov64_reg(R2, FP), false),
        (add64_imm(R2, i32::from(KEY)), false),
        (call(HELPER_MAP_LOOKUP_ELEM), false),
        pass(jmp_imm(Cond::Eq, R0, 0, 0)),
        (mov64_reg(R1, R6), false),
        (mov64_imm(R2, -(OVERHEAD as i32)), false),
        (mov64_imm(R3, ADJ_ROOM_MAC), false),
        (mov64_imm(R4, ADJ_ROOM_FIXED_GSO | ADJ_ROOM_DECAP_L3_IPV4), false),
        (call(HELPER_SKB_ADJUST_ROOM), false),
        pass(jmp_imm(Cond::Ne, R0, 0, 0)),
        (mov64_imm(R1, tunnel as i32), false),
        (mov64_imm(R2, BPF_F_INGRESS), false),
        // r0 = TC_ACT_REDIRECT, or TC_ACT_SHOT when the device is gone.
        (call(HELPER_REDIRECT), false),
        (exit(), false),
        (mov64_imm(R0, TCX_NEXT), false),
        (exit(), false),
    ]);
    let pass_at = p.len() - 2;
    p.into_iter()
        .enumerate()
        .map(|(i, (mut insn, jumps))| {
            if jumps {
                insn.off = (pass_at - i - 1) as i16;
            }
            insn
        })
        .collect()
}

/// The receive program attached to the underlay device, and the map of
/// nodes it takes packets from.
pub struct BpfReceive {
    nodes: OwnedFd,
    _program: OwnedFd,
    /// Detaches the program when dropped.
    _link: OwnedFd,
    known: Mutex<HashSet<Ipv4Addr>>,
}

/// Why the receive program is not in place.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("cannot create the known-node map: {0}")]
    Map(std::io::Error),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot attach to the underlay device's ingress (tcx): {0}")]
    Attach(std::io::Error),
}

impl BpfReceive {
    /// Loads the program for `local` and attaches it to `underlay`'s ingress.
    pub fn start(local: Ipv4Addr, underlay: u32, tunnel: u32) -> Result<BpfReceive, ReceiveError> {
        let nodes = bpf_load::hash_map_u32(MAX_NODES).map_err(ReceiveError::Map)?;
        let prog = load(BPF_PROG_TYPE_SCHED_CLS, PROGRAM_NAME, &program(local, tunnel, nodes.as_raw_fd()))?;
        let link = bpf_load::attach_tcx_ingress(&prog, underlay).map_err(ReceiveError::Attach)?;
        Ok(BpfReceive { nodes, _program: prog, _link: link, known: Mutex::new(HashSet::new()) })
    }

    /// Takes packets from exactly `nodes` from now on.
    pub fn set_nodes(&self, nodes: &HashSet<Ipv4Addr>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for gone in known.difference(nodes) {
            if let Err(e) = bpf_load::map_remove(&self.nodes, gone.octets()) {
                tracing::warn!(subsys = "ipip", node = %gone, error = %e, "cannot remove a node from the receive program's map");
            }
        }
        let mut now = HashSet::with_capacity(nodes.len());
        for node in nodes {
            match bpf_load::map_set(&self.nodes, node.octets(), 1) {
                Ok(()) => {
                    now.insert(*node);
                }
                // Its packets still arrive, through the raw socket.
                Err(e) => {
                    tracing::warn!(subsys = "ipip", %node, error = %e, "cannot add a node to the receive program's map")
                }
            }
        }
        *known = now;
    }
}

/// The in-kernel receive when `enabled` and the kernel takes it, else
/// `None` (every packet through the raw socket); logs the choice and why.
pub fn choose(enabled: bool, local: Ipv4Addr, underlay: u32, tunnel: u32) -> Option<BpfReceive> {
    let chosen = |receive: &str, reason: &dyn std::fmt::Display| tracing::info!(subsys = "ipip", receive, reason = %reason, "userspace IP-in-IP receive chosen");
    if !enabled {
        chosen("raw-socket", &"ipip.userspace_bpf is false");
        return None;
    }
    match BpfReceive::start(local, underlay, tunnel) {
        Ok(r) => {
            chosen("bpf", &"the kernel took the tc ingress program");
            Some(r)
        }
        Err(e) => {
            chosen("raw-socket", &e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_jumps_to_the_pass_block() {
        let p = program(Ipv4Addr::new(10, 1, 0, 2), 7, 3);
        let pass = p.len() - 2;
        assert_eq!(p[pass], mov64_imm(R0, TCX_NEXT));
        let mut jumps = 0;
        for (i, insn) in p.iter().enumerate() {
            // Conditional jumps, 64- and 32-bit, immediate or register.
            if insn.code & 0x07 == 0x05 || insn.code & 0x07 == 0x06 {
                if matches!(insn.code & 0xf0, 0x80 | 0x90) {
                    continue; // call, exit
                }
                jumps += 1;
                assert_eq!(i as i64 + 1 + i64::from(insn.off), pass as i64, "jump at {i}");
            }
        }
        assert_eq!(jumps, 9);
    }

    /// The verifier accepts it (needs CAP_BPF, as the tests run).
    #[test]
    fn the_kernel_accepts_the_program() {
        let nodes = bpf_load::hash_map_u32(16).expect("map");
        load(BPF_PROG_TYPE_SCHED_CLS, PROGRAM_NAME, &program(Ipv4Addr::new(10, 1, 0, 2), 1, nodes.as_raw_fd()))
            .expect("loads");
        bpf_load::map_set(&nodes, [10, 2, 0, 2], 1).expect("set");
        bpf_load::map_remove(&nodes, [10, 2, 0, 2]).expect("remove");
        bpf_load::map_remove(&nodes, [10, 2, 0, 2]).expect("removing an absent key is fine");
    }
}
