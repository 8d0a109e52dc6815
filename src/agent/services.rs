//! Service addresses over BGP, as the agent runs it: follows the BGPConfigurations, Services
//! and EndpointSlices by their watches (each event applied to a copy of the state, the events
//! ready at once taken together), recomputes what this node advertises
//! (`crate::services::advertisements`, pure) and originates and withdraws the difference in the
//! RIB, each prefix with its communities. Event driven: an endpoint turning not-ready is
//! withdrawn as soon as its EndpointSlice's change arrives. Publishes the advertised prefixes
//! (status, `tortie bgp routes`) and the service CIDRs (the remote-routes stage installs nothing
//! within them).

use crate::bgp::rib::{CommunityRule, Rib};
use crate::datastore::resources::{BgpConfiguration, EndpointSlice, Service};
use crate::datastore::{Datastore, Resource, WatchEvent, WatchStream};
use crate::services::{Advertisements, advertisements};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::watch;

/// How long a lost watch waits before it is opened again (it then starts with a full listing).
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// The BGPConfiguration whose service fields apply (Calico reads them from `default` only).
const DEFAULT: &str = "default";
/// The name the RIB's End-of-RIB hold knows this task's prefixes by.
pub const RIB_SOURCE: &str = "services";
/// The longest End-of-RIB waits for the service prefixes after start (when a watch cannot be
/// opened, for instance without the RBAC for Services): then it goes without them.
const LOAD_MAX: Duration = Duration::from_secs(10);

/// The records of one kind, as its watch has told them.
struct Mirror<R: Resource> {
    watch: Option<WatchStream<R>>,
    items: BTreeMap<String, R>,
    /// A full listing has arrived.
    listed: bool,
    /// The last attempt to open the watch failed (warned once, until it opens again).
    failing: bool,
}

impl<R: Resource> Mirror<R> {
    fn new() -> Self {
        Mirror { watch: None, items: BTreeMap::new(), listed: false, failing: false }
    }

    async fn open(&mut self, ds: &Datastore) {
        if self.watch.is_none() {
            match ds.watch::<R>(None).await {
                Ok(w) => {
                    self.watch = Some(w);
                    self.failing = false;
                }
                Err(e) if !self.failing => {
                    self.failing = true;
                    tracing::warn!(subsys = "services", kind = %R::KIND, error = %e, "cannot watch; retrying every second")
                }
                Err(e) => tracing::debug!(subsys = "services", kind = %R::KIND, error = %e, "cannot watch yet"),
            }
        }
    }

    /// Applies one event; `false` when the watch ended.
    fn apply(&mut self, event: Option<crate::datastore::Result<WatchEvent<R>>>) -> bool {
        match event {
            Some(Ok(WatchEvent::Added(s) | WatchEvent::Modified(s))) => {
                self.items.insert(s.name, s.spec);
            }
            Some(Ok(WatchEvent::Deleted { name, .. })) => {
                self.items.remove(&name);
            }
            Some(Ok(WatchEvent::Resync(listing))) => {
                self.items = listing.items.into_iter().map(|s| (s.name, s.spec)).collect();
                self.listed = true;
            }
            Some(Ok(WatchEvent::Bookmark(_))) => {}
            // A record that does not decode: the stream goes on; the record keeps its last
            // good state (the message names it, its field and value).
            Some(Err(e)) => {
                tracing::warn!(subsys = "services", kind = %R::KIND, error = %e, "record ignored; keeping its last good state")
            }
            None => {
                self.watch = None;
                return false;
            }
        }
        true
    }

    async fn next(&mut self) -> Option<crate::datastore::Result<WatchEvent<R>>> {
        match &mut self.watch {
            Some(w) => w.next().await,
            None => std::future::pending().await,
        }
    }

    /// Applies every event that is ready now without waiting.
    fn drain(&mut self) {
        use futures::FutureExt;
        while let Some(w) = &mut self.watch {
            match w.next().now_or_never() {
                Some(event) => {
                    if !self.apply(event) {
                        break;
                    }
                }
                None => break,
            }
        }
    }
}

/// Tells the RIB this task's prefixes are in, once: End-of-RIB may go.
async fn say_loaded(rib: &Option<Rib>, loaded: &mut bool) {
    *loaded = true;
    if let Some(rib) = rib {
        rib.local_prefixes_loaded_by(RIB_SOURCE).await;
    }
}

/// Follows the inputs and keeps the RIB's service prefixes equal to
/// [`advertisements`] until `stop`. `rib` is `None` without BGP: nothing is originated, the CIDRs
/// are still published.
pub async fn follow(
    ds: Datastore,
    node: String,
    rib: Option<Rib>,
    published: watch::Sender<Advertisements>,
    cidrs: watch::Sender<BTreeSet<IpNetwork>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut configs = Mirror::<BgpConfiguration>::new();
    let mut services = Mirror::<Service>::new();
    let mut slices = Mirror::<EndpointSlice>::new();
    let mut announced = Advertisements::default();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut reopen = tokio::time::interval(REOPEN_AFTER);
    // End-of-RIB waits for the first full set of service prefixes, or for LOAD_MAX.
    let mut loaded = false;
    let load_deadline = tokio::time::sleep(LOAD_MAX);
    tokio::pin!(load_deadline);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = &mut load_deadline, if !loaded => {
                tracing::warn!(subsys = "services", waited_s = LOAD_MAX.as_secs(), "service resources not listed in time; End-of-RIB goes without them");
                say_loaded(&rib, &mut loaded).await;
            }
            _ = reopen.tick() => {
                configs.open(&ds).await;
                services.open(&ds).await;
                slices.open(&ds).await;
            }
            ev = configs.next() => { configs.apply(ev); }
            ev = services.next() => { services.apply(ev); }
            ev = slices.next() => { slices.apply(ev); }
        }
        configs.drain();
        services.drain();
        slices.drain();
        let config = configs.items.get(DEFAULT);
        let wanted = advertisements(config, &services.items, &slices.items, &node);
        for problem in wanted.problems.iter().filter(|p| !reported.contains(*p)) {
            tracing::warn!(subsys = "services", problem = %problem, "service communities ignored");
        }
        reported = wanted.problems.iter().cloned().collect();
        let all_listed = configs.listed && services.listed && slices.listed;
        if wanted == announced {
            if all_listed && !loaded {
                say_loaded(&rib, &mut loaded).await;
            }
            continue;
        }
        if let Some(rib) = &rib {
            for (prefix, advertised) in &wanted.prefixes {
                if announced.prefixes.get(prefix).map(|a| &a.communities) != Some(&advertised.communities) {
                    rib.originate_with(CommunityRule::new(*prefix, advertised.communities.iter().copied())).await;
                }
            }
            for prefix in announced.prefixes.keys().filter(|p| !wanted.prefixes.contains_key(*p)) {
                rib.withdraw(*prefix).await;
            }
        }
        let service_cidrs: BTreeSet<IpNetwork> = crate::services::ServiceCidrs::of(config).all().collect();
        cidrs.send_if_modified(|old| {
            let changed = *old != service_cidrs;
            *old = service_cidrs;
            changed
        });
        tracing::info!(
            subsys = "services",
            prefixes = wanted.prefixes.len(),
            services = services.items.len(),
            "service prefixes advertised"
        );
        announced = wanted;
        published.send_replace(announced.clone());
        if all_listed && !loaded {
            say_loaded(&rib, &mut loaded).await;
        }
    }
}
