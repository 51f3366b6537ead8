//! Stats through tern: exact counters and histogram counts for real traffic, read through the
//! store's renderers; Istio's `stats_config` (tags and inclusion list); the Prometheus text
//! read back by a strict parser; and, with Envoy, the same metric names and labels as Envoy
//! for the same bootstrap and the same traffic.

#[path = "support/envoy.rs"]
mod envoy_support;
mod support;

#[path = "stats/istio.rs"]
mod istio;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use support::prom::{self, Scrape};
use support::{
    bootstrap, eventually, get, h1_client, h1_conn, http_listener, start_tern, static_cluster,
    upstream, within,
};
use tern::stats::StatsQuery;

fn vh(routes: &str) -> String {
    format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n{routes}"
    )
}

const ROUTES: &str = "              - match: { prefix: /direct }
                direct_response: { status: 200, body: { inline_string: hi } }
              - match: { prefix: / }
                route: { cluster: up }
";

/// The traffic of every test: 3 x 200, 1 x 404 and 1 x 503 from the upstream, 1 direct
/// response, one after the other on one client connection.
async fn traffic(addr: SocketAddr) {
    let mut conn = within(5, h1_conn(addr)).await;
    for path in ["/", "/a", "/b", "/status/404", "/status/503", "/direct"] {
        let req = http::Request::get(path)
            .header("host", "h")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = within(10, conn.send_request(req)).await.expect("response");
        within(10, resp.into_body().collect()).await.expect("body");
    }
}

fn scrape(server: &tern::server::Server) -> Scrape {
    let text = server.world.stats.render_prometheus(&StatsQuery::default());
    prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test]
async fn counters_and_histograms_follow_the_traffic() {
    let up = upstream::http("u").await;
    let tern = start_tern(&bootstrap(
        &[http_listener("l", &vh(ROUTES), "")],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").expect("bound");
    traffic(addr).await;
    let stats = &tern.world.stats;
    // The attempt ends when the response body has been sent: poll, don't sleep.
    assert!(
        eventually(5, || stats
            .counter_value("cluster.up.upstream_rq_completed")
            == Some(5)
            && stats
                .histogram_value("http.l.downstream_rq_time")
                .is_some_and(|h| h.count == 6))
        .await
    );
    let c = |n: &str| stats.counter_value(n);
    let expect = [
        ("cluster.up.upstream_rq_total", 5),
        ("cluster.up.upstream_rq_200", 3),
        ("cluster.up.upstream_rq_2xx", 3),
        ("cluster.up.upstream_rq_404", 1),
        ("cluster.up.upstream_rq_4xx", 1),
        ("cluster.up.upstream_rq_503", 1),
        ("cluster.up.upstream_rq_5xx", 1),
        ("http.l.downstream_rq_total", 6),
        ("http.l.downstream_rq_completed", 6),
        ("http.l.downstream_rq_2xx", 4),
        ("http.l.downstream_rq_4xx", 1),
        ("http.l.downstream_rq_5xx", 1),
        ("http.l.rq_direct_response", 1),
        ("http.l.downstream_cx_total", 1),
    ];
    for (name, want) in expect {
        assert_eq!(c(name), Some(want), "{name}");
    }
    assert_eq!(c("cluster.up.upstream_rq_201"), None, "made on first use");
    // Named after the configured address (port 0 here), colons made underscores, as Envoy.
    assert_eq!(c("listener.127.0.0.1_0.downstream_cx_total"), Some(1));
    // As many upstream connections as the upstream accepted (the pool may open a second one
    // if a request comes before the first connection is back in the pool).
    let cx = up.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(c("cluster.up.upstream_cx_total"), Some(cx));
    assert_eq!(c("cluster.up.upstream_cx_http1_total"), Some(cx));
    assert_eq!(c("cluster.up.upstream_rq_pending_total"), Some(cx));
    assert!(c("cluster.up.upstream_cx_rx_bytes_total").unwrap() > 0);
    assert!(c("http.l.downstream_cx_tx_bytes_total").unwrap() > 0);
    assert_eq!(stats.gauge_value("cluster.up.upstream_rq_active"), Some(0));
    assert_eq!(
        stats.gauge_value("cluster.up.upstream_cx_active"),
        Some(cx as i64)
    );
    assert_eq!(stats.gauge_value("cluster.up.membership_total"), Some(1));
    assert_eq!(stats.gauge_value("cluster.up.membership_healthy"), Some(1));
    let rq_time = stats
        .histogram_value("cluster.up.upstream_rq_time")
        .unwrap();
    assert_eq!(rq_time.count, 5);
    assert_eq!(
        rq_time.buckets[18], 5,
        "a loopback request takes under an hour"
    );
    assert_eq!(
        stats
            .histogram_value("cluster.up.upstream_cx_connect_ms")
            .map(|h| h.count),
        Some(1)
    );
    // The host's stats, for the admin `/clusters` page.
    let host = tern.world.cluster("up").unwrap().priority_set().priorities[0].hosts[0].clone();
    let h = host.stats();
    assert_eq!(
        (
            h.rq_total,
            h.rq_success,
            h.rq_error,
            h.rq_active,
            h.cx_total,
            h.cx_active
        ),
        (5, 4, 1, 0, cx, cx)
    );

    // The renderers.
    let text =
        stats.render_text(&StatsQuery::parse("filter=^cluster\\.up\\.upstream_rq_[0-9]").unwrap());
    assert_eq!(
        text,
        "cluster.up.upstream_rq_200: 3\ncluster.up.upstream_rq_2xx: 3\n\
         cluster.up.upstream_rq_404: 1\ncluster.up.upstream_rq_4xx: 1\n\
         cluster.up.upstream_rq_503: 1\ncluster.up.upstream_rq_5xx: 1\n"
    );
    let text = stats.render_text(&StatsQuery::parse("filter=upstream_rq_time$").unwrap());
    assert!(
        text.starts_with("cluster.up.upstream_rq_time: P0(nan,"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &stats.render_json(&StatsQuery::parse("filter=downstream_rq_time$").unwrap()),
    )
    .unwrap();
    assert_eq!(
        json["stats"][0]["histograms"]["computed_quantiles"][0]["name"],
        "http.l.downstream_rq_time"
    );
    let s = scrape(&tern);
    // Prometheus' own Python parser reads the same samples as the test's reader.
    prom::check_with_prometheus_client(&tern.world.stats.render_prometheus(&StatsQuery::default()));
    let cluster = [("envoy_cluster_name", "up")];
    assert_eq!(
        s.value("envoy_cluster_upstream_rq_total", &cluster),
        Some("5")
    );
    assert_eq!(
        s.value(
            "envoy_cluster_upstream_rq",
            &[("envoy_response_code", "503"), ("envoy_cluster_name", "up")]
        ),
        Some("1")
    );
    assert_eq!(
        s.value(
            "envoy_http_downstream_rq_xx",
            &[
                ("envoy_response_code_class", "2"),
                ("envoy_http_conn_manager_prefix", "l")
            ]
        ),
        Some("4")
    );
    assert_eq!(
        s.value("envoy_cluster_upstream_rq_time_count", &cluster),
        Some("5")
    );
    assert_eq!(
        s.value(
            "envoy_cluster_upstream_rq_time_bucket",
            &[("envoy_cluster_name", "up"), ("le", "+Inf")]
        ),
        Some("5")
    );
    assert_eq!(s.families["envoy_cluster_upstream_rq_time"], "histogram");
}

/// Istio's bootstrap `stats_config` (pilot-agent's golden file): its tag regexes (ECMAScript,
/// with lookahead) and its inclusion list. The expected lines are what Envoy 1.40 printed for
/// the same config and traffic (a cluster with `alt_stat_name: "xds-grpc;"`, an HCM with
/// `stat_prefix: "inbound_0.0.0.0_8080;"`).
#[tokio::test]
async fn istio_stats_config_tags_and_filters_like_envoy() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/testdata/istio/bootstrap_default_golden.json"
        ))
        .expect("Istio's golden bootstrap beside the repo"),
    )
    .unwrap();
    let up = upstream::http("u").await;
    let endpoint = |port: u16| serde_json::json!({"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]});
    let b = serde_json::json!({
        "stats_config": golden["stats_config"],
        "static_resources": {
            "listeners": [{"name": "in", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "inbound_0.0.0.0_8080;",
                    "route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/direct"}, "direct_response": {"status": 200}},
                        {"match": {"prefix": "/"}, "route": {"cluster": "xds-grpc"}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}],
            "clusters": [
                {"name": "xds-grpc", "alt_stat_name": "xds-grpc;", "connect_timeout": "1s", "type": "STATIC",
                 "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [endpoint(up.addr.port())]}},
                {"name": "outbound|80||foo.svc", "alt_stat_name": "outbound|80||foo.svc;", "connect_timeout": "1s", "type": "STATIC",
                 "load_assignment": {"cluster_name": "x", "endpoints": [endpoint(up.addr.port())]}}
            ]
        }
    });
    let tern = start_tern(&b.to_string()).await;
    traffic(tern.listener_addr("in").expect("bound")).await;
    let stats = &tern.world.stats;
    assert!(
        eventually(5, || stats
            .counter_value("cluster.xds-grpc;.upstream_rq_completed")
            == Some(5))
        .await
    );
    let text = stats.render_prometheus(&StatsQuery::default());
    let s = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (labels, v) in [
        (
            &[("cluster_name", "xds-grpc"), ("response_code", "200")][..],
            "3",
        ),
        (
            &[("cluster_name", "xds-grpc"), ("response_code_class", "2xx")][..],
            "3",
        ),
        (
            &[("cluster_name", "xds-grpc"), ("response_code", "404")][..],
            "1",
        ),
        (
            &[("cluster_name", "xds-grpc"), ("response_code_class", "4xx")][..],
            "1",
        ),
    ] {
        assert_eq!(
            s.value("envoy_cluster_upstream_rq", labels),
            Some(v),
            "{labels:?}\n{text}"
        );
    }
    let cluster = [("cluster_name", "xds-grpc")];
    assert_eq!(
        s.value("envoy_cluster_membership_total", &cluster),
        Some("1")
    );
    assert_eq!(
        s.value("envoy_cluster_upstream_rq_time_count", &cluster),
        Some("5")
    );
    // The inclusion list keeps cluster.xds-grpc*, server*, cluster_manager*, listener_manager*
    // ...: not the other cluster, not the connection manager, not the listener.
    for absent in ["foo", "envoy_http_", "envoy_listener_"] {
        let found = text
            .lines()
            .any(|l| l.contains(absent) && !l.contains("envoy_listener_manager_"));
        assert!(!found, "{absent}\n{text}");
    }
    // /stats shows the full names; the matcher applies there too.
    let plain = stats.render_text(&StatsQuery::parse("usedonly").unwrap());
    assert!(
        plain.contains("cluster.xds-grpc;.upstream_rq_200: 3\n"),
        "{plain}"
    );
    assert!(!plain.contains("http.inbound"), "{plain}");
}

#[test]
fn the_parser_rejects_broken_text() {
    assert!(prom::parse("a 1\n").is_err());
    assert!(prom::parse("# TYPE a counter\nb 1\n").is_err());
    assert!(prom::parse("# TYPE a counter\na{x=\"1} 1\n").is_err());
    assert!(prom::parse("# TYPE a counter\na{x=\"\\q\"} 1\n").is_err());
    assert!(prom::parse("# TYPE a counter\n# TYPE a counter\n").is_err());
    assert!(prom::parse("# TYPE a counter\na{} x\n").is_err());
    assert!(
        prom::parse(
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum{} 1\nh_count{} 1\n"
        )
        .is_err()
    );
    let ok = prom::parse(
        "# TYPE h histogram\nh_bucket{a=\"x\\\"y\",le=\"1\"} 1\nh_bucket{a=\"x\\\"y\",le=\"+Inf\"} 2\nh_sum{a=\"x\\\"y\"} 3\nh_count{a=\"x\\\"y\"} 2\n",
    )
    .unwrap();
    assert_eq!(ok.value("h_count", &[("a", "x\"y")]), Some("2"));
}

/// Families tern writes that Envoy 1.40 does not, each for a reason.
const TERN_ONLY: &[&str] = &[];

/// Counters and histogram counts that must be equal for the same traffic (byte counts and
/// timings differ between the two proxies).
const SAME_VALUE: &[&str] = &[
    "envoy_cluster_upstream_rq_total",
    "envoy_cluster_upstream_rq",
    "envoy_cluster_upstream_rq_xx",
    "envoy_cluster_upstream_rq_completed",
    "envoy_cluster_membership_total",
    "envoy_cluster_membership_healthy",
    "envoy_cluster_upstream_rq_time_count",
    "envoy_http_downstream_rq_total",
    "envoy_http_downstream_rq_xx",
    "envoy_http_downstream_rq_completed",
    "envoy_http_downstream_cx_total",
    "envoy_http_rq_direct_response",
    "envoy_listener_downstream_cx_total",
];

/// Connection counts of Envoy's listener, which the readiness probe connected to once more.
const PROBED: &[&str] = &[
    "envoy_http_downstream_cx_total",
    "envoy_listener_downstream_cx_total",
];

/// Envoy and tern on the same bootstrap (default tag extractors, a fixed tag and a custom
/// regex tag) and the same traffic: every metric tern writes is in Envoy's scrape with the same
/// name and labels (listener ports aside), and the deterministic ones have the same value.
#[tokio::test]
async fn prometheus_names_and_labels_match_envoy() {
    let up = upstream::http("u").await;
    let envoy_port = envoy_support::free_port();
    let admin_port = envoy_support::free_port();
    let stats_config = r#"stats_config:
  stats_tags:
  - { tag_name: mesh, fixed_value: m1 }
  - { tag_name: route_kind, regex: "^cluster(?=\\.).*?\\.(upstream_(rq))_" }
"#;
    let template = |port: u16| {
        format!(
            "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}\n{stats_config}{}",
            bootstrap(
                &[http_listener("l", &vh(ROUTES), "")
                    .replace("port_value: 0", &format!("port_value: {port}"))],
                &[static_cluster("up", &[up.addr], "")],
            )
        )
    };
    let envoy_addr = SocketAddr::from(([127, 0, 0, 1], envoy_port));
    let Some(_envoy) = envoy_support::start_envoy("stats", &template(envoy_port), envoy_addr).await
    else {
        return;
    };
    let tern = start_tern(&template(0).replace(&admin_port.to_string(), "0")).await;
    let tern_addr = tern.listener_addr("l").expect("bound");
    traffic(envoy_addr).await;
    traffic(tern_addr).await;
    let stats = &tern.world.stats;
    assert!(
        eventually(5, || stats
            .counter_value("cluster.up.upstream_rq_completed")
            == Some(5))
        .await
    );
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let got = get(&h1_client(), admin, "admin", "/stats/prometheus").await;
    let envoy = prom::parse(&got.body).expect("Envoy's scrape parses");
    let tern_scrape = scrape(&tern);
    // Listener stats are named after the configured address: tern's port is 0.
    let norm = |labels: &[(String, String)], port: u16| -> Vec<(String, String)> {
        labels
            .iter()
            .map(|(k, v)| (k.clone(), v.replace(&format!("_{port}"), "_PORT")))
            .collect()
    };
    let mut diffs = Vec::new();
    for (family, kind) in &tern_scrape.families {
        if TERN_ONLY.contains(&family.as_str()) {
            continue;
        }
        match envoy.families.get(family) {
            Some(k) if k == kind => {}
            other => diffs.push(format!("family {family} ({kind}): Envoy has {other:?}")),
        }
    }
    for s in &tern_scrape.samples {
        if TERN_ONLY.iter().any(|f| s.name.starts_with(f)) {
            continue;
        }
        let labels = norm(&s.labels, 0);
        let twin = envoy
            .samples
            .iter()
            .find(|e| e.name == s.name && norm(&e.labels, envoy_port) == labels);
        match twin {
            None => diffs.push(format!("{} {:?}: not in Envoy's scrape", s.name, labels)),
            Some(e) if SAME_VALUE.contains(&s.name.as_str()) => {
                let probe = u64::from(PROBED.contains(&s.name.as_str()));
                let ev: u64 = e.value.parse().unwrap_or(u64::MAX);
                let tv: u64 = s.value.parse().unwrap_or(u64::MAX);
                if ev != tv.saturating_add(probe) {
                    diffs.push(format!("{} {labels:?}: Envoy {ev} tern {tv}", s.name));
                }
            }
            Some(_) => {}
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
