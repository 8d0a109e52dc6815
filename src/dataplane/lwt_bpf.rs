//! A route's BPF lightweight tunnel (`encap bpf xmit <name>`) in netlink:
//! `RTA_ENCAP_TYPE` = `LWTUNNEL_ENCAP_BPF` and `RTA_ENCAP` holding
//! `LWT_BPF_XMIT { LWT_BPF_PROG_FD, LWT_BPF_PROG_NAME }`
//! (`include/uapi/linux/lwtunnel.h`). The kernel reports the program by the
//! name the route was written with, so a route of ours is recognised by it.

use super::netlink::{attrs, put_attr};
use super::route::XmitProgram;

pub(crate) const RTA_ENCAP_TYPE: u16 = 21;
pub(crate) const RTA_ENCAP: u16 = 22;
pub(crate) const LWTUNNEL_ENCAP_BPF: u16 = 6;
/// The transmit hook (after routing, before the neighbour layer).
pub(crate) const LWT_BPF_XMIT: u16 = 3;
const LWT_BPF_PROG_FD: u16 = 1;
const LWT_BPF_PROG_NAME: u16 = 2;
/// Marks an attribute whose payload is attributes.
pub(crate) const NLA_F_NESTED: u16 = 0x8000;

/// The `RTA_ENCAP` payload attaching `program` to the transmit hook.
pub(crate) fn xmit_payload(program: &XmitProgram) -> Vec<u8> {
    let mut prog = Vec::with_capacity(32);
    if let Some(fd) = &program.fd {
        use std::os::fd::AsRawFd;
        put_attr(&mut prog, LWT_BPF_PROG_FD, &fd.as_raw_fd().to_ne_bytes());
    }
    let mut name = program.name.as_bytes().to_vec();
    name.push(0);
    put_attr(&mut prog, LWT_BPF_PROG_NAME, &name);
    let mut out = Vec::with_capacity(prog.len() + 4);
    put_attr(&mut out, LWT_BPF_XMIT | NLA_F_NESTED, &prog);
    out
}

/// The transmit program's name in an `RTA_ENCAP` payload of type BPF;
/// `None` when the route has no transmit program.
pub(crate) fn xmit_name(encap: &[u8]) -> Option<String> {
    let (_, prog) = attrs(encap).flatten().find(|(kind, _)| *kind == LWT_BPF_XMIT)?;
    let (_, name) = attrs(prog).flatten().find(|(kind, _)| *kind == LWT_BPF_PROG_NAME)?;
    let name = name.split(|&b| b == 0).next().unwrap_or(name);
    Some(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_written_is_the_name_read() {
        let p = XmitProgram { name: "tipip0a020002".to_string(), fd: None };
        assert_eq!(xmit_name(&xmit_payload(&p)).as_deref(), Some("tipip0a020002"));
        assert_eq!(xmit_name(&[]), None);
        assert_eq!(xmit_name(&[8, 0, 1, 0, 1, 2]), None, "malformed");
    }
}
