use super::*;
use envoy_types::pb::google::protobuf::{Value as PbValue, value::Kind as K};

fn sv(s: &str) -> PbValue {
    PbValue {
        kind: Some(K::StringValue(s.into())),
    }
}

/// The client node metadata of istio/proxy's stats tests (the fields Istio reads).
pub(crate) fn client_node_metadata() -> Struct {
    let labels = Struct {
        fields: [
            ("app", "productpage"),
            ("pod-template-hash", "84975bc778"),
            ("version", "v1"),
            ("service.istio.io/canonical-name", "productpage-v1"),
            ("service.istio.io/canonical-revision", "version-1"),
            ("role", "client"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), sv(v)))
        .collect(),
    };
    let mut fields: std::collections::HashMap<String, PbValue> = [
        ("ISTIO_VERSION", "1.5-dev"),
        ("MESH_ID", "mesh"),
        ("NAME", "productpage-v1-84975bc778-pxz2w"),
        ("NAMESPACE", "default"),
        ("CLUSTER_ID", "client-cluster"),
        (
            "OWNER",
            "kubernetes://apis/apps/v1/namespaces/default/deployments/productpage-v1",
        ),
        ("WORKLOAD_NAME", "productpage-v1"),
        ("SERVICE_ACCOUNT", "bookinfo-productpage"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), sv(v)))
    .collect();
    fields.insert(
        "LABELS".into(),
        PbValue {
            kind: Some(K::StructValue(labels)),
        },
    );
    Struct { fields }
}

#[test]
fn node_metadata_reads_as_istio_does() {
    let m = WorkloadMetadata::from_node_metadata(&client_node_metadata(), &["role".into()]);
    assert_eq!(&*m.instance_name, "productpage-v1-84975bc778-pxz2w");
    assert_eq!(&*m.namespace_name, "default");
    assert_eq!(&*m.workload_name, "productpage-v1");
    assert_eq!(&*m.cluster_name, "client-cluster");
    assert_eq!(&*m.canonical_name, "productpage-v1");
    assert_eq!(&*m.canonical_revision, "version-1");
    assert_eq!(&*m.app_name, "productpage");
    assert_eq!(&*m.app_version, "v1");
    assert_eq!(m.workload_type, WorkloadType::Deployment);
    assert_eq!(m.labels, vec![(Arc::from("role"), Arc::from("client"))]);
    // Without additional labels, other labels are not kept.
    let plain = WorkloadMetadata::from_node_metadata(&client_node_metadata(), &[]);
    assert!(plain.labels.is_empty());
    assert_eq!(plain.field("service"), Some("productpage-v1"));
    assert_eq!(plain.field("type"), Some("deployment"));
    assert_eq!(plain.field("identity"), None);
}

#[test]
fn qualified_app_labels_win() {
    let mut md = client_node_metadata();
    let Some(K::StructValue(labels)) = md.fields.get_mut("LABELS").and_then(|v| v.kind.as_mut())
    else {
        unreachable!()
    };
    labels
        .fields
        .insert("app.kubernetes.io/name".into(), sv("pp"));
    labels
        .fields
        .insert("app.kubernetes.io/version".into(), sv("2"));
    let m = WorkloadMetadata::from_node_metadata(&md, &[]);
    assert_eq!((&*m.app_name, &*m.app_version), ("pp", "2"));
}

#[test]
fn owners_name_the_workload_type() {
    let owner = |kind: &str| format!("kubernetes://apis/apps/v1/namespaces/ns/{kind}/w");
    assert_eq!(
        WorkloadType::from_owner(&owner("deployments"), "w"),
        WorkloadType::Deployment
    );
    assert_eq!(
        WorkloadType::from_owner(&owner("cronjobs"), "w"),
        WorkloadType::CronJob
    );
    assert_eq!(
        WorkloadType::from_owner(&owner("replicasets"), "w"),
        WorkloadType::Unknown
    );
    assert_eq!(WorkloadType::from_owner("w", "w"), WorkloadType::Unknown);
    assert_eq!(
        WorkloadType::from_owner("", "long-name"),
        WorkloadType::Unknown
    );
    assert_eq!(
        WorkloadType::from_owner("é/xs/w", "w"),
        WorkloadType::Unknown
    );
}

#[test]
fn header_encoding_is_protobuf_with_sorted_keys() {
    let m = WorkloadMetadata {
        instance_name: "a".into(),
        namespace_name: "n".into(),
        ..Default::default()
    };
    let bytes = m.to_struct().encode_to_vec();
    // Struct{fields: {"LABELS": {struct_value: {}}, "NAME": "a", "NAMESPACE": "n"}}, map
    // entries in key order, each `0a <len> 0a <key> 12 <Value>`.
    let mut want = Vec::new();
    for (key, value) in [
        ("LABELS", vec![0x2a, 0x00]),
        ("NAME", vec![0x1a, 0x01, b'a']),
        ("NAMESPACE", vec![0x1a, 0x01, b'n']),
    ] {
        let mut entry = vec![0x0a, key.len() as u8];
        entry.extend_from_slice(key.as_bytes());
        entry.push(0x12);
        entry.push(value.len() as u8);
        entry.extend_from_slice(&value);
        want.push(0x0a);
        want.push(entry.len() as u8);
        want.extend_from_slice(&entry);
    }
    assert_eq!(bytes, want);
    let header = m.to_header_value();
    assert_eq!(
        header,
        base64::engine::general_purpose::STANDARD.encode(&want)
    );
    // The same metadata always encodes the same way.
    assert_eq!(header, m.clone().to_header_value());
}

#[test]
fn header_values_round_trip_with_or_without_padding() {
    let mut m = WorkloadMetadata::from_node_metadata(&client_node_metadata(), &["role".into()]);
    m.identity = "spiffe://cluster.local/ns/default/sa/client".into();
    m.region = "r".into();
    m.zone = "z".into();
    let header = m.to_header_value();
    let back = WorkloadMetadata::from_header_value(header.as_bytes(), &["role".into()]).unwrap();
    assert_eq!(back, m);
    let unpadded = header.trim_end_matches('=');
    assert_ne!(unpadded.len(), header.len(), "this value needs padding");
    let back = WorkloadMetadata::from_header_value(unpadded.as_bytes(), &["role".into()]).unwrap();
    assert_eq!(back, m);
}

#[test]
fn bad_header_values_are_errors() {
    assert!(matches!(
        WorkloadMetadata::from_header_value(b"not base64!", &[]),
        Err(PeerMetadataError::Base64(_))
    ));
    // Valid base64 of bytes that are not a Struct (a truncated length-delimited field).
    let junk = base64::engine::general_purpose::STANDARD.encode([0x0a, 0x7f, 0x01]);
    assert!(matches!(
        WorkloadMetadata::from_header_value(junk.as_bytes(), &[]),
        Err(PeerMetadataError::Protobuf(_))
    ));
    // An empty value is an empty struct: a peer that knows nothing.
    assert_eq!(
        WorkloadMetadata::from_header_value(b"", &[]),
        Ok(WorkloadMetadata::default())
    );
}

#[test]
fn endpoint_metadata_has_five_parts() {
    let m = WorkloadMetadata::from_endpoint_metadata(
        "ratings-v1;default;ratings;version-1;server-cluster",
    )
    .unwrap();
    assert_eq!(&*m.workload_name, "ratings-v1");
    assert_eq!(&*m.namespace_name, "default");
    assert_eq!(&*m.canonical_name, "ratings");
    assert_eq!(&*m.canonical_revision, "version-1");
    assert_eq!(&*m.cluster_name, "server-cluster");
    assert!(WorkloadMetadata::from_endpoint_metadata("a;b;c;d").is_none());
    assert!(WorkloadMetadata::from_endpoint_metadata("a;b;c;d;e;f").is_some());
}

#[test]
fn baggage_round_trips() {
    let m = WorkloadMetadata::from_node_metadata(&client_node_metadata(), &[]);
    let b = m.to_baggage();
    assert_eq!(
        b,
        "k8s.deployment.name=productpage-v1,service.name=productpage-v1,app.name=productpage,\
         service.version=version-1,app.version=v1,k8s.namespace.name=default,\
         k8s.cluster.name=client-cluster,k8s.instance.name=productpage-v1-84975bc778-pxz2w"
    );
    let back = WorkloadMetadata::from_baggage(&b);
    assert_eq!(&*back.workload_name, "productpage-v1");
    assert_eq!(back.workload_type, WorkloadType::Deployment);
    assert_eq!(&*back.canonical_name, "productpage-v1");
    assert_eq!(&*back.app_name, "productpage");
    assert_eq!(&*back.canonical_revision, "version-1");
    assert_eq!(&*back.app_version, "v1");
    assert_eq!(&*back.namespace_name, "default");
    assert_eq!(&*back.cluster_name, "client-cluster");
    // app.name alone stands for the service too; junk members are ignored.
    let only_app = WorkloadMetadata::from_baggage("app.name=x, junk ,=,k8s.pod.name=p");
    assert_eq!((&*only_app.app_name, &*only_app.canonical_name), ("x", "x"));
    assert_eq!(only_app.workload_type, WorkloadType::Pod);
}
