//! The HTTP connection manager: the codec (hyper's HTTP/1.1 and HTTP/2, chosen by
//! `codec_type`), connection limits, drain, and one stream per request. Each stream of an
//! HTTP/2 connection is routed and load-balanced on its own (MOSN's stream-level
//! multiplexing).

mod forward;
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
use crate::snapshot::{HttpConnectionManager, World};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

impl ConnCtx {
    fn touch(&self) {
        self.last_active
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Over TLS, AUTO follows the negotiated ALPN protocol when there is one.
    let alpn = conn.tls.as_ref().and_then(|t| t.alpn.as_deref());
    match cfg.codec {
        Codec::Auto if alpn == Some("h2") => builder = builder.http2_only(),
        Codec::Auto if matches!(alpn, Some("http/1.1" | "http/1.0")) => {
            builder = builder.http1_only()
        }
        Codec::Auto => {}
        Codec::Http1 => builder = builder.http1_only(),
        Codec::Http2 => builder = builder.http2_only(),
    }
    {
        let mut h1 = builder.http1();
        h1.timer(TokioTimer::new())
            .keep_alive(true)
            .max_headers(cfg.max_headers_count)
            // Room for twice the header limit, so that a request just over the limit
            // parses and gets Envoy's 431 local reply from the stream (`stream::decode`);
            // only a far larger one gets hyper's bare 431.
            .max_buf_size((cfg.max_request_headers_bytes * 2).max(8192) + 8192)
            .half_close(false)
            .writev(false);
        if let Some(t) = cfg.request_headers_timeout {
            h1.header_read_timeout(t);
        } else {
            h1.header_read_timeout(None);
        }
    }
    {
        let mut h2 = builder.http2();
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
    }

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
    });
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| {
        let ctx = svc_ctx.clone();
        async move { Ok::<_, Infallible>(stream::handle(req, ctx).await) }
    });
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
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
                if let Err(e) = res {
                    debug!(conn = conn.id, error = %e, "downstream connection ended with an error");
                }
                break;
            }
            _ = WhenWoken::new(ctx.abuse.notified()) => {
                // Too many premature resets: GOAWAY, and the connection goes away shortly
                // even if the peer keeps it open.
                debug!(conn = conn.id, "too many premature stream resets; closing");
                if !shutting_down {
                    served.as_mut().graceful_shutdown();
                }
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), served.as_mut()).await;
                break;
            }
            _ = WhenWoken::new(drain_now.now()), if !shutting_down => {
                ctx.draining.store(true, Ordering::Relaxed);
                shutting_down = true;
                served.as_mut().graceful_shutdown();
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
                served.as_mut().graceful_shutdown();
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
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
    cfg.stats.downstream_cx_active.dec();
    cfg.stats.downstream_cx_destroy.inc();
    cfg.stats
        .downstream_cx_length_ms
        .record_duration(ctx.started.elapsed());
}
