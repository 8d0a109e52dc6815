//! Logging with `tracing`: human text by default, JSON with `--log-format json`.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Logs go to standard error so that
/// commands whose output is data (`tortie bgp decode`, `tortie cni`) keep
/// standard output clean. `RUST_LOG`, when set, wins over `level`.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests calling into the CLI twice) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
