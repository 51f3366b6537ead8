//! The TLS inspector choosing tcp_proxy filter chains: by SNI (exact and wildcard), by ALPN,
//! TLS passthrough (the client's handshake completes with a test-side rustls server through
//! tern, which never terminates TLS), plaintext on the same listener, and the listener filter
//! timeout for clients that send nothing.

use crate::support::{bootstrap, eventually, start_tern, static_cluster, upstream, within};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server (rustls) for `names` with a self-signed certificate: after the handshake it
/// writes `<greeting> <negotiated ALPN or ->` and closes.
async fn tls_upstream(
    names: &[&str],
    greeting: &'static str,
) -> (SocketAddr, CertificateDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let alpn = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_else(|| "-".into());
                let _ = tls.write_all(format!("{greeting} {alpn}").as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, cert)
}

/// A TLS client (rustls) through `addr` with this SNI and ALPN, trusting `roots`: the whole
/// reply, or the error that ended the handshake or the read.
async fn tls_get(
    addr: SocketAddr,
    sni: &str,
    alpn: &[&str],
    roots: &[&CertificateDer<'static>],
) -> std::io::Result<String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok(out)
}

/// A filter chain with this `filter_chain_match` (flow YAML) and a tcp_proxy to `cluster`.
fn chain(matcher: &str, cluster: &str) -> String {
    format!(
        r#"
    - filter_chain_match: {matcher}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {cluster}
          cluster: {cluster}"#
    )
}

/// A listener named `name` with a TLS inspector, `extra` listener fields and these chains.
fn inspected_listener(name: &str, extra: &str, chains: &[String]) -> String {
    format!(
        r#"
  - name: {name}
    stat_prefix: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
{extra}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
    filter_chains:{}
"#,
        chains.concat()
    )
}

#[tokio::test]
async fn sni_selects_the_chain_and_tls_passes_through() {
    let (a, a_cert) = tls_upstream(&["a.example.com"], "A").await;
    let (b, b_cert) = tls_upstream(&["*.b.example.com"], "B").await;
    let (echo, _t) = upstream::tcp_echo().await;
    let listener = inspected_listener(
        "sni",
        "",
        &[
            chain("{ server_names: [a.example.com] }", "a"),
            chain("{ server_names: [\"*.b.example.com\"] }", "b"),
            chain("{ transport_protocol: raw_buffer }", "echo"),
        ],
    );
    let tern = start_tern(&bootstrap(
        &[listener],
        &[
            static_cluster("a", &[a], ""),
            static_cluster("b", &[b], ""),
            static_cluster("echo", &[echo], ""),
        ],
    ))
    .await;
    let addr = tern.listener_addr("sni").unwrap();
    let roots = [&a_cert, &b_cert];
    // The handshake is the upstream's: its certificate, its ALPN, end to end through tern.
    let got = within(10, tls_get(addr, "a.example.com", &["h2"], &roots)).await;
    assert_eq!(got.unwrap(), "A h2");
    let got = within(10, tls_get(addr, "x.b.example.com", &[], &roots)).await;
    assert_eq!(got.unwrap(), "B -");
    // A server name no chain lists falls to the catch-all chain, which wants raw_buffer: no
    // chain matches and the connection is closed (Envoy does not go back a step).
    let got = within(10, tls_get(addr, "c.example.com", &[], &roots)).await;
    assert!(got.is_err(), "{got:?}");

    // Plaintext on the same listener reaches the raw_buffer chain, bytes intact.
    let mut s = within(5, TcpStream::connect(addr)).await.unwrap();
    s.write_all(b"plain bytes").await.unwrap();
    let mut buf = [0u8; 11];
    within(5, s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"plain bytes");
    drop(s);

    let stats = &tern.world.stats;
    for (name, want) in [
        ("tls_inspector.tls_found", 3),
        ("tls_inspector.sni_found", 3),
        ("tls_inspector.alpn_found", 1),
        ("tls_inspector.alpn_not_found", 2),
        ("tls_inspector.tls_not_found", 1),
        ("listener.sni.no_filter_chain_match", 1),
        // Envoy counts only the connections a filter chain took.
        ("listener.sni.downstream_cx_total", 3),
        ("tcp.a.downstream_cx_total", 1),
        ("tcp.b.downstream_cx_total", 1),
        ("tcp.echo.downstream_cx_total", 1),
    ] {
        assert_eq!(stats.counter_value(name), Some(want), "{name}");
    }
    assert_eq!(
        stats.gauge_value("listener.sni.downstream_pre_cx_active"),
        Some(0)
    );
}

#[tokio::test]
async fn alpn_selects_the_chain() {
    let (h2, cert) = tls_upstream(&["svc.example.com"], "h2-chain").await;
    let (h1, _) = tls_upstream(&["svc.example.com"], "h1-chain").await;
    // Both upstreams serve the same name with different keys: trust the one each chain goes
    // to, so a wrong chain fails the handshake.
    let listener = inspected_listener(
        "alpn",
        "",
        &[
            chain("{ application_protocols: [http/1.1] }", "h1"),
            chain("{ application_protocols: [h2] }", "h2"),
        ],
    );
    let tern = start_tern(&bootstrap(
        &[listener],
        &[
            static_cluster("h1", &[h1], ""),
            static_cluster("h2", &[h2], ""),
        ],
    ))
    .await;
    let addr = tern.listener_addr("alpn").unwrap();
    // The client's first protocol that a chain lists decides, whatever the chains' order.
    let got = within(
        10,
        tls_get(addr, "svc.example.com", &["h2", "http/1.1"], &[&cert]),
    )
    .await;
    assert_eq!(got.unwrap(), "h2-chain h2");
    let got = within(
        10,
        tls_get(addr, "svc.example.com", &["http/1.1"], &[&cert]),
    )
    .await;
    assert!(
        got.is_err(),
        "the http/1.1 chain's upstream has another key: {got:?}"
    );
    assert!(
        eventually(5, || tern
            .world
            .stats
            .counter_value("tcp.h1.downstream_cx_total")
            == Some(1))
        .await
    );
    // No ALPN: neither chain.
    let got = within(10, tls_get(addr, "svc.example.com", &[], &[&cert])).await;
    assert!(got.is_err());
    assert_eq!(
        tern.world
            .stats
            .counter_value("listener.alpn.no_filter_chain_match"),
        Some(1)
    );
}

/// A server that speaks first (as MySQL or SMTP do): it greets and closes.
async fn greeter() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"220 hello\r\n").await;
            let _ = s.shutdown().await;
        }
    });
    addr
}

#[tokio::test]
async fn silent_clients_meet_the_listener_filter_timeout() {
    let up = greeter().await;
    let listeners = [
        inspected_listener(
            "cont",
            "    listener_filters_timeout: 0.2s\n    continue_on_listener_filters_timeout: true",
            &[chain("{}", "greeter")],
        ),
        inspected_listener(
            "stop",
            "    listener_filters_timeout: 0.2s",
            &[chain("{}", "greeter")],
        ),
    ];
    let (echo, _t) = upstream::tcp_echo().await;
    let listeners = [
        listeners[0].clone(),
        listeners[1].clone(),
        inspected_listener(
            "partial",
            "    listener_filters_timeout: 0.2s\n    continue_on_listener_filters_timeout: true",
            &[chain("{}", "echo")],
        ),
    ];
    let tern = start_tern(&bootstrap(
        &listeners,
        &[
            static_cluster("greeter", &[up], ""),
            static_cluster("echo", &[echo], ""),
        ],
    ))
    .await;
    let stats = &tern.world.stats;

    // A client that stops inside a record header: after the timeout the bytes the inspector
    // peeked at reach the upstream.
    let mut s = within(
        5,
        TcpStream::connect(tern.listener_addr("partial").unwrap()),
    )
    .await
    .unwrap();
    s.write_all(b"\x16\x03\x01\x00").await.unwrap();
    let mut buf = [0u8; 4];
    within(10, s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"\x16\x03\x01\x00");
    assert_eq!(
        stats.counter_value("listener.partial.downstream_pre_cx_timeout"),
        Some(1)
    );

    // With continue_on_listener_filters_timeout the server-first protocol works: the client
    // waits, the inspector gives up, the chain is chosen as raw_buffer.
    let mut s = within(5, TcpStream::connect(tern.listener_addr("cont").unwrap()))
        .await
        .unwrap();
    let mut out = Vec::new();
    within(10, s.read_to_end(&mut out)).await.unwrap();
    assert_eq!(out, b"220 hello\r\n");
    assert_eq!(
        stats.counter_value("listener.cont.downstream_pre_cx_timeout"),
        Some(1)
    );

    // Without it, the connection is closed and never reaches the chain.
    let mut s = within(5, TcpStream::connect(tern.listener_addr("stop").unwrap()))
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = within(10, s.read_to_end(&mut out)).await;
    assert!(out.is_empty());
    assert_eq!(
        stats.counter_value("listener.stop.downstream_pre_cx_timeout"),
        Some(1)
    );
    assert_eq!(
        stats.counter_value("listener.stop.downstream_cx_total"),
        Some(0)
    );
    assert_eq!(
        stats.counter_value("tcp.greeter.downstream_cx_total"),
        Some(1)
    );
    assert_eq!(stats.counter_value("tls_inspector.tls_not_found"), Some(0));
}
