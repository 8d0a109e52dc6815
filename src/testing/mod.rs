//! Helpers for tests (and the lab runner's checks): waiting for a condition
//! with a deadline instead of sleeping, comparing JSON as a subset, and a datastore backend
//! that counts what a follower lists.

mod counting_backend;
mod json_subset;
mod promtool;
mod wait;

pub use counting_backend::{CountingBackend, Listings};
pub use json_subset::json_subset;
pub use promtool::promtool_check_metrics;
pub use wait::{wait_until, wait_until_async};
