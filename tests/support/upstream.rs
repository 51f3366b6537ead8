//! Real upstream servers for the tests: an HTTP/1.1 + HTTP/2 server (hyper) with scripted
//! behaviour, and a TCP echo server.
//!
//! The HTTP server answers:
//! - `/status/<code>`: that status;
//! - `/fail-once/<key>`: 503 the first time a key is seen, 200 afterwards;
//! - `/delay/<ms>`: 200 after that many milliseconds;
//! - `/echo`: the request body back;
//! - `/stream-echo`: the request body back frame by frame, as it arrives (full duplex);
//! - `/trailers`: a body and `grpc-status`-like trailers (`x-trailer: yes`);
//! - `/stall`: 200, one body chunk, then the body never ends;
//! - `/ws`: a WebSocket-style upgrade (101), then echoes bytes;
//! - anything else: 200 with a body describing the request.
//!
//! Every response carries `x-upstream: <name>`; the body of the default answer lists method,
//! path, version, and every request header as `name: value` lines.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A running test upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub requests: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Start an upstream that speaks HTTP/1.1 and h2c (prior knowledge) on 127.0.0.1:0.
pub async fn http(name: &str) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let (n, r, c) = (name.to_owned(), requests.clone(), connections.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::Relaxed);
            let (n, r, seen) = (n.clone(), r.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    r.fetch_add(1, Ordering::Relaxed);
                    handle(req, n.clone(), seen.clone())
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        name: name.to_owned(),
        requests,
        connections,
        task,
    }
}

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into()).boxed()
}

async fn handle(
    mut req: http::Request<Incoming>,
    name: String,
    seen: Arc<Mutex<HashSet<String>>>,
) -> Result<http::Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let after = |marker: &str| path.split_once(marker).map(|(_, rest)| rest.to_owned());
    let mut resp = if let Some(code) = after("/status/") {
        let mut r = http::Response::new(full(format!("status {code}\n")));
        *r.status_mut() = code
            .parse::<u16>()
            .ok()
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .unwrap_or(http::StatusCode::BAD_REQUEST);
        r
    } else if let Some(key) = after("/fail-once/") {
        let first = seen.lock().expect("lock").insert(key.clone());
        let mut r = http::Response::new(full(if first {
            "failing once\n"
        } else {
            "ok after failure\n"
        }));
        if first {
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        }
        r
    } else if let Some(ms) = after("/delay/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        http::Response::new(full(format!("delayed {ms}ms\n")))
    } else if path.ends_with("/echo") {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        http::Response::new(full(body))
    } else if path.ends_with("/stream-echo") {
        let frames = futures_util::StreamExt::filter_map(req.into_body().into_data_stream(), |d| {
            std::future::ready(d.ok().map(|d| Ok::<_, Infallible>(Frame::data(d))))
        });
        http::Response::new(StreamBody::new(frames).boxed())
    } else if path.ends_with("/trailers") {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-trailer", http::HeaderValue::from_static("yes"));
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"with trailers\n"))),
            Ok(Frame::trailers(trailers)),
        ];
        http::Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed())
    } else if path.ends_with("/stall") {
        // One chunk, then nothing: the body never ends.
        let first = futures_util::stream::iter(vec![Ok::<_, Infallible>(Frame::data(
            Bytes::from_static(b"first chunk\n"),
        ))]);
        let stream = futures_util::StreamExt::chain(first, futures_util::stream::pending());
        http::Response::new(StreamBody::new(stream).boxed())
    } else if path.ends_with("/ws") {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = http::Response::new(full(Bytes::new()));
        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("connection", http::HeaderValue::from_static("upgrade"));
        r.headers_mut()
            .insert("upgrade", http::HeaderValue::from_static("websocket"));
        r
    } else {
        let mut text = format!(
            "upstream {name}\nmethod {}\npath {}\nversion {:?}\n",
            req.method(),
            req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
            req.version()
        );
        if let Some(a) = req.uri().authority() {
            text.push_str(&format!(":authority: {a}\n"));
        }
        for (k, v) in req.headers() {
            text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        http::Response::new(full(text))
    };
    resp.headers_mut().insert(
        "x-upstream",
        http::HeaderValue::from_str(&name).expect("name"),
    );
    Ok(resp)
}

/// A TCP server that echoes what it reads; when the client half-closes, it writes
/// `bye` and closes its side.
pub async fn tcp_echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.write_all(b"bye").await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// An HTTP/1 upstream written by hand, for responses no well-behaved server sends: for each
/// request head it reads, `script` gets the method and the request path and returns the bytes to answer and
/// whether to close the connection after them. Returns the address and the number of
/// connections accepted.
pub async fn scripted(
    script: fn(&str, &str) -> (Vec<u8>, bool),
) -> (SocketAddr, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head at a time (the scripted requests carry no body).
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let mut line = head.split(' ');
                        let method = line.next().unwrap_or("GET").to_owned();
                        let path = line.next().unwrap_or("/").to_owned();
                        let (reply, close) = script(&method, &path);
                        if s.write_all(&reply).await.is_err() || close {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, accepted, task)
}
