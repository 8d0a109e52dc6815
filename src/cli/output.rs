//! How the commands write to standard output: one printer for every `-o table|wide|json|yaml`
//! command, and a quiet end when the reader goes away (`tortie get ippools | head -1`).

use super::ListFormat;
use serde::Serialize;
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

/// `value` as `format` asks: the table `table` renders (given whether to add the wide columns),
/// pretty JSON, or YAML.
pub fn render<T: Serialize>(
    format: ListFormat,
    value: &T,
    table: impl FnOnce(&T, bool) -> String,
) -> Result<String, String> {
    match format {
        ListFormat::Table => Ok(table(value, false)),
        ListFormat::Wide => Ok(table(value, true)),
        ListFormat::Json => {
            serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| format!("cannot render JSON: {e}"))
        }
        ListFormat::Yaml => serde_norway::to_string(value).map_err(|e| format!("cannot render YAML: {e}")),
    }
}

/// Prints [`render`]'s text; false, after saying why on standard error, when it cannot render.
pub fn print<T: Serialize>(format: ListFormat, value: &T, table: impl FnOnce(&T, bool) -> String) -> bool {
    match render(format, value, table) {
        Ok(text) => {
            print!("{text}");
            true
        }
        Err(e) => {
            eprintln!("tortie: {e}");
            false
        }
    }
}

/// Golden outputs: `tests/data/cli-golden/NAME`, rewritten from the actual output when
/// `TORTIE_UPDATE_GOLDEN` is set (then read the diff before committing it).
#[cfg(test)]
pub(super) fn assert_golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cli-golden").join(name);
    if std::env::var_os("TORTIE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(actual == expected, "{name} differs from its golden file:\n--- expected\n{expected}--- actual\n{actual}");
}

/// Every format of `value` against its golden files `NAME.table`, `NAME.wide`, `NAME.json` and
/// `NAME.yaml`.
#[cfg(test)]
pub(super) fn assert_golden_formats<T: Serialize>(name: &str, value: &T, table: impl Fn(&T, bool) -> String) {
    for (format, extension) in [
        (ListFormat::Table, "table"),
        (ListFormat::Wide, "wide"),
        (ListFormat::Json, "json"),
        (ListFormat::Yaml, "yaml"),
    ] {
        let text = render(format, value, &table).unwrap();
        assert_golden(&format!("{name}.{extension}"), &text);
    }
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
