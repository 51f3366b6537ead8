//! Writes the seed corpora in `fuzz/corpus/`: real resources (the quickstart example and
//! Istio's bootstrap and sidecar listeners), and small hand-written ones that reach the
//! branches the real ones do not. Run it after changing a seed:
//! `cargo test --lib fuzz_api::seeds -- --ignored`.

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use prost::{Message, Name};
use prost_reflect::prost_types::{DescriptorProto, FileDescriptorProto};
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};
use std::path::{Path, PathBuf};

const MAX_SEED: usize = 64 * 1024;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn shared(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/istio")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A resource from its proto3 JSON form (snake_case, `@type` in `Any`; a config dump's
/// resources carry their own `@type` too). Unknown fields are an error unless `lenient`
/// (for the placeholders of `with_placeholders`).
fn from_json<T: Message + Name + Default>(
    pool: &DescriptorPool,
    json: &serde_json::Value,
    lenient: bool,
) -> T {
    let desc = pool.get_message_by_name(&T::full_name()).unwrap();
    let mut json = json.clone();
    if let Some(m) = json.as_object_mut() {
        m.remove("@type");
    }
    let opts = DeserializeOptions::new().deny_unknown_fields(!lenient);
    let dynamic = DynamicMessage::deserialize_with_options(desc, &json, &opts)
        .unwrap_or_else(|e| panic!("{e}: {json}"));
    T::decode(dynamic.encode_to_vec().as_slice()).unwrap()
}

/// `pool` plus an empty message for each `@type` in `json` that it does not know (Istio's own
/// filter configs, such as `stats.PluginConfig`), so a config dump that names them can be
/// read: their `Any` keeps its type URL and loses its content, which tern does not read.
fn with_placeholders(mut pool: DescriptorPool, json: &serde_json::Value) -> DescriptorPool {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(t)) = m.get("@type") {
                    out.push(t.rsplit('/').next().unwrap().to_owned());
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    walk(json, &mut names);
    names.sort();
    names.dedup();
    for name in names {
        if pool.get_message_by_name(&name).is_some() {
            continue;
        }
        let (package, message) = name.rsplit_once('.').unwrap_or(("", &name));
        pool.add_file_descriptor_proto(FileDescriptorProto {
            name: Some(format!("placeholder/{name}.proto")),
            package: Some(package.to_owned()),
            message_type: vec![DescriptorProto {
                name: Some(message.to_owned()),
                ..Default::default()
            }],
            syntax: Some("proto3".to_owned()),
            ..Default::default()
        })
        .unwrap();
    }
    pool
}

fn from_yaml<T: Message + Name + Default>(pool: &DescriptorPool, yaml: &str) -> T {
    let value: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    from_json(pool, &value, false)
}

/// Proto3 JSON of a message, as `/config_dump` prints it.
fn to_json<T: Message + Name>(pool: &DescriptorPool, m: &T) -> String {
    let desc = pool.get_message_by_name(&T::full_name()).unwrap();
    let dynamic = DynamicMessage::decode(desc, m.encode_to_vec().as_slice()).unwrap();
    let mut ser = serde_json::Serializer::new(Vec::new());
    dynamic
        .serialize_with_options(
            &mut ser,
            &SerializeOptions::new().use_proto_field_name(true),
        )
        .unwrap();
    String::from_utf8(ser.into_inner()).unwrap()
}

/// Replace the seeds of `target` with `seeds` (name, bytes); the inputs that once crashed it
/// (`crash_*`) stay.
fn write(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = corpus(target);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("crash_")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert!(seeds.len() <= 32, "{target}: {} seeds", seeds.len());
    for (name, bytes) in seeds {
        assert!(
            bytes.len() < MAX_SEED,
            "{target}/{name}: {} bytes",
            bytes.len()
        );
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn inline_routes(l: &listener_pb::Listener) -> Vec<route_pb::RouteConfiguration> {
    let mut out = Vec::new();
    for chain in l
        .filter_chains
        .iter()
        .chain(l.default_filter_chain.as_ref())
    {
        for f in &chain.filters {
            use listener_pb::filter::ConfigType;
            let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if any.type_url != hcm_pb::HttpConnectionManager::type_url() {
                continue;
            }
            let hcm = hcm_pb::HttpConnectionManager::decode(any.value.as_slice()).unwrap();
            if let Some(hcm_pb::http_connection_manager::RouteSpecifier::RouteConfig(rc)) =
                hcm.route_specifier
            {
                out.push(rc);
            }
        }
    }
    out
}

/// What tern runs of an Istio listener: no listener filters, no TLS, the terminal network
/// filter only, the router as the only HTTP filter, and a name and a bound address (an
/// internal listener becomes a plain one). Istio's full listeners compile too, but these
/// smaller ones take the fuzzer to the chain matcher, the HCM and the route tables sooner.
fn tern_subset(l: &listener_pb::Listener, name: &str) -> listener_pb::Listener {
    let mut l = l.clone();
    l.name = name.to_owned();
    l.listener_filters.clear();
    if l.address.is_none() {
        l.listener_specifier = None;
        use envoy_types::pb::envoy::config::core::v3 as core_pb;
        l.address = Some(core_pb::Address {
            address: Some(core_pb::address::Address::SocketAddress(
                core_pb::SocketAddress {
                    address: "127.0.0.1".to_owned(),
                    port_specifier: Some(core_pb::socket_address::PortSpecifier::PortValue(0)),
                    ..Default::default()
                },
            )),
        });
    }
    for chain in l
        .filter_chains
        .iter_mut()
        .chain(l.default_filter_chain.as_mut())
    {
        chain.transport_socket = None;
        let last = chain.filters.pop();
        chain.filters = last.into_iter().collect();
        for f in &mut chain.filters {
            use listener_pb::filter::ConfigType;
            let Some(ConfigType::TypedConfig(any)) = &mut f.config_type else {
                continue;
            };
            if any.type_url != hcm_pb::HttpConnectionManager::type_url() {
                continue;
            }
            let mut hcm = hcm_pb::HttpConnectionManager::decode(any.value.as_slice()).unwrap();
            hcm.http_filters
                .retain(|f| f.name == "envoy.filters.http.router");
            any.value = hcm.encode_to_vec();
        }
    }
    l
}

const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");

const BOOTSTRAP_JSON: &str = r#"{
  "node": {"id": "sidecar~10.0.0.1~app.default~default.svc.cluster.local", "cluster": "app"},
  "admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 15000}}},
  "staticResources": {
    "clusters": [{
      "name": "web", "type": "STRICT_DNS", "connectTimeout": "0.250s",
      "lbPolicy": "ROUND_ROBIN", "dnsLookupFamily": "V4_ONLY",
      "loadAssignment": {"clusterName": "web", "endpoints": [{"lbEndpoints": [
        {"endpoint": {"address": {"socketAddress": {"address": "localhost", "portValue": 8080}}}}
      ]}]}
    }],
    "listeners": [{
      "name": "tcp", "address": {"socketAddress": {"address": "0.0.0.0", "portValue": 9000}},
      "filterChains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "statPrefix": "tcp", "cluster": "web"}}]}]
    }]
  }
}"#;

const BOOTSTRAP_YAML_ALIASES: &str = r#"
static_resources:
  clusters:
  - name: a
    connect_timeout: &timeout 1s
    load_assignment: &endpoints
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.0.1, port_value: 80 } } }
  - name: b
    connect_timeout: *timeout
    lb_policy: RING_HASH
    ring_hash_lb_config: { minimum_ring_size: 64, maximum_ring_size: 1024 }
    load_assignment: *endpoints
"#;

const BOOTSTRAP_UNKNOWN_FIELD: &str = r#"
static_resources:
  clusters:
  - name: a
    not_a_field: 1
    connect_timeout: 1s
"#;

const ROUTE_CONFIGS: &[(&str, &str)] = &[
    (
        "matchers",
        r#"
name: matchers
virtual_hosts:
- name: api
  domains: ["api.example.com", "*.example.com", "example.*", "*"]
  routes:
  - match:
      safe_regex: { regex: "^/v[0-9]+/items/([a-z]+)$" }
      headers:
      - name: x-fuzz
        string_match: { exact: "1" }
      - name: content-type
        string_match: { prefix: "application/grpc", ignore_case: true }
      - name: x-absent
        present_match: false
      query_parameters:
      - name: x
        string_match: { exact: "1" }
    route:
      cluster: items
      regex_rewrite:
        pattern: { regex: "^/v([0-9]+)/items/(.*)$" }
        substitution: "/items/\\2?version=\\1"
  - match: { path_separated_prefix: "/api", case_sensitive: false }
    route: { cluster: api, prefix_rewrite: "/", timeout: 0s, idle_timeout: 3s }
  - match:
      prefix: "/grpc"
      grpc: {}
      runtime_fraction:
        default_value: { numerator: 50, denominator: HUNDRED }
    route:
      cluster_header: x-cluster
  - match: { path: "/exact" }
    route:
      cluster: exact
      hash_policy:
      - header: { header_name: x-user }
      - cookie: { name: session, ttl: 10s }
      - connection_properties: { source_ip: true }
        terminal: true
      upgrade_configs:
      - upgrade_type: websocket
        enabled: true
"#,
    ),
    (
        "weighted",
        r#"
name: weighted
virtual_hosts:
- name: all
  domains: ["*"]
  retry_policy:
    retry_on: "5xx,reset,connect-failure,retriable-status-codes"
    num_retries: 3
    retriable_status_codes: [503]
    per_try_timeout: 1s
  routes:
  - match: { prefix: "/" }
    route:
      weighted_clusters:
        clusters:
        - name: v1
          weight: 90
          request_headers_to_add:
          - header: { key: x-version, value: v1 }
        - name: v2
          weight: 10
          host_rewrite_literal: v2.internal
      host_rewrite_literal: rewritten.example.com
      retry_policy: { retry_on: "gateway-error", num_retries: 1 }
    request_headers_to_add:
    - header: { key: x-start, value: "%START_TIME% %PROTOCOL% %REQ(x-fuzz)%" }
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
    request_headers_to_remove: ["x-secret"]
    response_headers_to_add:
    - header: { key: x-up, value: "%UPSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_PORT%" }
request_headers_to_add:
- header: { key: x-hostname, value: "%HOSTNAME%" }
internal_only_headers: ["x-internal"]
"#,
    ),
    (
        "redirects",
        r#"
name: redirects
virtual_hosts:
- name: tls
  domains: ["secure.example.com"]
  require_tls: ALL
  routes:
  - match: { prefix: "/" }
    redirect: { https_redirect: true, port_redirect: 8443 }
- name: other
  domains: ["*"]
  routes:
  - match: { prefix: "/old" }
    redirect: { prefix_rewrite: "/new", response_code: PERMANENT_REDIRECT, strip_query: true }
  - match: { safe_regex: { regex: "/r/(.*)" } }
    redirect:
      host_redirect: "example.org:81"
      regex_rewrite: { pattern: { regex: "/r/(.*)" }, substitution: "/\\1/\\1" }
  - match: { prefix: "/direct" }
    direct_response: { status: 503, body: { inline_string: "unavailable" } }
  - match: { prefix: "" }
    non_forwarding_action: {}
"#,
    ),
];

const CLUSTERS: &[(&str, &str)] = &[
    (
        "ring_hash_eds",
        r#"
name: outbound|80||reviews.default.svc.cluster.local
type: EDS
eds_cluster_config: { eds_config: { ads: {}, resource_api_version: V3 } }
connect_timeout: 10s
lb_policy: RING_HASH
ring_hash_lb_config: { minimum_ring_size: 1024 }
circuit_breakers:
  thresholds:
  - max_connections: 4294967295
    max_pending_requests: 4294967295
    max_requests: 4294967295
    max_retries: 4294967295
    track_remaining: true
common_lb_config: { locality_weighted_lb_config: {} }
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} }
    common_http_protocol_options: { idle_timeout: 3600s, max_requests_per_connection: 100 }
"#,
    ),
    (
        "original_dst",
        r#"
name: PassthroughCluster
type: ORIGINAL_DST
connect_timeout: 10s
original_dst_lb_config: { use_http_header: true }
"#,
    ),
    (
        "logical_dns_maglev",
        r#"
name: external
type: LOGICAL_DNS
dns_lookup_family: V6_ONLY
dns_refresh_rate: 5s
connect_timeout: 1s
lb_policy: MAGLEV
maglev_lb_config: { table_size: 65537 }
load_assignment:
  cluster_name: external
  endpoints:
  - locality: { region: r, zone: z }
    load_balancing_weight: 2
    lb_endpoints:
    - endpoint: { address: { socket_address: { address: example.com, port_value: 443 } } }
      load_balancing_weight: 3
      health_status: DRAINING
"#,
    ),
    (
        "least_request_outlier",
        r#"
name: lr
connect_timeout: 1s
lb_policy: LEAST_REQUEST
least_request_lb_config: { choice_count: 3 }
outlier_detection: { consecutive_5xx: 5, interval: 10s, base_ejection_time: 30s, max_ejection_percent: 100 }
health_checks:
- timeout: 1s
  interval: 5s
  unhealthy_threshold: 2
  healthy_threshold: 1
  http_health_check: { path: /healthz }
load_assignment:
  cluster_name: lr
  endpoints:
  - lb_endpoints:
    - endpoint: { address: { socket_address: { address: "::1", port_value: 8080 } } }
    - endpoint: { address: { pipe: { path: /tmp/lr.sock } } }
"#,
    ),
    (
        "load_balancing_policy",
        r#"
name: typed_lb
connect_timeout: 1s
load_balancing_policy:
  policies:
  - typed_extension_config:
      name: envoy.load_balancing_policies.round_robin
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin
        slow_start_config: { slow_start_window: 10s }
load_assignment:
  cluster_name: typed_lb
  endpoints:
  - lb_endpoints:
    - endpoint: { address: { socket_address: { address: 10.0.0.9, port_value: 9 } } }
"#,
    ),
];

const LISTENERS: &[(&str, &str)] = &[(
    "tcp_proxy_chain_match",
    r#"
name: chains
address: { socket_address: { address: "::", port_value: 15001, ipv4_compat: true } }
additional_addresses:
- address: { socket_address: { address: 0.0.0.0, port_value: 15001 } }
use_original_dst: true
filter_chains:
- filter_chain_match:
    destination_port: 8080
    prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }]
    source_prefix_ranges: [{ address_prefix: "fd00::", prefix_len: 7 }]
    transport_protocol: raw_buffer
  filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: t
      cluster: PassthroughCluster
      idle_timeout: 0s
- filter_chain_match:
    server_names: ["*.svc.cluster.local", "example.com"]
    application_protocols: ["h2"]
    transport_protocol: tls
  filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: w
      weighted_clusters: { clusters: [{ name: a, weight: 1 }, { name: b, weight: 3 }] }
default_filter_chain:
  filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: d
      cluster: BlackHoleCluster
"#,
)];

/// Request path seeds: a flags byte, then the request target, `Host` and
/// `x-forwarded-for`, one a line.
const REQUESTS: &[(&str, u8, &str)] = &[
    ("dots", 0b0000_0011, "/a/./b/../c//d?x=/../\nexample.com\n"),
    (
        "escape_root",
        0b0000_0001,
        "/../etc/passwd\nexample.com:80\n",
    ),
    (
        "trailing",
        0b0000_0011,
        "/a/b/..\n[::1]:8080\n10.0.0.3, 192.168.0.1",
    ),
    ("merge_only", 0b0000_0010, "//a///b//?q=//\nhost:8080\n"),
    (
        "absolute_form",
        0b0001_1101,
        "http://example.com:8080/x/%2e%2e/y\nignored\n1.2.3.4",
    ),
    (
        "xff_hops",
        0b1101_0000,
        "/\nh\n10.0.0.1,10.0.0.2, 10.0.0.3 ,bogus,::1",
    ),
    ("asterisk", 0b0000_0011, "*\nexample.com\n"),
    ("empty", 0b1111_1111, ""),
    ("non_ascii", 0b0000_0011, "/caf\u{e9}/./..\nh\u{f6}st:1\n"),
];

fn named<T: Message>(name: &str, m: &T) -> (String, Vec<u8>) {
    (name.replace(['|', '.', ':'], "_"), m.encode_to_vec())
}

/// Access log formats (flags byte: bit 0 JSON, bit 1 `omit_empty_values`): Istio's default
/// text and JSON formats, Envoy's default line, and operators the defaults do not use.
const ACCESS_LOG_FORMATS: &[(&str, u8, &str)] = &[
    ("bad_percent", 0, "100% %REQ(a?b?c)%"),
    (
        "envoy_default",
        2,
        "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n",
    ),
    (
        "istio_json",
        1,
        "{\"start_time\":\"%START_TIME%\",\"route_name\":\"%ROUTE_NAME%\",\"method\":\"%REQ(:METHOD)%\",\"path\":\"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\",\"protocol\":\"%PROTOCOL%\",\"response_code\":\"%RESPONSE_CODE%\",\"response_flags\":\"%RESPONSE_FLAGS%\",\"response_code_details\":\"%RESPONSE_CODE_DETAILS%\",\"connection_termination_details\":\"%CONNECTION_TERMINATION_DETAILS%\",\"bytes_received\":\"%BYTES_RECEIVED%\",\"bytes_sent\":\"%BYTES_SENT%\",\"duration\":\"%DURATION%\",\"upstream_service_time\":\"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%\",\"x_forwarded_for\":\"%REQ(X-FORWARDED-FOR)%\",\"user_agent\":\"%REQ(USER-AGENT)%\",\"request_id\":\"%REQ(X-REQUEST-ID)%\",\"authority\":\"%REQ(:AUTHORITY)%\",\"upstream_host\":\"%UPSTREAM_HOST%\",\"upstream_cluster\":\"%UPSTREAM_CLUSTER_RAW%\",\"upstream_local_address\":\"%UPSTREAM_LOCAL_ADDRESS%\",\"downstream_local_address\":\"%DOWNSTREAM_LOCAL_ADDRESS%\",\"downstream_remote_address\":\"%DOWNSTREAM_REMOTE_ADDRESS%\",\"requested_server_name\":\"%REQUESTED_SERVER_NAME%\",\"upstream_transport_failure_reason\":\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\"}",
    ),
    (
        "istio_text",
        0,
        "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n",
    ),
    (
        "json_nested",
        3,
        "{\"a\":{\"b\":[\"%REQ(user-agent):3%\",1,true,null]},\"c\":\"x %GRPC_STATUS(SNAKE_STRING)% %START_TIME(%s.%3f %E6S)%\"}",
    ),
    (
        "operators",
        0,
        "%REQ_WITHOUT_QUERY(:path)% %%%TRAILER(grpc-status?grpc-message):10% %UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DYNAMIC_METADATA(istio.mixer:status):4% %ENVIRONMENT(HOME)% %CEL(request.path)% %RESPONSE_FLAGS_LONG%",
    ),
];

#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing a seed"]
fn write_seed_corpora() {
    let pool = crate::config::pool();
    let quickstart: Bootstrap = from_yaml(&pool, QUICKSTART);
    let golden_text = shared("bootstrap_default_golden.json");
    let golden: Bootstrap = from_json(&pool, &serde_json::from_str(&golden_text).unwrap(), false);
    let dump: serde_json::Value =
        serde_json::from_str(&shared("sidecar_config_dump_listeners.json")).unwrap();
    let istio_pool = with_placeholders(pool.clone(), &dump);
    let mut istio_listeners: Vec<listener_pb::Listener> = Vec::new();
    for config in dump["configs"].as_array().unwrap() {
        for l in config["static_listeners"].as_array().into_iter().flatten() {
            istio_listeners.push(from_json(&istio_pool, &l["listener"], true));
        }
        for l in config["dynamic_listeners"].as_array().into_iter().flatten() {
            istio_listeners.push(from_json(&istio_pool, &l["active_state"]["listener"], true));
        }
    }

    // bootstrap_text
    let mut seeds = vec![
        ("quickstart.yaml".to_owned(), QUICKSTART.as_bytes().to_vec()),
        (
            "istio_golden.json".to_owned(),
            to_json(&pool, &golden).into_bytes(),
        ),
        (
            "strict_dns.json".to_owned(),
            BOOTSTRAP_JSON.as_bytes().to_vec(),
        ),
        (
            "aliases.yaml".to_owned(),
            BOOTSTRAP_YAML_ALIASES.as_bytes().to_vec(),
        ),
        (
            "unknown_field.yaml".to_owned(),
            BOOTSTRAP_UNKNOWN_FIELD.as_bytes().to_vec(),
        ),
        ("null.yaml".to_owned(), b"~".to_vec()),
    ];
    // The golden's clusters, and the subset of Istio's listeners that tern compiles.
    let mut with_istio = golden.clone();
    if let Some(sr) = &mut with_istio.static_resources {
        sr.listeners = ["virtualOutbound", "0.0.0.0_80", "main_internal"]
            .iter()
            .filter_map(|n| istio_listeners.iter().find(|l| l.name == *n))
            .map(|l| tern_subset(l, &l.name))
            .collect();
    }
    seeds.push((
        "istio_listeners.json".to_owned(),
        to_json(&istio_pool, &with_istio).into_bytes(),
    ));
    write("bootstrap_text", &seeds);

    // route_config_proto
    let mut seeds = Vec::new();
    let listeners = quickstart
        .static_resources
        .as_ref()
        .unwrap()
        .listeners
        .iter();
    for rc in listeners.chain(&istio_listeners).flat_map(inline_routes) {
        if seeds.len() < 8 {
            seeds.push(named(&format!("inline_{}", rc.name), &rc));
        }
    }
    for (name, yaml) in ROUTE_CONFIGS {
        seeds.push(named(
            name,
            &from_yaml::<route_pb::RouteConfiguration>(&pool, yaml),
        ));
    }
    write("route_config_proto", &seeds);

    // cluster_proto
    let mut seeds = Vec::new();
    let static_clusters = [&quickstart, &golden]
        .into_iter()
        .flat_map(|b| b.static_resources.as_ref().unwrap().clusters.iter());
    for c in static_clusters {
        seeds.push(named(&c.name, c));
    }
    for (name, yaml) in CLUSTERS {
        seeds.push(named(name, &from_yaml::<cluster_pb::Cluster>(&pool, yaml)));
    }
    write("cluster_proto", &seeds);

    // listener_proto
    let mut seeds = Vec::new();
    for l in quickstart
        .static_resources
        .as_ref()
        .unwrap()
        .listeners
        .iter()
    {
        seeds.push(named(&format!("quickstart_{}", l.name), l));
    }
    for (name, yaml) in LISTENERS {
        seeds.push(named(
            name,
            &from_yaml::<listener_pb::Listener>(&pool, yaml),
        ));
    }
    // One per kind: Istio's per-service outbound listeners differ only in address and cluster.
    let mut ports = std::collections::HashSet::new();
    for l in &istio_listeners {
        let name = if l.name.is_empty() {
            use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
            let port = match l.address.as_ref().and_then(|a| a.address.as_ref()) {
                Some(address::Address::SocketAddress(sa)) => match sa.port_specifier {
                    Some(socket_address::PortSpecifier::PortValue(p)) => p,
                    _ => 0,
                },
                _ => 0,
            };
            format!("static_{port}")
        } else {
            l.name.clone()
        };
        if let Some((_, port)) = name.rsplit_once('_')
            && !name.starts_with("static")
            && !ports.insert(port.to_owned())
        {
            continue;
        }
        seeds.push(named(&format!("istio_{name}"), l));
        if [
            "virtualInbound",
            "virtualOutbound",
            "0.0.0.0_80",
            "10.96.0.10_53",
            "static_15090",
        ]
        .contains(&name.as_str())
        {
            seeds.push(named(&format!("subset_{name}"), &tern_subset(l, &name)));
        }
    }
    write("listener_proto", &seeds);

    // request_path
    let seeds: Vec<(String, Vec<u8>)> = REQUESTS
        .iter()
        .map(|(name, flags, text)| {
            let mut bytes = vec![*flags];
            bytes.extend_from_slice(text.as_bytes());
            (name.to_string(), bytes)
        })
        .collect();
    write("request_path", &seeds);

    // access_log_format
    let seeds: Vec<(String, Vec<u8>)> = ACCESS_LOG_FORMATS
        .iter()
        .map(|(name, flags, text)| {
            let mut bytes = vec![*flags];
            bytes.extend_from_slice(text.as_bytes());
            (name.to_string(), bytes)
        })
        .collect();
    write("access_log_format", &seeds);

    write_listener_inspector_seeds();
    write_bolt_seeds();
    write_http1_response_seeds();
    write_http1_request_seeds();
}

/// Bolt v1 streams: a knobs byte (frame size limit 1 MiB, reads of 7 bytes: 3 * 7 + 2 = 23),
/// then frames as SOFARPC clients and servers write them.
#[test]
#[ignore = "writes fuzz/corpus/bolt_codec; run by hand after changing a seed"]
fn write_bolt_seeds() {
    use crate::protocol::xprotocol::bolt::{
        CODEC_PROTOBUF, CmdCode, Command, CommandHead, ResponseStatus, SOFA_REQUEST_CLASS,
        SOFA_RESPONSE_CLASS,
    };
    let request = |id, oneway, method: &str| {
        Command::build(
            CommandHead::request(id, oneway, 3000).codec(CODEC_PROTOBUF),
            SOFA_REQUEST_CLASS.as_bytes(),
            &[
                (b"service", b"com.example.Hello:1.0"),
                (b"sofa_head_method_name", method.as_bytes()),
                (b"sofa_head_target_app", b""),
            ],
            b"\x0a\x02hi",
        )
        .unwrap()
    };
    let response = Command::build(
        CommandHead::response(1, ResponseStatus::SUCCESS),
        SOFA_RESPONSE_CLASS.as_bytes(),
        &[],
        b"C0.payload",
    )
    .unwrap();
    let heartbeat = Command::build(CommandHead::heartbeat(9), &[], &[], &[]).unwrap();
    let ack = Command::build(
        CommandHead::response(9, ResponseStatus::SUCCESS).cmd_code(CmdCode::Heartbeat),
        &[],
        &[],
        &[],
    )
    .unwrap();
    let error = Command::build(
        CommandHead::response(2, ResponseStatus::CONNECTION_CLOSED),
        &[],
        &[],
        b"\x0eupstream reset",
    )
    .unwrap();
    let stream = |cmds: &[&Command]| {
        let mut out = vec![23u8];
        for c in cmds {
            out.extend_from_slice(c.as_bytes());
        }
        out
    };
    let seeds: Vec<(String, Vec<u8>)> = vec![
        ("request", stream(&[&request(1, false, "echo")])),
        ("oneway", stream(&[&request(2, true, "notify")])),
        ("heartbeat", stream(&[&heartbeat])),
        ("responses", stream(&[&response, &ack, &error])),
        (
            "pipelined",
            stream(&[&heartbeat, &request(3, false, "a"), &request(4, false, "b")]),
        ),
        // A heartbeat and a hessian 2 request as sofa-bolt-node 2.0.1 writes them (the method
        // is read from the content).
        ("sofa_bolt_node_hessian", {
            let hex = concat!(
                "0101000001000000070100000bb80000000000000000",
                "0101000101000000010100000bb8002c0024000000c1636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374000000077365727669636500000015636f6d2e6578616d706c652e48656c6c6f3a312e3043302c636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374950a6d6574686f644e616d650d6d6574686f64417267536967731774617267657453657276696365556e697175654e616d650d7461726765744170704e616d650c7265717565737450726f707360046563686f71115b6a6176612e6c616e672e537472696e67106a6176612e6c616e672e537472696e6715636f6d2e6578616d706c652e48656c6c6f3a312e304e4e026869"
            );
            let mut out = vec![23u8];
            out.extend((0..hex.len()).step_by(2).map(|i| {
                u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")
            }));
            out
        }),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_owned(), b))
    .collect();
    write("bolt_codec", &seeds);
}

/// First bytes of connections: ClientHellos (SNI and ALPN, none, split over records, large),
/// plaintext HTTP/1.x, the HTTP/2 preface, and bytes that are neither.
#[test]
#[ignore = "writes fuzz/corpus/listener_inspectors; run by hand after changing a seed"]
fn write_listener_inspector_seeds() {
    use crate::protocol::client_hello::build;
    let seeds: Vec<(String, Vec<u8>)> = vec![
        (
            "hello_sni_alpn",
            build(Some("a.example.com"), &["h2", "http/1.1"], 0, 1 << 14),
        ),
        (
            "hello_istio",
            build(
                Some("outbound_.8080_._.reviews.default.svc.cluster.local"),
                &["istio-peer-exchange", "istio-http/1.1", "istio", "http/1.1"],
                0,
                1 << 14,
            ),
        ),
        ("hello_bare", build(None, &[], 0, 1 << 14)),
        (
            "hello_split_records",
            build(Some("split.example"), &["h2"], 300, 64),
        ),
        (
            "hello_padded",
            build(Some("big.example"), &[], 4000, 1 << 14),
        ),
        (
            "http11_get",
            b"GET /index.html?q=1 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        ("http10_post", b"POST / HTTP/1.0\n".to_vec()),
        ("h2_preface", crate::protocol::detect::H2_PREFACE.to_vec()),
        (
            "not_tls_record",
            b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00".to_vec(),
        ),
        ("binary", vec![0, 1, 2, 0xff, b'\n']),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_owned(), b))
    .collect();
    write("listener_inspectors", &seeds);
}

/// Upstream HTTP/1.1 responses: the common framings (content-length, chunked with extensions
/// and trailers, close-delimited HTTP/1.0), bodiless ones, a 100-continue before the final
/// head, keep-alive bytes after a body, and the malformed shapes the codec rejects (`bad_*`).
#[test]
#[ignore = "writes fuzz/corpus/http1_response; run by hand after changing a seed"]
fn write_http1_response_seeds() {
    let seeds: &[(&str, &[u8])] = &[
        (
            "ok_length",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n",
        ),
        (
            "chunked_trailers",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\
              Trailer: grpc-status\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n\
              0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n",
        ),
        (
            "no_body_204",
            b"HTTP/1.1 204 No Content\r\nServer: envoy\r\nContent-Length: 7\r\n\r\n",
        ),
        (
            "continue_then_ok",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nLocation: /items/7\r\n\
              Content-Length: 2\r\n\r\nok",
        ),
        (
            "http10_close",
            b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nthe body runs until the connection closes",
        ),
        (
            "pipelined_keep_alive",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        ),
        (
            "bad_chunked_and_length",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "bad_gzip_chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "bad_content_lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        (
            "bad_chunk_size",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000003\r\nabc\r\n0\r\n\r\n",
        ),
        ("bad_status_line", b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"),
        (
            "bad_truncated",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a little",
        ),
    ];
    let seeds: Vec<(String, Vec<u8>)> = seeds
        .iter()
        .map(|(n, b)| ((*n).to_owned(), b.to_vec()))
        .collect();
    write("http1_response", &seeds);
}

/// Downstream HTTP/1.x requests: the common shapes (a GET, content-length and chunked bodies
/// with trailers, `100-continue`, HTTP/1.0 keep-alive, absolute, authority and asterisk
/// targets, upgrades), pipelined requests, and the malformed shapes the codec rejects
/// (`bad_*`).
#[test]
#[ignore = "writes fuzz/corpus/http1_request; run by hand after changing a seed"]
fn write_http1_request_seeds() {
    let seeds: &[(&str, &[u8])] = &[
        (
            "get",
            b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n\
              Accept: */*\r\n\r\n",
        ),
        (
            "post_length",
            b"POST /api/items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
              Content-Length: 12\r\n\r\n{\"name\":\"x\"}",
        ),
        (
            "post_chunked_trailers",
            b"POST /grpc.Svc/Call HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
              TE: trailers\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n\
              0\r\nx-checksum: 1\r\n\r\n",
        ),
        (
            "expect_continue",
            b"PUT /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata",
        ),
        (
            "pipelined",
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\n\
              Content-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        ),
        (
            "http10_keep_alive",
            b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /old2 HTTP/1.0\r\n\r\n",
        ),
        (
            "targets",
            b"GET http://example.com:8080/p?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n\
              OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nGET /frag#ment HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "websocket_upgrade",
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
              \x81\x05hello",
        ),
        (
            "connect",
            b"CONNECT db.example:443 HTTP/1.1\r\nHost: db.example:443\r\n\r\n\x16\x03\x01\x00\x05hello",
        ),
        (
            "bad_chunked_and_length",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "bad_gzip_chunked",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "bad_http10_chunked",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "bad_content_lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        ("bad_request_line", b"GET  /a HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("bad_space_before_colon", b"GET /a HTTP/1.1\r\nHost : a\r\n\r\n"),
        (
            "bad_truncated",
            b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly a little",
        ),
    ];
    let seeds: Vec<(String, Vec<u8>)> = seeds
        .iter()
        .map(|(n, b)| ((*n).to_owned(), b.to_vec()))
        .collect();
    write("http1_request", &seeds);
}
