//! TLS origination to upstream clusters: SNI, SAN verification, ALPN, per-endpoint
//! `transport_socket_matches`, `auto_sni` / `auto_san_validation`.

use super::support::certs::{Ca, LeafSpec};
use super::support::{
    bootstrap, get, h1_client, http_listener, logs, start_tern, static_cluster, upstream,
};
use super::{line, tls_upstream, trust};

const UPSTREAM_TLS: &str =
    "\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

/// A cluster `transport_socket` (YAML at cluster indentation, 4) with an UpstreamTlsContext
/// whose fields are `ctx` (the inside of a flow mapping).
fn upstream_tls(ctx: &str) -> String {
    format!(
        "    transport_socket: {{ name: envoy.transport_sockets.tls, typed_config: {{ {UPSTREAM_TLS}, {ctx} }} }}\n"
    )
}

/// Virtual hosts routing `host` to cluster `cluster`, for each pair.
fn vhosts(pairs: &[(&str, &str)]) -> String {
    let mut y = String::new();
    for (i, (host, cluster)) in pairs.iter().enumerate() {
        y.push_str(&format!(
            "            - name: v{i}\n              domains: [\"{host}\"]\n              routes:\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: {cluster} }}\n"
        ));
    }
    y
}

#[tokio::test]
async fn upstream_tls_with_sni_and_san_verification() {
    let ca = Ca::new("root");
    let cert = ca.server(&["backend.test"]);
    let (addr, _t) = tls_upstream(&cert, None, &[]).await;
    let log = logs::temp_log("tls-upstream");
    let access = format!(
        "          access_log:\n{}",
        logs::file_access_log(
            &log,
            r#"{ json_format: { code: "%RESPONSE_CODE%", flags: "%RESPONSE_FLAGS%", reason: "%UPSTREAM_TRANSPORT_FAILURE_REASON%", up_version: "%UPSTREAM_TLS_VERSION%", up_subject: "%UPSTREAM_PEER_SUBJECT%", up_dns: "%UPSTREAM_PEER_DNS_SAN%" } }"#,
            "",
            10
        )
    );
    let good_ctx = format!(
        "sni: backend.test, common_tls_context: {{ validation_context: {} }}",
        trust(
            &ca,
            r#", match_typed_subject_alt_names: [{ san_type: DNS, matcher: { exact: backend.test } }]"#
        )
    );
    let bad_ctx = format!(
        "sni: backend.test, common_tls_context: {{ validation_context: {} }}",
        trust(
            &ca,
            r#", match_typed_subject_alt_names: [{ san_type: DNS, matcher: { exact: other.test } }]"#
        )
    );
    let tern = start_tern(&bootstrap(
        &[http_listener(
            "l",
            &vhosts(&[("good", "good"), ("bad", "bad")]),
            &access,
        )],
        &[
            static_cluster("good", &[addr], &upstream_tls(&good_ctx)),
            static_cluster("bad", &[addr], &upstream_tls(&bad_ctx)),
        ],
    ))
    .await;
    let l = tern.listener_addr("l").unwrap();
    let c = h1_client();
    let got = get(&c, l, "good", "/x").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(line(&got.body, "sni"), Some("backend.test"));
    assert_eq!(line(&got.body, "alpn"), Some("-"));
    // The pooled TLS connection is reused.
    assert_eq!(get(&c, l, "good", "/y").await.status, 200);
    let stats = &tern.world.stats;
    assert_eq!(stats.counter_value("cluster.good.ssl.handshake"), Some(1));
    assert_eq!(
        stats.counter_value("cluster.good.upstream_cx_total"),
        Some(1)
    );
    // A body larger than the socket buffers goes through the TLS session whole, on the pooled
    // connection.
    let big = bytes::Bytes::from(vec![7u8; 4 * 1024 * 1024]);
    let req = http::Request::post(format!("http://{l}/len"))
        .header("host", "good")
        .body(http_body_util::Full::new(big))
        .unwrap();
    let got = super::support::send(&c, req).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(line(&got.body, "len"), Some("4194304"));
    assert_eq!(
        stats.counter_value("cluster.good.upstream_cx_total"),
        Some(1)
    );

    let bad = get(&c, l, "bad", "/").await;
    assert_eq!(bad.status, 503);
    assert_eq!(
        stats.counter_value("cluster.bad.ssl.fail_verify_san"),
        Some(1)
    );
    assert_eq!(
        stats.counter_value("cluster.bad.upstream_cx_connect_fail"),
        Some(1)
    );

    let lines = logs::json_lines(&log, 4).await;
    assert_eq!(lines[0]["up_version"], "TLSv1.2");
    assert_eq!(lines[0]["up_subject"], "CN=backend.test");
    assert_eq!(lines[0]["up_dns"], "backend.test");
    assert_eq!(lines[3]["flags"], "UF");
    let reason = lines[3]["reason"].as_str().unwrap();
    assert!(reason.starts_with("TLS_error"), "{reason}");
}

#[tokio::test]
async fn http2_cluster_offers_h2_and_endpoints_pick_their_socket() {
    let ca = Ca::new("root");
    let cert = ca.server(&["backend.test"]);
    let (tls_addr, _t) = tls_upstream(&cert, None, &["h2", "http/1.1"]).await;
    let plain = upstream::http("plain").await;
    let ctx = format!(
        "sni: backend.test, common_tls_context: {{ validation_context: {} }}",
        trust(&ca, "")
    );
    let h2 = format!("    http2_protocol_options: {{}}\n{}", upstream_tls(&ctx));
    // transport_socket_matches: endpoints labelled tlsMode=istio speak TLS, others plaintext.
    let matches = format!(
        r#"    transport_socket_matches:
    - name: tlsMode-istio
      match: {{ tlsMode: istio }}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config: {{ {UPSTREAM_TLS}, {ctx} }}
    - name: tlsMode-disabled
      match: {{}}
      transport_socket: {{ name: envoy.transport_sockets.raw_buffer, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer }} }}
"#
    );
    let labelled = |name: &str, addr: std::net::SocketAddr, label: bool| {
        let md = if label {
            "\n          metadata: { filter_metadata: { envoy.transport_socket_match: { tlsMode: istio } } }"
        } else {
            ""
        };
        format!(
            r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
{matches}    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: "{}", port_value: {} }} }} }}{md}
"#,
            addr.ip(),
            addr.port()
        )
    };
    let tern = start_tern(&bootstrap(
        &[http_listener(
            "l",
            &vhosts(&[("h2", "h2"), ("mtls", "mtls"), ("plain", "plain")]),
            "",
        )],
        &[
            static_cluster("h2", &[tls_addr], &h2),
            labelled("mtls", tls_addr, true),
            labelled("plain", plain.addr, false),
        ],
    ))
    .await;
    let l = tern.listener_addr("l").unwrap();
    let c = h1_client();
    let got = get(&c, l, "h2", "/").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(line(&got.body, "alpn"), Some("h2"));
    assert_eq!(line(&got.body, "version"), Some("HTTP/2.0"));
    let got = get(&c, l, "mtls", "/").await;
    assert_eq!(
        (got.status, line(&got.body, "version")),
        (200, Some("HTTP/1.1"))
    );
    let got = get(&c, l, "plain", "/").await;
    assert_eq!(got.status, 200);
    assert!(got.body.contains("upstream plain"), "{}", got.body);
}

#[tokio::test]
async fn auto_sni_and_auto_san_validation() {
    let ca = Ca::new("root");
    let cert = ca.leaf(&LeafSpec {
        cn: "wild".into(),
        dns: vec!["*.svc.test".into()],
        ..Default::default()
    });
    let (addr, _t) = tls_upstream(&cert, None, &[]).await;
    let ctx = format!(
        "common_tls_context: {{ validation_context: {} }}",
        trust(&ca, "")
    );
    let opts = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        upstream_http_protocol_options: { auto_sni: true, auto_san_validation: true }
        explicit_http_config: { http_protocol_options: {} }
"#;
    let tern = start_tern(&bootstrap(
        &[http_listener("l", &vhosts(&[("*", "auto")]), "")],
        &[static_cluster(
            "auto",
            &[addr],
            &format!("{opts}{}", upstream_tls(&ctx)),
        )],
    ))
    .await;
    let l = tern.listener_addr("l").unwrap();
    let c = h1_client();
    let got = get(&c, l, "a.svc.test", "/").await;
    assert_eq!(
        (got.status, line(&got.body, "sni")),
        (200, Some("a.svc.test"))
    );
    // Another SNI is another pool (and another handshake).
    let got = get(&c, l, "b.svc.test:8080", "/").await;
    assert_eq!(
        (got.status, line(&got.body, "sni")),
        (200, Some("b.svc.test"))
    );
    assert_eq!(
        tern.world.stats.counter_value("cluster.auto.ssl.handshake"),
        Some(2)
    );
    // A host the certificate does not name: refused.
    assert_eq!(get(&c, l, "other.test", "/").await.status, 503);
    assert_eq!(
        tern.world
            .stats
            .counter_value("cluster.auto.ssl.fail_verify_san"),
        Some(1)
    );
}
