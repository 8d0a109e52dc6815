//! Shared scaffolding of the integration tests.
#![allow(dead_code)]

pub mod bgp;
pub mod daemons;
pub mod lab;
pub mod pods;
pub mod rib;
