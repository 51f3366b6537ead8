//! HTTP/1.1 keep-alive pool: idle connections per host, one request at a time on each.

use super::{
    HostPools, Pending, PoolSettings, PooledResponse, UpstreamError, UpstreamTls, connect_host,
};
use crate::protocol::body::{Body, boxed};
use crate::upstream::cluster::ClusterStats;
use crate::upstream::host::Host;
use bytes::Bytes;
use http_body::Body as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Idle HTTP/1.1 connections of one host. The lock is held only to push or pop; it is never
/// shared with a configuration writer.
#[derive(Debug, Default)]
pub struct Http1Pool {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
    used: u32,
    peer: Arc<str>,
    local: Option<std::net::SocketAddr>,
    tls: Option<Arc<crate::tls::TlsInfo>>,
}

impl Http1Pool {
    /// Number of idle connections.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Close every idle connection (host removed, or drain).
    pub fn clear(&self) {
        if let Ok(mut v) = self.idle.lock() {
            v.clear();
        }
    }

    fn take(&self, settings: &PoolSettings) -> Option<Idle> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(c) = idle.pop() {
            let expired = settings
                .idle_timeout
                .is_some_and(|t| c.since.elapsed() >= t);
            if !expired && !c.sender.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, mut c: Idle, settings: &PoolSettings) {
        if c.sender.is_closed()
            || settings
                .max_requests_per_connection
                .is_some_and(|m| c.used >= m)
        {
            return;
        }
        c.since = Instant::now();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < settings.max_idle_per_host
        {
            idle.push(c);
        }
    }
}

pub(super) async fn send(
    host: &Arc<Host>,
    pools: &Arc<HostPools>,
    stats: &ClusterStats,
    settings: &PoolSettings,
    mut req: http::Request<Body>,
    tls: Option<&UpstreamTls>,
) -> Result<PooledResponse, UpstreamError> {
    // A pooled connection first; a request that was not written (the peer closed the idle
    // connection) moves on to the next one.
    while let Some(mut c) = pools.http1.take(settings) {
        if c.sender.ready().await.is_err() {
            continue;
        }
        c.used += 1;
        match c.sender.try_send_request(req).await {
            Ok(resp) => return Ok(wrap(resp, pools, settings, c)),
            Err(mut e) => match e.take_message() {
                Some(r) => req = r,
                None => return Err(UpstreamError::Reset(e.into_error().into())),
            },
        }
    }

    let pending = Pending::start(stats);
    let io = connect_host(host, stats, settings.connect_timeout, tls).await?;
    stats.upstream_cx_http1_total().inc();
    let peer: Arc<str> = io.peer().into();
    let local = io.local();
    let tls = io.tls().cloned();
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_headers(settings.max_headers_count.max(1))
        .writev(false)
        .handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Handshake)?;
    drop(pending);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream http/1.1 connection closed with an error");
        }
    });
    sender.ready().await.map_err(UpstreamError::Handshake)?;
    let mut c = Idle {
        sender,
        since: Instant::now(),
        used: 1,
        peer,
        local,
        tls,
    };
    match c.sender.try_send_request(req).await {
        Ok(resp) => Ok(wrap(resp, pools, settings, c)),
        Err(e) => Err(UpstreamError::Reset(e.into_error().into())),
    }
}

fn wrap(
    resp: http::Response<Incoming>,
    pools: &Arc<HostPools>,
    settings: &PoolSettings,
    c: Idle,
) -> PooledResponse {
    let upstream_addr = c.peer.to_string();
    let upstream_local = c.local;
    let upstream_tls = c.tls.clone();
    let reusable = !resp
        .headers()
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let (parts, body) = resp.into_parts();
    let ret = reusable.then(|| Return {
        pools: pools.clone(),
        settings: settings.clone(),
        conn: c,
    });
    let body = boxed(ReturningBody { inner: body, ret });
    PooledResponse {
        response: http::Response::from_parts(parts, body),
        upstream_addr,
        upstream_local,
        upstream_tls,
    }
}

#[derive(Debug)]
struct Return {
    pools: Arc<HostPools>,
    settings: PoolSettings,
    conn: Idle,
}

pin_project_lite::pin_project! {
    /// A response body that gives its connection back to the pool once it has been read to
    /// the end. Dropped early, the connection is closed instead.
    struct ReturningBody {
        #[pin]
        inner: Incoming,
        ret: Option<Return>,
    }
    impl PinnedDrop for ReturningBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.inner.is_end_stream() {
                give_back(this.ret);
            }
        }
    }
}

fn give_back(ret: &mut Option<Return>) {
    if let Some(r) = ret.take() {
        r.pools.http1.put(r.conn, &r.settings);
    }
}

impl http_body::Body for ReturningBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = res {
            give_back(this.ret);
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
