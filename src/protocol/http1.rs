//! tern's HTTP/1.1 codec. This module is the client half (request heads and bodies out,
//! response heads and bodies in) and what both halves share; [`server`] is the other half.
//!
//! The upstream side of an HTTP/1.1 request runs on this codec instead of hyper's client, so
//! that the stream that owns a request also owns its upstream connection: it writes the request
//! and reads the response itself, with no connection task and no channel in between (MOSN's
//! stream layer works the same way).
//!
//! Everything here is synchronous and works on byte buffers; `upstream::pool::http1` drives it
//! over a socket. Limits: a response head (status line and headers) or a trailer section may
//! take at most [`MAX_HEAD`] bytes and `max_headers` fields; a chunk-size line at most
//! [`MAX_CHUNK_LINE`] bytes. Anything over a limit, or malformed, is a [`ParseError`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Uri, Version};

use crate::format::decimal;
use crate::protocol::headers::has_token;

pub mod server;
#[cfg(test)]
mod tests;

/// The largest response head or trailer section accepted, in bytes (Envoy's default
/// `max_response_headers_kb` is 60).
pub const MAX_HEAD: usize = 60 * 1024;

/// The longest chunk-size line accepted (size, extensions and CRLF).
pub const MAX_CHUNK_LINE: usize = 4096;

/// Header fields parsed on the stack; a limit above this parses into a heap array.
const STACK_HEADERS: usize = 128;

/// Header field positions kept on the stack while a head is split off its buffer.
const STACK_SPANS: usize = 32;

/// Which of the fields that decide a message's framing and its connection's fate a head
/// carries, noted while its map is built: most heads have none of them, and skip their
/// lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen(u8);

impl Seen {
    /// `connection`.
    pub const CONNECTION: Seen = Seen(1);
    /// `te`.
    pub const TE: Seen = Seen(2);
    /// `upgrade`.
    pub const UPGRADE: Seen = Seen(4);
    /// `expect`.
    pub const EXPECT: Seen = Seen(8);
    /// `transfer-encoding`.
    pub const TRANSFER_ENCODING: Seen = Seen(16);
    /// `content-length`.
    pub const CONTENT_LENGTH: Seen = Seen(32);

    /// Whether a field named `f` was seen.
    pub fn contains(self, f: Seen) -> bool {
        self.0 & f.0 != 0
    }

    /// The flag of a field `name` as it came off the wire (any case).
    fn of(name: &[u8]) -> Seen {
        let (known, flag): (&[u8], Seen) = match name.len() {
            2 => (b"te", Self::TE),
            6 => (b"expect", Self::EXPECT),
            7 => (b"upgrade", Self::UPGRADE),
            10 => (b"connection", Self::CONNECTION),
            14 => (b"content-length", Self::CONTENT_LENGTH),
            17 => (b"transfer-encoding", Self::TRANSFER_ENCODING),
            _ => return Seen(0),
        };
        if name.eq_ignore_ascii_case(known) {
            flag
        } else {
            Seen(0)
        }
    }
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The head or trailer section is over [`MAX_HEAD`].
    #[error("response headers over {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// More header fields than the cluster allows (`max_headers_count`).
    #[error("more than {0} response headers")]
    TooManyHeaders(usize),
    /// The status line or a header field is malformed.
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
    /// `content-length` is not a number, or its values disagree.
    #[error("invalid content-length")]
    ContentLength,
    /// A transfer coding other than `chunked`, or both `transfer-encoding` and
    /// `content-length` (rejected as Envoy does unless `allow_chunked_length`).
    #[error("unsupported transfer-encoding")]
    TransferEncoding,
    /// A malformed chunk.
    #[error("malformed chunk: {0}")]
    Chunk(&'static str),
    /// The connection closed before the body's end.
    #[error("connection closed in the middle of the response body")]
    Incomplete,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Everything until the connection closes (a response without framing headers).
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields, in order.
    pub headers: HeaderMap,
    /// Whether the connection may carry another request after this response
    /// (`connection: close`, or HTTP/1.0 without `keep-alive`, say no).
    pub keep_alive: bool,
    /// The framing and connection fields among `headers` as parsed.
    pub seen: Seen,
}

impl ResponseHead {
    /// An informational (1xx) response, which a final response follows.
    pub fn is_informational(&self) -> bool {
        self.status.is_informational()
    }
}

/// Parse a response head from the start of `buf`. `Ok(None)`: more bytes are needed (and
/// `buf` is still under [`MAX_HEAD`]). On success, the head is split off `buf`, and its
/// header values share that memory.
pub fn parse_response_head(
    buf: &mut BytesMut,
    max_headers: usize,
) -> Result<Option<ResponseHead>, ParseError> {
    let count = SlotCount::new(max_headers, buf.len());
    let mut slots = Slots::new();
    let mut resp = httparse::Response::new(slots.get(count));
    let parsed = resp.parse(buf);
    let Some(len) = count.section(parsed, buf.len())? else {
        return Ok(None);
    };
    if len > MAX_HEAD {
        return Err(ParseError::HeadTooLarge);
    }
    let version = http_version(resp.version)?;
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(ParseError::Malformed("status code"))?;
    // Offsets first: the fields borrow `buf`, which is split below.
    let mut spans = Spans::new();
    spans.fill(buf, resp.headers);
    let (headers, seen) = spans.to_map(&buf.split_to(len).freeze(), 4)?;
    let keep_alive = keep_alive(version, &headers, seen);
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        keep_alive,
        seen,
    }))
}

/// Where each header field of a parsed head lies in its buffer (name start and end, value
/// start and end): on the stack for the usual handful of fields. Filled in place: the array is
/// too large to move around cheaply.
struct Spans {
    stack: [[u32; 4]; STACK_SPANS],
    heap: Vec<[u32; 4]>,
    n: usize,
}

impl Spans {
    fn new() -> Self {
        Self {
            stack: [[0; 4]; STACK_SPANS],
            heap: Vec::new(),
            n: 0,
        }
    }

    /// Note where `fields`, parsed from `buf`, lie in it (`buf` is at most a head's limit,
    /// far under 4 GiB).
    fn fill(&mut self, buf: &[u8], fields: &[httparse::Header<'_>]) {
        let base = buf.as_ptr() as usize;
        let span = |h: &httparse::Header<'_>| {
            let name = (h.name.as_ptr() as usize - base) as u32;
            let value = (h.value.as_ptr() as usize - base) as u32;
            [
                name,
                name + h.name.len() as u32,
                value,
                value + h.value.len() as u32,
            ]
        };
        self.n = fields.len();
        if self.n <= STACK_SPANS {
            for (slot, h) in self.stack.iter_mut().zip(fields) {
                *slot = span(h);
            }
        } else {
            self.heap = fields.iter().map(span).collect();
        }
    }

    /// The fields as a map whose values share `head`'s memory (`head` is the buffer the spans
    /// were taken from, split off and frozen), with room for `extra` more fields (those the
    /// proxy adds, so that the map does not grow and rehash on the request path).
    fn to_map(&self, head: &Bytes, extra: usize) -> Result<(HeaderMap, Seen), ParseError> {
        let spans = if self.n <= STACK_SPANS {
            &self.stack[..self.n]
        } else {
            &self.heap[..]
        };
        let mut headers = HeaderMap::with_capacity(self.n + extra);
        let mut seen = Seen(0);
        for &[ns, ne, vs, ve] in spans {
            let (ns, ne, vs, ve) = (ns as usize, ne as usize, vs as usize, ve as usize);
            seen.0 |= Seen::of(&head[ns..ne]).0;
            let name = HeaderName::from_bytes(&head[ns..ne])
                .map_err(|_| ParseError::Malformed("header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
                .map_err(|_| ParseError::Malformed("header value"))?;
            headers.append(name, value);
        }
        Ok((headers, seen))
    }
}

/// How many header slots httparse gets for a head or trailer section: never more than a
/// section of at most [`MAX_HEAD`] bytes can fill, as a field takes at least 3 bytes (`a:` and
/// a line feed). A large `max_headers_count` (a `u32` in the cluster's configuration) must not
/// cost an allocation of its size on every parse.
#[derive(Clone, Copy)]
struct SlotCount {
    max_headers: usize,
    n: usize,
    /// The largest section accepted, in bytes.
    limit: usize,
}

/// The slots themselves: on the stack up to [`STACK_HEADERS`], else on the heap.
struct Slots<'b> {
    stack: [httparse::Header<'b>; STACK_HEADERS],
    heap: Vec<httparse::Header<'b>>,
}

impl<'b> Slots<'b> {
    fn new() -> Self {
        Self {
            stack: [httparse::EMPTY_HEADER; STACK_HEADERS],
            heap: Vec::new(),
        }
    }

    fn get(&mut self, count: SlotCount) -> &mut [httparse::Header<'b>] {
        if count.n <= STACK_HEADERS {
            &mut self.stack[..count.n]
        } else {
            self.heap = vec![httparse::EMPTY_HEADER; count.n];
            &mut self.heap
        }
    }
}

impl SlotCount {
    fn new(max_headers: usize, buffered: usize) -> Self {
        Self::with_limit(max_headers, buffered, MAX_HEAD)
    }

    /// Slots for a section of at most `limit` bytes.
    fn with_limit(max_headers: usize, buffered: usize, limit: usize) -> Self {
        let max_headers = max_headers.max(1);
        Self {
            max_headers,
            n: max_headers.min(buffered.min(limit + 1) / 3 + 1),
            limit,
        }
    }

    /// httparse's answer for a section of which `buffered` bytes are in: `Ok(None)` when more
    /// are needed and the section may still fit in the limit ([`MAX_HEAD`] for responses).
    /// Running out of slots is `TooManyHeaders` when the slots were the whole limit, else a
    /// section over the byte limit (only such a section fills fewer slots than the limit). The
    /// caller checks that a complete section is within the limit.
    fn section<T>(
        self,
        parsed: httparse::Result<T>,
        buffered: usize,
    ) -> Result<Option<T>, ParseError> {
        match parsed {
            Ok(httparse::Status::Complete(t)) => Ok(Some(t)),
            Ok(httparse::Status::Partial) if buffered > self.limit => Err(ParseError::HeadTooLarge),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) if self.n < self.max_headers => {
                Err(ParseError::HeadTooLarge)
            }
            Err(httparse::Error::TooManyHeaders) => {
                Err(ParseError::TooManyHeaders(self.max_headers))
            }
            Err(e) => Err(ParseError::Malformed(error_text(e))),
        }
    }
}

fn error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "header name",
        httparse::Error::HeaderValue => "header value",
        httparse::Error::NewLine => "line ending",
        httparse::Error::Status => "status code",
        httparse::Error::Token => "token",
        httparse::Error::Version => "version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

fn keep_alive(version: Version, headers: &HeaderMap, seen: Seen) -> bool {
    if !seen.contains(Seen::CONNECTION) {
        return version == Version::HTTP_11;
    }
    let has = |token| has_token(headers, &CONNECTION, token);
    !has("close") && (version == Version::HTTP_11 || has("keep-alive"))
}

/// How the body of a response to a `method` request with this head is delimited
/// (RFC 9112 §6.3).
pub fn response_framing(method: &Method, head: &ResponseHead) -> Result<Framing, ParseError> {
    let s = head.status.as_u16();
    if *method == Method::HEAD || (100..200).contains(&s) || s == 204 || s == 304 {
        return Ok(Framing::Empty);
    }
    if head.seen.contains(Seen::TRANSFER_ENCODING) {
        if head.seen.contains(Seen::CONTENT_LENGTH)
            || head.version != Version::HTTP_11
            || !only_chunked(&head.headers)
        {
            return Err(ParseError::TransferEncoding);
        }
        return Ok(Framing::Chunked);
    }
    if !head.seen.contains(Seen::CONTENT_LENGTH) {
        return Ok(Framing::Close);
    }
    match content_length(&head.headers)? {
        Some(0) => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Close),
    }
}

/// Whether `transfer-encoding` (all its lines) lists exactly one coding, `chunked`: the only
/// transfer coding tern (like Envoy) accepts.
pub fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    matches!((codings.next(), codings.next()), (Some(c), None) if c.eq_ignore_ascii_case(b"chunked"))
}

/// The version of a parsed head: HTTP/1.1 or HTTP/1.0.
fn http_version(minor: Option<u8>) -> Result<Version, ParseError> {
    match minor {
        Some(1) => Ok(Version::HTTP_11),
        Some(0) => Ok(Version::HTTP_10),
        _ => Err(ParseError::Malformed("version")),
    }
}

/// The value of `content-length`: repeated fields and comma lists must all agree.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ParseError> {
    let mut found = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        for part in v.as_bytes().split(|b| *b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or(ParseError::ContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(ParseError::ContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// One step of a body decoder.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section of a chunked body (the body has ended).
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// Reading chunk data, this much left.
    Data(u64),
    /// Reading the CRLF after chunk data.
    DataEnd,
    /// Reading the trailer section after the last chunk.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// Decodes a response body from the bytes that follow its head.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    max_headers: usize,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`; trailers may carry `max_headers` fields.
    pub fn new(framing: Framing, max_headers: usize) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::Close => State::Close,
        };
        Self { state, max_headers }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The body bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Done => Some(0),
            State::Length(n) => Some(n),
            State::Chunked(_) | State::Close => None,
        }
    }

    /// Take the next piece of the body from `buf`; `eof` says the connection has closed and
    /// `buf` holds all that will ever come.
    pub fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Decoded, ParseError> {
        match self.state {
            State::Done => Ok(Decoded::End),
            State::Close if !buf.is_empty() => Ok(Decoded::Data(buf.split().freeze())),
            State::Close if eof => {
                self.state = State::Done;
                Ok(Decoded::End)
            }
            State::Close => Ok(Decoded::NeedMore),
            State::Length(_) if buf.is_empty() && eof => Err(ParseError::Incomplete),
            State::Length(_) if buf.is_empty() => Ok(Decoded::NeedMore),
            State::Length(left) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let rest = left - n as u64;
                self.state = if rest == 0 {
                    State::Done
                } else {
                    State::Length(rest)
                };
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            State::Chunked(chunk) => match self.chunked(chunk, buf)? {
                Some(d) => Ok(d),
                None if eof => Err(ParseError::Incomplete),
                None => Ok(Decoded::NeedMore),
            },
        }
    }

    /// One step of chunked decoding; `None` means more bytes are needed.
    fn chunked(
        &mut self,
        mut chunk: Chunk,
        buf: &mut BytesMut,
    ) -> Result<Option<Decoded>, ParseError> {
        loop {
            match chunk {
                Chunk::Size => {
                    let Some(line_end) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let line = &buf[..line_end];
                    let digits = line
                        .iter()
                        .position(|b| !b.is_ascii_hexdigit())
                        .unwrap_or(line.len());
                    if digits == 0 || digits > 16 {
                        return Err(ParseError::Chunk("chunk size"));
                    }
                    // After the size: optional spaces or tabs, then nothing or `;` extensions
                    // (which carry no meaning here; any byte but a bare CR or LF is allowed).
                    let rest = &line[digits..];
                    let ws = rest
                        .iter()
                        .position(|b| *b != b' ' && *b != b'\t')
                        .unwrap_or(rest.len());
                    let rest = &rest[ws..];
                    if (!rest.is_empty() && rest[0] != b';')
                        || rest.iter().any(|b| *b == b'\r' || *b == b'\n')
                    {
                        return Err(ParseError::Chunk("chunk size"));
                    }
                    let size = line[..digits]
                        .iter()
                        .fold(0u64, |n, b| (n << 4) | u64::from(hex_value(*b)));
                    buf.advance(line_end + 2);
                    chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                    self.state = State::Chunked(chunk);
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let rest = left - n as u64;
                    self.state = State::Chunked(if rest == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(rest)
                    });
                    return Ok(Some(Decoded::Data(buf.split_to(n).freeze())));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ParseError::Chunk("missing CRLF after chunk data"));
                    }
                    buf.advance(2);
                    chunk = Chunk::Size;
                    self.state = State::Chunked(chunk);
                }
                Chunk::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Some(Decoded::End));
                    }
                    return match parse_trailers(buf, self.max_headers)? {
                        Some(t) => {
                            self.state = State::Done;
                            Ok(Some(Decoded::Trailers(t)))
                        }
                        None => Ok(None),
                    };
                }
            }
        }
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// The index of the first CRLF in `buf`, looking no further than `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, ParseError> {
    let window = &buf[..buf.len().min(limit)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() >= limit => Err(ParseError::Chunk("chunk-size line too long")),
        None => Ok(None),
    }
}

/// Parse a trailer section (fields, then an empty line) from the start of `buf`.
fn parse_trailers(buf: &mut BytesMut, max_headers: usize) -> Result<Option<HeaderMap>, ParseError> {
    let count = SlotCount::new(max_headers, buf.len());
    let mut slots = Slots::new();
    let parsed = httparse::parse_headers(buf, slots.get(count));
    let Some((len, fields)) = count.section(parsed, buf.len())? else {
        return Ok(None);
    };
    if len > MAX_HEAD {
        return Err(ParseError::HeadTooLarge);
    }
    let mut trailers = HeaderMap::with_capacity(fields.len());
    for f in fields.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| ParseError::Malformed("trailer name"))?;
        let value =
            HeaderValue::from_bytes(f.value).map_err(|_| ParseError::Malformed("trailer value"))?;
        trailers.append(name, value);
    }
    buf.advance(len);
    Ok(Some(trailers))
}

/// Write a request head: the request line with `uri`'s origin form and `headers` in order.
/// `framing` decides the body's delimiting header: `Length` writes `content-length` unless
/// `headers` has one, `Chunked` writes `transfer-encoding: chunked` (and drops
/// `content-length`), `Empty` writes `content-length: 0` for methods that carry a body when
/// `headers` has none. `transfer-encoding` in `headers` is never copied: the framing decides.
pub fn encode_request_head(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    framing: Framing,
    dst: &mut BytesMut,
) {
    let target = uri.path_and_query().map_or("", |p| p.as_str());
    dst.reserve(method.as_str().len() + target.len() + 13 + headers.len() * 32);
    dst.put_slice(method.as_str().as_bytes());
    dst.put_u8(b' ');
    // An empty path is sent as `/` (RFC 9112 §3.2.1), also in front of a query: the `http`
    // crate gives `?q` as the path and query of `http://host?q`.
    if target.is_empty() || target.starts_with('?') {
        dst.put_u8(b'/');
    }
    dst.put_slice(target.as_bytes());
    dst.put_slice(b" HTTP/1.1\r\n");
    let has_length = headers.contains_key(CONTENT_LENGTH);
    for (name, value) in headers {
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && framing == Framing::Chunked) {
            continue;
        }
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        Framing::Length(n) if !has_length => {
            put_field(dst, b"content-length", decimal(n, &mut [0; 20]));
        }
        Framing::Chunked => put_field(dst, b"transfer-encoding", b"chunked"),
        Framing::Empty if !has_length && method_has_body(method) => {
            put_field(dst, b"content-length", b"0");
        }
        _ => {}
    }
    dst.put_slice(b"\r\n");
}

/// Methods whose requests define a meaning for a body (RFC 9110 §8.6: a client sends
/// `content-length: 0` for them when there is no body).
fn method_has_body(m: &Method) -> bool {
    *m == Method::POST || *m == Method::PUT || *m == Method::PATCH
}

fn put_field(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.reserve(name.len() + value.len() + 4);
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

/// Frame a piece of a chunked body: the size line, the data, the CRLF. Empty data writes
/// nothing (a zero-size chunk would end the body).
pub fn encode_chunk(data: &[u8], dst: &mut BytesMut) {
    if data.is_empty() {
        return;
    }
    encode_chunk_header(data.len(), dst);
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// The size line of a chunk of `len` bytes (the caller writes the data and a CRLF after it).
pub fn encode_chunk_header(len: usize, dst: &mut BytesMut) {
    let mut scratch = [0u8; 16];
    let mut i = scratch.len();
    let mut n = len;
    loop {
        i -= 1;
        scratch[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.reserve(16 + 2 + len + 2);
    dst.put_slice(&scratch[i..]);
    dst.put_slice(b"\r\n");
}

/// The end of a chunked body: the last chunk and the trailer section.
pub fn encode_chunked_end(trailers: Option<&HeaderMap>, dst: &mut BytesMut) {
    dst.put_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    dst.put_slice(b"\r\n");
}
