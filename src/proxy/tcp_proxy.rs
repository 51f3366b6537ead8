//! tcp_proxy: choose a cluster and host, connect (with `max_connect_attempts`), then copy bytes
//! both ways. A half-close is passed on (EOF from one side shuts down writing to the other,
//! and the other direction keeps flowing); `idle_timeout` closes both sides after no traffic.
//! Each connection's record (bytes, upstream, response flags `UF`, `URX`, `UH`, `NC`, `DT`)
//! goes to the filter's observers (its `access_log`) when the connection ends, and every
//! `access_log_flush_interval` while it is open.

use super::ConnInfo;
use crate::filters::TcpProxyConfig;
use crate::filters::istio_metrics::tcp_observation;
use crate::snapshot::World;
use crate::stats::Counter;
use crate::stats::istio::IstioStats;
use crate::stream_info::{LogType, Observers, ResponseFlag, StreamInfo};
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
    let mut rec = Record::start(&cfg.observers, cfg.istio.as_ref(), &conn);
    let name = cfg.cluster.pick(rand::random());
    let Some(cluster) = world.cluster(name) else {
        debug!(cluster = name, "tcp_proxy: no cluster");
        cfg.stats.downstream_cx_no_route.inc();
        rec.with(|i| i.response_flags.insert(ResponseFlag::NoClusterFound));
        return;
    };
    rec.with(|i| {
        i.upstream_cluster = Some(cluster.name.clone());
        i.istio.cluster = cluster.istio.clone();
    });
    let mut tried: Vec<Arc<Host>> = Vec::new();
    let mut upstream = None;
    for _ in 0..cfg.max_connect_attempts {
        let Some(host) = cluster.choose_host(&LbContext {
            hash: None,
            excluded: &tried,
        }) else {
            cluster.stats.upstream_cx_none_healthy().inc();
            rec.with(|i| i.response_flags.insert(ResponseFlag::NoHealthyUpstream));
            break;
        };
        rec.with(|i| {
            i.upstream_host = Some(host.address.to_string());
            i.attempt_count += 1;
            i.istio.upstream_workload = host.istio_workload().cloned();
            i.istio.upstream_address = host.address.socket_addr();
        });
        let tls = pool::UpstreamTls::for_host(
            &cluster,
            &host,
            || world.secrets.load_full(),
            None,
            None,
            None,
        );
        let connect = pool::connect_host(
            &host,
            &cluster.stats,
            cluster.pool.connect_timeout,
            tls.as_ref(),
        );
        match connect.await {
            Ok(io) => {
                upstream = Some((io, host));
                break;
            }
            Err(e) => {
                debug!(host = %host.address, error = %e, "tcp_proxy: connect failed");
                rec.with(|i| {
                    i.response_flags
                        .insert(ResponseFlag::UpstreamConnectionFailure);
                    if let pool::UpstreamError::ConnectFailure(io) = &e {
                        let text = io.to_string();
                        let text = text.rfind(" (os error ").map_or(&*text, |i| &text[..i]);
                        i.upstream_transport_failure_reason =
                            Some(format!("delayed connect error: {text}"));
                    } else if let pool::UpstreamError::Tls(t) = &e {
                        i.upstream_transport_failure_reason = Some(format!("TLS_error: {t}"));
                    }
                });
                tried.push(host);
            }
        }
    }
    let Some((up, host)) = upstream else {
        if !tried.is_empty() && tried.len() as u32 >= cfg.max_connect_attempts {
            rec.with(|i| {
                i.response_flags
                    .insert(ResponseFlag::UpstreamRetryLimitExceeded)
            });
        }
        return;
    };
    rec.with(|i| {
        i.upstream_local = up.local();
        i.upstream_tls = up.tls().cloned();
    });
    let _req = host.start_request();
    let span = tracing::debug_span!("tcp_proxy", upstream = %host.address);
    let deadline = cfg.max_downstream_connection_duration;
    let moved = Moved::default();
    let piping = async {
        let fut = pipe(
            down,
            up,
            cfg.idle_timeout,
            &cfg.stats.downstream_cx_rx_bytes_total,
            &cfg.stats.downstream_cx_tx_bytes_total,
            &moved,
        );
        match cfg.access_log_flush_interval.filter(|_| rec.logs()) {
            Some(every) => {
                tokio::pin!(fut);
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tokio::select! {
                        end = &mut fut => break end,
                        _ = tick.tick() => rec.periodic(&moved),
                    }
                }
            }
            None => fut.await,
        }
    };
    let outcome = match deadline {
        Some(d) => match tokio::time::timeout(d, piping).await {
            Ok(end) => end,
            Err(_) => {
                rec.with(|i| i.response_flags.insert(ResponseFlag::DurationTimeout));
                PipeEnd::Closed
            }
        },
        None => piping.await,
    };
    rec.with(|i| {
        i.bytes_received = moved.rx.load(Ordering::Relaxed);
        i.bytes_sent = moved.tx.load(Ordering::Relaxed);
    });
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

/// The bytes one pipe moved: `rx` from its first side, `tx` to it.
#[derive(Debug, Default)]
pub struct Moved {
    /// Bytes read from the first side.
    pub rx: AtomicU64,
    /// Bytes written to the first side.
    pub tx: AtomicU64,
}

/// Copy bytes both ways until both directions have seen EOF (half-closes are passed on), one
/// fails, or nothing moves for `idle`. `rx` counts bytes from `a`, `tx` bytes to `a`, in the
/// stats counters and in `moved`.
pub async fn pipe<A, B>(
    a: A,
    b: B,
    idle: Option<Duration>,
    rx: &Counter,
    tx: &Counter,
    moved: &Moved,
) -> PipeEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let up = copy_half(ar, bw, rx, &moved.rx, &last, start);
    let down = copy_half(br, aw, tx, &moved.tx, &last, start);
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
    moved: &AtomicU64,
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
        moved.fetch_add(n as u64, Ordering::Relaxed);
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

/// A connection's record, told to the observers (and Istio's TCP metrics) when dropped; empty
/// when nobody observes.
struct Record(Option<Box<(StreamInfo, Observers, Option<IstioStats>)>>);

impl Record {
    fn start(observers: &Observers, istio: Option<&IstioStats>, conn: &ConnInfo) -> Record {
        if observers.is_empty() && istio.is_none() {
            return Record(None);
        }
        let mut info = StreamInfo::new(LogType::TcpConnectionEnd, conn.id, conn.listener.clone());
        info.direction = conn.direction;
        info.downstream_local = conn.local;
        info.downstream_remote = conn.remote;
        info.downstream_direct_remote = conn.remote;
        if let Some(t) = &conn.tls {
            info.requested_server_name = t.sni.clone();
            info.downstream_tls = Some(t.clone());
        }
        Record(Some(Box::new((info, observers.clone(), istio.cloned()))))
    }

    /// Whether an access log reads the record.
    fn logs(&self) -> bool {
        self.0.as_ref().is_some_and(|r| !r.1.is_empty())
    }

    fn with(&mut self, f: impl FnOnce(&mut StreamInfo)) {
        if let Some(r) = &mut self.0 {
            f(&mut r.0);
        }
    }

    /// A `TcpPeriodic` record of the connection so far.
    fn periodic(&self, moved: &Moved) {
        if let Some(r) = &self.0 {
            let mut info = r.0.clone();
            info.log_type = LogType::TcpPeriodic;
            info.duration = Some(info.elapsed());
            info.bytes_received = moved.rx.load(Ordering::Relaxed);
            info.bytes_sent = moved.tx.load(Ordering::Relaxed);
            r.1.notify(&info);
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(r) = &mut self.0 {
            r.0.duration = Some(r.0.elapsed());
            r.1.notify(&r.0);
            // Istio reports a connection whose peer is unknown (TCP metadata exchange needs
            // mTLS) once, at close: opened, closed and its bytes.
            if let Some(istio) = &r.2 {
                let mut flags = String::new();
                r.0.response_flags.write_to(false, &mut flags);
                istio.tcp_connection().close(&tcp_observation(&r.0, &flags));
            }
        }
    }
}
