//! `promtool check metrics` on a scrape, as the observability tests need it.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `exposition`; the error carries what
/// promtool printed (every lint it found).
pub fn promtool_check_metrics(exposition: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool (Debian package prometheus): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(exposition.as_bytes()).map_err(|e| format!("writing to promtool: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("waiting for promtool: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("promtool: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn promtool_rejects_what_it_should() {
        assert!(
            super::promtool_check_metrics("# HELP ok_total A counter.\n# TYPE ok_total counter\nok_total 1\n").is_ok()
        );
        let err = super::promtool_check_metrics("# TYPE bad counter\nbad 1\n").unwrap_err();
        assert!(err.contains("bad"), "{err}");
    }
}
