//! A process supervised inside a network namespace.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process running inside a namespace, killed on [`Process::stop`]
/// (which the owning topology calls on drop).
pub struct Process {
    child: Child,
    log: PathBuf,
    argv: Vec<String>,
}

impl Process {
    pub(super) fn spawn(ns: &str, argv: &[&str], log: &Path) -> std::io::Result<Self> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        // `ip netns exec` execs the program, so the child's PID is the program's.
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        Ok(Process { child, log: log.to_path_buf(), argv: argv.iter().map(|s| s.to_string()).collect() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How it exited, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Where its standard output and error go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends SIGTERM and waits up to `grace` for it to exit; then SIGKILL.
    /// Returns the exit status when the process exited on its own terms.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if !self.is_running() {
            return self.child.try_wait().ok().flatten();
        }
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        None
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Prints the last `lines` lines of the log to standard error (used when a test fails).
    pub fn print_log_tail(&self, lines: usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        eprintln!("--- last {lines} lines of `{}` ({}) ---", self.argv.join(" "), self.log.display());
        for l in &all[all.len().saturating_sub(lines)..] {
            eprintln!("{l}");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
