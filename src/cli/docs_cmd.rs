//! Shell completions and manual pages, generated from the parser's own
//! definitions so they cannot disagree with what the command accepts.

use super::Cli;
use clap::CommandFactory;
use std::path::Path;
use std::process::ExitCode;

/// Prints the completion script for `shell` to standard output.
pub fn completion(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
    ExitCode::SUCCESS
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
