//! Istio's standard metrics through two terns shaped as Istio's sidecars: a client-side tern
//! (outbound listener, the bookinfo `productpage` workload) sends to a server-side tern
//! (inbound listener, the `reviews` workload) in front of the application. Both run Istio's
//! HTTP filters as istiod generates them (the null-VM metadata exchange plugin and
//! `stats.PluginConfig`); the peers learn each other from the exchange headers, and each
//! reports `istio_requests_total` and the other standard metrics with Istio's labels, read back
//! from `/stats/prometheus` with exact values. A TCP listener reports `istio_tcp_*`.

use super::support::prom::{self, Scrape};
use super::support::{eventually, get, h1_client, static_cluster, upstream, within};
use std::net::SocketAddr;
use tern::stats::StatsQuery;

/// A sidecar's bootstrap node, as pilot-agent writes it (the metadata Istio's filters read).
fn node(workload: &str, app: &str) -> String {
    format!(
        r#"node:
  id: "sidecar~10.0.0.1~{workload}-abc.default~default.svc.cluster.local"
  cluster: "{app}.default"
  metadata:
    NAME: "{workload}-abc"
    NAMESPACE: default
    WORKLOAD_NAME: "{workload}"
    CLUSTER_ID: Kubernetes
    MESH_ID: cluster.local
    ISTIO_VERSION: "1.24.0"
    OWNER: "kubernetes://apis/apps/v1/namespaces/default/deployments/{workload}"
    LABELS:
      app: "{app}"
      version: v1
      service.istio.io/canonical-name: "{app}"
      service.istio.io/canonical-revision: v1
"#
    )
}

const HTTP_FILTERS: &str = r#"          http_filters:
          - name: istio.metadata_exchange
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                vm_config:
                  runtime: envoy.wasm.runtime.null
                  code: { local: { inline_string: envoy.wasm.metadata_exchange } }
                configuration:
                  "@type": type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange
          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/stats.PluginConfig
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#;

/// An HTTP listener of this traffic direction routing everything to `cluster`.
fn sidecar_listener(name: &str, direction: &str, cluster: &str) -> String {
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
          route_config:
            name: {name}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: "{cluster}" }}
{HTTP_FILTERS}"#
    )
}

/// A TCP listener with Istio's TCP stats filter in front of tcp_proxy.
fn tcp_listener(name: &str, cluster: &str) -> String {
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    traffic_direction: OUTBOUND
    filter_chains:
    - filters:
      - name: istio.stats
        typed_config:
          "@type": type.googleapis.com/stats.PluginConfig
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: "{cluster}"
"#
    )
}

/// istiod's cluster metadata: the service the cluster stands for.
fn service_metadata(host: &str, name: &str) -> String {
    format!(
        r#"    metadata:
      filter_metadata:
        istio:
          services:
          - {{ host: "{host}", name: "{name}", namespace: default }}"#
    )
}

/// A STATIC cluster whose one endpoint carries istiod's `istio.workload` metadata.
fn cluster_with_workload(
    name: &str,
    endpoint: SocketAddr,
    service: &str,
    workload: &str,
) -> String {
    format!(
        r#"
  - name: "{name}"
    type: STATIC
    connect_timeout: 1s
{metadata}
    load_assignment:
      cluster_name: "{name}"
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: "{ip}", port_value: {port} }} }} }}
          metadata:
            filter_metadata:
              istio:
                workload: "{workload}"
"#,
        metadata = service_metadata(&format!("{service}.default.svc.cluster.local"), service),
        ip = endpoint.ip(),
        port = endpoint.port(),
    )
}

fn scrape(server: &tern::server::Server) -> Scrape {
    let text = server.world.stats.render_prometheus(&StatsQuery::default());
    prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Istio's 25 standard labels in Istio's order, for one series.
fn labels<'a>(
    reporter: &'a str,
    peer_known: bool,
    code: &'a str,
    security: &'a str,
) -> Vec<(&'static str, &'a str)> {
    // Without a discovered peer a client falls back to the endpoint's workload metadata,
    // which has no app or version labels.
    let (dst_app, dst_version) = if peer_known {
        ("reviews", "v1")
    } else {
        ("unknown", "unknown")
    };
    vec![
        ("reporter", reporter),
        ("source_workload", "productpage-v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "v1"),
        ("source_workload_namespace", "default"),
        ("source_principal", "unknown"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "reviews-v1"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", dst_app),
        ("destination_version", dst_version),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "http"),
        ("response_code", code),
        ("grpc_response_status", ""),
        ("response_flags", "-"),
        ("connection_security_policy", security),
    ]
}

#[tokio::test]
async fn two_sidecars_report_istio_requests_with_each_others_metadata() {
    let app = upstream::http("reviews").await;
    let server = super::support::start_tern(&format!(
        "{}{}",
        node("reviews-v1", "reviews"),
        super::support::bootstrap(
            &[sidecar_listener("inbound", "INBOUND", "inbound|9080||")],
            &[static_cluster(
                "inbound|9080||",
                &[app.addr],
                &service_metadata("reviews.default.svc.cluster.local", "reviews"),
            )],
        )
    ))
    .await;
    let server_addr = server.listener_addr("inbound").expect("bound");
    let echo = upstream::tcp_echo().await;
    let outbound = "outbound|9080||reviews.default.svc.cluster.local";
    let client = super::support::start_tern(&format!(
        "{}{}",
        node("productpage-v1", "productpage"),
        super::support::bootstrap(
            &[
                sidecar_listener("outbound", "OUTBOUND", outbound),
                tcp_listener("tcp", "outbound|9000||reviews.default.svc.cluster.local"),
            ],
            &[
                cluster_with_workload(
                    outbound,
                    server_addr,
                    "reviews",
                    "reviews-v1;default;reviews;v1;Kubernetes",
                ),
                cluster_with_workload(
                    "outbound|9000||reviews.default.svc.cluster.local",
                    echo.0,
                    "reviews",
                    "reviews-v1;default;reviews;v1;Kubernetes",
                ),
            ],
        )
    ))
    .await;
    let client_addr = client.listener_addr("outbound").expect("bound");

    let http = h1_client();
    for path in ["/", "/a", "/status/404"] {
        let r = within(10, get(&http, client_addr, "reviews:9080", path)).await;
        // The exchange headers stay between the sidecars: the application never sees them,
        // and they do not come back to the client.
        assert!(!r.body.contains("x-envoy-peer-metadata"), "{}", r.body);
        assert!(!r.headers.contains_key("x-envoy-peer-metadata"));
        assert!(!r.headers.contains_key("x-envoy-peer-metadata-id"));
    }
    // Each side records when its stream ends (after the last body byte): poll.
    let count = |s: &tern::server::Server, reporter: &str| {
        scrape(s)
            .samples
            .iter()
            .filter(|x| {
                x.name == "istio_requests_total"
                    && x.labels
                        .iter()
                        .any(|(k, v)| k == "reporter" && v == reporter)
            })
            .map(|x| x.value.parse::<u64>().unwrap_or(0))
            .sum::<u64>()
    };
    assert!(
        eventually(5, || count(&client, "source") == 3
            && count(&server, "destination") == 3)
        .await
    );

    let c = scrape(&client);
    let s = scrape(&server);
    // Prometheus' own Python parser reads the same samples, Istio's and Envoy's.
    for t in [&client, &server] {
        prom::check_with_prometheus_client(
            &t.world.stats.render_prometheus(&StatsQuery::default()),
        );
    }
    let dump = |x: &Scrape| format!("{:#?}", x.samples);
    for (code, n) in [("200", "2"), ("404", "1")] {
        assert_eq!(
            c.value(
                "istio_requests_total",
                &labels("source", true, code, "unknown")
            ),
            Some(n),
            "{}",
            dump(&c)
        );
        assert_eq!(
            s.value(
                "istio_requests_total",
                &labels("destination", true, code, "none")
            ),
            Some(n),
            "{}",
            dump(&s)
        );
    }
    // The histograms count the same streams.
    let mut ok = labels("source", true, "200", "unknown");
    for h in [
        "istio_request_duration_milliseconds_count",
        "istio_request_bytes_count",
        "istio_response_bytes_count",
    ] {
        assert_eq!(c.value(h, &ok), Some("2"), "{h}");
    }
    ok.push(("le", "+Inf"));
    assert_eq!(
        c.value("istio_request_duration_milliseconds_bucket", &ok),
        Some("2")
    );
    assert_eq!(
        c.families.get("istio_requests_total").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        c.families
            .get("istio_request_duration_milliseconds")
            .map(String::as_str),
        Some("histogram")
    );
    // `/stats` lists the same series under Envoy's flat names.
    let text = client.world.stats.render_text(&StatsQuery::default());
    assert!(
        text.lines().any(|l| l.starts_with(
            "istiocustom.istio_requests_total.reporter.source.source_workload.productpage-v1."
        ) && l.ends_with(": 2")),
        "{text}"
    );

    // TCP: one connection, 5 bytes up and 8 down; reported when it closes.
    let tcp_addr = client.listener_addr("tcp").expect("bound");
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = within(5, tokio::net::TcpStream::connect(tcp_addr))
            .await
            .expect("connect");
        within(5, s.write_all(b"hello")).await.expect("write");
        let mut buf = [0u8; 5];
        within(5, s.read_exact(&mut buf)).await.expect("read");
        assert_eq!(&buf, b"hello");
        s.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        within(5, s.read_to_end(&mut rest)).await.expect("eof");
        // The echo server says goodbye when the client half-closes.
        assert_eq!(rest, b"bye");
    }
    let tcp_value = |name: &str| {
        let x = scrape(&client);
        x.samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| (s.value.clone(), s.labels.clone()))
    };
    assert!(
        eventually(5, || tcp_value("istio_tcp_connections_closed_total")
            .is_some())
        .await
    );
    let (closed, tcp_labels) = tcp_value("istio_tcp_connections_closed_total").expect("closed");
    assert_eq!(closed, "1");
    let mut want = labels("source", false, "", "unknown");
    // TCP series carry no response code or gRPC status, and the protocol is `tcp`.
    want.retain(|(k, _)| *k != "response_code" && *k != "grpc_response_status");
    for (k, v) in want.iter_mut() {
        if *k == "request_protocol" {
            *v = "tcp";
        }
    }
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(tcp_labels, want);
    let x = scrape(&client);
    let l: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(x.value("istio_tcp_connections_opened_total", &l), Some("1"));
    assert_eq!(x.value("istio_tcp_sent_bytes_total", &l), Some("8"));
    assert_eq!(x.value("istio_tcp_received_bytes_total", &l), Some("5"));
}
