//! TLS through tern: termination on listeners (rustls clients, curl, openssl s_client),
//! mutual TLS and SAN checks, HTTP/2 by ALPN, origination to upstream clusters, SDS rotation,
//! a two-tern Istio-style mTLS hop, and `/certs`. Certificates are made at run time
//! (`support::certs`).

mod support;

#[path = "tls/admin.rs"]
mod admin;
#[path = "tls/downstream.rs"]
mod downstream;
#[path = "support/envoy.rs"]
mod envoy_support;
#[path = "tls/istio.rs"]
mod istio;
#[path = "tls/mesh.rs"]
mod mesh;
#[path = "tls/upstream.rs"]
mod upstream_tls;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use support::certs::{Ca, Cert};
use support::within;

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
pub fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// `tls_certificates` entry with inline PEM (YAML flow mapping).
pub fn inline_cert(c: &Cert) -> String {
    format!(
        "{{ certificate_chain: {{ inline_string: {} }}, private_key: {{ inline_string: {} }} }}",
        q(&c.cert_pem),
        q(&c.key_pem)
    )
}

/// A `transport_socket` with a `DownstreamTlsContext` (YAML at filter chain indentation, 6).
/// `extra_common` / `extra_ctx` are flow-mapping fields added to the common and the outer
/// context (e.g. `alpn_protocols: [h2]`).
pub fn downstream_tls(
    cert: &Cert,
    validation: Option<String>,
    extra_common: &str,
    extra_ctx: &str,
) -> String {
    let vc = validation
        .map(|v| format!(", validation_context: {v}"))
        .unwrap_or_default();
    format!(
        r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {{ tls_certificates: [{}]{vc}{extra_common} }}
          {extra_ctx}
"#,
        inline_cert(cert)
    )
}

/// A validation context trusting `ca`, with more fields (`, match_typed_subject_alt_names: ...`).
pub fn trust(ca: &Ca, extra: &str) -> String {
    format!(
        "{{ trusted_ca: {{ inline_string: {} }}{extra} }}",
        q(&ca.cert_pem)
    )
}

/// A listener with one filter chain: `transport_socket` YAML then an HCM routing everything to
/// `cluster`, access log to `log` when given.
pub fn tls_http_listener(
    name: &str,
    transport_socket: &str,
    cluster: &str,
    log: Option<&std::path::Path>,
) -> String {
    let access_log = log
        .map(|p| {
            support::logs::file_access_log(
                p,
                r#"{ json_format: { peer_uri: "%DOWNSTREAM_PEER_URI_SAN%", local_uri: "%DOWNSTREAM_LOCAL_URI_SAN%", peer_subject: "%DOWNSTREAM_PEER_SUBJECT%", version: "%DOWNSTREAM_TLS_VERSION%", cipher: "%DOWNSTREAM_TLS_CIPHER%", sni: "%REQUESTED_SERVER_NAME%", protocol: "%PROTOCOL%", up_peer_uri: "%UPSTREAM_PEER_URI_SAN%", up_version: "%UPSTREAM_TLS_VERSION%" } }"#,
                "",
                10,
            )
        })
        .map(|a| format!("          access_log:\n{a}"))
        .unwrap_or_default();
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
{access_log}
          route_config:
            name: {name}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: {cluster} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{transport_socket}"#
    )
}

/// A rustls client configuration trusting `ca`, presenting `cert` if given, offering `alpn`.
pub fn client_config(ca: &Ca, cert: Option<&Cert>, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der.clone())).expect("CA");
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let mut cfg = match cert {
        Some(c) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(c.der.clone())],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("key"),
            )
            .expect("client cert"),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// What a TLS request got back.
#[derive(Debug)]
pub struct TlsGot {
    pub status: u16,
    pub body: String,
    pub alpn: Option<String>,
    pub peer_der: Vec<u8>,
}

/// One HTTP request over a new TLS connection to `addr` with SNI `sni`: HTTP/2 if ALPN gives
/// `h2`, else HTTP/1.1. Errors (handshake refused) come back as text.
pub async fn tls_get(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
    path: &str,
) -> Result<TlsGot, String> {
    let tcp = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let tls = within(5, tokio_rustls::TlsConnector::from(cfg).connect(name, tcp))
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let alpn = conn
        .alpn_protocol()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let peer_der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let req = http::Request::get(format!("https://{sni}{path}"))
        .header("host", sni)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = if alpn.as_deref() == Some("h2") {
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        within(10, send.send_request(req))
            .await
            .map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = path.parse().expect("path");
        within(10, send.send_request(req))
            .await
            .map_err(|e| e.to_string())?
    };
    let status = resp.status().as_u16();
    let body = within(10, resp.into_body().collect())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(TlsGot {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        alpn,
        peer_der,
    })
}

/// Write `text` to a new file under the temp dir; the path.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write temp file");
    p
}

/// A TLS upstream (HTTP/1.1 and HTTP/2 by ALPN) with `cert`, asking for client certificates
/// signed by `client_ca` when given. It answers every request with `sni: <name>`,
/// `alpn: <protocol>`, `version: <HTTP version>`, `peer: <client URI SANs>`, `path: <path>`
/// and `len: <request body bytes>` lines (the body is read on `/len` only).
pub async fn tls_upstream(
    cert: &Cert,
    client_ca: Option<&Ca>,
    alpn: &[&str],
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let b = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(ca.der.clone())).expect("CA");
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("verifier");
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    let mut cfg = b
        .with_single_cert(
            vec![CertificateDer::from(cert.der.clone())],
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key"),
        )
        .expect("server cert");
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, conn) = tls.get_ref();
                let facts = format!(
                    "sni: {}\nalpn: {}\npeer: {}\n",
                    conn.server_name().unwrap_or("-"),
                    conn.alpn_protocol()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .unwrap_or("-".into()),
                    conn.peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| tern::tls::cert::CertSummary::parse(c))
                        .map(|s| s.uri_sans.join(","))
                        .unwrap_or("-".into()),
                );
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let facts = facts.clone();
                        async move {
                            let version = req.version();
                            let path = req.uri().path().to_owned();
                            // `/len` reads the request body and reports its length.
                            let len = if path == "/len" {
                                use http_body_util::BodyExt;
                                req.into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().len())
                                    .unwrap_or(0)
                            } else {
                                0
                            };
                            let body =
                                format!("{facts}version: {version:?}\npath: {path}\nlen: {len}\n");
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    (addr, task)
}

/// A line `name: value` of a body.
pub fn line<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}
