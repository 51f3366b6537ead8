//! Shared pieces of the RPC tests: a multiplexing test server and client over any
//! `XProtocol` codec, and generic_proxy listener YAML.

use bytes::BytesMut;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern::protocol::xprotocol::{Codec, Frame, FrameKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How a test server answers a request.
pub type Answer = Arc<dyn Fn(&Frame) -> Option<(Duration, BytesMut)> + Send + Sync>;

/// What a test server saw.
#[derive(Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Requests (two-way) received.
    pub requests: AtomicUsize,
    /// One-way requests received.
    pub oneway: AtomicUsize,
    /// Heartbeats received.
    pub heartbeats: AtomicUsize,
    /// Upstream ids in arrival order, and in the order responses were written.
    pub arrival: Mutex<Vec<u64>>,
    pub answered: Mutex<Vec<u64>>,
}

/// A test upstream speaking a codec: each request is answered by `answer` (after its delay,
/// on a task of its own, so answers leave in any order), or never when it returns `None`.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Server {
    pub async fn start(codec: Codec, answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let (s, t) = (seen.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                s.connections.fetch_add(1, Ordering::Relaxed);
                let (codec, answer, s2) = (codec.clone(), answer.clone(), s.clone());
                t.lock().unwrap().spawn(serve_conn(sock, codec, answer, s2));
            }
        });
        Server { addr, seen, tasks }
    }

    /// Abort every task: the listener and all connections close at once.
    pub fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::Relaxed)
    }
}

async fn serve_conn(sock: TcpStream, codec: Codec, answer: Answer, seen: Arc<Seen>) {
    let (mut rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, BytesMut)>();
    let s2 = seen.clone();
    let writer = tokio::spawn(async move {
        while let Some((id, b)) = rx.recv().await {
            s2.answered.lock().unwrap().push(id);
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    let _writer = AbortOnDrop(writer);
    let mut buf = BytesMut::new();
    let mut delayed = JoinSet::new();
    loop {
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            match f.kind {
                FrameKind::Heartbeat => {
                    seen.heartbeats.fetch_add(1, Ordering::Relaxed);
                    let r = codec.heartbeat_response(&f);
                    let _ = tx.send((f.request_id, r.raw));
                }
                FrameKind::Oneway => {
                    seen.oneway.fetch_add(1, Ordering::Relaxed);
                }
                FrameKind::Request => {
                    seen.requests.fetch_add(1, Ordering::Relaxed);
                    seen.arrival.lock().unwrap().push(f.request_id);
                    if let Some((delay, mut out)) = answer(&f) {
                        // Answers carry the request's (upstream) id.
                        let mut r = frame_of(&codec, &mut out);
                        r.set_request_id(f.request_id);
                        let tx = tx.clone();
                        let id = f.request_id;
                        delayed.spawn(async move {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let _ = tx.send((id, r.raw));
                        });
                    }
                }
                _ => {}
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decode one whole frame from bytes a test built.
pub fn frame_of(codec: &Codec, bytes: &mut BytesMut) -> Frame {
    codec.decode(bytes).unwrap().expect("a whole frame")
}

/// A client connection that sends raw frames and reads decoded ones.
pub struct Client {
    pub stream: TcpStream,
    codec: Codec,
    buf: BytesMut,
}

impl Client {
    pub async fn connect(addr: SocketAddr, codec: Codec) -> Client {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            codec,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` when the connection closed. Panics after 10 s.
    pub async fn recv(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("no frame within 10 s"),
            }
        }
    }

    /// Read `n` frames, keyed by request id (ids must be unique).
    pub async fn recv_n(&mut self, n: usize) -> HashMap<u64, Frame> {
        let mut out = HashMap::new();
        for _ in 0..n {
            let f = self.recv().await.expect("connection closed early");
            assert!(
                out.insert(f.request_id, f).is_none(),
                "a response id came twice"
            );
        }
        out
    }

    /// Whether the proxy closes the connection (within 5 s).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// A listener with `envoy.filters.network.generic_proxy` (YAML at the filter's indentation for
/// `codec_config` and `route_config`).
pub fn generic_proxy_listener(name: &str, codec_and_routes: &str) -> String {
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.generic_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.v3.GenericProxy
          stat_prefix: {name}
          filters:
          - name: envoy.filters.generic.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.router.v3.Router
{codec_and_routes}
"#
    )
}

/// A route action in the generic_proxy route matcher (YAML flow style).
pub fn action(cluster: &str, extra: &str) -> String {
    format!(
        r#"{{ name: to-{cluster}, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.action.v3.RouteAction, cluster: {cluster}{extra} }} }}"#
    )
}
