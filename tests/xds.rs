//! xDS: tern's ADS client against a real gRPC ADS server (`support::ads`). The first tests
//! check that server itself with a plain tonic client.

#[path = "xds/istio_dump.rs"]
mod istio_dump;
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

// ---------------------------------------------------------------------------------------------
// tern against the ADS server.
// ---------------------------------------------------------------------------------------------

mod tern_client {
    use super::support::ads::{AdsServer, Batch, XdsRequest};
    use super::support::{self, Client, within};
    use super::*;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tern::server::Server;
    use tern::xds::InitState;

    fn from_yaml<M: Message + Name + Default>(yaml: &str) -> M {
        tern::config::decode_message_file::<M>(Path::new("r.yaml"), yaml.as_bytes())
            .expect("test resource parses")
    }

    pub fn eds_cluster(name: &str) -> Cluster {
        from_yaml(&format!(
            "name: {name}\ntype: EDS\nconnect_timeout: 1s\neds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}, service_name: svc-{name}}}\n"
        ))
    }

    pub fn endpoints(service: &str, addrs: &[SocketAddr]) -> ClusterLoadAssignment {
        let eps: Vec<String> = addrs
            .iter()
            .map(|a| {
                format!(
                    "{{endpoint: {{address: {{socket_address: {{address: '{}', port_value: {}}}}}}}}}",
                    a.ip(),
                    a.port()
                )
            })
            .collect();
        from_yaml(&format!(
            "cluster_name: {service}\nendpoints: [{{lb_endpoints: [{}]}}]\n",
            eps.join(", ")
        ))
    }

    pub fn rds_listener(name: &str, route: &str) -> Listener {
        rds_listener_with_prefix(name, route, name)
    }

    /// An RDS listener whose HTTP connection manager has `stat_prefix` (a different prefix is
    /// a changed filter chain).
    pub fn rds_listener_with_prefix(name: &str, route: &str, stat_prefix: &str) -> Listener {
        from_yaml(&format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {stat_prefix}
      rds: {{route_config_name: {route}, config_source: {{ads: {{}}, resource_api_version: V3}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
        ))
    }

    pub fn route(name: &str, cluster: &str) -> RouteConfiguration {
        from_yaml(&format!(
            "name: {name}\nvirtual_hosts: [{{name: all, domains: ['*'], routes: [{{match: {{prefix: /}}, route: {{cluster: {cluster}}}}}]}}]\n"
        ))
    }

    pub fn tern_bootstrap(ads: &AdsServer, delta: bool, ads_extra: &str) -> String {
        let mut dr = dynamic_resources_yaml("xds-grpc", delta);
        if !ads_extra.is_empty() {
            dr = dr.replace(
                "    transport_api_version: V3\n",
                &format!("    transport_api_version: V3\n{ads_extra}"),
            );
        }
        format!(
            "node:\n  id: sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local\n  cluster: pod.ns\n  locality: {{region: r1, zone: z1}}\n  metadata: {{ISTIO_VERSION: '1.28.0', NAMESPACE: ns, LABELS: {{app: a}}}}\n{dr}static_resources:\n  clusters:\n{}",
            ads.cluster_yaml("xds-grpc")
        )
    }

    /// The whole config for one listener `l` → route `r` → EDS cluster `c` → `upstreams`.
    pub fn basic(upstreams: &[SocketAddr]) -> Batch {
        Batch::new()
            .cluster(&eds_cluster("c"))
            .endpoints(&endpoints("svc-c", upstreams))
            .listener(&rds_listener("l", "r"))
            .route(&route("r", "c"))
    }

    pub async fn start(ads: &AdsServer, delta: bool, extra: &str) -> Server {
        let server = support::start_tern(&tern_bootstrap(ads, delta, extra)).await;
        within(10, server.wait_initialized()).await;
        server
    }

    pub async fn listener_addr(server: &Server, name: &str) -> SocketAddr {
        let mut addr = None;
        assert!(
            support::eventually(5, || {
                addr = server.listener_addr(name);
                addr.is_some()
            })
            .await,
            "listener {name} never started"
        );
        addr.expect("checked")
    }

    fn acked(r: &XdsRequest, type_url: &str) -> bool {
        r.type_url() == type_url && !r.response_nonce().is_empty() && !r.is_nack()
    }

    fn counter(server: &Server, name: &str) -> u64 {
        server.world.stats.counter_value(name).unwrap_or(0)
    }

    async fn ok_through(client: &Client, addr: SocketAddr) -> support::Got {
        support::get(client, addr, "example.com", "/hello").await
    }

    #[tokio::test]
    async fn delta_initial_sync_serves_traffic_and_identifies_node() {
        let up = support::upstream::http("up").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[up.addr]));
        let extra = "    set_node_on_first_message_only: true\n    grpc_services:\n    - envoy_grpc: {cluster_name: xds-grpc}\n      initial_metadata: [{key: x-istio-token, value: secret-token}]\n";
        let mut dr_fixed = tern_bootstrap(&ads, true, "");
        // Replace the grpc_services block by one carrying initial_metadata.
        dr_fixed = dr_fixed.replace(
            "    grpc_services:\n    - envoy_grpc: { cluster_name: xds-grpc }\n",
            extra,
        );
        let server = support::start_tern(&dr_fixed).await;
        within(10, server.wait_initialized()).await;
        assert_eq!(
            server.xds.as_ref().unwrap().init_state(),
            InitState::Initialized
        );
        let addr = listener_addr(&server, "l").await;
        let got = ok_through(&support::h1_client(), addr).await;
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.headers["x-upstream"], "up");

        let reqs = ads.requests();
        let first = reqs[0].delta().expect("delta stream");
        assert_eq!(first.type_url, cds(), "CDS is asked for first");
        let node = first.node.as_ref().expect("node on the first message");
        assert_eq!(node.id, "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
        assert_eq!(node.cluster, "pod.ns");
        assert_eq!(node.user_agent_name, "tern");
        assert_eq!(node.locality.as_ref().unwrap().zone, "z1");
        let md = node.metadata.as_ref().expect("metadata as given");
        assert!(md.fields.contains_key("ISTIO_VERSION") && md.fields.contains_key("LABELS"));
        assert!(
            reqs[1..].iter().all(|r| r.delta().unwrap().node.is_none()),
            "set_node_on_first_message_only"
        );
        for t in [cds(), eds(), lds(), RouteConfiguration::type_url()] {
            ads.wait_for(|r| acked(r, &t), WAIT).await;
        }
        assert!(ads.nacks().is_empty(), "{:?}", ads.nacks());
        let eds_sub = reqs
            .iter()
            .find(|r| r.type_url() == eds())
            .and_then(|r| r.delta())
            .unwrap();
        assert_eq!(eds_sub.resource_names_subscribe, vec!["svc-c".to_string()]);
        let md = ads.metadata(reqs[0].stream).unwrap();
        assert_eq!(md.get("x-istio-token").unwrap(), "secret-token");
        assert_eq!(counter(&server, "cluster_manager.cds.update_success"), 1);
        assert_eq!(counter(&server, "listener_manager.lds.update_success"), 1);
        assert_eq!(counter(&server, "http.l.rds.r.update_success"), 1);
        assert_eq!(counter(&server, "cluster.c.update_success"), 1);
        assert_eq!(
            server
                .world
                .stats
                .gauges()
                .into_iter()
                .find(|(n, _)| n == "control_plane.connected_state")
                .map(|(_, v)| v),
            Some(1)
        );
    }

    #[tokio::test]
    async fn sotw_initial_sync_acks_version_and_nonce() {
        let up = support::upstream::http("up").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[up.addr]));
        let server = start(&ads, false, "").await;
        let addr = listener_addr(&server, "l").await;
        assert_eq!(ok_through(&support::h1_client(), addr).await.status, 200);
        let reqs = ads.requests();
        assert!(reqs.iter().all(|r| r.protocol() == Protocol::Sotw));
        let responses = ads.responses();
        let cds_resp = responses.iter().find(|r| r.type_url() == cds()).unwrap();
        let cds_resp = cds_resp.sotw().unwrap();
        let ack = ads
            .wait_for(
                |r| r.type_url() == cds() && r.response_nonce() == cds_resp.nonce,
                WAIT,
            )
            .await;
        let ack = ack.sotw().unwrap();
        assert_eq!(ack.version_info, cds_resp.version_info);
        assert!(ack.error_detail.is_none());
        let eds_req = reqs.iter().find(|r| r.type_url() == eds()).unwrap();
        assert_eq!(
            eds_req.sotw().unwrap().resource_names,
            vec!["svc-c".to_string()]
        );
        assert!(
            reqs.iter().all(|r| r.sotw().unwrap().node.is_some()),
            "node on every request by default"
        );
    }

    #[tokio::test]
    async fn nack_names_resource_and_keeps_last_good() {
        for delta in [true, false] {
            let up = support::upstream::http("up").await;
            let ads = AdsServer::tcp().await;
            ads.apply(basic(&[up.addr]));
            let server = start(&ads, delta, "").await;
            let addr = listener_addr(&server, "l").await;
            let client = support::h1_client();
            let mut bad = route("r", "c");
            bad.virtual_hosts[0].routes[0].r#match =
                Some(from_yaml("safe_regex: {regex: '(unclosed'}"));
            let before = ads.request_count();
            ads.set_route(&bad);
            let nack = ads.wait_for_since(before, |r| r.is_nack(), WAIT).await;
            let status = match &nack.request {
                XdsRequest::Sotw(r) => {
                    assert_ne!(r.version_info, ads.version(&RouteConfiguration::type_url()));
                    r.error_detail.clone().unwrap()
                }
                XdsRequest::Delta(r) => r.error_detail.clone().unwrap(),
            };
            assert_eq!(status.code, 3, "INVALID_ARGUMENT");
            assert!(
                status.message.contains("route configuration r")
                    && status.message.contains("regex"),
                "{}",
                status.message
            );
            assert_eq!(
                ok_through(&client, addr).await.status,
                200,
                "last good config serves"
            );
            assert_eq!(counter(&server, "http.l.rds.r.update_rejected"), 1);
            // A bad listener next to a good one: the good one is applied (LDS applies the
            // valid resources), the bad one is named.
            let mut broken = rds_listener("broken", "r");
            broken.address = None;
            let before = ads.request_count();
            ads.apply(
                Batch::new()
                    .listener(&broken)
                    .listener(&rds_listener("l2", "r")),
            );
            let nack = ads.wait_for_since(before, |r| r.is_nack(), WAIT).await;
            let msg = match &nack.request {
                XdsRequest::Sotw(r) => r.error_detail.clone().unwrap().message,
                XdsRequest::Delta(r) => r.error_detail.clone().unwrap().message,
            };
            assert!(
                msg.contains("listener broken") && msg.contains("address"),
                "{msg}"
            );
            let l2 = listener_addr(&server, "l2").await;
            assert_eq!(ok_through(&client, l2).await.status, 200);
            assert_eq!(ok_through(&client, addr).await.status, 200);
        }
    }

    #[tokio::test]
    async fn garbage_gets_a_nack_not_a_crash() {
        let up = support::upstream::http("up").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[up.addr]));
        let server = start(&ads, false, "").await;
        let addr = listener_addr(&server, "l").await;
        let before = ads.request_count();
        ads.push_raw_sotw(DiscoveryResponse {
            version_info: "junk-1".into(),
            type_url: cds(),
            nonce: "junk-nonce-1".into(),
            resources: vec![Any {
                type_url: cds(),
                value: vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
            }],
            ..Default::default()
        });
        let nack = ads
            .wait_for_since(before, |r| r.response_nonce() == "junk-nonce-1", WAIT)
            .await;
        assert!(nack.is_nack());
        let before = ads.request_count();
        ads.push_raw_sotw(DiscoveryResponse {
            version_info: "junk-2".into(),
            type_url: "type.googleapis.com/example.Unknown".into(),
            nonce: "junk-nonce-2".into(),
            ..Default::default()
        });
        let nack = ads
            .wait_for_since(before, |r| r.response_nonce() == "junk-nonce-2", WAIT)
            .await;
        assert!(nack.is_nack());
        // A cluster whose EDS source names a cluster that does not exist.
        let mut dangling = eds_cluster("dangling");
        dangling.eds_cluster_config.as_mut().unwrap().eds_config = Some(from_yaml(
            "api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: nowhere}}]}",
        ));
        let before = ads.request_count();
        ads.set_cluster(&dangling);
        let nack = ads.wait_for_since(before, |r| r.is_nack(), WAIT).await;
        let msg = nack.sotw().unwrap().error_detail.clone().unwrap().message;
        assert!(msg.contains("dangling") && msg.contains("nowhere"), "{msg}");
        assert_eq!(ok_through(&support::h1_client(), addr).await.status, 200);
    }

    #[tokio::test]
    async fn subscriptions_follow_listeners_and_clusters() {
        let up = support::upstream::http("up").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[up.addr]));
        let server = start(&ads, true, "").await;
        let _ = listener_addr(&server, "l").await;
        // A second cluster: its endpoints are subscribed.
        let before = ads.request_count();
        ads.set_cluster(&eds_cluster("d"));
        ads.wait_for_since(
            before,
            |r| {
                r.delta()
                    .is_some_and(|d| d.type_url == eds() && d.resource_names_subscribe == ["svc-d"])
            },
            WAIT,
        )
        .await;
        // Removed again: unsubscribed.
        let before = ads.request_count();
        ads.remove(&cds(), "d");
        ads.wait_for_since(
            before,
            |r| {
                r.delta().is_some_and(|d| {
                    d.type_url == eds() && d.resource_names_unsubscribe == ["svc-d"]
                })
            },
            WAIT,
        )
        .await;
        // A listener naming a second route table: subscribed; listener removed: unsubscribed.
        let rt = RouteConfiguration::type_url();
        let before = ads.request_count();
        ads.set_listener(&rds_listener("l2", "r2"));
        ads.wait_for_since(
            before,
            |r| {
                r.delta()
                    .is_some_and(|d| d.type_url == rt && d.resource_names_subscribe == ["r2"])
            },
            WAIT,
        )
        .await;
        let before = ads.request_count();
        ads.remove(&lds(), "l2");
        ads.wait_for_since(
            before,
            |r| {
                r.delta()
                    .is_some_and(|d| d.type_url == rt && d.resource_names_unsubscribe == ["r2"])
            },
            WAIT,
        )
        .await;
        let _ = server;
    }

    #[tokio::test]
    async fn listeners_and_clusters_warm_until_their_dependencies_arrive() {
        let up = support::upstream::http("up").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[up.addr]));
        let server = start(&ads, true, "").await;
        let addr = listener_addr(&server, "l").await;
        let client = support::h1_client();
        // A listener whose route table does not exist yet does not listen.
        ads.set_listener(&rds_listener("late", "r-late"));
        ads.wait_for(|r| acked(r, &lds()) && r.delta().is_some(), WAIT)
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            server.listener_addr("late").is_none(),
            "warming listener listens"
        );
        let warming = server
            .xds
            .as_ref()
            .unwrap()
            .with_store(|s| s.warming_listeners.contains_key("late"));
        assert!(warming);
        ads.set_route(&route("r-late", "c"));
        let late = listener_addr(&server, "late").await;
        assert_eq!(ok_through(&client, late).await.status, 200);
        // A cluster without endpoints is not routable until they arrive.
        ads.apply(
            Batch::new()
                .cluster(&eds_cluster("e"))
                .route(&route("r", "e")),
        );
        assert!(
            support::eventually(5, || server
                .xds
                .as_ref()
                .unwrap()
                .with_store(|s| s.warming_clusters.contains_key("e")))
            .await
        );
        assert!(server.world.cluster("e").is_none());
        assert_eq!(
            ok_through(&client, addr).await.status,
            503,
            "cluster e not there yet"
        );
        ads.set_endpoints(&endpoints("svc-e", &[up.addr]));
        assert!(support::eventually(5, || server.world.cluster("e").is_some()).await);
        assert_eq!(ok_through(&client, addr).await.status, 200);
    }

    #[tokio::test]
    async fn removed_listener_stops_and_removed_cluster_is_gone() {
        for delta in [true, false] {
            let up = support::upstream::http("up").await;
            let ads = AdsServer::tcp().await;
            ads.apply(basic(&[up.addr]).listener(&rds_listener("l2", "r")));
            let server = start(&ads, delta, "").await;
            let l2 = listener_addr(&server, "l2").await;
            let addr = listener_addr(&server, "l").await;
            ads.remove(&lds(), "l2");
            assert!(
                support::eventually(5, || server.listener_addr("l2").is_none()).await,
                "listener l2 still running"
            );
            assert!(
                support::eventually(5, || std::net::TcpStream::connect(l2).is_err()).await,
                "l2 still accepts"
            );
            ads.remove(&cds(), "c");
            assert!(support::eventually(5, || server.world.cluster("c").is_none()).await);
            assert_eq!(ok_through(&support::h1_client(), addr).await.status, 503);
        }
    }

    #[tokio::test]
    async fn reconnects_after_control_plane_restart_and_keeps_serving() {
        let up = support::upstream::http("up").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[up.addr]));
        let server = start(&ads, true, "").await;
        let addr = listener_addr(&server, "l").await;
        let client = support::h1_client();
        ads.stop().await;
        assert!(
            support::eventually(5, || server
                .world
                .stats
                .gauges()
                .iter()
                .any(|(n, v)| n == "control_plane.connected_state" && *v == 0))
            .await
        );
        assert_eq!(
            ok_through(&client, addr).await.status,
            200,
            "last good config serves"
        );
        let before = ads.request_count();
        ads.start().await;
        let again = ads
            .wait_for_since(before, |r| r.type_url() == cds(), Duration::from_secs(10))
            .await;
        assert!(again.stream > 1, "a new stream");
        let d = again.delta().unwrap();
        assert!(
            d.initial_resource_versions.contains_key("c"),
            "delta reconnect sends what it has: {:?}",
            d.initial_resource_versions
        );
        // Changes after the reconnect apply.
        let up2 = support::upstream::http("up2").await;
        ads.set_endpoints(&endpoints("svc-c", &[up2.addr]));
        let mut saw = false;
        for _ in 0..50 {
            if ok_through(&client, addr).await.headers["x-upstream"] == "up2" {
                saw = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(saw, "endpoints pushed after the reconnect are used");
        // A broken stream (the server stays up) reconnects too.
        let opened = ads.streams_opened();
        ads.break_streams().await;
        assert!(support::eventually(10, || ads.streams_opened() > opened).await);
        assert_eq!(ok_through(&client, addr).await.status, 200);
    }

    #[tokio::test]
    async fn listener_update_lets_a_request_in_flight_complete() {
        let up = support::upstream::http("up").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[up.addr]));
        let server = start(&ads, true, "").await;
        let addr = listener_addr(&server, "l").await;
        let client = support::h1_client();
        let slow = {
            let client = client.clone();
            tokio::spawn(
                async move { support::get(&client, addr, "example.com", "/delay/700").await },
            )
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Same address, different stat prefix: updated in place.
        let changed = rds_listener_with_prefix("l", "r", "l_v2");
        let before = ads.request_count();
        ads.set_listener(&changed);
        ads.wait_for_since(before, |r| acked(r, &lds()), WAIT).await;
        let got = within(5, slow).await.unwrap();
        assert_eq!(got.status, 200, "the request in flight completes: {got:?}");
        assert_eq!(server.listener_addr("l"), Some(addr), "the socket is kept");
        let fresh = ok_through(&support::h1_client(), addr).await;
        assert_eq!(fresh.status, 200);
        assert!(
            support::eventually(5, || counter(&server, "http.l_v2.downstream_rq_total") >= 1).await
        );
    }

    fn tcp_listener(name: &str, prefix: &str, cluster: &str) -> Listener {
        from_yaml(&format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: {prefix}
      cluster: {cluster}
"#
        ))
    }

    #[tokio::test]
    async fn connections_of_a_changed_filter_chain_close_after_the_drain_time() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (echo, _task) = support::upstream::tcp_echo().await;
        let ads = AdsServer::tcp().await;
        ads.apply(
            Batch::new()
                .cluster(&eds_cluster("echo"))
                .endpoints(&endpoints("svc-echo", &[echo]))
                .listener(&tcp_listener("t", "t1", "echo")),
        );
        let server = start(&ads, true, "").await;
        let addr = listener_addr(&server, "t").await;
        let mut old = tokio::net::TcpStream::connect(addr).await.unwrap();
        old.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        within(5, old.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"ping");
        // A listener-level change leaves the filter chain as it was: its connections go on.
        let mut same_chain = tcp_listener("t", "t1", "echo");
        same_chain.per_connection_buffer_limit_bytes =
            Some(envoy_types::pb::google::protobuf::UInt32Value { value: 65536 });
        let before = ads.request_count();
        ads.set_listener(&same_chain);
        ads.wait_for_since(before, |r| acked(r, &lds()), WAIT).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        old.write_all(b"same").await.unwrap();
        within(5, old.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"same", "an unchanged filter chain is not drained");
        // A changed chain drains.
        let before = ads.request_count();
        ads.set_listener(&tcp_listener("t", "t2", "echo"));
        ads.wait_for_since(before, |r| acked(r, &lds()), WAIT).await;
        // New connections get the new chain at once.
        let mut new = tokio::net::TcpStream::connect(addr).await.unwrap();
        new.write_all(b"pong").await.unwrap();
        within(5, new.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"pong");
        // The old one still works during the drain time (1 s in the tests) and is closed after.
        old.write_all(b"more").await.unwrap();
        within(5, old.read_exact(&mut buf)).await.unwrap();
        let start = std::time::Instant::now();
        let n = within(5, old.read(&mut buf)).await.unwrap_or(0);
        assert_eq!(n, 0, "closed by tern");
        assert!(
            start.elapsed() >= Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(server.listener_addr("t"), Some(addr));
    }

    fn tls_listener(name: &str, sds_config: &str) -> Listener {
        from_yaml(&format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificate_sds_secret_configs: [{{name: default, sds_config: {sds_config}}}]
        combined_validation_context:
          default_validation_context: {{}}
          validation_context_sds_secret_config: {{name: ROOTCA, sds_config: {sds_config}}}
  filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: {name}
      cluster: c
"#
        ))
    }

    fn secret(
        name: &str,
    ) -> envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret {
        from_yaml(&format!(
            "name: {name}\ntls_certificate: {{certificate_chain: {{inline_string: cert-of-{name}}}, private_key: {{inline_string: key-of-{name}}}}}\n"
        ))
    }

    #[tokio::test]
    async fn secrets_are_subscribed_warmed_and_stored_over_ads_and_their_own_stream() {
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
        let up = support::upstream::http("up").await;
        // Over ADS.
        let ads = AdsServer::tcp().await;
        ads.apply(
            basic(&[up.addr]).listener(&tls_listener("tls", "{ads: {}, resource_api_version: V3}")),
        );
        let server = support::start_tern(&tern_bootstrap(&ads, true, "")).await;
        let sub = ads
            .wait_for(|r| r.type_url() == Secret::type_url(), WAIT)
            .await;
        assert_eq!(
            server.xds.as_ref().unwrap().init_state(),
            InitState::Initializing,
            "not ready while a listener waits for its secrets"
        );
        let mut names = sub.delta().unwrap().resource_names_subscribe.clone();
        names.sort();
        assert_eq!(names, ["ROOTCA", "default"]);
        let xds = server.xds.as_ref().unwrap();
        assert!(
            xds.with_store(|s| s.warming_listeners.contains_key("tls")),
            "waits for its secrets"
        );
        ads.apply(
            Batch::new()
                .secret(&secret("default"))
                .secret(&secret("ROOTCA")),
        );
        let _ = listener_addr(&server, "tls").await;
        within(10, server.wait_initialized()).await;
        let stored = server.world.secrets.load();
        assert!(stored.contains_key("default") && stored.contains_key("ROOTCA"));
        assert_eq!(counter(&server, "sds.default.update_success"), 1);
        drop(server);

        // Over a stream of its own to the `sds-grpc` cluster, as Istio configures it.
        let ads = AdsServer::tcp().await;
        let sds_source = "{api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}, initial_fetch_timeout: 0s, resource_api_version: V3}";
        ads.apply(basic(&[up.addr]).listener(&tls_listener("tls", sds_source)));
        let yaml = format!(
            "{}{}",
            tern_bootstrap(&ads, true, ""),
            ads.cluster_yaml("sds-grpc")
        );
        let server = support::start_tern(&yaml).await;
        let sub = ads
            .wait_for(|r| r.type_url() == Secret::type_url(), WAIT)
            .await;
        let sub = sub.sotw().expect("api_type GRPC is state of the world");
        assert_eq!(sub.resource_names, ["ROOTCA", "default"]);
        assert!(sub.node.is_some());
        assert!(
            server
                .xds
                .as_ref()
                .unwrap()
                .with_store(|s| s.warming_listeners.contains_key("tls"))
        );
        ads.apply(
            Batch::new()
                .secret(&secret("default"))
                .secret(&secret("ROOTCA")),
        );
        let _ = listener_addr(&server, "tls").await;
        ads.wait_for(|r| acked(r, &Secret::type_url()), WAIT).await;
        within(10, server.wait_initialized()).await;
    }

    /// Keep-alive HTTP/1.1 clients sending requests in a loop until stopped.
    struct Load {
        ok: Arc<AtomicU64>,
        failed: Arc<AtomicU64>,
        stop: Arc<std::sync::atomic::AtomicBool>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Load {
        fn start(addr: SocketAddr, clients: usize) -> Load {
            let ok = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let tasks = (0..clients)
                .map(|_| {
                    let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
                    tokio::spawn(async move {
                        let client = support::h1_client();
                        while !stop.load(Ordering::Relaxed) {
                            let req = http::Request::get(format!("http://{addr}/x"))
                                .header("host", "example.com")
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap();
                            match client.request(req).await {
                                Ok(r) if r.status() == 200 => {
                                    let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                other => {
                                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                        eprintln!("first failure: {:?}", other.map(|r| r.status()));
                                    }
                                }
                            }
                        }
                    })
                })
                .collect();
            Load {
                ok,
                failed,
                stop,
                tasks,
            }
        }

        /// Stop; (succeeded, failed).
        async fn finish(self) -> (u64, u64) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.tasks {
                t.await.unwrap();
            }
            (
                self.ok.load(Ordering::Relaxed),
                self.failed.load(Ordering::Relaxed),
            )
        }
    }

    #[tokio::test]
    async fn listener_updates_under_load_without_a_failed_request() {
        let up = support::upstream::http("up").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[up.addr]));
        let server = start(&ads, true, "").await;
        let addr = listener_addr(&server, "l").await;
        let load = Load::start(addr, 8);
        for i in 0..6 {
            // A new filter chain each time (the stat prefix changes): its old connections
            // drain while the clients keep sending on them.
            let l = rds_listener_with_prefix("l", "r", &format!("l_{i}"));
            ads.set_listener(&l);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let (ok, failed) = load.finish().await;
        assert_eq!(failed, 0, "failed requests ({ok} succeeded)");
        assert!(ok > 100);
        assert_eq!(server.listener_addr("l"), Some(addr));
    }

    #[tokio::test]
    async fn endpoints_switch_under_load_without_a_failed_request() {
        let a = support::upstream::http("a").await;
        let b = support::upstream::http("b").await;
        let ads = AdsServer::tcp().await;
        ads.apply(basic(&[a.addr]));
        let server = start(&ads, true, "").await;
        let addr = listener_addr(&server, "l").await;
        let load = Load::start(addr, 8);
        for i in 0..20 {
            let set: &[SocketAddr] = match i % 3 {
                0 => &[b.addr],
                1 => &[a.addr, b.addr],
                _ => &[a.addr],
            };
            ads.set_endpoints(&endpoints("svc-c", set));
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let (ok, failed) = load.finish().await;
        assert_eq!(failed, 0, "failed requests");
        assert!(ok > 100);
        assert!(a.requests() > 0 && b.requests() > 0);
        assert!(ads.nacks().is_empty());
    }
}

mod files {
    use super::support::{self, within};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "tern-xds-files-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rand_suffix() -> u64 {
        use std::time::{SystemTime, UNIX_EPOCH};
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    /// Write atomically (a rename), as Envoy's docs ask of whoever updates the file.
    fn write(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn cds(version: &str, up: SocketAddr) -> String {
        format!(
            r#"version_info: "{version}"
resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: c
  type: STATIC
  connect_timeout: 1s
  load_assignment:
    cluster_name: c
    endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: "{}", port_value: {}}}}}}}}}]}}]
"#,
            up.ip(),
            up.port()
        )
    }

    fn lds(version: &str, header: &str) -> String {
        format!(
            r#"version_info: "{version}"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: file_listener
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: file
        route_config:
          virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
            - match: {{prefix: /}}
              route: {{cluster: c}}
            response_headers_to_add: [{{header: {{key: x-version, value: "{header}"}}}}]
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
        )
    }

    #[tokio::test]
    async fn lds_and_cds_from_files_reload_on_change() {
        let up = support::upstream::http("up").await;
        let d = dir();
        let (cds_path, lds_path) = (d.join("cds.yaml"), d.join("lds.yaml"));
        write(&cds_path, &cds("1", up.addr));
        write(&lds_path, &lds("1", "one"));
        let yaml = format!(
            "node: {{id: n, cluster: c}}\ndynamic_resources:\n  cds_config: {{path_config_source: {{path: {}}}, resource_api_version: V3}}\n  lds_config: {{path_config_source: {{path: {}}}, resource_api_version: V3}}\nstatic_resources: {{}}\n",
            cds_path.display(),
            lds_path.display()
        );
        let server = support::start_tern(&yaml).await;
        within(10, server.wait_initialized()).await;
        let mut addr = None;
        assert!(
            support::eventually(5, || {
                addr = server.listener_addr("file_listener");
                addr.is_some()
            })
            .await
        );
        let addr = addr.unwrap();
        // A fresh connection per request: keep-alive connections of the old listener version
        // are drained when the file changes, and a pooled one may be closing when reused.
        let client = support::h1_client;
        let got = support::get(&client(), addr, "x", "/").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.headers["x-version"], "one");
        // A changed file is applied; the socket is kept.
        write(&lds_path, &lds("2", "two"));
        let mut seen = false;
        for _ in 0..60 {
            let got = support::get(&client(), addr, "x", "/").await;
            if got.headers.get("x-version").is_some_and(|v| v == "two") {
                seen = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(seen, "the new listener file was not applied");
        // A broken file is rejected and the last good configuration stays.
        let rejected = || {
            server
                .world
                .stats
                .counter_value("listener_manager.lds.update_rejected")
                .unwrap_or(0)
        };
        write(&lds_path, "version_info: [not, a, string\n");
        assert!(support::eventually(5, || rejected() >= 1).await);
        let got = support::get(&client(), addr, "x", "/").await;
        assert_eq!(got.headers["x-version"], "two");
        let _ = std::fs::remove_dir_all(&d);
    }
}

mod istio {
    use super::support::ads::{AdsServer, Batch};
    use super::support::within;
    use super::tern_client::tern_bootstrap;
    use super::*;
    use envoy_types::pb::envoy::admin::v3::{ConfigDump, ListenersConfigDump};
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
    use std::path::Path;

    pub(crate) const DUMP: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/istio/sidecar_config_dump_listeners.json"
    );

    /// Every listener of the real Istio sidecar dump (static and dynamic), as istiod sent them.
    pub(crate) fn istio_listeners() -> Vec<Listener> {
        let bytes = std::fs::read(DUMP).expect("testdata");
        let dump: ConfigDump = tern::config::decode_message_file(Path::new(DUMP), &bytes)
            .expect("the Istio config dump decodes");
        let mut out = Vec::new();
        for any in &dump.configs {
            let l = ListenersConfigDump::decode(any.value.as_slice()).expect("ListenersConfigDump");
            for s in &l.static_listeners {
                out.push(Listener::decode(s.listener.as_ref().unwrap().value.as_slice()).unwrap());
            }
            for d in &l.dynamic_listeners {
                let state = d
                    .active_state
                    .as_ref()
                    .or(d.warming_state.as_ref())
                    .unwrap();
                out.push(
                    Listener::decode(state.listener.as_ref().unwrap().value.as_slice()).unwrap(),
                );
            }
        }
        out
    }

    /// Listeners that bind get 127.0.0.1 and a port chosen by the kernel: the sidecar's ports
    /// (15001, 15006, 0.0.0.0) are not ours to take in a test. Nothing else changes.
    pub(crate) fn on_loopback(mut l: Listener) -> Listener {
        let binds = l.bind_to_port.as_ref().is_none_or(|b| b.value);
        if binds
            && let Some(address::Address::SocketAddress(sa)) =
                l.address.as_mut().and_then(|a| a.address.as_mut())
        {
            sa.address = "127.0.0.1".into();
            sa.port_specifier = Some(socket_address::PortSpecifier::PortValue(0));
        }
        l
    }

    #[tokio::test]
    async fn every_istio_listener_is_acked() {
        let listeners = istio_listeners();
        assert_eq!(
            listeners.len(),
            29,
            "2 static + 27 dynamic listeners in the dump"
        );
        for delta in [true, false] {
            let ads = AdsServer::tcp().await;
            // One cluster, so that CDS completes and LDS is asked for (as with istiod, whose
            // CDS always has BlackHoleCluster and friends).
            let mut batch = Batch::new().cluster(&Cluster {
                name: "BlackHoleCluster".into(),
                connect_timeout: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                ..Default::default()
            });
            for l in &listeners {
                batch = batch.listener(&on_loopback(l.clone()));
            }
            ads.apply(batch);
            // pilot-agent's bootstrap has `sds-grpc`; here the test server answers SDS too.
            let yaml = format!(
                "{}{}",
                tern_bootstrap(&ads, delta, ""),
                ads.cluster_yaml("sds-grpc")
            );
            let server = support::start_tern(&yaml).await;
            let ack = ads
                .wait_for(
                    |r| r.type_url() == lds() && !r.response_nonce().is_empty(),
                    WAIT,
                )
                .await;
            assert!(
                !ack.is_nack(),
                "Istio's listeners were rejected: {:?}",
                ack.request
            );
            assert!(ads.nacks().is_empty(), "{:?}", ads.nacks());
            let held = server
                .xds
                .as_ref()
                .unwrap()
                .with_store(|s| s.listeners.len() + s.warming_listeners.len());
            // The two static listeners of the dump have no name; the server keys resources by
            // name, so it serves one of them.
            assert_eq!(held, ads.names(&lds()).len());
            assert_eq!(held, listeners.len() - 1);
            // The secrets they name are asked for on the SDS stream, as Istio's sds_config says.
            let secret_type =
                envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret::type_url();
            let sds = ads.wait_for(|r| r.type_url() == secret_type, WAIT).await;
            let names = &sds
                .sotw()
                .expect("Istio's SDS is state of the world")
                .resource_names;
            assert!(names.contains(&"default".to_string()), "{names:?}");
            assert!(names.contains(&"ROOTCA".to_string()), "{names:?}");
            // The route tables they name are subscribed.
            let rds = envoy_types::pb::envoy::config::route::v3::RouteConfiguration::type_url();
            within(5, ads.wait_for(|r| r.type_url() == rds, WAIT)).await;
        }
    }
}

mod pilot_agent_bootstrap {
    use super::support;
    use super::support::ads::{AdsServer, Batch};
    use super::tern_client::{eds_cluster, endpoints};
    use super::*;

    const BOOTSTRAP: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/istio/bootstrap_default_golden.json"
    );

    /// pilot-agent's real bootstrap (Istio's golden file), with only what this machine needs
    /// changed: its listeners on 127.0.0.1 and a kernel-chosen port, and the `xds-grpc` and
    /// `sds-grpc` Unix sockets pointed at the test server (pilot-agent serves both).
    fn bootstrap_for(socket: &std::path::Path) -> String {
        let text = std::fs::read_to_string(BOOTSTRAP).expect("testdata");
        let mut b: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        for l in b["static_resources"]["listeners"].as_array_mut().unwrap() {
            l["address"]["socket_address"]["address"] = "127.0.0.1".into();
            l["address"]["socket_address"]["port_value"] = 0.into();
        }
        for c in b["static_resources"]["clusters"].as_array_mut().unwrap() {
            if c["name"] == "xds-grpc" || c["name"] == "sds-grpc" {
                c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]
                    ["path"] = socket.display().to_string().into();
            }
        }
        b.to_string()
    }

    #[tokio::test]
    async fn tern_follows_the_xds_socket_of_pilot_agents_bootstrap() {
        let dir = std::env::temp_dir().join(format!("tern-pilot-agent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("XDS");
        let ads = AdsServer::unix(&socket).await;
        let up = support::upstream::http("up").await;
        ads.apply(
            Batch::new()
                .cluster(&eds_cluster("outbound"))
                .endpoints(&endpoints("svc-outbound", &[up.addr])),
        );
        let file = dir.join("envoy-rev.json");
        std::fs::write(&file, bootstrap_for(&socket)).unwrap();
        let options = tern::server::Options {
            config_path: Some(file.display().to_string()),
            drain_time_s: 1,
            ..Default::default()
        };
        let server = tern::server::Server::start(options)
            .await
            .expect("tern starts on pilot-agent's bootstrap");
        // Delta (Istio's default since 1.22), node as the bootstrap gives it, node only on the
        // first message (set_node_on_first_message_only).
        let first = ads
            .wait_for(|r| r.type_url() == cds(), Duration::from_secs(10))
            .await;
        let d = first.delta().expect("DELTA_GRPC");
        let node = d.node.as_ref().expect("node");
        assert_eq!(node.id, "sidecar~1.2.3.4~foo~bar");
        assert_eq!(node.cluster, "istio-proxy");
        let md = node.metadata.as_ref().unwrap();
        assert!(md.fields.contains_key("ISTIO_VERSION") && md.fields.contains_key("PROXY_CONFIG"));
        ads.wait_for(
            |r| r.type_url() == eds() && !r.response_nonce().is_empty(),
            WAIT,
        )
        .await;
        assert!(ads.nacks().is_empty(), "{:?}", ads.nacks());
        assert!(support::eventually(5, || server.world.cluster("outbound").is_some()).await);
        // LDS is asked for once CDS is in; an empty LDS completes initialization.
        ads.wait_for(|r| r.type_url() == lds(), WAIT).await;
        assert!(
            ads.requests()
                .iter()
                .skip(1)
                .all(|r| r.delta().is_some_and(|d| d.node.is_none()))
        );
        // The bootstrap's own listeners (Prometheus 15090, health 15021) are up.
        assert!(server.listener_addr("0.0.0.0_15021").is_some());
        assert!(server.listener_addr("0.0.0.0_15090").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
