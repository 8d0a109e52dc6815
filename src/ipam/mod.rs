//! IP address management: IP pools carved into per-node blocks, per-pod
//! addresses handed out by handle, coordinated through the datastore with
//! compare-and-swap. Built by the IPAM issue; nothing lives here yet.
