//! The generic proxy for multiplexed RPC protocols (`envoy.filters.network.generic_proxy`,
//! `envoy.filters.network.dubbo_proxy`): the MOSN flow of "L7 基于多路复用的转发".
//!
//! Per downstream connection: the first bytes choose a codec by magic; each decoded request
//! is routed by its service / method / properties, a host is chosen and the request goes out
//! on a shared, multiplexed upstream connection with a fresh request id
//! (`upstream::pool::multiplex`), which restores the downstream id on the response. Heartbeats
//! are answered here; one-way requests are forwarded and forgotten; failures are answered
//! with the protocol's own error response (no route, no healthy upstream, connect failure,
//! timeout, overflow, upstream reset). When the downstream connection closes, its pending
//! requests are cancelled and their upstream ids freed.
//!
//! A reader (this task) and a writer (a task per connection) share nothing but a bounded
//! channel of encoded frames; a client that does not read its responses fills it and is
//! disconnected, so memory per connection stays bounded.

use super::{ConnInfo, Drain};
use crate::filters::GenericProxyConfig;
use crate::filters::generic_proxy::route::RpcRoute;
use crate::protocol::xprotocol::{self, Codec, ErrorKind, Frame, FrameKind, Selected};
use crate::snapshot::World;
use crate::stream_info::{LogType, ResponseFlag, StreamInfo};
use crate::upstream::cluster::{Cluster, ClusterStats};
use crate::upstream::host::{ActiveRequest, Host};
use crate::upstream::lb::LbContext;
use crate::upstream::pool::multiplex::{DownTx, MuxConn, Outcome, Reply, SendError};
use bytes::BytesMut;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, debug};

/// Requests in flight per downstream connection at most; beyond, requests are answered with
/// an overflow error.
pub const MAX_PENDING_PER_CONNECTION: u64 = 16_384;
/// Frames queued for a downstream connection's writer at most: a client that lets more
/// responses pile up (it does not read) is disconnected.
pub const MAX_QUEUED_FRAMES: usize = 8192;
/// Bytes read before a codec must have been chosen.
const MAX_DETECT: usize = 64;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// What a downstream connection keeps; dropping it cancels the connection's pending requests
/// on every upstream connection it used (also when the task is dropped at drain time).
struct Downstream {
    id: u64,
    cfg: Arc<GenericProxyConfig>,
    world: Arc<World>,
    conn: ConnInfo,
    codec: Codec,
    tx: DownTx,
    in_flight: Arc<AtomicU64>,
    used: Vec<MuxConn>,
}

impl Drop for Downstream {
    fn drop(&mut self) {
        for c in &self.used {
            c.cancel_owner(self.id);
        }
    }
}

/// Serve one downstream connection.
pub async fn serve<IO>(
    io: IO,
    cfg: Arc<GenericProxyConfig>,
    world: Arc<World>,
    conn: ConnInfo,
    mut drain: Drain,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, wr) = tokio::io::split(io);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Detection by magic, as MOSN's SelectStreamFactoryProtocol.
    let codec = loop {
        match xprotocol::detect(&cfg.codecs, &buf) {
            Selected::Codec(i) => match cfg.codecs.get(i) {
                Some(c) => break c.clone(),
                None => return,
            },
            Selected::None => {
                debug!(
                    conn = conn.id,
                    "generic_proxy: no codec matches the first bytes; connection closed"
                );
                cfg.stats.rq_decoding_error.inc();
                return;
            }
            Selected::NeedMore if buf.len() >= MAX_DETECT => {
                cfg.stats.rq_decoding_error.inc();
                return;
            }
            Selected::NeedMore => match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    };
    let (tx, rx) = mpsc::channel(MAX_QUEUED_FRAMES);
    let overflow = Arc::new(Notify::new());
    let tx = DownTx::new(tx, overflow.clone());
    let writer = tokio::spawn(write_loop(rx, wr));
    let mut down = Downstream {
        id: conn.id,
        cfg,
        world,
        conn,
        codec,
        tx,
        in_flight: Arc::new(AtomicU64::new(0)),
        used: Vec::new(),
    };
    let mut goaway_sent = false;
    loop {
        loop {
            match down.codec.decode(&mut buf) {
                Ok(Some(frame)) => down.on_frame(frame).await,
                Ok(None) => break,
                Err(e) => {
                    debug!(conn = down.id, error = %e, "generic_proxy: bad frame; connection closed");
                    down.cfg.stats.rq_decoding_error.inc();
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = overflow.notified() => {
                debug!(conn = down.id, "generic_proxy: the client does not read its responses; connection closed");
                // The writer is stuck on the socket: stop it so that the socket closes.
                writer.abort();
                break;
            }
            _ = drain.started(), if !goaway_sent => {
                goaway_sent = true;
                if let Some(g) = down.codec.goaway() {
                    down.send_frame(&g);
                }
            }
        }
    }
    let pending = down.in_flight.load(Ordering::Relaxed);
    if pending > 0 {
        debug!(
            conn = down.id,
            pending, "generic_proxy: downstream closed with requests in flight; cancelled"
        );
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<BytesMut>, mut w: W) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let out = match rx.try_recv() {
            Err(_) => first,
            Ok(second) => {
                batch.clear();
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                while let Ok(more) = rx.try_recv() {
                    batch.extend_from_slice(&more);
                    if batch.len() > 256 * 1024 {
                        break;
                    }
                }
                std::mem::take(&mut batch)
            }
        };
        if w.write_all(&out).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// The record of one request: stats, cluster stats, the access log; finished once.
struct Stream {
    cfg: Arc<GenericProxyConfig>,
    start: Instant,
    in_flight: Arc<AtomicU64>,
    upstream: Option<(ClusterStats, ActiveRequest)>,
    info: Option<Box<StreamInfo>>,
}

impl Stream {
    fn finish(mut self, outcome: Outcome) {
        let s = &self.cfg.stats;
        let elapsed = self.start.elapsed();
        s.rq_active.dec();
        s.rq_time.record_duration(elapsed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Outcome::Response { ok, .. } => {
                if !ok {
                    s.rq_error.inc();
                }
            }
            Outcome::Local(..) => {
                s.rq_local.inc();
                s.rq_error.inc();
            }
            Outcome::Cancelled => s.rq_reset.inc(),
        }
        if let Some((cs, _active)) = self.upstream.take() {
            cs.upstream_rq_active().dec();
            cs.upstream_rq_time().record_duration(elapsed);
            match outcome {
                Outcome::Response { .. } => cs.upstream_rq_completed().inc(),
                Outcome::Local(ErrorKind::Timeout, _) => cs.upstream_rq_timeout().inc(),
                _ => {}
            }
        }
        if let Some(mut info) = self.info.take() {
            info.duration = Some(elapsed);
            match outcome {
                Outcome::Response { code, .. } => {
                    info.response_code = u16::try_from(code).ok();
                    info.response_code_details = Some("via_upstream".into());
                }
                Outcome::Local(kind, code) => {
                    info.response_code = u16::try_from(code).ok().filter(|c| *c != 0);
                    info.response_flags.insert(flag(kind));
                    info.response_code_details = Some(detail(kind).into());
                }
                Outcome::Cancelled => {
                    info.response_flags
                        .insert(ResponseFlag::DownstreamConnectionTermination);
                    info.response_code_details = Some("downstream_remote_disconnect".into());
                }
            }
            self.cfg.observers.notify(&info);
        }
    }
}

fn flag(kind: ErrorKind) -> ResponseFlag {
    match kind {
        ErrorKind::NoRoute => ResponseFlag::NoRouteFound,
        ErrorKind::NoHealthyUpstream => ResponseFlag::NoHealthyUpstream,
        ErrorKind::ConnectFailure => ResponseFlag::UpstreamConnectionFailure,
        ErrorKind::UpstreamReset => ResponseFlag::UpstreamConnectionTermination,
        ErrorKind::Timeout => ResponseFlag::UpstreamRequestTimeout,
        ErrorKind::Overflow => ResponseFlag::UpstreamOverflow,
        ErrorKind::BadRequest => ResponseFlag::DownstreamProtocolError,
    }
}

fn detail(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NoRoute => "route_not_found",
        ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
        ErrorKind::ConnectFailure => "upstream_connection_failure",
        ErrorKind::UpstreamReset => "upstream_reset",
        ErrorKind::Timeout => "upstream_response_timeout",
        ErrorKind::Overflow => "overflow",
        ErrorKind::BadRequest => "bad_request",
    }
}

impl Downstream {
    fn send_frame(&self, f: &Frame) {
        let mut out = BytesMut::with_capacity(f.len());
        self.codec.encode(f, &mut out);
        self.tx.send(out);
    }

    async fn on_frame(&mut self, frame: Frame) {
        match frame.kind {
            FrameKind::Heartbeat => {
                self.cfg.stats.rq_heartbeat.inc();
                let r = self.codec.heartbeat_response(&frame);
                self.send_frame(&r);
            }
            FrameKind::Request | FrameKind::Oneway => {
                let span =
                    tracing::debug_span!("stream", conn = self.id, stream = frame.request_id);
                self.on_request(frame).instrument(span).await;
            }
            FrameKind::Response | FrameKind::HeartbeatResponse | FrameKind::Goaway => {
                debug!(conn = self.id, kind = ?frame.kind, "generic_proxy: frame from downstream ignored");
            }
        }
    }

    fn stream(&self, frame: &Frame) -> Stream {
        let s = &self.cfg.stats;
        s.rq_total.inc();
        s.rq_active.inc();
        if frame.kind == FrameKind::Oneway {
            s.rq_oneway.inc();
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let info = (!self.cfg.observers.is_empty()).then(|| {
            let mut i = StreamInfo::new(
                LogType::DownstreamEnd,
                self.conn.id,
                self.conn.listener.clone(),
            );
            i.direction = self.conn.direction;
            i.downstream_local = self.conn.local;
            i.downstream_remote = self.conn.remote;
            i.downstream_direct_remote = self.conn.remote;
            i.authority = frame.headers.service.clone();
            i.path = frame.headers.method.clone();
            Box::new(i)
        });
        Stream {
            cfg: self.cfg.clone(),
            start: Instant::now(),
            in_flight: self.in_flight.clone(),
            upstream: None,
            info,
        }
    }

    /// Like [`Self::local_error`] for a request whose record is inside its reply.
    fn fail_reply(&self, frame: &Frame, reply: Reply, kind: ErrorKind, message: &str) {
        let mut r = self.codec.error_response(frame, kind, message);
        r.set_request_id(reply.down_id);
        self.send_frame(&r);
        (reply.done)(Outcome::Local(kind, r.status.map_or(0, |s| s.code)));
    }

    /// Answer a request with the protocol's error response (one-way requests get none).
    fn local_error(&self, frame: &Frame, stream: Stream, kind: ErrorKind, message: &str) {
        debug!(
            conn = self.id,
            stream = frame.request_id,
            ?kind,
            message,
            "generic_proxy: local reply"
        );
        let mut code = 0;
        if frame.kind != FrameKind::Oneway {
            let r = self.codec.error_response(frame, kind, message);
            code = r.status.map_or(0, |s| s.code);
            self.send_frame(&r);
        }
        stream.finish(Outcome::Local(kind, code));
    }

    async fn on_request(&mut self, frame: Frame) {
        let mut stream = self.stream(&frame);
        if self.in_flight.load(Ordering::Relaxed) > MAX_PENDING_PER_CONNECTION {
            return self.local_error(
                &frame,
                stream,
                ErrorKind::Overflow,
                "too many requests in flight",
            );
        }
        let Some(route) = self.cfg.routes.find(&frame.headers).cloned() else {
            return self.local_error(&frame, stream, ErrorKind::NoRoute, "no route");
        };
        let name = route.cluster.pick(rand::random());
        let Some(cluster) = self.world.cluster(name) else {
            debug!(cluster = name, "generic_proxy: unknown cluster");
            if let Some(i) = &mut stream.info {
                i.response_flags.insert(ResponseFlag::NoClusterFound);
            }
            return self.local_error(
                &frame,
                stream,
                ErrorKind::NoHealthyUpstream,
                "cluster not found",
            );
        };
        if let Some(i) = &mut stream.info {
            i.route_name = Some(route.name.clone());
            i.upstream_cluster = Some(cluster.name.clone());
        }
        self.forward(frame, stream, &route, &cluster).await;
    }

    /// Choose a host, get a multiplexed connection and send; connect failures and closed
    /// connections go to another host while the route's retries last.
    async fn forward(
        &mut self,
        frame: Frame,
        mut stream: Stream,
        route: &RpcRoute,
        cluster: &Arc<Cluster>,
    ) {
        let mut tried: Vec<Arc<Host>> = Vec::new();
        let mut last = ErrorKind::NoHealthyUpstream;
        for attempt in 0..=route.num_retries {
            if attempt > 0 {
                cluster.stats.upstream_rq_retry().inc();
            }
            let Some(host) = cluster.choose_host(&LbContext {
                hash: None,
                excluded: &tried,
            }) else {
                cluster.stats.upstream_cx_none_healthy().inc();
                break;
            };
            if let Some(i) = &mut stream.info {
                i.upstream_host = Some(host.address.to_string());
                i.attempt_count += 1;
            }
            let conn = match host
                .pools()
                .multiplex
                .get(
                    &host,
                    &self.codec,
                    &cluster.stats,
                    cluster.pool.connect_timeout,
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    debug!(host = %host.address, error = %e, "generic_proxy: connect failed");
                    last = ErrorKind::ConnectFailure;
                    tried.push(host);
                    continue;
                }
            };
            if !self.used.iter().any(|c| c.id() == conn.id()) {
                self.used.retain(MuxConn::is_usable);
                self.used.push(conn.clone());
            }
            cluster.stats.upstream_rq_total().inc();
            cluster.stats.upstream_rq_active().inc();
            self.cfg
                .stats
                .rq_tx_time
                .record(stream.start.elapsed().as_micros() as u64);
            stream.upstream = Some((cluster.stats.clone(), host.start_request()));
            if frame.kind == FrameKind::Oneway {
                let _ = conn.send(frame, None);
                stream.finish(Outcome::Response { code: 0, ok: true });
                return;
            }
            let reply = Reply {
                owner: self.id,
                down_id: frame.request_id,
                tx: self.tx.clone(),
                deadline: route.timeout.map(|t| tokio::time::Instant::now() + t),
                done: Box::new(move |o| stream.finish(o)),
            };
            // The pool hands out usable connections only; one that closes in between fails
            // this request like the others in flight on it.
            match conn.send(frame, Some(reply)) {
                Ok(()) => {}
                Err(SendError::Closed(b)) => {
                    let (f, r) = *b;
                    self.fail_reply(
                        &f,
                        r,
                        ErrorKind::UpstreamReset,
                        "upstream connection closed",
                    );
                }
                Err(SendError::Overflow(b)) => {
                    let (f, r) = *b;
                    self.fail_reply(&f, r, ErrorKind::Overflow, "too many requests upstream");
                }
            }
            return;
        }
        let msg = match last {
            ErrorKind::ConnectFailure => "upstream connect failure",
            ErrorKind::UpstreamReset => "upstream connection closed",
            _ => "no healthy upstream",
        };
        self.local_error(&frame, stream, last, msg);
    }
}
