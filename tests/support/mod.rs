//! Shared scaffolding of the integration tests.
#![allow(dead_code)]

pub mod pods;
