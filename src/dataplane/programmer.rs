//! The route programmer task: the one owner of tortie's desired kernel
//! routes and of its view of what the kernel holds.
//!
//! ```text
//!  producers (BGP, IPAM, CNI, tunnel)      kernel route notifications
//!        │ Command (bounded mpsc)                 │ KernelEvent (bounded mpsc)
//!        ▼                                        ▼
//!  ┌────────────────────────────────────────────────────────────────┐
//!  │ programmer task (one select! loop; reads commands and events   │
//!  │ while a chunk or dump is in the kernel)                        │
//!  │  table: prefix → desired form id | kernel form id | flags      │
//!  │         (PrefixMap, 12 B per IPv4 prefix; table.rs)            │
//!  │  forms: interned (kind, target, mtu) / (target, mtu) (forms.rs)│
//!  │  queue: changed prefixes, each once (PrefixQueue)              │
//!  │ pop ≤ 32768 ops into a chunk → write; the next chunk is built  │
//!  │ meanwhile and starts as soon as it returns, then the finished  │
//!  │ one is acknowledged into the table. Full dump (compact,        │
//!  │ snapshot.rs) → diff into the queue on start and every resync   │
//!  └───────────────┬────────────────────────────────────────────────┘
//!                  │ spawn_blocking (RouteSocket moves in and out)
//!                  ▼
//!              rtnetlink
//! ```
//!
//! Why this shape: at a million BGP routes this task is the agent's
//! biggest memory user, so a prefix costs one packed table entry and no
//! allocation of its own; and a large batch is written in chunks so the
//! command channel keeps draining (routes wait as table entries, not as
//! commands) while the kernel is never idle with work queued.

use super::monitor::{self, KernelEvent, MonitorControl};
use super::netlink::{OpError, RouteScopeSel, RouteSocket};
use super::route::{DesiredRoute, RouteKind, RouteOp};
use super::snapshot::Snapshot;
use super::table::Table;
use crate::prefix_map::PREFETCH_AHEAD;
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, VecDeque};
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
    /// Write single-next-hop routes by kernel nexthop object (where the
    /// kernel has them): half the kernel's work per route.
    pub nexthop_objects: bool,
}

/// The agent's defaults (`DataplaneConfig`): the main table, protocol
/// 116, a resync every 90 s, routes by nexthop object.
impl Default for ProgrammerConfig {
    fn default() -> Self {
        ProgrammerConfig {
            table: 254,
            protocol: crate::config::DEFAULT_ROUTE_PROTOCOL,
            resync_interval: Duration::from_secs(90),
            nexthop_objects: true,
        }
    }
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
    /// Wanted routes not installed because another owner's route holds the destination.
    pub shadowed: AtomicU64,
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
            shadowed: AtomicU64::new(0),
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
    /// The task, for whoever supervises it ([`Programmer::take_task`]).
    task: TaskSlot,
}

/// A spawned task's handle, shared by the clones of a component's handle
/// until its supervisor takes it.
pub type TaskSlot = Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>;

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
        if config.nexthop_objects {
            socket.use_nexthop_objects();
        }
        let mut snapshot = Snapshot::default();
        socket.dump_each(sel, |r| snapshot.push(r)).map_err(StartError::Dump)?;
        let mut table = Table::default();
        // Adopted: known to be in the kernel, deleted only once the first
        // complete reconcile allows it.
        table.apply_snapshot(snapshot, false);
        let adopted = table.len();
        let monitor_socket = monitor::open().map_err(StartError::Socket)?;
        // Commands are bounded so a runaway producer feels back-pressure.
        let (tx, rx) = mpsc::channel(4096);
        let (ev_tx, ev_rx) = mpsc::channel(4096);
        let (control_tx, control_rx) = mpsc::channel(4);
        let watch = monitor::Watch::new(sel, socket.port(), socket.nexthop_devices());
        let monitor_task = tokio::spawn(monitor::run(monitor_socket, watch, ev_tx, control_rx));
        let stats = Arc::new(ProgrammerStats::default());
        let (state_tx, state) = watch::channel(ProgrammerState::default());
        tracing::info!(
            subsys = "dataplane",
            adopted,
            table = sel.table,
            protocol = sel.protocol,
            "route programmer started"
        );
        let task = Task {
            sel,
            socket: Some(socket),
            table,
            stats: stats.clone(),
            state_tx,
            synced: false,
            synced_published: false,
            resync_interval: config.resync_interval,
            monitor: control_tx,
            paused: false,
            verify_at: None,
            resync: None,
            dumping: None,
            resync_started: None,
            writing: None,
            next: None,
            done: 0,
            stash: Vec::new(),
            waiters: VecDeque::new(),
            refusals: Default::default(),
        };
        let task = tokio::spawn(async move {
            task.run(rx, ev_rx).await;
            monitor_task.abort();
        });
        Ok(Programmer { tx, stats, state, adopted, task: Arc::new(std::sync::Mutex::new(Some(task))) })
    }

    /// The programmer task's handle, once (for the agent's supervisor).
    pub fn take_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.task.lock().map(|mut t| t.take()).unwrap_or_default()
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

/// What comes back from the socket's trip to the blocking pool.
enum IoDone {
    Wrote(RouteSocket, Vec<RouteOp>, std::io::Result<Vec<OpError>>),
    Dumped(RouteSocket, std::io::Result<Snapshot>),
}

/// A full dump-diff-replace. `Complete` also finishes the initial
/// reconcile (stale routes of a previous run may be deleted from then on);
/// `Verify` (after a bulk run, lost notifications, a foreign route) only
/// puts right what differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    Verify,
    Complete,
}

/// Someone waiting for everything received before them to be in the kernel.
struct Waiter {
    reply: oneshot::Sender<()>,
    /// The table's queue pushes when it was received: once that many pops
    /// are written, so is everything before it.
    mark: u64,
    need: Need,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// [`Programmer::applied`].
    Nothing,
    /// [`Programmer::flush`]: the initial reconcile, if not done yet.
    Synced,
    /// [`Programmer::remove_all`]: a complete resync after it...
    Resync,
    /// ...and once its writes are done, one more dump: it deletes the
    /// nexthop objects of ours that no route uses any more.
    Sweep,
    /// That dump is asked for.
    Sweeping,
}

/// A chunk of operations, built or being written.
struct Chunk {
    ops: Vec<RouteOp>,
    /// Per operation, the kernel form it leaves or deletes ([`Table::next_chunk`]).
    meta: Vec<u32>,
    /// The table's queue pops once this chunk was taken.
    popped: u64,
    /// It deletes duplicate copies (not counted in the queue marks).
    extras: bool,
}

/// The kernel socket's trip to the blocking pool.
type Io = Option<tokio::task::JoinHandle<IoDone>>;

struct Task {
    sel: RouteScopeSel,
    /// Here while idle; in the blocking pool while a chunk or dump runs.
    socket: Option<RouteSocket>,
    table: Table,
    stats: Arc<ProgrammerStats>,
    state_tx: watch::Sender<ProgrammerState>,
    /// A complete resync has read the kernel: deleting unwanted routes of
    /// ours is allowed from now on.
    synced: bool,
    /// ...and its writes are done (what [`ProgrammerState::synced`] says).
    synced_published: bool,
    resync_interval: Duration,
    monitor: mpsc::Sender<MonitorControl>,
    /// The monitor is out of the route groups for a bulk run.
    paused: bool,
    /// A dump-and-diff owed after a bulk run written with the monitor paused.
    verify_at: Option<tokio::time::Instant>,
    /// A resync to run as soon as the socket is free.
    resync: Option<Resync>,
    /// The resync whose dump is running.
    dumping: Option<(Resync, Instant)>,
    /// The last resync whose writes are still going (for its duration).
    resync_started: Option<Instant>,
    /// The chunk being written (its operations travel with the socket;
    /// its kernel forms and progress mark wait here).
    writing: Option<Chunk>,
    /// The chunk after it, built while it is written so the kernel never
    /// waits for the task's bookkeeping.
    next: Option<Chunk>,
    /// Queue pops whose operations are in the kernel.
    done: u64,
    /// Kernel events received while the socket was away, applied after its
    /// results (in the order the kernel sent them, as if received later).
    stash: Vec<KernelEvent>,
    waiters: VecDeque<Waiter>,
    /// Destinations the kernel refused, each logged once.
    refusals: super::refusals::Refusals,
}

/// A run of chunks this long is written with the monitor paused.
const BULK_OPS: usize = 10_000;
/// Operations per trip to the blocking pool: large enough to keep the
/// kernel busy, small enough that commands are read between chunks and a
/// chunk's routes (about 80 bytes each, two chunks at a time) stay a few
/// megabytes.
pub const CHUNK_OPS: usize = 32_768;
/// Commands (or events) taken per wake-up before looking at the kernel again.
const BURST: usize = 64;
/// How long after a bulk run its verification dump runs (and the monitor
/// listens again), so commands that follow at once are not held up by it
/// and a run arriving in pieces is verified once. Writes that keep coming
/// postpone it; the periodic resync still comes on time.
const VERIFY_DELAY: Duration = Duration::from_secs(1);

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut events: mpsc::Receiver<KernelEvent>) {
        let mut resync =
            tokio::time::interval_at(tokio::time::Instant::now() + self.resync_interval, self.resync_interval);
        let mut io: Io = None;
        let mut closed = false;
        loop {
            loop {
                if closed {
                    self.resync = None;
                }
                if io.is_none() {
                    io = self.start_io().await;
                }
                self.prebuild();
                self.publish();
                if !self.answer_waiters() || io.is_some() {
                    break;
                }
            }
            if closed && io.is_none() {
                // Every handle is gone and everything received is written.
                return;
            }
            tokio::select! {
                done = async { io.as_mut().expect("guarded").await }, if io.is_some() => {
                    io = None;
                    match done {
                        Ok(IoDone::Wrote(socket, ops, result)) => {
                            tracing::trace!(subsys = "dataplane", ops = ops.len(), next = self.next.as_ref().map_or(0, |c| c.ops.len()), "chunk written");
                            self.socket = Some(socket);
                            let mut chunk = self.writing.take().expect("a chunk was being written");
                            chunk.ops = ops;
                            // The next chunk goes first: the bookkeeping of this one
                            // (and building the one after) overlaps its write.
                            if let Some(next) = self.next.take() {
                                io = self.spawn_write(next).await;
                            }
                            self.finish_write(chunk, result);
                        }
                        Ok(IoDone::Dumped(socket, result)) => {
                            self.socket = Some(socket);
                            self.finish_dump(result);
                        }
                        Err(e) => {
                            tracing::error!(subsys = "dataplane", error = %e, "route socket task failed");
                            self.writing = None;
                            if let Some(next) = self.next.take() {
                                self.finish_write(next, Err(std::io::Error::other("not written: the socket is lost")));
                            }
                        }
                    }
                    // Events that came during the finished trip happened before
                    // any chunk started just now: they apply here, after its results.
                    for ev in std::mem::take(&mut self.stash) {
                        self.event(ev, false);
                    }
                }
                cmd = rx.recv(), if !closed => match cmd {
                    None => closed = true,
                    Some(cmd) => {
                        crate::faults::point("programmer");
                        self.handle(cmd);
                        // Coalesce a burst.
                        for _ in 0..BURST {
                            let Ok(cmd) = rx.try_recv() else { break };
                            self.handle(cmd);
                        }
                    }
                },
                Some(ev) = events.recv(), if !closed => {
                    self.event(ev, io.is_some());
                    for _ in 0..BURST {
                        let Ok(ev) = events.try_recv() else { break };
                        self.event(ev, io.is_some());
                    }
                }
                _ = resync.tick(), if !closed => self.want_resync(Resync::Complete),
                _ = sleep_until_opt(self.verify_at), if !closed => {
                    self.verify_at = None;
                    self.want_resync(Resync::Verify);
                }
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Set(d) => self.table.set(d),
            Command::Remove(dst, kind) => self.table.remove(dst, kind),
            Command::ReplaceKinds(sets) => {
                for (kind, routes) in sets {
                    self.table.replace_kind(kind, routes);
                }
                self.table.maybe_shrink();
            }
            Command::UpdateKinds(kinds, mut changes) => {
                tracing::trace!(subsys = "dataplane", routes = changes.len(), "update");
                for i in 0..changes.len() {
                    // A few prefixes early, so the cache misses overlap.
                    if let Some((next, _)) = changes.get(i + PREFETCH_AHEAD) {
                        self.table.prefetch(next);
                    }
                    let (dst, route) = (changes[i].0, changes[i].1.take());
                    self.table.update(&kinds, dst, route);
                }
            }
            Command::Flush(reply) => self.wait(reply, Need::Synced),
            Command::Applied(reply) => self.wait(reply, Need::Nothing),
            Command::RemoveAll(reply) => {
                self.table.clear_desired();
                self.want_resync(Resync::Complete);
                self.wait(reply, Need::Resync);
            }
        }
    }

    fn wait(&mut self, reply: oneshot::Sender<()>, need: Need) {
        self.waiters.push_back(Waiter { reply, mark: self.table.pushed(), need });
    }

    fn want_resync(&mut self, r: Resync) {
        self.resync = Some(match self.resync {
            Some(Resync::Complete) => Resync::Complete,
            _ => r,
        });
    }

    /// Replies to the waiters whose turn has come; true when one of them
    /// needs a resync first (just asked for).
    fn answer_waiters(&mut self) -> bool {
        let extras = self.table.has_extras()
            || self.writing.as_ref().is_some_and(|c| c.extras)
            || self.next.as_ref().is_some_and(|c| c.extras);
        while let Some(w) = self.waiters.front() {
            if self.done < w.mark || extras {
                return false;
            }
            let ready = match w.need {
                Need::Nothing => true,
                Need::Synced => self.synced,
                Need::Resync => false,
                // Its dump is asked for: finish_dump answers it.
                Need::Sweeping => return false,
                Need::Sweep => {
                    // A dump that started before this point may have seen
                    // routes since deleted: wait for it, then ask for one.
                    if self.dumping.is_some() || self.resync.is_some() {
                        return false;
                    }
                    self.want_resync(Resync::Verify);
                    if let Some(w) = self.waiters.front_mut() {
                        w.need = Need::Sweeping;
                    }
                    return true;
                }
            };
            if !ready {
                // A complete resync that is running or asked for answers it.
                if self.dumping.is_some_and(|(r, _)| r == Resync::Complete) || self.resync == Some(Resync::Complete) {
                    return false;
                }
                self.want_resync(Resync::Complete);
                return true;
            }
            if let Some(w) = self.waiters.pop_front() {
                let _ = w.reply.send(());
            }
        }
        false
    }

    /// Applies a kernel event now, or after the socket's results when it is away.
    fn event(&mut self, ev: KernelEvent, socket_away: bool) {
        if socket_away {
            self.stash.push(ev);
            return;
        }
        match ev {
            KernelEvent::Deleted(dst) => {
                if self.table.kernel_deleted(dst) {
                    self.stats.drift_repairs.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(subsys = "dataplane", prefix = %dst, "a route of ours was deleted outside tortie; restoring it");
                }
            }
            // Our own writes come back here and already match; anything
            // else with our protocol is drift.
            KernelEvent::Changed(route) => {
                let dst = route.dst;
                if self.table.kernel_changed(route) {
                    self.stats.drift_repairs.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(subsys = "dataplane", prefix = %dst, "a route of ours was changed outside tortie; restoring it");
                }
            }
            // Another protocol's route for a prefix we want may have
            // replaced ours: a dump tells. We never overwrite it (invariant 1);
            // the conflict shows up as a failed add.
            KernelEvent::Foreign(dst) => {
                if self.synced && self.table.has_desired(&dst) {
                    self.want_resync(Resync::Verify);
                }
            }
            KernelEvent::Overrun => self.want_resync(Resync::Verify),
            KernelEvent::NexthopGone(id) => {
                tracing::info!(subsys = "dataplane", id, "a nexthop object of ours was deleted; checking our routes");
                self.want_resync(Resync::Verify);
            }
            KernelEvent::NexthopLink(ifindex) => {
                tracing::info!(
                    subsys = "dataplane",
                    ifindex,
                    "a link our nexthop objects use changed; checking our routes"
                );
                self.want_resync(Resync::Verify);
            }
        }
    }

    /// Sends the idle socket off with the next piece of work: a resync's
    /// dump first, else the next chunk of queued operations. None when
    /// there is nothing to do (the socket stays here).
    async fn start_io(&mut self) -> Io {
        let sel = self.sel;
        let Some(mut socket) = self.socket.take() else {
            // Lost to a failed blocking task: nothing can be written any more.
            self.table.discard_queue();
            self.done = self.table.popped();
            self.resync = None;
            for w in &mut self.waiters {
                w.need = Need::Nothing;
            }
            return None;
        };
        if let Some(r) = self.resync.take() {
            if self.paused {
                // Listen again before reading the kernel: a change after
                // the dump's view of a route then still reaches us.
                self.monitor_control(MonitorControl::Resume).await;
                self.paused = false;
            }
            self.dumping = Some((r, Instant::now()));
            return Some(tokio::task::spawn_blocking(move || {
                let mut snapshot = Snapshot::default();
                let r = socket.dump_each(sel, |route| snapshot.push(route)).map(|()| snapshot);
                IoDone::Dumped(socket, r)
            }));
        }
        self.socket = Some(socket);
        loop {
            if self.table.queued() == 0 {
                self.idle().await;
                return None;
            }
            match self.build() {
                Some(chunk) => return self.spawn_write(chunk).await,
                None => {
                    // Only prefixes that were right already: keep going, but let others run.
                    self.done = self.table.popped();
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// The next chunk of queued operations, if the queue yields any.
    fn build(&mut self) -> Option<Chunk> {
        let queued = self.table.queued();
        let extras = self.table.has_extras();
        let mut ops = Vec::with_capacity(queued.min(CHUNK_OPS));
        let mut meta = Vec::with_capacity(queued.min(CHUNK_OPS));
        self.table.next_chunk(self.synced, CHUNK_OPS, &mut ops, &mut meta);
        (!ops.is_empty()).then(|| Chunk { ops, meta, popped: self.table.popped(), extras })
    }

    /// Builds the chunk after the one being written (not while a resync
    /// waits: it must find no operation pending).
    fn prebuild(&mut self) {
        if self.writing.is_some() && self.next.is_none() && self.resync.is_none() && self.table.queued() > 0 {
            self.next = self.build();
        }
    }

    async fn spawn_write(&mut self, mut chunk: Chunk) -> Io {
        let Some(mut socket) = self.socket.take() else {
            self.finish_write(chunk, Err(std::io::Error::other("not written: the socket is lost")));
            return None;
        };
        if self.paused {
            // Still in a bulk run: its verification waits until it ends.
            self.verify_at = None;
        } else if chunk.ops.len() + self.table.queued() >= BULK_OPS {
            self.monitor_control(MonitorControl::Pause).await;
            self.paused = true;
        }
        let ops = std::mem::take(&mut chunk.ops);
        tracing::trace!(subsys = "dataplane", ops = ops.len(), queued = self.table.queued(), "chunk to the kernel");
        self.writing = Some(chunk);
        let sel = self.sel;
        Some(tokio::task::spawn_blocking(move || {
            let r = socket.apply(&ops, sel);
            IoDone::Wrote(socket, ops, r)
        }))
    }

    /// Everything queued is written.
    async fn idle(&mut self) {
        self.done = self.table.popped();
        if self.paused {
            // The monitor stays out of the route groups until the
            // verification dump: a bulk run arriving in pieces (a peer's
            // table at the rate the RIB passes it on) would otherwise pay
            // for a notification per route of ours in every gap.
            self.verify_at = Some(tokio::time::Instant::now() + VERIFY_DELAY);
        }
        if let Some(started) = self.resync_started.take() {
            self.stats.resync_duration.observe(started.elapsed().as_secs_f64());
            self.synced_published = self.synced;
        }
        self.table.maybe_shrink();
    }

    fn finish_write(&mut self, chunk: Chunk, result: std::io::Result<Vec<OpError>>) {
        self.acknowledge(&chunk.ops, &chunk.meta, result);
        self.done = self.done.max(chunk.popped);
    }

    fn finish_dump(&mut self, result: std::io::Result<Snapshot>) {
        let (mode, started) = self.dumping.take().expect("a dump was running");
        match result {
            Ok(snapshot) => {
                let routes = snapshot.len();
                if mode == Resync::Complete {
                    self.synced = true;
                }
                self.table.apply_snapshot(snapshot, self.synced);
                // This was a full verification: none is owed any more.
                self.verify_at = None;
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                self.resync_started = Some(started);
                tracing::debug!(subsys = "dataplane", routes, changed = self.table.queued(), elapsed = ?started.elapsed(), "full route resync");
            }
            Err(e) => {
                self.stats.failed(3, 1);
                tracing::warn!(subsys = "dataplane", error = %e, "route dump failed; will retry at the next resync");
            }
        }
        // Whoever waited for it now waits for its writes.
        let mark = self.table.pushed();
        for w in &mut self.waiters {
            w.need = match (w.need, mode) {
                (Need::Synced, Resync::Complete) | (Need::Sweeping, _) => Need::Nothing,
                (Need::Resync, Resync::Complete) => Need::Sweep,
                _ => continue,
            };
            w.mark = w.mark.max(mark);
        }
    }

    fn acknowledge(&mut self, ops: &[RouteOp], meta: &[u32], result: std::io::Result<Vec<OpError>>) {
        // In index order, walked alongside the operations: nearly always
        // empty, and a lookup per operation would cost a hash each.
        let mut failed = match result {
            Ok(mut errors) => {
                errors.sort_by_key(|e| e.index);
                errors.into_iter().peekable()
            }
            Err(e) => {
                // The socket itself failed: nothing is known; resync later.
                for (op, m) in ops.iter().zip(meta) {
                    self.stats.failed(op_index(op), 1);
                    self.table.acknowledge(op, *m, false);
                }
                tracing::warn!(subsys = "dataplane", error = %e, "route batch failed");
                return;
            }
        };
        for (i, (op, m)) in ops.iter().zip(meta).enumerate() {
            if let Some(next) = ops.get(i + PREFETCH_AHEAD) {
                self.table.prefetch(&next.route().dst);
            }
            while failed.next_if(|e| e.index < i).is_some() {}
            let ok = match failed.next_if(|e| e.index == i) {
                Some(OpError { error: e, .. }) => {
                    if !super::refusals::is_shadowed(op, &e) {
                        self.stats.failed(op_index(op), 1);
                    }
                    self.refusals.refused(op, &e);
                    false
                }
                None => {
                    let counter = match op {
                        RouteOp::Add(_) => &self.stats.adds,
                        RouteOp::Replace(_) => &self.stats.replaces,
                        RouteOp::Delete(_) => &self.stats.deletes,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.refusals.accepted(&op.route().dst);
                    true
                }
            };
            self.table.acknowledge(op, *m, ok);
        }
        self.stats.shadowed.store(self.refusals.shadowed() as u64, Ordering::Relaxed);
    }

    async fn monitor_control(&self, make: fn(oneshot::Sender<()>) -> MonitorControl) {
        let (tx, rx) = oneshot::channel();
        if self.monitor.send(make(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    fn publish(&self) {
        let by_kind = self.table.by_kind();
        self.state_tx.send_if_modified(|s| {
            if s.synced != self.synced_published || s.routes_by_kind != *by_kind {
                s.synced = self.synced_published;
                s.routes_by_kind.clone_from(by_kind);
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
