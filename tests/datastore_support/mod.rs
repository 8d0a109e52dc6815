//! Support for the datastore conformance tests: a per-backend harness, the generic suite, and an
//! etcd server started per test.

pub mod etcd_process;
pub mod harness;
pub mod suite;
