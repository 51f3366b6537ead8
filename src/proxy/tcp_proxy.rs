//! tcp_proxy: choose a cluster and host, connect (with `max_connect_attempts`), then copy bytes
//! both ways. A half-close is passed on (EOF from one side shuts down writing to the other,
//! and the other direction keeps flowing); `idle_timeout` closes both sides after no traffic.

use super::ConnInfo;
use crate::filters::TcpProxyConfig;
use crate::snapshot::World;
use crate::stats::Counter;
use crate::upstream::host::Host;
use crate::upstream::lb::LbContext;
use crate::upstream::pool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{Instrument, debug};

const BUF: usize = 16 * 1024;

/// Proxy one downstream connection.
pub async fn serve<IO>(down: IO, cfg: Arc<TcpProxyConfig>, world: Arc<World>, conn: ConnInfo)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    cfg.stats.downstream_cx_total.inc();
    cfg.stats.downstream_cx_active.inc();
    let _active = scopeguard(|| cfg.stats.downstream_cx_active.dec());
    let name = cfg.cluster.pick(rand::random());
    let Some(cluster) = world.cluster(name) else {
        debug!(cluster = name, "tcp_proxy: no cluster");
        cfg.stats.downstream_cx_no_route.inc();
        return;
    };
    let mut tried: Vec<Arc<Host>> = Vec::new();
    let mut upstream = None;
    for _ in 0..cfg.max_connect_attempts {
        let Some(host) = cluster.choose_host(&LbContext {
            hash: None,
            excluded: &tried,
        }) else {
            cluster.stats.upstream_cx_none_healthy().inc();
            break;
        };
        match pool::connect_host(&host, &cluster.stats, cluster.pool.connect_timeout).await {
            Ok(io) => {
                upstream = Some((io, host));
                break;
            }
            Err(e) => {
                debug!(host = %host.address, error = %e, "tcp_proxy: connect failed");
                tried.push(host);
            }
        }
    }
    let Some((up, host)) = upstream else { return };
    let _req = host.start_request();
    let span = tracing::debug_span!("tcp_proxy", upstream = %host.address);
    let deadline = cfg.max_downstream_connection_duration;
    let fut = pipe(
        down,
        up,
        cfg.idle_timeout,
        &cfg.stats.downstream_cx_rx_bytes_total,
        &cfg.stats.downstream_cx_tx_bytes_total,
    );
    let outcome = match deadline {
        Some(d) => tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
            cfg.stats.max_downstream_connection_duration.inc();
            PipeEnd::Closed
        }),
        None => fut.await,
    };
    if outcome == PipeEnd::Idle {
        cfg.stats.idle_timeout.inc();
    }
    async { debug!(conn = conn.id, ?outcome, "tcp_proxy connection closed") }
        .instrument(span)
        .await;
}

/// How a pipe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEnd {
    /// Both directions finished or one failed.
    Closed,
    /// No bytes moved for the idle timeout.
    Idle,
}

/// Copy bytes both ways until both directions have seen EOF (half-closes are passed on), one
/// fails, or nothing moves for `idle`. `rx` counts bytes from `a`, `tx` bytes to `a`.
pub async fn pipe<A, B>(a: A, b: B, idle: Option<Duration>, rx: &Counter, tx: &Counter) -> PipeEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let up = copy_half(ar, bw, rx, &last, start);
    let down = copy_half(br, aw, tx, &last, start);
    let both = async { tokio::try_join!(up, down).is_ok() };
    let watch = async {
        let Some(idle) = idle else {
            return std::future::pending::<()>().await;
        };
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let quiet = start.elapsed().saturating_sub(since);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        _ = both => PipeEnd::Closed,
        _ = watch => PipeEnd::Idle,
    }
}

async fn copy_half<R, W>(
    mut r: R,
    mut w: W,
    count: &Counter,
    last: &AtomicU64,
    start: Instant,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // Half-close: pass the EOF on and keep the other direction open.
            w.shutdown().await?;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        count.add(n as u64);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

struct Guard<F: FnMut()>(F);

impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}
