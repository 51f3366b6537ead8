//! The module end to end, against the expectations of istio/proxy's own stats tests
//! (`testdata/metric/*.yaml.tmpl`): the same node metadata in, the same labels out.

use super::*;
use crate::stats::istio::peer::tests::client_node_metadata;
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value as PbValue, value::Kind as K};
use http::{HeaderMap, HeaderValue};

fn sv(s: &str) -> PbValue {
    PbValue {
        kind: Some(K::StringValue(s.into())),
    }
}

fn set(md: &mut Struct, key: &str, v: &str) {
    md.fields.insert(key.into(), sv(v));
}

fn set_label(md: &mut Struct, key: &str, v: &str) {
    if let Some(K::StructValue(l)) = md.fields.get_mut("LABELS").and_then(|x| x.kind.as_mut()) {
        l.fields.insert(key.into(), sv(v));
    }
}

/// istio/proxy's `server_node_metadata.json.tmpl`.
fn server_node_metadata() -> Struct {
    let mut md = client_node_metadata();
    set(&mut md, "NAME", "ratings-v1-84975bc778-pxz2w");
    set(&mut md, "CLUSTER_ID", "server-cluster");
    set(&mut md, "WORKLOAD_NAME", "ratings-v1");
    set(
        &mut md,
        "OWNER",
        "kubernetes://apis/apps/v1/namespaces/default/deployments/ratings-v1",
    );
    set_label(&mut md, "app", "ratings");
    set_label(&mut md, "service.istio.io/canonical-name", "ratings");
    set_label(&mut md, "role", "server");
    md
}

fn node(md: Struct) -> NodeInfo {
    NodeInfo {
        id: "node".into(),
        cluster: "c".into(),
        metadata: md,
        ..Default::default()
    }
}

fn metrics(md: Struct, store: &Store) -> Arc<IstioMetrics> {
    IstioMetrics::new(node(md), Options::default(), store)
}

/// `istio.services[0]` metadata of the test's server cluster.
fn server_cluster_metadata() -> Metadata {
    let svc = Struct {
        fields: [
            ("host", "server.default.svc.cluster.local"),
            ("name", "server"),
            ("namespace", "default"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), sv(v)))
        .collect(),
    };
    let list = PbValue {
        kind: Some(K::ListValue(ListValue {
            values: vec![PbValue {
                kind: Some(K::StructValue(svc)),
            }],
        })),
    };
    Metadata {
        filter_metadata: [(
            "istio".to_string(),
            Struct {
                fields: [("services".to_string(), list)].into_iter().collect(),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// One parsed Prometheus sample: name, labels in order, value.
type Sample = (String, Vec<(String, String)>, String);

/// Parse Prometheus text format back, checking its shape: every sample belongs to the family of
/// the `# TYPE` line above it.
fn parse(text: &str) -> (Vec<(String, String)>, Vec<Sample>) {
    let mut types = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, ty) = t.split_once(' ').unwrap();
            types.push((name.to_string(), ty.to_string()));
            continue;
        }
        let open = line.find('{').unwrap();
        let close = line.rfind('}').unwrap();
        let name = &line[..open];
        let family = &types.last().unwrap().0;
        assert!(name.starts_with(family.as_str()), "{name} outside {family}");
        let mut labels = Vec::new();
        let mut rest = &line[open + 1..close];
        while !rest.is_empty() {
            let eq = rest.find("=\"").unwrap();
            let key = rest[..eq].to_string();
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let end = loop {
                let (i, c) = chars.next().unwrap();
                match c {
                    '\\' => match chars.next().unwrap().1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break eq + 2 + i + 1,
                    c => value.push(c),
                }
            };
            labels.push((key, value));
            rest = rest[end..].strip_prefix(',').unwrap_or(&rest[end..]);
        }
        samples.push((name.to_string(), labels, line[close + 2..].to_string()));
    }
    (types, samples)
}

fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The series as `/stats` lists them (Envoy's flat names), sorted.
fn flat(m: &IstioMetrics) -> crate::stats::registry::Snapshot {
    let mut snap = crate::stats::registry::Snapshot::default();
    let q = crate::stats::StatsQuery::default();
    m.add_to_snapshot(&mut snap, &q, &crate::stats::StatsMatcher::default());
    snap.counters.sort_by(|a, b| a.name.cmp(&b.name));
    snap
}

fn sample<'s>(samples: &'s [Sample], name: &str) -> Vec<&'s Sample> {
    samples.iter().filter(|s| s.0 == name).collect()
}

#[test]
fn server_requests_total_matches_istio() {
    let store = Store::new();
    let m = metrics(server_node_metadata(), &store);
    let stats = m.filter(&Settings::new(false, ListenerDirection::Inbound), &store);
    let client = WorkloadMetadata::from_node_metadata(&client_node_metadata(), &[]);
    let peer_header = client.to_header_value();
    let peer = WorkloadMetadata::from_header_value(peer_header.as_bytes(), &[]).unwrap();
    let cluster_md = server_cluster_metadata();
    let service = ClusterService::from_filter_metadata(&cluster_md.filter_metadata).unwrap();
    let obs = HttpObservation {
        authority: Some("127.0.0.1:8080"),
        protocol: "HTTP/1.1",
        response_code: Some(200),
        duration: Some(Duration::from_millis(12)),
        wire_bytes: Some((120, 300)),
        upstream: UpstreamInfo {
            cluster: Some(ClusterRef {
                name: "inbound|9080||",
                service: Some(&service),
            }),
            ..Default::default()
        },
        downstream_peer: Some(&peer),
        ..Default::default()
    };
    for _ in 0..10 {
        stats.record_http(&obs);
    }
    let mut text = String::new();
    m.render_prometheus(&mut text);
    let (types, samples) = parse(&text);
    let labels = expected(&[
        ("reporter", "destination"),
        ("source_workload", "productpage-v1"),
        ("source_canonical_service", "productpage-v1"),
        ("source_canonical_revision", "version-1"),
        ("source_workload_namespace", "default"),
        ("source_principal", "unknown"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_cluster", "client-cluster"),
        ("destination_workload", "ratings-v1"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", "ratings"),
        ("destination_version", "v1"),
        ("destination_service", "server.default.svc.cluster.local"),
        ("destination_canonical_service", "ratings"),
        ("destination_canonical_revision", "version-1"),
        ("destination_service_name", "server"),
        ("destination_service_namespace", "default"),
        ("destination_cluster", "server-cluster"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("grpc_response_status", ""),
        ("response_flags", "-"),
        ("connection_security_policy", "none"),
    ]);
    let total = sample(&samples, "istio_requests_total");
    assert_eq!(total.len(), 1);
    assert_eq!(total[0].1, labels);
    assert_eq!(total[0].2, "10");
    assert_eq!(
        types,
        [
            ("istio_requests_total", "counter"),
            ("istio_build", "gauge"),
            ("istio_request_bytes", "histogram"),
            ("istio_request_duration_milliseconds", "histogram"),
            ("istio_response_bytes", "histogram"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let build = sample(&samples, "istio_build");
    assert_eq!(
        build[0].1,
        expected(&[("component", "proxy"), ("tag", "1.5-dev")])
    );
    assert_eq!(build[0].2, "1");
    // The duration histogram: Envoy's buckets, 10 samples of 12 ms.
    let buckets = sample(&samples, "istio_request_duration_milliseconds_bucket");
    assert_eq!(buckets.len(), DEFAULT_BUCKETS.len() + 1);
    let le = |s: &Sample| s.1.last().unwrap().1.clone();
    assert_eq!(&buckets[0].1[..25], &labels[..]);
    assert_eq!((le(buckets[3]), buckets[3].2.as_str()), ("10".into(), "0"));
    assert_eq!((le(buckets[4]), buckets[4].2.as_str()), ("25".into(), "10"));
    assert_eq!(
        (le(buckets[18]), buckets[18].2.as_str()),
        ("3600000".into(), "10")
    );
    assert_eq!(
        (le(buckets[19]), buckets[19].2.as_str()),
        ("+Inf".into(), "10")
    );
    assert_eq!(
        sample(&samples, "istio_request_duration_milliseconds_sum")[0].2,
        "120"
    );
    assert_eq!(
        sample(&samples, "istio_request_duration_milliseconds_count")[0].2,
        "10"
    );
    assert_eq!(sample(&samples, "istio_request_bytes_sum")[0].2, "1200");
    assert_eq!(sample(&samples, "istio_response_bytes_sum")[0].2, "3000");
    // /stats names.
    let flat = flat(&m);
    assert_eq!(flat.counters.len(), 1);
    assert!(
        flat.counters[0].name.starts_with(
            "istiocustom.istio_requests_total.reporter.destination.source_workload.productpage-v1."
        ),
        "{}",
        flat.counters[0].name
    );
    assert!(flat.counters[0].name.ends_with(
        "request_protocol.http.response_code.200.grpc_response_status.response_flags.-.\
         connection_security_policy.none"
    ));
    assert_eq!(flat.counters[0].value, 10);
    assert_eq!(flat.histograms.len(), 3);
}

fn client_observation<'a>(
    peer: &'a WorkloadMetadata,
    service: &'a ClusterService,
    cluster_md: &'a Metadata,
) -> HttpObservation<'a> {
    HttpObservation {
        authority: Some("127.0.0.1:8080"),
        protocol: "HTTP/1.1",
        response_code: Some(200),
        duration: Some(Duration::from_millis(3)),
        wire_bytes: Some((80, 90)),
        route_name: Some("client_route"),
        upstream: UpstreamInfo {
            cluster: Some(ClusterRef {
                name: "server-outbound-cluster",
                service: Some(service),
            }),
            cluster_metadata: Some(cluster_md),
            ..Default::default()
        },
        upstream_peer: Some(peer),
        ..Default::default()
    }
}

#[test]
fn client_requests_total_matches_istio() {
    let store = Store::new();
    let m = metrics(client_node_metadata(), &store);
    let stats = m.filter(&Settings::new(false, ListenerDirection::Outbound), &store);
    let server = WorkloadMetadata::from_node_metadata(&server_node_metadata(), &[]);
    let cluster_md = server_cluster_metadata();
    let service = ClusterService::from_filter_metadata(&cluster_md.filter_metadata).unwrap();
    stats.record_http(&client_observation(&server, &service, &cluster_md));
    let mut text = String::new();
    m.render_prometheus(&mut text);
    let (_, samples) = parse(&text);
    let v: Vec<String> = samples[0].1.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(
        v,
        [
            "source",
            "productpage-v1",
            "productpage-v1",
            "version-1",
            "default",
            "unknown",
            "productpage",
            "v1",
            "client-cluster",
            "ratings-v1",
            "default",
            "unknown",
            "ratings",
            "v1",
            "server.default.svc.cluster.local",
            "ratings",
            "version-1",
            "server",
            "default",
            "server-cluster",
            "http",
            "200",
            "",
            "-",
            "unknown"
        ]
    );
}

#[test]
fn customized_dimensions_match_istio() {
    // istio/proxy's `client_config_customized.yaml.tmpl`.
    let store = Store::new();
    let m = metrics(client_node_metadata(), &store);
    let mut settings = Settings::new(false, ListenerDirection::Outbound);
    let dims = |v: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        v.iter()
            .map(|(k, e)| (k.to_string(), e.to_string()))
            .collect()
    };
    settings.definitions = vec![MetricDefinition {
        name: "custom".into(),
        value: "1".into(),
        kind: DefinitionKind::Counter,
    }];
    settings.metrics = vec![
        MetricOverride {
            name: "request_duration_milliseconds".into(),
            drop: true,
            ..Default::default()
        },
        MetricOverride {
            name: "custom".into(),
            dimensions: dims(&[("reporter", "'proxy'")]),
            ..Default::default()
        },
        MetricOverride {
            tags_to_remove: vec!["response_flags".into(), "source_principal".into()],
            ..Default::default()
        },
        MetricOverride {
            name: "requests_total".into(),
            dimensions: dims(&[
                ("configurable_metric_a", "'gateway'"),
                (
                    "source_workload",
                    "'_' + xds.node.metadata['WORKLOAD_NAME']",
                ),
                (
                    "source_workload_namespace",
                    "'_' + xds.node.metadata['NAMESPACE']",
                ),
                ("source_app", "'_' + xds.node.metadata['LABELS'].app"),
                ("source_version", "'_' + xds.node.metadata['LABELS'].app"),
                ("request_protocol", "request.protocol"),
                (
                    "destination_version",
                    "'_' + xds.node.metadata.LABELS.version",
                ),
                (
                    "destination_service_namespace",
                    "'_' + filter_state.upstream_peer.service",
                ),
                ("destination_app", "cannot _ parse | 0"),
                ("destination_workload", "cannot_evaluate"),
                (
                    "route_name",
                    "xds.route_name + \",\" + xds.cluster_name + \",\" + \
                     xds.cluster_metadata.filter_metadata.istio.services[0].name",
                ),
            ]),
            tags_to_remove: vec!["grpc_response_status".into()],
            ..Default::default()
        },
        MetricOverride {
            name: "request_bytes".into(),
            dimensions: dims(&[("configurable_metric_b", "'test'")]),
            tags_to_remove: vec!["reporter".into()],
            ..Default::default()
        },
        MetricOverride {
            dimensions: dims(&[("source_principal", "'malicious'")]),
            ..Default::default()
        },
    ];
    let stats = m.filter(&settings, &store);
    // Invalid CEL is skipped as Istio skips it, not counted as tern's limitation.
    assert_eq!(
        store.counter_value("tern.config.not_enforced.istio.stats.expression"),
        None
    );
    let server = WorkloadMetadata::from_node_metadata(&server_node_metadata(), &[]);
    let cluster_md = server_cluster_metadata();
    let service = ClusterService::from_filter_metadata(&cluster_md.filter_metadata).unwrap();
    for _ in 0..3 {
        stats.record_http(&client_observation(&server, &service, &cluster_md));
    }
    let mut text = String::new();
    m.render_prometheus(&mut text);
    let (_, samples) = parse(&text);
    let total = sample(&samples, "istio_requests_total");
    assert_eq!(
        total[0].1,
        expected(&[
            ("reporter", "source"),
            ("source_workload", "_productpage-v1"),
            ("source_canonical_service", "productpage-v1"),
            ("source_canonical_revision", "version-1"),
            ("source_workload_namespace", "_default"),
            ("source_principal", "malicious"),
            ("source_app", "_productpage"),
            ("source_version", "_productpage"),
            ("source_cluster", "client-cluster"),
            ("destination_workload", "unknown"),
            ("destination_workload_namespace", "default"),
            ("destination_principal", "unknown"),
            ("destination_version", "_v1"),
            ("destination_service", "server.default.svc.cluster.local"),
            ("destination_canonical_service", "ratings"),
            ("destination_canonical_revision", "version-1"),
            ("destination_service_name", "server"),
            ("destination_service_namespace", "_ratings"),
            ("destination_cluster", "server-cluster"),
            ("request_protocol", "HTTP/1.1"),
            ("response_code", "200"),
            ("connection_security_policy", "unknown"),
            ("configurable_metric_a", "gateway"),
            ("route_name", "client_route,server-outbound-cluster,server"),
        ])
    );
    assert_eq!(total[0].2, "3");
    let custom = sample(&samples, "istio_custom");
    assert_eq!(
        custom[0].1,
        expected(&[("reporter", "proxy"), ("source_principal", "malicious")])
    );
    assert_eq!(custom[0].2, "3");
    assert!(sample(&samples, "istio_request_duration_milliseconds_count").is_empty());
    let req_bytes = sample(&samples, "istio_request_bytes_count");
    assert_eq!(
        req_bytes[0].1[0],
        ("source_workload".into(), "productpage-v1".into())
    );
    assert_eq!(
        req_bytes[0].1.last().unwrap(),
        &("configurable_metric_b".to_string(), "test".to_string())
    );
    assert!(!req_bytes[0].1.iter().any(|(k, _)| k == "response_flags"));
}

#[test]
fn unsupported_expressions_read_unknown_and_are_counted() {
    let store = Store::new();
    let m = metrics(client_node_metadata(), &store);
    let mut settings = Settings::new(false, ListenerDirection::Outbound);
    settings.metrics = vec![MetricOverride {
        name: "requests_total".into(),
        dimensions: [(
            "path_kind".to_string(),
            "request.path.matches('^/api')".to_string(),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }];
    settings.definitions = vec![MetricDefinition {
        name: "weird".into(),
        value: "timestamp('x')".into(),
        kind: DefinitionKind::Counter,
    }];
    let stats = m.filter(&settings, &store);
    assert_eq!(
        store.counter_value("tern.config.not_enforced.istio.stats.expression"),
        Some(2)
    );
    stats.record_http(&HttpObservation {
        path: Some("/api/x"),
        ..Default::default()
    });
    let mut text = String::new();
    m.render_prometheus(&mut text);
    assert!(text.contains(",path_kind=\"unknown\"} 1\n"), "{text}");
    assert!(!text.contains("istio_weird"));
}

mod more;
