//! Task supervision: every long-running task of the agent is named and
//! watched; the first one to end — by returning or by panicking — ends the
//! agent with an error naming it. Kernel routes stay in place, so a restart
//! by the init system (or the kubelet) costs only the seconds it takes.
//!
//! Liveness (`/livez`) goes beyond "the process runs": [`probe_liveness`]
//! asks the components that do the work (the RIB, the route programmer) to
//! answer a request behind everything queued before it, and reports those
//! that have not answered within [`STALL_LIMIT`].

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};

/// How long a component may take to answer a liveness probe before `/livez`
/// fails. Long enough for a million-route burst (the programmer applies one
/// in ~2 s), short next to the kubelet's default probe period × threshold.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);
/// How long a task that returned waits for a panic elsewhere to blame.
const CAUSE_WINDOW: Duration = Duration::from_millis(500);
/// How often the components are probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How a supervised task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It returned before the agent was asked to stop.
    Returned,
    /// It panicked; the panic message.
    Panicked(String),
    /// It was cancelled (only when the agent aborts it).
    Cancelled,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Returned => write!(f, "returned"),
            Ended::Panicked(message) => write!(f, "panicked: {message}"),
            Ended::Cancelled => write!(f, "was cancelled"),
        }
    }
}

/// The agent's tasks, by name.
#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<()>,
    names: std::collections::HashMap<Id, &'static str>,
    /// Tasks allowed to return (one-shot jobs); a panic still counts.
    finite: std::collections::HashSet<Id>,
    /// Watchers of components that end only when every handle to them is
    /// dropped (the RIB, the programmer, the remote-routes stage): not waited for at
    /// shutdown, since the agent still holds their handles then.
    components: Vec<tokio::task::AbortHandle>,
}

impl Supervisor {
    /// Runs `task` until the agent stops; its end before that ends the agent.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
    }

    /// Runs a job that finishes on its own (a one-off install, the first
    /// reconcile); only a panic ends the agent.
    pub fn spawn_finite(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
        self.finite.insert(id);
    }

    /// Watches a component that ends only when its handles are dropped,
    /// through a future that resolves when it ends (a closed channel).
    pub fn watch_component(&mut self, name: &'static str, ended: impl Future<Output = ()> + Send + 'static) {
        let abort = self.tasks.spawn(ended);
        self.names.insert(abort.id(), name);
        self.components.push(abort);
    }

    /// Like [`Supervisor::watch_component`], by the component task's handle,
    /// so its panic message is kept.
    pub fn adopt_component(&mut self, name: &'static str, handle: tokio::task::JoinHandle<()>) {
        self.watch_component(name, rethrow(handle))
    }

    /// Watches a task spawned elsewhere that stops when the agent does, by
    /// its handle, so its panic message is kept.
    pub fn adopt(&mut self, name: &'static str, handle: tokio::task::JoinHandle<()>) {
        self.spawn(name, rethrow(handle))
    }

    /// Like [`Supervisor::adopt`] for a job that finishes on its own.
    pub fn adopt_finite(&mut self, name: &'static str, handle: tokio::task::JoinHandle<()>) {
        self.spawn_finite(name, rethrow(handle))
    }

    /// The first supervised task to end unexpectedly, with how it ended.
    /// Pending forever when there is none. One failure cascades (a task
    /// whose channel closed because its peer panicked returns), so a task
    /// that merely returned is reported only if no task panics within
    /// [`CAUSE_WINDOW`]: the panic is the cause.
    pub async fn first_failure(&mut self) -> (&'static str, Ended) {
        let first = self.next_failure().await;
        if first.1 != Ended::Returned {
            return first;
        }
        let window = tokio::time::sleep(CAUSE_WINDOW);
        tokio::pin!(window);
        loop {
            tokio::select! {
                // A panic already in beats a window that ran out meanwhile.
                biased;
                other = self.next_failure() => if matches!(other.1, Ended::Panicked(_)) { return other },
                _ = &mut window => return first,
            }
        }
    }

    async fn next_failure(&mut self) -> (&'static str, Ended) {
        loop {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (id, ended) = match joined {
                Ok((id, ())) => (id, Ended::Returned),
                Err(e) => {
                    let id = e.id();
                    if e.is_panic() {
                        (id, Ended::Panicked(panic_message(e.into_panic())))
                    } else {
                        (id, Ended::Cancelled)
                    }
                }
            };
            let name = self.names.remove(&id).unwrap_or("unnamed task");
            if self.finite.remove(&id) && ended == Ended::Returned {
                continue;
            }
            return (name, ended);
        }
    }

    /// Waits for every task to finish after the agent asked them to stop;
    /// those still running after `grace` are named and aborted.
    pub async fn shutdown(mut self, grace: Duration) {
        // Only the watchers are aborted; the components end with their handles.
        for watcher in &self.components {
            watcher.abort();
        }
        let names = &mut self.names;
        let tasks = &mut self.tasks;
        let all = async {
            while let Some(joined) = tasks.join_next_with_id().await {
                let id = match joined {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                names.remove(&id);
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            let left: Vec<_> = self.names.values().collect();
            tracing::warn!(subsys = "agent", tasks = ?left, "tasks still running at shutdown; aborted");
            self.tasks.abort_all();
        }
    }
}

/// Awaits a task spawned elsewhere and panics with its panic, so the
/// supervisor sees the original message.
async fn rethrow(handle: tokio::task::JoinHandle<()>) {
    if let Err(e) = handle.await
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "(a panic without a message)".to_string(),
        },
    }
}

/// A component that answers a request behind everything queued before it.
pub trait Probe: Send + Sync + 'static {
    fn answer(&self) -> impl Future<Output = ()> + Send;
}

impl Probe for crate::bgp::rib::Rib {
    async fn answer(&self) {
        self.stats().await;
    }
}

impl Probe for crate::dataplane::Programmer {
    async fn answer(&self) {
        self.applied().await;
    }
}

/// Probes `component` every [`PROBE_INTERVAL`]; publishes on `stalled`
/// whether its last answer is older than [`STALL_LIMIT`].
pub async fn probe_liveness<P: Probe>(
    name: &'static str,
    component: P,
    stalled: watch::Sender<std::collections::BTreeMap<&'static str, Duration>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_answer = tokio::time::Instant::now();
    // At most one probe is outstanding: a slow component is not handed a new request every
    // interval (they would queue behind its work, ahead of real ones).
    let mut outstanding = None;
    loop {
        let probe = outstanding.get_or_insert_with(|| Box::pin(component.answer()));
        let interval = tokio::time::sleep(PROBE_INTERVAL);
        tokio::pin!(interval);
        tokio::select! {
            _ = stop.changed() => return,
            () = probe => {
                outstanding = None;
                last_answer = tokio::time::Instant::now();
                // An answer that came fast leaves the rest of the interval to wait.
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = &mut interval => {}
                }
            }
            _ = &mut interval => {}
        }
        let silent = last_answer.elapsed();
        stalled.send_if_modified(|map| {
            if silent > STALL_LIMIT { map.insert(name, silent) != Some(silent) } else { map.remove(name).is_some() }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_named_with_its_message() {
        let mut sup = Supervisor::default();
        sup.spawn("steady", std::future::pending());
        sup.spawn_finite("one-off", async {});
        sup.spawn("rib", async { panic!("boom") });
        let (name, ended) = sup.first_failure().await;
        assert_eq!((name, ended), ("rib", Ended::Panicked("boom".to_string())));
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_a_failure_unless_it_is_finite() {
        let mut sup = Supervisor::default();
        sup.spawn_finite("one-off", async {});
        sup.spawn("follower", async {});
        assert_eq!(sup.first_failure().await, ("follower", Ended::Returned));
    }

    #[tokio::test]
    async fn a_panic_is_blamed_rather_than_the_task_it_made_return() {
        let mut sup = Supervisor::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        sup.spawn("follower", async move { while rx.recv().await.is_some() {} });
        sup.spawn("rib", async move {
            drop(tx);
            tokio::task::yield_now().await;
            panic!("boom")
        });
        assert_eq!(sup.first_failure().await, ("rib", Ended::Panicked("boom".to_string())));
    }

    #[tokio::test]
    async fn an_adopted_handle_keeps_its_panic_message() {
        let mut sup = Supervisor::default();
        sup.adopt("selector", tokio::spawn(async { panic!("lost {}", 42) }));
        assert_eq!(sup.first_failure().await, ("selector", Ended::Panicked("lost 42".to_string())));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_stopping_tasks_but_not_for_component_watchers() {
        let mut sup = Supervisor::default();
        let (stop_tx, mut stop) = watch::channel(false);
        sup.spawn("follower", async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        // A component that ends only when its handles go: still held here.
        sup.watch_component("RIB", std::future::pending());
        stop_tx.send_replace(true);
        let started = tokio::time::Instant::now();
        sup.shutdown(Duration::from_secs(10)).await;
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    }

    #[derive(Default)]
    struct Stuck {
        asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }
    impl Probe for Stuck {
        async fn answer(&self) {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending::<()>().await
        }
    }

    struct Quick;
    impl Probe for Quick {
        async fn answer(&self) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_component_that_stops_answering_is_reported_after_the_stall_limit() {
        let (tx, mut rx) = watch::channel(Default::default());
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(probe_liveness("quick", Quick, tx.clone(), stop.clone()));
        let stuck = Stuck::default();
        let asked = stuck.asked.clone();
        tokio::spawn(probe_liveness("stuck", stuck, tx, stop));
        tokio::time::sleep(STALL_LIMIT - PROBE_INTERVAL).await;
        assert!(rx.borrow_and_update().is_empty(), "nothing stalled yet");
        let stalled = rx.wait_for(|m| !m.is_empty()).await.unwrap().clone();
        assert_eq!(stalled.keys().copied().collect::<Vec<_>>(), vec!["stuck"]);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1, "one outstanding probe, not one per interval");
    }
}
