//! A compiled cluster: discovery type, protocol options, load balancer and its current host
//! set, transport sockets and upstream filters. The host set is swapped atomically (EDS, DNS);
//! the request path only loads it.
//!
//! Fields of Istio's clusters that tern does not act on yet are accepted and counted as
//! `tern.config.not_enforced.<what>` (README.md, "Accepted, not yet enforced").

use super::host::{Host, PrioritySet};
use super::lb::{self, LbContext, LbSettings, LoadBalancer};
use super::load_assignment;
use super::pool::{PoolSettings, UpstreamProtocol};
use crate::config::{self, Address, ConfigError, Within};
use crate::stats::Store;
use crate::stats::istio::IstioCluster;
use crate::tls::{SdsSecretConfig, Side, TransportSocket};
use arc_swap::ArcSwap;
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as upstream_http_pb;
use prost::Name;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

mod extensions;
#[cfg(test)]
mod tests;

pub use extensions::{TransportSocketMatch, UpstreamFilter};
use extensions::{note_not_enforced, transport_socket_matches, upstream_filters};

/// `Cluster.type` as tern runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// STATIC: hosts from `load_assignment`.
    Static,
    /// STRICT_DNS: every address each name resolves to, re-resolved at `dns_refresh_rate`.
    StrictDns(DnsSettings),
    /// LOGICAL_DNS: the first address of the one name, re-resolved at `dns_refresh_rate`.
    LogicalDns(DnsSettings),
    /// EDS: hosts pushed by the control plane; `service_name` (or the cluster name) is the
    /// resource name ([`Cluster::eds_service_name`]).
    Eds {
        /// `eds_cluster_config.service_name` when set and not the cluster's name (Istio's are
        /// the same: a mesh's clusters keep one copy).
        service_name: Option<Box<str>>,
    },
    /// ORIGINAL_DST: the host is the downstream connection's original destination.
    OriginalDst,
}

/// DNS settings of a DNS cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// `dns_refresh_rate` (default 5 s).
    pub refresh: Duration,
    /// `dns_lookup_family`.
    pub family: DnsFamily,
}

/// `Cluster.dns_lookup_family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    /// AUTO: IPv6 if the name has IPv6 addresses, else IPv4.
    Auto,
    /// V4_ONLY.
    V4Only,
    /// V6_ONLY.
    V6Only,
    /// V4_PREFERRED: IPv4 if any, else IPv6.
    V4Preferred,
    /// ALL: both families.
    All,
}

/// Which HTTP protocol a cluster speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolSelection {
    /// Always this protocol.
    Fixed(UpstreamProtocol),
    /// `use_downstream_protocol_config` / `USE_DOWNSTREAM_PROTOCOL`.
    UseDownstream,
}

/// `circuit_breakers.thresholds` for the default priority.
#[derive(Debug, Clone)]
pub struct CircuitBreakers {
    /// `max_requests` (default 1024).
    pub max_requests: u64,
    /// `max_retries` (default 3).
    pub max_retries: u64,
}

crate::stats::block_stats! {
    /// Per-cluster stats `cluster.<name or alt_stat_name>.*`, resolved when the cluster is
    /// compiled: one block (one allocation, one pointer here) per cluster.
    pub struct ClusterStats: CLUSTER_STATS {
        counters {
            /// Requests sent upstream (each attempt).
            upstream_rq_total,
            /// Upstream responses completed.
            upstream_rq_completed,
            /// Retries.
            upstream_rq_retry,
            /// Global route timeouts.
            upstream_rq_timeout,
            /// Per-try timeouts.
            upstream_rq_per_try_timeout,
            /// Requests that waited for a new connection.
            upstream_rq_pending_total,
            /// Requests refused by the `max_requests` circuit breaker.
            upstream_rq_pending_overflow,
            /// Retries refused by the `max_retries` circuit breaker.
            upstream_rq_retry_overflow,
            /// Connections opened.
            upstream_cx_total,
            /// HTTP/1.1 connections opened.
            upstream_cx_http1_total,
            /// HTTP/2 connections opened.
            upstream_cx_http2_total,
            /// Connections closed.
            upstream_cx_destroy,
            /// Idle connections closed by the pool's idle timeout.
            upstream_cx_idle_timeout,
            /// Connect failures (timeouts included).
            upstream_cx_connect_fail,
            /// Connect timeouts.
            upstream_cx_connect_timeout,
            /// Bytes received from upstream connections.
            upstream_cx_rx_bytes_total,
            /// Bytes sent on upstream connections.
            upstream_cx_tx_bytes_total,
            /// No healthy host to connect to.
            upstream_cx_none_healthy,
            /// Hosts chosen in panic mode (too few healthy hosts).
            lb_healthy_panic,
            /// Host set changes.
            membership_change,
            /// EDS responses naming this cluster's service (`update_*` as Envoy keeps them in
            /// the cluster's scope).
            update_attempt,
            /// EDS responses accepted.
            update_success,
            /// EDS responses rejected.
            update_rejected,
            /// Empty EDS responses.
            update_empty,
        }
        gauges {
            /// Open connections.
            upstream_cx_active,
            /// Requests in flight (until their response completes).
            upstream_rq_active,
            /// Requests waiting for a connection.
            upstream_rq_pending_active,
            /// Healthy hosts.
            membership_healthy,
            /// Degraded hosts.
            membership_degraded,
            /// All hosts.
            membership_total,
            /// Hash of the version of the last EDS response accepted.
            version,
        }
        histograms {
            /// Time from the request going upstream to the end of the response.
            upstream_rq_time: crate::stats::Unit::Milliseconds,
            /// Connect time.
            upstream_cx_connect_ms: crate::stats::Unit::Milliseconds,
            /// Connection lifetime.
            upstream_cx_length_ms: crate::stats::Unit::Milliseconds,
        }
        status_codes: Some("upstream_rq_"),
    }
}

impl ClusterStats {
    /// The stats of cluster `name`; `update_rejected` is listed for EDS clusters only (as
    /// in Envoy, where the EDS subscription adds it).
    fn for_cluster(store: &Store, name: &str, eds: bool) -> Self {
        let unlisted: &[&str] = if eds { &[] } else { &["update_rejected"] };
        Self {
            block: store.block_without(&format!("cluster.{name}."), &CLUSTER_STATS, unlisted),
        }
    }

    /// Stop listing these stats (the cluster is gone).
    pub fn remove(&self, store: &Store, name: &str) {
        store.remove_spec_block(&format!("cluster.{name}."), &CLUSTER_STATS);
    }

    /// Set the `membership_*` gauges from a host set.
    fn set_membership(&self, set: &PrioritySet) {
        let (mut healthy, mut degraded) = (0, 0);
        for h in set.all_hosts() {
            if h.is_healthy() {
                if h.is_degraded() {
                    degraded += 1;
                } else {
                    healthy += 1;
                }
            }
        }
        self.membership_total().set(set.len() as i64);
        self.membership_healthy().set(healthy);
        self.membership_degraded().set(degraded);
    }
}

struct HostState {
    set: Arc<PrioritySet>,
    lb: Arc<dyn LoadBalancer>,
}

/// One compiled cluster.
pub struct Cluster {
    /// `Cluster.name`.
    pub name: Arc<str>,
    /// `Cluster.type`.
    pub discovery: Discovery,
    /// Connection settings for the pools.
    pub pool: PoolSettings,
    /// The upstream HTTP protocol.
    pub protocol: ProtocolSelection,
    /// `lb_policy` and `common_lb_config`.
    pub lb_settings: LbSettings,
    /// `per_connection_buffer_limit_bytes` (default 1 MiB).
    pub per_connection_buffer_limit: u32,
    /// Circuit breaker thresholds.
    pub circuit_breakers: CircuitBreakers,
    /// `transport_socket` (none: plaintext).
    pub transport_socket: Option<TransportSocket>,
    /// `transport_socket_matches`, in order.
    pub transport_socket_matches: Vec<TransportSocketMatch>,
    /// What the cluster's `istio` metadata says (its service, external, no metadata
    /// exchange), for Istio's metrics and peer metadata exchange.
    pub istio: Option<Arc<IstioCluster>>,
    /// `filters`: upstream network filters (none enforced yet).
    pub filters: Vec<UpstreamFilter>,
    /// Stats, named after `alt_stat_name` when it is set (as Envoy does), else the name.
    pub stats: ClusterStats,
    /// `alt_stat_name` when set (see [`Cluster::stat_name`]).
    alt_stat_name: Option<Box<str>>,
    /// Requests in flight (for `max_requests`).
    pub active_requests: std::sync::atomic::AtomicU64,
    /// Retries in flight (for `max_retries`).
    pub active_retries: std::sync::atomic::AtomicU64,
    /// The proto this was compiled from, for `/config_dump`.
    source: Arc<[u8]>,
    /// `eds_cluster_config.eds_config` of an EDS cluster, encoded (a few bytes, where the
    /// decoded message takes 216 in every one of a mesh's clusters); see [`Cluster::eds_config`].
    eds_config: Option<Box<[u8]>>,
    /// The `load_assignment` of a DNS cluster (re-resolved for ever).
    dns_assignment:
        Option<Box<envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment>>,
    hosts: ArcSwap<HostState>,
    dns_targets: Vec<load_assignment::DnsTarget>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("discovery", &self.discovery)
            .finish()
    }
}

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

impl Cluster {
    /// The name stats use: `alt_stat_name`, else the cluster's name.
    pub fn stat_name(&self) -> &str {
        self.alt_stat_name.as_deref().unwrap_or(&self.name)
    }

    /// The EDS resource name of an EDS cluster: `eds_cluster_config.service_name`, else the
    /// cluster's name.
    pub fn eds_service_name(&self) -> Option<&str> {
        match &self.discovery {
            Discovery::Eds { service_name } => Some(service_name.as_deref().unwrap_or(&self.name)),
            _ => None,
        }
    }

    /// `eds_cluster_config.eds_config`, for an EDS cluster that has one.
    pub fn eds_config(&self) -> Option<envoy_types::pb::envoy::config::core::v3::ConfigSource> {
        self.eds_config
            .as_deref()
            .and_then(|b| prost::Message::decode(b).ok())
    }

    /// The proto this was compiled from (for `/config_dump`), decoded from the encoding the
    /// cluster keeps: a large CDS push is several times smaller kept encoded.
    pub fn source(&self) -> cluster_pb::Cluster {
        prost::Message::decode(&*self.source).unwrap_or_default()
    }

    /// The encoding of the proto this was compiled from (to tell a changed cluster).
    pub fn source_bytes(&self) -> &[u8] {
        &self.source
    }

    /// Compile a `Cluster`. Errors name the cluster and the field.
    pub fn compile(c: &cluster_pb::Cluster, store: &Store) -> Result<Arc<Cluster>, ConfigError> {
        Self::compile_inner(c, store).within(format!("cluster {}", c.name))
    }

    #[allow(deprecated)] // dns_refresh_rate: Istio still sets it
    fn compile_inner(c: &cluster_pb::Cluster, store: &Store) -> Result<Arc<Cluster>, ConfigError> {
        if c.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        use cluster_pb::cluster::{ClusterDiscoveryType, DiscoveryType};
        let kind = match &c.cluster_discovery_type {
            None => DiscoveryType::Static,
            Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(*t)
                .map_err(|_| ConfigError::new("type", format!("unknown discovery type {t}")))?,
            Some(ClusterDiscoveryType::ClusterType(ct)) => {
                return Err(ConfigError::new(
                    "cluster_type",
                    format!("custom cluster type {} is not supported", ct.name),
                ));
            }
        };
        let dns = || DnsSettings {
            refresh: config::duration(c.dns_refresh_rate.as_ref())
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(5)),
            family: match cluster_pb::cluster::DnsLookupFamily::try_from(c.dns_lookup_family) {
                Ok(cluster_pb::cluster::DnsLookupFamily::V4Only) => DnsFamily::V4Only,
                Ok(cluster_pb::cluster::DnsLookupFamily::V6Only) => DnsFamily::V6Only,
                Ok(cluster_pb::cluster::DnsLookupFamily::V4Preferred) => DnsFamily::V4Preferred,
                Ok(cluster_pb::cluster::DnsLookupFamily::All) => DnsFamily::All,
                _ => DnsFamily::Auto,
            },
        };
        let discovery = match kind {
            DiscoveryType::Static => Discovery::Static,
            DiscoveryType::StrictDns => Discovery::StrictDns(dns()),
            DiscoveryType::LogicalDns => Discovery::LogicalDns(dns()),
            DiscoveryType::Eds => Discovery::Eds {
                service_name: c
                    .eds_cluster_config
                    .as_ref()
                    .map(|e| e.service_name.as_str())
                    .filter(|s| !s.is_empty() && *s != c.name)
                    .map(Box::from),
            },
            DiscoveryType::OriginalDst => Discovery::OriginalDst,
        };

        let empty = Default::default();
        let cla = c.load_assignment.as_ref().unwrap_or(&empty);
        let (set, dns_targets) = match &discovery {
            Discovery::Static => (
                load_assignment::priority_set_from_assignment(cla, false)
                    .within("load_assignment")?,
                Vec::new(),
            ),
            Discovery::StrictDns(_) | Discovery::LogicalDns(_) => {
                let targets =
                    load_assignment::dns_targets_from_assignment(cla).within("load_assignment")?;
                if targets.is_empty() {
                    return Err(ConfigError::new(
                        "load_assignment",
                        "a DNS cluster needs at least one endpoint",
                    ));
                }
                if matches!(discovery, Discovery::LogicalDns(_)) && targets.len() != 1 {
                    return Err(ConfigError::new(
                        "load_assignment",
                        "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
                    ));
                }
                (
                    load_assignment::priority_set_from_assignment(cla, true)
                        .within("load_assignment")?,
                    targets,
                )
            }
            Discovery::Eds { .. } | Discovery::OriginalDst => (PrioritySet::default(), Vec::new()),
        };

        // ORIGINAL_DST clusters take `lb_policy: CLUSTER_PROVIDED` (Istio's PassthroughCluster):
        // the host is the connection's original destination, not a load balancer's pick.
        let lb_settings = if discovery == Discovery::OriginalDst {
            LbSettings::default()
        } else {
            LbSettings::from_cluster(c)?
        };
        let (protocol, pool) = protocol_and_pool(c)?;
        let circuit_breakers = circuit_breakers(c);
        let stat_name = if c.alt_stat_name.is_empty() {
            &c.name
        } else {
            &c.alt_stat_name
        };
        let scope = format!("cluster.{stat_name}.");
        let transport_socket = c
            .transport_socket
            .as_ref()
            .map(|ts| TransportSocket::compile(ts, Side::Upstream, store, &scope))
            .transpose()
            .within("transport_socket")?;
        let transport_socket_matches = transport_socket_matches(c, store, &scope)?;
        let filters = upstream_filters(&c.filters, store)?;
        note_not_enforced(c, &discovery, store);
        let set = Arc::new(set);
        let lb = lb::build(&lb_settings, &set);
        let stats =
            ClusterStats::for_cluster(store, stat_name, matches!(discovery, Discovery::Eds { .. }));
        stats.set_membership(&set);
        let istio = c
            .metadata
            .as_ref()
            .and_then(|m| IstioCluster::from_filter_metadata(&m.filter_metadata))
            .map(Arc::new);
        Ok(Arc::new(Cluster {
            name: c.name.as_str().into(),
            istio,
            discovery,
            pool,
            protocol,
            lb_settings,
            per_connection_buffer_limit: config::u32_or(
                c.per_connection_buffer_limit_bytes.as_ref(),
                1024 * 1024,
            ),
            circuit_breakers,
            transport_socket,
            transport_socket_matches,
            filters,
            stats,
            alt_stat_name: (!c.alt_stat_name.is_empty()).then(|| c.alt_stat_name.as_str().into()),
            active_requests: Default::default(),
            active_retries: Default::default(),
            source: Arc::from(prost::Message::encode_to_vec(c)),
            eds_config: c
                .eds_cluster_config
                .as_ref()
                .and_then(|e| e.eds_config.as_ref())
                .map(|cs| prost::Message::encode_to_vec(cs).into_boxed_slice()),
            dns_assignment: if !dns_targets.is_empty() {
                c.load_assignment.clone().map(Box::new)
            } else {
                None
            },
            hosts: ArcSwap::from_pointee(HostState { set, lb }),
            dns_targets,
        }))
    }

    /// The SDS secrets this cluster's transport sockets refer to (`default`, `ROOTCA` for
    /// Istio's mTLS), without duplicates, for the SDS subscription.
    pub fn sds_secrets(&self) -> Vec<SdsSecretConfig> {
        let mut out = Vec::new();
        let sockets = self
            .transport_socket
            .iter()
            .chain(self.transport_socket_matches.iter().map(|m| &m.socket));
        for ts in sockets {
            ts.sds_secrets_into(&mut out);
        }
        out
    }

    /// The TLS context for connections to `host`: the first `transport_socket_matches` entry
    /// its metadata matches, else `transport_socket`; `None` for plaintext.
    pub fn tls_for(&self, host: &Host) -> Option<&Arc<crate::tls::ClientContext>> {
        let labels = host.socket_match().map(|l| l.as_slice());
        let socket = self
            .transport_socket_matches
            .iter()
            .find(|m| m.matches(labels))
            .map(|m| &m.socket)
            .or(self.transport_socket.as_ref())?;
        socket.client()
    }

    /// Pick a host for a request.
    pub fn choose_host(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        let (host, panic) = self.hosts.load().lb.choose_with_panic(ctx)?;
        if panic {
            self.stats.lb_healthy_panic().inc();
        }
        Some(host)
    }

    /// The current host set.
    pub fn priority_set(&self) -> Arc<PrioritySet> {
        self.hosts.load().set.clone()
    }

    /// The protocol a request goes upstream with, given the downstream protocol.
    pub fn upstream_protocol(&self, downstream_h2: bool) -> UpstreamProtocol {
        match self.protocol {
            ProtocolSelection::Fixed(p) => p,
            ProtocolSelection::UseDownstream if downstream_h2 => UpstreamProtocol::Http2,
            ProtocolSelection::UseDownstream => UpstreamProtocol::Http1,
        }
    }

    /// Replace the host set (EDS, DNS). Hosts whose address is unchanged keep their pools, so
    /// pooled connections survive an update; connections of removed hosts close once idle.
    pub fn set_hosts(&self, mut set: PrioritySet) {
        let old = self.hosts.load();
        let by_addr: HashMap<&Address, &Arc<Host>> =
            old.set.all_hosts().map(|h| (&h.address, h)).collect();
        for p in &mut set.priorities {
            for h in &mut p.hosts {
                if let Some(prev) = by_addr.get(&h.address)
                    && let Some(new) = Arc::get_mut(h)
                {
                    new.share_pools_from(prev);
                }
            }
        }
        let set = Arc::new(set);
        let lb = lb::build(&self.lb_settings, &set);
        let removed: Vec<Arc<Host>> = old
            .set
            .all_hosts()
            .filter(|h| !set.all_hosts().any(|n| n.address == h.address))
            .cloned()
            .collect();
        let added = set.all_hosts().any(|h| !by_addr.contains_key(&h.address));
        drop(old);
        self.stats.set_membership(&set);
        if added || !removed.is_empty() {
            self.stats.membership_change().inc();
        }
        self.hosts.store(Arc::new(HostState { set, lb }));
        for h in removed {
            if let Some(p) = h.pools_if_any() {
                p.clear();
            }
        }
    }

    /// Start DNS resolution for a DNS cluster: resolve now, then every `dns_refresh_rate` for
    /// as long as the cluster is alive. Returns at once for other types.
    pub fn start_dns(self: &Arc<Self>) {
        let settings = match &self.discovery {
            Discovery::StrictDns(d) | Discovery::LogicalDns(d) => d.clone(),
            _ => return,
        };
        let weak: Weak<Cluster> = Arc::downgrade(self);
        let targets = self.dns_targets.clone();
        let cla = self.dns_assignment.as_deref().cloned().unwrap_or_default();
        let logical = matches!(self.discovery, Discovery::LogicalDns(_));
        tokio::spawn(async move {
            let mut last: Option<Vec<(String, Vec<IpAddr>)>> = None;
            loop {
                let mut resolved = Vec::with_capacity(targets.len());
                for t in &targets {
                    let mut ips: Vec<IpAddr> = resolve(&t.host, t.port, settings.family)
                        .await
                        .into_iter()
                        .map(|a| a.ip())
                        .collect();
                    if logical {
                        ips.truncate(1);
                    }
                    resolved.push((t.clone(), ips));
                }
                let key: Vec<(String, Vec<IpAddr>)> = resolved
                    .iter()
                    .map(|(t, ips)| (t.host.clone(), ips.clone()))
                    .collect();
                let Some(cluster) = weak.upgrade() else {
                    return;
                };
                if last.as_ref() != Some(&key) {
                    match load_assignment::priority_set_from_resolved(&cla, &resolved) {
                        Ok(set) => {
                            tracing::debug!(cluster = %cluster.name, hosts = set.len(), "dns resolved");
                            cluster.set_hosts(set);
                            last = Some(key);
                        }
                        Err(e) => {
                            tracing::warn!(cluster = %cluster.name, error = %e, "dns result not applied")
                        }
                    }
                }
                drop(cluster);
                tokio::time::sleep(settings.refresh).await;
            }
        });
    }
}

async fn resolve(host: &str, port: u16, family: DnsFamily) -> Vec<SocketAddr> {
    let Ok(addrs) = tokio::net::lookup_host((host, port)).await else {
        tracing::debug!(host, "dns resolution failed");
        return Vec::new();
    };
    let all: Vec<SocketAddr> = addrs.collect();
    let v4: Vec<SocketAddr> = all.iter().filter(|a| a.is_ipv4()).copied().collect();
    let v6: Vec<SocketAddr> = all.iter().filter(|a| a.is_ipv6()).copied().collect();
    match family {
        DnsFamily::V4Only => v4,
        DnsFamily::V6Only => v6,
        DnsFamily::Auto => {
            if v6.is_empty() {
                v4
            } else {
                v6
            }
        }
        DnsFamily::V4Preferred => {
            if v4.is_empty() {
                v6
            } else {
                v4
            }
        }
        DnsFamily::All => all,
    }
}

#[allow(deprecated)] // the v3 fields Istio and older configs still use
fn protocol_and_pool(
    c: &cluster_pb::Cluster,
) -> Result<(ProtocolSelection, PoolSettings), ConfigError> {
    let mut pool = PoolSettings {
        connect_timeout: config::duration(c.connect_timeout.as_ref())
            .unwrap_or(Duration::from_secs(5)),
        ..PoolSettings::default()
    };
    #[allow(deprecated)]
    if let Some(u) = &c.upstream_http_protocol_options {
        pool.auto_sni = u.auto_sni;
        pool.auto_san_validation = u.auto_san_validation;
    }
    #[allow(deprecated)]
    let legacy_h2 = c.http2_protocol_options.is_some();
    #[allow(deprecated)]
    let mut common = c.common_http_protocol_options;
    #[allow(deprecated)]
    let mut h2_opts = c.http2_protocol_options.clone();
    let mut protocol = if legacy_h2 {
        ProtocolSelection::Fixed(UpstreamProtocol::Http2)
    } else {
        ProtocolSelection::Fixed(UpstreamProtocol::Http1)
    };
    if c.protocol_selection
        == cluster_pb::cluster::ClusterProtocolSelection::UseDownstreamProtocol as i32
    {
        protocol = ProtocolSelection::UseDownstream;
    }
    for (name, any) in &c.typed_extension_protocol_options {
        if name != HTTP_PROTOCOL_OPTIONS
            && any.type_url != upstream_http_pb::HttpProtocolOptions::type_url()
        {
            return Err(ConfigError::new(
                format!("typed_extension_protocol_options[{name}]"),
                format!("unsupported protocol options {}", any.type_url),
            ));
        }
        let opts: upstream_http_pb::HttpProtocolOptions =
            config::unpack(any).within(format!("typed_extension_protocol_options[{name}]"))?;
        if opts.common_http_protocol_options.is_some() {
            common = opts.common_http_protocol_options;
        }
        if let Some(u) = &opts.upstream_http_protocol_options {
            pool.auto_sni = u.auto_sni;
            pool.auto_san_validation = u.auto_san_validation;
        }
        use upstream_http_pb::http_protocol_options::UpstreamProtocolOptions as U;
        use upstream_http_pb::http_protocol_options::explicit_http_config::ProtocolConfig as P;
        match &opts.upstream_protocol_options {
            Some(U::ExplicitHttpConfig(e)) => match &e.protocol_config {
                Some(P::HttpProtocolOptions(_)) | None => {
                    protocol = ProtocolSelection::Fixed(UpstreamProtocol::Http1)
                }
                Some(P::Http2ProtocolOptions(h2)) => {
                    protocol = ProtocolSelection::Fixed(UpstreamProtocol::Http2);
                    h2_opts = Some(h2.clone());
                }
                Some(P::Http3ProtocolOptions(_)) => {
                    return Err(ConfigError::new(
                        "typed_extension_protocol_options.explicit_http_config.http3_protocol_options",
                        "HTTP/3 upstreams are not supported",
                    ));
                }
            },
            Some(U::UseDownstreamProtocolConfig(u)) => {
                protocol = ProtocolSelection::UseDownstream;
                if u.http2_protocol_options.is_some() {
                    h2_opts = u.http2_protocol_options.clone();
                }
            }
            // Without TLS there is no ALPN: auto_config speaks HTTP/1.1 over plaintext, as
            // Envoy does.
            Some(U::AutoConfig(_)) => protocol = ProtocolSelection::Fixed(UpstreamProtocol::Http1),
            None => {}
        }
    }
    if let Some(common) = &common {
        pool.idle_timeout =
            config::timeout_or_disabled(common.idle_timeout.as_ref(), pool.idle_timeout);
        pool.max_requests_per_connection = common
            .max_requests_per_connection
            .as_ref()
            .map(|v| v.value)
            .filter(|v| *v > 0);
        pool.max_headers_count = config::u32_or(common.max_headers_count.as_ref(), 100) as usize;
    }
    #[allow(deprecated)]
    if let Some(v) = &c.max_requests_per_connection
        && v.value > 0
    {
        pool.max_requests_per_connection = Some(v.value);
    }
    if let Some(h2) = &h2_opts {
        apply_h2(&mut pool, h2);
    }
    Ok((protocol, pool))
}

fn apply_h2(pool: &mut PoolSettings, h2: &core_pb::Http2ProtocolOptions) {
    pool.h2_initial_stream_window = h2.initial_stream_window_size.as_ref().map(|v| v.value);
    pool.h2_initial_connection_window = h2.initial_connection_window_size.as_ref().map(|v| v.value);
    if let Some(k) = &h2.connection_keepalive {
        pool.h2_keepalive_interval = config::duration(k.interval.as_ref()).filter(|d| !d.is_zero());
        pool.h2_keepalive_timeout =
            config::duration(k.timeout.as_ref()).unwrap_or(pool.h2_keepalive_timeout);
    }
}

fn circuit_breakers(c: &cluster_pb::Cluster) -> CircuitBreakers {
    let default = c.circuit_breakers.as_ref().and_then(|cb| {
        cb.thresholds
            .iter()
            .find(|t| t.priority == core_pb::RoutingPriority::Default as i32)
    });
    CircuitBreakers {
        max_requests: default.map_or(1024, |t| {
            u64::from(config::u32_or(t.max_requests.as_ref(), 1024))
        }),
        max_retries: default.map_or(3, |t| u64::from(config::u32_or(t.max_retries.as_ref(), 3))),
    }
}
