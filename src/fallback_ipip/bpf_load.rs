//! Loads an eBPF program with the `bpf(2)` system call (`BPF_PROG_LOAD`).
//!
//! Hand-written rather than a crate: the registry's BPF loaders (aya,
//! libbpf-rs) load ELF objects that a BPF compiler produced — there is no
//! clang here — and the one program tortie loads is a dozen instructions
//! assembled in code ([`super::bpf_asm`]); one system call is all it needs.
#![allow(unsafe_code)]

use super::bpf_asm::{Insn, to_bytes};
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `BPF_PROG_LOAD`, the `bpf(2)` command.
const BPF_PROG_LOAD: libc::c_int = 5;
/// `BPF_PROG_TYPE_LWT_XMIT`: runs on a route's transmit (`encap bpf xmit`).
pub const BPF_PROG_TYPE_LWT_XMIT: u32 = 12;
/// Verifier log detail when a load is refused: the instruction trace.
const LOG_LEVEL_VERBOSE: u32 = 1;
/// Room for the verifier's log of a small program.
const LOG_SIZE: usize = 64 * 1024;
/// `BPF_OBJ_NAME_LEN`: names are at most this minus the terminating NUL.
pub const OBJ_NAME_LEN: usize = 16;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to the fields we set;
/// the kernel takes a shorter attribute and zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; OBJ_NAME_LEN],
}

/// Why a program was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("BPF program name {0:?} is longer than 15 bytes or not [A-Za-z0-9_.]")]
    BadName(String),
    #[error("the kernel refused BPF program {name}: {errno}; verifier: {log}")]
    Refused { name: String, errno: io::Error, log: String },
}

/// Loads `program` of `prog_type` under `name` (license GPL: the
/// lightweight-tunnel helpers are GPL-only) and returns its descriptor;
/// the program lives while a descriptor or a route holds it.
pub fn load(prog_type: u32, name: &str, program: &[Insn]) -> Result<OwnedFd, LoadError> {
    if name.len() >= OBJ_NAME_LEN || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
        return Err(LoadError::BadName(name.to_string()));
    }
    // First without a log (cheaper); on refusal again with one, to say why.
    match prog_load(prog_type, name, program, None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; LOG_SIZE];
            let errno = match prog_load(prog_type, name, program, Some(&mut log)) {
                Ok(fd) => return Ok(fd),
                Err(e) => e,
            };
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            let log = if text.is_empty() { format!("(no log; first attempt: {first})") } else { text };
            Err(LoadError::Refused { name: name.to_string(), errno, log })
        }
    }
}

fn prog_load(prog_type: u32, name: &str, program: &[Insn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let insns = to_bytes(program);
    let license = CString::new("GPL").expect("no NUL inside");
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: program.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(log) = log {
        attr.log_level = LOG_LEVEL_VERBOSE;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: `attr` is a live, initialised `bpf_attr` prefix of the size
    // passed; the pointers in it reach `insns`, `license` and the log
    // buffer, which outlive the call; the kernel writes at most `log_size`
    // bytes of log.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoadAttr, std::mem::size_of::<ProgLoadAttr>())
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `bpf(BPF_PROG_LOAD)` returns a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

#[cfg(test)]
mod tests {
    use super::super::bpf_asm::{R0, exit, mov64_imm};
    use super::*;

    #[test]
    fn a_name_the_kernel_would_refuse_is_refused_before_the_call() {
        let r = load(BPF_PROG_TYPE_LWT_XMIT, "sixteen_chars_xx", &[mov64_imm(R0, 0), exit()]);
        assert!(matches!(r, Err(LoadError::BadName(_))), "{r:?}");
        let r = load(BPF_PROG_TYPE_LWT_XMIT, "a-b", &[mov64_imm(R0, 0), exit()]);
        assert!(matches!(r, Err(LoadError::BadName(_))), "{r:?}");
    }

    /// A program that returns without setting r0 is refused, and the error
    /// carries the verifier's reason.
    #[test]
    fn a_bad_program_is_refused_with_the_verifiers_message() {
        let err = load(BPF_PROG_TYPE_LWT_XMIT, "tortie_bad", &[exit()]).expect_err("the verifier refuses it");
        let text = err.to_string();
        assert!(text.contains("R0 !read_ok"), "{text}");
        assert!(text.contains("tortie_bad"), "{text}");
    }
}
