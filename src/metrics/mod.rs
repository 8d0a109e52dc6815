//! Prometheus metrics and health endpoints. Built by the observability issue;
//! nothing lives here yet.
