//! Tracing headers through tern: the sampling decision in `x-request-id` and the trace context
//! Envoy's Zipkin and OpenTelemetry tracers send upstream (as observed with Envoy 1.40).

use super::support::{
    bootstrap, get, h1_client, http_listener, send, start_tern, static_cluster, upstream,
};
use super::{empty, header_line, vh};
use std::net::SocketAddr;

fn traced_listener(name: &str, direction: &str, tracing: &str) -> String {
    http_listener(
        name,
        &vh("              - match: { prefix: / }\n                route: { cluster: up }\n"),
        tracing,
    )
    .replacen(
        "    filter_chains:",
        &format!("    traffic_direction: {direction}\n    filter_chains:"),
        1,
    )
}

#[tokio::test]
async fn tracing_headers_follow_envoys_tracers() {
    let up = upstream::http("up").await;
    let zipkin = "          tracing:\n            random_sampling: { value: 100 }\n            provider:\n              name: envoy.tracers.zipkin\n              typed_config: { \"@type\": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, collector_cluster: up, collector_endpoint: /api/v2/spans }\n          use_remote_address: true\n          internal_address_config: { cidr_ranges: [ { address_prefix: 127.0.0.1, prefix_len: 32 } ] }";
    let otel = "          tracing:\n            provider:\n              name: envoy.tracers.opentelemetry\n              typed_config: { \"@type\": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig, grpc_service: { envoy_grpc: { cluster_name: up } } }";
    let tern = start_tern(&bootstrap(
        &[
            traced_listener("out", "OUTBOUND", zipkin),
            traced_listener("in", "INBOUND", zipkin),
            traced_listener("otel", "OUTBOUND", otel),
            http_listener("plain", &vh("              - match: { prefix: / }\n                route: { cluster: up }\n"), ""),
        ],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    assert_eq!(
        tern.world
            .stats
            .counter_value("tern.config.not_enforced.envoy.tracers.zipkin"),
        Some(2)
    );
    let c = h1_client();
    let b3 = |addr: SocketAddr, extra: &[(&'static str, &'static str)]| {
        let mut r = http::Request::get(format!("http://{addr}/t"))
            .header("x-request-id", "11111111-2222-4333-8444-555555555555")
            .header("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124")
            .header("x-b3-spanid", "a2fb4a1d1a96d312")
            .header("x-b3-sampled", "1")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            );
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        r.body(empty()).unwrap()
    };
    // Outbound: a child span of the client's.
    let got = send(&c, b3(tern.listener_addr("out").unwrap(), &[])).await;
    let h = |k: &str| header_line(&got.body, k).map(str::to_owned);
    assert_eq!(
        h("x-b3-traceid").as_deref(),
        Some("463ac35c9f6413ad48485a3953bb6124")
    );
    assert_eq!(h("x-b3-parentspanid").as_deref(), Some("a2fb4a1d1a96d312"));
    let span = h("x-b3-spanid").unwrap();
    assert!(span.len() == 16 && span != "a2fb4a1d1a96d312", "{span}");
    assert_eq!(h("x-b3-sampled").as_deref(), Some("1"));
    assert_eq!(
        h("traceparent").as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        "W3C passes untouched under Zipkin"
    );
    assert_eq!(
        h("x-request-id").as_deref(),
        Some("11111111-2222-9333-8444-555555555555"),
        "the sampling decision is packed into the request id"
    );
    assert!(got.headers.get("x-request-id").is_none());
    // Inbound: the client's span, shared.
    let got = send(&c, b3(tern.listener_addr("in").unwrap(), &[])).await;
    assert_eq!(
        header_line(&got.body, "x-b3-spanid"),
        Some("a2fb4a1d1a96d312")
    );
    assert_eq!(header_line(&got.body, "x-b3-parentspanid"), None);
    // No context: a new root span.
    let got = get(&c, tern.listener_addr("out").unwrap(), "a", "/t").await;
    let trace = header_line(&got.body, "x-b3-traceid").unwrap();
    assert_eq!(trace.len(), 16);
    assert_eq!(header_line(&got.body, "x-b3-spanid"), Some(trace));
    // A forced trace from an internal client: the request id comes back in the response.
    let got = send(
        &c,
        http::Request::get(format!("http://{}/t", tern.listener_addr("out").unwrap()))
            .header("x-request-id", "11111111-2222-4333-8444-555555555555")
            .header("x-envoy-force-trace", "1")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        got.headers.get("x-request-id").map(|v| v.to_str().unwrap()),
        Some("11111111-2222-a333-8444-555555555555")
    );
    // OpenTelemetry: the same trace, a new span; B3 passes untouched.
    let got = send(
        &c,
        b3(
            tern.listener_addr("otel").unwrap(),
            &[("tracestate", "congo=t61rcWkgMzE")],
        ),
    )
    .await;
    let tp = header_line(&got.body, "traceparent").unwrap();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && tp.ends_with("-01"),
        "{tp}"
    );
    assert!(!tp.contains("b7ad6b7169203331"));
    assert_eq!(
        header_line(&got.body, "tracestate"),
        Some("congo=t61rcWkgMzE")
    );
    assert_eq!(
        header_line(&got.body, "x-b3-spanid"),
        Some("a2fb4a1d1a96d312")
    );
    // Without `tracing`, trace headers pass through untouched and the request id is kept.
    let got = send(
        &c,
        b3(
            tern.listener_addr("plain").unwrap(),
            &[("b3", "80f198ee56343ba8-e457b5a2e4d86bd1-1")],
        ),
    )
    .await;
    assert_eq!(
        header_line(&got.body, "x-b3-spanid"),
        Some("a2fb4a1d1a96d312")
    );
    assert_eq!(
        header_line(&got.body, "b3"),
        Some("80f198ee56343ba8-e457b5a2e4d86bd1-1")
    );
    assert_eq!(
        header_line(&got.body, "x-request-id"),
        Some("11111111-2222-4333-8444-555555555555")
    );
    assert!(
        header_line(&got.body, "traceparent")
            .unwrap()
            .ends_with("b7ad6b7169203331-01")
    );
}
