//! `/config_dump` beside Envoy's: Envoy and tern load the same bootstrap (static listener,
//! clusters and secrets, plus LDS/CDS/EDS/RDS over ADS from the test server, with one rejected
//! listener and one listener and one cluster left warming) and their dumps are compared as
//! JSON: same sections in the same order, same `@type`s, same fields, same values.
//!
//! Both dumps are fetched from the admin ports over HTTP.
//!
//! Differences allowed, each removed from both sides before comparing (see `normalize`):
//! - times (`last_updated`, `last_update_attempt`): wall clock;
//! - `bootstrap.node`: Envoy reports its own user agent, build and extension list; only the
//!   node's identity is compared;
//! - `error_state.details`: each proxy words its own reason; compared for presence;
//! - `error_state.version_info`: tern says which version was rejected, Envoy leaves it empty;
//! - Envoy adds a nameless `dynamic_listeners` entry holding the error of the whole LDS update
//!   (its `overall_error_state_`); tern keeps errors per listener only;
//! - the order of resources within a dynamic list and of the configs `?resource=` gives
//!   (Envoy lists listeners in the order they were added and other resources as its maps hold
//!   them; tern by name): they are sorted before comparing;
//! - the text of a 400 for a bad `name_regex` (RE2's wording against the regex crate's) and
//!   for a field mask that cannot be used (Envoy prints the mask with protobuf's `DebugString`,
//!   whose marker changes from run to run).

use super::envoy_support::start_envoy_admin;
use super::support::ads::{AdsServer, Batch, dynamic_resources_yaml};
use super::support::{self, h1_client, within};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use serde_json::{Value as Json, json};
use std::time::Duration;
use tern::config::resource_from_json;
use tern::server::Server;

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

fn template(ads: &AdsServer) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
node: {{ id: dump-node, cluster: dump-cluster, locality: {{ region: r1, zone: z1 }} }}
{dr}static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 15001 }} }}
    bind_to_port: false
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
                route: {{ cluster: st, timeout: 1.5s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": {ROUTER} }}
  clusters:
{xds}
  - name: st
    type: STATIC
    connect_timeout: 1s
    metadata: {{ filter_metadata: {{ zz: {{ b: 1, a: "x" }}, aa: {{ k: true }} }} }}
    load_assignment:
      cluster_name: st
      endpoints:
      - locality: {{ zone: z1 }}
        lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9 }} }} }}
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.2, port_value: 9 }} }} }}
          load_balancing_weight: 3
  secrets:
  - name: inline
    tls_certificate:
      certificate_chain: {{ inline_string: "chain" }}
      private_key: {{ inline_string: "secret-key" }}
  - name: gen
    generic_secret: {{ secret: {{ inline_string: "hello" }} }}
"#,
        dr = dynamic_resources_yaml("xds-grpc", false),
        xds = ads.cluster_yaml("xds-grpc"),
    )
}

fn from_json<M: prost::Message + prost::Name + Default>(j: Json) -> M {
    resource_from_json(&j, true).expect("a valid resource")
}

fn ads_source(timeout: Option<&str>) -> Json {
    let mut s = json!({ "ads": {}, "resource_api_version": "V3" });
    if let Some(t) = timeout {
        s["initial_fetch_timeout"] = json!(t);
    }
    s
}

fn rds_listener(name: &str, port: u16, route: &str, timeout: Option<&str>) -> Listener {
    from_json(json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
        "bind_to_port": false,
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": name,
                "rds": { "route_config_name": route, "config_source": ads_source(timeout) },
                "http_filters": [{ "name": "envoy.filters.http.router", "typed_config": { "@type": ROUTER } }]
            }
        }]}]
    }))
}

fn tcp_listener(name: &str, port: u16, cluster: Option<&str>) -> Listener {
    let mut proxy = json!({ "@type": TCP_PROXY, "stat_prefix": name });
    if let Some(c) = cluster {
        proxy["cluster"] = json!(c);
    }
    from_json(json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
        "bind_to_port": false,
        "filter_chains": [{ "filters": [{ "name": "envoy.filters.network.tcp_proxy", "typed_config": proxy }] }]
    }))
}

fn eds_cluster(name: &str, service: &str, timeout: Option<&str>) -> Cluster {
    from_json(json!({
        "name": name,
        "type": "EDS",
        "connect_timeout": "2s",
        "eds_cluster_config": { "service_name": service, "eds_config": ads_source(timeout) }
    }))
}

/// Everything pushed before the dumps are first compared.
fn first_push() -> Batch {
    let dyn_static: Cluster = from_json(json!({
        "name": "dyn-static",
        "type": "STATIC",
        "load_assignment": { "cluster_name": "dyn-static", "endpoints": [
            { "lb_endpoints": [{ "endpoint": {
                "address": { "socket_address": { "address": "127.0.0.3", "port_value": 80 } },
                "hostname": "h3" } }] },
            { "priority": 1, "load_balancing_weight": 5,
              "locality": { "region": "r", "zone": "z", "sub_zone": "s" },
              "lb_endpoints": [
                { "endpoint": { "address": { "socket_address": { "address": "127.0.0.4", "port_value": 80 } } },
                  "health_status": "UNHEALTHY" },
                { "endpoint": { "address": { "socket_address": { "address": "127.0.0.5", "port_value": 80 } } },
                  "health_status": "DEGRADED" } ] }
        ] }
    }));
    let svc: ClusterLoadAssignment = from_json(json!({
        "cluster_name": "svc",
        "endpoints": [{ "lb_endpoints": [{ "endpoint": {
            "address": { "socket_address": { "address": "127.0.0.6", "port_value": 81 } } } }] }]
    }));
    let route: RouteConfiguration = from_json(json!({
        "name": "rds-1",
        "virtual_hosts": [{ "name": "vh", "domains": ["*"],
            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "dyn-static" } }] }]
    }));
    Batch::new()
        .cluster(&eds_cluster("dyn-eds", "svc", None))
        .cluster(&dyn_static)
        .endpoints(&svc)
        .listener(&rds_listener("dyn-l", 15002, "rds-1", None))
        .listener(&tcp_listener("tcp-l", 15003, Some("dyn-static")))
        // A TCP proxy without a cluster: rejected by both.
        .listener(&tcp_listener("bad-l", 15004, None))
        .route(&route)
}

/// Pushed once both are initialized: a cluster and a listener waiting for ever (initial fetch
/// timeout 0) for endpoints and a route that never come.
fn second_push() -> Batch {
    Batch::new()
        .cluster(&eds_cluster("warm-c", "never", Some("0s")))
        .listener(&rds_listener("warm-l", 15005, "never", Some("0s")))
}

fn section<'a>(dump: &'a Json, ty: &str) -> &'a Json {
    dump["configs"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|c| {
                c["@type"]
                    .as_str()
                    .is_some_and(|t| t.rsplit('.').next() == Some(ty))
            })
        })
        .unwrap_or(&Json::Null)
}

fn has(list: &Json, pred: impl Fn(&Json) -> bool) -> bool {
    list.as_array().is_some_and(|a| a.iter().any(pred))
}

/// Whether a dump shows the first push (and the second when `second`).
fn shows(dump: &Json, second: bool) -> bool {
    let clusters = section(dump, "ClustersConfigDump");
    let listeners = &section(dump, "ListenersConfigDump")["dynamic_listeners"];
    let routes = section(dump, "RoutesConfigDump");
    let active = |n: &str| {
        has(&clusters["dynamic_active_clusters"], |c| {
            c["cluster"]["name"] == n
        })
    };
    let first = active("dyn-eds")
        && active("dyn-static")
        && has(listeners, |l| {
            l["name"] == "dyn-l" && l["active_state"].is_object()
        })
        && has(listeners, |l| {
            l["name"] == "tcp-l" && l["active_state"].is_object()
        })
        && has(listeners, |l| {
            l["name"] == "bad-l" && l["error_state"].is_object()
        })
        && has(&routes["dynamic_route_configs"], |r| {
            r["route_config"]["name"] == "rds-1"
        });
    first
        && (!second
            || (has(&clusters["dynamic_warming_clusters"], |c| {
                c["cluster"]["name"] == "warm-c"
            }) && has(listeners, |l| {
                l["name"] == "warm-l" && l["warming_state"].is_object()
            })))
}

/// The dynamic part of a dump, for a failure message.
fn brief(dump: &Json) -> String {
    [
        "ClustersConfigDump",
        "ListenersConfigDump",
        "RoutesConfigDump",
    ]
    .iter()
    .map(|ty| {
        let s = section(dump, ty);
        let names = |l: &Json, f: &dyn Fn(&Json) -> Json| -> Vec<Json> {
            l.as_array()
                .map(|a| a.iter().map(f).collect())
                .unwrap_or_default()
        };
        format!(
            "{ty}: active {:?} warming {:?} listeners {:?} routes {:?}",
            names(&s["dynamic_active_clusters"], &|c| c["cluster"]["name"]
                .clone()),
            names(&s["dynamic_warming_clusters"], &|c| c["cluster"]["name"]
                .clone()),
            names(&s["dynamic_listeners"], &|l| json!([
                l["name"],
                l["active_state"].is_object(),
                l["warming_state"].is_object(),
                l["error_state"].is_object()
            ])),
            names(&s["dynamic_route_configs"], &|r| r["route_config"]["name"]
                .clone()),
        )
    })
    .collect::<Vec<_>>()
    .join("\n  ")
}

/// Envoy's answer: status and body.
async fn envoy_get(admin: std::net::SocketAddr, query: &str) -> (u16, String) {
    let got = support::get(
        &h1_client(),
        admin,
        "localhost",
        &format!("/config_dump{query}"),
    )
    .await;
    (got.status, got.body)
}

/// tern's answer from its admin server: status and body.
async fn tern_get(server: &Server, query: &str) -> (u16, String) {
    let admin = server.admin_addr().expect("tern's admin is bound");
    envoy_get(admin, query).await
}

fn parse(what: &str, text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

/// Take out what may differ (see the module's list).
fn normalize(j: &mut Json, envoy: bool) {
    match j {
        Json::Object(m) => {
            // Each proxy has its own admin port.
            if let Some(port) = m
                .get_mut("admin")
                .and_then(|a| a.pointer_mut("/address/socket_address/port_value"))
            {
                *port = json!("<admin port>");
            }
            for key in ["last_updated", "last_update_attempt"] {
                if let Some(v) = m.get_mut(key) {
                    *v = json!("<time>");
                }
            }
            if let Some(Json::Object(node)) = m.get_mut("node")
                && node.contains_key("id")
            {
                node.retain(|k, _| {
                    matches!(k.as_str(), "id" | "cluster" | "locality" | "metadata")
                });
            }
            if let Some(Json::Object(e)) = m.get_mut("error_state") {
                if let Some(d) = e.get_mut("details") {
                    *d = json!("<details>");
                }
                if !envoy {
                    e.remove("version_info");
                }
            }
            for key in ["dynamic_listeners", "configs"] {
                if envoy && let Some(Json::Array(l)) = m.get_mut(key) {
                    l.retain(|e| !is_overall_error(e));
                }
            }
            for v in m.values_mut() {
                normalize(v, envoy);
            }
            for (k, v) in m.iter_mut() {
                if (k.starts_with("dynamic_") || k.ends_with("_route_configs"))
                    && let Json::Array(l) = v
                {
                    l.sort_by_key(|e| e.to_string());
                }
            }
        }
        Json::Array(l) => l.iter_mut().for_each(|v| normalize(v, envoy)),
        _ => {}
    }
}

/// Envoy's entry for the errors of the whole last LDS update: a `DynamicListener` with no
/// name and no state but (unless masked away) `error_state`.
fn is_overall_error(e: &Json) -> bool {
    let listener = e
        .get("@type")
        .is_none_or(|t| t.as_str().is_some_and(|t| t.ends_with(".DynamicListener")));
    listener
        && e.get("name").is_none()
        && e.get("active_state").is_none()
        && e.get("warming_state").is_none()
}

/// Every place where the two differ, by JSON path.
fn diff(path: &str, e: &Json, t: &Json, out: &mut Vec<String>) {
    match (e, t) {
        (Json::Object(a), Json::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => diff(&format!("{path}.{k}"), v, w, out),
                    None => out.push(format!("{path}.{k}: only in Envoy: {v}")),
                }
            }
            for (k, w) in b {
                if !a.contains_key(k) {
                    out.push(format!("{path}.{k}: only in tern: {w}"));
                }
            }
        }
        (Json::Array(a), Json::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ if e != t => out.push(format!("{path}:\n  envoy: {e}\n  tern:  {t}")),
        _ => {}
    }
}

async fn compare(envoy: std::net::SocketAddr, server: &Server, query: &str, out: &mut Vec<String>) {
    let (es, eb) = envoy_get(envoy, query).await;
    let (ts, tb) = tern_get(server, query).await;
    if es != ts {
        out.push(format!(
            "{query}: status {es} (Envoy: {eb}) against {ts} (tern: {tb})"
        ));
        return;
    }
    if es != 200 {
        let worded_apart = query.contains("name_regex=(") || query.contains("mask=cluster");
        if eb.trim_end() != tb.trim_end() && !worded_apart {
            out.push(format!("{query}: body\n  envoy: {eb}\n  tern:  {tb}"));
        }
        return;
    }
    let mut e = parse("Envoy", &eb);
    let mut t = parse("tern", &tb);
    normalize(&mut e, true);
    normalize(&mut t, false);
    if query.contains("resource=") {
        // One config per resource: in each proxy's own order.
        for j in [&mut e, &mut t] {
            if let Some(Json::Array(l)) = j.get_mut("configs") {
                l.sort_by_key(|e| e.to_string());
            }
        }
    }
    diff(query, &e, &t, out);
}

#[tokio::test]
async fn config_dump_matches_envoy() {
    let ads = AdsServer::tcp().await;
    ads.apply(first_push());
    let yaml = template(&ads);
    let Some(envoy) = start_envoy_admin("config_dump", &yaml).await else {
        return;
    };
    // The same text, with an admin port of tern's own.
    let server = support::start_tern(&envoy.config.replace(
        &format!("port_value: {}", envoy.admin.port()),
        "port_value: 0",
    ))
    .await;
    within(20, server.wait_initialized()).await;

    let envoy_dump = || async { parse("Envoy", &envoy_get(envoy.admin, "").await.1) };
    let tern_dump = || async { parse("tern", &tern_get(&server, "").await.1) };
    for second in [false, true] {
        if second {
            ads.apply(second_push());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (e, t) = (envoy_dump().await, tern_dump().await);
            if shows(&e, second) && shows(&t, second) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not all resources in (second push: {second})\nenvoy: {}\ntern: {}",
                brief(&e),
                brief(&t)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let mut out = Vec::new();
    for query in [
        "",
        "?include_eds",
        "?resource=dynamic_listeners",
        "?resource=dynamic_active_clusters&mask=cluster.name,version_info",
        "?resource=static_endpoint_configs&include_eds",
        "?mask=dynamic_route_configs,static_route_configs",
        "?name_regex=.*-l&resource=dynamic_listeners&mask=name",
        "?resource=nope",
        "?resource=version_info",
        "?mask=nope",
        "?resource=static_clusters&mask=cluster",
        "?name_regex=(",
    ] {
        compare(envoy.admin, &server, query, &mut out).await;
    }
    assert!(
        out.is_empty(),
        "tern's /config_dump differs from Envoy's in {} place(s):\n{}",
        out.len(),
        out.join("\n")
    );
}
