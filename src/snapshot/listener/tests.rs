use super::*;
use crate::filters::HttpFilterConfig;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3 as http_inspector_pb;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3 as original_dst_pb;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3 as tls_inspector_pb;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp_pb;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use std::collections::BTreeMap;
use std::path::Path;

/// A resource from its proto3 JSON form through the repository's descriptor pool, unknown
/// fields rejected: every Istio type must be known to `proto/`.
fn from_json<T: Message + Name + Default>(json: &serde_json::Value) -> T {
    crate::config::resource_from_json(json, true).unwrap_or_else(|e| panic!("{e}"))
}

/// The listeners of Istio's sidecar `/config_dump` (ListenersConfigDump).
fn istio_sidecar_listeners() -> Vec<listener_pb::Listener> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/istio/sidecar_config_dump_listeners.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dump: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for config in dump["configs"].as_array().unwrap() {
        for l in config["static_listeners"].as_array().into_iter().flatten() {
            out.push(from_json(&l["listener"]));
        }
        for l in config["dynamic_listeners"].as_array().into_iter().flatten() {
            out.push(from_json(&l["active_state"]["listener"]));
        }
    }
    out
}

#[test]
fn every_istio_sidecar_listener_compiles() {
    let listeners = istio_sidecar_listeners();
    assert_eq!(listeners.len(), 29);
    let store = Store::new();
    let mut listener_filters = BTreeMap::<&str, usize>::new();
    let mut network = BTreeMap::<String, usize>::new();
    let mut http = BTreeMap::<String, usize>::new();
    let (mut tls_chains, mut secrets) = (0, Vec::new());
    for l in &listeners {
        let c = compile_listener(l, &store).unwrap_or_else(|e| panic!("{e}"));
        for f in &c.listener_filters {
            let kind = match f.config {
                ListenerFilterConfig::TlsInspector(_) => "tls_inspector",
                ListenerFilterConfig::HttpInspector(_) => "http_inspector",
                ListenerFilterConfig::OriginalDst(_) => "original_dst",
                ListenerFilterConfig::SetInternalDstAddress(_) => "set_dst_address",
            };
            *listener_filters.entry(kind).or_default() += 1;
        }
        for chain in c.chains.iter().chain(c.default_chain.as_ref()) {
            tls_chains += usize::from(chain.requires_tls());
            for f in &chain.filters {
                let kind = format!("{f:?}");
                let kind = kind.split('(').next().unwrap_or_default().to_owned();
                *network.entry(kind).or_default() += 1;
            }
            if let NetworkFilter::Hcm(h) = &chain.network {
                for f in &h.config.http_filters {
                    let kind = format!("{f:?}");
                    let kind = kind.split('(').next().unwrap_or_default().to_owned();
                    *http.entry(kind).or_default() += 1;
                }
                assert!(matches!(
                    h.config.http_filters.last(),
                    Some(HttpFilterConfig::Router(_))
                ));
            }
        }
        for s in c.sds_secrets() {
            if !secrets.contains(&s.name) {
                secrets.push(s.name);
            }
        }
    }
    eprintln!("listener filters {listener_filters:?}");
    eprintln!("network filters {network:?}");
    eprintln!("http filters {http:?}");
    eprintln!("tls chains {tls_chains}, secrets {secrets:?}");
    for kind in [
        "tls_inspector",
        "http_inspector",
        "original_dst",
        "set_dst_address",
    ] {
        assert!(
            listener_filters.get(kind).copied().unwrap_or(0) > 0,
            "{kind}"
        );
    }
    for kind in ["MetadataExchange", "IstioStats", "IstioAuthn", "Rbac"] {
        assert!(network.get(kind).copied().unwrap_or(0) > 0, "{kind}");
    }
    for kind in [
        "IstioStats",
        "PeerExchange",
        "Alpn",
        "ConnectAuthority",
        "ConnectBaggage",
        "Cors",
        "Fault",
        "GrpcStats",
        "Rbac",
        "ExtAuthz",
    ] {
        assert!(http.get(kind).copied().unwrap_or(0) > 0, "{kind}");
    }
    assert!(tls_chains > 0);
    secrets.sort();
    assert_eq!(secrets, ["ROOTCA", "default"]);
    let not_enforced: Vec<(String, u64)> = store
        .counters()
        .into_iter()
        .filter(|(k, _)| k.starts_with(crate::stats::NOT_ENFORCED_PREFIX))
        .collect();
    eprintln!("{not_enforced:#?}");
    // TLS is enforced now: the Istio inbound chains compile into server contexts.
    assert!(
        !not_enforced
            .iter()
            .any(|(k, _)| k.contains(".envoy.transport_sockets.tls"))
    );
}

fn tcp_chain() -> listener_pb::FilterChain {
    listener_pb::FilterChain {
        filters: vec![listener_pb::Filter {
            name: "envoy.filters.network.tcp_proxy".into(),
            config_type: Some(listener_pb::filter::ConfigType::TypedConfig(Any {
                type_url: tcp_pb::TcpProxy::type_url(),
                value: tcp_pb::TcpProxy {
                    stat_prefix: "t".into(),
                    cluster_specifier: Some(tcp_pb::tcp_proxy::ClusterSpecifier::Cluster(
                        "c".into(),
                    )),
                    ..Default::default()
                }
                .encode_to_vec(),
            })),
        }],
        ..Default::default()
    }
}

fn listener(name: &str) -> listener_pb::Listener {
    listener_pb::Listener {
        name: name.into(),
        address: Some(core_pb::Address {
            address: Some(core_pb::address::Address::SocketAddress(
                core_pb::SocketAddress {
                    address: "127.0.0.1".into(),
                    port_specifier: Some(core_pb::socket_address::PortSpecifier::PortValue(0)),
                    ..Default::default()
                },
            )),
        }),
        filter_chains: vec![tcp_chain()],
        ..Default::default()
    }
}

fn listener_filter(name: &str, type_url: &str) -> listener_pb::ListenerFilter {
    listener_pb::ListenerFilter {
        name: name.into(),
        config_type: Some(listener_pb::listener_filter::ConfigType::TypedConfig(Any {
            type_url: type_url.into(),
            value: vec![],
        })),
        ..Default::default()
    }
}

#[test]
fn listener_filters_are_decoded_or_rejected() {
    let store = Store::new();
    let mut l = listener("l");
    l.listener_filters = vec![
        listener_filter(
            "envoy.filters.listener.original_dst",
            &original_dst_pb::OriginalDst::type_url(),
        ),
        listener_filter(
            "envoy.filters.listener.tls_inspector",
            &tls_inspector_pb::TlsInspector::type_url(),
        ),
    ];
    let c = compile_listener(&l, &store).unwrap();
    assert_eq!(c.listener_filters.len(), 2);
    assert_eq!(
        store.counter_value("tern.config.not_enforced.envoy.filters.listener.original_dst"),
        Some(1)
    );
    let proxy_protocol =
        "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol";
    l.listener_filters = vec![listener_filter(
        "envoy.filters.listener.proxy_protocol",
        proxy_protocol,
    )];
    let e = compile_listener(&l, &store).unwrap_err().to_string();
    assert!(
        e.contains("envoy.filters.listener.proxy_protocol") && e.contains(proxy_protocol),
        "{e}"
    );
    l.listener_filters = vec![listener_pb::ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_pb::listener_filter::ConfigType::TypedConfig(Any {
            type_url: tls_inspector_pb::TlsInspector::type_url(),
            value: vec![0xff, 0xff],
        })),
        ..Default::default()
    }];
    let e = compile_listener(&l, &store).unwrap_err().to_string();
    assert!(e.contains("envoy.filters.listener.tls_inspector"), "{e}");
}

#[test]
fn unnamed_and_internal_listeners() {
    let store = Store::new();
    let a = compile_listener(&listener(""), &store).unwrap();
    let b = compile_listener(&listener(""), &store).unwrap();
    assert_eq!(a.name.len(), 36);
    assert_ne!(a.name, b.name);

    let mut internal = listener("main_internal");
    internal.address = None;
    internal.listener_specifier = Some(listener_pb::listener::ListenerSpecifier::InternalListener(
        Default::default(),
    ));
    let c = compile_listener(&internal, &store).unwrap();
    assert_eq!(c.address, Address::Internal("main_internal".into()));
    assert!(!c.bind_to_port);
    internal.address = listener("x").address;
    assert!(compile_listener(&internal, &store).is_err());
    let mut none = listener("none");
    none.address = None;
    assert!(compile_listener(&none, &store).is_err());
}

fn tls_inspector_filter(c: &tls_inspector_pb::TlsInspector) -> listener_pb::ListenerFilter {
    listener_pb::ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_pb::listener_filter::ConfigType::TypedConfig(Any {
            type_url: tls_inspector_pb::TlsInspector::type_url(),
            value: c.encode_to_vec(),
        })),
        ..Default::default()
    }
}

#[test]
fn inspectors_compile_with_limits_and_root_stats() {
    use envoy_types::pb::google::protobuf::UInt32Value;
    let store = Store::new();
    let mut l = listener("l");
    l.listener_filters = vec![
        tls_inspector_filter(&Default::default()),
        listener_filter(
            "envoy.filters.listener.http_inspector",
            &http_inspector_pb::HttpInspector::type_url(),
        ),
    ];
    let c = compile_listener(&l, &store).unwrap();
    let ListenerFilterConfig::TlsInspector(t) = &c.listener_filters[0].config else {
        panic!("{:?}", c.listener_filters[0]);
    };
    assert_eq!(t.max_client_hello_size, 16 * 1024);
    assert_eq!(t.initial_read_buffer_size, 16 * 1024);
    assert!(!t.close_on_parse_error);
    assert!(matches!(
        c.listener_filters[1].config,
        ListenerFilterConfig::HttpInspector(_)
    ));
    // Enforced filters are no longer counted as not enforced; their stats are Envoy's, in
    // the root scope.
    assert_eq!(
        store.counter_value("tern.config.not_enforced.envoy.filters.listener.tls_inspector"),
        None
    );
    assert_eq!(store.counter_value("tls_inspector.tls_found"), Some(0));
    assert_eq!(store.counter_value("http_inspector.http11_found"), Some(0));
    assert_eq!(
        store.counter_value("listener.127.0.0.1_0.downstream_pre_cx_timeout"),
        Some(0)
    );

    let with = |max: Option<u32>, initial: Option<u32>| {
        let mut l = listener("l");
        l.listener_filters = vec![tls_inspector_filter(&tls_inspector_pb::TlsInspector {
            max_client_hello_size: max.map(|value| UInt32Value { value }),
            initial_read_buffer_size: initial.map(|value| UInt32Value { value }),
            ..Default::default()
        })];
        compile_listener(&l, &store).map(|c| match &c.listener_filters[0].config {
            ListenerFilterConfig::TlsInspector(t) => {
                (t.max_client_hello_size, t.initial_read_buffer_size)
            }
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(with(Some(1000), None).unwrap(), (1000, 1000));
    assert_eq!(with(Some(1000), Some(4096)).unwrap(), (1000, 1000));
    assert_eq!(with(None, Some(512)).unwrap(), (16384, 512));
    let e = with(Some(16385), None).unwrap_err().to_string();
    assert!(e.contains("max_client_hello_size"), "{e}");
    assert!(with(Some(255), None).is_err());
    assert!(with(None, Some(255)).is_err());
    assert!(with(None, Some(65537)).is_err());
}

#[test]
fn filter_disabled_predicates() {
    use envoy_types::pb::envoy::r#type::v3::Int32Range;
    use listener_pb::ListenerFilterChainMatchPredicate as P;
    use listener_pb::listener_filter_chain_match_predicate::{MatchSet, Rule};
    let port = |start, end| P {
        rule: Some(Rule::DestinationPortRange(Int32Range { start, end })),
    };
    let store = Store::new();
    let compile = |p: P| {
        let mut f = tls_inspector_filter(&Default::default());
        f.filter_disabled = Some(p);
        let mut l = listener("l");
        l.listener_filters = vec![f];
        compile_listener(&l, &store).map(|c| c.listener_filters[0].clone())
    };
    let f = compile(port(80, 81)).unwrap();
    assert!(!f.enabled_for(Some(80)));
    assert!(f.enabled_for(Some(81)));
    assert!(f.enabled_for(None));
    let not = compile(P {
        rule: Some(Rule::NotMatch(Box::new(port(80, 90)))),
    })
    .unwrap();
    assert!(not.enabled_for(Some(85)) && !not.enabled_for(Some(443)));
    let or = compile(P {
        rule: Some(Rule::OrMatch(MatchSet {
            rules: vec![port(80, 81), port(443, 444)],
        })),
    })
    .unwrap();
    assert!(!or.enabled_for(Some(443)) && or.enabled_for(Some(8080)));
    let and = compile(P {
        rule: Some(Rule::AndMatch(MatchSet {
            rules: vec![port(1, 1000), port(500, 2000)],
        })),
    })
    .unwrap();
    assert!(!and.enabled_for(Some(600)) && and.enabled_for(Some(100)));
    let any = compile(P {
        rule: Some(Rule::AnyMatch(true)),
    })
    .unwrap();
    assert!(!any.enabled_for(Some(1)));
    for bad in [
        P { rule: None },
        P {
            rule: Some(Rule::AnyMatch(false)),
        },
        P {
            rule: Some(Rule::OrMatch(MatchSet {
                rules: vec![port(1, 2)],
            })),
        },
    ] {
        let e = compile(bad).unwrap_err().to_string();
        assert!(e.contains("filter_disabled"), "{e}");
    }
}
