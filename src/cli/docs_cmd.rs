//! Shell completions and manual pages, generated from the parser's own
//! definitions so they cannot disagree with what the command accepts.

use super::Cli;
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Prints the completion script for `shell` to standard output.
pub fn completion(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    // Generated into memory: clap_complete panics on a failed write to the writer it is given.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if super::output::is_broken_pipe(&e) => ExitCode::from(super::output::EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("tortie completion: cannot write the script: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a manual page per command and subcommand (`tortie.1`,
/// `tortie-bgp-peers.1`, …) into `dir`.
pub fn man(dir: &Path) -> ExitCode {
    let written = std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tortie man: cannot write the manual pages to {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
