//! Store, rendering and tag-extraction tests.

use super::render::{fmt_double, fmt_g};
use super::*;
use envoy_types::pb::envoy::config::metrics::v3 as metrics_pb;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;

#[test]
fn handles_share_the_value() {
    let s = Store::new();
    let a = s.counter("x.y");
    let b = s.counter("x.y");
    a.inc();
    b.add(2);
    assert_eq!(s.counter_value("x.y"), Some(3));
    let g = s.gauge("g");
    g.inc();
    g.inc();
    g.dec();
    assert_eq!(s.gauges(), vec![("g".to_string(), 1)]);
}

#[test]
fn blocks_share_names_with_single_counters() {
    let s = Store::new();
    const NAMES: &[&str] = &["upstream_rq_total", "upstream_rq_retry"];
    let b = s.counter_block("cluster.a.", NAMES);
    b[1].add(2);
    // The same name through `counter` is the same cell, and a recompiled cluster gets the
    // same block.
    s.counter("cluster.a.upstream_rq_retry").inc();
    let again = s.counter_block("cluster.a.", NAMES);
    assert_eq!(again[1].value(), 3);
    assert_eq!(s.counter_value("cluster.a.upstream_rq_retry"), Some(3));
    assert_eq!(s.counter_value("cluster.a.upstream_rq_total"), Some(0));
    s.counter("cluster.a.other").inc();
    let names: Vec<String> = s.counters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "cluster.a.other",
            "cluster.a.upstream_rq_retry",
            "cluster.a.upstream_rq_total"
        ]
    );
}

#[test]
fn removed_blocks_are_no_longer_listed() {
    let s = Store::new();
    const NAMES: &[&str] = &["upstream_rq_total"];
    s.counter_block("cluster.a.", NAMES)[0].inc();
    s.counter_block("cluster.a.b.", NAMES)[0].inc();
    s.gauge("cluster.a.version").set(1);
    s.remove_block("cluster.a.", NAMES, &["version"]);
    let names: Vec<String> = s.counters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["cluster.a.b.upstream_rq_total"]);
    assert!(s.gauges().is_empty());
    assert_eq!(s.counter_block("cluster.a.", NAMES)[0].value(), 0);
}

#[test]
fn not_enforced_counts_each_instance() {
    let s = Store::new();
    s.not_enforced("envoy.filters.http.cors", "CORS");
    s.not_enforced("envoy.filters.http.cors", "CORS");
    assert_eq!(
        s.counter_value("tern.config.not_enforced.envoy.filters.http.cors"),
        Some(2)
    );
}

block_stats! {
    /// A test block.
    struct TestStats: TEST_SPEC {
        counters { rq_total, rq_retry }
        gauges { cx_active }
        histograms { rq_time: Unit::Milliseconds }
        status_codes: Some("upstream_rq_"),
    }
}

#[test]
fn a_block_lists_counters_gauges_histograms_and_status_codes() {
    let s = Store::new();
    let b = TestStats::new(&s, "cluster.foo.");
    b.rq_total().inc();
    b.cx_active().set(0);
    b.rq_time().record(7);
    b.block().status_codes().record(200);
    b.block().status_codes().record(503);
    b.block().status_codes().record(200);
    let text = s.render_text(&StatsQuery::default());
    assert!(
        text.starts_with(
            "cluster.foo.cx_active: 0\n\
             cluster.foo.rq_retry: 0\n\
             cluster.foo.rq_total: 1\n\
             cluster.foo.upstream_rq_200: 2\n\
             cluster.foo.upstream_rq_2xx: 2\n\
             cluster.foo.upstream_rq_503: 1\n\
             cluster.foo.upstream_rq_5xx: 1\n\
             cluster.foo.rq_time: P0(nan,7) P25(nan,7.025)"
        ),
        "{text}"
    );
    assert_eq!(s.counter_value("cluster.foo.upstream_rq_503"), Some(1));
    assert_eq!(s.counter_value("cluster.foo.upstream_rq_404"), None);
    assert_eq!(
        s.histogram_value("cluster.foo.rq_time").map(|h| h.count),
        Some(1)
    );
    // Same prefix, same cells.
    assert_eq!(TestStats::new(&s, "cluster.foo.").rq_total().value(), 1);
    s.remove_spec_block("cluster.foo.", &TEST_SPEC);
    assert!(s.render_text(&StatsQuery::default()).is_empty());
}

#[test]
fn used_only_lists_written_stats_and_a_gauge_set_to_zero() {
    let s = Store::new();
    s.counter("a.never");
    s.counter("a.zero").add(0);
    s.counter("a.one").inc();
    s.gauge("server.state").set(0);
    s.gauge("server.unset");
    s.histogram("h.never", Unit::Milliseconds);
    let q = StatsQuery::parse("usedonly").unwrap();
    assert_eq!(s.render_text(&q), "a.one: 1\na.zero: 0\nserver.state: 0\n");
    let all = s.render_text(&StatsQuery::default());
    assert!(all.contains("server.unset: 0\n"));
    assert!(all.ends_with("h.never: No recorded values\n"), "{all}");
    let json = s.render_json(&StatsQuery::parse("usedonly&filter=server").unwrap());
    assert_eq!(json, r#"{"stats":[{"name":"server.state","value":0}]}"#);
}

#[test]
fn queries_parse_like_envoys_admin() {
    let q = StatsQuery::parse("filter=cluster%5C.foo&format=json&type=Counters").unwrap();
    assert!(q.matches("cluster.foo.x") && !q.matches("clusterXfoo"));
    assert_eq!(q.format, Format::Json);
    assert_eq!(q.stats_type, StatsType::Counters);
    assert!(
        StatsQuery::parse("filter=(")
            .unwrap_err()
            .starts_with("Invalid re2 regex")
    );
    assert_eq!(
        StatsQuery::parse("type=Bad").unwrap_err(),
        "invalid &type= param"
    );
    let q = StatsQuery::parse("histogram_buckets=disjoint").unwrap();
    assert_eq!(q.buckets, BucketsMode::Disjoint);
    let s = Store::new();
    s.counter("c.a").inc();
    s.gauge("g.a").set(2);
    let h = s.histogram("h.a", Unit::Milliseconds);
    h.record(3);
    h.record(30);
    assert_eq!(
        s.render_text(&StatsQuery::parse("type=Gauges").unwrap()),
        "g.a: 2\n"
    );
    assert_eq!(
        s.render_text(&StatsQuery::parse("type=Histograms&histogram_buckets=disjoint").unwrap()),
        "h.a: B0.5(0,0) B1(0,0) B5(0,1) B10(0,0) B25(0,0) B50(0,1) B100(0,0) B250(0,0) \
         B500(0,0) B1000(0,0) B2500(0,0) B5000(0,0) B10000(0,0) B30000(0,0) B60000(0,0) \
         B300000(0,0) B600000(0,0) B1.8e+06(0,0) B3.6e+06(0,0)\n"
    );
}

#[test]
fn json_has_envoys_shape() {
    let s = Store::new();
    s.counter("c.a").inc();
    let h = s.histogram("h.a", Unit::Milliseconds);
    h.record(0);
    s.flush();
    let v: serde_json::Value =
        serde_json::from_str(&s.render_json(&StatsQuery::default())).unwrap();
    let stats = v["stats"].as_array().unwrap();
    assert_eq!(stats[0], serde_json::json!({"name": "c.a", "value": 1}));
    let hist = &stats[1]["histograms"];
    assert_eq!(
        hist["supported_quantiles"],
        serde_json::json!([0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100])
    );
    assert_eq!(hist["computed_quantiles"][0]["name"], "h.a");
    assert_eq!(
        hist["computed_quantiles"][0]["values"][0],
        serde_json::json!({"cumulative": 0, "interval": 0})
    );
    s.flush();
    let v: serde_json::Value =
        serde_json::from_str(&s.render_json(&StatsQuery::default())).unwrap();
    // The interval between the two flushes had no value.
    assert_eq!(
        v["stats"][1]["histograms"]["computed_quantiles"][0]["values"][9]["interval"],
        serde_json::Value::Null
    );
}

#[test]
fn doubles_print_as_fmt_does() {
    assert_eq!(fmt_double(f64::NAN), "nan");
    assert_eq!(fmt_double(0.0), "0");
    assert_eq!(fmt_double(48.333333333333336), "48.333333333333336");
    assert_eq!(fmt_double(1.0), "1");
    assert_eq!(fmt_g(1_800_000.0, 6), "1.8e+06");
    assert_eq!(fmt_g(600_000.0, 6), "600000");
    assert_eq!(fmt_g(99.5, 6), "99.5");
    assert_eq!(fmt_g(0.5, 32), "0.5");
    assert_eq!(fmt_g(3_600_000.0, 32), "3600000");
    assert_eq!(fmt_g(0.0001, 6), "0.0001");
    assert_eq!(fmt_g(0.00001, 6), "1e-05");
}

fn prefix(p: &str) -> matcher_pb::StringMatcher {
    matcher_pb::StringMatcher {
        match_pattern: Some(matcher_pb::string_matcher::MatchPattern::Prefix(p.into())),
        ignore_case: false,
    }
}

#[test]
fn the_stats_matcher_hides_rejected_stats() {
    let m = metrics_pb::StatsMatcher {
        stats_matcher: Some(metrics_pb::stats_matcher::StatsMatcher::InclusionList(
            matcher_pb::ListStringMatcher {
                patterns: vec![prefix("cluster.xds-grpc"), prefix("server")],
            },
        )),
    };
    let settings = StatsSettings {
        tags: TagProducer::default(),
        matcher: StatsMatcher::from_proto(&m).unwrap(),
    };
    let s = Store::with_settings(settings);
    s.counter("server.x").inc();
    let hidden = s.counter("listener_manager.y");
    hidden.inc();
    assert_eq!(hidden.value(), 1, "a rejected stat still counts, unlisted");
    let other = TestStats::new(&s, "cluster.other.");
    other.rq_total().inc();
    other.block().status_codes().record(200);
    let xds = TestStats::new(&s, "cluster.xds-grpc.");
    xds.rq_total().inc();
    xds.block().status_codes().record(200);
    let q = StatsQuery::parse("usedonly").unwrap();
    assert_eq!(
        s.render_text(&q),
        "cluster.xds-grpc.rq_total: 1\ncluster.xds-grpc.upstream_rq_200: 1\ncluster.xds-grpc.upstream_rq_2xx: 1\nserver.x: 1\n"
    );
    assert!(
        !s.render_prometheus(&StatsQuery::default())
            .contains("other")
    );
}

#[test]
fn prometheus_output_has_envoys_names_and_labels() {
    let s = Store::new();
    let c = TestStats::new(&s, "cluster.foo.");
    c.rq_total().add(3);
    c.block().status_codes().record(200);
    c.block().status_codes().record(404);
    let b = TestStats::new(&s, "cluster.bar.");
    b.block().status_codes().record(200);
    b.rq_time().record(5);
    b.rq_time().record(1_000);
    s.counter("http.ingress.downstream_rq_2xx").add(2);
    s.gauge("server.state").set(0);
    s.counter("weird.na\"me").inc();
    s.register_custom_namespace("istiocustom");
    s.counter_with_tags(
        "istiocustom.istio_requests_total",
        &[("reporter", "destination"), ("response_code", "200")],
    )
    .inc();
    let text = s.render_prometheus(&StatsQuery::default());
    let want_rq = "# TYPE envoy_cluster_upstream_rq counter\n\
                   envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"bar\"} 1\n\
                   envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"foo\"} 1\n\
                   envoy_cluster_upstream_rq{envoy_response_code=\"404\",envoy_cluster_name=\"foo\"} 1\n";
    assert!(text.contains(want_rq), "{text}");
    assert!(text.contains(
        "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"foo\"} 1\n"
    ));
    assert!(text.contains(
        "# TYPE envoy_http_downstream_rq_xx counter\n\
         envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ingress\"} 2\n"
    ));
    assert!(text.contains("# TYPE envoy_server_state gauge\nenvoy_server_state{} 0\n"));
    assert!(text.contains("envoy_weird_na_me{} 1\n"));
    assert!(text.contains(
        "# TYPE istio_requests_total counter\n\
         istio_requests_total{reporter=\"destination\",response_code=\"200\"} 1\n"
    ));
    assert!(text.contains(
        "envoy_cluster_rq_time_bucket{envoy_cluster_name=\"bar\",le=\"5\"} 1\n\
         envoy_cluster_rq_time_bucket{envoy_cluster_name=\"bar\",le=\"10\"} 1\n"
    ));
    assert!(text.contains(
        "envoy_cluster_rq_time_bucket{envoy_cluster_name=\"bar\",le=\"3600000\"} 2\n\
         envoy_cluster_rq_time_bucket{envoy_cluster_name=\"bar\",le=\"+Inf\"} 2\n\
         envoy_cluster_rq_time_sum{envoy_cluster_name=\"bar\"} 1005\n\
         envoy_cluster_rq_time_count{envoy_cluster_name=\"bar\"} 2\n"
    ));
    // Counters, then gauges, then histograms.
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.rsplit(' ').next().unwrap_or(""))
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|k| {
        ["counter", "gauge", "histogram"]
            .iter()
            .position(|x| x == k)
    });
    assert_eq!(kinds, sorted);
}
