use super::*;
use crate::listener::ListenerManager;
use crate::stats::Store as Stats;
use crate::xds::source::{GrpcSettings, Resolved};
use std::path::Path;

fn from_yaml<M: prost::Message + prost::Name + Default>(yaml: &str) -> M {
    crate::config::decode_message_file::<M>(Path::new("r.yaml"), yaml.as_bytes()).unwrap()
}

fn any<M: prost::Message + prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn eds_cluster(name: &str) -> cluster_pb::Cluster {
    from_yaml(&format!(
        "name: {name}\ntype: EDS\nconnect_timeout: 1s\neds_cluster_config: {{eds_config: {{ads: {{}}}}, service_name: svc-{name}}}\n"
    ))
}

fn cla(service: &str, port: u16) -> ClusterLoadAssignment {
    from_yaml(&format!(
        "cluster_name: {service}\nendpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]\n"
    ))
}

fn rds_listener(name: &str, route: &str) -> listener_pb::Listener {
    from_yaml(&format!(
        r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      rds: {{route_config_name: {route}, config_source: {{ads: {{}}}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    ))
}

fn route(name: &str, cluster: &str) -> RouteConfiguration {
    from_yaml(&format!(
        "name: {name}\nvirtual_hosts: [{{name: all, domains: ['*'], routes: [{{match: {{prefix: /}}, route: {{cluster: {cluster}}}}}]}}]\n"
    ))
}

fn store() -> (Store, Arc<World>) {
    let world = World::new(Stats::new());
    let lm = ListenerManager::new(world.clone(), Duration::from_secs(1));
    let ads = Resolved {
        key: SourceKey::Ads,
        initial_fetch_timeout: Some(Duration::from_secs(15)),
    };
    let plan = Plan {
        ads: Some(GrpcSettings {
            cluster: "xds".into(),
            delta: true,
            set_node_on_first_message_only: true,
            initial_metadata: Vec::new(),
            rate_limit: None,
        }),
        lds: Some(ads.clone()),
        cds: Some(ads),
        static_clusters: Default::default(),
    };
    (Store::new(world.clone(), lm, plan), world)
}

fn update(kind: Kind, version: &str, resources: Vec<Any>, sotw: bool) -> Update {
    Update {
        kind,
        source: SourceKey::Ads,
        version_info: version.into(),
        resources: resources
            .into_iter()
            .map(|any| Incoming {
                name: String::new(),
                version: version.into(),
                any,
            })
            .collect(),
        removed: Vec::new(),
        state_of_world: sotw,
    }
}

fn names(s: &Store, kind: Kind) -> Option<Interest> {
    s.interest(&SourceKey::Ads, kind)
}

#[tokio::test]
async fn cds_warms_until_eds_then_lds_starts() {
    let (mut s, world) = store();
    assert_eq!(names(&s, Kind::Cluster), Some(Interest::Wildcard));
    assert_eq!(names(&s, Kind::Listener), None, "LDS waits for CDS");
    let out = s.apply(update(
        Kind::Cluster,
        "1",
        vec![any(&eds_cluster("a"))],
        true,
    ));
    assert_eq!(out.error, None);
    assert!(s.warming_clusters.contains_key("a"));
    assert!(
        world.cluster("a").is_none(),
        "a warming cluster is not routable"
    );
    assert_eq!(names(&s, Kind::Endpoint), Some(Interest::names(["svc-a"])));
    assert_eq!(
        names(&s, Kind::Listener),
        None,
        "CDS is not initialized while warming"
    );
    let out = s.apply(update(
        Kind::Endpoint,
        "1",
        vec![any(&cla("svc-a", 9))],
        true,
    ));
    assert_eq!(out.error, None);
    let c = world.cluster("a").expect("warm cluster is active");
    assert_eq!(c.priority_set().len(), 1);
    assert_eq!(names(&s, Kind::Listener), Some(Interest::Wildcard));
    assert_eq!(*s.init_receiver().borrow(), InitState::Initializing);
    let out = s.apply(update(
        Kind::Listener,
        "1",
        vec![any(&rds_listener("l", "r"))],
        true,
    ));
    assert_eq!(out.error, None);
    assert!(
        s.warming_listeners.contains_key("l"),
        "waits for its routes"
    );
    assert_eq!(names(&s, Kind::Route), Some(Interest::names(["r"])));
    let out = s.apply(update(Kind::Route, "1", vec![any(&route("r", "a"))], true));
    assert_eq!(out.error, None);
    assert!(s.listeners.contains_key("l"));
    assert!(world.listeners.load().contains_key("l"));
    assert_eq!(*s.init_receiver().borrow(), InitState::Initialized);
    assert_eq!(
        world
            .stats
            .counter_value("cluster_manager.cds.update_success"),
        Some(1)
    );
    assert_eq!(
        world.stats.counter_value("http.l.rds.r.update_success"),
        Some(1)
    );
    assert_eq!(
        world.stats.counter_value("cluster.a.update_success"),
        Some(1)
    );
}

#[tokio::test]
async fn lds_partial_accept_names_the_bad_listener() {
    let (mut s, _world) = store();
    s.apply(update(Kind::Cluster, "1", vec![], true));
    let mut bad = rds_listener("bad", "r");
    bad.address = None;
    let out = s.apply(update(
        Kind::Listener,
        "2",
        vec![any(&rds_listener("good", "r")), any(&bad)],
        true,
    ));
    let err = out.error.expect("NACK");
    assert!(
        err.contains("listener bad") && err.contains("address"),
        "{err}"
    );
    assert_eq!(out.accepted, vec!["good".to_string()]);
    assert!(s.warming_listeners.contains_key("good"));
    assert!(s.errors.contains_key(&(Kind::Listener, "bad".to_string())));
}

#[tokio::test]
async fn rds_rejects_whole_response_and_keeps_last_good() {
    let (mut s, world) = store();
    s.apply(update(Kind::Route, "1", vec![any(&route("r", "a"))], true));
    let mut bad = route("r2", "a");
    bad.virtual_hosts[0].domains = vec!["*".into(), "*".into()];
    let out = s.apply(update(
        Kind::Route,
        "2",
        vec![any(&route("r", "b")), any(&bad)],
        true,
    ));
    assert!(out.error.expect("NACK").contains("route configuration r2"));
    let kept = s.routes.get("r").expect("last good kept");
    assert_eq!(kept.meta.version, "1");
    let _ = world;
}

#[tokio::test]
async fn sotw_absence_removes_clusters_but_not_endpoints() {
    let (mut s, world) = store();
    s.apply(update(
        Kind::Cluster,
        "1",
        vec![any(&eds_cluster("a")), any(&eds_cluster("b"))],
        true,
    ));
    s.apply(update(
        Kind::Endpoint,
        "1",
        vec![any(&cla("svc-a", 1)), any(&cla("svc-b", 2))],
        true,
    ));
    assert!(world.cluster("a").is_some() && world.cluster("b").is_some());
    // EDS absence removes nothing.
    s.apply(update(
        Kind::Endpoint,
        "2",
        vec![any(&cla("svc-a", 3))],
        true,
    ));
    assert_eq!(world.cluster("b").unwrap().priority_set().len(), 1);
    // CDS absence removes, and the endpoints subscription follows.
    s.apply(update(
        Kind::Cluster,
        "2",
        vec![any(&eds_cluster("a"))],
        true,
    ));
    assert!(world.cluster("b").is_none());
    assert_eq!(names(&s, Kind::Endpoint), Some(Interest::names(["svc-a"])));
    assert!(
        !s.endpoints.contains_key("svc-b"),
        "unused endpoints dropped"
    );
    // Its stats are gone too; the remaining cluster keeps its own.
    assert_eq!(
        world.stats.counter_value("cluster.b.upstream_rq_total"),
        None
    );
    assert_eq!(world.stats.counter_value("cluster.b.update_success"), None);
    assert!(
        world
            .stats
            .counter_value("cluster.a.update_success")
            .is_some()
    );
    assert!(
        world
            .stats
            .counter_value("cluster.a.upstream_rq_total")
            .is_some()
    );
}

#[tokio::test]
async fn garbage_is_rejected_not_fatal() {
    let (mut s, _world) = store();
    let junk = Any {
        type_url: Kind::Cluster.type_url().into(),
        value: vec![0xff, 0xff, 0xff],
    };
    let out = s.apply(update(Kind::Cluster, "1", vec![junk], true));
    assert!(out.error.unwrap().contains("cannot decode"));
    let wrong = Any {
        type_url: "type.googleapis.com/google.protobuf.Duration".into(),
        value: vec![],
    };
    let out = s.apply(update(Kind::Endpoint, "1", vec![wrong], true));
    assert!(out.error.unwrap().contains("google.protobuf.Duration"));
}

#[tokio::test]
async fn delta_removal_and_in_place_endpoint_update() {
    let (mut s, world) = store();
    let mut u = update(Kind::Cluster, "", vec![any(&eds_cluster("a"))], false);
    u.resources[0].name = "a".into();
    s.apply(u);
    s.apply(update(
        Kind::Endpoint,
        "",
        vec![any(&cla("svc-a", 1))],
        false,
    ));
    let before = world.cluster("a").unwrap();
    s.apply(update(
        Kind::Endpoint,
        "",
        vec![any(&cla("svc-a", 2))],
        false,
    ));
    let after = world.cluster("a").unwrap();
    assert!(Arc::ptr_eq(&before, &after), "endpoints change in place");
    let mut rm = update(Kind::Cluster, "", vec![], false);
    rm.removed = vec!["a".into()];
    s.apply(rm);
    assert!(world.cluster("a").is_none());
}

#[tokio::test]
async fn eds_finds_clusters_by_their_name_or_service_and_counts_in_their_stats() {
    let (mut s, world) = store();
    // "outbound|80||svc" is named after its service, as Istio's clusters are; "b" is not.
    let istio: cluster_pb::Cluster = from_yaml(
        "name: outbound|80||svc\ntype: EDS\nconnect_timeout: 1s\neds_cluster_config: {eds_config: {ads: {}}, service_name: outbound|80||svc}\n",
    );
    let out = s.apply(update(
        Kind::Cluster,
        "1",
        vec![any(&istio), any(&eds_cluster("b"))],
        true,
    ));
    assert_eq!(out.error, None);
    assert_eq!(
        names(&s, Kind::Endpoint),
        Some(Interest::names(["outbound|80||svc", "svc-b"]))
    );
    let out = s.apply(update(
        Kind::Endpoint,
        "1",
        vec![any(&cla("outbound|80||svc", 9)), any(&cla("svc-b", 10))],
        true,
    ));
    assert_eq!(out.error, None);
    for c in ["outbound|80||svc", "b"] {
        let cluster = world.cluster(c).expect("warmed by its assignment");
        assert_eq!(cluster.priority_set().len(), 1, "{c}");
        let n = |stat: &str| world.stats.counter_value(&format!("cluster.{c}.{stat}"));
        assert_eq!(n("update_attempt"), Some(1), "{c}");
        assert_eq!(n("update_success"), Some(1), "{c}");
    }
    // A bad assignment is rejected as a whole and counted in the cluster's scope.
    let mut bad = cla("svc-b", 11);
    bad.endpoints[0].lb_endpoints[0].host_identifier = None;
    let out = s.apply(update(Kind::Endpoint, "2", vec![any(&bad)], false));
    assert!(out.error.is_some());
    assert_eq!(
        world.stats.counter_value("cluster.b.update_rejected"),
        Some(1)
    );
    let listed: Vec<String> = world.stats.counters().into_iter().map(|(n, _)| n).collect();
    assert!(listed.iter().any(|n| n == "cluster.b.update_rejected"));
    // A static cluster has no EDS subscription: no update_rejected listed (as in Envoy).
    let st: cluster_pb::Cluster = from_yaml(
        "name: st\ntype: STATIC\nconnect_timeout: 1s\nload_assignment: {cluster_name: st, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}\n",
    );
    let _st = Cluster::compile(&st, &world.stats).unwrap();
    let listed: Vec<String> = world.stats.counters().into_iter().map(|(n, _)| n).collect();
    assert!(listed.iter().any(|n| n == "cluster.st.update_success"));
    assert!(!listed.iter().any(|n| n == "cluster.st.update_rejected"));
}
