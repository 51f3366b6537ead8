//! Two terns as two Istio sidecars with ISTIO_MUTUAL between them (istiod's cluster and
//! listener shapes, SDS secrets, `istio.alpn`), carrying HTTP/1.1, HTTP/2 and gRPC.

use super::istio::{
    bound, default_secret, istio_common, istio_inbound_tls, rootca, sidecar_bootstrap,
};
use super::support::ads::{AdsServer, AggregatedDiscoveryServiceClient, Batch};
use super::support::certs::{Ca, spiffe_id};
use super::support::{h1_client, h2_client, logs, start_tern, upstream, within};
use std::net::SocketAddr;
use std::time::Duration;

/// The outbound cluster istiod sends for a service with ISTIO_MUTUAL: the endpoint labelled
/// `tlsMode: istio` gets Istio's UpstreamTlsContext.
fn istio_outbound_cluster(
    name: &str,
    endpoint: SocketAddr,
    server_id: &str,
    http2_only: bool,
) -> String {
    let protocol = if http2_only {
        "explicit_http_config: { http2_protocol_options: {} }"
    } else {
        "use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} }"
    };
    format!(
        r#"
  - name: "{name}"
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        {protocol}
    transport_socket_matches:
    - name: tlsMode-istio
      match: {{ tlsMode: istio }}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          common_tls_context: {common}
          sni: outbound_.8080_._.svc.ns.svc.cluster.local
    - name: tlsMode-disabled
      match: {{}}
      transport_socket: {{ name: envoy.transport_sockets.raw_buffer, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer }} }}
    load_assignment:
      cluster_name: "{name}"
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: "{}", port_value: {} }} }} }}
          metadata: {{ filter_metadata: {{ envoy.transport_socket_match: {{ tlsMode: istio }} }} }}
"#,
        endpoint.ip(),
        endpoint.port(),
        common = istio_common(
            "istio-peer-exchange, istio",
            &format!("match_subject_alt_names: [{{ exact: \"{server_id}\" }}]")
        ),
    )
}

/// An HCM listener on 127.0.0.1:0 of this `traffic_direction` with Istio's `istio.alpn` and
/// `istio.stats` filters before the router, routes `prefix → cluster`, and an access log to
/// `log`; `ts` is a transport socket (or empty).
fn sidecar_listener(
    name: &str,
    direction: &str,
    routes: &[(&str, &str)],
    log: &std::path::Path,
    ts: &str,
    hcm_extra: &str,
) -> String {
    let mut r = String::new();
    for (prefix, cluster) in routes {
        r.push_str(&format!(
            "              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ cluster: \"{cluster}\", timeout: 0s }}\n"
        ));
    }
    let access_log = logs::file_access_log(
        log,
        r#"{ json_format: { protocol: "%PROTOCOL%", code: "%RESPONSE_CODE%", peer: "%DOWNSTREAM_PEER_URI_SAN%", local: "%DOWNSTREAM_LOCAL_URI_SAN%", sni: "%REQUESTED_SERVER_NAME%", up_peer: "%UPSTREAM_PEER_URI_SAN%", up_version: "%UPSTREAM_TLS_VERSION%" } }"#,
        "",
        10,
    );
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    traffic_direction: {direction}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
{hcm_extra}
          access_log:
{access_log}
          route_config:
            name: {name}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{r}
          http_filters:
          - name: istio.alpn
            typed_config:
              "@type": type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig
              alpn_override:
              - {{ upstream_protocol: HTTP10, alpn_override: [istio-http/1.0, istio, http/1.0] }}
              - {{ upstream_protocol: HTTP11, alpn_override: [istio-http/1.1, istio, http/1.1] }}
              - {{ upstream_protocol: HTTP2, alpn_override: [istio-h2, istio, h2] }}
          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/stats.PluginConfig
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{ts}"#
    )
}

#[tokio::test]
async fn two_terns_istio_mutual_tls_http1_http2_grpc() {
    let ca = Ca::new("istio-ca");
    let server_id = spiffe_id("cluster.local", "ns", "server");
    let client_id = spiffe_id("cluster.local", "client-ns", "client");
    // The server workload: an HTTP app and a gRPC app (an ADS server answering CDS).
    let app = upstream::http("app").await;
    let grpc_app = AdsServer::tcp().await;
    grpc_app.apply(
        Batch::new().cluster(&envoy_types::pb::envoy::config::cluster::v3::Cluster {
            name: "from-the-grpc-app".into(),
            ..Default::default()
        }),
    );
    let grpc_app_addr = grpc_app.addr();

    // Server-side sidecar: terminates mTLS (Istio's inbound chain).
    let server_ads = AdsServer::tcp().await;
    let server_log = logs::temp_log("istio-inbound");
    let inbound = sidecar_listener(
        "inbound",
        "INBOUND",
        &[
            ("/envoy.service.discovery", "inbound|grpc"),
            ("/", "inbound|http"),
        ],
        &server_log,
        &istio_inbound_tls(),
        "          forward_client_cert_details: APPEND_FORWARD\n          set_current_client_cert_details: { subject: true, dns: true, uri: true }",
    );
    let server = start_tern(&sidecar_bootstrap(
        &server_ads,
        &[inbound],
        &[
            super::support::static_cluster(
                "inbound|http",
                &[app.addr],
                "    typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} } } }\n",
            ),
            super::support::static_cluster(
                "inbound|grpc",
                &[grpc_app_addr],
                "    typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: { http2_protocol_options: {} } } }\n",
            ),
        ],
    ))
    .await;
    server_ads.apply(
        Batch::new()
            .secret(&default_secret(&ca.spiffe("cluster.local", "ns", "server")))
            .secret(&rootca(&ca)),
    );
    let inbound_addr = bound(&server, "inbound").await;

    // Client-side sidecar: originates mTLS to the server's sidecar.
    let client_ads = AdsServer::tcp().await;
    let client_log = logs::temp_log("istio-outbound");
    let outbound = sidecar_listener(
        "outbound",
        "OUTBOUND",
        &[
            ("/envoy.service.discovery", "outbound|grpc"),
            ("/", "outbound|8080||svc.ns.svc.cluster.local"),
        ],
        &client_log,
        "",
        "",
    );
    let client = start_tern(&sidecar_bootstrap(
        &client_ads,
        &[outbound],
        &[
            istio_outbound_cluster(
                "outbound|8080||svc.ns.svc.cluster.local",
                inbound_addr,
                &server_id,
                false,
            ),
            istio_outbound_cluster("outbound|grpc", inbound_addr, &server_id, true),
        ],
    ))
    .await;
    client_ads.apply(
        Batch::new()
            .secret(&default_secret(&ca.spiffe(
                "cluster.local",
                "client-ns",
                "client",
            )))
            .secret(&rootca(&ca)),
    );
    let outbound_addr = bound(&client, "outbound").await;

    // HTTP/1.1 (retry until the client sidecar has its secrets).
    let h1 = h1_client();
    let mut got = None;
    for _ in 0..200 {
        let g = super::support::get(&h1, outbound_addr, "svc.ns.svc.cluster.local", "/h1").await;
        if g.status == 200 {
            got = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = got.expect("HTTP/1.1 through the mTLS hop");
    assert!(got.body.contains("version HTTP/1.1"), "{}", got.body);
    // The server sidecar tells the app who called (Istio's APPEND_FORWARD).
    let xfcc = got
        .body
        .lines()
        .find_map(|l| l.strip_prefix("x-forwarded-client-cert: "))
        .expect("XFCC");
    assert!(xfcc.starts_with(&format!("By={server_id};Hash=")), "{xfcc}");
    // rcgen leaves an empty common name in the SPIFFE certificates.
    assert!(
        xfcc.ends_with(&format!(";Subject=\"CN=\";URI={client_id}")),
        "{xfcc}"
    );

    // HTTP/2.
    let h2 = h2_client();
    let got = super::support::get(&h2, outbound_addr, "svc.ns.svc.cluster.local", "/h2").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(got.body.contains("version HTTP/2.0"), "{}", got.body);

    // gRPC (a streaming call) through both sidecars.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{outbound_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = AggregatedDiscoveryServiceClient::new(channel);
    let req = envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        ..Default::default()
    };
    let mut stream = within(
        10,
        grpc.stream_aggregated_resources(tokio_stream::iter(vec![req])),
    )
    .await
    .unwrap()
    .into_inner();
    let resp = within(10, stream.message()).await.unwrap().unwrap();
    assert_eq!(resp.resources.len(), 1);

    // Who saw whom.
    let inbound_lines = logs::json_lines(&server_log, 3).await;
    let protocols: Vec<&str> = inbound_lines
        .iter()
        .map(|l| l["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(protocols, ["HTTP/1.1", "HTTP/2", "HTTP/2"]);
    for l in &inbound_lines {
        assert_eq!(l["peer"], client_id.as_str());
        assert_eq!(l["local"], server_id.as_str());
        assert_eq!(l["sni"], "outbound_.8080_._.svc.ns.svc.cluster.local");
    }
    // The outbound log also has the 503s of requests sent before its secrets arrived.
    let mut ok = Vec::new();
    for n in 3..1000 {
        let lines = logs::json_lines(&client_log, n).await;
        ok = lines.into_iter().filter(|l| l["code"] == 200).collect();
        if ok.len() >= 3 {
            break;
        }
    }
    assert_eq!(ok.len(), 3);
    for l in &ok {
        assert_eq!(l["up_peer"], server_id.as_str());
        assert_eq!(l["up_version"], "TLSv1.3");
    }
    let stats = &server.world.stats;
    assert_eq!(
        stats.counter_value("listener.127.0.0.1_0.ssl.fail_verify_san"),
        Some(0)
    );

    // Istio's standard metrics carry the SPIFFE principals of the mTLS hop: the server
    // reports its downstream peer and itself (`mutual_tls`), the client its upstream peer and
    // itself (a client's policy is always `unknown`).
    let server_series = istio_requests(&server);
    assert_eq!(server_series.iter().map(|s| s.1).sum::<u64>(), 3);
    for (labels, _) in &server_series {
        assert_eq!(labels["source_principal"], client_id, "{labels:?}");
        assert_eq!(labels["destination_principal"], server_id, "{labels:?}");
        assert_eq!(labels["connection_security_policy"], "mutual_tls");
    }
    let client_ok: Vec<_> = istio_requests(&client)
        .into_iter()
        .filter(|(l, _)| l["response_code"] == "200")
        .collect();
    assert_eq!(client_ok.iter().map(|s| s.1).sum::<u64>(), 3);
    for (labels, _) in &client_ok {
        assert_eq!(labels["reporter"], "source");
        assert_eq!(labels["source_principal"], client_id, "{labels:?}");
        assert_eq!(labels["destination_principal"], server_id, "{labels:?}");
        assert_eq!(labels["connection_security_policy"], "unknown");
    }
}

/// The `istio_requests_total` series of a tern's Prometheus page: labels and value.
fn istio_requests(
    tern: &tern::server::Server,
) -> Vec<(std::collections::HashMap<String, String>, u64)> {
    let text = tern
        .world
        .stats
        .render_prometheus(&tern::stats::StatsQuery::default());
    let scrape = super::support::prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    scrape
        .samples
        .into_iter()
        .filter(|s| s.name == "istio_requests_total")
        .map(|s| (s.labels.into_iter().collect(), s.value.parse().unwrap()))
        .collect()
}
