//! xDS: tern's ADS client against a real gRPC ADS server (`support::ads`). The first tests
//! check that server itself with a plain tonic client.

mod support;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc;
use prost::{Message, Name};
use std::collections::HashMap;
use std::time::Duration;
use support::ads::{
    AdsServer, Batch, DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest,
    DiscoveryResponse, Protocol, dynamic_resources_yaml,
};
use support::{bootstrap, within};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

const WAIT: Duration = Duration::from_secs(5);

fn lds() -> String {
    Listener::type_url()
}

fn cds() -> String {
    Cluster::type_url()
}

fn eds() -> String {
    ClusterLoadAssignment::type_url()
}

fn listener(name: &str) -> Listener {
    Listener {
        name: name.to_owned(),
        ..Default::default()
    }
}

fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_owned(),
        ..Default::default()
    }
}

fn cla(name: &str) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        ..Default::default()
    }
}

/// The listener names in a SotW response, sorted.
fn listener_names(r: &DiscoveryResponse) -> Vec<String> {
    let mut names: Vec<String> = r
        .resources
        .iter()
        .map(|a| {
            Listener::decode(a.value.as_slice())
                .expect("a Listener")
                .name
        })
        .collect();
    names.sort();
    names
}

/// The resource names in a delta response.
fn delta_names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

/// One ADS stream opened by a plain tonic client; requests go through a channel.
struct Stream<Req, Resp> {
    tx: mpsc::UnboundedSender<Req>,
    rx: Streaming<Resp>,
}

impl<Req, Resp> Stream<Req, Resp> {
    fn send(&self, req: Req) {
        self.tx.send(req).expect("stream open");
    }

    async fn recv(&mut self) -> Resp {
        within(5, self.rx.message())
            .await
            .expect("no error status")
            .expect("a response")
    }

    /// The stream's end: `Err` with a status, or `Ok(None)`.
    async fn end(&mut self) -> Result<Option<Resp>, tonic::Status> {
        within(5, self.rx.message()).await
    }
}

fn with_metadata<T>(inner: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(inner);
    req.metadata_mut()
        .insert("x-test-key", "sidecar~10.0.0.1".parse().expect("value"));
    req
}

async fn sotw(ads: &AdsServer) -> Stream<DiscoveryRequest, DiscoveryResponse> {
    let (tx, rx) = mpsc::unbounded_channel();
    let req = with_metadata(UnboundedReceiverStream::new(rx));
    let mut client = ads.client().await;
    let rx = within(5, client.stream_aggregated_resources(req))
        .await
        .expect("stream opens")
        .into_inner();
    Stream { tx, rx }
}

async fn delta(ads: &AdsServer) -> Stream<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
    let (tx, rx) = mpsc::unbounded_channel();
    let req = with_metadata(UnboundedReceiverStream::new(rx));
    let mut client = ads.client().await;
    let rx = within(5, client.delta_aggregated_resources(req))
        .await
        .expect("stream opens")
        .into_inner();
    Stream { tx, rx }
}

fn request(type_url: &str, version: &str, names: &[&str], nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_owned(),
        node: Some(Node {
            id: "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local".to_owned(),
            ..Default::default()
        }),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        type_url: type_url.to_owned(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    }
}

fn ack(r: &DiscoveryResponse) -> DiscoveryRequest {
    request(&r.type_url, &r.version_info, &[], &r.nonce)
}

fn nack(type_url: &str, version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(rpc::Status {
            code: 3,
            message: "rejected".to_owned(),
            ..Default::default()
        }),
        ..request(type_url, version, &[], nonce)
    }
}

#[tokio::test]
async fn sotw_initial_fetch_ack_and_push_on_change() {
    let ads = AdsServer::tcp().await;
    ads.set_listener(&listener("l1"));
    ads.set_endpoints(&cla("a"));
    let mut s = sotw(&ads).await;

    s.send(request(&lds(), "", &[], ""));
    let r1 = s.recv().await;
    assert_eq!(r1.type_url, lds());
    assert_eq!(r1.version_info, ads.version(&lds()));
    assert_eq!(listener_names(&r1), ["l1"]);
    assert!(!r1.nonce.is_empty());

    s.send(ack(&r1));
    let acked = ads.wait_for(|r| r.response_nonce() == r1.nonce, WAIT).await;
    assert_eq!(acked.stream, 1);
    assert_eq!(acked.protocol(), Protocol::Sotw);
    assert_eq!(ads.responses().len(), 1, "an ACK gets no response");
    assert_eq!(ads.streams_opened(), 1);
    assert_eq!(ads.connected(), 1);
    let md = ads.metadata(1).expect("stream 1");
    assert_eq!(md.get("x-test-key").expect("sent"), "sidecar~10.0.0.1");

    // A change is pushed with the whole state of the world.
    ads.set_listener(&listener("l2"));
    let r2 = s.recv().await;
    assert_eq!(listener_names(&r2), ["l1", "l2"]);
    assert_ne!(r2.version_info, r1.version_info);
    assert_ne!(r2.nonce, r1.nonce);
    s.send(ack(&r2));

    // Named resources: only those that exist; a newly named one that exists is sent.
    s.send(request(&eds(), "", &["a", "b"], ""));
    let e1 = s.recv().await;
    assert_eq!(e1.resources.len(), 1);
    s.send(request(&eds(), &e1.version_info, &["a", "b"], &e1.nonce));
    ads.set_endpoints(&cla("b"));
    let e2 = s.recv().await;
    assert_eq!(e2.resources.len(), 2);

    // One batch, one response per type.
    let changed = ads.apply(Batch::new().listener(&listener("l3")).remove(&lds(), "l1"));
    assert_eq!(changed.len(), 1);
    let r3 = s.recv().await;
    assert_eq!(listener_names(&r3), ["l2", "l3"]);

    drop(s);
    ads.wait_connected(0, WAIT).await;
}

#[tokio::test]
async fn sotw_stale_nonce_nack_and_raw_pushes() {
    let ads = AdsServer::tcp().await;
    ads.set_listener(&listener("l1"));
    let mut s = sotw(&ads).await;
    s.send(request(&lds(), "", &[], ""));
    let r1 = s.recv().await;
    // A push before the client answered r1: r1's nonce is now stale.
    ads.set_listener(&listener("l2"));
    let r2 = s.recv().await;

    s.send(request(&lds(), &r1.version_info, &["l9"], &r1.nonce));
    ads.wait_for(|r| r.response_nonce() == r1.nonce, WAIT).await;
    assert_eq!(ads.responses().len(), 2, "a stale request is ignored");

    // A NACK of r2 does not get r2 again.
    s.send(nack(&lds(), &r1.version_info, &r2.nonce));
    ads.wait_for(|r| r.is_nack(), WAIT).await;
    assert_eq!(ads.responses().len(), 2, "no resend of a NACKed version");
    assert_eq!(ads.nacks().len(), 1);
    ads.set_listener(&listener("l3"));
    let r3 = s.recv().await;
    assert_eq!(listener_names(&r3), ["l1", "l2", "l3"]);
    s.send(ack(&r3));

    // Manual mode: nothing automatic, raw garbage goes out as is.
    ads.set_auto(false);
    ads.set_listener(&listener("l4"));
    let garbage = DiscoveryResponse {
        version_info: "garbage".to_owned(),
        resources: vec![Any {
            type_url: "type.googleapis.com/no.such.Type".to_owned(),
            value: vec![0xff, 0xff, 0xff],
        }],
        type_url: lds(),
        nonce: "raw-1".to_owned(),
        ..Default::default()
    };
    assert_eq!(ads.push_raw_sotw(garbage.clone()), 1);
    assert_eq!(s.recv().await, garbage);
    s.send(nack(&lds(), &r3.version_info, "raw-1"));
    ads.wait_for(|r| r.response_nonce() == "raw-1", WAIT).await;

    // Back to automatic: the stream gets what it misses.
    ads.set_auto(true);
    let r4 = s.recv().await;
    assert_eq!(listener_names(&r4), ["l1", "l2", "l3", "l4"]);
    assert_eq!(r4.version_info, ads.version(&lds()));
}

#[tokio::test]
async fn delta_subscribe_add_remove_and_wildcard() {
    let ads = AdsServer::tcp().await;
    ads.set_endpoints(&cla("a"));
    let mut s = delta(&ads).await;

    s.send(DeltaDiscoveryRequest {
        type_url: eds(),
        resource_names_subscribe: vec!["a".into(), "b".into()],
        ..Default::default()
    });
    let d1 = s.recv().await;
    assert_eq!(delta_names(&d1), ["a"]);
    assert_eq!(d1.resources[0].version, ads.get(&eds(), "a").expect("a").1);
    assert_eq!(d1.removed_resources, ["b"], "b does not exist");
    assert_eq!(d1.system_version_info, ads.system_version().to_string());
    s.send(DeltaDiscoveryRequest {
        type_url: eds(),
        response_nonce: d1.nonce.clone(),
        ..Default::default()
    });

    // Only what changed.
    ads.set_endpoints(&cla("b"));
    let d2 = s.recv().await;
    assert_eq!(delta_names(&d2), ["b"]);
    assert!(d2.removed_resources.is_empty());
    assert!(ads.remove(&eds(), "a"));
    let d3 = s.recv().await;
    assert!(d3.resources.is_empty());
    assert_eq!(d3.removed_resources, ["a"]);

    // Unsubscribed: b's change is not sent; a (still subscribed) is.
    s.send(DeltaDiscoveryRequest {
        type_url: eds(),
        resource_names_unsubscribe: vec!["b".into()],
        ..Default::default()
    });
    ads.wait_for(
        |r| {
            r.delta()
                .is_some_and(|d| !d.resource_names_unsubscribe.is_empty())
        },
        WAIT,
    )
    .await;
    ads.set_endpoints(&cla("b"));
    ads.set_endpoints(&cla("a"));
    let d4 = s.recv().await;
    assert_eq!(delta_names(&d4), ["a"]);

    // Wildcard CDS with versions the client already has (a reconnect).
    ads.apply(Batch::new().cluster(&cluster("c1")).cluster(&cluster("c2")));
    let c1_version = ads.get(&cds(), "c1").expect("c1").1;
    s.send(DeltaDiscoveryRequest {
        type_url: cds(),
        initial_resource_versions: HashMap::from([
            ("c1".to_owned(), c1_version),
            ("gone".to_owned(), "1".to_owned()),
        ]),
        ..Default::default()
    });
    let d5 = s.recv().await;
    assert_eq!(delta_names(&d5), ["c2"]);
    assert_eq!(d5.removed_resources, ["gone"]);
    assert_eq!(ads.streams()[0].protocol, Protocol::Delta);
}

#[tokio::test]
async fn restart_on_same_port_keeps_state_and_break_streams() {
    let ads = AdsServer::tcp().await;
    let addr = ads.addr();
    ads.set_listener(&listener("l1"));
    let mut s = sotw(&ads).await;
    s.send(request(&lds(), "", &[], ""));
    let r1 = s.recv().await;

    ads.stop().await;
    assert!(!ads.is_serving());
    assert_eq!(ads.connected(), 0);
    assert!(!matches!(s.end().await, Ok(Some(_))), "the stream ends");

    ads.start().await;
    assert_eq!(ads.addr(), addr);
    let mut s = sotw(&ads).await;
    // A client that has the current version gets nothing; one that has not gets it again.
    s.send(request(&lds(), &r1.version_info, &[], ""));
    ads.wait_for(|r| r.stream == 2, WAIT).await;
    assert_eq!(ads.responses().len(), 1);
    let mut s3 = sotw(&ads).await;
    s3.send(request(&lds(), "", &[], ""));
    let again = s3.recv().await;
    assert_eq!(again.version_info, r1.version_info);
    assert_eq!(again.resources, r1.resources);
    assert_eq!(ads.streams_opened(), 3);

    // Broken streams end with UNAVAILABLE; the server stays up.
    ads.break_streams().await;
    for s in [&mut s, &mut s3] {
        let status = s.end().await.expect_err("an error status");
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
    let mut s4 = sotw(&ads).await;
    s4.send(request(&lds(), "", &[], ""));
    assert_eq!(listener_names(&s4.recv().await), ["l1"]);
}

#[tokio::test]
async fn unix_socket_and_bootstrap_snippets() {
    let path = std::env::temp_dir().join(format!("tern-ads-{}.sock", std::process::id()));
    let ads = AdsServer::unix(&path).await;
    assert_eq!(ads.path(), path);
    ads.set_listener(&listener("l1"));
    let mut s = delta(&ads).await;
    s.send(DeltaDiscoveryRequest {
        type_url: lds(),
        ..Default::default()
    });
    assert_eq!(delta_names(&s.recv().await), ["l1"]);

    ads.stop().await;
    ads.start().await;
    let mut s = delta(&ads).await;
    s.send(DeltaDiscoveryRequest {
        type_url: lds(),
        ..Default::default()
    });
    assert_eq!(delta_names(&s.recv().await), ["l1"]);

    let yaml =
        bootstrap(&[], &[ads.cluster_yaml("xds-grpc")]) + &dynamic_resources_yaml("xds-grpc", true);
    let b = tern::config::parse_bootstrap(&yaml, false, false).expect("a valid bootstrap");
    let ads_config = b
        .dynamic_resources
        .expect("dynamic")
        .ads_config
        .expect("ads");
    assert_eq!(ads_config.api_type(), ApiType::DeltaGrpc);
    let cluster = &b.static_resources.expect("static").clusters[0];
    assert_eq!(cluster.name, "xds-grpc");
    drop(ads);
    let _ = std::fs::remove_file(&path);
}
