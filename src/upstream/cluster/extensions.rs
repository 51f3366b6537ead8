//! The parts of a `Cluster` that Istio sets beyond discovery, load balancing and pools:
//! transport sockets and their matches, upstream network filters, and the fields tern accepts
//! without acting on them yet (counted as `tern.config.not_enforced.<what>`).

use super::Discovery;
use crate::config::istio::metadata_exchange::MetadataExchange;
use crate::config::{self, ConfigError, Within, typed_config};
use crate::stats::Store;
use crate::tls::{Side, TransportSocket};
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::google::protobuf;
use prost::Name;

/// A `transport_socket_matches` entry: endpoints whose metadata (`envoy.transport_socket_match`)
/// has every `match` key use `socket`.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportSocketMatch {
    /// `name`.
    pub name: String,
    /// `match` (empty matches every endpoint).
    pub criteria: protobuf::Struct,
    /// `match` as sorted text labels.
    pub labels: Vec<(String, String)>,
    /// `transport_socket`.
    pub socket: TransportSocket,
}

impl TransportSocketMatch {
    /// Whether an endpoint with these `envoy.transport_socket_match` labels matches: every
    /// `match` key is there with the same value.
    pub fn matches(&self, host: Option<&[(String, String)]>) -> bool {
        let have = host.unwrap_or_default();
        self.labels.iter().all(|l| have.contains(l))
    }
}

/// An upstream network filter (`Cluster.filters`), decoded. None runs yet.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamFilter {
    /// Istio's `istio.metadata_exchange` (`envoy.tcp.metadataexchange.config.MetadataExchange`).
    MetadataExchange(MetadataExchange),
}

pub(super) fn transport_socket_matches(
    c: &cluster_pb::Cluster,
    store: &Store,
    scope: &str,
) -> Result<Vec<TransportSocketMatch>, ConfigError> {
    if c.transport_socket_matcher.is_some() {
        return Err(ConfigError::new(
            "transport_socket_matcher",
            "is not supported; use transport_socket_matches",
        ));
    }
    let mut out = Vec::with_capacity(c.transport_socket_matches.len());
    for (i, m) in c.transport_socket_matches.iter().enumerate() {
        let path = format!("transport_socket_matches[{i}]");
        let ts = m
            .transport_socket
            .as_ref()
            .ok_or_else(|| ConfigError::new("transport_socket", "is required"))
            .within(&path)?;
        out.push(TransportSocketMatch {
            name: m.name.clone(),
            criteria: m.r#match.clone().unwrap_or_default(),
            labels: m
                .r#match
                .as_ref()
                .map(crate::upstream::host::struct_labels)
                .unwrap_or_default(),
            socket: TransportSocket::compile(ts, Side::Upstream, store, scope)
                .within(format!("{path}.transport_socket"))?,
        });
    }
    Ok(out)
}

/// `Cluster.filters`. An unknown type is an error naming the filter and its type URL.
pub(super) fn upstream_filters(
    filters: &[cluster_pb::Filter],
    store: &Store,
) -> Result<Vec<UpstreamFilter>, ConfigError> {
    let mut out = Vec::with_capacity(filters.len());
    for (i, f) in filters.iter().enumerate() {
        let path = format!("filters[{i}]");
        let any = f.typed_config.as_ref().ok_or_else(|| {
            ConfigError::new(
                format!("{path}.typed_config"),
                format!(
                    "upstream network filter {}: typed_config is required",
                    f.name
                ),
            )
        })?;
        let tc = typed_config(any).within(&path)?;
        let url = tc.type_url();
        let named = |mut e: ConfigError| {
            e.reason = format!("upstream network filter {} ({url}): {}", f.name, e.reason);
            e.within(&path)
        };
        if url == MetadataExchange::type_url() {
            let mx = tc.decode().map_err(named)?;
            store.not_enforced(
                "istio.metadata_exchange.upstream",
                "TCP peer metadata exchange with upstream sidecars (issue #5)",
            );
            out.push(UpstreamFilter::MetadataExchange(mx));
        } else {
            return Err(named(ConfigError::new("typed_config", "unsupported type")));
        }
    }
    Ok(out)
}

/// Count the fields Istio sets that tern accepts but does not act on yet.
#[allow(deprecated)] // dns_failure_refresh_rate and friends: still in Istio's clusters
pub(super) fn note_not_enforced(c: &cluster_pb::Cluster, discovery: &Discovery, store: &Store) {
    if c.outlier_detection.is_some() {
        store.not_enforced(
            "cluster.outlier_detection",
            "outlier detection (no issue yet): no host is ejected",
        );
    }
    if c.upstream_bind_config.is_some() {
        store.not_enforced(
            "cluster.upstream_bind_config",
            "the upstream source address (sidecar capture): connections use the default one",
        );
    }
    if c.upstream_connection_options.is_some() {
        store.not_enforced(
            "cluster.upstream_connection_options",
            "TCP keepalive on upstream connections",
        );
    }
    if !c.health_checks.is_empty() {
        store.not_enforced(
            "cluster.health_checks",
            "active health checking: every host counts as healthy",
        );
    }
    if c.lb_subset_config
        .as_ref()
        .is_some_and(|s| !s.subset_selectors.is_empty())
    {
        store.not_enforced(
            "cluster.lb_subset_config",
            "subset load balancing: every host of the cluster is a candidate",
        );
    }
    if *discovery == Discovery::OriginalDst
        && (c.cleanup_interval.is_some() || c.lb_config.is_some())
    {
        store.not_enforced(
            "cluster.original_dst_options",
            "ORIGINAL_DST host cleanup and port override (sidecar capture)",
        );
    }
    if matches!(
        discovery,
        Discovery::StrictDns(_) | Discovery::LogicalDns(_)
    ) && (c.respect_dns_ttl
        || config::duration(c.dns_jitter.as_ref()).is_some_and(|d| !d.is_zero())
        || c.dns_failure_refresh_rate.is_some()
        || c.typed_dns_resolver_config.is_some()
        || !c.dns_resolvers.is_empty()
        || c.dns_resolution_config.is_some()
        || c.use_tcp_for_dns_lookups)
    {
        store.not_enforced(
            "cluster.dns_options",
            "DNS TTLs, jitter, failure refresh and resolver settings: the system resolver is \
             asked every dns_refresh_rate",
        );
    }
    if let Some(cb) = &c.circuit_breakers {
        let finite = |v: Option<&protobuf::UInt32Value>| v.is_some_and(|v| v.value < u32::MAX);
        let unenforced = cb.thresholds.iter().any(|t| {
            finite(t.max_connections.as_ref())
                || finite(t.max_pending_requests.as_ref())
                || t.retry_budget.is_some()
                || (t.priority != core_pb::RoutingPriority::Default as i32
                    && (finite(t.max_requests.as_ref()) || finite(t.max_retries.as_ref())))
        }) || !cb.per_host_thresholds.is_empty();
        if unenforced {
            store.not_enforced(
                "cluster.circuit_breakers",
                "max_connections, max_pending_requests, retry budgets, per-host and \
                 HIGH-priority thresholds (max_requests and max_retries are enforced)",
            );
        }
    }
}
