//! The server half of tern's HTTP/1.1 codec: request heads in, response heads out.
//!
//! Like the client half it is synchronous and works on byte buffers; the connection manager's
//! HTTP/1 connection (`proxy::hcm::h1`) drives it over a socket. Request bodies use the same
//! [`BodyDecoder`](super::BodyDecoder) as response bodies.
//!
//! What it rejects follows Envoy's HTTP/1 codec, each with the status Envoy answers: a
//! malformed request line or header field (400), `content-length` with `transfer-encoding`
//! (400, Envoy's default without `allow_chunked_length`), a transfer coding other than a final
//! `chunked` (501), a head over its byte limit or with more fields than `max_headers_count`
//! (431).

use bytes::{BufMut, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Uri, Version};

use super::{
    Framing, ParseError, STACK_HEADERS, Seen, SlotCount, Spans, content_length, http_version,
    keep_alive, only_chunked, put_field,
};
use crate::format::decimal;
use crate::protocol::headers::has_token;
use std::mem::MaybeUninit;

/// Why a request head could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The head is over the byte limit.
    #[error("request headers over the limit")]
    HeadTooLarge,
    /// More header fields than `max_headers_count`.
    #[error("more than {0} request headers")]
    TooManyHeaders(usize),
    /// The request line or a header field is malformed.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// `content-length` is not a number, or its values disagree.
    #[error("invalid content-length")]
    ContentLength,
    /// Both `transfer-encoding` and `content-length`, or `transfer-encoding` in HTTP/1.0.
    #[error("transfer-encoding with content-length")]
    Framing,
    /// A transfer coding other than a final `chunked`.
    #[error("unsupported transfer-encoding")]
    TransferEncoding,
}

impl RequestError {
    /// The status of the reply Envoy's codec gives for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders(_) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::TransferEncoding => StatusCode::NOT_IMPLEMENTED,
            Self::Malformed(_) | Self::ContentLength | Self::Framing => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<ParseError> for RequestError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::HeadTooLarge => Self::HeadTooLarge,
            ParseError::TooManyHeaders(n) => Self::TooManyHeaders(n),
            ParseError::ContentLength => Self::ContentLength,
            ParseError::TransferEncoding => Self::TransferEncoding,
            ParseError::Malformed(m) | ParseError::Chunk(m) => Self::Malformed(m),
            ParseError::Incomplete => Self::Malformed("incomplete"),
        }
    }
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target as sent (origin, absolute, authority or asterisk form).
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields, in order.
    pub headers: HeaderMap,
    /// How the request body is delimited (never [`Framing::Close`]: a request without framing
    /// headers has no body).
    pub framing: Framing,
    /// Whether the client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// `expect: 100-continue` (HTTP/1.1 only).
    pub expect_continue: bool,
    /// The request target had a `#fragment`, which `uri` no longer holds.
    pub fragment: bool,
    /// The framing and connection fields among `headers` as parsed.
    pub seen: Seen,
}

impl RequestHead {
    /// An HTTP/1.1 upgrade (`connection: upgrade` with `upgrade`) or a CONNECT: after a 101
    /// (or a 2xx to CONNECT) the connection carries other bytes.
    pub fn is_upgrade(&self) -> bool {
        self.method == Method::CONNECT
            || (self.seen.contains(Seen::UPGRADE)
                && self.seen.contains(Seen::CONNECTION)
                && has_token(&self.headers, &CONNECTION, "upgrade"))
    }
}

/// Parse a request head from the start of `buf`. `limit` bounds the head in bytes and
/// `max_headers` its fields. `Ok(None)`: more bytes are needed. On success the head is split
/// off `buf` and its header values share that memory.
pub fn parse_request_head(
    buf: &mut BytesMut,
    max_headers: usize,
    limit: usize,
) -> Result<Option<RequestHead>, RequestError> {
    let count = SlotCount::with_limit(max_headers, buf.len(), limit);
    // Uninitialized slots: nothing to clear before each parse.
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap: Vec<MaybeUninit<httparse::Header<'_>>>;
    let slots = if count.n <= STACK_HEADERS {
        &mut stack[..count.n]
    } else {
        heap = std::iter::repeat_with(MaybeUninit::uninit)
            .take(count.n)
            .collect();
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, slots);
    let Some(len) = count.section(parsed, buf.len())? else {
        return Ok(None);
    };
    if len > limit {
        return Err(RequestError::HeadTooLarge);
    }
    let version = http_version(req.version)?;
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| RequestError::Malformed("method"))?;
    let target = req.path.unwrap_or_default();
    // The http crate drops a fragment while parsing; Envoy rejects it, so it is noted here.
    let fragment = target.contains('#');
    let target_span = {
        let start = target.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + target.len()
    };
    let mut spans = Spans::new();
    spans.fill(buf, req.headers);
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target_span))
        .map_err(|_| RequestError::Malformed("request target"))?;
    // Room for what the connection manager and router add: x-forwarded-for and -proto,
    // x-request-id, x-envoy-expected-rq-timeout-ms and a few more.
    let (headers, seen) = spans.to_map(&head, 8)?;
    let framing = request_framing(version, &headers, seen)?;
    let keep_alive = keep_alive(version, &headers, seen);
    let expect_continue = version == Version::HTTP_11
        && seen.contains(Seen::EXPECT)
        && headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    Ok(Some(RequestHead {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
        fragment,
        seen,
    }))
}

/// How a request body is delimited (RFC 9112 §6.3): `transfer-encoding` ending in
/// `chunked`, else `content-length`, else no body.
fn request_framing(
    version: Version,
    headers: &HeaderMap,
    seen: Seen,
) -> Result<Framing, RequestError> {
    if seen.contains(Seen::TRANSFER_ENCODING) {
        if seen.contains(Seen::CONTENT_LENGTH) || version != Version::HTTP_11 {
            return Err(RequestError::Framing);
        }
        if !only_chunked(headers) {
            return Err(RequestError::TransferEncoding);
        }
        return Ok(Framing::Chunked);
    }
    if !seen.contains(Seen::CONTENT_LENGTH) {
        return Ok(Framing::Empty);
    }
    match content_length(headers)? {
        None | Some(0) => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// How a response body goes on the wire, as the connection decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body may follow (a response to HEAD, 1xx, 204, 304, a 2xx to CONNECT): the fields
    /// are written as they are.
    NoBody,
    /// `content-length` bytes; the field is added when the headers lack it.
    Length(u64),
    /// `transfer-encoding: chunked` (any `content-length` is left out).
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client and a body of unknown length).
    Close,
}

/// Write a response head: the status line (`HTTP/1.1`, or `HTTP/1.0` when `http10`: Envoy
/// answers an HTTP/1.0 request it accepts in kind, and refuses others on `HTTP/1.1`), `headers`
/// in order, the framing field, `date` when the headers lack it, and `connection: close`
/// when `close` is set and the headers do not already say so. `transfer-encoding` in
/// `headers` is never copied: `framing` decides; nor is `content-length` on a 1xx or 204.
pub fn encode_response_head(
    http10: bool,
    status: StatusCode,
    headers: &HeaderMap,
    framing: ResponseFraming,
    close: bool,
    date: &HeaderValue,
    dst: &mut BytesMut,
) {
    let reason = status.canonical_reason().unwrap_or("Unknown");
    dst.reserve(64 + headers.len() * 40);
    dst.put_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(reason.as_bytes());
    dst.put_slice(b"\r\n");
    let mut has_length = false;
    let mut has_date = false;
    // A 1xx or 204 has no content-length (RFC 9110 §8.6); Envoy drops one given.
    let no_length = framing == ResponseFraming::Chunked
        || status.is_informational()
        || status == StatusCode::NO_CONTENT;
    for (name, value) in headers {
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && no_length) {
            continue;
        }
        has_length |= name == CONTENT_LENGTH;
        has_date |= name == http::header::DATE;
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        ResponseFraming::Length(n) if !has_length => {
            put_field(dst, b"content-length", decimal(n, &mut [0; 20]));
        }
        ResponseFraming::Chunked => put_field(dst, b"transfer-encoding", b"chunked"),
        _ => {}
    }
    if !has_date {
        put_field(dst, b"date", date.as_bytes());
    }
    if close && !has_token(headers, &CONNECTION, "close") {
        put_field(dst, b"connection", b"close");
    }
    dst.put_slice(b"\r\n");
}

/// The interim response that `expect: 100-continue` asks for.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests;
