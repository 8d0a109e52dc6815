//! The userspace IP-in-IP encapsulator's transmit side inside the kernel:
//! a BPF program on each remote block's route (`encap bpf xmit`) pushes
//! the outer IPv4 header with `bpf_lwt_push_encap(BPF_LWT_ENCAP_IP)` and
//! hands the packet back to routing (`BPF_LWT_REROUTE`). A TCP super-packet
//! stays one packet — the helper marks it `SKB_GSO_IPXIP4`, whose
//! segmentation is built into the IPv4 stack, not the ipip module — so the
//! tunnel moves 64 KiB per trip through the stack instead of 1480 bytes per
//! raw-socket send.
//!
//! The helper recognises an IPv4 outer header for GSO only with protocol
//! 0 or 41 (`handle_gso_encap` in net/core/lwt_bpf.c matches `IPPROTO_IP`
//! and `IPPROTO_IPV6`, not `IPPROTO_IPIP`) and refuses a TCP super-packet
//! under protocol 4 *after* pushing the header. So the header is pushed
//! with protocol 41, which gets the packet `SKB_GSO_IPXIP4`, and the byte
//! is then rewritten to 4 (`bpf_skb_store_bytes`, checksum fixed with
//! `bpf_l3_csum_replace`); segmentation reads the protocol only later.
//! Should either fix-up fail, the half-made packet is dropped.
//!
//! One program per remote node, the node's address baked in as an
//! immediate (no map to keep in step), named `tipip` + the node's address in
//! hex: the route carries that name, so a restarted agent recognises its
//! routes by it and a route toward a node that moved is replaced. What the
//! program leaves alone — a GSO packet that is not TCP (the helper
//! segments only TCP), or a failed push — continues to the route's device,
//! the TUN device, where the userspace encapsulator carries it.

use super::bpf_asm::{
    Cond, FP, Insn, R0, R1, R2, R3, R4, R5, R6, SKB_DATA, SKB_DATA_END, Size, add64_imm, be16, call, exit, jmp_imm,
    jmp_reg, ldx, mov64_imm, mov64_reg, st, stx,
};
use super::bpf_load::{BPF_PROG_TYPE_LWT_XMIT, LoadError, load};
use super::packet::{IPPROTO_IPIP, OVERHEAD};
use crate::dataplane::XmitProgram;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// What every program's name starts with (then the node address in hex).
pub const NAME_PREFIX: &str = "tipip";

// `struct __sk_buff` offsets (include/uapi/linux/bpf.h).
const SKB_LEN: i16 = 0;
const SKB_GSO_SIZE: i16 = 176;
/// `BPF_FUNC_lwt_push_encap`, `BPF_FUNC_skb_store_bytes`, `BPF_FUNC_l3_csum_replace`.
const HELPER_LWT_PUSH_ENCAP: i32 = 73;
const HELPER_SKB_STORE_BYTES: i32 = 9;
const HELPER_L3_CSUM_REPLACE: i32 = 10;
/// The protocol the header is pushed with, for the helper's GSO check.
const IPPROTO_IPV6: u8 = 41;
/// IPv4 header: the TTL/protocol word and the checksum.
const PROTOCOL_OFFSET: i32 = 9;
const CHECKSUM_OFFSET: i32 = 10;
/// `bpf_l3_csum_replace` flags: a 2-byte field.
const CSUM_FIELD_2: i32 = 2;
/// Where on the stack the protocol byte to store is put.
const PROTO_BYTE: i16 = HDR - 8;
/// `BPF_LWT_ENCAP_IP`: the header pushed is an IP header.
const BPF_LWT_ENCAP_IP: i32 = 2;
/// Program results: go on to the route's device; route the new packet again.
const BPF_OK: i32 = 0;
const BPF_DROP: i32 = 2;
const BPF_LWT_REROUTE: i32 = 128;
const IPPROTO_TCP: i32 = 6;
/// Outer header fields: version 4, 5 words; don't fragment; TTL.
const VERSION_IHL: u8 = 0x45;
const FLAG_DF: u8 = 0x40;
const TTL: u8 = 64;
/// Where on the stack the outer header is built (8-aligned, below the frame pointer).
const HDR: i16 = -(OVERHEAD as i16 + 4);

/// A 16-bit field's value as the helpers read it from memory holding `bytes`.
fn imm16(bytes: [u8; 2]) -> i32 {
    i32::from(u16::from_ne_bytes(bytes))
}

/// A 32-bit immediate whose store puts `bytes` in memory in this order.
fn imm(bytes: [u8; 4]) -> i32 {
    i32::from_ne_bytes(bytes)
}

/// The program encapsulating toward `node` from `source`.
pub fn program(source: Ipv4Addr, node: Ipv4Addr) -> Vec<Insn> {
    let ihl = OVERHEAD as i32;
    // A GSO packet is encapsulated only when it is TCP.
    let gso_check = [
        ldx(Size::W, R2, R6, SKB_DATA),
        ldx(Size::W, R3, R6, SKB_DATA_END),
        mov64_reg(R4, R2),
        add64_imm(R4, ihl),
        jmp_reg(Cond::Gt, R4, R3, PASS_FROM_GSO_CHECK),
        ldx(Size::B, R4, R2, 9),
        jmp_imm(Cond::Ne, R4, IPPROTO_TCP, PASS_FROM_PROTOCOL),
    ];
    let encap = [
        st(Size::W, FP, HDR, imm([VERSION_IHL, 0, 0, 0])),
        st(Size::W, FP, HDR + 4, imm([0, 0, FLAG_DF, 0])),
        st(Size::W, FP, HDR + 8, imm([TTL, IPPROTO_IPV6, 0, 0])),
        st(Size::W, FP, HDR + 12, imm(source.octets())),
        st(Size::W, FP, HDR + 16, imm(node.octets())),
        // Total length: the inner packet plus ours (the checksum is left 0:
        // the helper computes it). An inner packet too long for that to fit
        // 16 bits (one the underlay's GRO merged to 64 KiB) is left to the
        // TUN device, which segments it.
        ldx(Size::W, R2, R6, SKB_LEN),
        jmp_imm(Cond::Gt, R2, MAX_INNER, PASS_FROM_LENGTH),
        add64_imm(R2, ihl),
        be16(R2),
        stx(Size::H, FP, R2, HDR + 2),
        mov64_reg(R1, R6),
        mov64_imm(R2, BPF_LWT_ENCAP_IP),
        mov64_reg(R3, FP),
        add64_imm(R3, HDR as i32),
        mov64_imm(R4, ihl),
        call(HELPER_LWT_PUSH_ENCAP),
        jmp_imm(Cond::Ne, R0, 0, PASS_FROM_PUSH),
        // Protocol 41 → 4, and the checksum with it (the word TTL|protocol).
        mov64_reg(R1, R6),
        mov64_imm(R2, CHECKSUM_OFFSET),
        mov64_imm(R3, imm16([TTL, IPPROTO_IPV6])),
        mov64_imm(R4, imm16([TTL, IPPROTO_IPIP])),
        mov64_imm(R5, CSUM_FIELD_2),
        call(HELPER_L3_CSUM_REPLACE),
        jmp_imm(Cond::Ne, R0, 0, DROP_FROM_CSUM),
        st(Size::B, FP, PROTO_BYTE, i32::from(IPPROTO_IPIP)),
        mov64_reg(R1, R6),
        mov64_imm(R2, PROTOCOL_OFFSET),
        mov64_reg(R3, FP),
        add64_imm(R3, PROTO_BYTE as i32),
        mov64_imm(R4, 1),
        mov64_imm(R5, 0),
        call(HELPER_SKB_STORE_BYTES),
        jmp_imm(Cond::Ne, R0, 0, DROP_FROM_STORE),
        mov64_imm(R0, BPF_LWT_REROUTE),
        exit(),
        mov64_imm(R0, BPF_DROP),
        exit(),
    ];
    let pass = [mov64_imm(R0, BPF_OK), exit()];
    let mut p = vec![mov64_reg(R6, R1), ldx(Size::W, R2, R6, SKB_GSO_SIZE), jmp_imm(Cond::Eq, R2, 0, GSO_CHECK_LEN)];
    p.extend(gso_check);
    debug_assert_eq!(gso_check.len() as i16, GSO_CHECK_LEN);
    p.extend(encap);
    debug_assert_eq!(encap.len() as i16, ENCAP_LEN);
    p.extend(pass);
    p
}

/// Instruction counts the jumps skip, checked against the blocks above.
const GSO_CHECK_LEN: i16 = 7;
const ENCAP_LEN: i16 = 37;
/// Within the encap block: the push's check (17th), the fix-ups' checks
/// (24th, 33rd) and the drop (36th).
const PASS_FROM_PUSH: i16 = ENCAP_LEN - 17;
const DROP_AT: i16 = 35;
const DROP_FROM_CSUM: i16 = DROP_AT - 24;
const DROP_FROM_STORE: i16 = DROP_AT - 33;
/// From the length check (7th of the encap block) to the pass block.
const PASS_FROM_LENGTH: i16 = ENCAP_LEN - 7;
/// The longest inner packet whose outer length fits the 16-bit field.
const MAX_INNER: i32 = u16::MAX as i32 - OVERHEAD as i32;
/// From the bounds check (5th of the GSO block) and the protocol check
/// (7th) to the pass block after the encap block.
const PASS_FROM_GSO_CHECK: i16 = GSO_CHECK_LEN - 5 + ENCAP_LEN;
const PASS_FROM_PROTOCOL: i16 = ENCAP_LEN;

/// The name a route carries for the program toward `node`.
pub fn program_name(node: Ipv4Addr) -> String {
    format!("{NAME_PREFIX}{:08x}", u32::from(node))
}

/// Loaded transmit programs, one per remote node, from this node's address.
pub struct BpfTransmit {
    source: Ipv4Addr,
    programs: Mutex<HashMap<Ipv4Addr, XmitProgram>>,
}

impl BpfTransmit {
    /// Loads a first program (toward this node itself) to learn whether the
    /// kernel takes it: no BPF, no lightweight tunnels or no CAP_BPF refuse it.
    pub fn probe(source: Ipv4Addr) -> Result<BpfTransmit, LoadError> {
        let t = BpfTransmit { source, programs: Mutex::new(HashMap::new()) };
        t.program(source)?;
        Ok(t)
    }

    /// The program toward `node`, loaded on first use.
    pub fn program(&self, node: Ipv4Addr) -> Result<XmitProgram, LoadError> {
        let mut programs = self.programs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = programs.get(&node) {
            return Ok(p.clone());
        }
        let name = program_name(node);
        let fd = load(BPF_PROG_TYPE_LWT_XMIT, &name, &program(self.source, node))?;
        let p = XmitProgram { name, fd: Some(Arc::new(fd)) };
        programs.insert(node, p.clone());
        Ok(p)
    }

    /// Forgets the programs toward nodes not in `nodes` (the routes using
    /// them keep them alive until they go).
    pub fn retain(&self, nodes: &[Ipv4Addr]) {
        let mut programs = self.programs.lock().unwrap_or_else(|p| p.into_inner());
        programs.retain(|n, _| *n == self.source || nodes.contains(n));
    }
}

/// The in-kernel transmit when `enabled` (`ipip.userspace_bpf`)
/// and the kernel takes the program, else `None` (every packet through the
/// TUN device); logs the choice and why.
pub fn choose(enabled: bool, source: Ipv4Addr) -> Option<BpfTransmit> {
    let chosen = |transmit: &str, reason: &dyn std::fmt::Display| tracing::info!(subsys = "ipip", transmit, reason = %reason, "userspace IP-in-IP transmit chosen");
    if !enabled {
        chosen("tun", &"ipip.userspace_bpf is false");
        return None;
    }
    match BpfTransmit::probe(source) {
        Ok(t) => {
            chosen("bpf", &"the kernel took the lightweight-tunnel BPF program");
            Some(t)
        }
        Err(e) => {
            chosen("tun", &e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_a_bpf_object_name_and_say_the_node() {
        let name = program_name(Ipv4Addr::new(10, 2, 0, 2));
        assert_eq!(name, "tipip0a020002");
        assert!(name.len() < super::super::bpf_load::OBJ_NAME_LEN);
    }

    #[test]
    fn the_jumps_land_on_the_pass_block() {
        let p = program(Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 2, 0, 2));
        let pass = p.len() - 2;
        let drop = pass - 2;
        assert_eq!(p[pass], mov64_imm(R0, BPF_OK));
        assert_eq!(p[drop], mov64_imm(R0, BPF_DROP));
        let mut drops = 0;
        for (i, insn) in p.iter().enumerate() {
            if matches!(insn.code, 0x15 | 0x25 | 0x55 | 0x2d) && i != 2 {
                let to = i as i64 + 1 + i64::from(insn.off);
                // Only the fix-ups after a successful push drop.
                if to == drop as i64 {
                    drops += 1;
                    assert!(p[..i].contains(&call(HELPER_LWT_PUSH_ENCAP)), "jump at {i}");
                } else {
                    assert_eq!(to, pass as i64, "jump at {i}");
                }
            }
        }
        assert_eq!(drops, 2);
        assert_eq!(2 + 1 + i64::from(p[2].off), 3 + i64::from(GSO_CHECK_LEN), "no GSO: straight to encap");
    }

    /// The kernel's verifier accepts it (needs CAP_BPF, as the tests run).
    #[test]
    fn the_kernel_accepts_the_program() {
        let t = BpfTransmit::probe(Ipv4Addr::new(10, 1, 0, 2)).expect("loads");
        let p = t.program(Ipv4Addr::new(10, 2, 0, 2)).expect("loads");
        assert_eq!(p.name, "tipip0a020002");
        assert!(p.fd.is_some());
    }
}
