//! Shared scaffolding of the integration tests.
#![allow(dead_code)]

pub mod bfd;
pub mod bgp;
pub mod daemons;
pub mod faults;
pub mod lab;
pub mod pods;
pub mod rib;
pub mod stage;
pub mod transfer;
