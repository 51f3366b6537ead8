//! `/certs` against Envoy 1.40 on the same bootstrap: the same JSON.

use super::envoy_support::start_pair;
use super::support::certs::{Ca, LeafSpec, spiffe_id};
use super::support::{h1_client, send};
use super::{inline_cert, trust};
use bytes::Bytes;
use http_body_util::Full;

async fn certs(admin: std::net::SocketAddr) -> serde_json::Value {
    let req = http::Request::get(format!("http://{admin}/certs"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let got = send(&h1_client(), req).await;
    assert_eq!(got.status, 200, "{}", got.body);
    serde_json::from_str(&got.body).expect("JSON")
}

#[tokio::test]
async fn certs_match_envoy() {
    let ca = Ca::new("root");
    let server = ca.leaf(&LeafSpec {
        cn: "tern.test".into(),
        dns: vec!["tern.test".into()],
        uris: vec![spiffe_id("cluster.local", "ns", "server")],
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        ..Default::default()
    });
    let client = ca.spiffe("cluster.local", "ns", "client");
    let template = format!(
        r#"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }} }}
static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {{ tls_certificates: [{server}], validation_context: {vc} }}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c }}
  clusters:
  - name: c
    type: STATIC
    connect_timeout: 1s
    load_assignment: {{ cluster_name: c, endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9 }} }} }} }}] }}] }}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context: {{ tls_certificates: [{client}], validation_context: {vc} }}
"#,
        server = inline_cert(&server),
        client = inline_cert(&client),
        vc = trust(&ca, ""),
    );
    let Some(pair) = start_pair("tls-certs", &template).await else {
        return;
    };
    // The order of the contexts is Envoy's context manager's own; compare them as a set.
    let sorted = |v: serde_json::Value| {
        let mut c: Vec<String> = v["certificates"]
            .as_array()
            .expect("certificates")
            .iter()
            .map(|c| c.to_string())
            .collect();
        c.sort();
        c
    };
    let e = sorted(certs(pair.envoy_admin).await);
    let t = sorted(certs(pair.tern_admin).await);
    assert_eq!(t.len(), 2);
    assert_eq!(e, t);
}
