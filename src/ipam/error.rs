//! Typed IPAM errors: each names what ran out or what was refused, so the CNI plugin and the CLI
//! can tell a full pool from a busy datastore.

use crate::datastore::DatastoreError;
use ipnetwork::IpNetwork;
use std::net::IpAddr;

pub type Result<T, E = IpamError> = std::result::Result<T, E>;

/// Why an IPAM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// A pool would overlap an existing one (Calico refuses overlapping pools too).
    #[error("pool {new} ({new_cidr}) overlaps pool {existing} ({existing_cidr})")]
    PoolOverlap { new: String, new_cidr: IpNetwork, existing: String, existing_cidr: IpNetwork },
    /// A pool breaks a rule of its own (block size out of range, IPIP on IPv6, …).
    #[error("pool {name}: {reason}")]
    InvalidPool { name: String, reason: String },
    /// No enabled pool of this family allows this use on this node (Calico's `ErrNoQualifiedPool`).
    #[error("no enabled IPv{family} pool allows {purpose} addresses")]
    NoPool { family: u8, purpose: &'static str },
    /// Every qualifying pool is full (Calico: "No IPs available in pools: [...]").
    #[error("no IPs available in pools: {pools:?}")]
    PoolsExhausted { pools: Vec<String> },
    /// The node holds as many blocks as it may and strict affinity forbids borrowing.
    #[error("node {node} cannot claim a new block: per-host block limit of {limit} reached")]
    BlockLimit { node: String, limit: u32 },
    /// Compare-and-swap kept losing to other writers.
    #[error("{key}: gave up after {retries} conflicting writes")]
    RetriesExhausted { key: String, retries: u32 },
    /// A release named a sequence number the address no longer has: it was released and handed
    /// out again since, so this release is stale and frees nothing (Calico's ErrorBadSequenceNumber).
    #[error("{ip}: stale release (sequence number {given}, the address now has {current:?})")]
    StaleSequence { ip: IpAddr, given: u64, current: Option<u64> },
    /// The address is in no pool.
    #[error("{ip} is in no IP pool")]
    NotInPool { ip: IpAddr },
    /// The address asked for is in no enabled pool (Calico's AssignIP refuses it too).
    #[error("{ip} is in no enabled IP pool")]
    NotInEnabledPool { ip: IpAddr },
    /// The address asked for is allocated already (to `handle`).
    #[error("{ip} is in use (handle {handle:?})")]
    InUse { ip: IpAddr, handle: String },
    /// The allocator task is gone (the agent is shutting down).
    #[error("the IPAM allocator has stopped")]
    Stopped,
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}
