//! Recording paths beyond the plain HTTP request: gRPC, TCP, limits, buckets, rotation.

use super::*;

#[test]
fn grpc_status_comes_from_trailers_headers_or_the_http_status() {
    let store = Store::new();
    let m = metrics(server_node_metadata(), &store);
    let stats = m.filter(&Settings::new(false, ListenerDirection::Inbound), &store);
    let mut req = HeaderMap::new();
    req.insert(
        "content-type",
        HeaderValue::from_static("application/grpc+proto"),
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    let base = HttpObservation {
        request_headers: Some(&req),
        response_code: Some(200),
        ..Default::default()
    };
    stats.record_http(&HttpObservation {
        response_trailers: Some(&trailers),
        ..base
    });
    stats.record_http(&base);
    stats.record_http(&HttpObservation {
        response_code: Some(503),
        ..base
    });
    let mut text = String::new();
    m.render_prometheus(&mut text);
    let (_, samples) = parse(&text);
    let mut got: Vec<(String, String, String)> = sample(&samples, "istio_requests_total")
        .iter()
        .map(|s| {
            let get = |n: &str| s.1.iter().find(|(k, _)| k == n).unwrap().1.clone();
            (
                get("request_protocol"),
                get("response_code"),
                get("grpc_response_status"),
            )
        })
        .collect();
    got.sort();
    let want = [
        ("grpc", "200", "14"),
        ("grpc", "200", "2"),
        ("grpc", "503", "14"),
    ];
    assert_eq!(got, want.map(|(a, b, c)| (a.into(), b.into(), c.into())));
    assert!(!is_grpc(None));
    let mut web = HeaderMap::new();
    web.insert(
        "content-type",
        HeaderValue::from_static("application/grpc-web"),
    );
    assert!(!is_grpc(Some(&web)));
}

#[test]
fn tcp_connections_report_opened_bytes_and_closed() {
    let store = Store::new();
    let m = metrics(server_node_metadata(), &store);
    let stats = m.filter(&Settings::new(false, ListenerDirection::Inbound), &store);
    assert_eq!(stats.tcp_reporting_duration(), Duration::from_secs(5));
    let mut conn = stats.tcp_connection();
    let mut obs = TcpObservation::default();
    conn.report(&obs);
    obs.sent_bytes = 100;
    obs.received_bytes = 40;
    conn.report(&obs);
    obs.sent_bytes = 120;
    obs.received_bytes = 60;
    // Flags seen at close do not change the labels fixed at the first report.
    obs.response_flags = "UF";
    conn.close(&obs);
    let mut text = String::new();
    m.render_prometheus(&mut text);
    let (_, samples) = parse(&text);
    let value = |n: &str| sample(&samples, n)[0].2.clone();
    assert_eq!(value("istio_tcp_connections_opened_total"), "1");
    assert_eq!(value("istio_tcp_connections_closed_total"), "1");
    assert_eq!(value("istio_tcp_sent_bytes_total"), "120");
    assert_eq!(value("istio_tcp_received_bytes_total"), "60");
    let labels = &sample(&samples, "istio_tcp_sent_bytes_total")[0].1;
    assert_eq!(labels.len(), 23);
    assert_eq!(
        labels[19..],
        expected(&[
            ("destination_cluster", "server-cluster"),
            ("request_protocol", "tcp"),
            ("response_flags", "-"),
            ("connection_security_policy", "none"),
        ])
    );
    // A connection that reports only at close still counts as opened.
    let mut late = stats.tcp_connection();
    late.report(&TcpObservation::default());
    stats.tcp_connection().close(&TcpObservation {
        response_flags: "UF",
        ..Default::default()
    });
    drop(late);
    let mut text = String::new();
    m.render_prometheus(&mut text);
    assert!(text.contains(",response_flags=\"UF\",connection_security_policy=\"none\"} 1\n"));
}

#[test]
fn the_series_cap_holds_and_counts() {
    let store = Store::new();
    let opts = Options {
        max_series: 5,
        max_label_value_len: 16,
    };
    let m = IstioMetrics::new(node(server_node_metadata()), opts, &store);
    let stats = m.filter(&Settings::new(false, ListenerDirection::Inbound), &store);
    for i in 0..50 {
        let host = format!("host-{i}");
        stats.record_http(&HttpObservation {
            authority: Some(&host),
            ..Default::default()
        });
    }
    assert_eq!(m.series_count(), 5);
    assert_eq!(
        store.counter_value("tern.istio_stats.series_overflow"),
        Some(46)
    );
    // Long values are cut at a character boundary.
    let m = IstioMetrics::new(
        node(server_node_metadata()),
        Options {
            max_label_value_len: 10,
            ..Default::default()
        },
        &store,
    );
    let stats = m.filter(&Settings::new(false, ListenerDirection::Inbound), &store);
    stats.record_http(&HttpObservation {
        authority: Some("ééééééééé.example"),
        ..Default::default()
    });
    let mut text = String::new();
    m.render_prometheus(&mut text);
    assert!(text.contains("destination_service=\"ééééé\""), "{text}");
    assert!(
        store
            .counter_value("tern.istio_stats.label_truncated")
            .unwrap()
            >= 2
    );
}

#[test]
fn rotation_expires_idle_label_sets() {
    let store = Store::new();
    let m = metrics(server_node_metadata(), &store);
    let stats = m.filter(&Settings::new(false, ListenerDirection::Inbound), &store);
    let obs = |host: &'static str| HttpObservation {
        authority: Some(host),
        ..Default::default()
    };
    stats.record_http(&obs("old"));
    stats.record_http(&obs("kept"));
    let generation = m.rotate();
    stats.record_http(&obs("kept"));
    assert_eq!(m.delete_generations_before(generation), 1);
    let flat = flat(&m);
    assert_eq!(flat.counters.len(), 1);
    assert!(flat.counters[0].name.contains("destination_service.kept."));
    assert_eq!(flat.counters[0].value, 2);
    assert_eq!(flat.gauges.len(), 1, "istio_build stays");
}

#[test]
fn expressions_read_the_observation() {
    let store = Store::new();
    let m = metrics(server_node_metadata(), &store);
    let mut settings = Settings::new(false, ListenerDirection::Inbound);
    let dims = [
        ("user", "request.headers['X-User']"),
        ("bad", "request.headers['bad name\\n']"),
        ("method", "request.method + ' ' + request.url_path"),
        ("port", "string(destination.port)"),
        ("peer_app", "filter_state.downstream_peer.app"),
        ("direction", "xds.listener_direction"),
        ("code_class", "response.code >= 500 ? '5xx' : 'other'"),
    ];
    settings.metrics = vec![MetricOverride {
        name: "requests_total".into(),
        dimensions: dims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }];
    let stats = m.filter(&settings, &store);
    let mut req = HeaderMap::new();
    req.insert("x-user", HeaderValue::from_static("jason"));
    req.append("x-user", HeaderValue::from_static("again"));
    let peer = WorkloadMetadata {
        app_name: "productpage".into(),
        ..Default::default()
    };
    stats.record_http(&HttpObservation {
        request_headers: Some(&req),
        method: Some("GET"),
        path: Some("/reviews/1?x=y"),
        response_code: Some(503),
        downstream_peer: Some(&peer),
        connection: ConnectionInfo {
            destination: Some("10.0.0.1:9080".parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    });
    let mut text = String::new();
    m.render_prometheus(&mut text);
    let (_, samples) = parse(&text);
    let added: Vec<(String, String)> = samples[0].1[25..].to_vec();
    assert_eq!(
        added,
        expected(&[
            ("bad", "unknown"),
            ("code_class", "5xx"),
            ("direction", "1"),
            ("method", "GET /reviews/1"),
            ("peer_app", "productpage"),
            ("port", "9080"),
            ("user", "jason,again"),
        ])
    );
}
