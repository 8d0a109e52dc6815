//! tortie's nftables table: one table (`inet tortie`) that tortie alone owns
//! and several users fill with sections of their own (NAT outgoing and
//! network policy). No other table is ever read, changed or deleted,
//! and the ruleset is never flushed.
//!
//! The owner task ([`NftTable`]) keeps the kernel's table equal to the union
//! of the users' sections: each change is one transaction — the whole table
//! deleted and recreated by `nft -f`, or, when only set elements changed, the
//! elements that went deleted and those that came added, over nfnetlink
//! directly ([`elements`]) — so no packet sees a half-applied table. Shortly
//! after a whole write, off the path of the next change, it reads the table back
//! (someone may have changed it at once); on a timer it reads it again and
//! rewrites it whole if anything differs (drift repair). An
//! existing table is adopted: it stays as it is until every user has
//! given its first section, and is not written at all when the fingerprint
//! of the last write (`fingerprint.rs`) shows it is exactly the desired one.
//! On `dataplane.cleanup_on_exit` it is deleted.
//!
//! Rendering ([`render`]) is pure; talking to the kernel is in
//! [`command`]. The JSON schema comes from the `nftables` crate, which
//! writes the `nft` binary's JSON, the way Kubernetes' knftables (used by
//! kube-proxy and Calico) drives nft. Chosen over `rustables` (netlink
//! directly) because that crate is GPL-3.0 (tortie is Apache-2.0) and
//! because `nft` does the expression encoding and the atomic batch for
//! us; the price is the `nft` binary at run time (the image installs the
//! `nftables` package). Set elements alone are encoded here, because they
//! change with every pod and a run of `nft` costs milliseconds to seconds.

pub mod command;
mod delta;
pub mod elements;
mod fingerprint;
pub mod nat;
pub mod policy;
pub mod render;
mod task;

pub use command::{NftCommand, NftError};
pub use render::{AddressSet, BaseChain, ChainSpec, Chains, PortSet, RenderError, Section};
pub use task::{NftState, NftStats, NftTable, NftTableConfig};

/// The table's name (family `inet`: one table for IPv4 and IPv6, NAT
/// included since Linux 5.2).
pub const TABLE_NAME: &str = "tortie";
