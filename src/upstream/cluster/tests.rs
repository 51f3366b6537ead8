//! Clusters in the shape istiod sends to a sidecar (Istio 1.2x cluster builder: outbound EDS
//! with ISTIO_MUTUAL transport socket matches, subset clusters with outlier detection,
//! PassthroughCluster, BlackHoleCluster, InboundPassthroughCluster, inbound and DNS
//! clusters) and the pilot-agent bootstrap's static clusters.

use super::*;
use crate::config::istio::metadata_exchange::MetadataExchange;
use serde_json::{Value, json};
use std::path::Path;

fn sds(name: &str) -> Value {
    json!({
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
                "set_node_on_first_message_only": true,
                "transport_api_version": "V3"
            },
            "initial_fetch_timeout": "0s",
            "resource_api_version": "V3"
        }
    })
}

fn istio_mutual(sni: &str, san: &str) -> Value {
    json!([
        {
            "name": "tlsMode-istio",
            "match": {"tlsMode": "istio"},
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": {
                        "tls_params": {
                            "tls_minimum_protocol_version": "TLSv1_2",
                            "tls_maximum_protocol_version": "TLSv1_3"
                        },
                        "alpn_protocols": ["istio-peer-exchange", "istio"],
                        "tls_certificate_sds_secret_configs": [sds("default")],
                        "combined_validation_context": {
                            "default_validation_context": {
                                "match_subject_alt_names": [{"exact": san}]
                            },
                            "validation_context_sds_secret_config": sds("ROOTCA")
                        }
                    },
                    "sni": sni
                }
            }
        },
        {
            "name": "tlsMode-disabled",
            "match": {},
            "transport_socket": {
                "name": "envoy.transport_sockets.raw_buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
                }
            }
        }
    ])
}

fn circuit_breakers() -> Value {
    json!({"thresholds": [{
        "max_connections": 4294967295u32,
        "max_pending_requests": 4294967295u32,
        "max_requests": 4294967295u32,
        "max_retries": 4294967295u32,
        "track_remaining": true
    }]})
}

fn passthrough_protocol_options() -> Value {
    json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "common_http_protocol_options": {"idle_timeout": "300s"},
        "use_downstream_protocol_config": {
            "http_protocol_options": {},
            "http2_protocol_options": {}
        }
    }})
}

/// istiod's TCP metadata exchange upstream filter: a TypedStruct in recent releases, a plain
/// `Any` in others.
fn metadata_exchange(typed_struct: bool) -> Value {
    if typed_struct {
        json!([{
            "name": "istio.metadata_exchange",
            "typed_config": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                "type_url": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
                "value": {"protocol": "istio-peer-exchange", "enable_discovery": true}
            }
        }])
    } else {
        json!([{
            "name": "istio.metadata_exchange",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
                "protocol": "istio-peer-exchange"
            }
        }])
    }
}

fn istio_clusters() -> Vec<Value> {
    let httpbin = "httpbin.default.svc.cluster.local";
    vec![
        json!({
            "name": format!("outbound|8000||{httpbin}"),
            "type": "EDS",
            "eds_cluster_config": {
                "eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                "service_name": format!("outbound|8000||{httpbin}")
            },
            "connect_timeout": "10s",
            "lb_policy": "LEAST_REQUEST",
            "circuit_breakers": circuit_breakers(),
            "common_lb_config": {},
            "alt_stat_name": format!("outbound|8000||{httpbin};"),
            "metadata": {"filter_metadata": {"istio": {"services": [
                {"host": httpbin, "name": "httpbin", "namespace": "default"}
            ]}}},
            "filters": metadata_exchange(true),
            "transport_socket_matches": istio_mutual(
                &format!("outbound_.8000_._.{httpbin}"),
                "spiffe://cluster.local/ns/default/sa/httpbin"
            ),
            "typed_extension_protocol_options": passthrough_protocol_options()
        }),
        // A DestinationRule subset with outlier detection, locality LB and an h2 upstream.
        json!({
            "name": format!("outbound|8000|v1|{httpbin}"),
            "type": "EDS",
            "eds_cluster_config": {
                "eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                "service_name": format!("outbound|8000|v1|{httpbin}")
            },
            "connect_timeout": "10s",
            "lb_policy": "ROUND_ROBIN",
            "circuit_breakers": {"thresholds": [{
                "max_connections": 100,
                "max_pending_requests": 10,
                "max_requests": 4294967295u32,
                "max_retries": 4294967295u32,
                "track_remaining": true
            }]},
            "outlier_detection": {
                "consecutive_5xx": 5,
                "interval": "10s",
                "base_ejection_time": "30s",
                "max_ejection_percent": 100,
                "enforcing_consecutive_5xx": 100,
                "enforcing_success_rate": 0
            },
            "common_lb_config": {"healthy_panic_threshold": {}, "locality_weighted_lb_config": {}},
            "max_requests_per_connection": 1,
            "metadata": {"filter_metadata": {"istio": {
                "config": "/apis/networking.istio.io/v1/namespaces/default/destination-rule/httpbin",
                "subset": "v1"
            }}},
            "filters": metadata_exchange(false),
            "transport_socket_matches": istio_mutual(
                &format!("outbound_.8000_v1_.{httpbin}"),
                "spiffe://cluster.local/ns/default/sa/httpbin"
            ),
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }}
        }),
        json!({
            "name": "PassthroughCluster",
            "type": "ORIGINAL_DST",
            "connect_timeout": "10s",
            "lb_policy": "CLUSTER_PROVIDED",
            "circuit_breakers": circuit_breakers(),
            "typed_extension_protocol_options": passthrough_protocol_options(),
            "alt_stat_name": "PassthroughCluster;",
            "filters": metadata_exchange(true)
        }),
        json!({
            "name": "BlackHoleCluster",
            "type": "STATIC",
            "connect_timeout": "10s",
            "lb_policy": "ROUND_ROBIN",
            "alt_stat_name": "BlackHoleCluster;"
        }),
        json!({
            "name": "InboundPassthroughCluster",
            "type": "ORIGINAL_DST",
            "connect_timeout": "10s",
            "lb_policy": "CLUSTER_PROVIDED",
            "circuit_breakers": circuit_breakers(),
            "typed_extension_protocol_options": passthrough_protocol_options(),
            "upstream_bind_config": {
                "source_address": {"address": "127.0.0.6", "port_value": 0},
                "extra_source_addresses": [{"address": {"address": "::6", "port_value": 0}}]
            },
            "alt_stat_name": "InboundPassthroughCluster;"
        }),
        json!({
            "name": "inbound|8080||",
            "type": "STATIC",
            "connect_timeout": "10s",
            "lb_policy": "ROUND_ROBIN",
            "circuit_breakers": circuit_breakers(),
            "common_lb_config": {},
            "alt_stat_name": "inbound|8080||;",
            "metadata": {"filter_metadata": {"istio": {"services": [
                {"host": httpbin, "name": "httpbin", "namespace": "default"}
            ]}}},
            "load_assignment": {
                "cluster_name": "inbound|8080||",
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": 8080}
                }}}]}]
            },
            "typed_extension_protocol_options": passthrough_protocol_options()
        }),
        // An inbound cluster for a pod IP bind: ORIGINAL_DST with cleanup disabled.
        json!({
            "name": "inbound|9090||",
            "type": "ORIGINAL_DST",
            "connect_timeout": "10s",
            "lb_policy": "CLUSTER_PROVIDED",
            "cleanup_interval": "9223372035s",
            "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}},
            "alt_stat_name": "inbound|9090||;"
        }),
        // A ServiceEntry with DNS resolution.
        json!({
            "name": "outbound|443||www.example.com",
            "type": "STRICT_DNS",
            "connect_timeout": "10s",
            "lb_policy": "LEAST_REQUEST",
            "dns_lookup_family": "V4_ONLY",
            "dns_refresh_rate": "60s",
            "respect_dns_ttl": true,
            "dns_jitter": "0.100s",
            "typed_dns_resolver_config": {
                "name": "envoy.network.dns_resolver.cares",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
                    "udp_max_queries": 100
                }
            },
            "circuit_breakers": circuit_breakers(),
            "common_lb_config": {},
            "alt_stat_name": "outbound|443||www.example.com;",
            "load_assignment": {
                "cluster_name": "outbound|443||www.example.com",
                "endpoints": [{
                    "locality": {},
                    "lb_endpoints": [{
                        "endpoint": {"address": {"socket_address": {"address": "www.example.com", "port_value": 443}}},
                        "load_balancing_weight": 1
                    }],
                    "load_balancing_weight": 1
                }]
            },
            "filters": metadata_exchange(true),
            "transport_socket_matches": [{
                "name": "tlsMode-disabled",
                "match": {},
                "transport_socket": {
                    "name": "envoy.transport_sockets.raw_buffer",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
                    }
                }
            }]
        }),
    ]
}

fn compile_json(json: &Value, store: &Store) -> Result<Arc<Cluster>, ConfigError> {
    let c: cluster_pb::Cluster =
        crate::config::resource_from_json(json, true).unwrap_or_else(|e| panic!("{e}: {json}"));
    Cluster::compile(&c, store)
}

#[test]
fn istio_sidecar_clusters_compile() {
    let store = Store::new();
    let mut compiled = Vec::new();
    for json in istio_clusters() {
        compiled.push(compile_json(&json, &store).unwrap_or_else(|e| panic!("{e}")));
    }
    let by_name = |n: &str| {
        compiled
            .iter()
            .find(|c| &*c.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let outbound = by_name("outbound|8000||httpbin.default.svc.cluster.local");
    // Istio's service name is the cluster's name: kept once.
    assert_eq!(outbound.discovery, Discovery::Eds { service_name: None });
    assert_eq!(
        outbound.eds_service_name(),
        Some("outbound|8000||httpbin.default.svc.cluster.local")
    );
    assert_eq!(outbound.transport_socket_matches.len(), 2);
    assert!(outbound.transport_socket_matches[0].socket.is_tls());
    assert_eq!(
        outbound.transport_socket_matches[1].socket,
        TransportSocket::RawBuffer
    );
    assert!(matches!(
        outbound.filters.as_slice(),
        [UpstreamFilter::MetadataExchange(MetadataExchange {
            enable_discovery: true,
            ..
        })]
    ));
    assert_eq!(outbound.protocol, ProtocolSelection::UseDownstream);
    let names: Vec<String> = outbound.sds_secrets().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["default", "ROOTCA"]);
    let sds = &outbound.sds_secrets()[0];
    assert!(format!("{sds:?}").contains("sds-grpc"));
    // Stats are named after alt_stat_name, as in Envoy.
    outbound.stats.upstream_rq_total().inc();
    assert_eq!(
        store.counter_value(
            "cluster.outbound|8000||httpbin.default.svc.cluster.local;.upstream_rq_total"
        ),
        Some(1)
    );

    let subset = by_name("outbound|8000|v1|httpbin.default.svc.cluster.local");
    assert_eq!(
        subset.protocol,
        ProtocolSelection::Fixed(UpstreamProtocol::Http2)
    );
    assert!(subset.lb_settings.locality_weighted);
    assert_eq!(subset.pool.max_requests_per_connection, Some(1));
    assert_eq!(
        by_name("PassthroughCluster").discovery,
        Discovery::OriginalDst
    );
    assert!(by_name("BlackHoleCluster").priority_set().is_empty());
    assert!(
        by_name("InboundPassthroughCluster")
            .sds_secrets()
            .is_empty()
    );
    assert!(matches!(
        by_name("outbound|443||www.example.com").discovery,
        Discovery::StrictDns(DnsSettings {
            family: DnsFamily::V4Only,
            ..
        })
    ));

    let counted = |what: &str| {
        store
            .counter_value(&format!("tern.config.not_enforced.{what}"))
            .unwrap_or(0)
    };
    assert_eq!(counted("envoy.transport_sockets.tls.upstream"), 0);
    assert_eq!(counted("istio.metadata_exchange.upstream"), 4);
    assert_eq!(counted("cluster.outlier_detection"), 1);
    assert_eq!(counted("cluster.upstream_bind_config"), 2);
    assert_eq!(counted("cluster.circuit_breakers"), 1);
    assert_eq!(counted("cluster.original_dst_options"), 1);
    assert_eq!(counted("cluster.dns_options"), 1);
}

#[test]
fn pilot_agent_bootstrap_clusters_compile() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/istio/bootstrap_default_golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let b = crate::config::parse_bootstrap(&text, true, false).unwrap();
    let store = Store::new();
    let clusters = b.static_resources.unwrap().clusters;
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["prometheus_stats", "agent", "sds-grpc", "xds-grpc"]);
    for c in &clusters {
        Cluster::compile(c, &store).unwrap_or_else(|e| panic!("{e}"));
    }
    // xds-grpc: explicit connection limits, HIGH priority thresholds and TCP keepalive.
    assert_eq!(
        store.counter_value("tern.config.not_enforced.cluster.circuit_breakers"),
        Some(1)
    );
    assert_eq!(
        store.counter_value("tern.config.not_enforced.cluster.upstream_connection_options"),
        Some(1)
    );
}

#[test]
fn unknown_upstream_filters_and_sockets_are_errors() {
    let store = Store::new();
    let mut c = istio_clusters().remove(3); // BlackHoleCluster
    c["filters"] = json!([{
        "name": "envoy.filters.network.upstream.acme",
        "typed_config": {
            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
            "type_url": "type.googleapis.com/acme.Upstream"
        }
    }]);
    let e = compile_json(&c, &store).unwrap_err().to_string();
    assert!(
        e.contains("envoy.filters.network.upstream.acme") && e.contains("acme.Upstream"),
        "{e}"
    );
    let mut c = istio_clusters().remove(3);
    c["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
        }
    });
    let e = compile_json(&c, &store).unwrap_err().to_string();
    assert!(e.contains("DownstreamTlsContext"), "{e}");
    let mut c = istio_clusters().remove(3);
    c["transport_socket_matches"] = json!([{"name": "no-socket", "match": {}}]);
    assert!(compile_json(&c, &store).is_err());
}

#[test]
fn membership_stats_follow_the_host_set() {
    let store = Store::new();
    let c = compile_json(
        &json!({"name": "eds", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}}}),
        &store,
    )
    .unwrap();
    assert_eq!(store.gauge_value("cluster.eds.membership_total"), Some(0));
    let host = |port: u16, health: &str| {
        json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}},
               "health_status": health})
    };
    let cla = |hosts: Vec<Value>| {
        let cla: envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment =
            crate::config::resource_from_json(
                &json!({"cluster_name": "eds", "endpoints": [{"lb_endpoints": hosts}]}),
                true,
            )
            .unwrap();
        load_assignment::priority_set_from_assignment(&cla, false).unwrap()
    };
    c.set_hosts(cla(vec![
        host(1, "HEALTHY"),
        host(2, "DEGRADED"),
        host(3, "UNHEALTHY"),
    ]));
    let g = |n: &str| store.gauge_value(&format!("cluster.eds.{n}"));
    assert_eq!(
        (
            g("membership_total"),
            g("membership_healthy"),
            g("membership_degraded")
        ),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(
        store.counter_value("cluster.eds.membership_change"),
        Some(1)
    );
    // The same hosts again (an EDS push with only a version change): no membership change.
    c.set_hosts(cla(vec![
        host(1, "HEALTHY"),
        host(2, "DEGRADED"),
        host(3, "UNHEALTHY"),
    ]));
    assert_eq!(
        store.counter_value("cluster.eds.membership_change"),
        Some(1)
    );
    c.set_hosts(cla(vec![host(1, "HEALTHY")]));
    assert_eq!(
        store.counter_value("cluster.eds.membership_change"),
        Some(2)
    );
    assert_eq!(g("membership_total"), Some(1));
}
