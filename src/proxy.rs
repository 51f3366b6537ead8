//! The proxy layer: the runtime of the terminal network filters. `tcp_proxy` pipes bytes to
//! an upstream host; `hcm` runs the HTTP connection manager, whose streams go through the
//! phases decode → route → choose host → forward (await the upstream) → encode. Reads
//! snapshots; never writes them.

mod counted;
pub mod hcm;
pub mod rpc;
pub(crate) mod signal;
pub mod tcp_proxy;

pub use counted::CountedIo;

use crate::snapshot::{NetworkFilter, World};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// What the proxy knows of a downstream connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Process-unique connection id (`[connId]` in logs).
    pub id: u64,
    /// The local (or original destination) address.
    pub local: Option<SocketAddr>,
    /// The peer address.
    pub remote: Option<SocketAddr>,
    /// Name of the listener that accepted the connection.
    pub listener: Arc<str>,
    /// The listener's `per_connection_buffer_limit_bytes`: how much of a request body the
    /// connection manager buffers (for retries) before it streams instead.
    pub buffer_limit: u32,
    /// The listener's `traffic_direction`.
    pub direction: crate::stream_info::TrafficDirection,
    /// The TLS session, when the filter chain terminated TLS: SNI, ALPN, version, cipher,
    /// the peer's certificate (its SPIFFE id) and ours.
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
}

/// A new connection id.
pub fn next_conn_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How a connection is told to drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DrainMode {
    /// Not draining.
    None,
    /// Envoy's drain sequence (a listener or filter chain updated or removed): HTTP/1.1 answers
    /// its next request with `Connection: close`, and what is still open after the HCM's
    /// `drain_timeout` is shut down gracefully (GOAWAY for HTTP/2).
    Graceful,
    /// The process is going away: idle HTTP connections close at once, busy ones after their
    /// response.
    Now,
}

/// Tells connections to drain (see [`DrainMode`]). tcp_proxy connections finish on their own;
/// whatever is still open when the grace period (`--drain-time-s`) is over is closed.
#[derive(Debug, Clone)]
pub struct Drain(watch::Receiver<DrainMode>, Duration);

impl Drain {
    /// A drain signal that follows `trigger`, with connections closed `grace` after it fires.
    pub fn from_trigger(trigger: &watch::Sender<DrainMode>, grace: Duration) -> Drain {
        Drain(trigger.subscribe(), grace)
    }

    /// Resolves when the grace period after the start of draining is over (never, if
    /// draining never starts).
    async fn grace_over(mut self) {
        self.started().await;
        if !self.is_draining() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.1).await;
    }

    /// Resolves once draining has started. (A trigger dropped without firing — a filter
    /// chain's drain signal outlives its listener generation — never resolves.)
    pub async fn started(&mut self) {
        if self.0.wait_for(|d| *d != DrainMode::None).await.is_err() && !self.is_draining() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once the mode is `Now` (never, if the trigger is dropped before).
    pub async fn now(&mut self) {
        if self.0.wait_for(|d| *d == DrainMode::Now).await.is_err() && self.mode() != DrainMode::Now
        {
            std::future::pending::<()>().await;
        }
    }

    /// The current mode.
    pub fn mode(&self) -> DrainMode {
        *self.0.borrow()
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.mode() != DrainMode::None
    }
}

/// Run the network filter of a filter chain on a connection until it closes.
pub async fn serve_connection<IO>(
    io: IO,
    filter: NetworkFilter,
    world: Arc<World>,
    conn: ConnInfo,
    drain: Drain,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let deadline = drain.clone().grace_over();
    let id = conn.id;
    let work = async move {
        match filter {
            NetworkFilter::TcpProxy(cfg) => tcp_proxy::serve(io, cfg, world, conn).await,
            NetworkFilter::Hcm(hcm) => hcm::serve(io, hcm, world, conn, drain).await,
            NetworkFilter::GenericProxy(cfg) => rpc::serve(io, cfg, world, conn, drain).await,
        }
    };
    tokio::select! {
        _ = work => {}
        _ = signal::WhenWoken::new(deadline) => tracing::debug!(conn = id, "drain time over; connection closed"),
    }
}
