//! Running code inside a network namespace from this process: a thread of
//! its own joins the namespace (setns affects only the calling thread),
//! runs the closure and ends, so no other thread ever changes namespace.

use nix::sched::{CloneFlags, setns};
use std::fs::File;

/// Runs `f` on a new thread that has joined the named network namespace
/// (`/run/netns/<name>`); sockets `f` opens belong to that namespace.
pub fn run_in_namespace<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let file = File::open(format!("/run/netns/{name}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A thread living in a network namespace and running an async task on a
/// runtime of its own; dropping it tells the task to stop and waits.
pub struct NamespaceThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl NamespaceThread {
    /// Stops the task and waits for the thread; panics of the task resurface here.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take()
            && let Err(panic) = join.join()
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for NamespaceThread {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Runs `task(stop)` on a new thread inside the named namespace, on a
/// current-thread runtime, until it returns; `stop` resolves when the
/// returned handle is stopped or dropped.
pub fn spawn_in_namespace<F, Fut>(name: &str, task: F) -> std::io::Result<NamespaceThread>
where
    F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let file = File::open(format!("/run/netns/{name}"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let join = std::thread::spawn(move || {
        let entered = setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from);
        let failed = entered.is_err();
        let _ = ready_tx.send(entered);
        if failed {
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        runtime.block_on(task(stop_rx));
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(NamespaceThread { stop: Some(stop_tx), join: Some(join) }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other("the namespace thread died before entering the namespace")),
    }
}
