//! The resources tern holds from the control plane, and what an update does to them.
//!
//! An [`Update`] (one response of one type, from a stream or a file) is decoded and compiled
//! here, off the data path's threads. LDS and CDS apply every valid resource of a response and
//! reject the invalid ones by name; RDS, EDS and SDS reject a response as a whole. Accepted
//! resources swap new snapshots into [`World`]:
//! - a new or changed cluster warms until its endpoints arrive (EDS) or its initial fetch
//!   times out, while the version it replaces keeps serving;
//! - a new or changed listener warms until its route tables (RDS) arrive, then takes over its
//!   socket ([`ListenerManager`]);
//! - endpoints update their cluster's hosts in place (pools of hosts that stay are kept).
//!
//! The store also says what tern wants from each source ([`Store::interest`]): every EDS
//! name its clusters use, every RDS name its listeners use, every secret either needs. The
//! streams follow that set (subscribe, unsubscribe), and resources nobody uses any more are
//! dropped.

mod clusters;
mod decode;
mod interest;
mod listeners;
mod resources;
#[cfg(test)]
mod tests;
mod wildcard;

use super::stats::UpdateStats;
use wildcard::Wildcard;

pub use decode::rds_names;
use decode::{decode, longest, rds_refs, sds_refs, version_hash};

use super::source::{Plan, Resolved, SourceKey};
use super::{Kind, stats::XdsStats};
use crate::config::ConfigError;
use crate::listener::ListenerManager;
use crate::router::RouteTable;
use crate::snapshot::{ClusterMap, Listener, ListenerMap, NetworkFilter, RouteSource, World};
use crate::upstream::cluster::Cluster;
use crate::upstream::host::PrioritySet;
use crate::upstream::load_assignment;
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Whether the first configuration is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    /// Waiting for the first CDS/LDS responses and what they depend on.
    Initializing,
    /// Everything the first responses named has arrived or timed out.
    Initialized,
}

/// What a stream should ask a source for, for one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    /// Every resource (LDS, CDS).
    Wildcard,
    /// These names (shared, so a stream can hold what it sent without copying).
    Names(Arc<BTreeSet<String>>),
}

impl Interest {
    /// Interest in `names`.
    pub fn names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Interest {
        Interest::Names(Arc::new(names.into_iter().map(Into::into).collect()))
    }
}

/// One resource as it arrived.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The name the source gave it (delta), or empty (SotW: the name is inside).
    pub name: String,
    /// Its version (delta: per resource; SotW: the response's `version_info`).
    pub version: String,
    /// The resource.
    pub any: Any,
}

/// One response's worth of changes for one type.
#[derive(Debug, Clone)]
pub struct Update {
    /// The type.
    pub kind: Kind,
    /// Where it came from.
    pub source: SourceKey,
    /// SotW `version_info` or delta `system_version_info`.
    pub version_info: String,
    /// Added or changed resources.
    pub resources: Vec<Incoming>,
    /// Removed names (delta).
    pub removed: Vec<String>,
    /// A state-of-the-world response: LDS/CDS resources it does not list are removed.
    pub state_of_world: bool,
}

/// What became of an update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Names of the resources accepted (for delta versions).
    pub accepted: Vec<String>,
    /// Why (part of) the update was rejected: the NACK's `error_detail.message`.
    pub error: Option<String>,
}

/// When and at which version a resource was accepted.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Its version.
    pub version: String,
    /// When it was accepted.
    pub last_updated: SystemTime,
}

impl Meta {
    fn now(version: &str) -> Meta {
        Meta {
            version: version.to_string(),
            last_updated: SystemTime::now(),
        }
    }
}

/// A dynamic cluster.
#[derive(Debug, Clone)]
pub struct ClusterEntry {
    /// Version and time.
    pub meta: Meta,
    /// The compiled cluster.
    pub cluster: Arc<Cluster>,
    deadline: Option<Instant>,
}

/// A dynamic listener.
#[derive(Debug, Clone)]
pub struct ListenerEntry {
    /// Version and time.
    pub meta: Meta,
    /// The compiled listener.
    pub listener: Arc<Listener>,
    deadline: Option<Instant>,
}

/// A route table from RDS.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// Version and time.
    pub meta: Meta,
    /// The proto's encoding as received (a large route table is several times bigger decoded;
    /// the compiled table is what serves).
    pub raw: Arc<[u8]>,
}

impl RouteEntry {
    /// The route configuration as received.
    pub fn source(&self) -> Option<RouteConfiguration> {
        RouteConfiguration::decode(&*self.raw).ok()
    }
}

/// Endpoints from EDS.
#[derive(Debug, Clone)]
pub struct EndpointEntry {
    /// Version and time.
    pub meta: Meta,
    /// A hash of the assignment's encoding, to tell an unchanged one.
    pub hash: u64,
}

/// A secret from SDS.
#[derive(Debug, Clone)]
pub struct SecretEntry {
    /// Version and time.
    pub meta: Meta,
    /// The secret.
    pub secret: Arc<Secret>,
}

/// The last rejection of a resource, for `/config_dump`'s `error_state`.
#[derive(Debug, Clone)]
pub struct ErrorState {
    /// The rejected version.
    pub version: String,
    /// Why.
    pub details: String,
    /// When.
    pub at: SystemTime,
    /// The rejected resource as it arrived (possibly in a `Resource` wrapper), for
    /// `error_state.failed_configuration`.
    pub failed: Option<Any>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not asked for yet (LDS waits for CDS).
    NotStarted,
    /// Asked; done when the first response is in and its resources are warm, or at the
    /// deadline.
    Waiting {
        responded: bool,
        deadline: Option<Instant>,
    },
    Done,
}

/// The xDS state.
pub struct Store {
    world: Arc<World>,
    listener_manager: Arc<ListenerManager>,
    plan: Plan,
    static_clusters: ClusterMap,
    static_listeners: ListenerMap,
    /// Active dynamic clusters (keyed by the cluster's own name: one copy per cluster).
    pub clusters: BTreeMap<Arc<str>, ClusterEntry>,
    /// Dynamic clusters waiting for their endpoints.
    pub warming_clusters: BTreeMap<Arc<str>, ClusterEntry>,
    /// Active dynamic listeners.
    pub listeners: BTreeMap<String, ListenerEntry>,
    /// Dynamic listeners waiting for their route tables.
    pub warming_listeners: BTreeMap<String, ListenerEntry>,
    /// RDS route configurations.
    pub routes: HashMap<String, RouteEntry>,
    /// EDS assignments, by service name (shared with the cluster of that name, if any).
    pub endpoints: HashMap<Arc<str>, EndpointEntry>,
    /// Service name of each assignment's hash, for assignments that came without a name
    /// (state of the world), to skip unchanged ones undecoded.
    endpoint_hashes: HashMap<u64, String>,
    /// EDS service name → the clusters using it that are named otherwise (rebuilt with the
    /// interest); a cluster named after its service, as all of Istio's are, is found by name.
    eds_index: HashMap<String, Vec<String>>,
    /// SDS secrets.
    pub secrets: HashMap<String, SecretEntry>,
    /// The last rejection of each resource that has one.
    pub errors: BTreeMap<(Kind, String), ErrorState>,
    /// `version_info` per type: for LDS and CDS, of the last update that added, changed or
    /// removed something (Envoy's `system_version_info`); for the others, of the last update
    /// accepted. Shown by `/config_dump`.
    pub versions: HashMap<Kind, String>,
    interest: BTreeMap<(SourceKey, Kind), Interest>,
    /// The interest must be recomputed.
    dirty: bool,
    /// The interest changed and the streams have not been told.
    interest_changed: bool,
    cds_phase: Phase,
    lds_phase: Phase,
    init: watch::Sender<InitState>,
    stats: XdsStats,
    /// Replaced snapshots and resources, dropped here once nobody else holds them, so that the
    /// last reference of a large map is never dropped on a worker thread in the middle of a
    /// request.
    graveyard: Vec<Arc<dyn std::any::Any + Send + Sync>>,
    /// A large update retired snapshots: once they are dropped, give the freed pages back.
    trim_after_sweep: bool,
}

impl Store {
    /// A store over `world`'s static resources.
    pub fn new(world: Arc<World>, listener_manager: Arc<ListenerManager>, plan: Plan) -> Store {
        let now = Instant::now();
        let waiting = |r: &Resolved| Phase::Waiting {
            responded: false,
            deadline: r.initial_fetch_timeout.map(|t| now + t),
        };
        let cds_phase = plan.cds.as_ref().map_or(Phase::Done, waiting);
        let lds_phase = match &plan.lds {
            None => Phase::Done,
            Some(_) => Phase::NotStarted,
        };
        let (init, _) = watch::channel(InitState::Initializing);
        let stats = XdsStats::new(&world.stats);
        let mut s = Store {
            static_clusters: (**world.clusters.load()).clone(),
            static_listeners: (**world.listeners.load()).clone(),
            world,
            listener_manager,
            plan,
            clusters: BTreeMap::new(),
            warming_clusters: BTreeMap::new(),
            listeners: BTreeMap::new(),
            warming_listeners: BTreeMap::new(),
            routes: HashMap::new(),
            endpoints: HashMap::new(),
            endpoint_hashes: HashMap::new(),
            eds_index: HashMap::new(),
            secrets: HashMap::new(),
            errors: BTreeMap::new(),
            versions: HashMap::new(),
            interest: BTreeMap::new(),
            dirty: true,
            interest_changed: false,
            cds_phase,
            lds_phase,
            init,
            stats,
            graveyard: Vec::new(),
            trim_after_sweep: false,
        };
        s.advance_init(now);
        if s.dirty {
            s.recompute_interest();
        }
        s
    }

    /// A receiver of the initialization state.
    pub fn init_receiver(&self) -> watch::Receiver<InitState> {
        self.init.subscribe()
    }

    /// What to ask `source` for, for `kind`; `None` when nothing (not subscribed).
    pub fn interest(&self, source: &SourceKey, kind: Kind) -> Option<Interest> {
        self.interest.get(&(source.clone(), kind)).cloned()
    }

    /// Every gRPC source something is wanted from, with its types.
    pub fn sources(&self) -> BTreeSet<(SourceKey, Kind)> {
        self.interest.keys().cloned().collect()
    }

    /// Whether the interest changed since the last call (clears the flag).
    pub fn take_interest_changed(&mut self) -> bool {
        std::mem::take(&mut self.interest_changed)
    }

    /// The plan the store was made with.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The SDS secret names some source is asked for (held or not yet received), for
    /// `/config_dump`'s warming secrets.
    pub fn wanted_secrets(&self) -> BTreeSet<String> {
        self.interest
            .iter()
            .filter(|((_, k), _)| *k == Kind::Secret)
            .flat_map(|(_, i)| match i {
                Interest::Names(n) => n.iter().cloned().collect::<Vec<_>>(),
                Interest::Wildcard => Vec::new(),
            })
            .collect()
    }

    /// The stats store.
    pub fn world_stats(&self) -> Arc<crate::stats::Store> {
        self.world.stats.clone()
    }

    /// A static cluster (the xDS streams connect through them).
    pub fn static_cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.static_clusters.get(name).cloned()
    }

    /// Count a rejected update that could not even be decoded (a file that does not parse).
    pub fn count_rejected(&mut self, kind: Kind) {
        let s = match kind {
            Kind::Cluster => &self.stats.cds,
            Kind::Listener => &self.stats.lds,
            _ => return,
        };
        s.attempt.inc();
        s.rejected.inc();
    }

    /// Apply one response.
    pub fn apply(&mut self, u: Update) -> Outcome {
        let started = Instant::now();
        let kind = u.kind;
        let n = u.resources.len();
        let bytes: usize = u.resources.iter().map(|r| r.any.value.len()).sum();
        let out = match kind {
            Kind::Cluster => self.apply_clusters(u),
            Kind::Listener => self.apply_listeners(u),
            Kind::Route => self.apply_routes(u),
            Kind::Endpoint => self.apply_endpoints(u),
            Kind::Secret => self.apply_secrets(u),
        };
        self.settle(Instant::now());
        if bytes >= 1 << 20 {
            // A large push leaves its decoded protos freed in the heap; give the pages back,
            // now and again once the snapshots it replaced are dropped.
            crate::server::memory::release_free_memory();
            self.trim_after_sweep = true;
        }
        debug!(
            kind = kind.short(),
            resources = n,
            rejected = out.error.is_some(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "xds update applied"
        );
        out
    }

    /// Expire warming resources and initial fetches whose time is up.
    pub fn expire(&mut self, now: Instant) {
        // Old snapshots go once nothing else holds them. One may hold another (a cluster map
        // its clusters), so sweep until a pass drops nothing.
        let mut swept = false;
        loop {
            let before = self.graveyard.len();
            self.graveyard.retain(|a| Arc::strong_count(a) > 1);
            if self.graveyard.len() == before {
                break;
            }
            swept = true;
        }
        if swept && self.trim_after_sweep {
            self.trim_after_sweep = !self.graveyard.is_empty();
            crate::server::memory::release_free_memory();
        }
        let due = |e: &Option<Instant>| e.is_some_and(|d| d <= now);
        let clusters: Vec<String> = self
            .warming_clusters
            .iter()
            .filter(|(_, e)| due(&e.deadline))
            .map(|(n, _)| n.to_string())
            .collect();
        for name in &clusters {
            warn!(cluster = %name, "cluster warming timed out; activating without endpoints");
            self.activate_cluster(name);
        }
        let listeners: Vec<String> = self
            .warming_listeners
            .iter()
            .filter(|(_, e)| due(&e.deadline))
            .map(|(n, _)| n.to_string())
            .collect();
        for name in &listeners {
            warn!(listener = %name, "listener warming timed out; activating");
            self.activate_listener(name);
        }
        if !clusters.is_empty() {
            self.publish_clusters();
        }
        self.advance_init(now);
    }

    // ---- bookkeeping ----

    /// Activate warming resources whose dependencies are in, and move initialization on.
    fn settle(&mut self, now: Instant) {
        let ready: Vec<String> = self
            .warming_listeners
            .iter()
            .filter(|(_, e)| self.listener_ready(&e.listener))
            .map(|(n, _)| n.clone())
            .collect();
        for n in ready {
            self.activate_listener(&n);
        }
        let ready: Vec<String> = self
            .warming_clusters
            .iter()
            .filter(|(_, e)| self.cluster_ready(&e.cluster))
            .map(|(n, _)| n.to_string())
            .collect();
        if !ready.is_empty() {
            for n in &ready {
                self.activate_cluster(n);
            }
            self.publish_clusters();
        }
        self.advance_init(now);
        if self.dirty {
            self.recompute_interest();
        }
    }

    fn advance_init(&mut self, now: Instant) {
        let done = |p: Phase, warming: bool| match p {
            Phase::Waiting {
                responded,
                deadline,
            } => (responded && !warming) || deadline.is_some_and(|d| d <= now),
            _ => false,
        };
        if done(self.cds_phase, !self.warming_clusters.is_empty()) {
            info!("cds: initial configuration in");
            self.cds_phase = Phase::Done;
        }
        if self.cds_phase == Phase::Done && self.lds_phase == Phase::NotStarted {
            let deadline = self
                .plan
                .lds
                .as_ref()
                .and_then(|r| r.initial_fetch_timeout)
                .map(|t| now + t);
            self.lds_phase = Phase::Waiting {
                responded: false,
                deadline,
            };
            self.interest_dirty();
        }
        if done(self.lds_phase, !self.warming_listeners.is_empty()) {
            info!("lds: initial configuration in");
            self.lds_phase = Phase::Done;
        }
        if self.cds_phase == Phase::Done
            && self.lds_phase == Phase::Done
            && *self.init.borrow() == InitState::Initializing
        {
            info!("xds: initialized");
            self.init.send_replace(InitState::Initialized);
        }
        if self.dirty {
            self.recompute_interest();
        }
    }

    fn retire<T: Send + Sync + 'static>(&mut self, old: Arc<T>) {
        self.graveyard.push(old);
    }

    fn interest_dirty(&mut self) {
        self.dirty = true;
    }
}

impl From<ConfigError> for Outcome {
    fn from(e: ConfigError) -> Self {
        Outcome {
            accepted: Vec::new(),
            error: Some(e.to_string()),
        }
    }
}
