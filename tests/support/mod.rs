//! Shared pieces of the integration tests: tern in-process, real upstream servers and clients.
//! Everything binds port 0 on loopback.
#![allow(dead_code)]

pub mod ads;
pub mod certs;
pub mod logs;
pub mod prom;
pub mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tern::server::{Options, Server};

/// Wrap every await of a test in this: no test hangs.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

/// Start tern in-process on a bootstrap YAML.
pub async fn start_tern(yaml: &str) -> Server {
    let options = Options {
        config_yaml: Some(yaml.to_owned()),
        drain_time_s: 1,
        ..Options::default()
    };
    Server::start(options).await.expect("tern starts")
}

/// A listener with an HTTP connection manager, inline routes (YAML of `virtual_hosts`), on
/// 127.0.0.1:0. `hcm_extra` is extra YAML fields for the connection manager (indented by 10).
pub fn http_listener(name: &str, virtual_hosts: &str, hcm_extra: &str) -> String {
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
{hcm_extra}
          route_config:
            name: {name}
            virtual_hosts:
{virtual_hosts}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// A STATIC cluster with these endpoints. `extra` is more YAML fields (indented by 4).
pub fn static_cluster(name: &str, endpoints: &[SocketAddr], extra: &str) -> String {
    let mut eps = String::new();
    for e in endpoints {
        eps.push_str(&format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: \"{}\", port_value: {} }} }} }}\n",
            e.ip(),
            e.port()
        ));
    }
    format!(
        r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
{extra}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
{eps}"#
    )
}

/// A bootstrap from listener and cluster snippets.
pub fn bootstrap(listeners: &[String], clusters: &[String]) -> String {
    let mut y = String::from("static_resources:\n  listeners:\n");
    for l in listeners {
        y.push_str(l);
    }
    y.push_str(if clusters.is_empty() {
        "  clusters: []\n"
    } else {
        "  clusters:\n"
    });
    for c in clusters {
        y.push_str(c);
    }
    y
}

/// A plain HTTP/1.1 client.
pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// An HTTP/1.1 client with keep-alive.
pub fn h1_client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge client.
pub fn h2_client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Send a request and read the whole response.
pub async fn send(client: &Client, req: http::Request<Full<Bytes>>) -> Got {
    let resp = within(10, client.request(req)).await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = within(10, resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// GET `path` on `addr` with a Host header.
pub async fn get(client: &Client, addr: SocketAddr, host: &str, path: &str) -> Got {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(client, req).await
}

/// A request builder aimed at tern.
pub fn req(addr: SocketAddr, path: &str) -> http::request::Builder {
    http::Request::get(format!("http://{addr}{path}"))
}

/// Open a raw TCP connection, write `bytes`, read until EOF (or `max` bytes).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = within(10, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Open a raw TCP connection, write `bytes`, read until the end of the response head.
pub async fn raw_head(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = within(10, s.read(&mut buf)).await.expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP/1.1 connection over a given stream, for tests that need one connection.
pub async fn h1_conn(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

/// Is this command on PATH?
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Poll `f` until it returns true or `secs` pass.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// A loopback address where nothing listens, for connect failures. The port stays bound (but
/// not listening) for the life of the test binary, so no other test can be given it.
pub fn dead_addr() -> SocketAddr {
    static DEAD: std::sync::OnceLock<(SocketAddr, socket2::Socket)> = std::sync::OnceLock::new();
    DEAD.get_or_init(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        let addr = s.local_addr().expect("addr").as_socket().expect("inet");
        (addr, s)
    })
    .0
}

/// A Python interpreter that can import `module`: the one named by the environment variable
/// `env`, else `target/envoy-venv/bin/python`, where `.ci/run` installs the test tools.
/// Without one the caller skips with a notice, except in CI, where this fails.
pub fn python_with(env: &str, module: &str) -> Option<std::path::PathBuf> {
    let candidates = std::env::var_os(env)
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/envoy-venv/bin/python")
        ]);
    for p in candidates {
        let ok = std::process::Command::new(&p)
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(p);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but no Python that imports {module}: set {env}"
    );
    eprintln!("notice: no Python that imports {module} ({env}); skipping what needs it");
    None
}
