//! The upstream side of HTTP/1.1 on tern's own codec: responses framed every way a server may
//! frame them, responses no server should send, connections closed under the pool, and a
//! request body that keeps streaming while the response streams back.

use super::support::{self, h1_client, send, static_cluster, upstream, within};
use super::{empty, one_route_tern};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::Ordering;

const ROUTE: &str =
    "              - match: { prefix: / }\n                route: { cluster: up }\n";

/// The replies of the scripted upstream, by path.
fn script(method: &str, path: &str) -> (Vec<u8>, bool) {
    let (reply, close): (&[u8], bool) = match path {
        "/cl" if method == "HEAD" => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
        "/cl" => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
        "/continue" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            false,
        ),
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-kind: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\n",
            false,
        ),
        "/close-delimited" => (b"HTTP/1.1 200 OK\r\n\r\nuntil close", true),
        "/http10" => (
            b"HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nold ok",
            false,
        ),
        "/then-close" => (b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce", true),
        "/garbage" => (b"HTTP/1.1 abc\r\n\r\n", false),
        "/te-gzip" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nabc",
            false,
        ),
        "/te-and-cl" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        "/bad-chunk" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        "/short" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc",
            true,
        ),
        "/no-response" => (b"", true),
        _ => (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", false),
    };
    (reply.to_vec(), close)
}

#[tokio::test]
async fn responses_framed_every_way_and_connections_reused() {
    let (up, accepted, _task) = upstream::scripted(script).await;
    let (t, addr) = one_route_tern(ROUTE, &[static_cluster("up", &[up], "")]).await;
    let c = h1_client();
    for _ in 0..3 {
        let r = send(&c, support::req(addr, "/cl").body(empty()).unwrap()).await;
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    }
    // Keep-alive: one upstream connection for the three.
    assert_eq!(accepted.load(Ordering::Relaxed), 1);

    // Informational responses are skipped; the final one is proxied.
    let r = send(&c, support::req(addr, "/continue").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));

    // Chunked, with a chunk extension and a trailer; on the same connection.
    let r = send(&c, support::req(addr, "/chunked").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello world"));
    assert_eq!(r.headers["x-kind"], "chunked");

    // HEAD: the content-length is the GET's, no body follows, the connection stays usable.
    let r = send(
        &c,
        support::req(addr, "/cl")
            .method("HEAD")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(r.headers["content-length"], "5");
    let r = send(&c, support::req(addr, "/cl").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "still one connection");

    // An HTTP/1.0 response without keep-alive: proxied, and its connection is not reused.
    let r = send(&c, support::req(addr, "/http10").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "old ok"));
    // A body delimited by the connection's close.
    let r = send(
        &c,
        support::req(addr, "/close-delimited")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "until close"));
    let before = accepted.load(Ordering::Relaxed);
    let r = send(&c, support::req(addr, "/cl").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    assert_eq!(accepted.load(Ordering::Relaxed), before + 1);

    // The upstream closes each connection after its response, without saying so: every
    // request still succeeds, the first on the pooled connection of `/cl` and the others on
    // a new connection each (a pooled one found closed is not used, or the request goes
    // again on a fresh one).
    let before = accepted.load(Ordering::Relaxed);
    for _ in 0..5 {
        let r = send(&c, support::req(addr, "/then-close").body(empty()).unwrap()).await;
        assert_eq!((r.status, r.body.as_str()), (200, "once"));
    }
    assert_eq!(accepted.load(Ordering::Relaxed), before + 4);
    assert_eq!(
        t.world
            .stats
            .counter_value("cluster.up.upstream_cx_http1_total"),
        Some(accepted.load(Ordering::Relaxed))
    );
}

#[tokio::test]
async fn malformed_responses_are_502_and_early_closes_503() {
    let (up, _accepted, _task) = upstream::scripted(script).await;
    let (t, addr) = one_route_tern(ROUTE, &[static_cluster("up", &[up], "")]).await;
    let c = h1_client();
    for path in ["/garbage", "/te-gzip", "/te-and-cl"] {
        let r = send(&c, support::req(addr, path).body(empty()).unwrap()).await;
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(
            r.body,
            "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
            "{path}"
        );
    }
    let r = send(
        &c,
        support::req(addr, "/no-response").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.ends_with("reset reason: connection termination"),
        "{}",
        r.body
    );

    // A malformed chunk, or a body cut short by a close: the response has started, so the
    // client sees an error instead of the body's end (after the head, if it was written
    // before the body failed).
    for path in ["/bad-chunk", "/short"] {
        let outcome = within(5, async {
            let resp = c
                .request(support::req(addr, path).body(empty()).unwrap())
                .await
                .map_err(|e| e.to_string())?;
            assert_eq!(resp.status(), 200, "{path}");
            resp.into_body()
                .collect()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
        assert!(
            outcome.is_err(),
            "{path}: the response must not end cleanly"
        );
    }
    assert!(
        t.world
            .stats
            .counter_value("http.l.downstream_rq_5xx")
            .unwrap_or(0)
            >= 4
    );
}

/// The request body keeps going up while the response comes down: each piece the client sends
/// comes back before it sends the next.
#[tokio::test]
async fn request_and_response_bodies_stream_at_once() {
    let up = upstream::http("u").await;
    let (_t, addr) = one_route_tern(ROUTE, &[static_cluster("up", &[up.addr], "")]).await;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    tx.send(Ok(Frame::data(Bytes::from_static(b"ping 0"))))
        .await
        .unwrap();
    let req = http::Request::post(format!("http://{addr}/stream-echo"))
        .header("host", "example.com")
        .body(body)
        .unwrap();
    let resp = within(5, sender.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut rbody = resp.into_body();
    let mut got = Vec::new();
    for i in 0..5 {
        let want = format!("ping {i}");
        let mut seen = Vec::new();
        while seen.len() < want.len() {
            let frame = within(5, rbody.frame()).await.unwrap().unwrap();
            if let Ok(d) = frame.into_data() {
                seen.extend_from_slice(&d);
            }
        }
        assert_eq!(String::from_utf8_lossy(&seen), want);
        got.push(want);
        tx.send(Ok(Frame::data(Bytes::from(format!("ping {}", i + 1)))))
            .await
            .unwrap();
    }
    drop(tx);
    let rest = within(5, rbody.collect()).await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"ping 5");
    // Both bodies ended cleanly: the upstream connection went back to the pool.
    let r = support::get(&h1_client(), addr, "example.com", "/after").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn idle_connection_closed_by_the_upstream_leaves_the_pool_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that answers one request with keep-alive, then closes the connection while
    // it sits idle in tern's pool (as servers with a keep-alive timeout do).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nidle")
                    .await;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            });
        }
    });
    let (t, addr) = one_route_tern(ROUTE, &[static_cluster("up", &[up], "")]).await;
    let c = h1_client();
    let r = send(&c, support::req(addr, "/").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "idle"));
    let stats = &t.world.stats;
    assert_eq!(stats.gauge_value("cluster.up.upstream_cx_active"), Some(1));
    // No request comes after: the close alone takes the connection out of the pool.
    within(5, async {
        while stats.gauge_value("cluster.up.upstream_cx_active") != Some(0) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        stats.counter_value("cluster.up.upstream_cx_destroy"),
        Some(1)
    );

    // A new request opens a new connection and is answered.
    let r = send(&c, support::req(addr, "/").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "idle"));
    assert_eq!(
        stats.counter_value("cluster.up.upstream_cx_http1_total"),
        Some(2)
    );
}

#[tokio::test]
async fn idle_timeout_closes_a_pooled_connection_when_due() {
    let up = upstream::http("u").await;
    let (t, addr) = one_route_tern(
        ROUTE,
        &[static_cluster(
            "up",
            &[up.addr],
            "    common_http_protocol_options: { idle_timeout: 0.3s }",
        )],
    )
    .await;
    let c = h1_client();
    let r = send(&c, support::req(addr, "/").body(empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    let stats = &t.world.stats;
    assert_eq!(stats.gauge_value("cluster.up.upstream_cx_active"), Some(1));
    // No request comes after: the timeout alone closes the pooled connection.
    let started = std::time::Instant::now();
    within(5, async {
        while stats.gauge_value("cluster.up.upstream_cx_active") != Some(0) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert_eq!(
        stats.counter_value("cluster.up.upstream_cx_idle_timeout"),
        Some(1)
    );
    let r = send(&c, support::req(addr, "/").body(empty()).unwrap()).await;
    assert_eq!(r.status, 200);
}
