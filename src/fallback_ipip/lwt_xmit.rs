//! The userspace IP-in-IP encapsulator's transmit side inside the kernel:
//! a BPF program on each remote block's route (`encap bpf xmit`) pushes
//! the outer IPv4 header with `bpf_lwt_push_encap(BPF_LWT_ENCAP_IP)` and
//! hands the packet back to routing (`BPF_LWT_REROUTE`). A TCP super-packet
//! stays one packet — the helper marks it `SKB_GSO_IPXIP4`, whose
//! segmentation is built into the IPv4 stack, not the ipip module — so the
//! tunnel moves 64 KiB per trip through the stack instead of 1480 bytes per
//! raw-socket send.
//!
//! One program per remote node, the node's address baked in as an
//! immediate (no map to keep in step), named `tipip` + the node's address in
//! hex: the route carries that name, so a restarted agent recognises its
//! routes by it and a route toward a node that moved is replaced. What the
//! program leaves alone — a GSO packet that is not TCP (the helper
//! segments only TCP), or a failed push — continues to the route's device,
//! the TUN device, where the userspace encapsulator carries it.

use super::bpf_asm::{
    Cond, FP, Insn, R0, R1, R2, R3, R4, R6, Size, add64_imm, be16, call, exit, jmp_imm, jmp_reg, ldx, mov64_imm,
    mov64_reg, st, stx,
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
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
const SKB_GSO_SIZE: i16 = 176;
/// `BPF_FUNC_lwt_push_encap`.
const HELPER_LWT_PUSH_ENCAP: i32 = 73;
/// `BPF_LWT_ENCAP_IP`: the header pushed is an IP header.
const BPF_LWT_ENCAP_IP: i32 = 2;
/// Program results: go on to the route's device; route the new packet again.
const BPF_OK: i32 = 0;
const BPF_LWT_REROUTE: i32 = 128;
const IPPROTO_TCP: i32 = 6;
/// Outer header fields: version 4, 5 words; don't fragment; TTL.
const VERSION_IHL: u8 = 0x45;
const FLAG_DF: u8 = 0x40;
const TTL: u8 = 64;
/// Where on the stack the outer header is built (8-aligned, below the frame pointer).
const HDR: i16 = -(OVERHEAD as i16 + 4);

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
        st(Size::W, FP, HDR + 8, imm([TTL, IPPROTO_IPIP, 0, 0])),
        st(Size::W, FP, HDR + 12, imm(source.octets())),
        st(Size::W, FP, HDR + 16, imm(node.octets())),
        // Total length: the inner packet plus ours (the checksum is left 0:
        // the helper computes it).
        ldx(Size::W, R2, R6, SKB_LEN),
        add64_imm(R2, ihl),
        be16(R2),
        stx(Size::H, FP, R2, HDR + 2),
        mov64_reg(R1, R6),
        mov64_imm(R2, BPF_LWT_ENCAP_IP),
        mov64_reg(R3, FP),
        add64_imm(R3, HDR as i32),
        mov64_imm(R4, ihl),
        call(HELPER_LWT_PUSH_ENCAP),
        jmp_imm(Cond::Ne, R0, 0, 2),
        mov64_imm(R0, BPF_LWT_REROUTE),
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
const ENCAP_LEN: i16 = 18;
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
        assert_eq!(p[pass], mov64_imm(R0, BPF_OK));
        for (i, insn) in p.iter().enumerate() {
            if matches!(insn.code, 0x15 | 0x55 | 0x2d) && i != 2 {
                assert_eq!(i as i64 + 1 + i64::from(insn.off), pass as i64, "jump at {i}");
            }
        }
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
