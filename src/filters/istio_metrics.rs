//! Istio's `istio.stats` and peer-metadata filter configurations, decoded protos → the plain
//! settings of `stats::istio` (which, as a leaf, does not read `config`'s types), and the
//! observer that turns a finished stream's [`StreamInfo`] into Istio's observations.

use crate::config::istio::{peer_metadata, stats as stats_pb};
use crate::stats::Store;
use crate::stats::istio::exchange::{Discovery, ExchangeConfig, Propagation};
use crate::stats::istio::{
    ClusterRef, ConnectionInfo, DefinitionKind, HttpObservation, IstioStats, ListenerDirection,
    MetricDefinition, MetricOverride, Principals, Settings, TcpObservation, UpstreamInfo,
};
use crate::stream_info::{Needs, StreamInfo, StreamObserver, header_bytes};
use crate::tls::TlsInfo;
use crate::tls::cert::CertSummary;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use std::time::Duration;

/// Istio's default `graceful_deletion_interval`.
const DEFAULT_GRACE: Duration = Duration::from_secs(300);

/// `Listener.traffic_direction` as the stats filter reads it.
pub fn listener_direction(traffic_direction: i32) -> ListenerDirection {
    match TrafficDirection::try_from(traffic_direction) {
        Ok(TrafficDirection::Inbound) => ListenerDirection::Inbound,
        Ok(TrafficDirection::Outbound) => ListenerDirection::Outbound,
        _ => ListenerDirection::Unspecified,
    }
}

/// `stats.PluginConfig` on a listener of this direction. `MetricConfig.match` is ignored, as
/// Istio's filter ignores it.
pub fn stats_settings(c: &stats_pb::PluginConfig, direction: ListenerDirection) -> Settings {
    let server_gateway = c.reporter == stats_pb::Reporter::ServerGateway as i32;
    let mut s = Settings::new(server_gateway, direction);
    s.disable_host_header_fallback = c.disable_host_header_fallback;
    if let Some(d) = crate::config::duration(c.tcp_reporting_duration.as_ref()) {
        s.tcp_reporting_duration = d;
    }
    s.metrics = c
        .metrics
        .iter()
        .map(|m| MetricOverride {
            name: m.name.clone(),
            dimensions: m
                .dimensions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tags_to_remove: m.tags_to_remove.clone(),
            drop: m.drop,
        })
        .collect();
    s.definitions = c
        .definitions
        .iter()
        .map(|d| MetricDefinition {
            name: d.name.clone(),
            value: d.value.clone(),
            kind: match stats_pb::MetricType::try_from(d.r#type) {
                Ok(stats_pb::MetricType::Gauge) => DefinitionKind::Gauge,
                Ok(stats_pb::MetricType::Histogram) => DefinitionKind::Histogram,
                _ => DefinitionKind::Counter,
            },
        })
        .collect();
    let rotation = crate::config::duration(c.rotation_interval.as_ref()).filter(|d| !d.is_zero());
    s.rotation = rotation.map(|r| {
        let grace =
            crate::config::duration(c.graceful_deletion_interval.as_ref()).unwrap_or(DEFAULT_GRACE);
        (r, grace.min(r))
    });
    s
}

/// An `istio.stats` filter on a listener of this direction, compiled into the store's
/// process-wide Istio metrics; a `rotation_interval` starts the rotation task.
pub fn compile_stats(
    c: &stats_pb::PluginConfig,
    direction: ListenerDirection,
    store: &Store,
) -> IstioStats {
    let settings = stats_settings(c, direction);
    let metrics = store.istio();
    if let Some((rotation, grace)) = settings.rotation {
        metrics.ensure_rotation(rotation, grace);
    }
    metrics.filter(&settings, store)
}

fn discovery(methods: &[peer_metadata::DiscoveryMethod], store: &Store) -> Vec<Discovery> {
    use peer_metadata::Discovery as D;
    methods
        .iter()
        .filter_map(|m| match m.method_specifier.as_ref()? {
            D::IstioHeaders(_) => Some(Discovery::IstioHeaders),
            D::Baggage(_) => Some(Discovery::Baggage),
            D::WorkloadDiscovery(_) => {
                store.not_enforced(
                    "istio.peer_metadata.workload_discovery",
                    "peer discovery from Istio's workload xDS (no issue yet)",
                );
                Some(Discovery::WorkloadDiscovery)
            }
            D::UpstreamFilterState(_) => {
                store.not_enforced(
                    "istio.peer_metadata.upstream_filter_state",
                    "peer discovery from upstream filter state (no issue yet)",
                );
                Some(Discovery::UpstreamFilterState)
            }
        })
        .collect()
}

fn propagation(methods: &[peer_metadata::PropagationMethod]) -> Vec<Propagation> {
    use peer_metadata::Propagation as P;
    methods
        .iter()
        .filter_map(|m| match m.method_specifier.as_ref()? {
            P::IstioHeaders(h) => Some(Propagation::IstioHeaders {
                skip_external_clusters: h.skip_external_clusters,
            }),
            P::Baggage(_) => Some(Propagation::Baggage),
        })
        .collect()
}

/// `io.istio.http.peer_metadata.Config`. Discovery methods tern cannot run count as not
/// enforced and find nothing.
pub fn exchange_config(c: &peer_metadata::Config, store: &Store) -> ExchangeConfig {
    ExchangeConfig {
        downstream_discovery: discovery(&c.downstream_discovery, store),
        upstream_discovery: discovery(&c.upstream_discovery, store),
        downstream_propagation: propagation(&c.downstream_propagation),
        upstream_propagation: propagation(&c.upstream_propagation),
        additional_labels: c.additional_labels.clone(),
    }
}

/// The connection manager's observer for one `istio.stats` filter: each finished stream, as
/// its [`StreamInfo`] tells it, is recorded into Istio's metrics.
#[derive(Debug)]
pub struct IstioHttpObserver {
    stats: IstioStats,
}

impl IstioHttpObserver {
    /// An observer recording through `stats`.
    pub fn new(stats: IstioStats) -> Self {
        IstioHttpObserver { stats }
    }
}

impl StreamObserver for IstioHttpObserver {
    fn needs(&self) -> Needs {
        Needs {
            request_headers: true,
            response_headers: true,
            response_trailers: true,
        }
    }

    fn on_stream_end(&self, info: &StreamInfo) {
        let mut flags = String::new();
        info.response_flags.write_to(false, &mut flags);
        self.stats.record_http(&http_observation(info, &flags));
    }
}

/// A finished HTTP stream as Istio's stats read it.
pub fn http_observation<'a>(info: &'a StreamInfo, flags: &'a str) -> HttpObservation<'a> {
    let request = info.request_headers.as_ref();
    let response = info.response_headers.as_ref();
    let trailers = info.response_trailers.as_ref();
    // `request.total_size` and `response.total_size`: headers (and trailers) plus body.
    let received = request.map_or(0, header_bytes) + info.bytes_received;
    let sent =
        response.map_or(0, header_bytes) + trailers.map_or(0, header_bytes) + info.bytes_sent;
    HttpObservation {
        request_headers: request,
        authority: info.authority.as_deref(),
        method: info.method.as_ref().map(|m| m.as_str()),
        path: info.path.as_deref(),
        scheme: info.scheme,
        protocol: info.protocol.map_or("", |p| p.as_str()),
        response_code: info.response_code,
        response_headers: response,
        response_trailers: trailers,
        response_flags: flags,
        duration: info.duration,
        request_body_bytes: info.bytes_received,
        response_body_bytes: info.bytes_sent,
        wire_bytes: Some((received, sent)),
        route_name: info.route_name.as_deref(),
        upstream: upstream_info(info),
        downstream_peer: info.istio.downstream_peer.as_deref(),
        upstream_peer: info.istio.upstream_peer.as_deref(),
        connection: connection_info(info),
    }
}

/// A TCP connection so far, as Istio's stats read it.
pub fn tcp_observation<'a>(info: &'a StreamInfo, flags: &'a str) -> TcpObservation<'a> {
    TcpObservation {
        upstream: upstream_info(info),
        downstream_peer: info.istio.downstream_peer.as_deref(),
        upstream_peer: info.istio.upstream_peer.as_deref(),
        connection: connection_info(info),
        response_flags: flags,
        sent_bytes: info.bytes_sent,
        received_bytes: info.bytes_received,
    }
}

fn upstream_info(info: &StreamInfo) -> UpstreamInfo<'_> {
    UpstreamInfo {
        cluster: info.upstream_cluster.as_deref().map(|name| ClusterRef {
            name,
            service: info.istio.cluster.as_ref().and_then(|c| c.service.as_ref()),
        }),
        // Clusters keep their metadata encoded; `xds.cluster_metadata` reads nothing.
        cluster_metadata: None,
        host_metadata: info.istio.upstream_workload.as_deref(),
        address: info.istio.upstream_address,
        principals: principals(info.upstream_tls.as_deref()),
    }
}

fn connection_info(info: &StreamInfo) -> ConnectionInfo<'_> {
    ConnectionInfo {
        source: info.downstream_remote,
        destination: info.downstream_local,
        requested_server_name: info.requested_server_name.as_deref(),
        principals: principals(info.downstream_tls.as_deref()),
    }
}

/// Istio's principals of a TLS connection: the first URI SAN of each side's certificate.
fn principals(tls: Option<&TlsInfo>) -> Principals<'_> {
    fn first(c: Option<&CertSummary>) -> Option<&str> {
        c?.uri_sans.first().map(String::as_str)
    }
    match tls {
        Some(t) => Principals {
            peer: first(t.peer.as_ref()),
            local: first(t.local.as_deref()),
        },
        None => Principals::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::istio::Reporter;
    use envoy_types::pb::google::protobuf::Duration as PbDuration;

    fn secs(s: i64) -> Option<PbDuration> {
        Some(PbDuration {
            seconds: s,
            nanos: 0,
        })
    }

    #[test]
    fn plugin_config_becomes_settings() {
        let c = stats_pb::PluginConfig {
            disable_host_header_fallback: true,
            tcp_reporting_duration: secs(15),
            metrics: vec![stats_pb::MetricConfig {
                dimensions: [("a".to_string(), "'b'".to_string())].into_iter().collect(),
                name: "requests_total".into(),
                tags_to_remove: vec!["reporter".into()],
                r#match: "true".into(),
                drop: false,
            }],
            definitions: vec![stats_pb::MetricDefinition {
                name: "n".into(),
                value: "1".into(),
                r#type: stats_pb::MetricType::Histogram as i32,
            }],
            reporter: 0,
            rotation_interval: secs(60),
            graceful_deletion_interval: None,
        };
        let s = stats_settings(&c, listener_direction(TrafficDirection::Inbound as i32));
        assert_eq!(s.reporter, Reporter::ServerSidecar);
        assert!(s.disable_host_header_fallback);
        assert_eq!(s.tcp_reporting_duration, Duration::from_secs(15));
        assert_eq!(s.metrics[0].dimensions["a"], "'b'");
        assert_eq!(s.metrics[0].tags_to_remove, ["reporter"]);
        assert_eq!(s.definitions[0].kind, DefinitionKind::Histogram);
        assert_eq!(
            s.rotation,
            Some((Duration::from_secs(60), Duration::from_secs(60)))
        );
        let gateway = stats_pb::PluginConfig {
            reporter: stats_pb::Reporter::ServerGateway as i32,
            ..Default::default()
        };
        let s = stats_settings(&gateway, ListenerDirection::Outbound);
        assert_eq!(s.reporter, Reporter::ServerGateway);
        assert_eq!(s.tcp_reporting_duration, Duration::from_secs(5));
        assert_eq!(s.rotation, None);
        let s = stats_settings(&Default::default(), listener_direction(0));
        assert_eq!(s.reporter, Reporter::ClientSidecar);
    }

    #[test]
    fn the_golden_bootstraps_node_feeds_istio_build() {
        use crate::stats::istio::{IstioMetrics, NodeInfo, Options};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/istio/bootstrap_default_golden.json");
        let text = std::fs::read_to_string(path).unwrap();
        let b = crate::config::parse_bootstrap(&text, true, false).unwrap();
        let node = NodeInfo::from_node(b.node.as_ref().unwrap());
        assert_eq!(node.id, "sidecar~1.2.3.4~foo~bar");
        let store = Store::new();
        let m = IstioMetrics::new(node, Options::default(), &store);
        // This node metadata has no WORKLOAD_NAME or LABELS: Istio's empty values.
        assert_eq!(&*m.local_labels().workload_name, "");
        let _ = m.filter(
            &stats_settings(&Default::default(), ListenerDirection::Inbound),
            &store,
        );
        let mut text = String::new();
        m.render_prometheus(&mut text);
        assert_eq!(
            text,
            "# TYPE istio_build gauge\nistio_build{component=\"proxy\",tag=\"binary-1.0\"} 1\n"
        );
    }

    #[test]
    fn peer_metadata_config_becomes_an_exchange() {
        use peer_metadata::*;
        let store = Store::new();
        let c = Config {
            downstream_discovery: vec![
                DiscoveryMethod {
                    method_specifier: Some(Discovery::WorkloadDiscovery(Empty {})),
                },
                DiscoveryMethod {
                    method_specifier: Some(Discovery::IstioHeaders(IstioHeaders::default())),
                },
            ],
            upstream_discovery: vec![DiscoveryMethod {
                method_specifier: Some(Discovery::Baggage(Empty {})),
            }],
            downstream_propagation: vec![PropagationMethod {
                method_specifier: Some(Propagation::IstioHeaders(IstioHeaders {
                    skip_external_clusters: true,
                })),
            }],
            upstream_propagation: vec![PropagationMethod {
                method_specifier: Some(Propagation::Baggage(Empty {})),
            }],
            shared_with_upstream: false,
            additional_labels: vec!["role".into()],
        };
        let x = exchange_config(&c, &store);
        use crate::stats::istio::exchange as ex;
        assert_eq!(
            x.downstream_discovery,
            [
                ex::Discovery::WorkloadDiscovery,
                ex::Discovery::IstioHeaders
            ]
        );
        assert_eq!(x.upstream_discovery, [ex::Discovery::Baggage]);
        assert_eq!(
            x.downstream_propagation,
            [ex::Propagation::IstioHeaders {
                skip_external_clusters: true
            }]
        );
        assert_eq!(x.upstream_propagation, [ex::Propagation::Baggage]);
        assert_eq!(x.additional_labels, ["role"]);
        assert_eq!(
            store.counter_value("tern.config.not_enforced.istio.peer_metadata.workload_discovery"),
            Some(1)
        );
    }
}
