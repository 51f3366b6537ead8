//! Dubbo 2 (the `dubbo://` protocol of Apache Dubbo 2.x) as an [`XProtocol`].
//!
//! A frame is a 16-byte header and a body:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0-1 | magic `0xdabb` |
//! | 2 | flags: `0x80` request, `0x40` two-way, `0x20` event; low 5 bits the serialization id (2 = Hessian 2) |
//! | 3 | status (responses): 20 OK, 30/31 client/server timeout, 40 bad request, 50 bad response, 60 service not found, 70 service error, 80 server error, 90 client error, 100 thread pool exhausted |
//! | 4-11 | request id (big-endian 64 bits) |
//! | 12-15 | body length (big-endian 32 bits) |
//!
//! A Hessian 2 request body starts with strings: the Dubbo version, the service path, the
//! service version and the method name; only those are read (for routing), then the arguments
//! are skipped to read the attachments. The body is forwarded untouched. An event request
//! is a heartbeat, except the read-only event (body `"R"`), which is Dubbo's "go away".

pub(crate) mod hessian;

use super::XProtocol;
use super::{CodecError, Detect, ErrorKind, Frame, FrameKind, IdField, RouteHeaders, Status};
use bytes::{BufMut, BytesMut};
use std::borrow::Cow;

/// The magic number.
pub const MAGIC: [u8; 2] = [0xda, 0xbb];
/// Header length.
pub const HEADER_LEN: usize = 16;
/// Flag bit: the frame is a request.
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag bit: the request expects a response.
pub const FLAG_TWOWAY: u8 = 0x40;
/// Flag bit: the frame is an event (heartbeat, read-only).
pub const FLAG_EVENT: u8 = 0x20;
/// Serialization id of Hessian 2.
pub const HESSIAN2: u8 = 2;
/// Dubbo's default payload limit (`payload`, 8 MiB), used when the config sets none.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

/// Response status codes (`org.apache.dubbo.remoting.exchange.Response`).
pub mod status {
    /// OK.
    pub const OK: u8 = 20;
    /// Client side timeout.
    pub const CLIENT_TIMEOUT: u8 = 30;
    /// Server side timeout.
    pub const SERVER_TIMEOUT: u8 = 31;
    /// Request format error.
    pub const BAD_REQUEST: u8 = 40;
    /// Response format error.
    pub const BAD_RESPONSE: u8 = 50;
    /// Service not found.
    pub const SERVICE_NOT_FOUND: u8 = 60;
    /// Service error.
    pub const SERVICE_ERROR: u8 = 70;
    /// Internal server error.
    pub const SERVER_ERROR: u8 = 80;
    /// Internal client error.
    pub const CLIENT_ERROR: u8 = 90;
    /// Server thread pool exhausted.
    pub const SERVER_THREADPOOL_EXHAUSTED: u8 = 100;
}

const ID_FIELD: IdField = IdField {
    offset: 4,
    width: 8,
};

/// The Dubbo codec (Envoy's `envoy.generic_proxy.codecs.dubbo`).
#[derive(Debug, Clone)]
pub struct Dubbo {
    max_frame: usize,
}

impl Default for Dubbo {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl Dubbo {
    /// A codec that refuses frames (header and body) over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.max(HEADER_LEN),
        }
    }
}

fn malformed(reason: impl Into<Cow<'static, str>>) -> CodecError {
    CodecError::Malformed {
        protocol: "dubbo",
        reason: reason.into(),
    }
}

impl XProtocol for Dubbo {
    fn name(&self) -> &'static str {
        "dubbo"
    }

    fn detect(&self, prefix: &[u8]) -> Detect {
        let n = prefix.len().min(2);
        if prefix[..n] != MAGIC[..n] {
            Detect::NotMatched
        } else if n == 2 {
            Detect::Matched
        } else {
            Detect::NeedMore
        }
    }

    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if buf.first().is_some_and(|b| *b != MAGIC[0]) || buf.get(1).is_some_and(|b| *b != MAGIC[1])
        {
            return Err(malformed(format!(
                "bad magic {:02x?}",
                &buf[..buf.len().min(2)]
            )));
        }
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let flags = header[2];
        let body_len = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
        let size = HEADER_LEN as u64 + u64::from(body_len);
        if size > self.max_frame as u64 {
            return Err(CodecError::TooLarge {
                protocol: "dubbo",
                size,
                max: self.max_frame,
            });
        }
        let size = size as usize;
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&header[4..12]);
        let request_id = u64::from_be_bytes(id);
        let status_byte = header[3];
        let body = &buf[HEADER_LEN..size];
        let is_request = flags & FLAG_REQUEST != 0;
        let is_event = flags & FLAG_EVENT != 0;
        let serialization = flags & 0x1f;
        let mut headers = RouteHeaders::default();
        let mut status = None;
        let kind = if is_request && is_event {
            if body.first() == Some(&0x01) && body.get(1) == Some(&b'R') {
                FrameKind::Goaway
            } else {
                FrameKind::Heartbeat
            }
        } else if is_request {
            if serialization == HESSIAN2 {
                headers = request_headers(body)?;
            }
            if flags & FLAG_TWOWAY != 0 {
                FrameKind::Request
            } else {
                FrameKind::Oneway
            }
        } else {
            status = Some(Status {
                code: u32::from(status_byte),
                ok: status_byte == status::OK,
            });
            if is_event {
                FrameKind::HeartbeatResponse
            } else {
                FrameKind::Response
            }
        };
        let raw = buf.split_to(size);
        Ok(Some(Frame {
            kind,
            request_id,
            id_field: ID_FIELD,
            headers,
            status,
            raw,
        }))
    }

    fn heartbeat_response(&self, request: &Frame) -> Frame {
        let serialization = request.raw.get(2).map_or(HESSIAN2, |f| f & 0x1f);
        // Body: Hessian null.
        response(
            request.request_id,
            FLAG_EVENT | serialization,
            status::OK,
            b"N",
            FrameKind::HeartbeatResponse,
        )
    }

    fn error_response(&self, request: &Frame, kind: ErrorKind, message: &str) -> Frame {
        let code = match kind {
            ErrorKind::NoRoute => status::SERVICE_NOT_FOUND,
            ErrorKind::NoHealthyUpstream | ErrorKind::ConnectFailure | ErrorKind::UpstreamReset => {
                status::SERVER_ERROR
            }
            ErrorKind::Timeout => status::SERVER_TIMEOUT,
            ErrorKind::Overflow => status::SERVER_THREADPOOL_EXHAUSTED,
            ErrorKind::BadRequest => status::BAD_REQUEST,
        };
        // A response whose status is not OK carries the error message as a Hessian string.
        let mut body = Vec::with_capacity(message.len() + 3);
        hessian::write_string(message, &mut body);
        let serialization = request.raw.get(2).map_or(HESSIAN2, |f| f & 0x1f);
        response(
            request.request_id,
            serialization,
            code,
            &body,
            FrameKind::Response,
        )
    }

    fn goaway(&self) -> Option<Frame> {
        // The read-only event: a one-way event request whose body is the string "R".
        let mut raw = BytesMut::with_capacity(HEADER_LEN + 2);
        header(&mut raw, FLAG_REQUEST | FLAG_EVENT | HESSIAN2, 0, 0, 2);
        raw.put_slice(&[0x01, b'R']);
        Some(Frame {
            kind: FrameKind::Goaway,
            request_id: 0,
            id_field: ID_FIELD,
            headers: RouteHeaders::default(),
            status: None,
            raw,
        })
    }
}

/// The routing strings at the front of a Hessian 2 request body, and the attachments: the
/// arguments the parameter descriptor lists are skipped, then a map (`H` ... `Z`) of string
/// keys and values is read. A body whose arguments do not parse leaves the attachments empty
/// (the body is still forwarded untouched).
fn request_headers(body: &[u8]) -> Result<RouteHeaders, CodecError> {
    let mut r = hessian::Reader::new(body);
    let mut next = |what: &'static str| {
        r.string()
            .map_err(|e| malformed(format!("request body, {what}: {e}")))
    };
    let _dubbo_version = next("dubbo version")?;
    let service = next("service path")?;
    let version = next("service version")?;
    let method = next("method name")?;
    let mut headers = RouteHeaders {
        service,
        method,
        version: version.filter(|v| !v.is_empty()),
        ..Default::default()
    };
    if let Some(attachments) = attachments(&mut r) {
        headers.group = attachments
            .iter()
            .find(|(k, _)| k == "group")
            .map(|(_, v)| v.clone());
        headers.attachments = attachments;
    }
    Ok(headers)
}

/// Attachments at most (a bound on what one request makes the proxy allocate).
const MAX_ATTACHMENTS: usize = 64;

fn attachments(r: &mut hessian::Reader<'_>) -> Option<Vec<(String, String)>> {
    let desc = r.string().ok()??;
    let mut classes = Vec::new();
    for _ in 0..arguments(&desc)? {
        r.skip(&mut classes).ok()?;
    }
    if !r.take(b'H') {
        return None;
    }
    let mut out = Vec::new();
    while !r.take(b'Z') {
        if out.len() >= MAX_ATTACHMENTS {
            return None;
        }
        let k = r.string().ok()??;
        match r.string() {
            Ok(v) => out.push((k, v.unwrap_or_default())),
            // A value that is not a string: skipped.
            Err(_) => r.skip(&mut classes).ok()?,
        }
    }
    Some(out)
}

/// How many arguments a JVM parameter descriptor (`Ljava/lang/String;I[J`) lists.
fn arguments(desc: &str) -> Option<usize> {
    let b = desc.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        while b.get(i) == Some(&b'[') {
            i += 1;
        }
        match b.get(i)? {
            b'L' => i += desc.get(i..)?.find(';')? + 1,
            b'Z' | b'B' | b'C' | b'S' | b'I' | b'J' | b'F' | b'D' => i += 1,
            _ => return None,
        }
        n += 1;
    }
    Some(n)
}

fn header(out: &mut BytesMut, flags: u8, status: u8, id: u64, body_len: usize) {
    out.put_slice(&MAGIC);
    out.put_u8(flags);
    out.put_u8(status);
    out.put_u64(id);
    out.put_u32(u32::try_from(body_len).unwrap_or(u32::MAX));
}

fn response(id: u64, flags: u8, status: u8, body: &[u8], kind: FrameKind) -> Frame {
    let mut raw = BytesMut::with_capacity(HEADER_LEN + body.len());
    header(&mut raw, flags, status, id, body.len());
    raw.put_slice(body);
    Frame {
        kind,
        request_id: id,
        id_field: ID_FIELD,
        headers: RouteHeaders::default(),
        status: Some(Status {
            code: u32::from(status),
            ok: status == status::OK,
        }),
        raw,
    }
}

/// Frame builders for tests, benches and test servers: Hessian 2 requests with the routing
/// strings, and responses with a raw body.
pub mod build {
    use super::*;

    /// A Hessian 2 request: `dubbo_version`, `service`, `version`, `method`, then `rest` (the
    /// parameter types, arguments and attachments, already encoded).
    pub fn request(
        id: u64,
        twoway: bool,
        service: &str,
        version: &str,
        method: &str,
        rest: &[u8],
    ) -> BytesMut {
        let mut body = Vec::new();
        for s in ["2.0.2", service, version, method] {
            hessian::write_string(s, &mut body);
        }
        body.extend_from_slice(rest);
        let flags = FLAG_REQUEST | HESSIAN2 | if twoway { FLAG_TWOWAY } else { 0 };
        let mut raw = BytesMut::with_capacity(HEADER_LEN + body.len());
        header(&mut raw, flags, 0, id, body.len());
        raw.put_slice(&body);
        raw
    }

    /// A heartbeat request (two-way event, body Hessian null).
    pub fn heartbeat(id: u64) -> BytesMut {
        let mut raw = BytesMut::new();
        header(
            &mut raw,
            FLAG_REQUEST | FLAG_TWOWAY | FLAG_EVENT | HESSIAN2,
            0,
            id,
            1,
        );
        raw.put_u8(b'N');
        raw
    }

    /// A response with `status` and a raw body.
    pub fn response(id: u64, status: u8, body: &[u8]) -> BytesMut {
        super::response(id, HESSIAN2, status, body, FrameKind::Response).raw
    }

    /// The first `n` values of a Hessian 2 body read as strings (or nulls), and the offset
    /// after them; `None` when they are not all strings. For test servers that read a
    /// request's string arguments.
    pub fn leading_strings(body: &[u8], n: usize) -> Option<(Vec<Option<String>>, usize)> {
        let mut r = hessian::Reader::new(body);
        let mut out = Vec::with_capacity(n.min(16));
        for _ in 0..n {
            out.push(r.string().ok()?);
        }
        Some((out, r.position()))
    }

    /// A Hessian 2 string (for bodies).
    pub fn string(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        hessian::write_string(s, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;
