//! Local replies: responses tern makes itself (no route, no healthy upstream, timeouts...),
//! shaped as Envoy shapes them — `text/plain` bodies, and for gRPC requests a trailers-only
//! response with `grpc-status` and `grpc-message`.

use crate::protocol::body::{self, Body};
use crate::protocol::headers::{names, number_value};
use crate::upstream::pool::UpstreamError;
use http::{HeaderValue, Response, StatusCode, header};

/// Envoy's name for why an upstream request failed before response headers
/// (`Http::Utility::resetReasonToString`). Envoy 1.40 adds no transport failure reason for a
/// refused TCP connect: the body is just `... reset reason: remote connection failure`.
pub fn reset_reason(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::ConnectFailure(_)
        | UpstreamError::Unsupported(_)
        | UpstreamError::Tls(_) => "remote connection failure",
        UpstreamError::ConnectTimeout => "connection timeout",
        UpstreamError::Handshake(_) | UpstreamError::Protocol(_) => "protocol error",
        UpstreamError::Reset(_) | UpstreamError::RequestBody(_) => "connection termination",
    }
}

/// Envoy's status for an upstream request that failed before response headers: 502 for a
/// response it could not parse, 503 for the other resets (`Router::Filter::onUpstreamReset`).
pub fn reset_status(e: &UpstreamError) -> StatusCode {
    match e {
        UpstreamError::Protocol(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The body of Envoy's 503 when the upstream request failed before response headers
/// (`Router::Filter::onUpstreamReset`).
pub fn upstream_reset_text(retried: bool, reason: &str) -> String {
    let latest = if retried {
        "retried and the latest reset reason"
    } else {
        "reset reason"
    };
    format!("upstream connect error or disconnect/reset before headers. {latest}: {reason}")
}

/// A local reply with Envoy's plain-text body (no body when `text` is empty).
pub fn local_reply(status: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(if text.is_empty() {
        body::empty()
    } else {
        body::full(text.to_owned())
    });
    *resp.status_mut() = status;
    if !text.is_empty() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    resp
}

/// The gRPC status Envoy maps an HTTP status to (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// A local reply for a gRPC request: HTTP 200, `application/grpc`, the status in headers.
pub fn grpc_local_reply(status: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        names::GRPC_STATUS,
        number_value(grpc_status_for(status).into()),
    );
    if !text.is_empty()
        && let Ok(v) = HeaderValue::from_str(&percent_encode_grpc(text))
    {
        h.insert(names::GRPC_MESSAGE, v);
    }
    resp
}

/// Percent-encode a `grpc-message` value (gRPC over HTTP/2 spec: everything outside printable
/// ASCII, and `%`).
fn percent_encode_grpc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A local reply shaped for the request: gRPC or plain HTTP.
pub fn reply_for(grpc: bool, status: StatusCode, text: &str) -> Response<Body> {
    if grpc {
        grpc_local_reply(status, text)
    } else {
        local_reply(status, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_grpc_shapes() {
        let r = local_reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream");
        assert_eq!(r.headers()["content-length"], "19");
        assert_eq!(r.headers()["content-type"], "text/plain");
        let r = local_reply(StatusCode::NOT_FOUND, "");
        assert!(r.headers().get("content-type").is_none());
        let g = grpc_local_reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream\n%");
        assert_eq!(g.status(), StatusCode::OK);
        assert_eq!(g.headers()["grpc-status"], "14");
        assert_eq!(g.headers()["grpc-message"], "no healthy upstream%0A%25");
    }
}
