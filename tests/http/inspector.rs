//! `envoy.filters.listener.http_inspector` choosing filter chains on one plaintext listener:
//! HTTP/1.1 and HTTP/1.0 request lines, the HTTP/2 prior-knowledge preface (h2c), and bytes
//! that are not HTTP, each with a real client.

use super::support::{
    bootstrap, get, h1_client, h2_client, raw, start_tern, static_cluster, upstream, within,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A chain matching `protocols` whose connection manager answers `body` to everything.
fn hcm_chain(protocols: &str, body: &str) -> String {
    format!(
        r#"
    - filter_chain_match: {{ application_protocols: {protocols} }}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {body}
          http_protocol_options: {{ accept_http_10: true }}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 200, body: {{ inline_string: {body} }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"#
    )
}

#[tokio::test]
async fn http_inspector_chooses_chains_by_protocol() {
    let (echo, _t) = upstream::tcp_echo().await;
    let listener = format!(
        r#"
  - name: detect
    stat_prefix: detect
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    listener_filters:
    - name: envoy.filters.listener.http_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector
    filter_chains:{}{}
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: other
          cluster: echo
"#,
        hcm_chain("[http/1.1, http/1.0]", "h1-chain"),
        hcm_chain("[h2c]", "h2c-chain"),
    );
    let tern = start_tern(&bootstrap(
        &[listener],
        &[static_cluster("echo", &[echo], "")],
    ))
    .await;
    let addr = tern.listener_addr("detect").unwrap();

    let got = get(&h1_client(), addr, "svc", "/").await;
    assert_eq!((got.status, got.body.as_str()), (200, "h1-chain"));
    let got = get(&h2_client(), addr, "svc", "/").await;
    assert_eq!((got.status, got.body.as_str()), (200, "h2c-chain"));
    let reply = raw(addr, b"GET / HTTP/1.0\r\nHost: svc\r\n\r\n").await;
    assert!(
        reply.starts_with("HTTP/1.0 200") && reply.ends_with("h1-chain"),
        "{reply}"
    );

    // Not HTTP: the chain without application protocols, bytes intact.
    let mut s = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    s.write_all(b"\x00\x01 binary\n").await.unwrap();
    let mut buf = [0u8; 10];
    within(5, s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"\x00\x01 binary\n");
    drop(s);

    let stats = &tern.world.stats;
    for (name, want) in [
        ("http_inspector.http11_found", 1),
        ("http_inspector.http2_found", 1),
        ("http_inspector.http10_found", 1),
        ("http_inspector.http_not_found", 1),
        ("http_inspector.read_error", 0),
        ("listener.detect.no_filter_chain_match", 0),
        ("tcp.other.downstream_cx_total", 1),
    ] {
        assert_eq!(stats.counter_value(name), Some(want), "{name}");
    }
}
