//! Tag extraction against Envoy's documented examples, and `stats_tags`.

use super::TagProducer;
use envoy_types::pb::envoy::config::metrics::v3 as metrics_pb;

fn extract(p: &TagProducer, name: &str) -> (String, Vec<(String, String)>) {
    let (n, tags) = p.produce(name);
    (n, tags.into_iter().map(|t| (t.name, t.value)).collect())
}

fn tags(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn default_tags_follow_envoys_examples() {
    let p = TagProducer::default();
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "cluster.foo.upstream_rq_200",
            "cluster.upstream_rq",
            &[
                ("envoy.response_code", "200"),
                ("envoy.cluster_name", "foo"),
            ],
        ),
        (
            "cluster.foo.upstream_rq_2xx",
            "cluster.upstream_rq_xx",
            &[
                ("envoy.response_code_class", "2"),
                ("envoy.cluster_name", "foo"),
            ],
        ),
        (
            "listener.127.0.0.1_3012.http.http_prefix.downstream_rq_5xx",
            "listener.http.downstream_rq_xx",
            &[
                ("envoy.response_code_class", "5"),
                ("envoy.http_conn_manager_prefix", "http_prefix"),
                ("envoy.listener_address", "127.0.0.1_3012"),
            ],
        ),
        (
            "listener.127.0.0.1_3012.worker_123.downstream_cx_active",
            "listener.worker_downstream_cx_active",
            &[
                ("envoy.worker_id", "123"),
                ("envoy.listener_address", "127.0.0.1_3012"),
            ],
        ),
        (
            "listener.[__1]_15001.downstream_cx_total",
            "listener.downstream_cx_total",
            &[("envoy.listener_address", "[__1]_15001")],
        ),
        (
            "listener.admin.downstream_cx_total",
            "listener.admin.downstream_cx_total",
            &[],
        ),
        (
            "http.rds_connection_manager.rds.agg/route_config.1-23.update_success",
            "http.rds.update_success",
            &[
                ("envoy.http_conn_manager_prefix", "rds_connection_manager"),
                ("envoy.rds_route_config", "agg/route_config.1-23"),
            ],
        ),
        (
            "tcp.tcp_prefix.downstream_flow_control_resumed_reading_total",
            "tcp.downstream_flow_control_resumed_reading_total",
            &[("envoy.tcp_prefix", "tcp_prefix")],
        ),
        (
            "vhost.vhost_1.vcluster.vcluster_1.upstream_rq_200",
            "vhost.vcluster.upstream_rq",
            &[
                ("envoy.response_code", "200"),
                ("envoy.virtual_cluster", "vcluster_1"),
                ("envoy.virtual_host", "vhost_1"),
            ],
        ),
        (
            "cluster.grpc_cluster.grpc.grpc_service_1.grpc_method_1.success",
            "cluster.grpc.success",
            &[
                ("envoy.grpc_bridge_method", "grpc_method_1"),
                ("envoy.grpc_bridge_service", "grpc_service_1"),
                ("envoy.cluster_name", "grpc_cluster"),
            ],
        ),
        (
            "http.hcm_prefix.rbac.policy.my_rbac_policy.allowed",
            "http.rbac.policy.allowed",
            &[
                ("envoy.http_conn_manager_prefix", "hcm_prefix"),
                ("envoy.rbac_policy_name", "my_rbac_policy"),
            ],
        ),
        (
            "proxy_proto.test_stat_prefix.versions.v2.error",
            "proxy_proto.error",
            &[
                ("envoy.proxy_protocol_prefix", "test_stat_prefix"),
                ("envoy.proxy_protocol_version", "2"),
            ],
        ),
        (
            "proxy_proto.not_found_disallowed",
            "proxy_proto.not_found_disallowed",
            &[],
        ),
        (
            "server.worker_123.watchdog_miss",
            "server.worker_watchdog_miss",
            &[("envoy.worker_id", "123")],
        ),
        (
            "cluster_manager.cds.update_success",
            "cluster_manager.cds.update_success",
            &[],
        ),
    ];
    for (name, extracted, want) in cases {
        let (n, t) = extract(&p, name);
        let mut t_sorted = t.clone();
        let mut w_sorted = tags(want);
        t_sorted.sort();
        w_sorted.sort();
        assert_eq!(
            (&n, &t_sorted),
            (&extracted.to_string(), &w_sorted),
            "{name}"
        );
    }
    // Envoy's order: extractors without a leading token, then those of the name's first token.
    assert_eq!(
        extract(&p, "cluster.foo.upstream_rq_200").1,
        tags(&[
            ("envoy.response_code", "200"),
            ("envoy.cluster_name", "foo")
        ])
    );
}

fn tag(name: &str, regex: Option<&str>, fixed: Option<&str>) -> metrics_pb::TagSpecifier {
    use metrics_pb::tag_specifier::TagValue;
    metrics_pb::TagSpecifier {
        tag_name: name.into(),
        tag_value: match (regex, fixed) {
            (Some(r), _) => Some(TagValue::Regex(r.into())),
            (_, Some(f)) => Some(TagValue::FixedValue(f.into())),
            _ => None,
        },
    }
}

#[test]
fn stats_tags_add_fixed_and_custom_tags_after_the_defaults() {
    let c = metrics_pb::StatsConfig {
        stats_tags: vec![
            tag("my_fixed", None, Some("fv")),
            // An ECMAScript lookahead, as Istio's bootstrap uses.
            tag(
                "custom",
                Some(r"^cluster(?=\.).*?\.(custom\.(\w+)\.)"),
                None,
            ),
        ],
        ..Default::default()
    };
    let p = TagProducer::from_proto(&c).unwrap();
    assert_eq!(
        extract(&p, "cluster.foo.custom.x.upstream_rq_200"),
        (
            "cluster.upstream_rq".to_string(),
            tags(&[
                ("envoy.response_code", "200"),
                ("my_fixed", "fv"),
                ("envoy.cluster_name", "foo"),
                ("custom", "x"),
            ])
        )
    );
    // A default name again is an error; so is an unknown name without a regex.
    let dup = metrics_pb::StatsConfig {
        stats_tags: vec![tag("envoy.cluster_name", Some("x(y)"), None)],
        ..Default::default()
    };
    assert!(
        TagProducer::from_proto(&dup)
            .unwrap_err()
            .message
            .contains("specified twice")
    );
    let unknown = metrics_pb::StatsConfig {
        stats_tags: vec![tag("nope", None, None)],
        use_all_default_tags: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        ..Default::default()
    };
    assert!(TagProducer::from_proto(&unknown).is_err());
    // Without the defaults, a named default is taken by name alone.
    let only = metrics_pb::StatsConfig {
        stats_tags: vec![tag("envoy.cluster_name", None, None)],
        use_all_default_tags: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        ..Default::default()
    };
    let p = TagProducer::from_proto(&only).unwrap();
    assert_eq!(
        extract(&p, "cluster.foo.upstream_rq_200"),
        (
            "cluster.upstream_rq_200".to_string(),
            tags(&[("envoy.cluster_name", "foo")])
        )
    );
    let bad = metrics_pb::StatsConfig {
        stats_tags: vec![tag("x", Some("(unclosed"), None)],
        ..Default::default()
    };
    assert_eq!(
        TagProducer::from_proto(&bad).unwrap_err().field,
        "stats_tags[0].regex"
    );
}

#[test]
fn every_default_regex_compiles() {
    // They compile on first use; a bad one must fail here, not in a running proxy.
    for (name, pattern) in super::defaults::defaults() {
        if let super::defaults::Pattern::Re2(re, _, _) = pattern {
            assert!(regex::Regex::new(re).is_ok(), "{name}: {re}");
        }
    }
}
