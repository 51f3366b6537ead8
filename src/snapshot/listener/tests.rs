use super::*;
use crate::filters::HttpFilterConfig;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp_pb;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
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
            let kind = match f {
                ListenerFilter::TlsInspector(_) => "tls_inspector",
                ListenerFilter::HttpInspector(_) => "http_inspector",
                ListenerFilter::OriginalDst(_) => "original_dst",
                ListenerFilter::SetInternalDstAddress(_) => "set_dst_address",
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
        "Wasm",
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
