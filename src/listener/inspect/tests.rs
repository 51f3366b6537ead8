//! The inspectors over real loopback sockets: what they find, what they count, and that the
//! bytes they look at are still there for the network filter.

use super::*;
use crate::protocol::client_hello::build;
use crate::snapshot::compile_listener;
use crate::stats::Store;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A listener with `filters` (each `(name, typed_config)`) and `extra` top-level fields.
fn listener(
    store: &Store,
    filters: &[(&str, serde_json::Value)],
    extra: serde_json::Value,
) -> Arc<Listener> {
    let mut l = json!({
        "name": "l",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "listener_filters": filters.iter().map(|(name, c)| json!({"name": name, "typed_config": c})).collect::<Vec<_>>(),
        "filter_chains": [{"filters": [{
            "name": "tcp",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "t", "cluster": "c"
            }
        }]}]
    });
    if let (Some(l), Some(extra)) = (l.as_object_mut(), extra.as_object()) {
        l.extend(extra.clone());
    }
    let l: listener_pb::Listener = crate::config::resource_from_json(&l, true).unwrap();
    compile_listener(&l, store).unwrap()
}

fn tls() -> (&'static str, serde_json::Value) {
    tls_with(json!({}))
}

fn tls_with(extra: serde_json::Value) -> (&'static str, serde_json::Value) {
    let mut c = json!({"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    ("envoy.filters.listener.tls_inspector", c)
}

fn http() -> (&'static str, serde_json::Value) {
    (
        "envoy.filters.listener.http_inspector",
        json!({"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}),
    )
}

/// A connected pair: (client, server side).
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (server, _) = l.accept().await.unwrap();
    (client, server)
}

/// Run the listener's filters on the server side of a connection the client feeds with
/// `writes` (in that many writes), then half-closes if `close`.
async fn inspect(l: &Listener, writes: Vec<Vec<u8>>, close: bool) -> (Verdict, Detected, Vec<u8>) {
    let (mut client, server) = pair().await;
    let sent: Vec<u8> = writes.concat();
    let writer = tokio::spawn(async move {
        for w in writes {
            client.write_all(&w).await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        if close {
            client.shutdown().await.unwrap();
        }
        client
    });
    let mut d = Detected::default();
    let server = tokio::time::timeout(Duration::from_secs(10), run(server, l, Some(443), &mut d))
        .await
        .expect("inspectors did not finish");
    let _client = writer.await.unwrap();
    // Whatever the inspectors looked at is still there to read.
    let mut got = vec![0; sent.len()];
    let Some(mut server) = server else {
        return (Verdict::Close, d, got);
    };
    if !sent.is_empty() {
        tokio::time::timeout(Duration::from_secs(10), server.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, sent);
    }
    (Verdict::Continue, d, got)
}

#[tokio::test]
async fn client_hello_in_pieces_gives_sni_and_alpn_and_stays_readable() {
    let store = Store::new();
    let l = listener(&store, &[tls(), http()], json!({}));
    let hello = build(Some("a.example.com"), &["h2", "http/1.1"], 1500, 700);
    let pieces: Vec<Vec<u8>> = hello.chunks(333).map(<[u8]>::to_vec).collect();
    let (v, d, _) = inspect(&l, pieces, false).await;
    assert_eq!(v, Verdict::Continue);
    assert_eq!(
        d,
        Detected {
            server_name: Some("a.example.com".into()),
            transport_protocol: Some("tls"),
            application_protocols: vec!["h2".into(), "http/1.1".into()],
        }
    );
    for (stat, want) in [
        ("tls_inspector.tls_found", 1),
        ("tls_inspector.sni_found", 1),
        ("tls_inspector.alpn_found", 1),
        ("tls_inspector.tls_not_found", 0),
        // The HTTP inspector leaves TLS connections alone.
        ("http_inspector.http_not_found", 0),
    ] {
        assert_eq!(store.counter_value(stat), Some(want), "{stat}");
    }
}

#[tokio::test]
async fn waits_for_the_rest_of_a_split_hello() {
    let store = Store::new();
    let l = listener(&store, &[tls()], json!({}));
    let hello = build(Some("b.example.com"), &[], 0, 40);
    let (mut client, server) = pair().await;
    client.write_all(&hello[..50]).await.unwrap();
    let l2 = l.clone();
    let mut task = tokio::spawn(async move {
        let mut d = Detected::default();
        let v = run(server, &l2, None, &mut d).await;
        (v.is_some(), d)
    });
    // Half a ClientHello can never decide.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut task)
            .await
            .is_err()
    );
    client.write_all(&hello[50..]).await.unwrap();
    let (v, d) = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert!(v);
    assert_eq!(d.server_name.as_deref(), Some("b.example.com"));
    assert_eq!(store.counter_value("tls_inspector.alpn_not_found"), Some(1));
}

#[tokio::test]
async fn plaintext_is_raw_buffer_then_http() {
    let store = Store::new();
    let l = listener(&store, &[tls(), http()], json!({}));
    let (v, d, _) = inspect(
        &l,
        vec![b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()],
        false,
    )
    .await;
    assert_eq!(v, Verdict::Continue);
    assert_eq!(d.transport_protocol(), "raw_buffer");
    assert_eq!(d.application_protocols, ["http/1.1"]);
    assert_eq!(store.counter_value("tls_inspector.tls_not_found"), Some(1));
    assert_eq!(store.counter_value("http_inspector.http11_found"), Some(1));

    let (_, d, _) = inspect(
        &l,
        vec![crate::protocol::detect::H2_PREFACE.to_vec()],
        false,
    )
    .await;
    assert_eq!(d.application_protocols, ["h2c"]);
    let (_, d, _) = inspect(
        &l,
        vec![b"GET / HTTP/1.0\r".to_vec(), b"\n".to_vec()],
        false,
    )
    .await;
    assert_eq!(d.application_protocols, ["http/1.0"]);
    let (v, d, _) = inspect(&l, vec![b"\x00\x01binary\n".to_vec()], false).await;
    assert_eq!(v, Verdict::Continue);
    assert!(d.application_protocols.is_empty());
    assert_eq!(
        store.counter_value("http_inspector.http_not_found"),
        Some(1)
    );
    assert_eq!(store.counter_value("http_inspector.http2_found"), Some(1));
    assert_eq!(store.counter_value("http_inspector.http10_found"), Some(1));
}

#[tokio::test]
async fn peer_closing_before_a_decision_closes() {
    let store = Store::new();
    let l = listener(&store, &[tls(), http()], json!({}));
    let hello = build(Some("c.example.com"), &[], 0, 1 << 14);
    let (v, _, _) = inspect(&l, vec![hello[..20].to_vec()], true).await;
    assert_eq!(v, Verdict::Close);
    let (v, _, _) = inspect(&l, vec![], true).await;
    assert_eq!(v, Verdict::Close);
    // Plaintext that stops mid request line.
    let (v, _, _) = inspect(&l, vec![b"GET /".to_vec()], true).await;
    assert_eq!(v, Verdict::Close);
    assert_eq!(store.counter_value("tls_inspector.tls_found"), Some(0));
}

#[tokio::test]
async fn too_large_and_parse_errors_close() {
    let store = Store::new();
    let l = listener(
        &store,
        &[tls_with(
            json!({"max_client_hello_size": 1000, "initial_read_buffer_size": 300}),
        )],
        json!({}),
    );
    let big = build(Some("d.example.com"), &[], 2000, 1 << 14);
    let (v, _, _) = inspect(&l, vec![big], false).await;
    assert_eq!(v, Verdict::Close);
    assert_eq!(
        store.counter_value("tls_inspector.client_hello_too_large"),
        Some(1)
    );
    // Under the limit, in records that grow the window past its first size.
    let fits = build(Some("d.example.com"), &[], 600, 200);
    let (v, d, _) = inspect(&l, vec![fits], false).await;
    assert_eq!((v, d.transport_protocol()), (Verdict::Continue, "tls"));

    let strict = listener(
        &store,
        &[tls_with(
            json!({"close_connection_on_client_hello_parsing_errors": true}),
        )],
        json!({}),
    );
    let (v, _, _) = inspect(&strict, vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()], false).await;
    assert_eq!(v, Verdict::Close);
    assert_eq!(store.counter_value("tls_inspector.tls_not_found"), Some(1));
}

#[tokio::test]
async fn timeout_closes_or_continues() {
    for (cont, want) in [(false, Verdict::Close), (true, Verdict::Continue)] {
        let store = Store::new();
        let l = listener(
            &store,
            &[tls(), http()],
            json!({"listener_filters_timeout": "0.05s", "continue_on_listener_filters_timeout": cont}),
        );
        // A ClientHello that never completes: the timeout decides.
        let hello = build(Some("e.example.com"), &[], 0, 1 << 14);
        let (client, server) = pair().await;
        let mut c = client;
        c.write_all(&hello[..30]).await.unwrap();
        let mut d = Detected::default();
        let server = tokio::time::timeout(Duration::from_secs(10), run(server, &l, None, &mut d))
            .await
            .unwrap();
        assert_eq!(server.is_some(), want == Verdict::Continue);
        assert_eq!(d, Detected::default());
        if let Some(mut server) = server {
            // The bytes the inspector saw before giving up are still there for the chain.
            let mut buf = [0u8; 30];
            tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut buf))
                .await
                .expect("the peeked bytes are readable after the timeout")
                .unwrap();
            assert_eq!(&buf[..], &hello[..30]);
        }
        assert_eq!(
            store.counter_value("listener.127.0.0.1_0.downstream_pre_cx_timeout"),
            Some(1)
        );
    }
}

#[tokio::test]
async fn disabled_filters_are_skipped() {
    let store = Store::new();
    let (name, config) = tls();
    let mut l = json!({
        "name": "l",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "listener_filters": [{
            "name": name, "typed_config": config,
            "filter_disabled": {"destination_port_range": {"start": 443, "end": 444}}
        }],
        "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "t", "cluster": "c"}}]}]
    });
    let proto: listener_pb::Listener = crate::config::resource_from_json(&l, true).unwrap();
    let compiled = compile_listener(&proto, &store).unwrap();
    // `inspect` connects "to port 443": the TLS inspector does not run.
    let hello = build(Some("f.example.com"), &[], 0, 1 << 14);
    let (v, d, _) = inspect(&compiled, vec![hello], false).await;
    assert_eq!((v, d), (Verdict::Continue, Detected::default()));
    assert_eq!(store.counter_value("tls_inspector.tls_found"), Some(0));
    l["listener_filters"][0]["filter_disabled"]["destination_port_range"]["start"] = json!(444);
    l["listener_filters"][0]["filter_disabled"]["destination_port_range"]["end"] = json!(445);
    let proto: listener_pb::Listener = crate::config::resource_from_json(&l, true).unwrap();
    let compiled = compile_listener(&proto, &store).unwrap();
    let hello = build(Some("f.example.com"), &[], 0, 1 << 14);
    let (_, d, _) = inspect(&compiled, vec![hello], false).await;
    assert_eq!(d.server_name.as_deref(), Some("f.example.com"));
}
