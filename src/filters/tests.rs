use super::*;
use crate::config::istio::typed_struct::{UdpaTypedStruct, XdsTypedStruct};
use crate::config::istio::{connect_authority, stats as istio_stats};
use crate::stats::istio::ListenerDirection;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3 as cors_pb;
use envoy_types::pb::envoy::extensions::filters::http::router::v3 as router_pb;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3 as http_wasm_pb;
use envoy_types::pb::envoy::extensions::wasm::v3 as wasm_v3;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::Message;

fn any<T: Message + Name>(m: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: m.encode_to_vec(),
    }
}

fn udpa(type_url: &str, fields: &[(&str, Value)]) -> Any {
    any(&UdpaTypedStruct {
        type_url: type_url.into(),
        value: Some(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }),
    })
}

fn http_filter(name: &str, typed: Any) -> hcm_pb::HttpFilter {
    hcm_pb::HttpFilter {
        name: name.into(),
        config_type: Some(hcm_pb::http_filter::ConfigType::TypedConfig(typed)),
        ..Default::default()
    }
}

fn router() -> hcm_pb::HttpFilter {
    http_filter(
        "envoy.filters.http.router",
        any(&router_pb::Router::default()),
    )
}

fn hcm(filters: Vec<hcm_pb::HttpFilter>) -> Any {
    any(&hcm_pb::HttpConnectionManager {
        stat_prefix: "test".into(),
        route_specifier: Some(
            hcm_pb::http_connection_manager::RouteSpecifier::RouteConfig(
                route_pb::RouteConfiguration::default(),
            ),
        ),
        http_filters: filters,
        ..Default::default()
    })
}

fn network(name: &str, typed: Any) -> listener_pb::Filter {
    listener_pb::Filter {
        name: name.into(),
        config_type: Some(listener_pb::filter::ConfigType::TypedConfig(typed)),
    }
}

fn tcp_proxy() -> listener_pb::Filter {
    network(
        "envoy.filters.network.tcp_proxy",
        any(&tcp_pb::TcpProxy {
            stat_prefix: "t".into(),
            cluster_specifier: Some(tcp_pb::tcp_proxy::ClusterSpecifier::Cluster("c".into())),
            ..Default::default()
        }),
    )
}

fn compile_http(filters: Vec<hcm_pb::HttpFilter>, store: &Store) -> Result<HcmConfig, String> {
    HcmConfig::compile(&hcm(filters), store).map_err(|e| e.to_string())
}

fn wasm(runtime: &str, fail_open: bool) -> Any {
    use core_pb::async_data_source::Specifier;
    any(&http_wasm_pb::Wasm {
        config: Some(wasm_v3::PluginConfig {
            name: "authz".into(),
            vm: Some(wasm_v3::plugin_config::Vm::VmConfig(wasm_v3::VmConfig {
                runtime: runtime.into(),
                code: Some(core_pb::AsyncDataSource {
                    specifier: Some(Specifier::Remote(Default::default())),
                }),
                ..Default::default()
            })),
            failure_policy: if fail_open {
                wasm_v3::FailurePolicy::FailOpen as i32
            } else {
                wasm_v3::FailurePolicy::Unspecified as i32
            },
            ..Default::default()
        }),
    })
}

#[test]
fn istio_http_filters_compile_and_unenforced_ones_are_counted() {
    let store = Store::new();
    let h = compile_http(
        vec![
            http_filter("istio.stats", any(&istio_stats::PluginConfig::default())),
            http_filter("envoy.filters.http.cors", any(&cors_pb::Cors::default())),
            router(),
        ],
        &store,
    )
    .unwrap();
    assert_eq!(h.http_filters.len(), 3);
    assert!(matches!(h.http_filters[0], HttpFilterConfig::IstioStats(_)));
    assert!(matches!(h.http_filters[2], HttpFilterConfig::Router(_)));
    // The stats filter is enforced: it observes every stream of the connection manager.
    assert_eq!(h.observers.len(), 1);
    assert_eq!(
        store.counter_value("tern.config.not_enforced.istio.stats.http"),
        None
    );
    assert_eq!(
        store.counter_value("tern.config.not_enforced.envoy.filters.http.cors"),
        Some(1)
    );
}

#[test]
fn unknown_http_filters_are_errors_unless_optional() {
    let store = Store::new();
    let lua = Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua".into(),
        value: vec![],
    };
    let e = compile_http(vec![http_filter("my.lua", lua.clone()), router()], &store).unwrap_err();
    assert!(
        e.contains("my.lua") && e.contains("envoy.extensions.filters.http.lua.v3.Lua"),
        "{e}"
    );
    let mut optional = http_filter("my.lua", lua);
    optional.is_optional = true;
    let h = compile_http(vec![optional, router()], &store).unwrap();
    assert_eq!(h.http_filters.len(), 1);
    assert_eq!(store.counter_value("tern.config.skipped.my.lua"), Some(1));
    // The same unknown type in a TypedStruct is named by its inner type.
    let wrapped = udpa("type.googleapis.com/acme.Filter", &[]);
    let e = compile_http(vec![http_filter("acme", wrapped), router()], &store).unwrap_err();
    assert!(
        e.contains("acme") && e.contains("type.googleapis.com/acme.Filter"),
        "{e}"
    );
}

#[test]
fn wasm_filters_on_a_real_vm_need_fail_open() {
    let store = Store::new();
    let e = compile_http(
        vec![
            http_filter("acme.authz", wasm("envoy.wasm.runtime.v8", false)),
            router(),
        ],
        &store,
    )
    .unwrap_err();
    assert!(
        e.contains("acme.authz")
            && e.contains("envoy.extensions.filters.http.wasm.v3.Wasm")
            && e.contains("envoy.wasm.runtime.v8"),
        "{e}"
    );
    let h = compile_http(
        vec![
            http_filter("acme.authz", wasm("envoy.wasm.runtime.v8", true)),
            router(),
        ],
        &store,
    )
    .unwrap();
    assert_eq!(h.http_filters.len(), 1);
    let mut optional = http_filter("acme.authz", wasm("envoy.wasm.runtime.wamr", false));
    optional.is_optional = true;
    assert!(compile_http(vec![optional, router()], &store).is_ok());
    assert_eq!(
        store.counter_value("tern.config.skipped.acme.authz"),
        Some(2)
    );
}

#[test]
fn malformed_typed_configs_are_errors_naming_the_filter() {
    let store = Store::new();
    let bad = Any {
        type_url: cors_pb::Cors::type_url(),
        value: vec![0xff, 0xff, 0xff],
    };
    let e = compile_http(
        vec![http_filter("envoy.filters.http.cors", bad), router()],
        &store,
    )
    .unwrap_err();
    assert!(
        e.contains("envoy.filters.http.cors")
            && e.contains("envoy.extensions.filters.http.cors.v3.Cors"),
        "{e}"
    );
    // A TypedStruct whose value does not fit the type.
    let bad = udpa(
        &connect_authority::Config::type_url(),
        &[(
            "port",
            Value {
                kind: Some(Kind::StringValue("not a number".into())),
            },
        )],
    );
    let e = compile_http(
        vec![http_filter("connect_authority", bad), router()],
        &store,
    )
    .unwrap_err();
    assert!(
        e.contains("connect_authority") && e.contains("io.istio.http.connect_authority.Config"),
        "{e}"
    );
    let bad = Any {
        type_url: rbac_pb::Rbac::type_url(),
        value: vec![0x0a, 0x09],
    };
    let e = compile_network_filters(
        &[network("envoy.filters.network.rbac", bad), tcp_proxy()],
        &store,
        ListenerDirection::Unspecified,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("envoy.filters.network.rbac") && e.contains("network.rbac.v3.RBAC"),
        "{e}"
    );
}

#[test]
fn typed_struct_and_plain_any_are_the_same_filter() {
    let store = Store::new();
    let port = Value {
        kind: Some(Kind::NumberValue(15008.0)),
    };
    let enabled = Value {
        kind: Some(Kind::BoolValue(true)),
    };
    let plain = connect_authority::Config {
        enabled: true,
        port: 15008,
    };
    let forms = [
        any(&plain),
        udpa(
            &connect_authority::Config::type_url(),
            &[("port", port.clone()), ("enabled", enabled.clone())],
        ),
        any(&XdsTypedStruct {
            type_url: connect_authority::Config::type_url(),
            value: Some(Struct {
                fields: [("port".to_string(), port), ("enabled".to_string(), enabled)]
                    .into_iter()
                    .collect(),
            }),
        }),
    ];
    for form in forms {
        let h = compile_http(
            vec![http_filter("connect_authority", form), router()],
            &store,
        )
        .unwrap();
        match &h.http_filters[0] {
            HttpFilterConfig::ConnectAuthority(c) => assert_eq!(c, &plain),
            other => panic!("{other:?}"),
        }
    }
    // Network: istio_authn as Istio sends it (an empty TypedStruct) and as a plain Any.
    for form in [
        udpa(&authn::Config::type_url(), &[]),
        any(&authn::Config::default()),
    ] {
        let f = compile_network_filters(
            &[network("istio_authn", form), tcp_proxy()],
            &store,
            ListenerDirection::Unspecified,
        )
        .unwrap();
        assert!(
            matches!(&f.filters[..], [NonTerminalFilterConfig::IstioAuthn(c)] if *c == authn::Config::default())
        );
    }
    assert_eq!(
        store.counter_value("tern.config.not_enforced.istio_authn"),
        Some(2)
    );
}

#[test]
fn network_filter_order_and_unknown_types() {
    let store = Store::new();
    let mx = network(
        "istio.metadata_exchange",
        any(&metadata_exchange::MetadataExchange {
            protocol: "istio-peer-exchange".into(),
            ..Default::default()
        }),
    );
    let stats = network("istio.stats", any(&istio_stats::PluginConfig::default()));
    let f = compile_network_filters(
        &[mx.clone(), stats, tcp_proxy()],
        &store,
        ListenerDirection::Unspecified,
    )
    .unwrap();
    assert_eq!(f.filters.len(), 2);
    assert!(matches!(f.terminal, NetworkFilterConfig::TcpProxy(_)));

    let e = compile_network_filters(
        &[tcp_proxy(), mx.clone()],
        &store,
        ListenerDirection::Unspecified,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("must be the last"), "{e}");
    let e = compile_network_filters(&[mx], &store, ListenerDirection::Unspecified)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not terminal"), "{e}");

    let mongo = network(
        "envoy.filters.network.mongo_proxy",
        Any {
            type_url:
                "type.googleapis.com/envoy.extensions.filters.network.mongo_proxy.v3.MongoProxy"
                    .into(),
            value: vec![],
        },
    );
    for filters in [vec![mongo.clone(), tcp_proxy()], vec![mongo]] {
        let e = compile_network_filters(&filters, &store, ListenerDirection::Unspecified)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("envoy.filters.network.mongo_proxy") && e.contains("v3.MongoProxy"),
            "{e}"
        );
    }
    // A terminal filter wrapped in a TypedStruct is still terminal.
    let wrapped = network(
        "tcp",
        udpa(
            &tcp_pb::TcpProxy::type_url(),
            &[
                (
                    "stat_prefix",
                    Value {
                        kind: Some(Kind::StringValue("t".into())),
                    },
                ),
                (
                    "cluster",
                    Value {
                        kind: Some(Kind::StringValue("c".into())),
                    },
                ),
            ],
        ),
    );
    assert!(compile_network_filters(&[wrapped], &store, ListenerDirection::Unspecified).is_ok());
}
