//! `tortie bgp decode` and `tortie bgp encode`.
//!
//! Exit status of `decode`: 0 when every message decoded (with action `ok`,
//! `attribute-discard` or `treat-as-withdraw`); 1 when at least one message
//! would reset the session (every message is still printed); 2 when the
//! stream ends inside a message or cannot be read. `encode`: 0 on success,
//! 1 when a line is not a valid message object, 2 when input or output fails.

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::packet::json::{decode_stream, json_to_wire};
use super::packet::{AddPathFamilies, DecodeContext, Family};

/// Arguments of `tortie bgp decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// File of raw BGP messages as they travel on the wire; `-` or absent reads standard input.
    pub input: Option<PathBuf>,
    /// The session did not negotiate 4-octet AS numbers (AS_PATH and AGGREGATOR use 2 octets).
    #[arg(long)]
    pub no_as4: bool,
    /// Families whose NLRI carry ADD-PATH path identifiers: ipv4-unicast, ipv6-unicast (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "FAMILY")]
    pub add_path: Vec<Family>,
    /// The peer is internal (iBGP); LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST are accepted.
    #[arg(long)]
    pub ibgp: bool,
    /// The session negotiated extended messages (RFC 8654): up to 65535 octets.
    #[arg(long)]
    pub extended_message: bool,
}

/// Arguments of `tortie bgp encode`.
#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// File of JSON objects, one per line, as `tortie bgp decode` prints them; `-` or absent reads standard input.
    pub input: Option<PathBuf>,
}

impl DecodeArgs {
    /// The decode context these flags describe.
    pub fn context(&self) -> DecodeContext {
        let mut add_path = AddPathFamilies::default();
        for family in &self.add_path {
            add_path.insert(*family);
        }
        DecodeContext {
            four_octet_as: !self.no_as4,
            add_path,
            ibgp: self.ibgp,
            extended_message: self.extended_message,
        }
    }
}

fn read_input(path: Option<&Path>) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    match path {
        None => io::stdin().lock().read_to_end(&mut data)?,
        Some(path) if path == Path::new("-") => io::stdin().lock().read_to_end(&mut data)?,
        Some(path) => std::fs::File::open(path)?.read_to_end(&mut data)?,
    };
    Ok(data)
}

/// The end of `tortie bgp COMMAND` when its output cannot be written: quiet when the reader went
/// away (`| head`), exit 2 with the reason otherwise.
fn write_failed(command: &str, error: &io::Error) -> ExitCode {
    if crate::cli::output::is_broken_pipe(error) {
        return ExitCode::from(crate::cli::output::EXIT_BROKEN_PIPE);
    }
    eprintln!("tortie bgp {command}: cannot write output: {error}");
    ExitCode::from(2)
}

/// Runs `tortie bgp decode`.
pub fn decode_command(args: &DecodeArgs) -> ExitCode {
    let input = match read_input(args.input.as_deref()) {
        Ok(input) => input,
        Err(error) => {
            eprintln!("tortie bgp decode: cannot read input: {error}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    let summary = decode_stream(&input, &args.context(), |line| {
        if write_error.is_none()
            && let Err(error) = writeln!(out, "{line}")
        {
            write_error = Some(error);
        }
    });
    if let Some(error) = write_error.or_else(|| out.flush().err()) {
        return write_failed("decode", &error);
    }
    if let Some((offset, available, needed)) = summary.truncated {
        eprintln!(
            "tortie bgp decode: truncated stream: the message at offset {offset} needs {needed} octets but only {available} remain"
        );
        return ExitCode::from(2);
    }
    if summary.session_resets > 0 {
        eprintln!(
            "tortie bgp decode: {} of {} messages would reset the session",
            summary.session_resets, summary.messages
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Runs `tortie bgp encode`.
pub fn encode_command(args: &EncodeArgs) -> ExitCode {
    let input = match read_input(args.input.as_deref()) {
        Ok(input) => input,
        Err(error) => {
            eprintln!("tortie bgp encode: cannot read input: {error}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for (number, line) in input.lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                eprintln!("tortie bgp encode: line {}: {error}", number + 1);
                return ExitCode::from(1);
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let wire = serde_json::from_str(&line)
            .map_err(|error| error.to_string())
            .and_then(|value| json_to_wire(&value).map_err(|error| error.to_string()));
        match wire {
            Ok(wire) => {
                if let Err(error) = out.write_all(&wire) {
                    return write_failed("encode", &error);
                }
            }
            Err(error) => {
                eprintln!("tortie bgp encode: line {}: {error}", number + 1);
                return ExitCode::from(1);
            }
        }
    }
    if let Err(error) = out.flush() {
        return write_failed("encode", &error);
    }
    ExitCode::SUCCESS
}
