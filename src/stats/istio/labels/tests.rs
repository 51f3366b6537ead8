use super::*;
use envoy_types::pb::google::protobuf::{ListValue, Value};

fn sv(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn services(entries: &[(&str, &str)]) -> HashMap<String, Struct> {
    let svc = Struct {
        fields: entries
            .iter()
            .map(|(k, v)| (k.to_string(), sv(v)))
            .collect(),
    };
    let list = Value {
        kind: Some(Kind::ListValue(ListValue {
            values: vec![Value {
                kind: Some(Kind::StructValue(svc)),
            }],
        })),
    };
    let istio = Struct {
        fields: [("services".to_string(), list)].into_iter().collect(),
    };
    [("istio".to_string(), istio)].into_iter().collect()
}

fn a(s: &str) -> Option<Arc<str>> {
    Some(s.into())
}

#[test]
fn reporter_follows_the_config_then_the_listener_direction() {
    use ListenerDirection::*;
    assert_eq!(Reporter::resolve(false, Inbound), Reporter::ServerSidecar);
    assert_eq!(Reporter::resolve(false, Outbound), Reporter::ClientSidecar);
    assert_eq!(
        Reporter::resolve(false, Unspecified),
        Reporter::ClientSidecar
    );
    assert_eq!(Reporter::resolve(true, Outbound), Reporter::ServerGateway);
    assert_eq!(Reporter::ServerSidecar.label(), "destination");
    assert_eq!(Reporter::ClientSidecar.label(), "source");
    assert_eq!(Reporter::ServerGateway.label(), "waypoint");
}

#[test]
fn cluster_metadata_names_the_service() {
    let md = services(&[
        ("host", "reviews.default.svc.cluster.local"),
        ("name", "reviews"),
        ("namespace", "default"),
    ]);
    let svc = ClusterService::from_filter_metadata(&md).unwrap();
    assert_eq!(svc.host, a("reviews.default.svc.cluster.local"));
    let cluster = ClusterRef {
        name: "outbound|9080||reviews.default.svc.cluster.local",
        service: Some(&svc),
    };
    // The metadata wins over the Host header.
    let d = destination_service(Some("reviews:9080"), false, Some("r"), Some(cluster));
    assert_eq!(
        d,
        DestinationService {
            host: a("reviews.default.svc.cluster.local"),
            name: a("reviews"),
            namespace: a("default"),
        }
    );
    // Without `name`, the host up to its first dot.
    let md = services(&[("host", "ratings.prod.svc.cluster.local")]);
    let svc = ClusterService::from_filter_metadata(&md).unwrap();
    let cluster = ClusterRef {
        name: "c",
        service: Some(&svc),
    };
    let d = destination_service(None, false, None, Some(cluster));
    assert_eq!((d.name, d.namespace), (a("ratings"), None));
    assert!(ClusterService::from_filter_metadata(&HashMap::new()).is_none());
}

#[test]
fn host_header_fallback_and_passthrough_names() {
    let plain = ClusterRef {
        name: "outbound|80||x",
        service: None,
    };
    let d = destination_service(Some("127.0.0.1:8080"), false, None, Some(plain));
    assert_eq!(
        (d.host.clone(), d.name),
        (a("127.0.0.1:8080"), a("127.0.0.1:8080"))
    );
    let d = destination_service(Some("127.0.0.1:8080"), true, None, Some(plain));
    assert_eq!(d, DestinationService::default());
    let pass = ClusterRef {
        name: "PassthroughCluster",
        service: None,
    };
    let d = destination_service(Some("example.com"), false, None, Some(pass));
    assert_eq!(
        (d.host, d.name),
        (a("example.com"), a("PassthroughCluster"))
    );
    let d = destination_service(Some("h"), false, Some("block_all"), Some(pass));
    assert_eq!(d.name, a("BlackHoleCluster"));
    let d = destination_service(None, false, Some("allow_any"), None);
    assert_eq!((d.host, d.name), (None, a("PassthroughCluster")));
}

#[test]
fn principal_namespaces() {
    assert_eq!(
        principal_namespace("spiffe://cluster.local/ns/default/sa/client"),
        Some("default")
    );
    assert_eq!(principal_namespace("spiffe://td/ns/foo"), Some("foo"));
    assert_eq!(principal_namespace("spiffe://td/sa/x"), None);
}

fn local() -> LocalLabels {
    LocalLabels {
        workload_name: "ratings-v1".into(),
        namespace: "default".into(),
        canonical_name: "ratings".into(),
        canonical_revision: "version-1".into(),
        cluster_id: "server-cluster".into(),
        app: "ratings".into(),
        version: "v1".into(),
        istio_version: "1.5-dev".into(),
    }
}

fn run(reporter: Reporter, inp: &PeerInputs<'_>) -> (Vec<(&'static str, String)>, String) {
    let mut out = Vec::new();
    let policy = peer_labels(reporter, &local(), inp, &mut out);
    let named = out
        .into_iter()
        .map(|(i, v)| (STANDARD_LABELS[i], v.to_string()))
        .collect();
    (named, policy.to_string())
}

#[test]
fn a_server_without_a_peer_reports_unknown_sources() {
    let svc = DestinationService::default();
    let inp = PeerInputs {
        peer: None,
        upstream_peer: None,
        service: &svc,
        principals: Principals::default(),
    };
    let (labels, policy) = run(Reporter::ServerSidecar, &inp);
    let v: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        v,
        [
            "unknown",
            "unknown",
            "latest",
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "ratings-v1",
            "default",
            "unknown",
            "ratings",
            "v1",
            "ratings",
            "ratings",
            "version-1",
            "ratings",
            "default",
            "server-cluster"
        ]
    );
    assert_eq!(labels[0].0, "source_workload");
    assert_eq!(labels[18].0, "destination_cluster");
    assert_eq!(policy, "none");
}

#[test]
fn mutual_tls_principals_name_namespaces() {
    let svc = DestinationService::default();
    let peer = WorkloadMetadata {
        namespace_name: "from-metadata".into(),
        ..Default::default()
    };
    let inp = PeerInputs {
        peer: Some(&peer),
        upstream_peer: None,
        service: &svc,
        principals: Principals {
            peer: Some("spiffe://cluster.local/ns/client-ns/sa/client"),
            local: Some("spiffe://cluster.local/ns/default/sa/server"),
        },
    };
    let (labels, policy) = run(Reporter::ServerSidecar, &inp);
    let get = |n: &str| labels.iter().find(|(k, _)| *k == n).unwrap().1.clone();
    assert_eq!(policy, "mutual_tls");
    assert_eq!(get("source_workload_namespace"), "client-ns");
    assert_eq!(
        get("source_principal"),
        "spiffe://cluster.local/ns/client-ns/sa/client"
    );
    assert_eq!(
        get("destination_principal"),
        "spiffe://cluster.local/ns/default/sa/server"
    );
}

#[test]
fn a_client_reports_its_peer_and_the_service() {
    let svc = DestinationService {
        host: a("server.default.svc.cluster.local"),
        name: a("server"),
        namespace: None,
    };
    let peer =
        WorkloadMetadata::from_endpoint_metadata("ratings-v1;default;ratings;;server-cluster")
            .unwrap();
    let inp = PeerInputs {
        peer: Some(&peer),
        upstream_peer: None,
        service: &svc,
        principals: Principals::default(),
    };
    let (labels, policy) = run(Reporter::ClientSidecar, &inp);
    let get = |n: &str| labels.iter().find(|(k, _)| *k == n).unwrap().1.clone();
    assert_eq!(policy, "unknown");
    assert_eq!(get("source_workload"), "ratings-v1");
    assert_eq!(get("destination_workload"), "ratings-v1");
    assert_eq!(get("destination_canonical_revision"), "latest");
    assert_eq!(
        get("destination_service"),
        "server.default.svc.cluster.local"
    );
    assert_eq!(get("destination_service_name"), "server");
    // No namespace in the cluster metadata: the peer's.
    assert_eq!(get("destination_service_namespace"), "default");
    assert_eq!(get("destination_app"), "unknown");
    // The upstream peer's identity stands in for a missing TLS principal.
    let up = WorkloadMetadata {
        identity: "spiffe://td/ns/other/sa/s".into(),
        ..Default::default()
    };
    let inp = PeerInputs {
        peer: Some(&up),
        upstream_peer: Some(&up),
        service: &svc,
        principals: Principals::default(),
    };
    let (labels, _) = run(Reporter::ClientSidecar, &inp);
    let get = |n: &str| labels.iter().find(|(k, _)| *k == n).unwrap().1.clone();
    assert_eq!(get("destination_principal"), "spiffe://td/ns/other/sa/s");
    assert_eq!(get("destination_workload_namespace"), "other");
}

#[test]
fn a_gateway_reports_the_upstream_peer_as_destination() {
    let svc = DestinationService {
        host: a("h.ns.svc.cluster.local"),
        name: a("h"),
        namespace: a("ns"),
    };
    let up = WorkloadMetadata {
        workload_name: "w".into(),
        canonical_name: "c".into(),
        ..Default::default()
    };
    let inp = PeerInputs {
        peer: None,
        upstream_peer: Some(&up),
        service: &svc,
        principals: Principals::default(),
    };
    let (labels, policy) = run(Reporter::ServerGateway, &inp);
    let get = |n: &str| labels.iter().find(|(k, _)| *k == n).unwrap().1.clone();
    assert_eq!(get("destination_workload"), "w");
    assert_eq!(get("destination_canonical_service"), "c");
    assert_eq!(get("destination_canonical_revision"), "unknown");
    assert_eq!(get("destination_service_namespace"), "ns");
    assert_eq!(get("destination_cluster"), "unknown");
    assert_eq!(policy, "none");
}
