//! HTTP/2 pool: one multiplexed connection per host, shared by every stream routed there.

use super::{
    HostPools, Pending, PoolSettings, PooledResponse, UpstreamError, UpstreamTls, connect_host,
};
use crate::protocol::body::{Body, boxed};
use crate::upstream::cluster::ClusterStats;
use crate::upstream::host::Host;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::{Arc, Mutex};

/// The HTTP/2 connection of one host. The lock guards only a clone of the sender.
#[derive(Debug, Default)]
pub struct Http2Pool {
    conn: Mutex<Option<Shared>>,
    /// Held while a connection is being made: streams that arrive meanwhile wait for it
    /// instead of each opening a connection of their own.
    connecting: tokio::sync::Mutex<()>,
    /// Connection attempts that failed: a stream that waited through one fails with it
    /// rather than trying again in turn (a burst would otherwise wait many connect timeouts).
    failures: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone)]
struct Shared {
    sender: SendRequest<Body>,
    peer: Arc<str>,
    local: Option<std::net::SocketAddr>,
    tls: Option<Arc<crate::tls::TlsInfo>>,
    streams: Arc<std::sync::atomic::AtomicU32>,
}

impl Http2Pool {
    /// Whether a live connection exists.
    pub fn is_connected(&self) -> bool {
        self.conn
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|s| !s.sender.is_closed()))
            .unwrap_or(false)
    }

    /// Close the connection once its streams finish.
    pub fn clear(&self) {
        if let Ok(mut c) = self.conn.lock() {
            *c = None;
        }
    }

    fn get(&self, settings: &PoolSettings) -> Option<Shared> {
        let mut guard = self.conn.lock().ok()?;
        let usable = guard.as_ref().is_some_and(|s| {
            !s.sender.is_closed()
                && settings
                    .max_requests_per_connection
                    .is_none_or(|m| s.streams.load(std::sync::atomic::Ordering::Relaxed) < m)
        });
        if !usable {
            *guard = None;
        }
        guard.clone()
    }
}

pub(super) async fn send(
    host: &Arc<Host>,
    pools: &Arc<HostPools>,
    stats: &ClusterStats,
    settings: &PoolSettings,
    req: http::Request<Body>,
    tls: Option<&UpstreamTls>,
) -> Result<PooledResponse, UpstreamError> {
    let shared = match pools.http2.get(settings) {
        Some(s) => s,
        None => {
            use std::sync::atomic::Ordering::Relaxed;
            let pool = &pools.http2;
            let _pending = Pending::start(stats);
            let failures = pool.failures.load(Relaxed);
            let _connecting = pool.connecting.lock().await;
            match pool.get(settings) {
                // Made by the stream we waited for.
                Some(s) => s,
                None if pool.failures.load(Relaxed) != failures => {
                    return Err(UpstreamError::ConnectFailure(std::io::Error::other(
                        "the connection this request waited for failed",
                    )));
                }
                None => {
                    let s = handshake(host, stats, settings, tls)
                        .await
                        .inspect_err(|_| {
                            pool.failures.fetch_add(1, Relaxed);
                        })?;
                    if let Ok(mut guard) = pool.conn.lock() {
                        *guard = Some(s.clone());
                    }
                    s
                }
            }
        }
    };
    shared
        .streams
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut sender = shared.sender.clone();
    sender
        .ready()
        .await
        .map_err(|e| UpstreamError::Reset(e.into()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| UpstreamError::Reset(e.into()))?;
    Ok(PooledResponse {
        response: resp.map(boxed),
        upstream_addr: shared.peer.clone(),
        upstream_local: shared.local,
        upstream_tls: shared.tls.clone(),
    })
}

async fn handshake(
    host: &Arc<Host>,
    stats: &ClusterStats,
    settings: &PoolSettings,
    tls: Option<&UpstreamTls>,
) -> Result<Shared, UpstreamError> {
    let io = connect_host(host, stats, settings.connect_timeout, tls).await?;
    stats.upstream_cx_http2_total().inc();
    let peer: Arc<str> = io.peer().into();
    let local = io.local();
    let tls = io.tls().cloned();
    let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new());
    if let Some(w) = settings.h2_initial_stream_window {
        b.initial_stream_window_size(w);
    } else {
        b.adaptive_window(true);
    }
    if let Some(w) = settings.h2_initial_connection_window {
        b.initial_connection_window_size(w);
    }
    if let Some(i) = settings.h2_keepalive_interval {
        b.keep_alive_interval(i)
            .keep_alive_timeout(settings.h2_keepalive_timeout);
    }
    let (sender, conn) = b
        .handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream http/2 connection closed with an error");
        }
    });
    Ok(Shared {
        sender,
        peer,
        local,
        tls,
        streams: Arc::new(std::sync::atomic::AtomicU32::new(0)),
    })
}
