//! Helpers for tests (and the lab runner's checks): waiting for a condition
//! with a deadline instead of sleeping, and comparing JSON as a subset.

mod json_subset;
mod promtool;
mod wait;

pub use json_subset::json_subset;
pub use promtool::promtool_check_metrics;
pub use wait::{wait_until, wait_until_async};
