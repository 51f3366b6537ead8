//! Hosts and host sets: the endpoints of a cluster, grouped by priority and locality, as
//! Envoy's `PrioritySet` / `HostSet`. A host set is immutable once built; EDS or DNS builds a
//! new one and the cluster swaps it in.

use crate::config::Address;
use crate::stats::istio::WorkloadMetadata;
use crate::upstream::pool::HostPools;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Metadata keys and values as text (strings as they are, other values in JSON).
pub type SocketMatchLabels = Arc<Vec<(String, String)>>;

/// The labels of a metadata `Struct`, sorted by key.
pub fn struct_labels(s: &envoy_types::pb::google::protobuf::Struct) -> Vec<(String, String)> {
    use envoy_types::pb::google::protobuf::value::Kind;
    let mut out: Vec<(String, String)> = s
        .fields
        .iter()
        .map(|(k, v)| {
            let text = match &v.kind {
                Some(Kind::StringValue(s)) => s.clone(),
                Some(Kind::BoolValue(b)) => b.to_string(),
                Some(Kind::NumberValue(n)) => n.to_string(),
                Some(Kind::NullValue(_)) | None => "null".into(),
                Some(other) => format!("{other:?}"),
            };
            (k.clone(), text)
        })
        .collect();
    out.sort();
    out
}

/// One upstream endpoint (`LbEndpoint`).
///
/// A mesh has hundreds of thousands of these and uses few, so a host is kept small: what only
/// a used host needs (its pools and counters) is made on first use.
#[derive(Debug)]
pub struct Host {
    /// Where to connect.
    pub address: Address,
    /// `Endpoint.hostname`, used by `auto_host_rewrite` and auto SNI (empty when not set).
    pub hostname: Box<str>,
    /// `LbEndpoint.load_balancing_weight`, at least 1.
    pub weight: u32,
    /// Index of this host's locality in its [`HostSet::localities`].
    pub locality: u32,
    /// Health as known now: EDS `health_status` and, later, active health checks and outlier
    /// detection. Unhealthy hosts are skipped by load balancers while healthy ones exist.
    pub healthy: AtomicBool,
    /// `LbEndpoint.health_status: DEGRADED`: the host takes traffic only when there are not
    /// enough healthy hosts (see `upstream::lb`). Meaningful only while [`Host::healthy`] is set.
    pub degraded: AtomicBool,
    /// Requests in flight to this host (`LEAST_REQUEST` reads it).
    pub active_requests: AtomicU64,
    /// The endpoint metadata tern reads, shared by the endpoints that have the same.
    pub meta: Option<Arc<EndpointMeta>>,
    /// Connection pools and counters, made on first use (most hosts of a large mesh are never
    /// used); shared with the host of the same address in the next host set, so pooled
    /// connections and the host's counters survive an EDS or DNS update. (A `OnceBox`: one
    /// word, where a `OnceLock` takes two, in each of a mesh's hundred thousand hosts.)
    pools: once_cell::race::OnceBox<Arc<HostPools>>,
}

/// The metadata of an endpoint that tern uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EndpointMeta {
    /// `filter_metadata.istio.workload` (Istio's
    /// `name;namespace;canonical name;revision;cluster`), decoded: the destination a client
    /// reports when the upstream sent no peer metadata.
    pub istio_workload: Option<Arc<WorkloadMetadata>>,
    /// `filter_metadata["envoy.transport_socket_match"]`, as text labels: what the cluster's
    /// `transport_socket_matches` compare against.
    pub socket_match: Option<SocketMatchLabels>,
}

impl Host {
    /// A healthy host with the given weight in locality 0.
    pub fn new(address: Address, hostname: impl Into<Box<str>>, weight: u32) -> Self {
        Self {
            address,
            hostname: hostname.into(),
            weight: weight.max(1),
            locality: 0,
            healthy: AtomicBool::new(true),
            degraded: AtomicBool::new(false),
            active_requests: AtomicU64::new(0),
            meta: None,
            pools: once_cell::race::OnceBox::new(),
        }
    }

    /// The endpoint's decoded `istio.workload` metadata, if any.
    pub fn istio_workload(&self) -> Option<&Arc<WorkloadMetadata>> {
        self.meta.as_ref()?.istio_workload.as_ref()
    }

    /// The endpoint's `envoy.transport_socket_match` labels, if any.
    pub fn socket_match(&self) -> Option<&SocketMatchLabels> {
        self.meta.as_ref()?.socket_match.as_ref()
    }

    /// Index of this host's locality in its host set, for indexing.
    pub fn locality_index(&self) -> usize {
        self.locality as usize
    }

    /// The host's connection pools.
    pub fn pools(&self) -> &HostPools {
        self.base_pools()
    }

    fn base_pools(&self) -> &Arc<HostPools> {
        self.pools.get_or_init(|| Box::new(Arc::default()))
    }

    /// The pools for plaintext connections (`None`) or TLS connections with this key.
    pub fn pools_for(&self, key: Option<u64>) -> Arc<HostPools> {
        let base = self.base_pools();
        match key {
            None => base.clone(),
            Some(k) => base.keyed(k),
        }
    }

    /// The pools, if any connection was ever pooled for this host.
    pub fn pools_if_any(&self) -> Option<&Arc<HostPools>> {
        self.pools.get()
    }

    /// The host's connection and request counters (made with its pools on first use).
    pub fn counters(&self) -> &HostCounters {
        &self.pools().counters
    }

    /// Take over the pools and counters of `prev` (the same address in the previous host set).
    pub fn share_pools_from(&mut self, prev: &Host) {
        if let Some(p) = prev.pools.get() {
            self.pools = once_cell::race::OnceBox::with_value(Box::new(p.clone()));
        }
    }

    /// Whether the host may take traffic now.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether the host is healthy but degraded (`HealthStatus::DEGRADED`).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// The host's stats as the admin `/clusters` page lists them (`<cluster>::<address>::cx_total::3`).
    pub fn stats(&self) -> HostStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = HostStats {
            rq_active: get(&self.active_requests),
            ..HostStats::default()
        };
        if let Some(p) = self.pools.get() {
            let c = &p.counters;
            out.cx_active = get(&c.cx_active);
            out.cx_connect_fail = get(&c.cx_connect_fail);
            out.cx_total = get(&c.cx_total);
            out.rq_error = get(&c.rq_error);
            out.rq_success = get(&c.rq_success);
            out.rq_timeout = get(&c.rq_timeout);
            out.rq_total = get(&c.rq_total);
        }
        out
    }

    /// Count a request to this host; the guard decrements `active_requests` when dropped.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        self.counters().rq_total.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }
}

/// Per-host counters that the connection pools and the router write.
#[derive(Debug, Default)]
pub struct HostCounters {
    /// Connections opened.
    pub cx_total: AtomicU64,
    /// Connections open now.
    pub cx_active: AtomicU64,
    /// Connect failures.
    pub cx_connect_fail: AtomicU64,
    /// Requests answered with a 5xx, reset, or never sent (connect failure).
    pub rq_error: AtomicU64,
    /// Requests answered without a 5xx.
    pub rq_success: AtomicU64,
    /// Requests that timed out.
    pub rq_timeout: AtomicU64,
    /// Requests ever sent to this host.
    pub rq_total: AtomicU64,
}

/// A snapshot of a host's stats, in Envoy's `/clusters` names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// `cx_active`.
    pub cx_active: u64,
    /// `cx_connect_fail`.
    pub cx_connect_fail: u64,
    /// `cx_total`.
    pub cx_total: u64,
    /// `rq_active`.
    pub rq_active: u64,
    /// `rq_error`.
    pub rq_error: u64,
    /// `rq_success`.
    pub rq_success: u64,
    /// `rq_timeout`.
    pub rq_timeout: u64,
    /// `rq_total`.
    pub rq_total: u64,
}

/// A request in flight to a host (see [`Host::start_request`]).
#[derive(Debug)]
pub struct ActiveRequest(Arc<Host>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A locality of one priority level (`LocalityLbEndpoints`).
#[derive(Debug, Clone, Default)]
pub struct Locality {
    /// `region/zone/sub_zone`, for display and zone-aware routing (shared: a mesh has a few).
    pub name: Arc<str>,
    /// `LocalityLbEndpoints.load_balancing_weight` (0 = not set).
    pub weight: u32,
}

/// The hosts of one priority level.
#[derive(Debug, Clone, Default)]
pub struct HostSet {
    /// Every host of this priority, in config order.
    pub hosts: Vec<Arc<Host>>,
    /// Localities referenced by [`Host::locality`].
    pub localities: Vec<Locality>,
    /// `ClusterLoadAssignment.policy.overprovisioning_factor` in percent (default 140).
    pub overprovisioning_factor: u32,
    /// `ClusterLoadAssignment.policy.weighted_priority_health`: compute this priority's health
    /// from host weights instead of host counts.
    pub weighted_priority_health: bool,
}

impl HostSet {
    /// Hosts that are healthy right now.
    pub fn healthy_hosts(&self) -> impl Iterator<Item = &Arc<Host>> {
        self.hosts.iter().filter(|h| h.is_healthy())
    }
}

/// All priority levels of a cluster, index = priority (0 highest).
#[derive(Debug, Clone, Default)]
pub struct PrioritySet {
    /// Host sets by priority.
    pub priorities: Vec<HostSet>,
}

impl PrioritySet {
    /// Every host of every priority.
    pub fn all_hosts(&self) -> impl Iterator<Item = &Arc<Host>> {
        self.priorities.iter().flat_map(|p| p.hosts.iter())
    }

    /// Number of hosts over all priorities.
    pub fn len(&self) -> usize {
        self.priorities.iter().map(|p| p.hosts.len()).sum()
    }

    /// Whether the set has no host.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
