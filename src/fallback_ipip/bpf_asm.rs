//! An eBPF assembler for the few instruction forms the IP-in-IP transmit
//! program ([`super::lwt_xmit`]) uses: one function per form, opcodes
//! composed from the kernel's named fields (`include/uapi/linux/bpf.h`,
//! `bpf_common.h`), each instruction the kernel's 8-byte `struct bpf_insn`.

/// A register, r0 (return value) … r10 (read-only frame pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
/// The frame pointer: the stack is the 512 bytes below it.
pub const FP: Reg = Reg(10);

// Instruction classes.
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_JMP32: u8 = 0x06;
const CLASS_ALU64: u8 = 0x07;
// Memory access: mode and size.
const MODE_MEM: u8 = 0x60;
/// Operand source: the immediate (`K`) or the source register (`X`).
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
// ALU operations.
const ALU_ADD: u8 = 0x00;
const ALU_AND: u8 = 0x50;
const ALU_MOV: u8 = 0xb0;
const ALU_END: u8 = 0xd0;
/// With `ALU_END`: convert to big endian (the `X` bit reused).
const END_TO_BE: u8 = SRC_X;
// Jump operations.
const JMP_CALL: u8 = 0x80;
const JMP_EXIT: u8 = 0x90;

/// Operand width of a load or store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 32 bits.
    W = 0x00,
    /// 16 bits.
    H = 0x08,
    /// 8 bits.
    B = 0x10,
    /// 64 bits.
    Dw = 0x18,
}

/// A conditional jump's comparison (unsigned where it matters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ne = 0x50,
}

/// Offsets of the packet's start and end in `struct __sk_buff`, the context
/// every program here reads (include/uapi/linux/bpf.h).
pub const SKB_DATA: i16 = 76;
pub const SKB_DATA_END: i16 = 80;

/// One instruction, as the kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: Reg,
    pub src: Reg,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn { code, dst, src, off, imm }
    }

    /// `struct bpf_insn`: code, dst (low nibble) | src (high nibble), off, imm; little endian on x86.
    pub fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [self.code, (self.dst.0 & 0x0f) | (self.src.0 << 4), off[0], off[1], imm[0], imm[1], imm[2], imm[3]]
    }
}

/// `dst = src` (64 bits).
pub const fn mov64_reg(dst: Reg, src: Reg) -> Insn {
    Insn::new(CLASS_ALU64 | ALU_MOV | SRC_X, dst, src, 0, 0)
}

/// `dst = imm` (sign-extended to 64 bits).
pub const fn mov64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(CLASS_ALU64 | ALU_MOV | SRC_K, dst, Reg(0), 0, imm)
}

/// `dst += imm` (64 bits).
pub const fn add64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(CLASS_ALU64 | ALU_ADD | SRC_K, dst, Reg(0), 0, imm)
}

/// `dst &= imm` (64 bits, the immediate sign-extended).
pub const fn and64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(CLASS_ALU64 | ALU_AND | SRC_K, dst, Reg(0), 0, imm)
}

/// `r = <the map behind descriptor fd>`: two instruction slots, the first
/// marked `BPF_PSEUDO_MAP_FD` so the kernel swaps the descriptor for the map.
pub const fn ld_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
    const CLASS_LD_IMM_DW: u8 = 0x18;
    const PSEUDO_MAP_FD: Reg = Reg(1);
    [Insn::new(CLASS_LD_IMM_DW, dst, PSEUDO_MAP_FD, 0, fd), Insn::new(0, Reg(0), Reg(0), 0, 0)]
}

/// `dst = htobe16(dst)` (the upper bits cleared).
pub const fn be16(dst: Reg) -> Insn {
    Insn::new(CLASS_ALU | ALU_END | END_TO_BE, dst, Reg(0), 0, 16)
}

/// `dst = *(size *)(src + off)`.
pub const fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::new(CLASS_LDX | MODE_MEM | size as u8, dst, src, off, 0)
}

/// `*(size *)(dst + off) = imm`.
pub const fn st(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
    Insn::new(CLASS_ST | MODE_MEM | size as u8, dst, Reg(0), off, imm)
}

/// `*(size *)(dst + off) = src`.
pub const fn stx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::new(CLASS_STX | MODE_MEM | size as u8, dst, src, off, 0)
}

/// `if dst <cond> imm goto pc + 1 + off`.
pub const fn jmp_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
    Insn::new(CLASS_JMP | cond as u8 | SRC_K, dst, Reg(0), off, imm)
}

/// `if (u32)dst <cond> imm goto pc + 1 + off`: compares the low 32 bits,
/// so an address with its top bit set is not sign-extended.
pub const fn jmp32_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
    Insn::new(CLASS_JMP32 | cond as u8 | SRC_K, dst, Reg(0), off, imm)
}

/// `if dst <cond> src goto pc + 1 + off`.
pub const fn jmp_reg(cond: Cond, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::new(CLASS_JMP | cond as u8 | SRC_X, dst, src, off, 0)
}

/// `r0 = helper(r1, …, r5)`.
pub const fn call(helper: i32) -> Insn {
    Insn::new(CLASS_JMP | JMP_CALL, Reg(0), Reg(0), 0, helper)
}

/// `return r0`.
pub const fn exit() -> Insn {
    Insn::new(CLASS_JMP | JMP_EXIT, Reg(0), Reg(0), 0, 0)
}

/// The program's bytes, as `BPF_PROG_LOAD` takes them.
pub fn to_bytes(program: &[Insn]) -> Vec<u8> {
    program.iter().flat_map(|i| i.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each form against the bytes `llvm-objdump -d` prints for the same
    /// instruction compiled by clang (`-target bpf`).
    #[test]
    fn every_form_encodes_as_llvm_emits_it() {
        let cases: [(Insn, [u8; 8], &str); 12] = [
            (mov64_reg(R6, R1), [0xbf, 0x16, 0, 0, 0, 0, 0, 0], "r6 = r1"),
            (mov64_imm(R0, 0), [0xb7, 0x00, 0, 0, 0, 0, 0, 0], "r0 = 0"),
            (mov64_imm(R4, -1), [0xb7, 0x04, 0, 0, 0xff, 0xff, 0xff, 0xff], "r4 = -1"),
            (add64_imm(R3, -24), [0x07, 0x03, 0, 0, 0xe8, 0xff, 0xff, 0xff], "r3 += -24"),
            (be16(R2), [0xdc, 0x02, 0, 0, 0x10, 0, 0, 0], "r2 = be16 r2"),
            (ldx(Size::W, R2, R6, 176), [0x61, 0x62, 0xb0, 0x00, 0, 0, 0, 0], "r2 = *(u32 *)(r6 + 176)"),
            (ldx(Size::B, R4, R2, 9), [0x71, 0x24, 0x09, 0x00, 0, 0, 0, 0], "r4 = *(u8 *)(r2 + 9)"),
            (
                st(Size::W, FP, -8, 0x0a020002),
                [0x62, 0x0a, 0xf8, 0xff, 0x02, 0x00, 0x02, 0x0a],
                "*(u32 *)(r10 - 8) = ...",
            ),
            (stx(Size::H, FP, R2, -22), [0x6b, 0x2a, 0xea, 0xff, 0, 0, 0, 0], "*(u16 *)(r10 - 22) = r2"),
            (jmp_imm(Cond::Ne, R0, 0, 2), [0x55, 0x00, 0x02, 0x00, 0, 0, 0, 0], "if r0 != 0 goto +2"),
            (jmp_reg(Cond::Gt, R4, R3, 5), [0x2d, 0x34, 0x05, 0x00, 0, 0, 0, 0], "if r4 > r3 goto +5"),
            (call(73), [0x85, 0x00, 0, 0, 0x49, 0, 0, 0], "call 73"),
        ];
        for (insn, bytes, text) in cases {
            assert_eq!(insn.to_bytes(), bytes, "{text}");
        }
        assert_eq!(jmp_imm(Cond::Eq, R2, 0, 3).to_bytes(), [0x15, 0x02, 0x03, 0x00, 0, 0, 0, 0], "if r2 == 0 goto +3");
        assert_eq!(
            jmp_imm(Cond::Gt, R2, 65515, 12).to_bytes(),
            [0x25, 0x02, 0x0c, 0x00, 0xeb, 0xff, 0, 0],
            "if r2 > 65515 goto +12"
        );
        assert_eq!(ldx(Size::H, R1, R1, 2).to_bytes()[0], 0x69, "r1 = *(u16 *)(r1 + 2)");
        assert_eq!(ldx(Size::Dw, R1, R1, 0).to_bytes()[0], 0x79, "r1 = *(u64 *)(r1 + 0)");
        assert_eq!(exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0], "exit");
        assert_eq!(and64_imm(R4, 0xf0).to_bytes(), [0x57, 0x04, 0, 0, 0xf0, 0, 0, 0], "r4 &= 240");
        assert_eq!(
            jmp32_imm(Cond::Ne, R4, 7, 3).to_bytes(),
            [0x56, 0x04, 0x03, 0x00, 7, 0, 0, 0],
            "if w4 != 7 goto +3"
        );
        let [first, second] = ld_map_fd(R1, 5);
        assert_eq!(first.to_bytes(), [0x18, 0x11, 0, 0, 5, 0, 0, 0], "r1 = map[id:5] ll");
        assert_eq!(second.to_bytes(), [0; 8]);
        assert_eq!(to_bytes(&[mov64_imm(R0, 0), exit()]).len(), 16);
    }
}
