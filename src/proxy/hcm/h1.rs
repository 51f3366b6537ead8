//! The downstream side of HTTP/1.1: tern's own server connection on `protocol::http1::server`.
//!
//! One task per connection reads a request head, runs the stream (`stream::handle`) in the same
//! task, and writes its response; requests on a connection are served one after the other
//! (pipelined requests wait in the read buffer). While a stream runs, the connection keeps
//! reading: into the request body's queue while a body is coming, else ahead into the read
//! buffer, so that a client that closes the connection resets its stream, as Envoy does.
//!
//! After a 101 to an upgrade request, or a 2xx to CONNECT, the socket and the bytes read past
//! the request head go to the stream's tunnel ([`DownstreamUpgrade`]).

use super::ConnCtx;
use super::stream;
use crate::protocol::body::{Body, BoxError};
use crate::protocol::detect::{Detected, detect_http};
use crate::protocol::http1::server::{self as codec, RequestError, RequestHead, ResponseFraming};
use crate::protocol::http1::{self, BodyDecoder, Decoded, Framing, Seen};
use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HeaderValue, TE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use tracing::debug;

/// Bytes read ahead of the current request (pipelined requests) before the connection stops
/// reading until the stream is done.
const READ_AHEAD: usize = 64 * 1024;

/// Request body bytes queued for the stream before the connection stops reading.
const BODY_QUEUE: usize = 64 * 1024;

/// Response bytes gathered before they are written.
const WRITE_CHUNK: usize = 64 * 1024;

/// A body piece at least this large is written as it is rather than copied.
const WRITE_DIRECT: usize = 16 * 1024;

/// How a connection ended.
pub(super) enum Outcome<IO> {
    /// Closed, or handed to a tunnel.
    Done,
    /// The client sent the HTTP/2 preface to an `AUTO` codec: the socket and the bytes read so
    /// far go to the HTTP/2 codec.
    Http2(IO, Bytes),
}

/// Any byte stream a tunnel can take over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A byte stream with bytes already read from it put back in front: the socket of an
/// upgraded connection, or of an `AUTO` connection handed to HTTP/2 after its preface was seen.
pub(crate) struct Prefixed<T> {
    io: T,
    read: Bytes,
}

impl<T> Prefixed<T> {
    /// `io`, whose next bytes are `read`.
    pub(crate) fn new(io: T, read: Bytes) -> Self {
        Self { io, read }
    }
}

/// The socket of an upgraded HTTP/1.1 connection.
pub(crate) type Upgraded = Prefixed<Box<dyn Io>>;

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The downstream connection of an upgrade or CONNECT request, once the response has gone
/// out: from hyper (an HTTP/2 extended CONNECT) or from this codec. It travels in the
/// request's extensions, which must be `Clone`; the first to take it has it.
#[derive(Clone)]
pub(crate) struct DownstreamUpgrade(Arc<Mutex<Option<UpgradeFrom>>>);

enum UpgradeFrom {
    /// hyper's HTTP/2 codec.
    Hyper(hyper::upgrade::OnUpgrade),
    /// This codec.
    Http1(oneshot::Receiver<Upgraded>),
}

/// A byte stream a tunnel pipes.
pub(crate) type Tunnel = Box<dyn Io>;

impl DownstreamUpgrade {
    /// hyper's upgrade of an HTTP/2 stream.
    pub(crate) fn hyper(on: hyper::upgrade::OnUpgrade) -> Self {
        Self(Arc::new(Mutex::new(Some(UpgradeFrom::Hyper(on)))))
    }

    fn http1(rx: oneshot::Receiver<Upgraded>) -> Self {
        Self(Arc::new(Mutex::new(Some(UpgradeFrom::Http1(rx)))))
    }

    /// The upgraded connection; an error when the response was not an upgrade after all, the
    /// connection went away, or it was taken already.
    pub(crate) async fn connected(self) -> Result<Tunnel, BoxError> {
        let from = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match from {
            Some(UpgradeFrom::Hyper(on)) => {
                let up = on.await?;
                Ok(Box::new(hyper_util::rt::TokioIo::new(up)))
            }
            Some(UpgradeFrom::Http1(rx)) => match rx.await {
                Ok(up) => Ok(Box::new(up)),
                Err(_) => Err(error("the response was not an upgrade")),
            },
            None => Err(error("the upgrade was taken already")),
        }
    }
}

fn error(text: &'static str) -> BoxError {
    text.into()
}

/// What the queue between the connection and a request body holds.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame<Bytes>>,
    bytes: usize,
    /// The body's bytes still to come, when known (`content-length`).
    left: Option<u64>,
    /// The decoder reached the end of the body.
    done: bool,
    error: Option<String>,
    /// The stream dropped the body.
    dropped: bool,
    /// The body waits for a frame.
    reader: Option<Waker>,
    /// The connection waits for room in the queue.
    writer: Option<Waker>,
}

/// A request body read by the connection.
pub(crate) struct RequestBody {
    queue: Arc<Mutex<Queue>>,
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // The lock is held only for queue operations that cannot panic.
    q.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut q = lock(&self.queue);
        if let Some(f) = q.frames.pop_front() {
            if let Some(d) = f.data_ref() {
                q.bytes -= d.len();
                if let Some(left) = q.left.as_mut() {
                    *left = left.saturating_sub(d.len() as u64);
                }
            }
            if let Some(w) = q.writer.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = &q.error {
            return Poll::Ready(Some(Err(e.clone().into())));
        }
        if q.done {
            return Poll::Ready(None);
        }
        q.reader = Some(cx.waker().clone());
        if let Some(w) = q.writer.take() {
            w.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let q = lock(&self.queue);
        q.done && q.frames.is_empty() && q.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match lock(&self.queue).left {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let mut q = lock(&self.queue);
        q.dropped = true;
        if let Some(w) = q.writer.take() {
            w.wake();
        }
    }
}

/// The connection's side of a request body.
struct Pump {
    queue: Arc<Mutex<Queue>>,
    decoder: BodyDecoder,
    /// The body has been read to its end (or failed): the next bytes are the next request.
    finished: bool,
    /// The stream dropped the body before its end: the connection cannot carry another
    /// request.
    abandoned: bool,
}

enum Step {
    /// The decoder needs more bytes.
    Read,
    /// The queue is full, or the body has ended.
    Wait,
}

impl Pump {
    fn step(&mut self, buf: &mut BytesMut, cx: &mut Context<'_>) -> Step {
        let mut q = lock(&self.queue);
        if q.dropped {
            self.finished = true;
            self.abandoned = !self.decoder.is_done();
            return Step::Wait;
        }
        let mut woke = false;
        let step = loop {
            if q.bytes >= BODY_QUEUE {
                q.writer = Some(cx.waker().clone());
                break Step::Wait;
            }
            match self.decoder.decode(buf, false) {
                Ok(Decoded::Data(b)) => {
                    q.bytes += b.len();
                    q.frames.push_back(Frame::data(b));
                    woke = true;
                }
                Ok(Decoded::Trailers(t)) => {
                    q.frames.push_back(Frame::trailers(t));
                    q.done = true;
                    self.finished = true;
                    woke = true;
                    break Step::Wait;
                }
                Ok(Decoded::End) => {
                    q.done = true;
                    self.finished = true;
                    woke = true;
                    break Step::Wait;
                }
                Ok(Decoded::NeedMore) => break Step::Read,
                Err(e) => {
                    q.error = Some(e.to_string());
                    self.finished = true;
                    self.abandoned = true;
                    woke = true;
                    break Step::Wait;
                }
            }
        };
        if woke && let Some(w) = q.reader.take() {
            w.wake();
        }
        step
    }

    /// The connection closed (or failed) in the middle of the body.
    fn eof(&mut self) {
        self.finished = true;
        self.abandoned = true;
        let mut q = lock(&self.queue);
        q.error = Some("downstream closed in the middle of the request body".into());
        if let Some(w) = q.reader.take() {
            w.wake();
        }
    }
}

/// What a stream left for the connection to do.
struct Exchange {
    /// An HTTP/1.0 request the connection manager accepts: the response is HTTP/1.0 too.
    http10: bool,
    method_head: bool,
    connect: bool,
    keep_alive: bool,
    /// `te: trailers`: the client takes trailers on a chunked response.
    trailers: bool,
    upgrade: Option<oneshot::Sender<Upgraded>>,
}

/// One downstream HTTP/1.1 connection.
struct Conn<IO> {
    io: IO,
    rbuf: BytesMut,
    wbuf: BytesMut,
    ctx: Arc<ConnCtx>,
    /// The read side reached its end.
    eof: bool,
    /// Look for the HTTP/2 preface before the first request (`AUTO` without ALPN).
    detect_h2: bool,
    /// `downstream_cx_http1_total` counted this connection.
    counted: bool,
}

/// What follows a response.
enum Next {
    /// Another request.
    Request,
    /// The connection closes.
    Close,
    /// The connection becomes the stream's tunnel.
    Upgrade(oneshot::Sender<Upgraded>),
}

/// Why no request head came.
enum NoHead {
    /// The client closed the connection (or the connection manager closes it while idle).
    Closed,
    /// A codec error: the reply is written and the connection closes.
    Error(RequestError),
    /// `request_headers_timeout` passed with the head incomplete.
    Timeout,
    /// The HTTP/2 preface.
    Http2,
}

/// Serve HTTP/1.1 on `io` until the connection closes.
pub(super) async fn serve<IO>(io: IO, ctx: Arc<ConnCtx>, detect_h2: bool) -> Outcome<IO>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut c = Conn {
        io,
        rbuf: BytesMut::with_capacity(8192),
        wbuf: BytesMut::with_capacity(8192),
        ctx,
        eof: false,
        detect_h2,
        counted: false,
    };
    loop {
        let head = match c.read_head().await {
            Ok(h) => h,
            Err(NoHead::Closed) => return Outcome::Done,
            Err(NoHead::Http2) => {
                let read = c.rbuf.split().freeze();
                return Outcome::Http2(c.io, read);
            }
            Err(NoHead::Error(e)) => {
                debug!(conn = c.ctx.conn.id, error = %e, "HTTP/1 codec error");
                let stats = &c.ctx.hcm.config.stats;
                stats.downstream_cx_protocol_error.inc();
                let resp = stream::protocol_error(&c.ctx, e.status(), &e.to_string());
                let _ = c.write_local(resp).await;
                return Outcome::Done;
            }
            Err(NoHead::Timeout) => {
                debug!(conn = c.ctx.conn.id, "request headers timeout");
                let resp = stream::request_header_timeout(&c.ctx);
                let _ = c.write_local(resp).await;
                return Outcome::Done;
            }
        };
        match c.exchange(head).await {
            Ok(Next::Request) => {}
            Ok(Next::Close) | Err(_) => return Outcome::Done,
            Ok(Next::Upgrade(tx)) => {
                // The connection is the tunnel's now; this task only has to end.
                let read = c.rbuf.split().freeze();
                let _ = tx.send(Prefixed::new(Box::new(c.io) as Box<dyn Io>, read));
                return Outcome::Done;
            }
        }
    }
}

impl<IO> Conn<IO>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// Read into the spare room of the read buffer (room is made first, reusing the buffer's
    /// memory once the previous request's head is gone). `Ok(0)`: end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(8192);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf)
    }

    async fn read_head(&mut self) -> Result<RequestHead, NoHead> {
        let ctx = self.ctx.clone();
        let cfg = &ctx.hcm.config;
        // Room for twice the header limit, so that a request just over the limit parses and
        // gets Envoy's 431 from the stream (`stream::decode`, which counts names and values
        // as Envoy does); only a far larger one is refused here.
        let limit = (cfg.max_request_headers_bytes * 2).max(8192) + 8192;
        let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            if !self.rbuf.is_empty() {
                if self.detect_h2 {
                    match detect_http(&self.rbuf) {
                        Detected::Http2 => return Err(NoHead::Http2),
                        Detected::Http1 => self.detect_h2 = false,
                        Detected::NeedMore => {}
                    }
                }
                if !self.detect_h2 && !self.counted {
                    // Envoy counts the connection when its first bytes pick the codec, before
                    // any request in them is known to be well formed.
                    self.counted = true;
                    cfg.stats.downstream_cx_http1_total.inc();
                }
                if !self.detect_h2 {
                    match codec::parse_request_head(&mut self.rbuf, cfg.max_headers_count, limit) {
                        Ok(Some(h)) => return Ok(h),
                        Ok(None) => {}
                        Err(e) => return Err(NoHead::Error(e)),
                    }
                }
                if timer.is_none()
                    && let Some(t) = cfg.request_headers_timeout
                {
                    timer = Some(Box::pin(tokio::time::sleep(t)));
                }
            }
            if self.eof {
                return Err(NoHead::Closed);
            }
            let read = poll_fn(|cx| {
                if self.rbuf.is_empty() && ctx.closing.load(Ordering::Relaxed) {
                    return Poll::Ready(None);
                }
                if let Some(t) = timer.as_mut()
                    && t.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(NoHead::Timeout)));
                }
                self.poll_read(cx).map(|r| Some(Ok(r)))
            })
            .await;
            match read {
                None => return Err(NoHead::Closed),
                Some(Err(e)) => return Err(e),
                Some(Ok(Ok(0))) | Some(Ok(Err(_))) => return Err(NoHead::Closed),
                Some(Ok(Ok(_))) => {}
            }
        }
    }

    /// Run one request and write its response.
    async fn exchange(&mut self, head: RequestHead) -> io::Result<Next> {
        let RequestHead {
            method,
            uri,
            version,
            mut headers,
            framing,
            keep_alive,
            expect_continue,
            fragment,
            seen,
        } = head;
        let upgrade = (method == Method::CONNECT
            || (seen.contains(Seen::UPGRADE)
                && crate::protocol::headers::upgrade_type(&headers).is_some()))
        .then(oneshot::channel);
        let trailers = seen.contains(Seen::TE)
            && crate::protocol::headers::has_token(&headers, &TE, "trailers");
        if expect_continue {
            // Envoy (without proxy_100_continue) answers 100-continue itself and does not pass
            // the expectation on.
            headers.remove(EXPECT);
            self.io.write_all(codec::CONTINUE).await?;
            self.io.flush().await?;
        }
        let mut pump = None;
        let body = match framing {
            Framing::Empty | Framing::Close => super::DownstreamBody::Empty,
            Framing::Length(_) | Framing::Chunked => {
                let queue = Arc::new(Mutex::new(Queue {
                    left: match framing {
                        Framing::Length(n) => Some(n),
                        _ => None,
                    },
                    ..Queue::default()
                }));
                pump = Some(Pump {
                    queue: queue.clone(),
                    decoder: BodyDecoder::new(framing, self.ctx.hcm.config.max_headers_count),
                    finished: false,
                    abandoned: false,
                });
                super::DownstreamBody::Http1(RequestBody { queue })
            }
        };
        let mut req = Request::new(body);
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        let (upgrade_tx, upgrade_rx) = match upgrade {
            Some((tx, rx)) => (Some(tx), Some(rx)),
            None => (None, None),
        };
        if let Some(rx) = upgrade_rx {
            req.extensions_mut().insert(DownstreamUpgrade::http1(rx));
        }
        if fragment {
            req.extensions_mut().insert(stream::UriFragment);
        }
        let mut ex = Exchange {
            http10: version == Version::HTTP_10 && self.ctx.hcm.config.accept_http_10,
            method_head: method == Method::HEAD,
            connect: method == Method::CONNECT,
            keep_alive,
            trailers,
            upgrade: upgrade_tx,
        };

        let handled = stream::handle(req, self.ctx.clone());
        let mut handled = std::pin::pin!(handled);
        let resp = poll_fn(|cx| {
            if let Poll::Ready(r) = handled.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            match self.poll_input(cx, &mut pump) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let Some(resp) = resp else {
            // The client went away: the stream is dropped (reset), as Envoy resets streams
            // when their connection closes.
            debug!(
                conn = self.ctx.conn.id,
                "downstream closed during a request"
            );
            return Ok(Next::Close);
        };
        self.write_response(resp, &mut ex, &mut pump).await
    }

    /// Read while a stream runs: its body into the queue, else ahead. `Ready`: the client
    /// closed the connection (or it failed).
    fn poll_input(&mut self, cx: &mut Context<'_>, pump: &mut Option<Pump>) -> Poll<()> {
        loop {
            match pump.as_mut().filter(|p| !p.finished) {
                Some(p) => match p.step(&mut self.rbuf, cx) {
                    Step::Wait => return Poll::Pending,
                    Step::Read => {}
                },
                None if self.eof || self.rbuf.len() >= READ_AHEAD => return Poll::Pending,
                None => {}
            }
            match self.poll_read(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.eof = true;
                    if let Some(p) = pump.as_mut().filter(|p| !p.finished) {
                        p.eof();
                    }
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.io.flush().await
    }

    /// Write a reply the connection makes itself (a codec error); the connection closes.
    async fn write_local(&mut self, resp: Response<Body>) -> io::Result<()> {
        let mut ex = Exchange {
            http10: false,
            method_head: false,
            connect: false,
            keep_alive: false,
            trailers: false,
            upgrade: None,
        };
        self.write_response(resp, &mut ex, &mut None).await?;
        let _ = self.io.shutdown().await;
        Ok(())
    }

    /// Write a response; the answer says what the connection does next.
    async fn write_response(
        &mut self,
        resp: Response<Body>,
        ex: &mut Exchange,
        pump: &mut Option<Pump>,
    ) -> io::Result<Next> {
        let keep = |close: bool| if close { Next::Close } else { Next::Request };
        let (parts, mut body) = resp.into_parts();
        let status = parts.status;
        let upgraded = ex.upgrade.is_some()
            && (status == StatusCode::SWITCHING_PROTOCOLS || (ex.connect && status.is_success()));
        let no_body = ex.method_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || (ex.connect && status.is_success());
        let framing = if no_body {
            ResponseFraming::NoBody
        } else if parts.headers.contains_key(CONTENT_LENGTH) {
            match http1::content_length(&parts.headers) {
                Ok(Some(n)) => ResponseFraming::Length(n),
                _ => ResponseFraming::Chunked,
            }
        } else if http_body::Body::is_end_stream(&body) {
            ResponseFraming::Length(0)
        } else if let Some(n) = http_body::Body::size_hint(&body).exact() {
            ResponseFraming::Length(n)
        } else if ex.keep_alive || parts.version == Version::HTTP_11 {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::Close
        };
        let cfg = &self.ctx.hcm.config;
        let max_requests = cfg
            .max_requests_per_connection
            .is_some_and(|m| self.ctx.requests.load(Ordering::Relaxed) >= u64::from(m));
        let request_unread = pump.as_ref().is_some_and(|p| !p.finished || p.abandoned);
        let close = !upgraded
            && (!ex.keep_alive
                || framing == ResponseFraming::Close
                || max_requests
                || request_unread
                || self.eof
                || self.ctx.closing.load(Ordering::Relaxed)
                || crate::protocol::headers::has_token(&parts.headers, &CONNECTION, "close"));
        codec::encode_response_head(
            ex.http10,
            status,
            &parts.headers,
            framing,
            close,
            &date(),
            &mut self.wbuf,
        );
        if upgraded {
            self.flush().await?;
            return Ok(ex.upgrade.take().map_or(Next::Close, Next::Upgrade));
        }
        if framing == ResponseFraming::NoBody {
            drop(body);
            self.flush().await?;
            return Ok(keep(close));
        }
        let mut written = 0u64;
        let mut ok = true;
        loop {
            // A frame that is already there goes out with what is gathered; otherwise what is
            // gathered goes out first.
            let frame = match poll_fn(|cx| {
                Poll::Ready(http_body::Body::poll_frame(Pin::new(&mut body), cx))
            })
            .await
            {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    self.flush().await?;
                    let next = poll_fn(|cx| {
                        if let Poll::Ready(f) = http_body::Body::poll_frame(Pin::new(&mut body), cx)
                        {
                            return Poll::Ready(Some(f));
                        }
                        match self.poll_input(cx, pump) {
                            Poll::Ready(()) => Poll::Ready(None),
                            Poll::Pending => Poll::Pending,
                        }
                    })
                    .await;
                    match next {
                        Some(f) => f,
                        // The client went away while the response was coming.
                        None => return Ok(Next::Close),
                    }
                }
            };
            match frame {
                None => break,
                Some(Err(e)) => {
                    debug!(conn = self.ctx.conn.id, error = %e, "response body failed");
                    ok = false;
                    break;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let ResponseFraming::Length(n) = framing
                            && written + data.len() as u64 > n
                        {
                            debug!(conn = self.ctx.conn.id, "response body over its length");
                            ok = false;
                            break;
                        }
                        written += data.len() as u64;
                        self.put_data(data, framing).await?;
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            if framing == ResponseFraming::Chunked {
                                http1::encode_chunked_end(
                                    ex.trailers.then_some(&t),
                                    &mut self.wbuf,
                                );
                                self.flush().await?;
                                return Ok(keep(close));
                            }
                            break;
                        }
                    }
                },
            }
        }
        if !ok {
            // An incomplete response: the client learns it from the connection closing.
            self.flush().await?;
            return Ok(Next::Close);
        }
        match framing {
            ResponseFraming::Chunked => {
                http1::encode_chunked_end(None::<&HeaderMap>, &mut self.wbuf)
            }
            ResponseFraming::Length(n) if written < n => {
                debug!(conn = self.ctx.conn.id, "response body short of its length");
                self.flush().await?;
                return Ok(Next::Close);
            }
            _ => {}
        }
        self.flush().await?;
        Ok(keep(close))
    }

    async fn put_data(&mut self, data: Bytes, framing: ResponseFraming) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let chunked = framing == ResponseFraming::Chunked;
        if data.len() >= WRITE_DIRECT {
            if chunked {
                http1::encode_chunk_header(data.len(), &mut self.wbuf);
            }
            self.flush().await?;
            self.io.write_all(&data).await?;
            if chunked {
                self.wbuf.extend_from_slice(b"\r\n");
            }
            return Ok(());
        }
        if chunked {
            http1::encode_chunk(&data, &mut self.wbuf);
        } else {
            self.wbuf.extend_from_slice(&data);
        }
        if self.wbuf.len() >= WRITE_CHUNK {
            self.flush().await?;
        }
        Ok(())
    }
}

/// The `date` value for responses, made at most once a second per thread.
fn date() -> HeaderValue {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, HeaderValue)> = const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(now);
            c.1 = HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
            c.0 = secs;
        }
        c.1.clone()
    })
}
