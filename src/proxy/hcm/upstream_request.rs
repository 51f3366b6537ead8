//! The upstream request of a stream: its body (replayable for retries when it was buffered
//! within the listener's buffer limit, else streamed once) and its head in the form the
//! upstream protocol needs.

use crate::protocol::body::{self, Body, BoxError};
use crate::protocol::headers::strip_hop_by_hop;
use crate::upstream::pool::UpstreamProtocol;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Version, header, request};
use http_body_util::BodyExt;

/// A request body that can be sent more than once (for retries) or only once (streaming).
pub(crate) enum RequestBody {
    Replay(Bytes, Option<HeaderMap>),
    Once(Option<Body>),
}

impl RequestBody {
    pub(crate) fn take(&mut self) -> Option<Body> {
        match self {
            RequestBody::Replay(data, trailers) => {
                let data = data.clone();
                let trailers = trailers.clone();
                if data.is_empty() && trailers.is_none() {
                    return Some(body::empty());
                }
                let frames: Vec<Result<hyper::body::Frame<Bytes>, BoxError>> =
                    std::iter::once(Ok(hyper::body::Frame::data(data)))
                        .chain(trailers.map(|t| Ok(hyper::body::Frame::trailers(t))))
                        .collect();
                Some(
                    http_body_util::StreamBody::new(futures_util::stream::iter(frames))
                        .boxed_unsync(),
                )
            }
            RequestBody::Once(b) => b.take(),
        }
    }
}

/// Buffer a request body so that it can be sent again, if it is complete within `limit`
/// bytes as announced by its size hint; otherwise it streams once and is not retried.
pub(crate) async fn buffer_for_retry(body: Body, limit: u32) -> RequestBody {
    use http_body::Body as _;
    if body.is_end_stream() {
        return RequestBody::Replay(Bytes::new(), None);
    }
    match body.size_hint().upper() {
        Some(n) if n <= u64::from(limit) => {}
        _ => return RequestBody::Once(Some(body)),
    }
    // Collect by hand, within `limit` bytes (a body over the limit, or one that fails, is
    // not sent at all).
    let mut body = body;
    let mut data = bytes::BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return RequestBody::Once(None);
        };
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > limit as usize {
                    return RequestBody::Once(None);
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    RequestBody::Replay(data.freeze(), trailers)
}

/// The upstream request: method, headers (hop-by-hop removed unless this is an upgrade),
/// URI and `Host` in the form the upstream protocol needs.
pub(crate) fn build_request(
    parts: request::Parts,
    body: Body,
    protocol: UpstreamProtocol,
    authority: &str,
    path: String,
    keep_upgrade: bool,
) -> http::Request<Body> {
    let mut headers = parts.headers;
    if !keep_upgrade {
        strip_hop_by_hop(&mut headers);
    }
    let (uri, version) = match protocol {
        UpstreamProtocol::Http1 => {
            // Keep the client's Host value when it is already right (no copy).
            let same = headers
                .get(header::HOST)
                .is_some_and(|h| h.as_bytes() == authority.as_bytes());
            if !same && let Ok(v) = HeaderValue::from_str(authority) {
                headers.insert(header::HOST, v);
            }
            let uri = if parts.method == http::Method::CONNECT {
                parse_uri(authority.to_owned())
            } else if (!keep_upgrade || parts.uri.scheme().is_none())
                && parts.uri.path_and_query().map(|p| p.as_str()) == Some(path.as_str())
            {
                // tern's HTTP/1.1 codec writes only the path and query (hyper's, which
                // carries upgrades, would write an absolute URI whole): the client's URI
                // serves as it is when the path was not rewritten (no copy, no parse).
                parts.uri
            } else {
                parse_uri(path)
            };
            (uri, Version::HTTP_11)
        }
        UpstreamProtocol::Http2 => {
            headers.remove(header::HOST);
            (
                parse_uri(format!("http://{authority}{path}")),
                Version::HTTP_2,
            )
        }
    };
    let mut req = http::Request::new(body);
    *req.method_mut() = parts.method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    req
}

/// A URI from text the stream built (an authority, a path, an absolute URI); `/` if it does
/// not parse.
fn parse_uri(text: String) -> http::Uri {
    http::Uri::try_from(text).unwrap_or_else(|_| http::Uri::from_static("/"))
}
