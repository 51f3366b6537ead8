//! Connection pools, one set per host: HTTP/1.1 keep-alive connections (one request at a time
//! each), one multiplexed HTTP/2 connection, and plain connects for TCP proxying.

mod http1;
mod http2;
pub mod multiplex;
mod tls;

pub use http1::Http1Pool;
pub use http2::Http2Pool;
pub use tls::UpstreamTls;

use crate::config::Address;
use crate::protocol::body::{Body, BoxError};
use crate::upstream::cluster::ClusterStats;
use crate::upstream::host::Host;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// The pools of one host: plaintext connections here, TLS connections in a pool of their own
/// per context and options ([`UpstreamTls::key`]), so that connections with a different SNI or
/// ALPN are never shared.
#[derive(Debug, Default)]
pub struct HostPools {
    /// Idle HTTP/1.1 connections.
    pub http1: Http1Pool,
    /// The shared HTTP/2 connection.
    pub http2: Http2Pool,
    keyed: std::sync::Mutex<std::collections::HashMap<u64, Arc<HostPools>>>,
    /// Multiplexed RPC connections (Dubbo, Bolt), per codec.
    pub multiplex: multiplex::MultiplexPool,
    /// The host's counters (on the host's plaintext pools; unused on keyed ones).
    pub counters: crate::upstream::host::HostCounters,
}

/// TLS pools of one host at most (a host reached with more SNI/ALPN combinations than this
/// drops the oldest pools' idle connections).
const MAX_KEYED_POOLS: usize = 64;

impl HostPools {
    /// The pools for TLS connections with this key.
    pub fn keyed(&self, key: u64) -> Arc<HostPools> {
        let mut map = self.keyed.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&key) && map.len() >= MAX_KEYED_POOLS {
            map.clear();
        }
        map.entry(key).or_default().clone()
    }

    /// Close every idle connection, TLS pools included.
    pub fn clear(&self) {
        self.http1.clear();
        self.http2.clear();
        let keyed: Vec<_> = self
            .keyed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for p in keyed {
            p.clear();
        }
    }
}

/// The upstream protocol of a request, chosen from the cluster's protocol options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c) or over TLS.
    Http2,
}

/// Limits and timeouts a cluster applies to its connections.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// `Cluster.connect_timeout` (default 5 s).
    pub connect_timeout: Duration,
    /// `common_http_protocol_options.idle_timeout` (default 1 h; `None` = never).
    pub idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.max_requests_per_connection` (`None` = unlimited).
    pub max_requests_per_connection: Option<u32>,
    /// `common_http_protocol_options.max_headers_count` (default 100).
    pub max_headers_count: usize,
    /// `http2_protocol_options.initial_stream_window_size` (default 256 MiB in Envoy; we keep
    /// hyper's flow control adaptive unless set).
    pub h2_initial_stream_window: Option<u32>,
    /// `http2_protocol_options.initial_connection_window_size`.
    pub h2_initial_connection_window: Option<u32>,
    /// `http2_protocol_options.connection_keepalive.interval`.
    pub h2_keepalive_interval: Option<Duration>,
    /// `http2_protocol_options.connection_keepalive.timeout` (default 20 s... when interval set).
    pub h2_keepalive_timeout: Duration,
    /// Idle HTTP/1.1 connections kept per host at most.
    pub max_idle_per_host: usize,
    /// `upstream_http_protocol_options.auto_sni`: the request's host is the SNI.
    pub auto_sni: bool,
    /// `upstream_http_protocol_options.auto_san_validation`: the server certificate must
    /// carry the SNI as a DNS SAN.
    pub auto_san_validation: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(3600)),
            max_requests_per_connection: None,
            max_headers_count: 100,
            h2_initial_stream_window: None,
            h2_initial_connection_window: None,
            h2_keepalive_interval: None,
            h2_keepalive_timeout: Duration::from_secs(20),
            max_idle_per_host: 1024,
            auto_sni: false,
            auto_san_validation: false,
        }
    }
}

/// Why an upstream request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP (or Unix) connect failed.
    #[error("connection failure, transport failure reason: {0}")]
    ConnectFailure(#[source] io::Error),
    /// The connect did not finish within `connect_timeout`.
    #[error("connection timeout")]
    ConnectTimeout,
    /// The HTTP handshake with the upstream failed.
    #[error("protocol error: {0}")]
    Handshake(#[source] hyper::Error),
    /// The upstream's response could not be parsed (tern's HTTP/1.1 codec).
    #[error("protocol error: {0}")]
    Protocol(#[source] crate::protocol::http1::ParseError),
    /// The downstream request body failed while it was being sent (the client reset the
    /// stream or went away, or its body timed out).
    #[error("request body failed: {0}")]
    RequestBody(#[source] BoxError),
    /// The upstream reset the stream or closed the connection before the response headers.
    #[error("connection termination: {0}")]
    Reset(#[source] BoxError),
    /// The address kind cannot be dialled.
    #[error("cannot connect to {0}")]
    Unsupported(String),
    /// The TLS handshake failed (Envoy's `TLS_error` transport failure).
    #[error("TLS_error: {0}")]
    Tls(#[source] crate::tls::TlsError),
}

impl UpstreamError {
    /// Whether the failure happened while connecting (Envoy's `connect-failure` retry class
    /// and the `UF` response flag).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectFailure(_)
                | UpstreamError::ConnectTimeout
                | UpstreamError::Handshake(_)
                | UpstreamError::Tls(_)
        )
    }
}

/// A connected upstream socket.
#[derive(Debug)]
pub enum UpstreamIo {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
    /// TLS over one of the others.
    Tls(Box<tokio_rustls::client::TlsStream<UpstreamIo>>),
}

impl UpstreamIo {
    /// Register `cx`'s waker for the socket's read readiness without reading; `Ready` when
    /// the socket is readable already. (Over TLS: the socket under it.)
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            UpstreamIo::Tcp(s) => s.poll_read_ready(cx),
            UpstreamIo::Unix(s) => s.poll_read_ready(cx),
            UpstreamIo::Tls(t) => t.get_ref().0.poll_read_ready(cx),
        }
    }

    /// The local address of a TCP connection (`%UPSTREAM_LOCAL_ADDRESS%`).
    pub fn local(&self) -> Option<std::net::SocketAddr> {
        match self {
            UpstreamIo::Tcp(s) => s.local_addr().ok(),
            UpstreamIo::Unix(_) => None,
            UpstreamIo::Tls(t) => t.get_ref().0.local(),
        }
    }

    /// The peer address as Envoy prints it (`%UPSTREAM_REMOTE_ADDRESS%`).
    pub fn peer(&self) -> String {
        match self {
            UpstreamIo::Tcp(s) => s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            UpstreamIo::Unix(s) => s
                .peer_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default(),
            UpstreamIo::Tls(t) => t.get_ref().0.peer(),
        }
    }
}

/// Connect to `addr` within `timeout`, with TCP_NODELAY.
pub async fn connect(addr: &Address, timeout: Duration) -> Result<UpstreamIo, UpstreamError> {
    let fut = async {
        match addr {
            Address::Tcp(sa) => {
                let s = TcpStream::connect(sa).await?;
                s.set_nodelay(true)?;
                Ok(UpstreamIo::Tcp(s))
            }
            Address::Pipe(p) => Ok(UpstreamIo::Unix(UnixStream::connect(p).await?)),
            Address::Internal(n) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("internal listener {n} is not reachable"),
            )),
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(io)) => Ok(io),
        Ok(Err(e)) => Err(UpstreamError::ConnectFailure(e)),
        Err(_) => Err(UpstreamError::ConnectTimeout),
    }
}

/// Connect to a host (and run the TLS handshake when `tls` is given, within the same
/// `timeout`), counting the connection in the cluster's and the host's stats
/// (`upstream_cx_total`, `upstream_cx_active`, `upstream_cx_connect_ms`, or
/// `upstream_cx_connect_fail` / `upstream_cx_connect_timeout`). The returned connection counts
/// its bytes and, when dropped, `upstream_cx_destroy` and `upstream_cx_length_ms`.
pub async fn connect_host(
    host: &Arc<Host>,
    stats: &ClusterStats,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
) -> Result<UpstreamConn, UpstreamError> {
    let start = Instant::now();
    let attempt = async {
        let io = connect(&host.address, timeout).await?;
        let Some(t) = tls else {
            return Ok((io, None));
        };
        let peer = match &host.address {
            Address::Tcp(a) => Some(a.ip()),
            _ => None,
        };
        let rest = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(rest, t.ctx.connect(io, &t.secrets, peer, &t.opts)).await {
            Ok(Ok((stream, info))) => Ok((UpstreamIo::Tls(Box::new(stream)), Some(Arc::new(info)))),
            Ok(Err(e)) => Err(UpstreamError::Tls(e)),
            Err(_) => {
                t.ctx.stats.connection_error().inc();
                Err(UpstreamError::ConnectTimeout)
            }
        }
    };
    match attempt.await {
        Ok((io, tls)) => {
            stats
                .upstream_cx_connect_ms()
                .record_duration(start.elapsed());
            stats.upstream_cx_total().inc();
            stats.upstream_cx_active().inc();
            host.counters().cx_total.fetch_add(1, Ordering::Relaxed);
            host.counters().cx_active.fetch_add(1, Ordering::Relaxed);
            Ok(UpstreamConn {
                io,
                tls,
                host: host.clone(),
                stats: stats.clone(),
                start: Instant::now(),
            })
        }
        Err(e) => {
            if matches!(e, UpstreamError::ConnectTimeout) {
                stats.upstream_cx_connect_timeout().inc();
            }
            stats.upstream_cx_connect_fail().inc();
            host.counters()
                .cx_connect_fail
                .fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// An upstream connection counted in its cluster's and host's stats (see [`connect_host`]).
#[derive(Debug)]
pub struct UpstreamConn {
    io: UpstreamIo,
    tls: Option<Arc<crate::tls::TlsInfo>>,
    host: Arc<Host>,
    stats: ClusterStats,
    start: Instant,
}

impl UpstreamConn {
    /// The peer address as Envoy prints it (`%UPSTREAM_REMOTE_ADDRESS%`).
    pub fn peer(&self) -> String {
        self.io.peer()
    }

    /// The local address of the connection (`%UPSTREAM_LOCAL_ADDRESS%`).
    pub fn local(&self) -> Option<std::net::SocketAddr> {
        self.io.local()
    }

    /// The TLS session, on a TLS connection (`%UPSTREAM_PEER_URI_SAN%`...).
    pub fn tls(&self) -> Option<&Arc<crate::tls::TlsInfo>> {
        self.tls.as_ref()
    }

    /// See [`UpstreamIo::poll_read_ready`].
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_read_ready(cx)
    }

    /// Count this connection as closed by its pool's idle timeout (`upstream_cx_idle_timeout`).
    pub fn count_idle_timeout(&self) {
        self.stats.upstream_cx_idle_timeout().inc();
    }
}

impl Drop for UpstreamConn {
    fn drop(&mut self) {
        self.stats.upstream_cx_active().dec();
        self.stats.upstream_cx_destroy().inc();
        self.stats
            .upstream_cx_length_ms()
            .record_duration(self.start.elapsed());
        self.host
            .counters()
            .cx_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for UpstreamConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.stats.upstream_cx_rx_bytes_total().add(n as u64);
        }
        res
    }
}

impl AsyncWrite for UpstreamConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res
            && *n > 0
        {
            self.stats.upstream_cx_tx_bytes_total().add(*n as u64);
        }
        res
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &res
            && *n > 0
        {
            self.stats.upstream_cx_tx_bytes_total().add(*n as u64);
        }
        res
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Unix(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Unix(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Unix(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Unix(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A response from a pool: the upstream's response with a streaming body, and the upstream
/// address it came from.
pub struct PooledResponse {
    /// The response; its body returns an HTTP/1.1 connection to the pool when fully read.
    pub response: http::Response<Body>,
    /// `%UPSTREAM_REMOTE_ADDRESS%`.
    pub upstream_addr: Arc<str>,
    /// `%UPSTREAM_LOCAL_ADDRESS%` (TCP connections).
    pub upstream_local: Option<std::net::SocketAddr>,
    /// The upstream TLS session (`%UPSTREAM_PEER_URI_SAN%`...).
    pub upstream_tls: Option<Arc<crate::tls::TlsInfo>>,
}

/// Send `req` to `host` over `protocol`, reusing a pooled connection where one is free; new
/// connections are counted in `stats` (and speak TLS when `tls` is given; they are pooled by
/// its key). `req` must be in the form the protocol needs (see `proxy`): origin-form URI and
/// `Host` for HTTP/1.1; scheme and authority in the URI for HTTP/2.
pub async fn send(
    host: &Arc<Host>,
    stats: &ClusterStats,
    settings: &PoolSettings,
    protocol: UpstreamProtocol,
    req: http::Request<Body>,
    tls: Option<&UpstreamTls>,
) -> Result<PooledResponse, UpstreamError> {
    let pools = host.pools_for(tls.map(UpstreamTls::key));
    match protocol {
        UpstreamProtocol::Http1 => http1::send(host, &pools, stats, settings, req, tls).await,
        UpstreamProtocol::Http2 => http2::send(host, &pools, stats, settings, req, tls).await,
    }
}

/// A request waiting for a new connection: `upstream_rq_pending_total` and, while it waits,
/// `upstream_rq_pending_active`.
struct Pending<'a>(&'a ClusterStats);

impl<'a> Pending<'a> {
    fn start(stats: &'a ClusterStats) -> Self {
        stats.upstream_rq_pending_total().inc();
        stats.upstream_rq_pending_active().inc();
        Pending(stats)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.upstream_rq_pending_active().dec();
    }
}
