//! Multiplexed upstream connections for RPC protocols (MOSN's `connpool_multiplex`): a few
//! shared connections per host and codec, each carrying many requests at once. A request gets
//! a fresh id on the connection; the map upstream id → [`Reply`] (which downstream connection,
//! which downstream id, its deadline) sends the response back with the downstream id restored.
//! Responses may come back in any order.
//!
//! Each connection has a writer task (draining a shared write buffer) and a reader task (decoding
//! responses and expiring deadlines). When the connection is lost, exactly the requests in
//! flight on it fail with the protocol's error response; a downstream connection that closes
//! cancels its own pending requests ([`MuxConn::cancel_owner`]), freeing their ids.

use crate::protocol::xprotocol::{Codec, ErrorKind, Frame, FrameKind};
use crate::upstream::cluster::ClusterStats;
use crate::upstream::host::Host;
use crate::upstream::pool::{UpstreamError, connect_host};
use bytes::BytesMut;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::debug;

/// Requests in flight on one connection before the pool opens another (up to
/// [`MAX_CONNS_PER_HOST`]).
pub const SOFT_MAX_IN_FLIGHT: usize = 10_000;
/// Connections per host and codec at most.
pub const MAX_CONNS_PER_HOST: usize = 4;
/// Requests in flight on one connection at most: beyond, a request fails with overflow.
pub const MAX_IN_FLIGHT: usize = 100_000;
/// Largest id the pool allocates (fits Bolt's 32-bit and Dubbo's 64-bit ids).
const MAX_ID: u64 = i32::MAX as u64;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// How a request ended, as told to its [`Reply::done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered; the protocol's status and whether it means success.
    Response {
        /// The protocol's status code.
        code: u32,
        /// Whether it is a success.
        ok: bool,
    },
    /// The proxy answered with an error response of this kind and the protocol's status code
    /// for it (0 when the response has none).
    Local(ErrorKind, u32),
    /// The downstream connection closed before the response.
    Cancelled,
}

/// Called once when a request ends.
pub type Done = Box<dyn FnOnce(Outcome) + Send>;

/// A downstream connection's writer: a bounded queue of encoded frames. A connection whose
/// queue is full (its client does not read its responses) is told to close through
/// `overflow`, so a slow reader never makes the proxy buffer without bound.
#[derive(Debug, Clone)]
pub struct DownTx {
    tx: mpsc::Sender<BytesMut>,
    overflow: Arc<Notify>,
}

impl DownTx {
    /// A writer handle over `tx`; `overflow` is notified when the queue is full.
    pub fn new(tx: mpsc::Sender<BytesMut>, overflow: Arc<Notify>) -> Self {
        Self { tx, overflow }
    }

    /// Queue a frame; a full queue drops it and notifies `overflow`.
    pub fn send(&self, frame: BytesMut) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            self.overflow.notify_one();
        }
    }
}

/// Where a response goes.
pub struct Reply {
    /// The downstream connection's id (for cancellation).
    pub owner: u64,
    /// The request id on the downstream connection.
    pub down_id: u64,
    /// The downstream connection's writer.
    pub tx: DownTx,
    /// When the request times out (the route's timeout).
    pub deadline: Option<Instant>,
    /// Told how the request ended.
    pub done: Done,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("owner", &self.owner)
            .field("down_id", &self.down_id)
            .finish()
    }
}

/// A request in flight: the request frame (kept for the error response) and its reply.
struct Pending {
    request: Frame,
    reply: Reply,
}

impl Pending {
    /// Answer downstream with the protocol's error response.
    fn fail(mut self, codec: &Codec, kind: ErrorKind, message: &str) {
        self.request.set_request_id(self.reply.down_id);
        let resp = codec.error_response(&self.request, kind, message);
        let mut out = BytesMut::with_capacity(resp.len());
        codec.encode(&resp, &mut out);
        self.reply.tx.send(out);
        let code = resp.status.map_or(0, |s| s.code);
        (self.reply.done)(Outcome::Local(kind, code));
    }
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
    next_id: u64,
    wbuf: BytesMut,
    closed: bool,
}

struct Shared {
    id: u64,
    codec: Codec,
    state: Mutex<State>,
    in_flight: AtomicU64,
    draining: AtomicBool,
    wake_writer: Notify,
    wake_timer: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it, which only a bug reaches; the state
        // is still consistent enough to fail requests.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Close the connection: fail every request in flight on it with `kind`.
    fn close(&self, kind: ErrorKind, why: &str) {
        let pending: Vec<Pending> = {
            let mut st = self.lock();
            st.closed = true;
            st.deadlines.clear();
            // Wake the reader so that it sees `closed`.
            self.wake_timer.notify_one();
            st.pending.drain().map(|(_, p)| p).collect()
        };
        self.in_flight.store(0, Ordering::Relaxed);
        self.wake_writer.notify_one();
        for p in pending {
            p.fail(&self.codec, kind, why);
        }
    }
}

/// A shared, multiplexed upstream connection (cheap to clone).
#[derive(Clone)]
pub struct MuxConn(Arc<Shared>);

impl std::fmt::Debug for MuxConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxConn")
            .field("id", &self.0.id)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Why [`MuxConn::send`] did not take a request (the request is handed back).
#[derive(Debug)]
pub enum SendError {
    /// The connection is closed or going away: try another.
    Closed(Box<(Frame, Reply)>),
    /// Too many requests in flight, or no free id.
    Overflow(Box<(Frame, Reply)>),
}

impl MuxConn {
    /// A process-unique id of the connection (for logs and tests).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Relaxed) as usize
    }

    /// Whether new requests may be sent.
    pub fn is_usable(&self) -> bool {
        !self.0.draining.load(Ordering::Relaxed) && !self.0.lock().closed
    }

    /// Send a request: allocate an upstream id, rewrite the frame's id, queue its bytes and
    /// remember the reply. A one-way request (`reply` is `None`) is written and forgotten.
    pub fn send(&self, mut frame: Frame, reply: Option<Reply>) -> Result<(), SendError> {
        let s = &self.0;
        let mut st = s.lock();
        let Some(reply) = reply else {
            if st.closed {
                return Ok(());
            }
            st.next_id = next_id(st.next_id, frame.id_field.max());
            frame.set_request_id(st.next_id);
            s.codec.encode(&frame, &mut st.wbuf);
            drop(st);
            s.wake_writer.notify_one();
            return Ok(());
        };
        if st.closed || s.draining.load(Ordering::Relaxed) {
            return Err(SendError::Closed(Box::new((frame, reply))));
        }
        if st.pending.len() >= MAX_IN_FLIGHT {
            return Err(SendError::Overflow(Box::new((frame, reply))));
        }
        let max = frame.id_field.max().min(MAX_ID);
        let mut id = next_id(st.next_id, max);
        let mut tries = 0;
        while st.pending.contains_key(&id) {
            id = next_id(id, max);
            tries += 1;
            if tries > MAX_IN_FLIGHT {
                return Err(SendError::Overflow(Box::new((frame, reply))));
            }
        }
        st.next_id = id;
        frame.set_request_id(id);
        s.codec.encode(&frame, &mut st.wbuf);
        let mut rearm = false;
        if let Some(d) = reply.deadline {
            rearm = st.deadlines.first().is_none_or(|(first, _)| d < *first);
            st.deadlines.insert((d, id));
        }
        st.pending.insert(
            id,
            Pending {
                request: frame,
                reply,
            },
        );
        drop(st);
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        s.wake_writer.notify_one();
        if rearm {
            s.wake_timer.notify_one();
        }
        Ok(())
    }

    /// Cancel the pending requests of a downstream connection that closed; their ids are
    /// free again. Returns how many were cancelled.
    pub fn cancel_owner(&self, owner: u64) -> usize {
        let s = &self.0;
        let cancelled: Vec<Pending> = {
            let mut st = s.lock();
            let ids: Vec<u64> = st
                .pending
                .iter()
                .filter(|(_, p)| p.reply.owner == owner)
                .map(|(id, _)| *id)
                .collect();
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(p) = st.pending.remove(&id) {
                    if let Some(d) = p.reply.deadline {
                        st.deadlines.remove(&(d, id));
                    }
                    out.push(p);
                }
            }
            out
        };
        s.in_flight
            .fetch_sub(cancelled.len() as u64, Ordering::Relaxed);
        let n = cancelled.len();
        for p in cancelled {
            (p.reply.done)(Outcome::Cancelled);
        }
        n
    }
}

fn next_id(prev: u64, max: u64) -> u64 {
    if prev >= max { 1 } else { prev + 1 }
}

/// The multiplexed connections of one host, per codec.
#[derive(Debug, Default)]
pub struct MultiplexPool {
    conns: tokio::sync::Mutex<Vec<(&'static str, MuxConn)>>,
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

impl MultiplexPool {
    /// A connection to `host` speaking `codec`: the least loaded usable one, or a new one when
    /// there is none or all are busy (connecting while other callers wait for it).
    pub async fn get(
        &self,
        host: &Arc<Host>,
        codec: &Codec,
        stats: &ClusterStats,
        connect_timeout: Duration,
    ) -> Result<MuxConn, UpstreamError> {
        let name = codec.name();
        let mut conns = self.conns.lock().await;
        conns.retain(|(_, c)| !c.0.lock().closed);
        let best = conns
            .iter()
            .filter(|(n, c)| *n == name && c.is_usable())
            .min_by_key(|(_, c)| c.in_flight())
            .map(|(_, c)| c.clone());
        let count = conns.iter().filter(|(n, _)| *n == name).count();
        if let Some(c) = &best
            && (c.in_flight() < SOFT_MAX_IN_FLIGHT || count >= MAX_CONNS_PER_HOST)
        {
            return Ok(c.clone());
        }
        let io = connect_host(host, stats, connect_timeout).await?;
        let conn = MuxConn(Arc::new(Shared {
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            codec: codec.clone(),
            state: Mutex::new(State::default()),
            in_flight: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            wake_writer: Notify::new(),
            wake_timer: Notify::new(),
        }));
        debug!(host = %host.address, upstream_conn = conn.id(), codec = name, "multiplexed upstream connection opened");
        let (r, w) = tokio::io::split(io);
        tokio::spawn(writer(conn.0.clone(), w));
        tokio::spawn(reader(conn.0.clone(), r));
        conns.push((name, conn.clone()));
        Ok(conn)
    }
}

async fn writer<W: tokio::io::AsyncWrite + Unpin>(s: Arc<Shared>, mut w: W) {
    let mut out = BytesMut::new();
    loop {
        {
            let mut st = s.lock();
            if st.wbuf.is_empty() {
                if st.closed {
                    break;
                }
            } else {
                std::mem::swap(&mut st.wbuf, &mut out);
            }
        }
        if out.is_empty() {
            s.wake_writer.notified().await;
            continue;
        }
        if let Err(e) = w.write_all(&out).await {
            debug!(upstream_conn = s.id, error = %e, "multiplexed upstream write failed");
            s.close(ErrorKind::UpstreamReset, "upstream connection write failed");
            break;
        }
        out.clear();
    }
    let _ = w.shutdown().await;
}

async fn reader<R: tokio::io::AsyncRead + Unpin>(s: Arc<Shared>, mut r: R) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let why = loop {
        let first = s.lock().deadlines.first().map(|(d, _)| *d);
        let timer = async {
            match first {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            n = r.read_buf(&mut buf) => match n {
                Ok(0) => break "upstream connection closed",
                Err(_) => break "upstream connection reset",
                Ok(_) => {
                    if let Err(e) = deliver(&s, &mut buf) {
                        debug!(upstream_conn = s.id, error = %e, "bad frame from upstream; connection closed");
                        break "bad frame from upstream";
                    }
                }
            },
            _ = timer => expire(&s),
            _ = s.wake_timer.notified() => {}
        }
        if s.lock().closed {
            break "upstream connection closed";
        }
    };
    debug!(
        upstream_conn = s.id,
        why, "multiplexed upstream connection lost"
    );
    s.close(ErrorKind::UpstreamReset, why);
}

/// Decode what arrived and hand each response to its reply.
fn deliver(s: &Shared, buf: &mut BytesMut) -> Result<(), crate::protocol::xprotocol::CodecError> {
    while let Some(mut frame) = s.codec.decode(buf)? {
        match frame.kind {
            FrameKind::Response | FrameKind::HeartbeatResponse => {
                let p = {
                    let mut st = s.lock();
                    let p = st.pending.remove(&frame.request_id);
                    if let Some(d) = p.as_ref().and_then(|p| p.reply.deadline) {
                        st.deadlines.remove(&(d, frame.request_id));
                    }
                    p
                };
                let Some(p) = p else {
                    // Timed out or cancelled already.
                    continue;
                };
                s.in_flight.fetch_sub(1, Ordering::Relaxed);
                frame.set_request_id(p.reply.down_id);
                let outcome = frame
                    .status
                    .map_or(Outcome::Response { code: 0, ok: true }, |st| {
                        Outcome::Response {
                            code: st.code,
                            ok: st.ok,
                        }
                    });
                let mut out = BytesMut::with_capacity(frame.len());
                s.codec.encode(&frame, &mut out);
                p.reply.tx.send(out);
                (p.reply.done)(outcome);
            }
            FrameKind::Heartbeat => {
                let resp = s.codec.heartbeat_response(&frame);
                let mut st = s.lock();
                s.codec.encode(&resp, &mut st.wbuf);
                drop(st);
                s.wake_writer.notify_one();
            }
            FrameKind::Goaway => {
                s.draining.store(true, Ordering::Relaxed);
            }
            FrameKind::Request | FrameKind::Oneway => {
                debug!(upstream_conn = s.id, "request from upstream ignored");
            }
        }
    }
    Ok(())
}

/// Fail the requests whose deadline has passed.
fn expire(s: &Shared) {
    let now = Instant::now();
    let expired: Vec<Pending> = {
        let mut st = s.lock();
        let mut out = Vec::new();
        while let Some(&(d, id)) = st.deadlines.first() {
            if d > now {
                break;
            }
            st.deadlines.pop_first();
            if let Some(p) = st.pending.remove(&id) {
                out.push(p);
            }
        }
        out
    };
    s.in_flight
        .fetch_sub(expired.len() as u64, Ordering::Relaxed);
    for p in expired {
        p.fail(&s.codec, ErrorKind::Timeout, "upstream request timeout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Address;
    use crate::protocol::xprotocol::dubbo::{self, Dubbo};
    use crate::stats::Store;

    fn codec() -> Codec {
        Arc::new(Dubbo::default())
    }

    fn frame(id: u64) -> Frame {
        let mut b = dubbo::build::request(id, true, "S", "", "m", b"");
        codec().decode(&mut b).unwrap().unwrap()
    }

    type Log = Arc<Mutex<Vec<Outcome>>>;

    fn reply(owner: u64, down_id: u64, tx: &DownTx, log: &Log) -> Reply {
        let log = log.clone();
        Reply {
            owner,
            down_id,
            tx: tx.clone(),
            deadline: None,
            done: Box::new(move |o| log.lock().unwrap().push(o)),
        }
    }

    #[test]
    fn ids_wrap_below_the_field_maximum() {
        assert_eq!(next_id(0, 10), 1);
        assert_eq!(next_id(9, 10), 10);
        assert_eq!(next_id(10, 10), 1);
    }

    /// Two owners with the same downstream ids get distinct upstream ids; cancelling one owner
    /// frees exactly its ids; losing the connection fails the rest with the codec's error.
    #[tokio::test]
    async fn remap_cancel_and_loss() {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = upstream.local_addr().unwrap();
        let host = Arc::new(Host::new(Address::Tcp(addr), "", 1));
        let store = Store::new();
        let stats = ClusterStats::new(&store, "cluster.c.");
        let pool = MultiplexPool::default();
        let conn = pool
            .get(&host, &codec(), &stats, Duration::from_secs(1))
            .await
            .unwrap();
        let (mut peer, _) = upstream.accept().await.unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let tx = DownTx::new(tx, Arc::default());
        let log: Log = Arc::default();
        for owner in [1, 2] {
            for id in [7, 8] {
                conn.send(frame(id), Some(reply(owner, id, &tx, &log)))
                    .unwrap();
            }
        }
        assert_eq!(conn.in_flight(), 4);
        // The upstream sees four distinct ids.
        let mut buf = BytesMut::new();
        let mut ids = Vec::new();
        while ids.len() < 4 {
            peer.read_buf(&mut buf).await.unwrap();
            while let Some(f) = codec().decode(&mut buf).unwrap() {
                ids.push(f.request_id);
            }
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4);
        assert_eq!(conn.cancel_owner(1), 2);
        assert_eq!(conn.in_flight(), 2);
        // A late answer to a cancelled request is dropped; the connection closes and the
        // two requests of owner 2 fail with Dubbo's server error, ids restored.
        drop(peer);
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            got.push(codec().decode(&mut b).unwrap().unwrap());
        }
        let mut down: Vec<u64> = got.iter().map(|f| f.request_id).collect();
        down.sort();
        assert_eq!(down, [7, 8]);
        assert!(got.iter().all(|f| f.status.is_some_and(|s| s.code == 80)));
        let log = log.lock().unwrap().clone();
        assert_eq!(log.iter().filter(|o| **o == Outcome::Cancelled).count(), 2);
        assert_eq!(
            log.iter()
                .filter(|o| matches!(o, Outcome::Local(ErrorKind::UpstreamReset, 80)))
                .count(),
            2
        );
        assert!(!conn.is_usable());
        assert!(matches!(
            conn.send(frame(9), Some(reply(3, 9, &tx, &Arc::default()))),
            Err(SendError::Closed(_))
        ));
    }

    /// The upstream's heartbeat is answered on the connection; its go-away (Dubbo's read-only
    /// event) stops new requests there and the pool opens another connection.
    #[tokio::test]
    async fn upstream_heartbeat_and_goaway() {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = Arc::new(Host::new(
            Address::Tcp(upstream.local_addr().unwrap()),
            "",
            1,
        ));
        let store = Store::new();
        let stats = ClusterStats::new(&store, "cluster.c.");
        let pool = MultiplexPool::default();
        let first = pool
            .get(&host, &codec(), &stats, Duration::from_secs(1))
            .await
            .unwrap();
        let (mut peer, _) = upstream.accept().await.unwrap();
        peer.write_all(&dubbo::build::heartbeat(5)).await.unwrap();
        let mut buf = BytesMut::new();
        let hb = loop {
            if let Some(f) = codec().decode(&mut buf).unwrap() {
                break f;
            }
            peer.read_buf(&mut buf).await.unwrap();
        };
        assert_eq!((hb.kind, hb.request_id), (FrameKind::HeartbeatResponse, 5));
        let goaway = codec().goaway().unwrap();
        peer.write_all(&goaway.raw).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while first.is_usable() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!first.is_usable());
        let second = pool
            .get(&host, &codec(), &stats, Duration::from_secs(1))
            .await
            .unwrap();
        assert_ne!(first.id(), second.id());
    }
}
