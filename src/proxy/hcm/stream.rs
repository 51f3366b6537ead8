//! One stream: the decode phase (connection-manager header processing), route matching, and
//! the route's action — forward, redirect or direct response — then the encode phase
//! (response headers the connection manager adds).

use super::ConnCtx;
use super::DownstreamBody;
use super::forward::{self, StreamCtx};
use super::local_reply::{grpc_local_reply, local_reply, reply_for};
use super::peer::StreamExchange;
use super::record::{Recorder, details};
use super::request;
use crate::filters::compressor::stream as compressor;
use crate::filters::hcm::ServerHeader;
use crate::protocol::body::{self, Body};
use crate::protocol::headers::names;
use crate::router::{Action, FormatContext, RequestInfo, is_grpc};
use crate::stream_info::ResponseFlag;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};
use tracing::{Instrument, debug};

/// A stream in flight, until its response body ends. Dropped before it produced a response,
/// the client reset it (or closed the connection): that counts towards the premature-reset
/// check.
struct StreamGuard {
    ctx: Arc<ConnCtx>,
    start: Instant,
    answered: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let ctx = &self.ctx;
        ctx.active_streams.fetch_sub(1, Ordering::Relaxed);
        ctx.hcm.config.stats.downstream_rq_active.dec();
        ctx.touch();
        let closed = ctx.closed_streams.fetch_add(1, Ordering::Relaxed) + 1;
        let premature = if !self.answered && self.start.elapsed() < PREMATURE_RESET_LIFETIME {
            ctx.premature_resets.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            ctx.premature_resets.load(Ordering::Relaxed)
        };
        if too_many_premature_resets(closed, premature)
            && !ctx.abusive.swap(true, Ordering::Relaxed)
        {
            ctx.hcm
                .config
                .stats
                .downstream_rq_too_many_premature_resets
                .inc();
            ctx.abuse.notify_one();
        }
    }
}

/// A reset within this time of the stream's start is premature (Envoy's
/// `overload.premature_reset_min_stream_lifetime_seconds`).
const PREMATURE_RESET_LIFETIME: std::time::Duration = std::time::Duration::from_secs(1);
/// Envoy's `overload.premature_reset_total_stream_count`.
const PREMATURE_RESET_TOTAL: u64 = 500;

/// Rapid reset (CVE-2023-44487): a connection whose streams are mostly reset prematurely is
/// closed. Before `PREMATURE_RESET_TOTAL` streams have closed, half that many premature
/// resets are enough; after it, more than half of all closed streams.
fn too_many_premature_resets(closed: u64, premature: u64) -> bool {
    if closed < PREMATURE_RESET_TOTAL {
        premature >= PREMATURE_RESET_TOTAL / 2
    } else {
        premature * 2 > closed
    }
}

/// Handle one request from the codec.
pub(crate) async fn handle(req: Request<DownstreamBody>, ctx: Arc<ConnCtx>) -> Response<Body> {
    let stream_id = ctx.next_stream.fetch_add(1, Ordering::Relaxed);
    let cfg = &ctx.hcm.config;
    ctx.requests.fetch_add(1, Ordering::Relaxed);
    ctx.active_streams.fetch_add(1, Ordering::Relaxed);
    cfg.stats.downstream_rq_total.inc();
    cfg.stats.downstream_rq_active.inc();
    let start = Instant::now();
    let start_time = SystemTime::now();
    let mut rec = Recorder::start(&ctx, req.version(), start, start_time);
    let mut guard = StreamGuard {
        ctx: ctx.clone(),
        start,
        answered: false,
    };
    let span = tracing::debug_span!("stream", conn = ctx.conn.id, stream = stream_id);
    let version = req.version();
    let head_request = req.method() == http::Method::HEAD;
    let resp = if version < Version::HTTP_11 && !cfg.accept_http_10 {
        // Envoy refuses HTTP/1.0 unless accept_http_10: 426, on an HTTP/1.1 status line.
        let mut r = local_reply(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        encode(&mut r, &ctx, Version::HTTP_11);
        rec.local(
            Some(ResponseFlag::DownstreamProtocolError),
            details::LOW_VERSION,
        );
        r
    } else {
        let mut req = req;
        let compression = compressor::decode(&cfg.http_filters, &mut req);
        let mut mx = None;
        let mut r = decode(req, &ctx, start, start_time, &mut rec, &mut mx)
            .instrument(span)
            .await;
        if let Some(m) = &mx {
            m.response(r.headers_mut(), &mut rec);
        }
        if let Some(c) = compression.as_ref().and_then(|c| c.encode(&mut r)) {
            r = r.map(|b| body::boxed(c.wrap(b)));
        }
        encode(&mut r, &ctx, version);
        if head_request && version == Version::HTTP_2 && !http_body::Body::is_end_stream(r.body()) {
            // A response to HEAD has no body; HTTP/2 ends the stream with the headers (the
            // HTTP/1 codec leaves the body out by itself). Direct responses and local replies
            // carry one, and keep their content-length.
            r = r.map(|_| body::empty());
        }
        if version < Version::HTTP_2 && ctx.draining.load(Ordering::Relaxed) {
            // Draining: this response is the connection's last (Envoy's HTTP/1 drain).
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    };
    cfg.stats.answered(resp.status());
    let rq_time = cfg.stats.downstream_rq_time.clone();
    guard.answered = true;
    // The stream stays active (`downstream_rq_active`, the connection's idle timer) until its
    // response body ends or is dropped, as Envoy's stream lives until it completes or resets.
    let resp = resp.map(|b| {
        body::boxed(body::OnEnd::new(b, move || {
            rq_time.record_duration(start.elapsed());
            drop(guard);
        }))
    });
    rec.finish(resp)
}

/// Response headers the connection manager sets on every response.
fn encode(resp: &mut Response<Body>, ctx: &ConnCtx, version: Version) {
    let cfg = &ctx.hcm.config;
    *resp.version_mut() = version;
    let h = resp.headers_mut();
    match cfg.server_header {
        ServerHeader::Overwrite => {
            h.insert(header::SERVER, cfg.server_name.clone());
        }
        ServerHeader::AppendIfAbsent => {
            if !h.contains_key(header::SERVER) {
                h.insert(header::SERVER, cfg.server_name.clone());
            }
        }
        ServerHeader::PassThrough => {}
    }
}

async fn decode(
    req: Request<DownstreamBody>,
    ctx: &Arc<ConnCtx>,
    start: Instant,
    start_time: SystemTime,
    rec: &mut Recorder,
    mx: &mut Option<StreamExchange>,
) -> Response<Body> {
    let cfg = &ctx.hcm.config;
    // gRPC as Envoy sees it (`Grpc::Common::isGrpcRequestHeaders`): application/grpc,
    // application/grpc+…; not application/grpc-web, which gets plain local replies.
    let grpc = is_grpc(req.headers());
    // HTTP/1 header size, counted as Envoy's codec does (names and values); HTTP/2 header
    // lists are limited by the codec itself.
    if req.version() != Version::HTTP_2 {
        let size: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if size > cfg.max_request_headers_bytes {
            debug!(size, "request headers too large");
            rec.local(
                Some(ResponseFlag::DownstreamProtocolError),
                details::HEADERS_TOO_LARGE,
            );
            return codec_error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
    }
    let (mut parts, body) = req.into_parts();
    let downstream_h2 = parts.version == Version::HTTP_2;
    if parts.extensions.get::<UriFragment>().is_some() {
        // Envoy rejects a request target with a fragment: 400 with an empty body.
        rec.local(None, details::INVALID_URL);
        return reply_for(grpc, StatusCode::BAD_REQUEST, "");
    }

    // Authority (Host / :authority), with the configured port stripping.
    // No Host on HTTP/1.1: Envoy answers 400 with an empty body.
    let authority = request::authority(&parts.uri, &parts.headers).or_else(|| {
        // HTTP/1.0 without Host, when accepted: default_host_for_http_10.
        (parts.version < Version::HTTP_11)
            .then(|| cfg.default_host_for_http_10.clone())
            .flatten()
    });
    let Some(mut authority) = authority else {
        rec.local(None, details::MISSING_HOST);
        return reply_for(grpc, StatusCode::BAD_REQUEST, "");
    };
    if let Some(stripped) = request::strip_port(&authority, cfg, ctx.conn.local.map(|a| a.port())) {
        authority = stripped;
    }

    // Path: origin-form, optionally normalized.
    let is_connect = parts.method == http::Method::CONNECT;
    let mut path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if !is_connect {
        if !(path.starts_with('/') || (path == "*" && parts.method == http::Method::OPTIONS)) {
            // Envoy's HTTP/1 codec rejects such a request line: 400 with the reason phrase
            // as body, and the connection closes.
            rec.local(
                Some(ResponseFlag::DownstreamProtocolError),
                details::CODEC_ERROR,
            );
            if downstream_h2 {
                return reply_for(grpc, StatusCode::BAD_REQUEST, "");
            }
            return codec_error(StatusCode::BAD_REQUEST);
        }
        if (cfg.normalize_path || cfg.merge_slashes) && path.starts_with('/') {
            match request::normalize_path(&path, cfg.normalize_path, cfg.merge_slashes) {
                Some(p) => path = p,
                None => {
                    rec.local(None, details::PATH_NORMALIZATION_FAILED);
                    return reply_for(grpc, StatusCode::BAD_REQUEST, "");
                }
            }
        }
    }

    // x-forwarded-*, x-request-id.
    let scheme = if ctx.conn.tls.is_some() {
        "https"
    } else {
        "http"
    };
    request::forwarded_headers(&mut parts.headers, cfg, ctx.conn.remote, scheme);
    super::xfcc::apply(
        &mut parts.headers,
        &cfg.client_cert,
        ctx.conn.tls.as_deref(),
    );
    // An external request (use_remote_address and not internal) gets a fresh id unless
    // preserve_external_request_id, as in Envoy.
    let external = cfg.use_remote_address && !parts.headers.contains_key(names::X_ENVOY_INTERNAL);
    let regenerate = external && !cfg.preserve_external_request_id;
    if cfg.generate_request_id && (regenerate || !parts.headers.contains_key(names::X_REQUEST_ID)) {
        parts.headers.insert(names::X_REQUEST_ID, request::uuid4());
    }
    // Tracing: the sampling decision goes into x-request-id, the tracer's context headers
    // into the request.
    let mut force_trace = false;
    if let Some(t) = &cfg.tracing {
        let internal = parts.headers.contains_key(names::X_ENVOY_INTERNAL);
        let d = crate::trace_context::apply(t, &mut parts.headers, internal, ctx.conn.direction);
        force_trace = d.forced;
        rec.trace(&d);
    }
    // The request id the response carries: always_set_request_id_in_response, or a forced
    // trace (as Envoy).
    let request_id = (cfg.always_set_request_id_in_response || force_trace)
        .then(|| parts.headers.get(names::X_REQUEST_ID).cloned())
        .flatten();

    // Istio's peer metadata exchange: who the downstream peer is.
    if let Some(x) = &cfg.peer_exchange {
        *mx = Some(StreamExchange::request(x, &mut parts.headers, rec));
    }

    // Route.
    let Some(table) = ctx.hcm.route_table(&ctx.world) else {
        debug!("no route table");
        cfg.stats.no_route.inc();
        rec.request(&parts.method, &path, &authority, &parts.headers);
        rec.local(Some(ResponseFlag::NoRouteFound), details::ROUTE_NOT_FOUND);
        return reply_for(grpc, StatusCode::NOT_FOUND, "");
    };
    if !table.internal_only_headers.is_empty()
        && !parts.headers.contains_key(names::X_ENVOY_INTERNAL)
    {
        for h in &table.internal_only_headers {
            parts.headers.remove(h);
        }
    }
    let info = RequestInfo {
        authority: &authority,
        path: &path,
        method: &parts.method,
        headers: &parts.headers,
        downstream_remote: ctx.conn.remote,
    };
    let Some(matched) = table.find_with_random(&info, rand::random()) else {
        debug!(authority = %authority, path = %path, "no route");
        cfg.stats.no_route.inc();
        rec.request(&parts.method, &path, &authority, &parts.headers);
        rec.local(Some(ResponseFlag::NoRouteFound), details::ROUTE_NOT_FOUND);
        return reply_for(grpc, StatusCode::NOT_FOUND, "");
    };
    rec.route(&matched);
    if !matches!(matched.route.action, Action::Forward(_)) {
        // The router records a forwarded request once its headers are final.
        rec.request(&parts.method, &path, &authority, &parts.headers);
        rec.details(details::DIRECT_RESPONSE);
    }
    let fmt = FormatContext {
        downstream_remote: ctx.conn.remote,
        downstream_local: ctx.conn.local,
        upstream_remote: None,
        upstream_cluster: None,
        start_time,
        protocol: if downstream_h2 { "HTTP/2" } else { "HTTP/1.1" },
        request_headers: None,
        hostname: "",
    };
    let mut resp = match &matched.route.action {
        // Envoy sends direct responses and redirects as local replies, so a gRPC request
        // gets them gRPC-shaped: 200, `grpc-status` from the HTTP status, the body as
        // `grpc-message` (and the redirect's `location`).
        Action::Direct(d) if grpc => {
            cfg.stats.rq_direct_response.inc();
            let text = d
                .body
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            grpc_local_reply(d.status, &text)
        }
        Action::Direct(d) => {
            cfg.stats.rq_direct_response.inc();
            let mut r = Response::new(match &d.body {
                Some(b) => body::full(b.clone()),
                None => body::empty(),
            });
            *r.status_mut() = d.status;
            if let Some(b) = &d.body {
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
                if !b.is_empty() {
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                }
            } else {
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            }
            r
        }
        Action::Redirect(rd) => {
            cfg.stats.rq_redirect.inc();
            let (status, location) = rd.location(matched.route, &info, "http");
            let mut r = if grpc {
                grpc_local_reply(status, "")
            } else {
                let mut r = Response::new(body::empty());
                *r.status_mut() = status;
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                r
            };
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Action::NonForwarding => {
            rec.local(Some(ResponseFlag::NoRouteFound), details::ROUTE_NOT_FOUND);
            reply_for(grpc, StatusCode::NOT_FOUND, "")
        }
        Action::Forward(action) => {
            let sctx = StreamCtx {
                conn: ctx,
                start,
                start_time,
                grpc,
                downstream_h2,
                authority,
                path,
                request_id: request_id.clone(),
                rec,
                mx: mx.as_mut(),
            };
            return forward::forward(parts, body, &matched, action, sctx).await;
        }
    };
    matched.apply_response_headers(resp.headers_mut(), &fmt);
    if let Some(id) = request_id {
        resp.headers_mut().insert(names::X_REQUEST_ID, id);
    }
    resp
}

/// Marks a request whose target had a `#fragment` (the URI no longer holds it).
#[derive(Clone, Copy)]
pub(crate) struct UriFragment;

/// The reply to a request the HTTP/1 codec could not read, ready to write: Envoy's codec error
/// reply with the connection manager's response headers. It counts as a request (Envoy makes a
/// stream for it).
pub(crate) fn protocol_error(ctx: &ConnCtx, status: StatusCode, why: &str) -> Response<Body> {
    debug!(conn = ctx.conn.id, why, "HTTP/1 codec error");
    reply_outside_stream(
        ctx,
        codec_error(status),
        Some(ResponseFlag::DownstreamProtocolError),
        details::CODEC_ERROR,
    )
}

/// Envoy's reply when `request_headers_timeout` passes before the request head is complete:
/// 408 `request header timeout`, and the connection closes.
pub(crate) fn request_header_timeout(ctx: &ConnCtx) -> Response<Body> {
    let stats = &ctx.hcm.config.stats;
    stats.downstream_rq_header_timeout.inc();
    let mut r = local_reply(StatusCode::REQUEST_TIMEOUT, "request header timeout");
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    reply_outside_stream(ctx, r, None, details::REQUEST_HEADER_TIMEOUT)
}

/// A reply the codec gives before there is a stream: counted as a request with its status,
/// and logged with these flag and details.
fn reply_outside_stream(
    ctx: &ConnCtx,
    mut r: Response<Body>,
    flag: Option<ResponseFlag>,
    details: &'static str,
) -> Response<Body> {
    let stats = &ctx.hcm.config.stats;
    stats.downstream_rq_total.inc();
    stats.answered(r.status());
    encode(&mut r, ctx, Version::HTTP_11);
    let mut rec = Recorder::start(ctx, Version::HTTP_11, Instant::now(), SystemTime::now());
    rec.local(flag, details);
    rec.finish(r)
}

/// Envoy's reply to an HTTP/1 codec error (`sendLocalReply` from the codec): the reason
/// phrase as a `text/plain` body, and the connection closes. Request headers over
/// `max_request_headers_kb` get it with 431.
fn codec_error(status: StatusCode) -> Response<Body> {
    let mut r = local_reply(status, status.canonical_reason().unwrap_or(""));
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::too_many_premature_resets;

    #[test]
    fn premature_reset_thresholds_follow_envoy() {
        assert!(!too_many_premature_resets(100, 249));
        assert!(too_many_premature_resets(260, 250));
        assert!(!too_many_premature_resets(1000, 500));
        assert!(too_many_premature_resets(1000, 501));
        assert!(!too_many_premature_resets(10_000, 10));
    }
}
