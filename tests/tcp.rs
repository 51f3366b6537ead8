//! tcp_proxy through tern: bytes both ways, half-close, weighted clusters, connect failure,
//! connect attempts, idle timeout; filter chains chosen by the TLS inspector (`inspector`).

mod support;

#[path = "tcp/inspector.rs"]
mod inspector;

use support::{bootstrap, start_tern, static_cluster, upstream, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tcp_listener(name: &str, proxy: &str) -> String {
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
{proxy}
"#
    )
}

#[tokio::test]
async fn bytes_flow_and_half_close_is_passed_on() {
    let (echo, _t) = upstream::tcp_echo().await;
    let tern = start_tern(&bootstrap(
        &[tcp_listener("tcp", "          cluster: echo")],
        &[static_cluster("echo", &[echo], "")],
    ))
    .await;
    let addr = tern.listener_addr("tcp").unwrap();
    let mut s = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    within(5, s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"hello");
    // Half-close our side: the echo server sees EOF, answers "bye" and closes; we still read it.
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(5, s.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"bye");
    let stats = &tern.world.stats;
    assert!(
        support::eventually(5, || stats
            .counter_value("tcp.tcp.downstream_cx_rx_bytes_total")
            == Some(5))
        .await
    );
    assert_eq!(
        stats.counter_value("tcp.tcp.downstream_cx_tx_bytes_total"),
        Some(8)
    );
    assert_eq!(stats.counter_value("tcp.tcp.downstream_cx_total"), Some(1));
}

#[tokio::test]
async fn weighted_clusters_spread_connections() {
    let (a, _ta) = upstream::tcp_echo().await;
    let (b, _tb) = upstream::tcp_echo().await;
    let proxy = "          weighted_clusters:\n            clusters:\n            - { name: a, weight: 1 }\n            - { name: b, weight: 1 }";
    let tern = start_tern(&bootstrap(
        &[tcp_listener("tcp", proxy)],
        &[static_cluster("a", &[a], ""), static_cluster("b", &[b], "")],
    ))
    .await;
    let addr = tern.listener_addr("tcp").unwrap();
    for _ in 0..40 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        within(5, s.read_exact(&mut one)).await.unwrap();
    }
    let ca = tern
        .world
        .cluster("a")
        .unwrap()
        .stats
        .upstream_cx_total()
        .value();
    let cb = tern
        .world
        .cluster("b")
        .unwrap()
        .stats
        .upstream_cx_total()
        .value();
    assert_eq!(ca + cb, 40);
    assert!(ca >= 8 && cb >= 8, "a={ca} b={cb}");
}

#[tokio::test]
async fn connect_failure_closes_downstream_and_attempts_other_hosts() {
    // One dead port (bound then dropped) and one live echo server; with two attempts every
    // connection ends up at the live one.
    let dead = support::dead_addr();
    let (live, _t) = upstream::tcp_echo().await;
    let one = start_tern(&bootstrap(
        &[tcp_listener("tcp", "          cluster: c")],
        &[static_cluster("c", &[dead], "")],
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(one.listener_addr("tcp").unwrap())
        .await
        .unwrap();
    let mut out = Vec::new();
    within(5, s.read_to_end(&mut out)).await.unwrap();
    assert!(out.is_empty());
    assert_eq!(
        one.world
            .cluster("c")
            .unwrap()
            .stats
            .upstream_cx_connect_fail()
            .value(),
        1
    );

    let two = start_tern(&bootstrap(
        &[tcp_listener(
            "tcp",
            "          cluster: c\n          max_connect_attempts: 2",
        )],
        &[static_cluster("c", &[dead, live], "")],
    ))
    .await;
    for _ in 0..10 {
        let mut s = tokio::net::TcpStream::connect(two.listener_addr("tcp").unwrap())
            .await
            .unwrap();
        s.write_all(b"z").await.unwrap();
        let mut b = [0u8; 1];
        within(5, s.read_exact(&mut b)).await.unwrap();
    }
}

#[tokio::test]
async fn idle_timeout_closes_both_sides() {
    let (echo, _t) = upstream::tcp_echo().await;
    let tern = start_tern(&bootstrap(
        &[tcp_listener(
            "tcp",
            "          cluster: echo\n          idle_timeout: 0.3s",
        )],
        &[static_cluster("echo", &[echo], "")],
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(tern.listener_addr("tcp").unwrap())
        .await
        .unwrap();
    s.write_all(b"a").await.unwrap();
    let mut b = [0u8; 1];
    within(5, s.read_exact(&mut b)).await.unwrap();
    let mut rest = Vec::new();
    // Nothing moves: tern closes the connection after the idle timeout.
    within(5, s.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(
        tern.world.stats.counter_value("tcp.tcp.idle_timeout"),
        Some(1)
    );
}

#[tokio::test]
async fn unknown_cluster_closes_the_connection() {
    let tern = start_tern(&bootstrap(
        &[tcp_listener("tcp", "          cluster: nowhere")],
        &[],
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(tern.listener_addr("tcp").unwrap())
        .await
        .unwrap();
    let mut out = Vec::new();
    within(5, s.read_to_end(&mut out)).await.unwrap();
    assert_eq!(
        tern.world
            .stats
            .counter_value("tcp.tcp.downstream_cx_no_route"),
        Some(1)
    );
}

#[tokio::test]
async fn istio_passthrough_cluster_is_accepted() {
    // Istio's PassthroughCluster: ORIGINAL_DST with CLUSTER_PROVIDED. Its hosts come from the
    // original destination (the sidecar-capture work); until then connections find no host.
    let cluster = "\n  - name: PassthroughCluster\n    type: ORIGINAL_DST\n    lb_policy: CLUSTER_PROVIDED\n    connect_timeout: 1s\n".to_string();
    let tern = start_tern(&bootstrap(
        &[tcp_listener("tcp", "          cluster: PassthroughCluster")],
        &[cluster],
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(tern.listener_addr("tcp").unwrap())
        .await
        .unwrap();
    let mut out = Vec::new();
    within(5, s.read_to_end(&mut out)).await.unwrap();
    assert_eq!(
        tern.world
            .cluster("PassthroughCluster")
            .unwrap()
            .stats
            .upstream_cx_none_healthy()
            .value(),
        1
    );
}

#[tokio::test]
async fn tls_filter_chain_without_its_sds_secret_refuses_handshakes() {
    // A filter chain with a TLS transport socket compiles (its SDS secrets are known); until
    // the secret arrives every handshake fails: the connection is closed and counted.
    let (echo, _t) = upstream::tcp_echo().await;
    let listener = r#"
  - name: tls
    stat_prefix: tls
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: default
              sds_config: { ads: {}, resource_api_version: V3 }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tls
          cluster: echo
"#;
    let tern = start_tern(&bootstrap(
        &[listener.to_string()],
        &[static_cluster("echo", &[echo], "")],
    ))
    .await;
    let listeners = tern.world.listeners.load();
    let secrets = listeners["tls"].sds_secrets();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].name, "default");
    let mut s = tokio::net::TcpStream::connect(tern.listener_addr("tls").unwrap())
        .await
        .unwrap();
    let _ = s.write_all(b"\x16\x03\x01").await;
    let mut out = Vec::new();
    let _ = within(5, s.read_to_end(&mut out)).await;
    assert!(out.is_empty());
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("listener.tls.ssl.connection_error"),
        Some(1)
    );
    assert_eq!(stats.counter_value("tcp.tls.downstream_cx_total"), Some(0));
}

/// A tcp_proxy access log of the fields the test reads, to `path` (YAML at the tcp_proxy's
/// indentation).
fn tcp_access_log(path: &std::path::Path) -> String {
    format!(
        "          access_log:\n{}",
        support::logs::file_access_log(
            path,
            r#"{ json_format: { code: "%RESPONSE_CODE%", flags: "%RESPONSE_FLAGS%", rx: "%BYTES_RECEIVED%", tx: "%BYTES_SENT%", host: "%UPSTREAM_HOST%", cluster: "%UPSTREAM_CLUSTER%", attempts: "%UPSTREAM_REQUEST_ATTEMPT_COUNT%", protocol: "%PROTOCOL%", failure: "%UPSTREAM_TRANSPORT_FAILURE_REASON%", type: "%ACCESS_LOG_TYPE%", ula: "%UPSTREAM_LOCAL_ADDRESS%" } }"#,
            "",
            10
        )
    )
}

#[tokio::test]
async fn access_log_records_bytes_and_connect_failures() {
    use support::logs::{json_lines, temp_log};
    let (echo, _t) = upstream::tcp_echo().await;
    let (ok_log, dead_log, missing_log, periodic_log) = (
        temp_log("tcp-ok"),
        temp_log("tcp-dead"),
        temp_log("tcp-missing"),
        temp_log("tcp-periodic"),
    );
    let tern = start_tern(&bootstrap(
        &[
            tcp_listener("ok", &format!("          cluster: echo\n{}", tcp_access_log(&ok_log))),
            tcp_listener(
                "dead",
                &format!(
                    "          cluster: dead\n          max_connect_attempts: 2\n{}",
                    tcp_access_log(&dead_log)
                ),
            ),
            tcp_listener(
                "missing",
                &format!("          cluster: missing\n{}", tcp_access_log(&missing_log)),
            ),
            tcp_listener(
                "periodic",
                &format!(
                    "          cluster: echo\n          access_log_options: {{ access_log_flush_interval: 0.05s }}\n{}",
                    tcp_access_log(&periodic_log)
                ),
            ),
        ],
        &[
            static_cluster("echo", &[echo], ""),
            static_cluster("dead", &[support::dead_addr()], ""),
        ],
    ))
    .await;

    let mut s = within(
        5,
        tokio::net::TcpStream::connect(tern.listener_addr("ok").unwrap()),
    )
    .await
    .unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    within(5, s.read_exact(&mut buf)).await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(5, s.read_to_end(&mut rest)).await.unwrap();
    let ok = json_lines(&ok_log, 1).await.remove(0);
    assert_eq!(ok["code"], 0);
    assert_eq!(ok["flags"], "-");
    assert_eq!((&ok["rx"], &ok["tx"]), (&5.into(), &8.into()));
    assert_eq!(ok["host"], echo.to_string().as_str());
    assert_eq!(ok["cluster"], "echo");
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["protocol"], serde_json::Value::Null);
    assert_eq!(ok["type"], "TcpConnectionEnd");
    assert!(
        ok["ula"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );

    for name in ["dead", "missing"] {
        let mut s = within(
            5,
            tokio::net::TcpStream::connect(tern.listener_addr(name).unwrap()),
        )
        .await
        .unwrap();
        let mut rest = Vec::new();
        let _ = within(5, s.read_to_end(&mut rest)).await;
    }
    let dead = json_lines(&dead_log, 1).await.remove(0);
    assert_eq!(dead["flags"], "UF,URX", "{dead}");
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["failure"], "delayed_connect_error:_Connection_refused");
    assert_eq!(dead["host"], support::dead_addr().to_string().as_str());
    assert_eq!((&dead["rx"], &dead["tx"]), (&0.into(), &0.into()));
    let missing = json_lines(&missing_log, 1).await.remove(0);
    assert_eq!(missing["flags"], "NC");
    assert_eq!(missing["attempts"], 0);
    assert_eq!(missing["cluster"], serde_json::Value::Null);

    // access_log_flush_interval: records while the connection is open, then its end.
    let mut s = within(
        5,
        tokio::net::TcpStream::connect(tern.listener_addr("periodic").unwrap()),
    )
    .await
    .unwrap();
    s.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    within(5, s.read_exact(&mut one)).await.unwrap();
    let periodic = |v: &Vec<serde_json::Value>| {
        v.iter()
            .any(|l| l["type"] == "TcpPeriodic" && l["rx"] == 1 && l["tx"] == 1)
    };
    let mut got = Vec::new();
    for _ in 0..100 {
        got = json_lines(&periodic_log, 1).await;
        if periodic(&got) {
            break;
        }
    }
    assert!(periodic(&got), "{got:?}");
    drop(s);
    assert!(
        support::eventually(10, || {
            tern::access_log::flush_all();
            std::fs::read_to_string(&periodic_log)
                .unwrap_or_default()
                .contains("TcpConnectionEnd")
        })
        .await
    );
    for p in [ok_log, dead_log, missing_log, periodic_log] {
        let _ = std::fs::remove_file(p);
    }
}
