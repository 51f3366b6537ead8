//! The proxy layer: the runtime of the terminal network filters. `tcp_proxy` pipes bytes to
//! an upstream host; `hcm` runs the HTTP connection manager, whose streams go through the
//! phases decode → route → choose host → forward (await the upstream) → encode. Reads
//! snapshots; never writes them.

pub mod hcm;
pub mod tcp_proxy;

use crate::snapshot::{NetworkFilter, World};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// A new connection id.
pub fn next_conn_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Tells connections to drain: HTTP/1.1 answers with `Connection: close`, HTTP/2 sends
/// GOAWAY, and tcp_proxy connections finish on their own.
#[derive(Debug, Clone)]
pub struct Drain(watch::Receiver<bool>);

impl Drain {
    /// A drain signal and its trigger.
    pub fn new() -> (watch::Sender<bool>, Drain) {
        let (tx, rx) = watch::channel(false);
        (tx, Drain(rx))
    }

    /// Resolves once draining has started.
    pub async fn started(&mut self) {
        let _ = self.0.wait_for(|d| *d).await;
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
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
    match filter {
        NetworkFilter::TcpProxy(cfg) => tcp_proxy::serve(io, cfg, world, conn).await,
        NetworkFilter::Hcm(hcm) => hcm::serve(io, hcm, world, conn, drain).await,
    }
}
