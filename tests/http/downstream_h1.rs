//! The downstream side of HTTP/1.1 on tern's own codec: pipelining, `expect: 100-continue`,
//! the request headers timeout, a client that leaves in the middle of a request, the last
//! request of `max_requests_per_connection`, and codec errors.

use super::support::{
    self, bootstrap, http_listener, start_tern, static_cluster, upstream, within,
};
use super::vh;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTE: &str =
    "              - match: { prefix: / }\n                route: { cluster: up }\n";

async fn tern_with(
    hcm_extra: &str,
) -> (
    tern::server::Server,
    std::net::SocketAddr,
    upstream::Upstream,
) {
    let up = upstream::http("up").await;
    let tern = start_tern(&bootstrap(
        &[http_listener("l", &vh(ROUTE), hcm_extra)],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").expect("bound");
    (tern, addr, up)
}

/// The responses in `raw`, split on their status lines.
fn statuses(raw: &str) -> Vec<&str> {
    raw.match_indices("HTTP/1.1 ")
        .map(|(i, _)| &raw[i..i + 12])
        .collect()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_tern, addr, up) = tern_with("").await;
    let raw = support::raw(
        addr,
        b"GET /first HTTP/1.1\r\nhost: h\r\n\r\nPOST /second/echo HTTP/1.1\r\nhost: h\r\ncontent-length: 6\r\n\r\nsecondGET /third HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        statuses(&raw),
        ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 200"],
        "{raw}"
    );
    let first = raw.find("/first").expect("first answered");
    let second = raw.find("\r\n\r\nsecond").expect("second echoed");
    let third = raw.find("/third").expect("third answered");
    assert!(first < second && second < third, "{raw}");
    assert_eq!(up.requests(), 3);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let (_tern, addr, _up) = tern_with("").await;
    let mut s = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut interim = vec![0u8; b"HTTP/1.1 100 Continue\r\n\r\n".len()];
    within(5, s.read_exact(&mut interim)).await.expect("100");
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.expect("body");
    let mut rest = Vec::new();
    within(5, s.read_to_end(&mut rest)).await.expect("response");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.ends_with("\r\n\r\nhello"), "{rest}");
}

#[tokio::test]
async fn request_headers_timeout_answers_408() {
    let (tern, addr, up) = tern_with("          request_headers_timeout: 0.3s").await;
    let start = std::time::Instant::now();
    // The head never ends.
    let raw = support::raw(addr, b"GET / HTTP/1.1\r\nhost: h\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nrequest header timeout"), "{raw}");
    assert!(raw.contains("connection: close\r\n"), "{raw}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        tern.world
            .stats
            .counter_value("http.l.downstream_rq_header_timeout"),
        Some(1)
    );
    assert_eq!(up.requests(), 0);
    // A connection that sends nothing is not timed by it.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(b"GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    within(5, s.read_to_end(&mut out)).await.expect("read");
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test]
async fn a_client_that_leaves_resets_its_stream() {
    let (tern, addr, _up) = tern_with("").await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /delay/3000 HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .expect("write");
    let stats = &tern.world.stats;
    let active = || stats.gauge_value("http.l.downstream_rq_active");
    within(5, async {
        while active() != Some(1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(s);
    // The stream ends with the connection, not when the upstream answers 3 s later.
    within(1, async {
        while active() != Some(0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(stats.gauge_value("http.l.downstream_cx_active"), Some(0));
}

#[tokio::test]
async fn the_last_request_of_a_connection_says_close() {
    let (_tern, addr, up) =
        tern_with("          common_http_protocol_options: { max_requests_per_connection: 2 }")
            .await;
    // Three pipelined requests: two are answered, the second with `connection: close`, and
    // the connection ends.
    let raw = support::raw(
        addr,
        b"GET /1 HTTP/1.1\r\nhost: h\r\n\r\nGET /2 HTTP/1.1\r\nhost: h\r\n\r\nGET /3 HTTP/1.1\r\nhost: h\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), ["HTTP/1.1 200", "HTTP/1.1 200"], "{raw}");
    let second = &raw[raw.rfind("HTTP/1.1 200").expect("second")..];
    assert!(second.contains("connection: close\r\n"), "{raw}");
    assert!(!raw[..raw.rfind("HTTP/1.1 200").expect("second")].contains("connection: close"));
    assert_eq!(up.requests(), 2);
}

#[tokio::test]
async fn codec_errors_get_envoys_replies_and_are_counted() {
    let (tern, addr, up) = tern_with("").await;
    for (request, status) in [
        (&b"HELLO\r\n\r\n"[..], "HTTP/1.1 400 Bad Request"),
        (
            b"POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 501 Not Implemented",
        ),
        (
            b"GET / HTTP/1.1\r\nhost: h\r\ncontent-length: x\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
    ] {
        let raw = support::raw(addr, request).await;
        assert!(raw.starts_with(status), "{raw}");
        assert!(raw.contains("connection: close\r\n"), "{raw}");
        assert!(raw.contains("server: envoy\r\n"), "{raw}");
    }
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("http.l.downstream_cx_protocol_error"),
        Some(3)
    );
    assert_eq!(stats.counter_value("http.l.downstream_rq_4xx"), Some(2));
    assert_eq!(stats.counter_value("http.l.downstream_rq_5xx"), Some(1));
    // Each connection chose the HTTP/1 codec with its first bytes, though none carried a
    // request.
    assert_eq!(
        stats.counter_value("http.l.downstream_cx_http1_total"),
        Some(3)
    );
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn a_client_that_leaves_during_a_stalled_response_body_resets_its_stream() {
    let (tern, addr, _up) = tern_with("").await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /stall HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .expect("write");
    // The head and the first chunk arrive; the rest of the body never does.
    let mut got = Vec::new();
    within(5, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("first chunk") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let stats = &tern.world.stats;
    let active = || stats.gauge_value("http.l.downstream_rq_active");
    assert_eq!(active(), Some(1));
    drop(s);
    // The stream ends when the client leaves, though the upstream never finishes.
    within(2, async {
        while active() != Some(0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(stats.gauge_value("http.l.downstream_cx_active"), Some(0));
    assert_eq!(
        stats.gauge_value("cluster.up.upstream_rq_active"),
        Some(0),
        "the upstream request is reset with the stream"
    );
}
