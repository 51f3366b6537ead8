use super::*;
use crate::stats::istio::ListenerDirection;
use crate::stats::istio::peer::tests::client_node_metadata;
use envoy_types::pb::google::protobuf::{Struct, value::Kind};
use std::collections::HashMap;

fn node() -> NodeInfo {
    NodeInfo {
        id: "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local".into(),
        cluster: "productpage.default".into(),
        metadata: client_node_metadata(),
        region: "us-east4".into(),
        zone: "us-east4-b".into(),
    }
}

fn upstream() -> UpstreamTarget<'static> {
    UpstreamTarget {
        cluster_name: Some("outbound|9080||ratings.default.svc.cluster.local"),
        ..Default::default()
    }
}

#[test]
fn the_legacy_plugin_exchanges_both_ways() {
    let client = PeerExchange::new(
        ExchangeConfig::legacy_metadata_exchange(ListenerDirection::Outbound),
        &node(),
    );
    // Outbound request: our headers are added.
    let mut req = HeaderMap::new();
    let mut state = ExchangeState::default();
    let found = client.on_request(&mut req, &mut state, &upstream());
    assert_eq!(found, Discovered::default());
    assert_eq!(
        req.get(PEER_METADATA_ID_HEADER).unwrap(),
        "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local"
    );
    let sent = req.get(PEER_METADATA_HEADER).unwrap().clone();
    let decoded = WorkloadMetadata::from_header_value(sent.as_bytes(), &[]).unwrap();
    assert_eq!(&*decoded.workload_name, "productpage-v1");
    // The node's locality fills in REGION / AVAILABILITY_ZONE.
    assert_eq!(
        (&*decoded.region, &*decoded.zone),
        ("us-east4", "us-east4-b")
    );

    // The server side reads them, strips them, and answers with its own.
    let mut server_node = node();
    server_node.id = "server-id".into();
    let server = PeerExchange::new(
        ExchangeConfig::legacy_metadata_exchange(ListenerDirection::Inbound),
        &server_node,
    );
    let mut server_state = ExchangeState::default();
    let found = server.on_request(&mut req, &mut server_state, &UpstreamTarget::default());
    assert_eq!(
        found.peer.as_ref().map(|p| &*p.workload_name),
        Some("productpage-v1")
    );
    // An inbound proxy sends no exchange headers to its application.
    assert!(req.is_empty(), "{req:?}");
    let mut resp = HeaderMap::new();
    server.on_response(&mut resp, &server_state, &UpstreamTarget::default());
    assert_eq!(resp.get(PEER_METADATA_ID_HEADER).unwrap(), "server-id");
    assert!(resp.contains_key(PEER_METADATA_HEADER));

    // Back at the client: the upstream peer is discovered and the headers removed before the
    // response reaches the app (which sent none, so none are added).
    let found = client.on_response(&mut resp, &state, &upstream());
    assert!(found.peer.is_some());
    assert!(resp.is_empty(), "{resp:?}");
}

#[test]
fn responses_answer_only_what_the_request_carried() {
    let cfg = ExchangeConfig::legacy_metadata_exchange(ListenerDirection::Inbound);
    let x = PeerExchange::new(cfg, &node());
    let mut req = HeaderMap::new();
    req.insert(PEER_METADATA_HEADER, HeaderValue::from_static(""));
    let mut state = ExchangeState::default();
    let found = x.on_request(&mut req, &mut state, &upstream());
    assert_eq!(found.peer, None, "an empty value is no peer");
    assert!(req.is_empty());
    let mut resp = HeaderMap::new();
    x.on_response(&mut resp, &state, &upstream());
    assert!(resp.contains_key(PEER_METADATA_HEADER));
    assert!(!resp.contains_key(PEER_METADATA_ID_HEADER));
}

#[test]
fn bad_headers_are_reported_and_removed() {
    let x = PeerExchange::new(
        ExchangeConfig::legacy_metadata_exchange(ListenerDirection::Unspecified),
        &node(),
    );
    let mut req = HeaderMap::new();
    req.insert(PEER_METADATA_HEADER, HeaderValue::from_static("%%%"));
    req.insert(PEER_METADATA_ID_HEADER, HeaderValue::from_static("id"));
    let found = x.on_request(&mut req, &mut ExchangeState::default(), &upstream());
    assert!(found.bad_header);
    assert_eq!(found.peer, None);
    // Replaced by ours, going upstream.
    assert_eq!(
        req.get(PEER_METADATA_ID_HEADER).unwrap(),
        node().id.as_str()
    );
    assert_ne!(req.get(PEER_METADATA_HEADER).unwrap(), "%%%");
}

#[test]
fn external_clusters_can_be_skipped() {
    let cfg = ExchangeConfig {
        upstream_propagation: vec![Propagation::IstioHeaders {
            skip_external_clusters: true,
        }],
        ..Default::default()
    };
    let x = PeerExchange::new(cfg, &node());
    let pass = UpstreamTarget {
        cluster_name: Some("PassthroughCluster"),
        ..Default::default()
    };
    let mut req = HeaderMap::new();
    x.on_request(&mut req, &mut ExchangeState::default(), &pass);
    assert!(req.is_empty());
    let fm: HashMap<String, Struct> = [(
        "istio".to_string(),
        Struct {
            fields: [(
                "external".to_string(),
                envoy_types::pb::google::protobuf::Value {
                    kind: Some(Kind::BoolValue(true)),
                },
            )]
            .into_iter()
            .collect(),
        },
    )]
    .into_iter()
    .collect();
    let info = crate::stats::istio::IstioCluster::from_filter_metadata(&fm);
    let ext = UpstreamTarget::new("outbound|443||example.com", info.as_ref());
    assert!(ext.external && !ext.disable_mx);
    x.on_request(&mut req, &mut ExchangeState::default(), &ext);
    assert!(req.is_empty());
    x.on_request(&mut req, &mut ExchangeState::default(), &upstream());
    assert!(req.contains_key(PEER_METADATA_HEADER));
}

#[test]
fn baggage_discovery_and_propagation() {
    let cfg = ExchangeConfig {
        downstream_discovery: vec![Discovery::WorkloadDiscovery, Discovery::Baggage],
        upstream_propagation: vec![Propagation::Baggage],
        ..Default::default()
    };
    let x = PeerExchange::new(cfg, &node());
    let mut req = HeaderMap::new();
    req.insert(
        BAGGAGE_HEADER,
        HeaderValue::from_static("k8s.deployment.name=sleep,k8s.namespace.name=foo"),
    );
    let found = x.on_request(&mut req, &mut ExchangeState::default(), &upstream());
    let peer = found.peer.unwrap();
    assert_eq!(
        (&*peer.workload_name, &*peer.namespace_name),
        ("sleep", "foo")
    );
    assert_eq!(
        req.get(BAGGAGE_HEADER).unwrap().to_str().unwrap(),
        x.local.to_baggage()
    );
}
