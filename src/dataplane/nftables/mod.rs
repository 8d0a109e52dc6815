//! tortie's nftables table: one table (`inet tortie`) that tortie alone owns
//! and several users fill with sections of their own (NAT outgoing and
//! network policy). No other table is ever read, changed or deleted,
//! and the ruleset is never flushed.
//!
//! The owner task ([`NftTable`]) keeps the kernel's table equal to the union
//! of the users' sections: each change is one transaction — the elements that went and
//! came when only set elements changed ([`elements`]), the changed chains and sets
//! ([`delta`]), or the whole table deleted and recreated — so no packet sees a
//! half-applied table. Shortly after a structural write, off the path of the next change,
//! it reads the table back (someone may have changed it at once); on a timer it reads it
//! again and rewrites it whole if anything differs (drift repair). An existing table is
//! adopted: it stays as it is until every user has given its first section, and is not
//! written at all when the fingerprint of the last write (`fingerprint.rs`) shows it is
//! exactly the desired one. On `dataplane.cleanup_on_exit` it is deleted.
//!
//! Rendering ([`render`]) is pure and produces the batches as the `nftables` crate's JSON
//! schema (the `nft` binary's JSON, as Kubernetes' knftables drives nft). Every batch is
//! written over nfnetlink by tortie itself ([`batch`], [`vm`], [`wire`]): the objects and
//! statement forms the sections use are encoded here as `nft` encodes them, which a
//! differential test checks against `nft` in the kernel. A batch with any other form goes
//! to `nft -j -f`, and reading the table back is `nft -j list`, so the `nft` binary is
//! still needed at run time (the image installs the `nftables` package). The rules' counters
//! are read over nfnetlink too ([`dump`]). Why by hand:
//! with a thousand policies a run of `nft` costs a second of CPU and reads the whole table
//! into its cache before the kernel sees a byte; the kernel takes the same batch in a
//! fraction of that. (`rustables`, netlink from Rust, is GPL-3.0; tortie is Apache-2.0.)

pub mod batch;
pub mod command;
mod delta;
pub mod dump;
pub mod elements;
mod fingerprint;
pub mod nat;
pub mod policy;
pub mod render;
mod task;
pub mod vm;
pub mod wire;

pub use command::{NftCommand, NftError};
pub use render::{AddressSet, BaseChain, ChainSpec, Chains, Networks, PortSet, RenderError, Section, Shared};
pub use task::{NftState, NftStats, NftTable, NftTableConfig};

/// The table's name (family `inet`: one table for IPv4 and IPv6, NAT
/// included since Linux 5.2).
pub const TABLE_NAME: &str = "tortie";
