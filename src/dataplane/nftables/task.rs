//! The owner task of tortie's nftables table: it alone writes the table;
//! users send their sections through [`NftTable`].

use super::command::{NftCommand, NftError};
use super::delta;
use super::fingerprint::{self, Fingerprint};
use super::render::{self, Desired, Section};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Sections waiting for the owner; a full queue makes the user wait.
const COMMAND_CAPACITY: usize = 64;
/// How often a write is repeated when the table read back right after it
/// is already changed by someone else.
const WRITE_ATTEMPTS: usize = 3;
/// How soon a failed write is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How long after the last of a burst of writes of rules, chains or sets it is read back, at
/// least.
const DEFER: Duration = Duration::from_millis(200);
/// A burst is over when no write of rules, chains or sets came for this many times as long as
/// the last reading took: a reading (`nft` listing a thousand policies' table takes most of a
/// second of CPU) then costs at most about a fifth of a core however often policies change,
/// and a write during a reading stops it, since its result would be judged stale.
const READBACK_SPACING: u32 = 4;
/// The periodic drift check reads the whole table with `nft` (a second of CPU with a thousand
/// policies, and as much to parse it): it is skipped until this many times as long as the last
/// reading took has passed since the last check, so an idle agent spends at most about
/// 1/`REPAIR_SHARE` of a core on it however large the table.
const REPAIR_SHARE: u32 = 50;
/// How long after the last write the fingerprint is saved: rendering the whole table for its
/// digest costs about as much as writing it, so not on every pod's change.
const FINGERPRINT_AFTER: Duration = Duration::from_secs(2);

/// How the table is kept.
#[derive(Debug, Clone)]
pub struct NftTableConfig {
    /// The table's name (family `inet`).
    pub name: String,
    /// Every user that will send a section; the table is first written once
    /// all of them have (until then an existing table is left as it is).
    pub users: Vec<&'static str>,
    /// How often the table is read back and repaired.
    pub resync_interval: Duration,
    pub command: NftCommand,
    /// Where the fingerprint of the last write is kept, so that a restarted owner adopts a
    /// table that is exactly what it would write without touching it (`None`: always write).
    pub fingerprint: Option<PathBuf>,
}

/// Counters, read at scrape time.
#[derive(Debug, Default)]
pub struct NftStats {
    /// Transactions written (whole table or set elements).
    pub applies: AtomicU64,
    /// Of those, set-element transactions over nfnetlink.
    pub element_writes: AtomicU64,
    /// Of those, transactions that changed only the chains and sets that changed.
    pub partial_writes: AtomicU64,
    /// `nft` runs that failed (writing or reading back).
    pub apply_errors: AtomicU64,
    /// Whole rewrites after the table was found changed by someone else.
    pub repairs: AtomicU64,
    /// Readings of the whole table (`nft -j list`): after a write, and the periodic drift check
    /// unless nothing was committed since the last reading.
    pub readings: AtomicU64,
}

/// The table's state, for status and readiness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NftState {
    /// True once the kernel's table is the desired one.
    pub synced: bool,
    /// The last failure, until a write succeeds.
    pub last_error: Option<String>,
}

enum Command {
    Section(&'static str, Section),
    Remove(oneshot::Sender<Result<(), String>>),
    /// Answered once everything sent before it has been handled (written or not).
    Probe(oneshot::Sender<()>),
}

/// The handle to the table's owner task.
#[derive(Clone)]
pub struct NftTable {
    commands: mpsc::Sender<Command>,
    /// How `nft` is run (users check their rules with it).
    pub command: NftCommand,
    pub stats: Arc<NftStats>,
    pub state: watch::Receiver<NftState>,
}

impl NftTable {
    /// Starts the owner task; it ends when every handle is dropped.
    pub fn start(config: NftTableConfig) -> (NftTable, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        let stats = Arc::new(NftStats::default());
        let (state_tx, state_rx) = watch::channel(NftState::default());
        let command = config.command.clone();
        let owner = Owner {
            config,
            desired: Desired::new(),
            written: None,
            stats: stats.clone(),
            state: state_tx,
            structure_writes: 0,
            verify_failures: 0,
            readback: None,
            last_reading: Duration::ZERO,
            verify_at: None,
            fingerprint_at: None,
            repaired_at: None,
            unchanged_since: None,
        };
        let task = tokio::spawn(owner.run(rx));
        (NftTable { commands: tx, command, stats, state: state_rx }, task)
    }

    /// Replaces `user`'s section (written at once when every user has sent one).
    pub async fn set_section(&self, user: &'static str, section: Section) {
        // The owner is gone only when the agent stops.
        let _ = self.commands.send(Command::Section(user, section)).await;
    }

    /// Returns once the owner has handled everything sent before, its
    /// [`NftState`] updated (for users, tests and liveness); false when it
    /// has stopped.
    pub async fn probe(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Probe(tx)).await.is_ok() && rx.await.is_ok()
    }

    /// Deletes the table and stops writing it (for `dataplane.cleanup_on_exit`).
    pub async fn remove(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Remove(tx)).await.map_err(|_| "the nftables owner has stopped".to_string())?;
        rx.await.map_err(|_| "the nftables owner has stopped".to_string())?
    }
}

/// Answers probes (a probe whose sender gave up needs no answer).
fn answer(probes: Vec<oneshot::Sender<()>>) {
    for probe in probes {
        let _ = probe.send(());
    }
}

/// What the owner last wrote: the desired state and the digest of the table as the
/// kernel listed it after the last write of rules, chains or sets, without
/// set elements ([`Listed::skeleton`]); `None` until that write is read back.
struct Written {
    desired: Desired,
    skeleton: Option<String>,
    /// The fingerprint file is behind `desired`.
    fingerprint_stale: bool,
}

/// Why the table is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A write of rules, chains or sets, read back for the drift reference.
    Verify,
    /// The periodic check for someone else's changes.
    Repair,
}

/// A listing of the table in flight. It runs beside the owner's writes, so
/// reading a large table never holds a change up; what it shows is judged
/// against the writes made since it started.
struct Readback {
    purpose: Purpose,
    /// [`Owner::structure_writes`] and the element writes when it started.
    structure: u64,
    elements: u64,
    started: tokio::time::Instant,
    listing: std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Listed>, NftError>> + Send>>,
}

/// A listing compared with what was written, on a blocking thread: parsing a thousand
/// policies' table, reducing it and comparing it take hundreds of milliseconds the owner's
/// writes need (a pod's change waited up to 50 ms behind the comparison alone).
struct Listed {
    /// The digest of its skeleton ([`render::skeleton`], [`fingerprint::digest`]): the
    /// reference a periodic check compares with. Kept as a digest, not as JSON: a thousand
    /// policies' skeleton held tens of megabytes, and dropping it cost a pod's change 55 ms.
    skeleton: String,
    /// Its chains, rules and sets are the desired ones (reading back a write), or equal the
    /// reference (the periodic check).
    structure_good: bool,
    /// Its set elements are the desired ones.
    elements_good: bool,
    /// nf_tables' generation just before the listing: while it stays the same, the table is
    /// as listed.
    generation: Option<u32>,
}

impl Listed {
    /// `text` compared with `desired` and, for the periodic check, with the `reference`
    /// skeleton read back after the last write.
    fn read(text: String, purpose: Purpose, desired: &Desired, reference: Option<&str>) -> Result<Listed, NftError> {
        let listing = super::command::parse_listing(&text)?;
        let skeleton = fingerprint::digest(&render::skeleton(&listing));
        let structure_good = match (purpose, reference) {
            (Purpose::Verify, _) => render::structure_matches(desired, &listing),
            (Purpose::Repair, Some(reference)) => skeleton == reference,
            (Purpose::Repair, None) => false,
        };
        let elements_good = render::listed_elements(&listing) == render::desired_elements(desired);
        Ok(Listed { skeleton, structure_good, elements_good, generation: None })
    }
}

struct Owner {
    config: NftTableConfig,
    desired: Desired,
    written: Option<Written>,
    stats: Arc<NftStats>,
    state: watch::Sender<NftState>,
    /// Writes of rules, chains or sets (whole or partial) so far.
    structure_writes: u64,
    /// Writes read back and found changed in a row.
    verify_failures: usize,
    readback: Option<Readback>,
    /// How long the last finished reading took.
    last_reading: Duration,
    /// When the write of rules, chains or sets is read back (the last of a burst).
    verify_at: Option<tokio::time::Instant>,
    /// When the fingerprint is saved (after the writes stop for a while).
    fingerprint_at: Option<tokio::time::Instant>,
    /// When the last periodic drift check started.
    repaired_at: Option<tokio::time::Instant>,
    /// nf_tables' generation before the last reading that found the table as written.
    unchanged_since: Option<u32>,
}

/// Whether the periodic drift check is due at `now`, the last one started at `last` and the
/// last reading of the table having taken `reading`.
fn repair_due(last: Option<tokio::time::Instant>, now: tokio::time::Instant, reading: Duration) -> bool {
    last.is_none_or(|at| now >= at + reading * REPAIR_SHARE)
}

impl Owner {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let interval = self.config.resync_interval;
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry: Option<tokio::time::Instant> = None;
        let mut removed = false;
        let never = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        loop {
            let mut probes = Vec::new();
            let (retry_at, verify_at, fingerprint_at) = (
                retry.unwrap_or_else(never),
                self.verify_at.unwrap_or_else(never),
                self.fingerprint_at.unwrap_or_else(never),
            );
            let (ready, verifying, fingerprinting) =
                (!removed && self.ready(), self.verify_at.is_some(), self.fingerprint_at.is_some());
            let listed = async {
                match &mut self.readback {
                    Some(r) => r.listing.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            let result = tokio::select! {
                command = commands.recv() => {
                    let Some(mut command) = command else {
                        if !removed {
                            self.stop().await;
                        }
                        return;
                    };
                    loop {
                        match command {
                            Command::Section(user, section) => { self.desired.insert(user, section); }
                            Command::Remove(reply) => {
                                removed = true;
                                let _ = reply.send(self.remove().await);
                            }
                            Command::Probe(reply) => probes.push(reply),
                        }
                        match commands.try_recv() {
                            Ok(next) => command = next,
                            Err(_) => break,
                        }
                    }
                    if removed || !self.ready() { Ok(()) } else { self.write().await }
                }
                _ = resync.tick(), if ready => self.resync().await,
                // The outcome below sets `retry` again.
                _ = tokio::time::sleep_until(retry_at), if retry.is_some() => {
                    if removed || !self.ready() { Ok(()) } else { self.write().await }
                }
                listing = listed => {
                    let readback = self.readback.take().expect("polled only when present");
                    self.judge(readback, listing).await
                }
                _ = tokio::time::sleep_until(verify_at), if verifying => {
                    self.verify_at = None;
                    self.start_readback(Purpose::Verify);
                    Ok(())
                }
                _ = tokio::time::sleep_until(fingerprint_at), if fingerprinting => {
                    self.fingerprint_at = None;
                    self.save_fingerprint().await;
                    Ok(())
                }
            };
            retry = match result {
                Ok(()) => None,
                Err(e) => {
                    self.stats.apply_errors.fetch_add(1, Relaxed);
                    tracing::warn!(subsys = "nftables", table = %self.config.name, error = %e, "cannot write the nftables table; trying again");
                    self.written = None;
                    self.readback = None;
                    self.state.send_replace(NftState { synced: false, last_error: Some(e) });
                    Some(tokio::time::Instant::now() + RETRY_AFTER)
                }
            };
            // After the state: a prober reads the outcome of what it sent.
            answer(probes);
        }
    }

    /// Whether every user has given its section (until then an existing table stays as it is).
    fn ready(&self) -> bool {
        self.config.users.iter().all(|u| self.desired.contains_key(u))
    }

    /// Starts reading the table, unless a reading is under way.
    fn start_readback(&mut self, purpose: Purpose) {
        if self.readback.is_some() || self.written.is_none() {
            return;
        }
        self.stats.readings.fetch_add(1, Relaxed);
        let (command, name) = (self.config.command.clone(), self.config.name.clone());
        // Cheap copies: a section's sets and chains are shared, the skeleton is a digest.
        let written = self.written.as_ref().map(|w| (w.desired.clone(), w.skeleton.clone()));
        let (desired, reference) = written.unwrap_or_default();
        self.readback = Some(Readback {
            purpose,
            structure: self.structure_writes,
            elements: self.stats.element_writes.load(Relaxed),
            started: tokio::time::Instant::now(),
            listing: Box::pin(async move {
                let generation = command.generation().await.ok();
                let Some(text) = command.list_table_text(&name).await? else { return Ok(None) };
                let listed =
                    tokio::task::spawn_blocking(move || Listed::read(text, purpose, &desired, reference.as_deref()));
                let listed = listed.await.map_err(|e| NftError::BadJson(e.to_string()))??;
                Ok(Some(Listed { generation, ..listed }))
            }),
        });
    }

    /// The periodic check: the table read (a write not read back yet is read back first), or
    /// written when it is not.
    async fn resync(&mut self) -> Result<(), String> {
        match &self.written {
            None => self.write().await,
            Some(w) if w.skeleton.is_none() => {
                self.verify_at = None;
                self.start_readback(Purpose::Verify);
                Ok(())
            }
            Some(_) => {
                // Nothing committed to any table since the last reading found ours as written.
                if self.unchanged_since.is_some() && self.config.command.generation().await.ok() == self.unchanged_since
                {
                    return Ok(());
                }
                let now = tokio::time::Instant::now();
                if self.readback.is_none() && repair_due(self.repaired_at, now, self.last_reading) {
                    self.repaired_at = Some(now);
                    self.start_readback(Purpose::Repair);
                }
                Ok(())
            }
        }
    }

    /// What a finished reading says. A write of rules, chains or sets since it started makes
    /// it say nothing (another is started for that write); element writes since make it say
    /// nothing about elements.
    async fn judge(&mut self, readback: Readback, listing: Result<Option<Listed>, NftError>) -> Result<(), String> {
        let name = self.config.name.clone();
        self.last_reading = readback.started.elapsed();
        let listing = listing.map_err(|e| e.to_string())?;
        let Some(w) = &mut self.written else { return Ok(()) };
        if readback.structure != self.structure_writes {
            if w.skeleton.is_none() {
                self.verify_at = Some(self.verify_time());
            }
            return Ok(());
        }
        let elements_settled = readback.elements == self.stats.element_writes.load(Relaxed);
        // What it was compared with at its start is what is written now: only writes change it.
        let good = listing.as_ref().is_some_and(|l| l.structure_good && (!elements_settled || l.elements_good));
        // Only a reading that compared everything vouches for the table at its generation: one
        // that skipped the elements (ours were written meanwhile) vouches for nothing.
        self.unchanged_since =
            if good && elements_settled { listing.as_ref().and_then(|l| l.generation) } else { None };
        if good {
            if w.skeleton.is_none() {
                w.skeleton = listing.map(|l| l.skeleton);
                self.verify_failures = 0;
                self.fingerprint_at = Some(tokio::time::Instant::now() + DEFER);
            }
            return Ok(());
        }
        if readback.purpose == Purpose::Verify {
            self.verify_failures += 1;
            if self.verify_failures >= WRITE_ATTEMPTS {
                self.verify_failures = 0;
                return Err(format!("the table inet {name} keeps changing while it is written"));
            }
        }
        tracing::warn!(subsys = "nftables", table = %name, "the nftables table was changed by someone else; rewriting it");
        self.stats.repairs.fetch_add(1, Relaxed);
        self.written = None;
        self.write().await
    }

    /// Stopping (every handle dropped): what a restart needs to adopt the table is saved
    /// first, the write read back if it was not yet.
    async fn stop(&mut self) {
        let Some(w) = &self.written else { return };
        if !w.fingerprint_stale || self.config.fingerprint.is_none() {
            return;
        }
        if w.skeleton.is_none() {
            self.readback = None;
            self.start_readback(Purpose::Verify);
            if let Some(mut r) = self.readback.take() {
                let listing = r.listing.as_mut().await;
                if self.judge(r, listing).await.is_err() {
                    return;
                }
            }
        }
        self.save_fingerprint().await;
    }

    /// Brings the kernel to the desired table, cheapest first: only the
    /// changed set elements when that is the only difference from what was
    /// written (over nfnetlink); else the changed chains and sets (one `nft`
    /// transaction, [`delta`]); else, or when the kernel refuses either, the
    /// whole table by `nft`. Reading a whole write back is
    /// deferred work ([`Self::deferred`]): the kernel took the transaction
    /// when `nft` returned.
    async fn write(&mut self) -> Result<(), String> {
        let name = self.config.name.clone();
        if self.written.is_none() && self.adopt().await {
            return Ok(());
        }
        if let Some(w) = &mut self.written {
            if w.desired == self.desired {
                // Equal, maybe by value: keep the users' copies, whose sets and chains the next
                // section shares, so the next comparison goes by pointer.
                w.desired = self.desired.clone();
                return Ok(());
            }
            if let Some(changes) = render::element_changes(&w.desired, &self.desired).map_err(|e| e.to_string())? {
                match self.config.command.write_elements(&name, changes).await {
                    Ok(()) => {
                        w.desired = self.desired.clone();
                        w.fingerprint_stale = true;
                        self.stats.applies.fetch_add(1, Relaxed);
                        self.stats.element_writes.fetch_add(1, Relaxed);
                        self.state.send_replace(NftState { synced: true, last_error: None });
                        if w.skeleton.is_some() {
                            self.fingerprint_at = Some(tokio::time::Instant::now() + FINGERPRINT_AFTER);
                        }
                        return Ok(());
                    }
                    // Our idea of the elements in the kernel is wrong (someone changed a set):
                    // the whole table makes it right.
                    Err(e) => {
                        tracing::warn!(subsys = "nftables", table = %name, error = %e, "cannot change set elements; writing the whole table");
                        self.stats.repairs.fetch_add(1, Relaxed);
                        self.written = None;
                    }
                }
            }
        }
        if let Some(w) = &mut self.written
            && let Some(batch) = delta::update_table(&name, &w.desired, &self.desired).map_err(|e| e.to_string())?
        {
            match self.config.command.apply(batch).await {
                Ok(()) => {
                    w.desired = self.desired.clone();
                    // Read back as a whole write is: the reference for drift changed.
                    w.skeleton = None;
                    w.fingerprint_stale = true;
                    self.stats.partial_writes.fetch_add(1, Relaxed);
                    self.wrote_structure();
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(subsys = "nftables", table = %name, error = %e, "cannot change the table in part; writing it whole");
                }
            }
        }
        let batch = render::replace_table(&name, &self.desired).map_err(|e| e.to_string())?;
        self.config.command.apply(batch).await.map_err(|e| e.to_string())?;
        self.written = Some(Written { desired: self.desired.clone(), skeleton: None, fingerprint_stale: true });
        self.wrote_structure();
        Ok(())
    }

    /// After a write of rules, chains or sets: counted, and read back once a burst of them
    /// is over.
    fn wrote_structure(&mut self) {
        self.structure_writes += 1;
        self.stats.applies.fetch_add(1, Relaxed);
        // A reading under way would be judged stale: stopped (its `nft` is killed).
        self.readback = None;
        self.verify_at = Some(self.verify_time());
        self.state.send_replace(NftState { synced: true, last_error: None });
    }

    /// When a write of rules, chains or sets made now is read back, if no other follows.
    fn verify_time(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + DEFER.max(self.last_reading * READBACK_SPACING)
    }

    /// Takes the kernel's table as written when the fingerprint of the last write says it is
    /// exactly what the desired state renders to (a restarted agent: no transaction, the
    /// rules keep their handles and counters).
    async fn adopt(&mut self) -> bool {
        let Some(path) = &self.config.fingerprint else { return false };
        let Some(saved) = fingerprint::load(path).await else { return false };
        let Ok(batch) = render::replace_table(&self.config.name, &self.desired) else { return false };
        if saved.desired != fingerprint::digest(&batch) {
            return false;
        }
        let Ok(Some(listing)) = self.config.command.list_table(&self.config.name).await else { return false };
        let skeleton = fingerprint::digest(&render::skeleton(&listing));
        if saved.listing != skeleton || !render::shape_matches(&self.desired, &listing) {
            return false;
        }
        tracing::info!(subsys = "nftables", table = %self.config.name, "adopted the table as the last run left it");
        self.written =
            Some(Written { desired: self.desired.clone(), skeleton: Some(skeleton), fingerprint_stale: false });
        self.state.send_replace(NftState { synced: true, last_error: None });
        true
    }

    async fn save_fingerprint(&mut self) {
        let Some(written) = &mut self.written else { return };
        let Some(skeleton) = &written.skeleton else { return };
        written.fingerprint_stale = false;
        let Some(path) = &self.config.fingerprint else { return };
        let Ok(batch) = render::replace_table(&self.config.name, &written.desired) else { return };
        let saved = Fingerprint { desired: fingerprint::digest(&batch), listing: skeleton.clone() };
        if let Err(e) = fingerprint::save(path, &saved).await {
            // Only adoption after a restart needs it: without it the table is written once.
            tracing::debug!(subsys = "nftables", path = %path.display(), error = %e, "cannot save the table's fingerprint");
        }
    }

    async fn remove(&mut self) -> Result<(), String> {
        self.written = None;
        if let Some(path) = &self.config.fingerprint {
            fingerprint::remove(path).await;
        }
        self.state.send_replace(NftState::default());
        self.config.command.apply(render::delete_table(&self.config.name)).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_is_slow_to_read_is_checked_for_drift_less_often() {
        let start = tokio::time::Instant::now();
        let after = |ms: u64| start + Duration::from_millis(ms);
        assert!(repair_due(None, start, Duration::from_secs(1)), "the first check");
        // A 10 ms reading: every tick of a 1 s interval.
        assert!(repair_due(Some(start), after(1_000), Duration::from_millis(10)));
        // A 1 s reading: not before 50 s.
        assert!(!repair_due(Some(start), after(30_000), Duration::from_secs(1)));
        assert!(repair_due(Some(start), after(50_000), Duration::from_secs(1)));
    }
}
