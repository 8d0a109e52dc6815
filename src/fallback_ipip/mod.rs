//! IP-in-IP tunnels toward peers that cannot be reached directly: the kernel's
//! `tunl0` where the kernel has ipip, a userspace encapsulator otherwise.
//! Built by the dataplane issue; nothing lives here yet.
