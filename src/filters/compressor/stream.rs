//! The compressor filters of one stream. Before routing, [`decode`] records the request's
//! `Accept-Encoding` as each filter sees it (removing it when a filter says so); on the
//! response, [`StreamCompression::encode`] runs the filters in encode order (last first) with
//! Envoy's rules, edits the headers, and hands back the [`ResponseCompressor`] whose
//! [`ResponseCompressor::wrap`] compresses the body frame by frame.
//!
//! Envoy's rules, per filter: compress when the filter is enabled, the response has a body,
//! its `Content-Length` (if any) reaches `min_content_length`, the negotiated encoding is this
//! filter's, the content type is allowed, there is no `Cache-Control: no-transform`, no
//! `Content-Encoding`, no ETag when `disable_on_etag_header`, the status is not listed as
//! uncompressible, and no `Transfer-Encoding` compression. Then `Content-Length` goes,
//! `Content-Encoding` is set, a strong ETag is removed (or weakened), and `Vary:
//! Accept-Encoding` is added — the latter whenever the response could have been compressed
//! for some `Accept-Encoding`.

use super::library::{Encoder, Encoding};
use super::negotiate::{self, Candidate, Decision, HeaderStat};
use super::{CompressorConfig, DirectionStats};
use crate::filters::HttpFilterConfig;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The compressor filters of a chain, in order.
fn compressors(filters: &[HttpFilterConfig]) -> impl DoubleEndedIterator<Item = &CompressorConfig> {
    filters.iter().filter_map(|f| match f {
        HttpFilterConfig::Compressor(c) => Some(&**c),
        _ => None,
    })
}

/// What the compressor filters of one stream remember from the request.
#[derive(Debug)]
pub struct StreamCompression<'a> {
    filters: &'a [HttpFilterConfig],
    /// How many compressor filters there are.
    count: usize,
    /// `Accept-Encoding` (several header lines joined with `,`), if the request had one.
    accept: Option<String>,
    /// The first `seen_by` compressor filters saw `accept`; a filter with
    /// `remove_accept_encoding_header` hides it from the ones after it.
    seen_by: usize,
    /// A HEAD request: the response has no body to compress.
    head: bool,
    /// CONNECT: the response body is a tunnel.
    connect: bool,
}

/// The decode side of the compressor filters: `None` when the chain has none. Counts
/// `request.not_compressed` (request compression is not enforced) and removes
/// `Accept-Encoding` for a filter with `remove_accept_encoding_header`.
pub fn decode<'a, B>(
    filters: &'a [HttpFilterConfig],
    req: &mut Request<B>,
) -> Option<StreamCompression<'a>> {
    let head = req.method() == Method::HEAD;
    let connect = req.method() == Method::CONNECT;
    let headers = req.headers_mut();
    let mut count = 0;
    let mut seen_by = None;
    let mut values = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    let accept = values.peek().is_some().then(|| {
        let mut joined = String::new();
        for v in values {
            if !joined.is_empty() {
                joined.push(',');
            }
            joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        joined
    });
    for c in compressors(filters) {
        count += 1;
        c.request_stats.not_compressed.inc();
        let r = &c.response;
        if seen_by.is_none() && r.enabled && r.remove_accept_encoding_header {
            headers.remove(header::ACCEPT_ENCODING);
            seen_by = Some(count);
        }
    }
    (count > 0).then(|| StreamCompression {
        filters,
        count,
        accept,
        seen_by: seen_by.unwrap_or(count),
        head,
        connect,
    })
}

/// `Content-Type` up to its first `;`, trimmed; `None` without the header.
fn content_type(h: &HeaderMap) -> Option<&str> {
    h.get(header::CONTENT_TYPE).map(|v| {
        let v = v.to_str().unwrap_or("");
        v.split(';').next().unwrap_or("").trim()
    })
}

fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str, ignore_case: bool) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|t| {
                let t = t.trim();
                if ignore_case {
                    t.eq_ignore_ascii_case(token)
                } else {
                    t == token
                }
            })
        })
    })
}

/// `Vary: Accept-Encoding`, appended to an existing `Vary` unless it is already listed.
pub(crate) fn insert_vary(h: &mut HeaderMap) {
    if has_token(h, header::VARY, "Accept-Encoding", false) {
        return;
    }
    let existing: Vec<&str> = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if existing.is_empty() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        return;
    }
    let joined = format!("{}, Accept-Encoding", existing.join(", "));
    if let Ok(v) = HeaderValue::from_str(&joined) {
        h.insert(header::VARY, v);
    }
}

/// A strong ETag is removed, or weakened to `W/...` with `weaken`; a weak one stays.
pub(crate) fn sanitize_etag(h: &mut HeaderMap, weaken: bool) {
    let Some(etag) = h.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"W/") {
        return;
    }
    if weaken {
        let mut v = b"W/".to_vec();
        v.extend_from_slice(etag.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&v) {
            h.insert(header::ETAG, v);
            return;
        }
    }
    h.remove(header::ETAG);
}

/// A `Transfer-Encoding` that already compresses (`gzip`, `br`...) forbids compression.
fn transfer_encoding_allowed(h: &HeaderMap, own: Encoding) -> bool {
    !["gzip", "deflate", "compress", "br", "zstd", own.token()]
        .iter()
        .any(|t| has_token(h, header::TRANSFER_ENCODING, t, true))
}

/// Why a response was or was not compressed (`x-envoy-compression-status`).
fn status_value(encoding: Encoding, reason: &str, original_length: Option<&str>) -> HeaderValue {
    let v = match original_length {
        Some(len) => format!("{};{reason};OriginalLength={len}", encoding.token()),
        None => format!("{};{reason}", encoding.token()),
    };
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

const STATUS_HEADER: &str = "x-envoy-compression-status";

impl StreamCompression<'_> {
    /// Whether the `i`-th compressor filter saw the request's `Accept-Encoding`.
    fn accept_for(&self, i: usize) -> Option<&str> {
        (i < self.seen_by)
            .then_some(self.accept.as_deref())
            .flatten()
    }

    fn decide(&self, accept: &str, content_type: Option<&str>) -> Decision {
        let ct = content_type.filter(|c| !c.is_empty());
        negotiate::choose(
            accept,
            compressors(self.filters).map(|c| Candidate {
                encoding: c.encoding(),
                allowed: c.response.content_types.allows(ct),
                choose_first: c.choose_first,
            }),
        )
    }

    /// The encode side: run the compressor filters over the response headers, last filter
    /// first. Returns the compressor for the body when one filter compresses.
    pub fn encode<B: HttpBody>(&self, resp: &mut Response<B>) -> Option<ResponseCompressor> {
        let status = resp.status();
        let end_stream = self.head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || resp.body().is_end_stream();
        let mut decision: Option<Decision> = None;
        let mut chosen = None;
        for (k, c) in compressors(self.filters).rev().enumerate() {
            let i = self.count - 1 - k;
            let h = resp.headers_mut();
            let r = &c.response;
            let content_length = h.get(header::CONTENT_LENGTH).cloned();
            let length_ok = r.enabled
                && match &content_length {
                    Some(v) => {
                        let ok = v
                            .to_str()
                            .ok()
                            .and_then(|s| s.trim().parse::<u64>().ok())
                            .is_some_and(|n| n >= r.min_content_length);
                        if !ok {
                            r.stats.content_length_too_small.inc();
                        }
                        ok
                    }
                    None => true,
                };
            let ct = content_type(h);
            let type_ok = r.content_types.allows(ct);
            let no_transform = has_token(h, header::CACHE_CONTROL, "no-transform", true);
            let has_etag = h.contains_key(header::ETAG);
            let etag_blocks = r.disable_on_etag_header && !r.weaken_etag_on_compress && has_etag;
            let encoded = h.contains_key(header::CONTENT_ENCODING);
            let code_ok = !r.uncompressible_response_codes.contains(&status.as_u16());
            // Envoy evaluates these in order and stops at the first that fails.
            let etag_ok = if length_ok && type_ok && !no_transform && etag_blocks {
                c.header_stats.not_compressed_etag.inc();
                false
            } else {
                !etag_blocks
            };
            let compressible = length_ok
                && type_ok
                && !no_transform
                && etag_ok
                && !encoded
                && code_ok
                // A tunnel (CONNECT) or a protocol switch (101) is never compressed.
                && !self.connect
                && !status.is_informational();
            let accept_ok = !end_stream
                && length_ok
                && match self.accept_for(i) {
                    None => {
                        c.header_stats.no_accept_header.inc();
                        false
                    }
                    Some(accept) => {
                        let d = *decision.get_or_insert_with(|| self.decide(accept, ct));
                        self.count_header_stat(c, d)
                    }
                };
            // An encoder that cannot be made (zstd out of memory) leaves the response as it is.
            let encoder = (accept_ok && compressible && transfer_encoding_allowed(h, c.encoding()))
                .then(|| c.library.encoder())
                .and_then(|e| {
                    e.inspect_err(|e| tracing::debug!(error = %e, "compressor not created"))
                        .ok()
                });
            let compress = encoder.is_some();
            let h = resp.headers_mut();
            if let Some(encoder) = encoder {
                sanitize_etag(h, r.weaken_etag_on_compress);
                h.remove(header::CONTENT_LENGTH);
                h.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_static(c.encoding().token()),
                );
                r.stats.compressed.inc();
                chosen = Some(ResponseCompressor {
                    encoder,
                    stats: r.stats.clone(),
                });
            } else {
                r.stats.not_compressed.inc();
            }
            if compressible {
                insert_vary(h);
            }
            if r.status_header && r.enabled && !no_transform && !encoded && !end_stream {
                let enc = c.encoding();
                let value = if !length_ok {
                    Some(status_value(enc, "ContentLengthTooSmall", None))
                } else if !type_ok {
                    Some(status_value(enc, "ContentTypeNotAllowed", None))
                } else if etag_blocks {
                    Some(status_value(enc, "EtagNotAllowed", None))
                } else if !code_ok {
                    Some(status_value(enc, "StatusCodeNotAllowed", None))
                } else if compress {
                    let len = content_length.as_ref().and_then(|v| v.to_str().ok());
                    Some(status_value(enc, "Compressed", Some(len.unwrap_or(""))))
                } else {
                    None
                };
                if let Some(v) = value {
                    h.append(STATUS_HEADER, v);
                }
            }
        }
        chosen
    }

    /// Count the `header_*` stat of `d` for filter `c`; whether `c` is the one to compress.
    fn count_header_stat(&self, c: &CompressorConfig, d: Decision) -> bool {
        let s = &c.header_stats;
        let mine = d.encoding == Some(c.encoding());
        match d.stat {
            HeaderStat::Valid if mine => s.header_compressor_used.inc(),
            HeaderStat::Valid => s.header_compressor_overshadowed.inc(),
            HeaderStat::Identity => s.header_identity.inc(),
            HeaderStat::Wildcard => s.header_wildcard.inc(),
            HeaderStat::NotValid => s.header_not_valid.inc(),
        }
        mine
    }
}

/// The compressor chosen for one response.
#[derive(Debug)]
pub struct ResponseCompressor {
    encoder: Encoder,
    stats: DirectionStats,
}

impl ResponseCompressor {
    /// Compress `body` frame by frame.
    pub fn wrap<B>(self, body: B) -> CompressBody<B> {
        CompressBody {
            inner: body,
            encoder: self.encoder,
            stats: self.stats,
            trailers: None,
            done: false,
        }
    }
}

/// The error of a body whose compressor failed.
#[derive(Debug, thiserror::Error)]
#[error("compressing the body: {0}")]
pub struct CompressError(#[from] std::io::Error);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// A body compressed on the fly: each data frame is compressed and flushed at once (a
    /// slow stream is never held back), the last one (or the end, or trailers) finishes the
    /// encoding; trailers pass through after the final compressed bytes.
    pub struct CompressBody<B> {
        #[pin]
        inner: B,
        encoder: Encoder,
        stats: DirectionStats,
        trailers: Option<HeaderMap>,
        done: bool,
    }
}

impl<B> HttpBody for CompressBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(t) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            let (input, last, trailers) = match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let last = this.inner.is_end_stream();
                        (data, last, None)
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(t) => (Bytes::new(), true, Some(t)),
                        Err(_) => continue,
                    },
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => (Bytes::new(), true, None),
            };
            this.stats.total_uncompressed_bytes.add(input.len() as u64);
            let out = match this.encoder.compress(&input, last) {
                Ok(out) => out,
                Err(e) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(Box::new(CompressError(e)))));
                }
            };
            this.stats.total_compressed_bytes.add(out.len() as u64);
            *this.done = last;
            *this.trailers = trailers;
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
