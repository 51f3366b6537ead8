//! Istio's HTTP peer-metadata exchange, as pure functions over header maps: the
//! `io.istio.http.peer_metadata.Config` filter (discovery and propagation by `istio_headers` or
//! `baggage`) and the older null-VM `istio.metadata_exchange` plugin (the same headers both
//! ways). On a request, the downstream peer is discovered from the request headers and our own
//! metadata is propagated upstream; on the response, the upstream peer is discovered from the
//! response headers and our metadata is propagated downstream. Discovered exchange headers are
//! removed, so they never leave the mesh hop.

use super::attrs::NodeInfo;
use super::labels::{IstioCluster, ListenerDirection};
use super::peer::{
    BAGGAGE_HEADER, PEER_METADATA_HEADER, PEER_METADATA_ID_HEADER, WorkloadMetadata,
};
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;

/// `Config.DiscoveryMethod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `istio_headers`: `x-envoy-peer-metadata(-id)`.
    IstioHeaders,
    /// `baggage` (downstream only, as in Istio).
    Baggage,
    /// `workload_discovery`: needs Istio's workload xDS, which tern does not speak; finds
    /// nothing (the caller counts it as not enforced).
    WorkloadDiscovery,
    /// `upstream_filter_state`: needs an upstream filter that stores the peer; finds nothing.
    UpstreamFilterState,
}

/// `Config.PropagationMethod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Propagation {
    /// `istio_headers`, optionally not towards external clusters.
    IstioHeaders {
        /// `skip_external_clusters`.
        skip_external_clusters: bool,
    },
    /// `baggage`.
    Baggage,
}

/// The exchange configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// `downstream_discovery`, tried in order; the first that finds a peer wins.
    pub downstream_discovery: Vec<Discovery>,
    /// `upstream_discovery`.
    pub upstream_discovery: Vec<Discovery>,
    /// `downstream_propagation`.
    pub downstream_propagation: Vec<Propagation>,
    /// `upstream_propagation`.
    pub upstream_propagation: Vec<Propagation>,
    /// `additional_labels`: peer labels kept beyond the standard ones.
    pub additional_labels: Vec<String>,
}

impl ExchangeConfig {
    /// The null-VM `istio.metadata_exchange` HTTP plugin on a listener of this direction: Istio
    /// headers both ways, except that an inbound proxy sends none to its application and an
    /// outbound proxy none back to its application (as Istio's plugin decides by the
    /// listener's direction).
    pub fn legacy_metadata_exchange(direction: ListenerDirection) -> Self {
        let mx = || {
            vec![Propagation::IstioHeaders {
                skip_external_clusters: false,
            }]
        };
        ExchangeConfig {
            downstream_discovery: vec![Discovery::IstioHeaders],
            upstream_discovery: vec![Discovery::IstioHeaders],
            downstream_propagation: if direction == ListenerDirection::Outbound {
                Vec::new()
            } else {
                mx()
            },
            upstream_propagation: if direction == ListenerDirection::Inbound {
                Vec::new()
            } else {
                mx()
            },
            additional_labels: Vec::new(),
        }
    }
}

/// What the exchange needs to know about the upstream cluster (its `istio` metadata).
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamTarget<'a> {
    /// The cluster name.
    pub cluster_name: Option<&'a str>,
    /// `istio.external`.
    pub external: bool,
    /// `istio.disable_mx`.
    pub disable_mx: bool,
}

impl<'a> UpstreamTarget<'a> {
    /// A cluster, with what its `istio` metadata says.
    pub fn new(name: &'a str, istio: Option<&IstioCluster>) -> Self {
        UpstreamTarget {
            cluster_name: Some(name),
            external: istio.is_some_and(|i| i.external),
            disable_mx: istio.is_some_and(|i| i.disable_mx),
        }
    }
}

/// Per-stream state: whether the request carried the exchange headers (the response then
/// carries ours back).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExchangeState {
    request_peer_id_received: bool,
    request_peer_received: bool,
}

/// What discovery found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    /// The peer.
    pub peer: Option<WorkloadMetadata>,
    /// An `x-envoy-peer-metadata` header was present but unreadable.
    pub bad_header: bool,
}

/// A compiled exchange, with our own metadata encoded once.
#[derive(Debug, Clone)]
pub struct PeerExchange {
    config: ExchangeConfig,
    id: HeaderValue,
    value: HeaderValue,
    baggage: HeaderValue,
    /// Our own metadata, as we propagate it.
    pub local: Arc<WorkloadMetadata>,
}

fn header_value(s: &str) -> HeaderValue {
    // Node ids and metadata come from the bootstrap; a value that is not a valid header (a
    // control character) is sent empty rather than failing every request.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl PeerExchange {
    /// Compile for this node: our metadata with the configured additional labels, the node's
    /// locality filling `REGION` / `AVAILABILITY_ZONE` when the metadata lacks them.
    pub fn new(config: ExchangeConfig, node: &NodeInfo) -> Self {
        let mut local =
            WorkloadMetadata::from_node_metadata(&node.metadata, &config.additional_labels);
        if local.region.is_empty() {
            local.region = node.region.as_str().into();
        }
        if local.zone.is_empty() {
            local.zone = node.zone.as_str().into();
        }
        PeerExchange {
            id: header_value(&node.id),
            value: header_value(&local.to_header_value()),
            baggage: header_value(&local.to_baggage()),
            local: Arc::new(local),
            config,
        }
    }

    fn discover(
        &self,
        methods: &[Discovery],
        downstream: bool,
        headers: &mut HeaderMap,
        state: &mut ExchangeState,
    ) -> Discovered {
        let mut out = Discovered::default();
        for m in methods {
            if out.peer.is_some() {
                break;
            }
            match m {
                Discovery::IstioHeaders => {
                    let value = headers.get(PEER_METADATA_HEADER);
                    if downstream {
                        state.request_peer_id_received =
                            headers.contains_key(PEER_METADATA_ID_HEADER);
                        state.request_peer_received = value.is_some();
                    }
                    if let Some(v) = value.filter(|v| !v.is_empty()) {
                        match WorkloadMetadata::from_header_value(
                            v.as_bytes(),
                            &self.config.additional_labels,
                        ) {
                            Ok(p) => out.peer = Some(p),
                            Err(_) => out.bad_header = true,
                        }
                    }
                }
                Discovery::Baggage if downstream => {
                    if let Some(b) = headers.get(BAGGAGE_HEADER).and_then(|v| v.to_str().ok()) {
                        out.peer = Some(WorkloadMetadata::from_baggage(b));
                    }
                }
                Discovery::Baggage
                | Discovery::WorkloadDiscovery
                | Discovery::UpstreamFilterState => {}
            }
        }
        if methods.contains(&Discovery::IstioHeaders) {
            headers.remove(PEER_METADATA_ID_HEADER);
            headers.remove(PEER_METADATA_HEADER);
        }
        out
    }

    fn propagate(
        &self,
        methods: &[Propagation],
        downstream: bool,
        headers: &mut HeaderMap,
        state: &ExchangeState,
        upstream: &UpstreamTarget<'_>,
    ) {
        for m in methods {
            match m {
                Propagation::IstioHeaders {
                    skip_external_clusters,
                } => {
                    let skip = upstream.disable_mx
                        || (*skip_external_clusters
                            && (upstream.external
                                || upstream.cluster_name == Some("PassthroughCluster")));
                    if skip {
                        continue;
                    }
                    if !downstream || state.request_peer_id_received {
                        headers.insert(PEER_METADATA_ID_HEADER, self.id.clone());
                    }
                    if !downstream || state.request_peer_received {
                        headers.insert(PEER_METADATA_HEADER, self.value.clone());
                    }
                }
                Propagation::Baggage => {
                    headers.insert(BAGGAGE_HEADER, self.baggage.clone());
                }
            }
        }
    }

    /// The request headers, before they go upstream: discover the downstream peer (removing the
    /// exchange headers) and add ours for the upstream.
    pub fn on_request(
        &self,
        headers: &mut HeaderMap,
        state: &mut ExchangeState,
        upstream: &UpstreamTarget<'_>,
    ) -> Discovered {
        let found = self.discover_downstream(headers, state);
        self.propagate_upstream(headers, state, upstream);
        found
    }

    /// The first half of [`PeerExchange::on_request`], as the request arrives: discover the
    /// downstream peer and remove the exchange headers.
    pub fn discover_downstream(
        &self,
        headers: &mut HeaderMap,
        state: &mut ExchangeState,
    ) -> Discovered {
        self.discover(&self.config.downstream_discovery, true, headers, state)
    }

    /// The second half, once the upstream cluster is known: add our metadata for it.
    pub fn propagate_upstream(
        &self,
        headers: &mut HeaderMap,
        state: &ExchangeState,
        upstream: &UpstreamTarget<'_>,
    ) {
        let methods = &self.config.upstream_propagation;
        self.propagate(methods, false, headers, state, upstream);
    }

    /// The response headers, before they go downstream: discover the upstream peer (removing
    /// the exchange headers) and add ours for the downstream when the request carried them.
    pub fn on_response(
        &self,
        headers: &mut HeaderMap,
        state: &ExchangeState,
        upstream: &UpstreamTarget<'_>,
    ) -> Discovered {
        let mut scratch = *state;
        let found = self.discover(
            &self.config.upstream_discovery,
            false,
            headers,
            &mut scratch,
        );
        let methods = &self.config.downstream_propagation;
        self.propagate(methods, true, headers, state, upstream);
        found
    }
}

#[cfg(test)]
mod tests;
