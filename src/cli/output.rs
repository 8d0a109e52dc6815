//! How the commands write to standard output: a quiet end when the reader goes away
//! (`tortie get ippools | head -1`).

use std::io;

/// The exit status when standard output's reader went away: 128 + SIGPIPE, what a shell reports
/// for coreutils or kubectl, which SIGPIPE kills.
pub const EXIT_BROKEN_PIPE: u8 = 128 + libc::SIGPIPE as u8;

/// The panic message of `print!` and `println!` when standard output's reader went away.
fn broken_stdout_message() -> String {
    format!("failed printing to stdout: {}", io::Error::from_raw_os_error(libc::EPIPE))
}

/// Makes a `print!` to a reader that went away end the process quietly with
/// [`EXIT_BROKEN_PIPE`] instead of panicking; every other panic is reported as before. SIGPIPE
/// stays ignored (as Rust sets it), so the API client's socket still gets an error it can
/// report, as Go programs such as kubectl do for descriptors other than 1 and 2.
pub fn end_quietly_on_broken_stdout() {
    let report = std::panic::take_hook();
    let broken = broken_stdout_message();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or(payload.downcast_ref::<&str>().copied());
        if message == Some(broken.as_str()) {
            std::process::exit(i32::from(EXIT_BROKEN_PIPE));
        }
        report(info);
    }));
}

/// Whether a write error means standard output's reader went away, for commands that write
/// through their own writer: the caller then ends with [`EXIT_BROKEN_PIPE`] and no message.
pub fn is_broken_pipe(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broken_stdout_message_is_the_one_print_panics_with() {
        assert_eq!(broken_stdout_message(), "failed printing to stdout: Broken pipe (os error 32)");
        assert_eq!(EXIT_BROKEN_PIPE, 141);
    }
}
