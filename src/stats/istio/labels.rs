//! The standard labels of Istio's metrics, in the order a real Istio sidecar exports them, and
//! how each value is chosen: this proxy's node metadata for our side, the peer's metadata for
//! the other side (`unknown` when not known), the destination service from the upstream
//! cluster's `istio` metadata or the Host header.

use super::peer::WorkloadMetadata;
use envoy_types::pb::google::protobuf::{Struct, value::Kind};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// One label: name and value.
pub type Label = (Arc<str>, Arc<str>);

/// The 25 standard label names, in the order of an HTTP metric. TCP metrics have the same
/// labels without `response_code` and `grpc_response_status`.
pub const STANDARD_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// Interned names and common values, so building a label set allocates only for values that
/// come from the request.
pub(crate) struct Interned {
    pub names: [Arc<str>; 25],
    pub unknown: Arc<str>,
    pub latest: Arc<str>,
    pub empty: Arc<str>,
    pub http: Arc<str>,
    pub grpc: Arc<str>,
    pub tcp: Arc<str>,
    pub mutual_tls: Arc<str>,
    pub none: Arc<str>,
}

pub(crate) static INTERNED: LazyLock<Interned> = LazyLock::new(|| Interned {
    names: STANDARD_LABELS.map(Arc::from),
    unknown: "unknown".into(),
    latest: "latest".into(),
    empty: "".into(),
    http: "http".into(),
    grpc: "grpc".into(),
    tcp: "tcp".into(),
    mutual_tls: "mutual_tls".into(),
    none: "none".into(),
});

/// The index of a standard label name.
pub(crate) fn standard_index(name: &str) -> Option<usize> {
    STANDARD_LABELS.iter().position(|n| *n == name)
}

/// Which side of the traffic the filter reports as (the `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// An outbound sidecar listener: `reporter="source"`.
    ClientSidecar,
    /// An inbound sidecar listener: `reporter="destination"`.
    ServerSidecar,
    /// `stats.PluginConfig.reporter: SERVER_GATEWAY` (a waypoint): `reporter="waypoint"`.
    ServerGateway,
}

impl Reporter {
    /// Istio's choice: `SERVER_GATEWAY` in the config wins; otherwise the listener's
    /// `traffic_direction` (INBOUND: server, anything else: client).
    pub fn resolve(server_gateway: bool, direction: ListenerDirection) -> Self {
        if server_gateway {
            Reporter::ServerGateway
        } else if direction == ListenerDirection::Inbound {
            Reporter::ServerSidecar
        } else {
            Reporter::ClientSidecar
        }
    }

    /// The `reporter` label value.
    pub fn label(self) -> &'static str {
        match self {
            Reporter::ClientSidecar => "source",
            Reporter::ServerSidecar => "destination",
            Reporter::ServerGateway => "waypoint",
        }
    }

    pub(crate) fn is_server(self) -> bool {
        self != Reporter::ClientSidecar
    }
}

/// `Listener.traffic_direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerDirection {
    /// `UNSPECIFIED`.
    #[default]
    Unspecified,
    /// `INBOUND`.
    Inbound,
    /// `OUTBOUND`.
    Outbound,
}

/// Our own side, read once from the bootstrap's `node.metadata` (the values Istio takes:
/// `WORKLOAD_NAME`, `NAMESPACE`, `CLUSTER_ID`, `LABELS.app`, `LABELS.version` and the canonical
/// service labels). Missing values are empty strings, as in Istio.
#[derive(Debug, Clone, Default)]
pub struct LocalLabels {
    /// `WORKLOAD_NAME`.
    pub workload_name: Arc<str>,
    /// `NAMESPACE`.
    pub namespace: Arc<str>,
    /// `LABELS["service.istio.io/canonical-name"]`.
    pub canonical_name: Arc<str>,
    /// `LABELS["service.istio.io/canonical-revision"]`.
    pub canonical_revision: Arc<str>,
    /// `CLUSTER_ID`.
    pub cluster_id: Arc<str>,
    /// `LABELS.app`.
    pub app: Arc<str>,
    /// `LABELS.version`.
    pub version: Arc<str>,
    /// `ISTIO_VERSION` (the `istio_build` gauge's `tag`).
    pub istio_version: Arc<str>,
}

fn str_field<'a>(s: &'a Struct, key: &str) -> &'a str {
    match s.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(v)) => v,
        _ => "",
    }
}

impl LocalLabels {
    /// Read the node metadata.
    pub fn from_node_metadata(m: &Struct) -> Self {
        let empty = Struct::default();
        let labels = match m.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
            Some(Kind::StructValue(s)) => s,
            _ => &empty,
        };
        LocalLabels {
            workload_name: str_field(m, "WORKLOAD_NAME").into(),
            namespace: str_field(m, "NAMESPACE").into(),
            canonical_name: str_field(labels, "service.istio.io/canonical-name").into(),
            canonical_revision: str_field(labels, "service.istio.io/canonical-revision").into(),
            cluster_id: str_field(m, "CLUSTER_ID").into(),
            app: str_field(labels, "app").into(),
            version: str_field(labels, "version").into(),
            istio_version: str_field(m, "ISTIO_VERSION").into(),
        }
    }
}

/// The service an upstream cluster stands for: istiod's `filter_metadata.istio.services[0]`
/// (`host`, `name`, `namespace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterService {
    /// `host`, e.g. `reviews.default.svc.cluster.local`.
    pub host: Option<Arc<str>>,
    /// `name`, e.g. `reviews`.
    pub name: Option<Arc<str>>,
    /// `namespace`.
    pub namespace: Option<Arc<str>>,
}

impl ClusterService {
    /// Read a cluster's `metadata.filter_metadata`; `None` without `istio.services[0]`.
    pub fn from_filter_metadata(filter_metadata: &HashMap<String, Struct>) -> Option<Self> {
        let services = match filter_metadata.get("istio")?.fields.get("services")?.kind {
            Some(Kind::ListValue(ref l)) => l,
            _ => return None,
        };
        let first = services.values.first()?;
        let empty = Struct::default();
        let svc = match &first.kind {
            Some(Kind::StructValue(s)) => s,
            _ => &empty,
        };
        let get = |k: &str| match svc.fields.get(k).and_then(|v| v.kind.as_ref()) {
            Some(Kind::StringValue(s)) => Some(Arc::<str>::from(s.as_str())),
            // A present key of another type reads as an empty string, as in Istio.
            Some(_) => Some(Arc::<str>::from("")),
            None => None,
        };
        Some(ClusterService {
            host: get("host"),
            name: get("name"),
            namespace: get("namespace"),
        })
    }
}

/// What Istio's filters read from a cluster's `filter_metadata.istio`, decoded once when the
/// cluster is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IstioCluster {
    /// `services[0]`.
    pub service: Option<ClusterService>,
    /// `external`: a cluster outside the mesh.
    pub external: bool,
    /// `disable_mx`: no metadata exchange towards it.
    pub disable_mx: bool,
}

impl IstioCluster {
    /// Read a cluster's `metadata.filter_metadata`; `None` without an `istio` entry.
    pub fn from_filter_metadata(filter_metadata: &HashMap<String, Struct>) -> Option<Self> {
        let istio = filter_metadata.get("istio")?;
        let flag = |k: &str| {
            let v = istio.fields.get(k).and_then(|v| v.kind.as_ref());
            matches!(v, Some(Kind::BoolValue(true)))
        };
        Some(IstioCluster {
            service: ClusterService::from_filter_metadata(filter_metadata),
            external: flag("external"),
            disable_mx: flag("disable_mx"),
        })
    }
}

/// The cluster the request went to, as the label computation needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterRef<'a> {
    /// The cluster name.
    pub name: &'a str,
    /// Its Istio service, from its metadata.
    pub service: Option<&'a ClusterService>,
}

/// `destination_service`, `destination_service_name` and `destination_service_namespace`
/// before the `unknown` defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationService {
    /// `destination_service`.
    pub host: Option<Arc<str>>,
    /// `destination_service_name`.
    pub name: Option<Arc<str>>,
    /// `destination_service_namespace` (from the cluster metadata only).
    pub namespace: Option<Arc<str>>,
}

const PASSTHROUGH_CLUSTERS: [&str; 5] = [
    "BlackHoleCluster",
    "PassthroughCluster",
    "InboundPassthroughCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

/// Istio's choice of the destination service: the Host header (unless
/// `disable_host_header_fallback`), overridden by the route names `block_all` / `allow_any`,
/// the pass-through cluster names, or the cluster's `istio.services[0]` metadata (a missing
/// `name` is the host up to its first dot).
pub fn destination_service(
    host_header: Option<&str>,
    disable_host_header_fallback: bool,
    route_name: Option<&str>,
    cluster: Option<ClusterRef<'_>>,
) -> DestinationService {
    let mut out = DestinationService::default();
    if !disable_host_header_fallback && let Some(h) = host_header.filter(|h| !h.is_empty()) {
        let h: Arc<str> = h.into();
        out.host = Some(h.clone());
        out.name = Some(h);
    }
    match route_name {
        Some("block_all") => out.name = Some("BlackHoleCluster".into()),
        Some("allow_any") => out.name = Some("PassthroughCluster".into()),
        _ => {
            let Some(cluster) = cluster else { return out };
            if PASSTHROUGH_CLUSTERS.contains(&cluster.name) {
                out.name = Some(cluster.name.into());
            } else if let Some(svc) = cluster.service {
                if let Some(h) = &svc.host {
                    out.host = Some(h.clone());
                }
                if let Some(ns) = &svc.namespace {
                    out.namespace = Some(ns.clone());
                }
                out.name = match &svc.name {
                    Some(n) => Some(n.clone()),
                    None => out.host.as_ref().map(|h| match h.find('.') {
                        Some(i) => Arc::from(&h[..i]),
                        None => h.clone(),
                    }),
                };
            }
        }
    }
    out.host = out.host.filter(|h| !h.is_empty());
    out.name = out.name.filter(|h| !h.is_empty());
    out.namespace = out.namespace.filter(|h| !h.is_empty());
    out
}

/// The peer and local identities of the connection: for a server reporter the downstream
/// (`istio_authn`'s peer principal or the downstream TLS URI SANs), for a client reporter the
/// upstream TLS URI SANs. Both empty without TLS (the hook for mTLS, issue #6).
#[derive(Debug, Clone, Copy, Default)]
pub struct Principals<'a> {
    /// The peer's URI SAN (SPIFFE id).
    pub peer: Option<&'a str>,
    /// Our own certificate's URI SAN.
    pub local: Option<&'a str>,
}

/// The namespace in a SPIFFE id `<domain>/ns/<namespace>/sa/<account>`.
pub fn principal_namespace(principal: &str) -> Option<&str> {
    let start = principal.find("/ns/")? + 4;
    let rest = &principal[start..];
    Some(rest.split('/').next().unwrap_or(rest))
}

/// What the peer labels are computed from.
pub(crate) struct PeerInputs<'a> {
    /// The peer: the downstream peer for a server reporter; for a client the upstream peer, or
    /// the endpoint's metadata when the peer sent none.
    pub peer: Option<&'a WorkloadMetadata>,
    /// For a client: the upstream peer from the exchange only (its identity is the principal
    /// fallback). For a gateway: the upstream peer (the destination).
    pub upstream_peer: Option<&'a WorkloadMetadata>,
    pub service: &'a DestinationService,
    pub principals: Principals<'a>,
}

/// The 19 labels from `source_workload` to `destination_cluster`, and the
/// `connection_security_policy` value.
pub(crate) fn peer_labels(
    reporter: Reporter,
    local: &LocalLabels,
    inp: &PeerInputs<'_>,
    out: &mut Vec<(usize, Arc<str>)>,
) -> Arc<str> {
    let i = &*INTERNED;
    fn nonempty(v: Option<&str>) -> Option<&str> {
        v.filter(|s| !s.is_empty())
    }
    let mut peer_san = nonempty(inp.principals.peer);
    let local_san = nonempty(inp.principals.local);
    if reporter == Reporter::ClientSidecar && peer_san.is_none() {
        peer_san = inp.upstream_peer.and_then(|p| nonempty(Some(&p.identity)));
    }
    let peer_namespace = peer_san
        .and_then(principal_namespace)
        .filter(|s| !s.is_empty())
        .or_else(|| inp.peer.and_then(|p| nonempty(Some(&p.namespace_name))));
    let or = |v: Option<&str>, default: &Arc<str>| -> Arc<str> {
        v.filter(|s| !s.is_empty())
            .map_or_else(|| default.clone(), Arc::from)
    };
    let peer_field = |f: fn(&WorkloadMetadata) -> &Arc<str>, default: &Arc<str>| -> Arc<str> {
        match inp.peer.map(f) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => default.clone(),
        }
    };
    let mut push = |idx: usize, v: Arc<str>| out.push((idx, v));
    if reporter.is_server() {
        push(1, peer_field(|p| &p.workload_name, &i.unknown));
        push(2, peer_field(|p| &p.canonical_name, &i.unknown));
        push(3, peer_field(|p| &p.canonical_revision, &i.latest));
        push(4, or(peer_namespace, &i.unknown));
        push(5, or(peer_san, &i.unknown));
        push(6, peer_field(|p| &p.app_name, &i.unknown));
        push(7, peer_field(|p| &p.app_version, &i.unknown));
        push(8, peer_field(|p| &p.cluster_name, &i.unknown));
        let svc = inp.service;
        if reporter == Reporter::ServerGateway {
            let ep = |f: fn(&WorkloadMetadata) -> &Arc<str>| match inp.upstream_peer.map(f) {
                Some(v) if !v.is_empty() => v.clone(),
                _ => i.unknown.clone(),
            };
            push(9, ep(|p| &p.workload_name));
            push(10, ep(|p| &p.namespace_name));
            push(11, ep(|p| &p.identity));
            push(12, ep(|p| &p.app_name));
            push(13, ep(|p| &p.app_version));
            push(14, svc.host.clone().unwrap_or_else(|| i.unknown.clone()));
            push(15, ep(|p| &p.canonical_name));
            push(16, ep(|p| &p.canonical_revision));
            push(17, svc.name.clone().unwrap_or_else(|| i.unknown.clone()));
            push(
                18,
                svc.namespace.clone().unwrap_or_else(|| i.unknown.clone()),
            );
            push(19, ep(|p| &p.cluster_name));
        } else {
            push(9, local.workload_name.clone());
            push(10, local.namespace.clone());
            push(11, or(local_san, &i.unknown));
            push(12, local.app.clone());
            push(13, local.version.clone());
            push(
                14,
                svc.host
                    .clone()
                    .unwrap_or_else(|| local.canonical_name.clone()),
            );
            push(15, local.canonical_name.clone());
            push(16, local.canonical_revision.clone());
            push(
                17,
                svc.name
                    .clone()
                    .unwrap_or_else(|| local.canonical_name.clone()),
            );
            push(18, local.namespace.clone());
            push(19, local.cluster_id.clone());
        }
        if peer_san.is_some() && local_san.is_some() {
            i.mutual_tls.clone()
        } else {
            i.none.clone()
        }
    } else {
        push(1, local.workload_name.clone());
        push(2, local.canonical_name.clone());
        push(3, local.canonical_revision.clone());
        push(4, local.namespace.clone());
        push(5, or(local_san, &i.unknown));
        push(6, local.app.clone());
        push(7, local.version.clone());
        push(8, local.cluster_id.clone());
        push(9, peer_field(|p| &p.workload_name, &i.unknown));
        push(10, or(peer_namespace, &i.unknown));
        push(11, or(peer_san, &i.unknown));
        push(12, peer_field(|p| &p.app_name, &i.unknown));
        push(13, peer_field(|p| &p.app_version, &i.unknown));
        push(
            14,
            inp.service
                .host
                .clone()
                .unwrap_or_else(|| i.unknown.clone()),
        );
        push(15, peer_field(|p| &p.canonical_name, &i.unknown));
        push(16, peer_field(|p| &p.canonical_revision, &i.latest));
        push(
            17,
            inp.service
                .name
                .clone()
                .unwrap_or_else(|| i.unknown.clone()),
        );
        let ns = inp.service.namespace.clone();
        push(18, ns.unwrap_or_else(|| or(peer_namespace, &i.unknown)));
        push(19, peer_field(|p| &p.cluster_name, &i.unknown));
        // A client never learns whether the upstream connection is mutual TLS here.
        i.unknown.clone()
    }
}

#[cfg(test)]
mod tests;
