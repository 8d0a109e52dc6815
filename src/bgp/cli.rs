//! `tortie bgp decode` and `tortie bgp encode`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `tortie bgp decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// File of raw BGP messages as they travel on the wire; `-` or absent reads standard input.
    pub input: Option<PathBuf>,
}

/// Arguments of `tortie bgp encode`.
#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// File of JSON objects, one per line, as `tortie bgp decode` prints them; `-` or absent reads standard input.
    pub input: Option<PathBuf>,
}

/// Runs `tortie bgp decode`.
pub fn decode_command(_args: &DecodeArgs) -> ExitCode {
    eprintln!("tortie bgp decode: the wire codec is not built yet");
    ExitCode::from(1)
}

/// Runs `tortie bgp encode`.
pub fn encode_command(_args: &EncodeArgs) -> ExitCode {
    eprintln!("tortie bgp encode: the wire codec is not built yet");
    ExitCode::from(1)
}
