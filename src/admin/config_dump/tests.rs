//! Unit tests of `/config_dump`. The files in `testdata/` are Envoy 1.40's own answers
//! (`curl /config_dump?...`) for the same configuration, as recorded when this was written.

use super::collect::Dynamic;
use super::*;
use crate::stats::Store;
use crate::xds::Kind;
use crate::xds::store::{ErrorState, Meta};
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn bootstrap_yaml() -> String {
    format!(
        r#"
node: {{ id: node1, cluster: c1 }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: main
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 200, body: {{ inline_string: "<a href='x'>&amp; \"q\" \\ \n\t\u0001 é € 😀 /" }} }}
              - match: {{ prefix: /b }}
                direct_response: {{ status: 200, body: {{ inline_bytes: "AAEC/w==" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    connect_timeout: 0.000001s
    common_lb_config: {{ healthy_panic_threshold: {{ value: 50.5 }} }}
    per_connection_buffer_limit_bytes: 0
    lb_policy: LEAST_REQUEST
    least_request_lb_config: {{ active_request_bias: {{ default_value: 1.0, runtime_key: k }} }}
    max_requests_per_connection: 12345678
  - name: up2
    connect_timeout: 1.000000001s
    common_lb_config: {{ healthy_panic_threshold: {{ value: 50 }} }}
    circuit_breakers: {{ thresholds: [ {{ max_connections: 0, priority: DEFAULT }} ] }}
  - name: dyn-static
    type: STATIC
    load_assignment:
      cluster_name: dyn-static
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.3, port_value: 80 }} }}, hostname: h3 }}
      - priority: 1
        load_balancing_weight: 5
        locality: {{ region: r, zone: z, sub_zone: s }}
        lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.4, port_value: 80 }} }} }}
          health_status: UNHEALTHY
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.5, port_value: 80 }} }} }}
          health_status: DEGRADED
  secrets:
  - name: inline
    tls_certificate:
      certificate_chain: {{ inline_string: "abc" }}
      private_key: {{ inline_string: "secret-key" }}
  - name: gen
    generic_secret: {{ secret: {{ inline_string: "hello" }} }}
"#
    )
}

fn world() -> (Bootstrap, Arc<World>) {
    let b = crate::config::parse_bootstrap(&bootstrap_yaml(), false, false).expect("bootstrap");
    let w = World::new(Store::new());
    w.load_static(&b).expect("static resources");
    (b, w)
}

fn dump(query: &str) -> Result<String, DumpError> {
    let (b, w) = world();
    let q = DumpQuery::parse(Some(query)).expect("query");
    render(&b, &w, None, &q)
}

fn dump_json(query: &str) -> Json {
    let text = dump(query).expect("dump");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn types(j: &Json) -> Vec<String> {
    j["configs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    c["@type"]
                        .as_str()
                        .unwrap_or("")
                        .rsplit('.')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn mask_times(s: &str) -> String {
    let re = regex::Regex::new(r#""last_updated": "[^"]*""#).unwrap();
    re.replace_all(s, r#""last_updated": "<time>""#)
        .into_owned()
}

#[test]
fn query_parsing() {
    let q = DumpQuery::parse(None).unwrap();
    assert!(q.resource.is_none() && q.mask.is_none() && q.name_regex.is_none());
    assert!(!q.include_eds);
    let q = DumpQuery::parse(Some(
        "?include_eds&resource=static_clusters&resource=ignored&mask=cluster.name%2Clast_updated&name_regex=a%2Bb+",
    ))
    .unwrap();
    assert!(q.include_eds);
    assert_eq!(q.resource.as_deref(), Some("static_clusters"));
    assert_eq!(q.mask_paths().unwrap(), ["cluster.name", "last_updated"]);
    // `a+b+`: `%2B` decoded, `+` kept as it is (not a space); a full match.
    assert!(q.name_matches("aab") && q.name_matches("abbb"));
    assert!(!q.name_matches("xab") && !q.name_matches("ab ") && !q.name_matches("a"));
    assert!(
        DumpQuery::parse(Some("name_regex="))
            .unwrap()
            .name_regex
            .is_none()
    );
    assert_eq!(
        DumpQuery::parse(Some("mask=,"))
            .unwrap()
            .mask_paths()
            .unwrap()
            .len(),
        0
    );
    let e = DumpQuery::parse(Some("name_regex=(")).unwrap_err();
    assert!(
        e.starts_with("INVALID_ARGUMENT: Error while parsing name_regex from (:"),
        "{e}"
    );
    // A pattern that only compiles once wrapped is still refused.
    assert!(DumpQuery::parse(Some("name_regex=a)|(b")).is_err());
}

#[test]
fn sections_in_envoy_order_and_format() {
    let text = dump("").unwrap();
    assert!(text.starts_with("{\n \"configs\": [\n  {\n   \"@type\": \"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump\",\n"), "{text}");
    assert!(text.ends_with("}\n"));
    let j: Json = serde_json::from_str(&text).unwrap();
    let all = [
        "BootstrapConfigDump",
        "ClustersConfigDump",
        "ListenersConfigDump",
        "ScopedRoutesConfigDump",
        "RoutesConfigDump",
        "SecretsConfigDump",
    ];
    assert_eq!(types(&j), all);
    let with_eds = dump_json("include_eds");
    assert_eq!(types(&with_eds)[2], "EndpointsConfigDump");
    assert_eq!(types(&with_eds).len(), 7);

    let boot = &j["configs"][0];
    assert_eq!(boot["bootstrap"]["node"]["id"], "node1");
    assert_eq!(boot["bootstrap"]["node"]["user_agent_name"], "tern");
    assert!(boot["bootstrap"]["node"].get("client_features").is_none());
    let at = boot["last_updated"].as_str().unwrap();
    assert!(at.ends_with('Z') && at.len() >= 20, "{at}");
    // No dynamic resources: no versions, only static sections.
    assert!(j["configs"][1].get("version_info").is_none());
    assert_eq!(
        j["configs"][1]["static_clusters"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn resources_print_as_envoy_prints_them() {
    let paths = "cluster.name,cluster.connect_timeout,cluster.per_connection_buffer_limit_bytes,\
                 cluster.lb_policy,cluster.circuit_breakers,cluster.common_lb_config,\
                 cluster.least_request_lb_config,cluster.max_requests_per_connection";
    let got = dump(&format!(
        "resource=static_clusters&mask={paths}&name_regex=up.*"
    ))
    .unwrap();
    assert_eq!(
        got,
        include_str!("testdata/envoy_static_clusters_masked.json")
    );
    let got = dump("resource=static_route_configs").unwrap();
    assert_eq!(
        mask_times(&got),
        include_str!("testdata/envoy_static_route_configs.json")
    );
}

#[test]
fn endpoints_from_live_hosts() {
    let j = dump_json("include_eds&resource=static_endpoint_configs&name_regex=dyn-static");
    let configs = j["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(
        configs[0]["@type"],
        "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump.StaticEndpointConfig"
    );
    let envoy: Json =
        serde_json::from_str(include_str!("testdata/envoy_endpoints_priorities.json")).unwrap();
    assert_eq!(configs[0]["endpoint_config"], envoy);
    // A cluster without hosts still has its policy.
    let j = dump_json("include_eds&resource=static_endpoint_configs&name_regex=up");
    assert_eq!(
        j["configs"][0]["endpoint_config"],
        json!({
            "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": "up",
            "policy": {"overprovisioning_factor": 140}
        })
    );
}

#[test]
fn resource_errors_as_envoy() {
    let e = dump("resource=version_info").unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(
        e.message,
        "version_info is not a repeated field. Use ?mask=version_info to get only this field"
    );
    let e = dump("resource=nope").unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (404, "nope not found in config dump")
    );
    assert_eq!(
        dump("resource=static_endpoint_configs").unwrap_err().status,
        404
    );
    // A field no resource is in: an empty dump.
    assert_eq!(dump("resource=dynamic_active_clusters").unwrap(), "{}\n");
    let j = dump_json("resource=static_secrets&mask=name");
    assert_eq!(
        j["configs"],
        json!([
            {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump.StaticSecret", "name": "inline"},
            {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump.StaticSecret", "name": "gen"},
        ])
    );
}

#[test]
fn masks_as_envoy() {
    // On whole sections: those it does not fit are left out.
    let j = dump_json("mask=static_clusters");
    assert_eq!(types(&j), ["ClustersConfigDump"]);
    assert_eq!(
        j["configs"][0]["static_clusters"].as_array().unwrap().len(),
        3
    );
    let e = dump("mask=nope").unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(
        e.message,
        "FieldMask nope could not be successfully applied to any configs."
    );
    // No path crosses a repeated field.
    assert_eq!(
        dump("mask=static_clusters.cluster").unwrap_err().status,
        400
    );
    // An empty mask keeps everything.
    assert_eq!(types(&dump_json("mask=")).len(), 6);
    // On resources: through the Any, and not stopping at it.
    let j = dump_json("resource=static_clusters&mask=cluster.name,last_updated&name_regex=up2");
    let c = &j["configs"][0];
    assert_eq!(
        c["cluster"],
        json!({"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "up2"})
    );
    assert!(c["last_updated"].is_string());
    let e = dump("resource=static_clusters&mask=cluster").unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(
        e.message,
        "FieldMask paths: \"cluster\" could not be successfully used."
    );
    assert_eq!(
        dump("resource=static_clusters&mask=cluster.nope")
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        dump("resource=static_clusters&mask=cluster.load_assignment.endpoints.priority")
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn name_regex_filters_every_kind() {
    let j = dump_json("include_eds&name_regex=(main|gen|up2)");
    let c = &j["configs"];
    let names = |v: &Json, f: &str, inner: &str| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[f][inner].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(&c[1]["static_clusters"], "cluster", "name"), ["up2"]);
    assert_eq!(
        names(
            &c[2]["static_endpoint_configs"],
            "endpoint_config",
            "cluster_name"
        ),
        ["up2"]
    );
    assert_eq!(
        names(&c[3]["static_listeners"], "listener", "name"),
        ["main"]
    );
    assert_eq!(
        names(&c[5]["static_route_configs"], "route_config", "name"),
        ["main"]
    );
    assert_eq!(names(&c[6]["static_secrets"], "secret", "name"), ["gen"]);
    // The bootstrap is not filtered.
    assert!(c[0]["bootstrap"]["static_resources"].is_object());
}

#[test]
fn secrets_are_redacted_everywhere() {
    let text = dump("").unwrap();
    assert!(
        !text.contains("secret-key") && !text.contains("hello"),
        "{text}"
    );
    let j: Json = serde_json::from_str(&text).unwrap();
    let secrets = &j["configs"][5]["static_secrets"];
    assert_eq!(
        secrets[0]["secret"]["tls_certificate"]["private_key"]["inline_string"],
        "[redacted]"
    );
    assert_eq!(
        secrets[0]["secret"]["tls_certificate"]["certificate_chain"]["inline_string"],
        "abc"
    );
    assert_eq!(
        secrets[1]["secret"]["generic_secret"]["secret"]["inline_string"],
        "[redacted]"
    );
    // The bootstrap shows the same secrets, redacted too.
    let in_bootstrap = &j["configs"][0]["bootstrap"]["static_resources"]["secrets"][0];
    assert_eq!(
        in_bootstrap["tls_certificate"]["private_key"]["inline_string"],
        "[redacted]"
    );
}

fn meta(version: &str) -> Meta {
    Meta {
        version: version.into(),
        last_updated: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_632_938_998),
    }
}

/// A dynamic state with each kind of entry the dump shows.
fn dynamic(b: &Bootstrap, world: &World) -> Dynamic {
    let stats = &world.stats;
    let cluster = |name: &str| {
        crate::upstream::cluster::Cluster::compile(
            &cluster_pb::Cluster {
                name: name.into(),
                ..Default::default()
            },
            stats,
        )
        .expect("cluster")
    };
    let listener = b.static_resources.as_ref().unwrap().listeners[0].clone();
    let compiled = |name: &str| {
        let mut l = listener.clone();
        l.name = name.into();
        crate::snapshot::compile_listener(&l, stats).expect("listener")
    };
    let secret = tls_pb::Secret {
        name: "default".into(),
        r#type: Some(tls_pb::secret::Type::TlsCertificate(
            tls_pb::TlsCertificate {
                private_key: Some(Default::default()),
                ..Default::default()
            },
        )),
    };
    let rejected = listener_pb::Listener {
        name: "bad".into(),
        ..Default::default()
    };
    let route = envoy_types::pb::envoy::config::route::v3::RouteConfiguration {
        name: "rds-1".into(),
        ..Default::default()
    };
    Dynamic {
        versions: [
            (Kind::Cluster, "cds-2".to_string()),
            (Kind::Listener, "lds-1".to_string()),
        ]
        .into_iter()
        .collect(),
        clusters: vec![(meta("cds-1"), cluster("c-active"))],
        warming_clusters: vec![(meta("cds-2"), cluster("c-warming"))],
        listeners: vec![("both".into(), meta("lds-1"), compiled("both"))],
        warming_listeners: vec![
            ("both".into(), meta("lds-2"), compiled("both")),
            ("warm".into(), meta("lds-2"), compiled("warm")),
        ],
        routes: vec![(
            "rds-1".into(),
            meta("rds-1"),
            Arc::from(route.encode_to_vec()),
        )],
        secrets: vec![("default".into(), meta("sds-1"), Arc::new(secret))],
        wanted_secrets: ["default".to_string(), "ROOTCA".to_string()]
            .into_iter()
            .collect(),
        errors: vec![
            (
                (Kind::Listener, "bad".into()),
                ErrorState {
                    version: "lds-3".into(),
                    details: "listener bad: no filter chains".into(),
                    at: SystemTime::UNIX_EPOCH,
                    failed: Some(Any {
                        type_url: listener_pb::Listener::type_url(),
                        value: rejected.encode_to_vec(),
                    }),
                },
            ),
            (
                (Kind::Cluster, "c-active".into()),
                ErrorState {
                    version: "cds-2".into(),
                    details: "cluster c-active: bad".into(),
                    at: SystemTime::UNIX_EPOCH,
                    failed: None,
                },
            ),
        ],
    }
}

#[test]
fn dynamic_resources_in_envoy_shape() {
    let (b, w) = world();
    let q = DumpQuery::parse(None).unwrap();
    let text = render_from(&b, &w, dynamic(&b, &w), &q).unwrap();
    let j: Json = serde_json::from_str(&text).unwrap();
    let c = &j["configs"];

    let clusters = &c[1];
    assert_eq!(clusters["version_info"], "cds-2");
    let active = &clusters["dynamic_active_clusters"][0];
    assert_eq!(active["version_info"], "cds-1");
    assert_eq!(active["cluster"]["name"], "c-active");
    assert_eq!(active["last_updated"], "2026-11-25T18:55:38.998Z");
    assert_eq!(active["error_state"]["details"], "cluster c-active: bad");
    assert_eq!(
        clusters["dynamic_warming_clusters"][0]["cluster"]["name"],
        "c-warming"
    );

    let listeners = c[2]["dynamic_listeners"].as_array().unwrap();
    let names: Vec<&str> = listeners
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bad", "both", "warm"]);
    let bad = &listeners[0]["error_state"];
    assert_eq!(
        bad["failed_configuration"]["@type"],
        listener_pb::Listener::type_url()
    );
    assert_eq!(bad["failed_configuration"]["name"], "bad");
    assert_eq!(bad["details"], "listener bad: no filter chains");
    assert_eq!(bad["last_update_attempt"], "1970-01-01T00:00:00Z");
    assert_eq!(listeners[1]["active_state"]["version_info"], "lds-1");
    assert_eq!(listeners[1]["warming_state"]["version_info"], "lds-2");
    assert_eq!(listeners[1]["active_state"]["listener"]["name"], "both");
    assert!(listeners[2].get("active_state").is_none());

    // Inline routes of dynamic listeners are static route configs, as in Envoy.
    let routes = &c[4];
    assert_eq!(routes["static_route_configs"].as_array().unwrap().len(), 4);
    assert_eq!(routes["dynamic_route_configs"][0]["version_info"], "rds-1");
    assert_eq!(
        routes["dynamic_route_configs"][0]["route_config"]["name"],
        "rds-1"
    );

    let secrets = &c[5];
    let active = &secrets["dynamic_active_secrets"][0];
    assert_eq!(
        (active["name"].as_str(), active["version_info"].as_str()),
        (Some("default"), Some("sds-1"))
    );
    assert_eq!(
        active["secret"]["tls_certificate"]["private_key"],
        json!({})
    );
    assert_eq!(
        secrets["dynamic_warming_secrets"],
        json!([{
            "name": "ROOTCA",
            "version_info": "uninitialized",
            "secret": {"@type": tls_pb::Secret::type_url(), "name": "ROOTCA"}
        }])
    );

    // One resource of a dynamic field at a time.
    let q = DumpQuery::parse(Some("resource=dynamic_listeners&mask=name")).unwrap();
    let j: Json = serde_json::from_str(&render_from(&b, &w, dynamic(&b, &w), &q).unwrap()).unwrap();
    assert_eq!(
        j["configs"][2],
        json!({"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump.DynamicListener", "name": "warm"})
    );
}
