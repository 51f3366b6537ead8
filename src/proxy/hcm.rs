//! The HTTP connection manager: the codec (tern's HTTP/1.1, `h1`, and hyper's HTTP/2, chosen
//! by `codec_type` and for `AUTO` by the first bytes), connection limits, drain, and one stream
//! per request. Each stream of an
//! HTTP/2 connection is routed and load-balanced on its own (MOSN's stream-level
//! multiplexing).

mod forward;
pub(crate) mod h1;
mod local_reply;
mod peer;
mod record;
pub(crate) mod request;
mod stream;
mod upgrade;
mod upstream_request;
mod upstream_stats;
mod xfcc;

pub use local_reply::local_reply;
pub use request::set_local_address_ipv6;

use super::signal::WhenWoken;
use super::{ConnInfo, Drain};
use crate::filters::hcm::Codec;
use crate::protocol::body::{Body, BoxError};
use crate::snapshot::{HttpConnectionManager, World};
use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

/// State shared by the streams of one downstream connection.
pub(crate) struct ConnCtx {
    pub hcm: Arc<HttpConnectionManager>,
    pub world: Arc<World>,
    pub conn: ConnInfo,
    next_stream: AtomicU64,
    active_streams: AtomicU64,
    requests: AtomicU64,
    last_active: AtomicU64,
    closed_streams: AtomicU64,
    premature_resets: AtomicU64,
    abusive: std::sync::atomic::AtomicBool,
    abuse: tokio::sync::Notify,
    started: Instant,
    /// Draining: HTTP/1 responses carry `Connection: close`.
    pub draining: std::sync::atomic::AtomicBool,
    /// The connection manager closes the connection: HTTP/1 takes no further request.
    pub closing: std::sync::atomic::AtomicBool,
}

impl ConnCtx {
    fn touch(&self) {
        self.last_active
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// A request body as the stream gets it from the downstream codec.
pub(crate) enum DownstreamBody {
    /// No body.
    Empty,
    /// From hyper's HTTP/2 codec.
    Http2(Incoming),
    /// From tern's HTTP/1.1 codec.
    Http1(h1::RequestBody),
}

impl http_body::Body for DownstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Http2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::Http1(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Http2(b) => b.is_end_stream(),
            Self::Http1(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Empty => http_body::SizeHint::with_exact(0),
            Self::Http2(b) => b.size_hint(),
            Self::Http1(b) => b.size_hint(),
        }
    }
}

/// Serve HTTP on one downstream connection until it closes.
pub async fn serve<IO>(
    io: IO,
    hcm: Arc<HttpConnectionManager>,
    world: Arc<World>,
    conn: ConnInfo,
    mut drain: Drain,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let cfg = &hcm.config;
    cfg.stats.downstream_cx_total.inc();
    cfg.stats.downstream_cx_active.inc();
    let io = super::CountedIo::new(
        io,
        cfg.stats.downstream_cx_rx_bytes_total.clone(),
        cfg.stats.downstream_cx_tx_bytes_total.clone(),
    );
    // Over TLS, AUTO follows the negotiated ALPN protocol when there is one; without it, the
    // first bytes tell (the HTTP/2 preface or not).
    let alpn = conn.tls.as_ref().and_then(|t| t.alpn.as_deref());
    let (http2, detect) = match cfg.codec {
        Codec::Auto if alpn == Some("h2") => (true, false),
        Codec::Auto if matches!(alpn, Some("http/1.1" | "http/1.0")) => (false, false),
        Codec::Auto => (false, true),
        Codec::Http1 => (false, false),
        Codec::Http2 => (true, false),
    };
    let ctx = Arc::new(ConnCtx {
        hcm: hcm.clone(),
        world,
        conn: conn.clone(),
        next_stream: AtomicU64::new(1),
        active_streams: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        last_active: AtomicU64::new(0),
        closed_streams: AtomicU64::new(0),
        premature_resets: AtomicU64::new(0),
        abusive: std::sync::atomic::AtomicBool::new(false),
        abuse: tokio::sync::Notify::new(),
        started: Instant::now(),
        draining: std::sync::atomic::AtomicBool::new(false),
        closing: std::sync::atomic::AtomicBool::new(false),
    });
    if http2 {
        serve_http2(io, &ctx, &mut drain).await;
    } else {
        // The connection sees `closing` when it next waits for a request, or after the
        // response in flight (which then carries `connection: close`); the drive loop polls
        // it again right after a shut.
        let closing = ctx.clone();
        let served = h1::serve(io, ctx.clone(), detect);
        let shut = move |_: Pin<&mut _>| closing.closing.store(true, Ordering::Relaxed);
        if let Some(h1::Outcome::Http2(io, read)) = drive(served, shut, &ctx, &mut drain).await {
            serve_http2(h1::Prefixed::new(io, read), &ctx, &mut drain).await;
        }
    }
    cfg.stats.downstream_cx_active.dec();
    cfg.stats.downstream_cx_destroy.inc();
    cfg.stats
        .downstream_cx_length_ms
        .record_duration(ctx.started.elapsed());
}

/// HTTP/2 on hyper's codec.
async fn serve_http2<IO>(io: IO, ctx: &Arc<ConnCtx>, drain: &mut Drain)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let cfg = &ctx.hcm.config;
    // Counted when the codec is chosen, as Envoy does: on the preface, or on ALPN h2.
    cfg.stats.downstream_cx_http2_total.inc();
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(cfg.h2_max_concurrent_streams)
        .max_header_list_size(cfg.max_request_headers_bytes as u32)
        // Rapid reset (CVE-2023-44487): streams opened and reset before the proxy accepted
        // them are bounded; so are streams reset because of local errors.
        .max_pending_accept_reset_streams(Some(100))
        .max_local_error_reset_streams(Some(1024))
        .enable_connect_protocol();
    match cfg.h2_initial_stream_window {
        Some(w) => {
            h2.initial_stream_window_size(w);
        }
        None => {
            h2.adaptive_window(true);
        }
    }
    if let Some(w) = cfg.h2_initial_connection_window {
        h2.initial_connection_window_size(w);
    }
    let svc = Http2Service(ctx.clone());
    let served = h2.serve_connection(TokioIo::new(io), svc);
    let shut = |c: Pin<&mut Http2Conn<_, _>>| c.graceful_shutdown();
    if let Some(Err(e)) = drive(served, shut, ctx, drain).await {
        debug!(conn = ctx.conn.id, error = %e, "downstream connection ended with an error");
    }
}

/// The streams of an HTTP/2 connection, each handled as a stream of its own.
#[derive(Clone)]
struct Http2Service(Arc<ConnCtx>);

type StreamFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Http2Service {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = StreamFuture;

    fn call(&self, req: Request<Incoming>) -> StreamFuture {
        let ctx = self.0.clone();
        let mut req = req.map(DownstreamBody::Http2);
        if let Some(u) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
            req.extensions_mut().insert(h1::DownstreamUpgrade::hyper(u));
        }
        Box::pin(async move { Ok(stream::handle(req, ctx).await) })
    }
}

type Http2Conn<I, S> = hyper::server::conn::http2::Connection<I, S, TokioExecutor>;

/// Drive a codec's connection to its end, applying the connection manager's limits: idle
/// timeout, max connection duration, max requests, drain, and the rapid-reset check. `shut`
/// tells the codec to stop taking new requests: finish the ones in flight, then close (GOAWAY
/// for HTTP/2). `None`: the connection was cut short (too many premature resets).
async fn drive<F: Future>(
    served: F,
    shut: impl Fn(Pin<&mut F>),
    ctx: &Arc<ConnCtx>,
    drain: &mut Drain,
) -> Option<F::Output> {
    let cfg = &ctx.hcm.config;
    let conn = &ctx.conn;
    tokio::pin!(served);
    let idle = cfg.idle_timeout;
    let max_duration = cfg.max_connection_duration;
    let max_requests = cfg.max_requests_per_connection;
    let mut shutting_down = false;
    let mut drain_deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut drain_now = drain.clone();
    let mut tick = tokio::time::interval(
        std::time::Duration::from_millis(250)
            .min(idle.unwrap_or(std::time::Duration::from_secs(1))),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            res = served.as_mut() => {
                return Some(res);
            }
            _ = WhenWoken::new(ctx.abuse.notified()) => {
                // Too many premature resets: GOAWAY, and the connection goes away shortly
                // even if the peer keeps it open.
                debug!(conn = conn.id, "too many premature stream resets; closing");
                if !shutting_down {
                    shut(served.as_mut());
                }
                return tokio::time::timeout(std::time::Duration::from_secs(1), served.as_mut()).await.ok();
            }
            _ = WhenWoken::new(drain_now.now()), if !shutting_down => {
                ctx.draining.store(true, Ordering::Relaxed);
                shutting_down = true;
                shut(served.as_mut());
            }
            _ = WhenWoken::new(drain.started()), if !shutting_down && drain_deadline.is_none() => {
                // As Envoy: the next HTTP/1 response closes the connection, and whatever is
                // still open after `drain_timeout` is shut down gracefully (GOAWAY for
                // HTTP/2). Closing an idle connection at once would race a request the client
                // is sending on it.
                ctx.draining.store(true, Ordering::Relaxed);
                drain_deadline = Some(Box::pin(tokio::time::sleep(cfg.drain_timeout)));
            }
            _ = WhenWoken::new(async { if let Some(d) = drain_deadline.as_mut() { d.await } }), if drain_deadline.is_some() && !shutting_down => {
                shutting_down = true;
                shut(served.as_mut());
            }
            _ = WhenWoken::new(tick.tick()), if !shutting_down => {
                let active = ctx.active_streams.load(Ordering::Relaxed);
                let quiet = ctx.started.elapsed().saturating_sub(std::time::Duration::from_millis(ctx.last_active.load(Ordering::Relaxed)));
                let idle_expired = idle.is_some_and(|t| active == 0 && quiet >= t);
                let too_old = max_duration.is_some_and(|d| ctx.started.elapsed() >= d);
                let too_many = max_requests.is_some_and(|m| ctx.requests.load(Ordering::Relaxed) >= u64::from(m));
                if idle_expired || too_old || too_many {
                    debug!(conn = conn.id, idle_expired, too_old, too_many, "closing downstream connection");
                    shutting_down = true;
                    shut(served.as_mut());
                }
            }
        }
    }
}
