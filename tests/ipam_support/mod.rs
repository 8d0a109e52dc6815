//! Support for the IPAM tests: the generic suite run against every backend, and the child roles
//! of the multi-process tests.

pub mod children;
pub mod suite;
