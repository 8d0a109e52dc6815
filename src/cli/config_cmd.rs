//! `tortie config check` and the configuration half of `tortie node`.

use super::{EXIT_CONFIG, NodeArgs};
use crate::config::{ConfigError, ConfigSource, LogFormat, load};
use std::path::Path;
use std::process::ExitCode;

fn print_error(e: &ConfigError) {
    eprintln!("tortie: {e}");
}

/// `tortie config check FILE`: every problem on its own line, exit 2 if any.
pub fn check(file: &Path, print: bool) -> ExitCode {
    match load(&ConfigSource::from_process(Some(file))) {
        Ok(loaded) => {
            for var in &loaded.env_unknown {
                eprintln!("warning: environment variable {var} names no configuration field; ignored");
            }
            if print {
                match serde_norway::to_string(&loaded.config) {
                    Ok(text) => print!("{text}"),
                    Err(e) => eprintln!("tortie: cannot print the configuration: {e}"),
                }
            }
            eprintln!("{}: configuration is valid", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&e);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `tortie node`: load the configuration, start logging, run the agent.
pub fn run_node(args: &NodeArgs, log_level: Option<&str>, log_format: Option<LogFormat>) -> ExitCode {
    let loaded = match load(&ConfigSource::from_process(args.config.as_deref())) {
        Ok(l) => l,
        Err(e) => {
            print_error(&e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = loaded.config;
    crate::logging::init(log_level.unwrap_or(&config.log.level), log_format.unwrap_or(config.log.format));
    for (path, var) in &loaded.env_applied {
        tracing::info!(subsys = "config", field = %path, variable = %var, "configuration overridden from the environment");
    }
    for var in &loaded.env_unknown {
        tracing::warn!(subsys = "config", variable = %var, "environment variable names no configuration field; ignored");
    }
    // Secrets serialise as <redacted>, so the effective configuration is safe to log.
    tracing::debug!(subsys = "config", config = %serde_json::to_string(&config).unwrap_or_default(), "effective configuration");
    if let Some(arenas) = crate::allocator::limit_arenas() {
        tracing::debug!(subsys = "agent", arenas, "allocator arenas limited to one per core");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tortie: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(crate::agent::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(subsys = "agent", error = %e, "agent stopped");
            ExitCode::from(1)
        }
    }
}
