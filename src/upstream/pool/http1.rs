//! HTTP/1.1 keep-alive pool: idle connections per host, one request at a time on each.
//!
//! A request runs on tern's own codec (`protocol::http1`) in the task of the stream that sends
//! it: the stream writes the request, reads the response head, and its response body reads the
//! rest and gives the connection back to the pool at the end. No connection task, no channel.
//! The request body keeps streaming while the response is read (full duplex), as hyper's
//! client did.
//!
//! Idle connections are watched by one task per pool (`watch`), which sleeps until one of them
//! becomes readable or the oldest reaches the idle timeout: a peer that closes an idle
//! connection (or sends bytes nobody asked for) has it closed and counted at once, as Envoy
//! does, instead of leaving it in CLOSE_WAIT until the next request, and a connection idle for
//! `idle_timeout` is closed when it is due (`upstream_cx_idle_timeout`). A connection is also
//! checked when it is taken.

use super::{
    HostPools, Pending, PoolSettings, PooledResponse, UpstreamConn, UpstreamError, UpstreamTls,
    connect_host,
};
use crate::protocol::body::{Body, BoxError, boxed};
use crate::protocol::http1::{
    BodyDecoder, Decoded, Framing, ParseError, ResponseHead, content_length, encode_chunk_header,
    encode_chunked_end, encode_request_head, parse_response_head, response_framing,
};
use crate::upstream::cluster::ClusterStats;
use crate::upstream::host::Host;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::Method;
use http_body::Body as _;
use hyper::body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

/// Request bytes buffered before they are written out.
const WRITE_HIGH: usize = 64 * 1024;

/// Read buffer capacity reserved before each read.
const READ_CHUNK: usize = 8 * 1024;

/// Idle HTTP/1.1 connections of one host. The lock is held only to push or pop, or while the
/// watcher looks at the idle connections; it is never shared with a configuration writer.
#[derive(Debug, Default)]
pub struct Http1Pool {
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    conns: VecDeque<Conn>,
    /// The watcher task's waker, once it has run; a connection put back registers it for its
    /// read readiness.
    watcher: Option<Waker>,
    /// A watcher task was started for this pool.
    watching: bool,
    /// The idle timeout the last connection put back was configured with.
    idle_timeout: Option<std::time::Duration>,
    /// The watcher has a timer for the oldest connection's idle timeout.
    timed: bool,
}

impl Drop for Http1Pool {
    fn drop(&mut self) {
        // The watcher sleeps until an idle connection stirs; with the pool gone it must hear
        // so, and end.
        if let Ok(idle) = self.idle.get_mut()
            && let Some(w) = idle.watcher.take()
        {
            w.wake();
        }
    }
}

/// An HTTP/1.1 connection with its buffers.
#[derive(Debug)]
struct Conn {
    io: UpstreamConn,
    rbuf: BytesMut,
    wbuf: BytesMut,
    since: Instant,
    used: u32,
    peer: Arc<str>,
    local: Option<std::net::SocketAddr>,
    tls: Option<Arc<crate::tls::TlsInfo>>,
}

impl Conn {
    /// Whether an idle connection can take a request: its peer has neither closed it nor sent
    /// anything. Looks at the socket without waiting; `waker` is woken when that changes.
    fn idle_usable(&mut self, waker: &Waker) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        self.rbuf.reserve(READ_CHUNK);
        let mut cx = Context::from_waker(waker);
        matches!(
            poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.rbuf),
            Poll::Pending
        )
    }

    /// Whether the connection has been idle for `idle_timeout`; if so it is counted in
    /// `upstream_cx_idle_timeout`, and the caller closes it.
    fn expired(&self, idle_timeout: Option<std::time::Duration>, now: Instant) -> bool {
        let expired = idle_timeout.is_some_and(|t| now.saturating_duration_since(self.since) >= t);
        if expired {
            self.io.count_idle_timeout();
        }
        expired
    }
}

impl Http1Pool {
    /// Number of idle connections.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.conns.len()).unwrap_or(0)
    }

    /// Close every idle connection (host removed, or drain).
    pub fn clear(&self) {
        let drained: Vec<Conn> = match self.idle.lock() {
            Ok(mut v) => v.conns.drain(..).collect(),
            Err(_) => return,
        };
        drop(drained);
    }

    /// The most recently used idle connection that can still take a request; the dead ones
    /// met on the way are closed.
    fn take(&self, settings: &PoolSettings) -> Option<Conn> {
        let now = Instant::now();
        let mut dead = Vec::new();
        let found = {
            let mut idle = self.idle.lock().ok()?;
            loop {
                let Some(mut c) = idle.conns.pop_back() else {
                    break None;
                };
                // The stream that takes it registers for its readiness when it reads.
                if !c.expired(settings.idle_timeout, now) && c.idle_usable(Waker::noop()) {
                    break Some(c);
                }
                dead.push(c);
            }
        };
        drop(dead);
        found
    }

    /// Give a connection back to `pools`' idle HTTP/1.1 connections, watched from now on.
    fn put(pools: &Arc<HostPools>, mut c: Conn, settings: &PoolSettings) {
        if settings
            .max_requests_per_connection
            .is_some_and(|m| c.used >= m)
        {
            return;
        }
        let now = Instant::now();
        c.since = now;
        let Ok(mut idle) = pools.http1.idle.lock() else {
            return;
        };
        idle.idle_timeout = settings.idle_timeout;
        if !idle.watching && tokio::runtime::Handle::try_current().is_ok() {
            idle.watching = true;
            tokio::spawn(watch(Arc::downgrade(pools)));
        }
        // From now on the watcher hears when the peer closes the connection or writes to it.
        // The response was read to a short read, which cleared the socket's readiness, so
        // this only registers the waker (no read: the read buffer may still be shared with
        // the response body on its way downstream). Readable already: the watcher looks.
        let watcher = idle.watcher.as_ref().unwrap_or(Waker::noop());
        if c.io
            .poll_read_ready(&mut Context::from_waker(watcher))
            .is_ready()
            // No timer for the idle timeout yet (the pool was empty when the watcher last
            // looked): the watcher sets one.
            || (idle.idle_timeout.is_some() && !idle.timed)
        {
            watcher.wake_by_ref();
        }
        // The oldest leaves once past the idle timeout, while traffic flows.
        let stale = idle
            .conns
            .front()
            .is_some_and(|o| o.expired(settings.idle_timeout, now))
            .then(|| idle.conns.pop_front());
        let rejected = if idle.conns.len() < settings.max_idle_per_host {
            idle.conns.push_back(c);
            None
        } else {
            Some(c)
        };
        drop(idle);
        drop((stale, rejected));
    }
}

/// The watcher of a pool's idle connections: it wakes when one of them becomes readable (its
/// peer closed it, or sent bytes nobody asked for) or when the oldest reaches the idle
/// timeout, closes those, and ends with the pool.
async fn watch(pools: std::sync::Weak<HostPools>) {
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| {
        loop {
            let Some(p) = pools.upgrade() else {
                return Poll::Ready(());
            };
            let now = Instant::now();
            let mut dead = Vec::new();
            let due = {
                let Ok(mut idle) = p.http1.idle.lock() else {
                    return Poll::Ready(());
                };
                if !idle
                    .watcher
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    idle.watcher = Some(cx.waker().clone());
                }
                let timeout = idle.idle_timeout;
                let mut i = 0;
                while i < idle.conns.len() {
                    let c = &mut idle.conns[i];
                    if !c.expired(timeout, now) && c.idle_usable(cx.waker()) {
                        i += 1;
                    } else if let Some(c) = idle.conns.remove(i) {
                        dead.push(c);
                    }
                }
                // Connections go back at the end: the front one is the oldest.
                let due = timeout.and_then(|t| idle.conns.front().map(|c| c.since + t));
                idle.timed = due.is_some();
                due
            };
            if !dead.is_empty() {
                tracing::debug!(closed = dead.len(), "idle upstream connections closed");
            }
            drop(dead);
            // Possibly the last reference: the pool's drop then wakes this task, which ends.
            drop(p);
            let Some(due) = due else {
                timer = None;
                return Poll::Pending;
            };
            let due = tokio::time::Instant::from_std(due);
            let t = match &mut timer {
                Some(t) => {
                    if t.deadline() != due {
                        t.as_mut().reset(due);
                    }
                    t
                }
                None => timer.insert(Box::pin(tokio::time::sleep_until(due))),
            };
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Due already: look again.
        }
    })
    .await
}

/// Why writing the request stopped.
enum SendError {
    /// The downstream request body failed (reset, timed out): the exchange is abandoned.
    Body(BoxError),
    /// The request body does not match its `content-length`.
    Length,
    /// The connection failed; a response may still be readable.
    Io(io::Error),
}

/// One request/response exchange on a connection.
struct Exchange {
    conn: Conn,
    /// The request body still to be written; `None` once its end is in `wbuf`.
    body: Option<Body>,
    /// How the request body is framed, with the bytes still due for `Length`.
    framing: Framing,
    /// The request has been written out completely (or writing it was given up).
    sent: bool,
    /// Writing the request failed, or stopped before its end: the connection cannot be reused.
    broken: bool,
    /// The body has been polled (a request whose body was touched cannot be sent again).
    body_touched: bool,
    /// Response bytes have been read.
    got_bytes: bool,
    /// The write error, reported if no response can be read.
    write_error: Option<io::Error>,
    max_headers: usize,
}

impl Exchange {
    /// Write as much of the request as can be written now. `Ready(Ok)` once all of it is out.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        loop {
            while self.conn.wbuf.len() < WRITE_HIGH {
                let Some(body) = self.body.as_mut() else {
                    break;
                };
                self.body_touched = true;
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => self.encode_frame(frame)?,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(SendError::Body(e))),
                    Poll::Ready(None) => self.finish_body(None)?,
                    Poll::Pending => break,
                }
            }
            if self.conn.wbuf.is_empty() {
                // A TLS session may still hold records it could not write: push them out
                // (a no-op on plain TCP).
                match Pin::new(&mut self.conn.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Io(e))),
                    Poll::Pending => return Poll::Pending,
                }
                return if self.body.is_none() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            match Pin::new(&mut self.conn.io).poll_write(cx, &self.conn.wbuf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(SendError::Io(io::ErrorKind::WriteZero.into())));
                }
                Poll::Ready(Ok(n)) => self.conn.wbuf.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn encode_frame(&mut self, frame: Frame<Bytes>) -> Result<(), SendError> {
        match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    return Ok(());
                }
                match &mut self.framing {
                    Framing::Chunked => {
                        encode_chunk_header(data.len(), &mut self.conn.wbuf);
                        self.conn.wbuf.put_slice(&data);
                        self.conn.wbuf.put_slice(b"\r\n");
                    }
                    Framing::Length(left) if data.len() as u64 <= *left => {
                        *left -= data.len() as u64;
                        self.conn.wbuf.put_slice(&data);
                    }
                    _ => return Err(SendError::Length),
                }
                Ok(())
            }
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => self.finish_body(Some(&trailers)),
                Err(_) => Ok(()),
            },
        }
    }

    /// The request body has ended (with trailers, which only a chunked body can carry).
    fn finish_body(&mut self, trailers: Option<&http::HeaderMap>) -> Result<(), SendError> {
        self.body = None;
        match self.framing {
            Framing::Chunked => encode_chunked_end(trailers, &mut self.conn.wbuf),
            Framing::Length(0) | Framing::Empty => {}
            Framing::Length(_) | Framing::Close => return Err(SendError::Length),
        }
        self.framing = Framing::Empty;
        Ok(())
    }

    /// Keep the request going; returns an error only when the exchange must end.
    fn drive_send(&mut self, cx: &mut Context<'_>) -> Result<(), UpstreamError> {
        if self.sent {
            return Ok(());
        }
        match self.poll_send(cx) {
            Poll::Ready(Ok(())) => self.sent = true,
            Poll::Pending => {}
            Poll::Ready(Err(SendError::Body(e))) => return Err(UpstreamError::RequestBody(e)),
            Poll::Ready(Err(SendError::Length)) => {
                return Err(UpstreamError::Reset(
                    "request body does not match its content-length".into(),
                ));
            }
            Poll::Ready(Err(SendError::Io(e))) => {
                // The peer may have answered and closed: read what it sent before failing.
                self.sent = true;
                self.broken = true;
                self.body = None;
                self.write_error = Some(e);
            }
        }
        Ok(())
    }

    /// Read into the buffer. `Ready(Ok(false))`: the peer closed the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        self.conn.rbuf.reserve(READ_CHUNK);
        match poll_read_buf(Pin::new(&mut self.conn.io), cx, &mut self.conn.rbuf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(_)) => {
                self.got_bytes = true;
                Poll::Ready(Ok(true))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Send the request and read the final response head (1xx responses are skipped).
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<ResponseHead, UpstreamError>> {
        loop {
            self.drive_send(cx)?;
            if !self.conn.rbuf.is_empty() {
                match parse_response_head(&mut self.conn.rbuf, self.max_headers) {
                    Ok(Some(head)) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                        return Poll::Ready(Err(UpstreamError::Protocol(ParseError::Malformed(
                            "101 to a request that did not ask to upgrade",
                        ))));
                    }
                    Ok(Some(head)) if head.is_informational() => continue,
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(UpstreamError::Protocol(e))),
                }
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => {
                    let e = self.write_error.take().unwrap_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "upstream closed the connection before the response",
                        )
                    });
                    return Poll::Ready(Err(UpstreamError::Reset(e.into())));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(UpstreamError::Reset(e.into()))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Whether a failed exchange on a pooled connection may go again on another one: nothing
    /// of the request body was used, the method is idempotent, and the peer sent nothing
    /// (it had closed the idle connection as the request went out).
    fn resendable(&self, method: &Method, err: &UpstreamError) -> bool {
        !self.body_touched
            && !self.got_bytes
            && matches!(err, UpstreamError::Reset(_))
            && method.is_idempotent()
    }
}

/// The request body's framing: the `content-length` it carries, else none when it is empty,
/// its exact size when known, else chunked.
fn request_framing(headers: &http::HeaderMap, body: &Body) -> Framing {
    if let Ok(Some(n)) = content_length(headers) {
        return if n == 0 && body.is_end_stream() {
            Framing::Empty
        } else {
            Framing::Length(n)
        };
    }
    if body.is_end_stream() {
        return Framing::Empty;
    }
    match body.size_hint().exact() {
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
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
    let (parts, body) = req.into_parts();
    let framing = request_framing(&parts.headers, &body);
    let mut body = (framing != Framing::Empty).then_some(body);
    let max_headers = settings.max_headers_count.max(1);
    let start = |mut conn: Conn, body: Option<Body>| {
        conn.used += 1;
        encode_request_head(
            &parts.method,
            &parts.uri,
            &parts.headers,
            framing,
            &mut conn.wbuf,
        );
        Exchange {
            conn,
            body,
            framing,
            sent: false,
            broken: false,
            body_touched: false,
            got_bytes: false,
            write_error: None,
            max_headers,
        }
    };

    // A pooled connection first; a request that found its connection closed under it moves
    // on to the next one when it can be sent again.
    while let Some(conn) = pools.http1.take(settings) {
        let mut ex = start(conn, body.take());
        match poll_fn(|cx| ex.poll_head(cx)).await {
            Ok(head) => return respond(ex, head, &parts.method, pools, settings),
            Err(e) if ex.resendable(&parts.method, &e) => {
                tracing::debug!(error = %e, "pooled upstream connection was closed; trying another");
                body = ex.body.take();
            }
            Err(e) => return Err(e),
        }
    }

    let pending = Pending::start(stats);
    let io = connect_host(host, stats, settings.connect_timeout, tls).await?;
    stats.upstream_cx_http1_total().inc();
    drop(pending);
    let conn = Conn {
        peer: io.peer().into(),
        local: io.local(),
        tls: io.tls().cloned(),
        io,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        since: Instant::now(),
        used: 0,
    };
    let mut ex = start(conn, body);
    let head = poll_fn(|cx| ex.poll_head(cx)).await?;
    respond(ex, head, &parts.method, pools, settings)
}

fn respond(
    ex: Exchange,
    head: ResponseHead,
    method: &Method,
    pools: &Arc<HostPools>,
    settings: &PoolSettings,
) -> Result<PooledResponse, UpstreamError> {
    let framing = response_framing(method, &head).map_err(UpstreamError::Protocol)?;
    let decoder = BodyDecoder::new(framing, ex.max_headers);
    let upstream_addr = ex.conn.peer.clone();
    let upstream_local = ex.conn.local;
    let upstream_tls = ex.conn.tls.clone();
    let ResponseHead {
        status,
        version,
        headers,
        keep_alive,
        ..
    } = head;
    let body = ResponseBody {
        ex: Some(ex),
        decoder,
        eof: false,
        keep_alive: keep_alive && framing != Framing::Close,
        pools: pools.clone(),
        settings: settings.clone(),
    };
    let mut response = http::Response::new(boxed(body));
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(PooledResponse {
        response,
        upstream_addr,
        upstream_local,
        upstream_tls,
    })
}

/// A response body read from its connection by whoever polls it. At its end the connection
/// goes back to the pool if the exchange left it clean; dropped early, it is closed.
struct ResponseBody {
    ex: Option<Exchange>,
    decoder: BodyDecoder,
    eof: bool,
    keep_alive: bool,
    pools: Arc<HostPools>,
    settings: PoolSettings,
}

impl ResponseBody {
    /// The body has ended: give the connection back when it can carry another request.
    fn finish(&mut self) {
        let Some(ex) = self.ex.take() else {
            return;
        };
        if self.decoder.is_done()
            && self.keep_alive
            && ex.sent
            && !ex.broken
            && ex.conn.rbuf.is_empty()
            && ex.conn.wbuf.is_empty()
        {
            Http1Pool::put(&self.pools, ex.conn, &self.settings);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(ex) = this.ex.as_mut() else {
                return Poll::Ready(None);
            };
            if let Err(e) = ex.drive_send(cx) {
                this.ex = None;
                return Poll::Ready(Some(Err(e.into())));
            }
            match this.decoder.decode(&mut ex.conn.rbuf, this.eof) {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Trailers(t)) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    this.ex = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match ex.poll_fill(cx) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => this.eof = true,
                Poll::Ready(Err(e)) => {
                    this.ex = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ex.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
