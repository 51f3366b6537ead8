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

#[cfg(test)]
mod tests;

use super::source::{Plan, Resolved, SourceKey};
use super::{Kind, stats::XdsStats};
use crate::config::ConfigError;
use crate::listener::ListenerManager;
use crate::router::RouteTable;
use crate::snapshot::{ClusterMap, Listener, ListenerMap, NetworkFilter, RouteSource, World};
use crate::upstream::cluster::{Cluster, Discovery};
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
    /// Active dynamic clusters.
    pub clusters: BTreeMap<String, ClusterEntry>,
    /// Dynamic clusters waiting for their endpoints.
    pub warming_clusters: BTreeMap<String, ClusterEntry>,
    /// Active dynamic listeners.
    pub listeners: BTreeMap<String, ListenerEntry>,
    /// Dynamic listeners waiting for their route tables.
    pub warming_listeners: BTreeMap<String, ListenerEntry>,
    /// RDS route configurations.
    pub routes: HashMap<String, RouteEntry>,
    /// EDS assignments, by service name.
    pub endpoints: HashMap<String, EndpointEntry>,
    /// Service name of each assignment's hash (to skip unchanged SotW assignments undecoded).
    endpoint_hashes: HashMap<u64, String>,
    /// EDS service name → the clusters using it (rebuilt with the interest).
    eds_index: HashMap<String, Vec<String>>,
    /// SDS secrets.
    pub secrets: HashMap<String, SecretEntry>,
    /// The last rejection of each resource that has one.
    pub errors: BTreeMap<(Kind, String), ErrorState>,
    /// Last accepted `version_info` per type.
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
            // A large push leaves its decoded protos freed in the heap; give the pages back.
            crate::server::memory::release_free_memory();
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
        self.graveyard.retain(|a| Arc::strong_count(a) > 1);
        let due = |e: &Option<Instant>| e.is_some_and(|d| d <= now);
        let clusters: Vec<String> = self
            .warming_clusters
            .iter()
            .filter(|(_, e)| due(&e.deadline))
            .map(|(n, _)| n.clone())
            .collect();
        for name in &clusters {
            warn!(cluster = %name, "cluster warming timed out; activating without endpoints");
            self.activate_cluster(name);
        }
        let listeners: Vec<String> = self
            .warming_listeners
            .iter()
            .filter(|(_, e)| due(&e.deadline))
            .map(|(n, _)| n.clone())
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

    // ---- clusters ----

    fn apply_clusters(&mut self, u: Update) -> Outcome {
        let stats = self.stats.cds.clone();
        stats.attempt.inc();
        if u.resources.is_empty() && u.state_of_world {
            stats.empty.inc();
        }
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        let mut accepted = Vec::new();
        let mut changed = false;
        // A resource that does not even decode rejects the whole response (as Envoy's
        // subscription does before anything is applied); invalid but decodable resources
        // are rejected one by one below.
        let mut decoded = Vec::with_capacity(u.resources.len());
        for inc in &u.resources {
            match decode::<cluster_pb::Cluster>(Kind::Cluster, inc) {
                Ok(r) => decoded.push((r, &inc.version)),
                Err(e) => {
                    stats.rejected.inc();
                    return Outcome {
                        accepted: Vec::new(),
                        error: Some(e),
                    };
                }
            }
        }
        for (c, version) in decoded {
            let name = c.name.clone();
            if !seen.insert(name.clone()) {
                errors.push(format!("cluster {name}: duplicate in the response"));
                continue;
            }
            match self.add_cluster(c, version) {
                Ok(ch) => {
                    changed |= ch;
                    accepted.push(name.clone());
                    self.errors.remove(&(Kind::Cluster, name));
                }
                Err(e) => {
                    self.errors.insert(
                        (Kind::Cluster, name),
                        ErrorState {
                            version: u.version_info.clone(),
                            details: e.clone(),
                            at: SystemTime::now(),
                        },
                    );
                    errors.push(e);
                }
            }
        }
        let mut removed: Vec<String> = u.removed.clone();
        if u.state_of_world {
            removed.extend(
                self.clusters
                    .keys()
                    .chain(self.warming_clusters.keys())
                    .filter(|n| !seen.contains(*n))
                    .cloned(),
            );
        }
        for name in removed {
            if self.static_clusters.contains_key(&name) {
                continue;
            }
            let was_active = self.clusters.remove(&name);
            if let Some(e) = &was_active {
                self.retire(e.cluster.clone());
            }
            let was_warming = self.warming_clusters.remove(&name);
            if let Some(e) = was_active.as_ref().or(was_warming.as_ref()) {
                // A removed cluster's stats go with it, as in Envoy (churn must not grow the
                // registry for ever).
                e.cluster.stats.remove(&self.world.stats);
            }
            if let Some(e) = &was_active {
                // Pools of its hosts close once idle; in-flight requests hold their own handles.
                e.cluster.set_hosts(PrioritySet::default());
            }
            if was_active.is_some() || was_warming.is_some() {
                info!(cluster = %name, "cds: cluster removed");
                self.stats.cluster_removed.inc();
                changed = true;
            }
        }
        if changed {
            self.publish_clusters();
            self.interest_dirty();
        }
        if let Phase::Waiting { deadline, .. } = self.cds_phase {
            self.cds_phase = Phase::Waiting {
                responded: true,
                deadline,
            };
        }
        self.finish(Kind::Cluster, &u.version_info, &stats, accepted, errors)
    }

    /// Add or update one cluster. `Ok(false)` when it is unchanged.
    fn add_cluster(&mut self, c: cluster_pb::Cluster, version: &str) -> Result<bool, String> {
        let name = c.name.clone();
        if self.static_clusters.contains_key(&name) {
            return Err(format!(
                "cluster {name}: a static cluster cannot be added or updated by CDS"
            ));
        }
        let encoded = c.encode_to_vec();
        let same =
            |e: Option<&ClusterEntry>| e.is_some_and(|e| e.cluster.source_bytes() == encoded);
        if same(self.warming_clusters.get(&name))
            || (same(self.clusters.get(&name)) && !self.warming_clusters.contains_key(&name))
        {
            return Ok(false);
        }
        let eds =
            match &c.cluster_discovery_type {
                Some(cluster_pb::cluster::ClusterDiscoveryType::Type(t))
                    if *t == cluster_pb::cluster::DiscoveryType::Eds as i32 =>
                {
                    let cs = c
                        .eds_cluster_config
                        .as_ref()
                        .and_then(|e| e.eds_config.as_ref())
                        .ok_or_else(|| {
                            format!("cluster {name}: eds_cluster_config.eds_config is required")
                        })?;
                    Some(self.resolve_dynamic(cs).map_err(|e| {
                        format!("cluster {name}: eds_cluster_config.eds_config: {e}")
                    })?)
                }
                _ => None,
            };
        let compiled = Cluster::compile(&c, &self.world.stats).map_err(|e| e.to_string())?;
        let mut timeouts: Vec<Option<Duration>> =
            eds.iter().map(|r| r.initial_fetch_timeout).collect();
        for (secret, cs) in sds_refs(compiled.sds_secrets()) {
            let r = self
                .resolve_dynamic(&cs)
                .map_err(|e| format!("cluster {name}: secret {secret}: sds_config: {e}"))?;
            timeouts.push(r.initial_fetch_timeout);
        }
        if self.clusters.contains_key(&name) {
            self.stats.cluster_modified.inc();
        } else {
            self.stats.cluster_added.inc();
        }
        let mut entry = ClusterEntry {
            meta: Meta::now(version),
            cluster: compiled,
            deadline: None,
        };
        if let Discovery::Eds { service_name } = &entry.cluster.discovery
            && self.endpoints.contains_key(service_name)
            && let Some(set) = self.hosts_of_service(service_name)
        {
            entry.cluster.set_hosts(set);
        }
        entry.cluster.start_dns();
        if self.cluster_ready(&entry.cluster) {
            self.warming_clusters.remove(&name);
            if let Some(old) = self.clusters.insert(name, entry) {
                self.retire(old.cluster);
            }
        } else {
            entry.deadline = longest(timeouts).map(|t| Instant::now() + t);
            debug!(cluster = %name, "cds: cluster warming until its endpoints and secrets arrive");
            self.warming_clusters.insert(name, entry);
        }
        Ok(true)
    }

    fn activate_cluster(&mut self, name: &str) {
        if let Some(mut e) = self.warming_clusters.remove(name) {
            e.deadline = None;
            debug!(cluster = %name, "cluster warmed");
            if let Some(old) = self.clusters.insert(name.to_string(), e) {
                self.retire(old.cluster);
            }
        }
    }

    fn publish_clusters(&mut self) {
        let mut map = self.static_clusters.clone();
        map.reserve(self.clusters.len());
        for (n, e) in &self.clusters {
            map.insert(n.clone(), e.cluster.clone());
        }
        let old = self.world.clusters.swap(Arc::new(map));
        self.retire(old);
        self.stats.active_clusters.set(self.clusters.len() as i64);
        self.stats
            .warming_clusters
            .set(self.warming_clusters.len() as i64);
    }

    // ---- listeners ----

    fn apply_listeners(&mut self, u: Update) -> Outcome {
        let stats = self.stats.lds.clone();
        stats.attempt.inc();
        if u.resources.is_empty() && u.state_of_world {
            stats.empty.inc();
        }
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        let mut accepted = Vec::new();
        let mut changed = false;
        // A resource that does not even decode rejects the whole response (as Envoy's
        // subscription does before anything is applied); invalid but decodable resources
        // are rejected one by one below.
        let mut decoded = Vec::with_capacity(u.resources.len());
        for inc in &u.resources {
            match decode::<listener_pb::Listener>(Kind::Listener, inc) {
                Ok(r) => decoded.push((r, &inc.version)),
                Err(e) => {
                    stats.rejected.inc();
                    return Outcome {
                        accepted: Vec::new(),
                        error: Some(e),
                    };
                }
            }
        }
        for (l, version) in decoded {
            let name = l.name.clone();
            if !seen.insert(name.clone()) {
                errors.push(format!("listener {name}: duplicate in the response"));
                continue;
            }
            match self.add_listener(l, version) {
                Ok(ch) => {
                    changed |= ch;
                    accepted.push(name.clone());
                    self.errors.remove(&(Kind::Listener, name));
                }
                Err(e) => {
                    self.errors.insert(
                        (Kind::Listener, name),
                        ErrorState {
                            version: u.version_info.clone(),
                            details: e.clone(),
                            at: SystemTime::now(),
                        },
                    );
                    errors.push(e);
                }
            }
        }
        let mut removed: Vec<String> = u.removed.clone();
        if u.state_of_world {
            removed.extend(
                self.listeners
                    .keys()
                    .chain(self.warming_listeners.keys())
                    .filter(|n| !seen.contains(*n))
                    .cloned(),
            );
        }
        for name in removed {
            if self.static_listeners.contains_key(&name) {
                continue;
            }
            let active = self.listeners.remove(&name);
            let warming = self.warming_listeners.remove(&name);
            if active.is_some() {
                self.listener_manager.remove(&name);
            }
            if active.is_some() || warming.is_some() {
                info!(listener = %name, "lds: listener removed");
                self.stats.listener_removed.inc();
                changed = true;
            }
        }
        if changed {
            self.publish_listeners();
            self.interest_dirty();
        }
        if let Phase::Waiting { deadline, .. } = self.lds_phase {
            self.lds_phase = Phase::Waiting {
                responded: true,
                deadline,
            };
        }
        self.finish(Kind::Listener, &u.version_info, &stats, accepted, errors)
    }

    fn add_listener(&mut self, l: listener_pb::Listener, version: &str) -> Result<bool, String> {
        let name = l.name.clone();
        if self.static_listeners.contains_key(&name) {
            return Err(format!(
                "listener {name}: a static listener cannot be added or updated by LDS"
            ));
        }
        let same = |e: Option<&ListenerEntry>| e.is_some_and(|e| e.listener.source == l);
        if same(self.warming_listeners.get(&name))
            || (same(self.listeners.get(&name)) && !self.warming_listeners.contains_key(&name))
        {
            return Ok(false);
        }
        let compiled =
            crate::snapshot::compile_listener(&l, &self.world.stats).map_err(|e| e.to_string())?;
        // Every source it names must resolve; it warms for as long as the longest initial
        // fetch timeout of what it waits for (for ever if one of them says 0s).
        let mut timeouts = Vec::new();
        for (route, _, cs) in rds_refs(&compiled) {
            let r = self
                .resolve_dynamic(cs)
                .map_err(|e| format!("listener {name}: rds {route}: config_source: {e}"))?;
            timeouts.push(r.initial_fetch_timeout);
        }
        for (secret, cs) in sds_refs(compiled.sds_secrets()) {
            let r = self
                .resolve_dynamic(&cs)
                .map_err(|e| format!("listener {name}: secret {secret}: sds_config: {e}"))?;
            timeouts.push(r.initial_fetch_timeout);
        }
        let timeout = longest(timeouts);
        if self.listeners.contains_key(&name) {
            self.stats.listener_modified.inc();
        } else {
            self.stats.listener_added.inc();
        }
        let entry = ListenerEntry {
            meta: Meta::now(version),
            listener: compiled,
            deadline: timeout.map(|t| Instant::now() + t),
        };
        if self.listener_ready(&entry.listener) {
            self.warming_listeners.remove(&name);
            self.install_listener(name, entry)?;
        } else {
            debug!(listener = %name, "lds: listener warming until its routes arrive");
            self.warming_listeners.insert(name, entry);
        }
        Ok(true)
    }

    /// Whether everything a listener depends on is here.
    fn listener_ready(&self, l: &Listener) -> bool {
        rds_names(l).all(|(r, _)| self.routes.contains_key(r))
            && self.secrets_ready(l.sds_secrets())
    }

    /// Whether everything a cluster depends on is here: its endpoints (EDS) and secrets.
    fn cluster_ready(&self, c: &Cluster) -> bool {
        let endpoints = match &c.discovery {
            Discovery::Eds { service_name } => self.endpoints.contains_key(service_name),
            _ => true,
        };
        endpoints && self.secrets_ready(c.sds_secrets())
    }

    fn secrets_ready(&self, secrets: Vec<SdsSecretConfig>) -> bool {
        sds_refs(secrets).all(|(n, _)| self.secrets.contains_key(&n))
    }

    /// Resolve a config source a dynamic resource names: gRPC or ADS (files only for LDS and
    /// CDS, as in Envoy).
    fn resolve_dynamic(&self, cs: &core_pb::ConfigSource) -> Result<Resolved, String> {
        let r = self.plan.resolve(cs).map_err(|e| e.to_string())?;
        if matches!(r.key, SourceKey::Path(_)) {
            return Err("file-based sources are supported for LDS and CDS only".into());
        }
        Ok(r)
    }

    fn install_listener(&mut self, name: String, mut entry: ListenerEntry) -> Result<(), String> {
        entry.deadline = None;
        self.listener_manager
            .upsert(&name, &entry.listener)
            .map_err(|e| e.to_string())?;
        self.listeners.insert(name, entry);
        Ok(())
    }

    fn activate_listener(&mut self, name: &str) {
        if let Some(e) = self.warming_listeners.remove(name) {
            debug!(listener = %name, "listener warmed");
            if let Err(err) = self.install_listener(name.to_string(), e.clone()) {
                warn!(listener = %name, error = %err, "listener could not start");
                self.errors.insert(
                    (Kind::Listener, name.to_string()),
                    ErrorState {
                        version: e.meta.version.clone(),
                        details: err,
                        at: SystemTime::now(),
                    },
                );
            }
            self.publish_listeners();
        }
    }

    fn publish_listeners(&mut self) {
        let mut map = self.static_listeners.clone();
        for (n, e) in &self.listeners {
            map.insert(n.clone(), e.listener.clone());
        }
        let old = self.world.listeners.swap(Arc::new(map));
        self.retire(old);
        self.stats.listeners_active.set(self.listeners.len() as i64);
        self.stats
            .listeners_warming
            .set(self.warming_listeners.len() as i64);
    }

    // ---- routes ----

    fn apply_routes(&mut self, u: Update) -> Outcome {
        let mut decoded = Vec::with_capacity(u.resources.len());
        let mut errors = Vec::new();
        let mut names = Vec::with_capacity(u.resources.len());
        for inc in &u.resources {
            match decode::<RouteConfiguration>(Kind::Route, inc) {
                Ok(rc) => {
                    names.push(rc.name.clone());
                    match RouteTable::compile(&rc) {
                        Ok(t) => decoded.push((rc.name, t, inc.version.clone(), &inc.any.value)),
                        Err(e) => errors.push(format!("route configuration {}: {e}", rc.name)),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        for n in &names {
            let prefix = self.listeners_naming(n);
            self.stats.rds(&self.world.stats, n, &prefix).attempt.inc();
        }
        if !errors.is_empty() {
            for n in &names {
                self.stats.rds(&self.world.stats, n, "").rejected.inc();
            }
            return Outcome {
                accepted: Vec::new(),
                error: Some(errors.join("; ")),
            };
        }
        let mut map = (**self.world.routes.load()).clone();
        for (name, table, version, raw) in decoded {
            let s = self.stats.rds(&self.world.stats, &name, "");
            s.success.inc();
            s.version.set(version_hash(&version));
            if let Some(old) = map.insert(name.clone(), Arc::new(table)) {
                self.retire(old);
            }
            self.routes.insert(
                name,
                RouteEntry {
                    meta: Meta::now(&version),
                    raw: Arc::from(raw.as_slice()),
                },
            );
        }
        for n in &u.removed {
            self.routes.remove(n);
            map.remove(n);
        }
        let old = self.world.routes.swap(Arc::new(map));
        self.retire(old);
        self.versions.insert(Kind::Route, u.version_info);
        Outcome {
            accepted: names,
            error: None,
        }
    }

    /// The `stat_prefix` of the first listener naming route configuration `name`.
    fn listeners_naming(&self, name: &str) -> String {
        self.listeners
            .values()
            .chain(self.warming_listeners.values())
            .map(|e| &e.listener)
            .chain(self.static_listeners.values())
            .flat_map(|l| rds_names(l).collect::<Vec<_>>())
            .find(|(r, _)| *r == name)
            .map(|(_, p)| p.to_string())
            .unwrap_or_default()
    }

    // ---- endpoints ----

    fn apply_endpoints(&mut self, u: Update) -> Outcome {
        // One assignment at a time: decode, validate into a host set, drop the proto. Only a
        // hash of the bytes is kept (to skip unchanged assignments); the hosts live in the
        // clusters, and a cluster compiled later takes them from a cluster that has them.
        let mut decoded: Vec<(String, u64, PrioritySet, String)> =
            Vec::with_capacity(u.resources.len());
        let mut errors = Vec::new();
        let mut names = Vec::with_capacity(u.resources.len());
        let mut unchanged_names = Vec::new();
        for inc in &u.resources {
            // A state-of-the-world push resends every assignment: one whose bytes are what tern
            // has (and whose clusters are not waiting for it) is not decoded again.
            let hash = xxhash_rust::xxh64::xxh64(&inc.any.value, 0);
            if !inc.name.is_empty() || u.state_of_world {
                let known = if inc.name.is_empty() {
                    self.endpoint_hashes.get(&hash)
                } else {
                    Some(&inc.name)
                };
                if let Some(name) = known
                    && self.endpoints.get(name).is_some_and(|e| e.hash == hash)
                    && !self.eds_waiting(name)
                {
                    names.push(name.clone());
                    unchanged_names.push(name.clone());
                    continue;
                }
            }
            match decode::<ClusterLoadAssignment>(Kind::Endpoint, inc) {
                Ok(cla) => {
                    names.push(cla.cluster_name.clone());
                    match load_assignment::priority_set_from_assignment(&cla, false) {
                        Ok(set) => decoded.push((cla.cluster_name, hash, set, inc.version.clone())),
                        Err(e) => errors
                            .push(format!("cluster load assignment {}: {e}", cla.cluster_name)),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let users = self.eds_users(&names);
        for cluster in users.values().flatten() {
            self.stats
                .eds(&self.world.stats, &cluster.name)
                .attempt
                .inc();
        }
        if !errors.is_empty() {
            for cluster in users.values().flatten() {
                self.stats
                    .eds(&self.world.stats, &cluster.name)
                    .rejected
                    .inc();
            }
            return Outcome {
                accepted: Vec::new(),
                error: Some(errors.join("; ")),
            };
        }
        for name in &unchanged_names {
            for cluster in users.get(name).into_iter().flatten() {
                self.stats
                    .eds(&self.world.stats, &cluster.name)
                    .success
                    .inc();
            }
        }
        for (name, hash, set, version) in decoded {
            let unchanged = self.endpoints.get(&name).is_some_and(|e| e.hash == hash);
            let mut targets = Vec::new();
            for cluster in users.get(&name).into_iter().flatten() {
                let s = self.stats.eds(&self.world.stats, &cluster.name);
                s.success.inc();
                s.version.set(version_hash(&version));
                if !unchanged || self.warming_clusters.contains_key(&cluster.name) {
                    targets.push(cluster);
                }
            }
            // The last user takes the set itself: hosts it owns alone can take over the pools
            // of the hosts they replace.
            let mut set = Some(set);
            for (i, cluster) in targets.iter().enumerate() {
                let hosts = if i + 1 == targets.len() {
                    set.take().unwrap_or_default()
                } else {
                    set.clone().unwrap_or_default()
                };
                cluster.set_hosts(hosts);
            }
            if !unchanged {
                self.endpoint_hashes.insert(hash, name.clone());
                if let Some(old) = self.endpoints.insert(
                    name,
                    EndpointEntry {
                        meta: Meta::now(&version),
                        hash,
                    },
                ) {
                    self.endpoint_hashes.remove(&old.hash);
                }
            }
        }
        for n in &u.removed {
            self.endpoints.remove(n);
            for cluster in self.eds_users(std::slice::from_ref(n)).values().flatten() {
                cluster.set_hosts(PrioritySet::default());
            }
        }
        // Warming clusters that got their endpoints are activated by `settle`, once their
        // secrets are in too.
        self.versions.insert(Kind::Endpoint, u.version_info);
        Outcome {
            accepted: names,
            error: None,
        }
    }

    /// The hosts of EDS service `service`, from a cluster that has them.
    fn hosts_of_service(&self, service: &str) -> Option<PrioritySet> {
        self.eds_users(&[service.to_string()])
            .remove(service)?
            .into_iter()
            .map(|c| c.priority_set())
            .max_by_key(|set| set.len())
            .map(|set| (*set).clone())
    }

    /// The clusters (static, active, warming) using each EDS service name, through the
    /// service index (an update of one assignment must not walk every cluster).
    fn eds_users(&self, names: &[String]) -> HashMap<String, Vec<Arc<Cluster>>> {
        let mut out: HashMap<String, Vec<Arc<Cluster>>> = HashMap::new();
        for n in names {
            let Some(clusters) = self.eds_index.get(n) else {
                continue;
            };
            let found: Vec<Arc<Cluster>> = clusters
                .iter()
                .filter_map(|c| {
                    self.clusters
                        .get(c)
                        .or_else(|| self.warming_clusters.get(c))
                        .map(|e| e.cluster.clone())
                        .or_else(|| self.static_clusters.get(c).cloned())
                })
                .collect();
            if !found.is_empty() {
                out.insert(n.clone(), found);
            }
        }
        out
    }

    /// Whether a cluster using EDS service `name` still waits for it.
    fn eds_waiting(&self, name: &str) -> bool {
        self.eds_index
            .get(name)
            .is_some_and(|cs| cs.iter().any(|c| self.warming_clusters.contains_key(c)))
    }

    // ---- secrets ----

    fn apply_secrets(&mut self, u: Update) -> Outcome {
        let mut decoded = Vec::with_capacity(u.resources.len());
        let mut errors = Vec::new();
        for inc in &u.resources {
            match decode::<Secret>(Kind::Secret, inc) {
                Ok(s) if s.name.is_empty() => errors.push("secret: name is required".to_string()),
                Ok(s) => decoded.push((s, inc.version.clone())),
                Err(e) => errors.push(e),
            }
        }
        let names: Vec<String> = decoded.iter().map(|(s, _)| s.name.clone()).collect();
        for n in &names {
            self.stats.sds(&self.world.stats, n).attempt.inc();
        }
        if !errors.is_empty() {
            for n in &names {
                self.stats.sds(&self.world.stats, n).rejected.inc();
            }
            return Outcome {
                accepted: Vec::new(),
                error: Some(errors.join("; ")),
            };
        }
        let mut map = (**self.world.secrets.load()).clone();
        for (s, version) in decoded {
            let st = self.stats.sds(&self.world.stats, &s.name);
            st.success.inc();
            st.version.set(version_hash(&version));
            let s = Arc::new(s);
            map.insert(s.name.clone(), s.clone());
            self.secrets.insert(
                s.name.clone(),
                SecretEntry {
                    meta: Meta::now(&version),
                    secret: s,
                },
            );
        }
        for n in &u.removed {
            self.secrets.remove(n);
            map.remove(n);
        }
        let old = self.world.secrets.swap(Arc::new(map));
        self.retire(old);
        self.versions.insert(Kind::Secret, u.version_info);
        Outcome {
            accepted: names,
            error: None,
        }
    }

    // ---- bookkeeping ----

    fn finish(
        &mut self,
        kind: Kind,
        version: &str,
        stats: &super::stats::UpdateStats,
        accepted: Vec<String>,
        errors: Vec<String>,
    ) -> Outcome {
        if errors.is_empty() {
            stats.success.inc();
            stats.version.set(version_hash(version));
            self.versions.insert(kind, version.to_string());
            Outcome {
                accepted,
                error: None,
            }
        } else {
            stats.rejected.inc();
            let what = match kind {
                Kind::Listener => "listener",
                _ => "cluster",
            };
            Outcome {
                accepted,
                error: Some(format!(
                    "Error adding/updating {what}(s) {}",
                    errors.join("; ")
                )),
            }
        }
    }

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
            .map(|(n, _)| n.clone())
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

    /// Recompute what each source is asked for, and drop resources nobody names any more.
    fn recompute_interest(&mut self) {
        let mut out: BTreeMap<(SourceKey, Kind), Interest> = BTreeMap::new();
        if let Some(r) = &self.plan.cds {
            out.insert((r.key.clone(), Kind::Cluster), Interest::Wildcard);
        }
        if let Some(r) = &self.plan.lds
            && self.lds_phase != Phase::NotStarted
        {
            out.insert((r.key.clone(), Kind::Listener), Interest::Wildcard);
        }
        let mut add = |key: SourceKey, kind: Kind, name: &str| {
            if let Interest::Names(set) = out
                .entry((key, kind))
                .or_insert_with(|| Interest::Names(Arc::default()))
            {
                Arc::make_mut(set).insert(name.to_string());
            }
        };
        let clusters = self
            .static_clusters
            .values()
            .chain(self.clusters.values().map(|e| &e.cluster))
            .chain(self.warming_clusters.values().map(|e| &e.cluster));
        let mut eds_names = HashSet::new();
        let mut eds_index: HashMap<String, Vec<String>> = HashMap::new();
        for c in clusters {
            if let Discovery::Eds { service_name } = &c.discovery {
                eds_index
                    .entry(service_name.clone())
                    .or_default()
                    .push(c.name.clone());
                let cs = c.eds_config.as_ref();
                if let Some(Ok(r)) = cs.map(|cs| self.plan.resolve(cs)) {
                    add(r.key, Kind::Endpoint, service_name);
                    eds_names.insert(service_name.as_str());
                }
            }
        }
        let listeners = self
            .static_listeners
            .values()
            .chain(self.listeners.values().map(|e| &e.listener))
            .chain(self.warming_listeners.values().map(|e| &e.listener));
        let mut rds = HashSet::new();
        let mut secrets = HashSet::new();
        for l in listeners {
            for (name, _, cs) in rds_refs(l) {
                if let Ok(r) = self.plan.resolve(cs) {
                    add(r.key, Kind::Route, name);
                    rds.insert(name.to_string());
                }
            }
            for (name, cs) in sds_refs(l.sds_secrets()) {
                if let Ok(r) = self.plan.resolve(&cs) {
                    add(r.key, Kind::Secret, &name);
                    secrets.insert(name);
                }
            }
        }
        let clusters = self
            .static_clusters
            .values()
            .chain(self.clusters.values().map(|e| &e.cluster))
            .chain(self.warming_clusters.values().map(|e| &e.cluster));
        for c in clusters {
            for (name, cs) in sds_refs(c.sds_secrets()) {
                if let Ok(r) = self.plan.resolve(&cs) {
                    add(r.key, Kind::Secret, &name);
                    secrets.insert(name);
                }
            }
        }
        let clusters_now: HashSet<&str> = self
            .static_clusters
            .keys()
            .chain(self.clusters.keys())
            .chain(self.warming_clusters.keys())
            .map(String::as_str)
            .collect();
        self.stats.retain(
            &self.world.stats,
            |c| clusters_now.contains(c),
            |r| rds.contains(r),
            |n| secrets.contains(n),
        );
        drop(clusters_now);
        let before = self.secrets.len();
        self.secrets.retain(|n, _| secrets.contains(n));
        if self.secrets.len() != before {
            let map: crate::snapshot::SecretMap = self
                .world
                .secrets
                .load()
                .iter()
                .filter(|(n, _)| secrets.contains(*n))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            let old = self.world.secrets.swap(Arc::new(map));
            self.graveyard.push(old);
        }
        let eds_names: HashSet<String> = eds_names.into_iter().map(String::from).collect();
        self.eds_index = eds_index;
        self.endpoints.retain(|n, _| eds_names.contains(n));
        let endpoints = &self.endpoints;
        self.endpoint_hashes
            .retain(|h, n| endpoints.get(n).is_some_and(|e| e.hash == *h));
        let mut routes_dropped = false;
        self.routes.retain(|n, _| {
            let keep = rds.contains(n);
            routes_dropped |= !keep;
            keep
        });
        if routes_dropped {
            let map: crate::snapshot::RouteMap = self
                .world
                .routes
                .load()
                .iter()
                .filter(|(n, _)| rds.contains(*n))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            let old = self.world.routes.swap(Arc::new(map));
            self.retire(old);
        }
        self.dirty = false;
        if out != self.interest {
            self.interest = out;
            self.interest_changed = true;
        }
    }
}

/// The RDS names an HTTP connection manager of `l` uses, with that HCM's `stat_prefix`.
pub fn rds_names(l: &Listener) -> impl Iterator<Item = (&str, &str)> {
    rds_refs(l).map(|(n, p, _)| (n, p))
}

/// The RDS references of `l`: name, `stat_prefix`, config source.
fn rds_refs(l: &Listener) -> impl Iterator<Item = (&str, &str, &core_pb::ConfigSource)> {
    l.chains
        .iter()
        .chain(l.default_chain.iter())
        .filter_map(|c| match &c.network {
            NetworkFilter::Hcm(h) => match &h.routes {
                RouteSource::Rds {
                    name,
                    config_source,
                } => Some((
                    name.as_str(),
                    h.config.stat_prefix.as_str(),
                    config_source.as_ref(),
                )),
                RouteSource::Static(_) => None,
            },
            _ => None,
        })
}

/// The secrets `secrets` names that come from SDS (a reference without `sds_config` names a
/// static secret).
fn sds_refs(
    secrets: Vec<SdsSecretConfig>,
) -> impl Iterator<Item = (String, core_pb::ConfigSource)> {
    secrets
        .into_iter()
        .filter_map(|s| s.sds_config.map(|cs| (s.name, cs)))
}

/// The longest of some initial fetch timeouts (`None`: wait for ever), with Envoy's 15 s when
/// there is none.
fn longest(timeouts: Vec<Option<Duration>>) -> Option<Duration> {
    let mut out = Some(Duration::from_secs(15));
    for (i, t) in timeouts.into_iter().enumerate() {
        out = match (i, out, t) {
            (0, _, t) => t,
            (_, Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    out
}

/// Envoy's `version` gauge: a 64-bit hash of `version_info`.
fn version_hash(v: &str) -> i64 {
    xxhash_rust::xxh64::xxh64(v.as_bytes(), 0) as i64
}

const RESOURCE_WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// Decode one resource of `kind`, unwrapping a SotW `Resource` wrapper. Errors name the
/// resource (as far as it is known) and the reason.
fn decode<M: Message + Default>(kind: Kind, inc: &Incoming) -> Result<M, String> {
    let what = |e: String| {
        if inc.name.is_empty() {
            format!("{} resource: {e}", kind.short())
        } else {
            format!("{} resource {}: {e}", kind.short(), inc.name)
        }
    };
    let mut any = &inc.any;
    let unwrapped;
    if any.type_url == RESOURCE_WRAPPER {
        let r =
            envoy_types::pb::envoy::service::discovery::v3::Resource::decode(any.value.as_slice())
                .map_err(|e| what(format!("cannot decode the Resource wrapper: {e}")))?;
        unwrapped = r
            .resource
            .ok_or_else(|| what("the Resource wrapper holds no resource".into()))?;
        any = &unwrapped;
    }
    if any.type_url != kind.type_url() {
        return Err(what(format!(
            "type URL {} where {} was expected",
            any.type_url,
            kind.type_url()
        )));
    }
    M::decode(any.value.as_slice()).map_err(|e| what(format!("cannot decode: {e}")))
}

impl From<ConfigError> for Outcome {
    fn from(e: ConfigError) -> Self {
        Outcome {
            accepted: Vec::new(),
            error: Some(e.to_string()),
        }
    }
}
