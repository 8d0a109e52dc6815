//! Logging with `tracing`: human text by default, JSON with `--log-format json`; the level can be
//! changed while running ([`set_level`], BGPConfiguration `logSeverityScreen`).

use crate::config::LogFormat;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// Replaces the installed subscriber's filter (the reload handle's type depends on the format).
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();
/// True when `RUST_LOG` chose the filter: it then wins over later level changes too.
static FROM_ENV: OnceLock<bool> = OnceLock::new();
/// The level given at start (flag or configuration file): what `set_level(None)` returns to.
static INITIAL: OnceLock<String> = OnceLock::new();

/// Installs the global subscriber. Logs go to standard error so that
/// commands whose output is data (`tortie bgp decode`, `tortie cni`) keep
/// standard output clean. `RUST_LOG`, when set, wins over `level`.
pub fn init(level: &str, format: LogFormat) {
    let from_env = EnvFilter::try_from_env("RUST_LOG");
    let _ = FROM_ENV.set(from_env.is_ok());
    let _ = INITIAL.set(level.to_string());
    let filter = from_env.or_else(|_| EnvFilter::try_new(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file or collector gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    // A second init (tests calling into the CLI twice) is harmless: keep the first.
    let (handle, result): (Reload, _) = match format {
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            (Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())), builder.try_init())
        }
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let handle = builder.reload_handle();
            (Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())), builder.try_init())
        }
    };
    if result.is_ok() {
        let _ = RELOAD.set(handle);
    }
}

/// Sets the level of the running subscriber (a `tracing` filter such as `debug`; `None`: the
/// level given at start). Does nothing when `RUST_LOG` chose the filter or no subscriber of ours
/// is installed (`Ok(false)`).
pub fn set_level(level: Option<&str>) -> Result<bool, String> {
    if FROM_ENV.get().copied().unwrap_or(false) {
        return Ok(false);
    }
    let Some(reload) = RELOAD.get() else { return Ok(false) };
    let level = level.or(INITIAL.get().map(String::as_str)).unwrap_or("info");
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log level {level:?}: {e}"))?;
    reload(filter).map(|()| true)
}
