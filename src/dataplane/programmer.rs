//! The route programmer task: the one owner of tortie's desired kernel
//! routes and of its view of what the kernel holds.
//!
//! ```text
//!  producers (BGP, IPAM, CNI, tunnel)      kernel route notifications
//!        │ Command (bounded mpsc)                 │ KernelEvent (bounded mpsc)
//!        ▼                                        ▼
//!  ┌───────────────────────────────────────────────────────────┐
//!  │ programmer task: desired: prefix → {kind → route}          │
//!  │                  kernel:  prefix → route (ours, cached)    │
//!  │ coalesce a burst → diff dirty prefixes → one pipelined     │
//!  │ batch; full dump/diff/replace on start and every resync    │
//!  └───────────────┬───────────────────────────────────────────┘
//!                  │ spawn_blocking (RouteSocket moves in and out)
//!                  ▼
//!              rtnetlink
//! ```

use super::monitor::{self, KernelEvent, MonitorControl};
use super::netlink::{RouteScopeSel, RouteSocket};
use super::reconcile::diff;
use super::route::{DesiredRoute, Route, RouteKind, RouteOp};
use ipnetwork::IpNetwork;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Settings of the route programmer.
#[derive(Debug, Clone)]
pub struct ProgrammerConfig {
    pub table: u32,
    pub protocol: u8,
    /// Full dump-diff-replace interval (Felix: 90 s).
    pub resync_interval: Duration,
}

/// Requests to the programmer.
#[derive(Debug)]
enum Command {
    Set(DesiredRoute),
    Remove(IpNetwork, RouteKind),
    /// Replace every route of the given kinds at once (Felix's `SetRoutes`),
    /// in one step so a prefix moving between kinds never disappears.
    ReplaceKinds(Vec<(RouteKind, Vec<DesiredRoute>)>),
    /// Per prefix, drop its routes of these kinds and want the new one (if
    /// any) instead — the incremental form of `ReplaceKinds`, costing the
    /// changed prefixes only.
    UpdateKinds(Vec<RouteKind>, Vec<(IpNetwork, Option<DesiredRoute>)>),
    /// Reply once everything received before has been applied; the first
    /// also completes the initial full reconcile.
    Flush(oneshot::Sender<()>),
    /// Reply once everything received before has been applied, leaving the
    /// initial reconcile for [`Command::Flush`] (latency measurements).
    Applied(oneshot::Sender<()>),
    /// Delete every route of ours (used on shutdown when asked to clean up).
    RemoveAll(oneshot::Sender<()>),
}

/// Counters for metrics and tests.
#[derive(Debug)]
pub struct ProgrammerStats {
    pub adds: AtomicU64,
    pub replaces: AtomicU64,
    pub deletes: AtomicU64,
    pub failures: AtomicU64,
    /// The same failures by operation: [`FAILURE_OPS`] order.
    pub failures_by_op: [AtomicU64; 4],
    pub drift_repairs: AtomicU64,
    pub resyncs: AtomicU64,
    /// Seconds each full dump-diff-replace reconcile took.
    pub resync_duration: prometheus_client::metrics::histogram::Histogram,
}

/// The operations failures are counted by.
pub const FAILURE_OPS: [&str; 4] = ["add", "replace", "delete", "dump"];

impl Default for ProgrammerStats {
    fn default() -> Self {
        ProgrammerStats {
            adds: AtomicU64::new(0),
            replaces: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failures_by_op: Default::default(),
            drift_repairs: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            // 1 ms … ~16 s
            resync_duration: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
            ),
        }
    }
}

impl ProgrammerStats {
    fn failed(&self, op: usize, n: u64) {
        self.failures.fetch_add(n, Ordering::Relaxed);
        self.failures_by_op[op].fetch_add(n, Ordering::Relaxed);
    }
}

fn op_index(op: &RouteOp) -> usize {
    match op {
        RouteOp::Add(_) => 0,
        RouteOp::Replace(_) => 1,
        RouteOp::Delete(_) => 2,
    }
}

/// A snapshot for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgrammerState {
    /// True after the first full reconcile succeeded.
    pub synced: bool,
    /// Routes currently wanted, by kind.
    pub routes_by_kind: BTreeMap<RouteKind, usize>,
}

/// The handle producers use. Cloning is cheap; the task stops when every
/// handle is dropped (leaving kernel routes in place).
#[derive(Clone)]
pub struct Programmer {
    tx: mpsc::Sender<Command>,
    pub stats: Arc<ProgrammerStats>,
    pub state: watch::Receiver<ProgrammerState>,
    /// Routes of ours a previous run left in the kernel, found at start: the
    /// sign of a restart with forwarding preserved.
    pub adopted: usize,
}

/// Why the programmer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the rtnetlink socket: {0}")]
    Socket(std::io::Error),
    #[error("the initial route dump failed: {0}")]
    Dump(std::io::Error),
}

impl Programmer {
    /// Starts the programmer in the current network namespace. It first
    /// adopts the routes a previous run left (nothing is deleted before the
    /// first desired state arrives through [`Programmer::flush`] or the
    /// resync timer), so a restart never flaps a route that should stay.
    pub async fn start(config: ProgrammerConfig) -> Result<Self, StartError> {
        let sel = RouteScopeSel { table: config.table, protocol: config.protocol };
        let mut socket = RouteSocket::open().map_err(StartError::Socket)?;
        let adopted = socket.dump(sel).map_err(StartError::Dump)?;
        let monitor_socket = monitor::open().map_err(StartError::Socket)?;
        // Commands are bounded so a runaway producer feels back-pressure.
        let (tx, rx) = mpsc::channel(4096);
        let (ev_tx, ev_rx) = mpsc::channel(4096);
        let (control_tx, control_rx) = mpsc::channel(4);
        let monitor_task = tokio::spawn(monitor::run(monitor_socket, sel, ev_tx, control_rx));
        let stats = Arc::new(ProgrammerStats::default());
        let (state_tx, state) = watch::channel(ProgrammerState::default());
        let kernel: HashMap<IpNetwork, Route> = adopted.into_iter().map(|r| (r.dst, r)).collect();
        let adopted = kernel.len();
        tracing::info!(
            subsys = "dataplane",
            adopted = kernel.len(),
            table = sel.table,
            protocol = sel.protocol,
            "route programmer started"
        );
        let task = Task {
            sel,
            socket: Some(socket),
            desired: HashMap::default(),
            kernel,
            dirty: HashSet::default(),
            by_kind: BTreeMap::new(),
            stats: stats.clone(),
            state_tx,
            synced: false,
            resync_interval: config.resync_interval,
            monitor: control_tx,
            verify_at: None,
        };
        tokio::spawn(async move {
            task.run(rx, ev_rx).await;
            monitor_task.abort();
        });
        Ok(Programmer { tx, stats, state, adopted })
    }

    /// Wants `route` (in addition to any other kind's route for the prefix;
    /// the lowest kind wins, local workloads first).
    pub async fn set(&self, route: DesiredRoute) {
        let _ = self.tx.send(Command::Set(route)).await;
    }

    /// No longer wants the `kind` route for `dst`.
    pub async fn remove(&self, dst: IpNetwork, kind: RouteKind) {
        let _ = self.tx.send(Command::Remove(dst, kind)).await;
    }

    /// Replaces the whole set of routes of `kind`.
    pub async fn replace_kind(&self, kind: RouteKind, routes: Vec<DesiredRoute>) {
        self.replace_kinds(vec![(kind, routes)]).await;
    }

    /// Replaces the routes of several kinds in one step (e.g. a prefix
    /// moving from the direct path to the tunnel is replaced, never deleted).
    pub async fn replace_kinds(&self, sets: Vec<(RouteKind, Vec<DesiredRoute>)>) {
        let _ = self.tx.send(Command::ReplaceKinds(sets)).await;
    }

    /// For each `(prefix, route)`: the prefix's routes of `kinds` are
    /// replaced by `route` (none when `None`), in one step, so a prefix
    /// moving between two of the kinds is replaced, never deleted. Costs the
    /// listed prefixes only, unlike [`Programmer::replace_kinds`].
    pub async fn update_kinds(&self, kinds: Vec<RouteKind>, changes: Vec<(IpNetwork, Option<DesiredRoute>)>) {
        if !changes.is_empty() {
            let _ = self.tx.send(Command::UpdateKinds(kinds, changes)).await;
        }
    }

    /// Waits until every earlier request is in the kernel; the first flush
    /// also completes the initial full reconcile (deleting stale routes of ours).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Waits until every earlier request is in the kernel, without
    /// completing the initial reconcile (stale routes of a previous run stay
    /// until [`Programmer::flush`]).
    pub async fn applied(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Applied(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Deletes every route of ours (on shutdown with `cleanup_on_exit`).
    pub async fn remove_all(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::RemoveAll(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Task {
    sel: RouteScopeSel,
    /// Moved into the blocking pool for each batch and back.
    socket: Option<RouteSocket>,
    /// Per prefix, the wanted routes sorted by kind (the first one wins).
    /// A small vector, not a map: almost every prefix has exactly one.
    desired: HashMap<IpNetwork, Vec<DesiredRoute>>,
    /// Our routes as the kernel holds them (dump + our writes + notifications).
    kernel: HashMap<IpNetwork, Route>,
    dirty: HashSet<IpNetwork>,
    /// Prefixes per winning kind, kept in step with `desired` (publishing
    /// must not walk a million routes after every batch).
    by_kind: BTreeMap<RouteKind, usize>,
    stats: Arc<ProgrammerStats>,
    state_tx: watch::Sender<ProgrammerState>,
    synced: bool,
    resync_interval: Duration,
    monitor: mpsc::Sender<MonitorControl>,
    /// A dump-and-diff owed after a bulk batch written with the monitor paused.
    verify_at: Option<tokio::time::Instant>,
}

/// Batches at least this large are written with the monitor paused.
const BULK_OPS: usize = 10_000;
/// How long after a bulk batch its verification dump runs, so commands
/// that follow at once are not held up by it.
const VERIFY_DELAY: Duration = Duration::from_secs(1);

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut events: mpsc::Receiver<KernelEvent>) {
        let mut resync =
            tokio::time::interval_at(tokio::time::Instant::now() + self.resync_interval, self.resync_interval);
        // (reply, whether it completes the initial reconcile)
        let mut waiters: Vec<(oneshot::Sender<()>, bool)> = Vec::new();
        loop {
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { return };
                    self.handle(cmd, &mut waiters).await;
                    // Coalesce a burst into one batch.
                    while let Ok(cmd) = rx.try_recv() {
                        self.handle(cmd, &mut waiters).await;
                    }
                }
                Some(ev) = events.recv() => {
                    let mut full = self.handle_event(ev);
                    while let Ok(ev) = events.try_recv() {
                        full |= self.handle_event(ev);
                    }
                    if full {
                        self.full_resync().await;
                    }
                }
                _ = resync.tick() => self.full_resync().await,
                _ = sleep_until_opt(self.verify_at) => {
                    self.verify_at = None;
                    self.full_resync().await;
                }
            }
            if !self.dirty.is_empty() {
                self.apply_dirty().await;
            }
            if !waiters.is_empty() {
                if !self.synced && waiters.iter().any(|(_, sync)| *sync) {
                    self.full_resync().await;
                }
                for (w, _) in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        }
    }

    async fn handle(&mut self, cmd: Command, waiters: &mut Vec<(oneshot::Sender<()>, bool)>) {
        match cmd {
            Command::Set(d) => {
                let dst = d.route.dst;
                self.edit(dst, |kinds| insert_kind(kinds, d));
            }
            Command::Remove(dst, kind) => {
                if self.desired.contains_key(&dst) {
                    self.edit(dst, |kinds| kinds.retain(|d| d.kind != kind));
                }
            }
            Command::ReplaceKinds(sets) => {
                for (kind, routes) in sets {
                    let keep: HashSet<IpNetwork> = routes.iter().map(|r| r.route.dst).collect();
                    let gone: Vec<IpNetwork> = self
                        .desired
                        .iter()
                        .filter(|(dst, kinds)| !keep.contains(*dst) && kinds.iter().any(|d| d.kind == kind))
                        .map(|(dst, _)| *dst)
                        .collect();
                    for dst in gone {
                        self.edit(dst, |kinds| kinds.retain(|d| d.kind != kind));
                    }
                    for d in routes {
                        let dst = d.route.dst;
                        self.edit(dst, |kinds| insert_kind(kinds, d));
                    }
                }
            }
            Command::UpdateKinds(replaced, changes) => {
                for (dst, route) in changes {
                    if route.is_none() && !self.desired.contains_key(&dst) {
                        continue;
                    }
                    self.edit(dst, |kinds| {
                        kinds.retain(|d| !replaced.contains(&d.kind));
                        if let Some(d) = route {
                            insert_kind(kinds, d);
                        }
                    });
                }
            }
            Command::Flush(w) => waiters.push((w, true)),
            Command::Applied(w) => waiters.push((w, false)),
            Command::RemoveAll(w) => {
                self.desired.clear();
                self.by_kind.clear();
                self.full_resync().await;
                let _ = w.send(());
            }
        }
    }

    /// Updates the kernel view; true when only a full resync can tell what happened.
    fn handle_event(&mut self, ev: KernelEvent) -> bool {
        match ev {
            KernelEvent::Deleted(dst) => {
                self.kernel.remove(&dst);
                if self.effective(&dst).is_some() {
                    self.stats.drift_repairs.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(subsys = "dataplane", prefix = %dst, "a route of ours was deleted outside tortie; restoring it");
                    self.dirty.insert(dst);
                }
                false
            }
            // Our own writes come back here and already match; anything
            // else with our protocol is drift.
            KernelEvent::Changed(route) => {
                let dst = route.dst;
                let right = self.effective(&dst).is_some_and(|d| d.route.satisfied_by(&route));
                self.kernel.insert(dst, route);
                if !right {
                    self.stats.drift_repairs.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(subsys = "dataplane", prefix = %dst, "a route of ours was changed outside tortie; restoring it");
                    self.dirty.insert(dst);
                }
                false
            }
            // Another protocol's route for a prefix we want may have
            // replaced ours: a dump tells. We never overwrite it (invariant 1);
            // the conflict shows up as a failed add.
            KernelEvent::Foreign(dst) => self.synced && self.desired.contains_key(&dst),
            KernelEvent::Overrun => true,
        }
    }

    /// Changes the wanted routes of one prefix, marking it dirty and
    /// keeping the per-kind counts.
    fn edit(&mut self, dst: IpNetwork, change: impl FnOnce(&mut Vec<DesiredRoute>)) {
        let kinds = self.desired.entry(dst).or_default();
        let before = kinds.first().map(|d| d.kind);
        change(kinds);
        let after = kinds.first().map(|d| d.kind);
        if kinds.is_empty() {
            self.desired.remove(&dst);
        }
        self.dirty.insert(dst);
        if before != after {
            if let Some(k) = before
                && let Some(n) = self.by_kind.get_mut(&k)
            {
                *n -= 1;
                if *n == 0 {
                    self.by_kind.remove(&k);
                }
            }
            if let Some(k) = after {
                *self.by_kind.entry(k).or_insert(0) += 1;
            }
        }
    }

    fn effective(&self, dst: &IpNetwork) -> Option<&DesiredRoute> {
        self.desired.get(dst).and_then(|kinds| kinds.first())
    }

    async fn apply_dirty(&mut self) {
        let dirty: Vec<IpNetwork> = self.dirty.drain().collect();
        let mut ops = Vec::with_capacity(dirty.len());
        for dst in dirty {
            match (self.effective(&dst), self.kernel.get(&dst)) {
                (Some(d), None) => ops.push(RouteOp::Add(d.route.clone())),
                (Some(d), Some(k)) if !d.route.satisfied_by(k) => ops.push(RouteOp::Replace(d.route.clone())),
                // Before the first full reconcile, routes adopted from the
                // previous run stay until the desired state is known complete.
                (None, Some(k)) if self.synced => ops.push(RouteOp::Delete(k.clone())),
                _ => {}
            }
        }
        self.execute(ops).await;
    }

    /// Dump, diff, replace.
    async fn full_resync(&mut self) {
        let started = Instant::now();
        let sel = self.sel;
        let Some(mut socket) = self.socket.take() else { return };
        let (socket, dumped) = match tokio::task::spawn_blocking(move || {
            let r = socket.dump(sel);
            (socket, r)
        })
        .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(subsys = "dataplane", error = %e, "route dump task failed");
                return;
            }
        };
        self.socket = Some(socket);
        let kernel = match dumped {
            Ok(k) => k,
            Err(e) => {
                self.stats.failed(3, 1);
                tracing::warn!(subsys = "dataplane", error = %e, "route dump failed; will retry at the next resync");
                return;
            }
        };
        self.kernel = kernel.iter().map(|r| (r.dst, r.clone())).collect();
        let effective: HashMap<IpNetwork, DesiredRoute> =
            self.desired.keys().filter_map(|dst| self.effective(dst).map(|d| (*dst, d.clone()))).collect();
        let ops = diff(&effective, &kernel);
        self.dirty.clear();
        let changed = ops.len();
        self.execute(ops).await;
        // This was a full verification: none is owed any more.
        self.verify_at = None;
        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        self.stats.resync_duration.observe(started.elapsed().as_secs_f64());
        self.synced = true;
        tracing::debug!(subsys = "dataplane", routes = effective.len(), changed, elapsed = ?started.elapsed(), "full route resync");
        self.publish();
    }

    async fn execute(&mut self, ops: Vec<RouteOp>) {
        if ops.is_empty() {
            self.publish();
            return;
        }
        let sel = self.sel;
        let bulk = ops.len() >= BULK_OPS;
        if bulk {
            self.monitor_control(MonitorControl::Pause).await;
        }
        let Some(mut socket) = self.socket.take() else { return };
        let joined = tokio::task::spawn_blocking(move || {
            let r = socket.apply(&ops, sel);
            (socket, ops, r)
        })
        .await;
        let (socket, ops, result) = match joined {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(subsys = "dataplane", error = %e, "route write task failed");
                return;
            }
        };
        self.socket = Some(socket);
        if bulk {
            self.monitor_control(MonitorControl::Resume).await;
            self.verify_at = Some(tokio::time::Instant::now() + VERIFY_DELAY);
        }
        let failed: HashMap<usize, std::io::Error> = match result {
            Ok(errors) => errors.into_iter().map(|e| (e.index, e.error)).collect(),
            Err(e) => {
                // The socket itself failed: nothing is known; resync later.
                for op in &ops {
                    self.stats.failed(op_index(op), 1);
                }
                tracing::warn!(subsys = "dataplane", error = %e, "route batch failed");
                return;
            }
        };
        for (i, op) in ops.into_iter().enumerate() {
            if let Some(e) = failed.get(&i) {
                self.stats.failed(op_index(&op), 1);
                tracing::warn!(subsys = "dataplane", op = op.name(), prefix = %op.route().dst, error = %e, "kernel refused a route change");
                continue;
            }
            let counter = match &op {
                RouteOp::Add(_) => &self.stats.adds,
                RouteOp::Replace(_) => &self.stats.replaces,
                RouteOp::Delete(_) => &self.stats.deletes,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            match op {
                RouteOp::Add(r) | RouteOp::Replace(r) => {
                    self.kernel.insert(r.dst, r);
                }
                RouteOp::Delete(r) => {
                    if self.kernel.get(&r.dst) == Some(&r) {
                        self.kernel.remove(&r.dst);
                    }
                }
            }
        }
        self.publish();
    }

    async fn monitor_control(&self, make: fn(oneshot::Sender<()>) -> MonitorControl) {
        let (tx, rx) = oneshot::channel();
        if self.monitor.send(make(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    fn publish(&self) {
        let state = ProgrammerState { synced: self.synced, routes_by_kind: self.by_kind.clone() };
        self.state_tx.send_if_modified(|s| {
            if *s != state {
                *s = state;
                true
            } else {
                false
            }
        });
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Puts `d` among `kinds`, replacing a route of the same kind, keeping kind order.
fn insert_kind(kinds: &mut Vec<DesiredRoute>, d: DesiredRoute) {
    match kinds.binary_search_by_key(&d.kind, |k| k.kind) {
        Ok(i) => kinds[i] = d,
        Err(i) => kinds.insert(i, d),
    }
}
