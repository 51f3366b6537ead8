//! `envoy.filters.http.compressor` through tern: a real upstream answering JSON and text,
//! tern with gzip, brotli and zstd filters, and real clients (hyper over HTTP/1.1 and HTTP/2,
//! curl `--compressed`) that decode what they get and compare it byte for byte.

use super::support::{
    self, bootstrap, h1_client, h2_client, send, start_tern, static_cluster, within,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;
type Chunks = mpsc::Receiver<Bytes>;

/// The JSON document the upstream serves on `/json` (about 4 KiB).
fn json_doc() -> String {
    let items: Vec<String> = (0..60)
        .map(|i| format!(r#"{{"id":{i},"name":"item-{i}","tags":["a","b","c"],"ok":true}}"#))
        .collect();
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

/// Prometheus text, as `/stats/prometheus` answers.
fn prometheus_text() -> String {
    (0..80)
        .map(|i| {
            format!("# TYPE envoy_counter_{i} counter\nenvoy_counter_{i}{{label=\"x\"}} {i}\n")
        })
        .collect()
}

/// An upstream for compression: `/json` (application/json), `/text` (text/plain),
/// `/small` (10 bytes), `/stats/prometheus` (Prometheus text), and `/stream`: a chunked
/// text body whose chunks the test sends through the channel given to [`upstream`] (the body
/// ends when the test drops its sender).
async fn upstream(stream: Option<Chunks>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stream = Arc::new(Mutex::new(stream));
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let stream = stream.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let stream = stream.clone();
                        async move { Ok::<_, Infallible>(answer(req.uri().path(), &stream)) }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

fn answer(path: &str, stream: &Mutex<Option<Chunks>>) -> http::Response<BoxBody> {
    let full = |ct: &str, body: String| {
        http::Response::builder()
            .header("content-type", ct)
            .header("content-length", body.len())
            .header("etag", "\"v1\"")
            .body(Full::new(Bytes::from(body)).boxed())
            .expect("response")
    };
    match path {
        "/json" => full("application/json", json_doc()),
        "/text" => full("text/plain; charset=utf-8", "plain text line\n".repeat(100)),
        "/small" => full("text/plain", "tiny body\n".into()),
        "/stats/prometheus" => full(
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus_text(),
        ),
        "/stream" => {
            let rx = stream
                .lock()
                .expect("lock")
                .take()
                .expect("one /stream request");
            let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            http::Response::builder()
                .header("content-type", "text/plain")
                .body(StreamBody::new(frames).boxed())
                .expect("response")
        }
        _ => http::Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()).boxed())
            .expect("response"),
    }
}

/// A listener whose connection manager has these HTTP filters (YAML list items, indented by
/// 10) before the router, and routes everything to cluster `up`.
fn listener(filters: &str) -> String {
    format!(
        r#"
  - name: c
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: c
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: up }}
          http_filters:
{filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

fn compressor(name: &str, library: &str) -> String {
    format!(
        r#"          - name: envoy.filters.http.compressor.{name}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
              compressor_library:
                name: {name}
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.compression.{library}
"#
    )
}

/// brotli, zstd and gzip filters, in Istio's order.
fn three_filters() -> String {
    [
        compressor("br", "brotli.compressor.v3.Brotli"),
        compressor("zstd", "zstd.compressor.v3.Zstd"),
        compressor("gzip", "gzip.compressor.v3.Gzip"),
    ]
    .concat()
}

async fn tern_with(filters: &str, up: SocketAddr) -> (tern::server::Server, SocketAddr) {
    let tern = start_tern(&bootstrap(
        &[listener(filters)],
        &[static_cluster("up", &[up], "")],
    ))
    .await;
    let addr = tern.listener_addr("c").expect("bound");
    (tern, addr)
}

/// Decode a whole body in this content coding.
fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            let mut d = flate2::write::GzDecoder::new(&mut out);
            d.write_all(data).expect("gzip data");
            d.finish().expect("gzip end");
        }
        "br" => {
            let mut d = brotli::DecompressorWriter::new(&mut out, 4096);
            d.write_all(data).expect("brotli data");
            d.close().expect("brotli end");
        }
        "zstd" => {
            let mut d = zstd::stream::write::Decoder::new(&mut out).expect("zstd");
            d.write_all(data).expect("zstd data");
            d.flush().expect("zstd end");
        }
        other => panic!("unexpected encoding {other}"),
    }
    out
}

async fn fetch(
    client: &support::Client,
    addr: SocketAddr,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> (http::response::Parts, Bytes) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(a) = accept {
        req = req.header("accept-encoding", a);
    }
    let resp = within(
        10,
        client.request(req.body(Full::new(Bytes::new())).expect("request")),
    )
    .await
    .expect("response");
    let (parts, body) = resp.into_parts();
    let body = within(10, body.collect()).await.expect("body").to_bytes();
    (parts, body)
}

fn header<'a>(p: &'a http::response::Parts, name: &str) -> Option<&'a str> {
    p.headers.get(name).map(|v| v.to_str().expect("ascii"))
}

#[tokio::test]
async fn each_encoding_round_trips_over_http1_and_http2() {
    let (up, _task) = upstream(None).await;
    let (tern, addr) = tern_with(&three_filters(), up).await;
    let doc = json_doc();
    for client in [h1_client(), h2_client()] {
        for (accept, want) in [
            ("gzip", "gzip"),
            ("br", "br"),
            ("zstd", "zstd"),
            ("zstd;q=0.5, br;q=0.9, gzip;q=0.1", "br"),
            ("*", "br"),
        ] {
            let (p, body) = fetch(&client, addr, "GET", "/json", Some(accept)).await;
            assert_eq!(p.status, 200);
            assert_eq!(header(&p, "content-encoding"), Some(want), "{accept}");
            assert_eq!(header(&p, "vary"), Some("Accept-Encoding"));
            assert_eq!(header(&p, "content-length"), None);
            // The upstream's strong ETag no longer names these bytes.
            assert_eq!(header(&p, "etag"), None);
            assert!(body.len() < doc.len() / 3, "{accept}: {} bytes", body.len());
            assert_eq!(decode(want, &body), doc.as_bytes(), "{accept}");
        }
    }
    let stats = &tern.world.stats;
    let used = |s: &str| {
        stats
            .counter_value(&format!("http.c.compressor.{s}"))
            .expect("stat")
    };
    assert_eq!(used("gzip.gzip.compressed"), 2);
    assert_eq!(used("br.brotli.compressed"), 6);
    assert_eq!(used("zstd.zstd.compressed"), 2);
    assert_eq!(used("br.brotli.header_wildcard"), 2);
    assert!(used("br.brotli.total_uncompressed_bytes") >= 6 * doc.len() as u64);
}

#[tokio::test]
async fn small_head_identity_and_no_accept_pass_unchanged() {
    let (up, _task) = upstream(None).await;
    let (tern, addr) = tern_with(&three_filters(), up).await;
    let client = h1_client();
    // Below the 30-byte minimum.
    let (p, body) = fetch(&client, addr, "GET", "/small", Some("gzip")).await;
    assert_eq!(
        (header(&p, "content-encoding"), &body[..]),
        (None, &b"tiny body\n"[..])
    );
    assert_eq!(header(&p, "content-length"), Some("10"));
    // HEAD: the length of the uncompressed body, no encoding.
    let (p, body) = fetch(&client, addr, "HEAD", "/json", Some("gzip")).await;
    assert_eq!(header(&p, "content-encoding"), None);
    assert_eq!(
        header(&p, "content-length"),
        Some(json_doc().len().to_string().as_str())
    );
    assert!(body.is_empty());
    // No Accept-Encoding, identity, an unknown coding: the body as it is, Vary set.
    for accept in [None, Some("identity"), Some("deflate"), Some("gzip;q=0")] {
        let (p, body) = fetch(&client, addr, "GET", "/text", accept).await;
        assert_eq!(header(&p, "content-encoding"), None, "{accept:?}");
        assert_eq!(header(&p, "vary"), Some("Accept-Encoding"), "{accept:?}");
        assert_eq!(
            body,
            "plain text line\n".repeat(100).as_bytes(),
            "{accept:?}"
        );
    }
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("http.c.compressor.gzip.gzip.no_accept_header"),
        Some(1)
    );
    assert_eq!(
        stats.counter_value("http.c.compressor.gzip.gzip.content_length_too_small"),
        Some(1)
    );
}

/// A slow body reaches the client as it is produced: the upstream sends its second chunk
/// only after the client has decoded the first.
#[tokio::test]
async fn a_streamed_body_is_compressed_incrementally() {
    let (tx, rx) = mpsc::channel(4);
    let (up, _task) = upstream(Some(rx)).await;
    let (_tern, addr) = tern_with(&compressor("gzip", "gzip.compressor.v3.Gzip"), up).await;
    let client = h1_client();
    let req = http::Request::get(format!("http://{addr}/stream"))
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let first = "the first part of a slow answer\n".repeat(4);
    tx.send(Bytes::from(first.clone())).await.expect("send");
    let resp = within(10, client.request(req)).await.expect("response");
    assert_eq!(
        resp.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let mut body = resp.into_body();
    let mut decoded = flate2::write::GzDecoder::new(Vec::new());
    while decoded.get_ref().len() < first.len() {
        let frame = within(10, body.frame())
            .await
            .expect("a frame before the end")
            .expect("ok");
        if let Ok(data) = frame.into_data() {
            decoded.write_all(&data).expect("gzip");
            decoded.flush().expect("flush");
        }
    }
    assert_eq!(decoded.get_ref().as_slice(), first.as_bytes());
    // Only now does the upstream send the rest and finish.
    tx.send(Bytes::from_static(b"and the rest\n"))
        .await
        .expect("send");
    drop(tx);
    let rest = within(10, body.collect()).await.expect("rest").to_bytes();
    decoded.write_all(&rest).expect("gzip");
    let all = decoded.finish().expect("gzip end");
    assert_eq!(all, format!("{first}and the rest\n").into_bytes());
}

/// curl with `--compressed` (it offers deflate, gzip, br and zstd) gets the exact bytes.
#[tokio::test]
async fn curl_compressed_gets_the_exact_bytes() {
    if !support::have("curl") {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is required in CI (.ci/run installs it)"
        );
        eprintln!("notice: no curl; skipping");
        return;
    }
    let (up, _task) = upstream(None).await;
    let (_tern, addr) = tern_with(&three_filters(), up).await;
    for (extra, encoding) in [(None, "gzip"), (Some("br"), "br"), (Some("zstd"), "zstd")] {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-s", "--compressed", "-D", "-", "--max-time", "10"]);
        if let Some(e) = extra {
            // Overrides the offer: one coding only.
            cmd.args(["-H", &format!("Accept-Encoding: {e}")]);
        }
        let out = within(15, cmd.arg(format!("http://{addr}/json")).output())
            .await
            .expect("curl runs");
        assert!(out.status.success(), "curl failed: {out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8 (curl decoded the body)");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-encoding: {encoding}")),
            "{head}"
        );
        assert_eq!(body, json_doc());
    }
}

/// Istio's 15090 listener exactly as pilot-agent's bootstrap has it (brotli, zstd and gzip
/// filters limited to Prometheus' content types): a scrape with `Accept-Encoding: gzip` gets
/// gzip. The route's cluster points at a test upstream (the admin API stands behind it in a
/// real sidecar).
#[tokio::test]
async fn istio_prometheus_listener_answers_gzip() {
    const BOOTSTRAP: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/istio/bootstrap_default_golden.json"
    );
    let (up, _task) = upstream(None).await;
    let text = std::fs::read_to_string(BOOTSTRAP).expect("testdata");
    let golden: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let mut listener = golden["static_resources"]["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["name"] == "0.0.0.0_15090")
        .expect("the 15090 listener")
        .clone();
    listener["address"]["socket_address"]["address"] = "127.0.0.1".into();
    listener["address"]["socket_address"]["port_value"] = 0.into();
    let config = serde_json::json!({
        "static_resources": {
            "listeners": [listener],
            "clusters": [{
                "name": "prometheus_stats",
                "type": "STATIC",
                "connect_timeout": "0.250s",
                "load_assignment": {"cluster_name": "prometheus_stats", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": up.ip().to_string(), "port_value": up.port()}}}}
                ]}]}
            }]
        }
    });
    let tern = start_tern(&config.to_string()).await;
    let addr = tern.listener_addr("0.0.0.0_15090").expect("bound");
    let client = h1_client();
    let (p, body) = fetch(&client, addr, "GET", "/stats/prometheus", Some("gzip")).await;
    assert_eq!(p.status, 200);
    assert_eq!(header(&p, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &body), prometheus_text().as_bytes());
    // What Prometheus itself would not ask for still works: brotli, and plain.
    let (p, body) = fetch(&client, addr, "GET", "/stats/prometheus", Some("br, gzip")).await;
    assert_eq!(header(&p, "content-encoding"), Some("br"));
    assert_eq!(decode("br", &body), prometheus_text().as_bytes());
    let got = send(
        &client,
        http::Request::get(format!("http://{addr}/stats/prometheus"))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(got.body, prometheus_text());
    assert_eq!(
        tern.world
            .stats
            .counter_value("http.stats.compressor.stats_gzip.gzip.response.compressed"),
        Some(1)
    );
}
