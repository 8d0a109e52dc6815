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
/// `BPF_PROG_TYPE_SCHED_CLS`: a tc classifier (here attached with tcx).
pub const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_TCX_INGRESS`: a device's ingress, before the stack sees the packet.
const BPF_TCX_INGRESS: u32 = 46;
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

/// `bpf(cmd, attr)` for an attribute struct; the new descriptor on success.
fn bpf_fd<T>(cmd: libc::c_int, attr: &T) -> io::Result<OwnedFd> {
    let rc = bpf(cmd, attr)?;
    // SAFETY: on success these commands return a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

fn bpf<T>(cmd: libc::c_int, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `bpf_attr` prefix of the size
    // passed (the kernel zero-fills the rest); the pointers in it, set by
    // the callers below, reach buffers that outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, std::mem::size_of::<T>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// A hash map of `max_entries` from 4-byte keys to 1-byte values.
pub fn hash_map_u32(max_entries: u32) -> io::Result<OwnedFd> {
    bpf_fd(
        BPF_MAP_CREATE,
        &MapCreateAttr { map_type: BPF_MAP_TYPE_HASH, key_size: 4, value_size: 1, max_entries, map_flags: 0 },
    )
}

/// Sets `key` (its bytes as the program reads them) to `value`.
pub fn map_set(map: &OwnedFd, key: [u8; 4], value: u8) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: &value as *const u8 as u64,
        flags: 0,
    };
    bpf(BPF_MAP_UPDATE_ELEM, &attr).map(|_| ())
}

/// Removes `key`; absent is not an error.
pub fn map_remove(map: &OwnedFd, key: [u8; 4]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let attr = MapElemAttr { map_fd: map.as_raw_fd() as u32, _pad: 0, key: key.as_ptr() as u64, value: 0, flags: 0 };
    match bpf(BPF_MAP_DELETE_ELEM, &attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// Attaches `prog` to device `ifindex`'s ingress (tcx); it stays attached
/// while the returned link descriptor is open.
pub fn attach_tcx_ingress(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    bpf_fd(
        BPF_LINK_CREATE,
        &LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_TCX_INGRESS,
            flags: 0,
        },
    )
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
