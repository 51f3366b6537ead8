//! The router phase of a stream: choose the cluster and host, build the upstream request,
//! await the response under the route's timeouts, retry by the route's retry policy (the
//! request body is replayed only when it was buffered within the cluster's buffer limit), and
//! add the router's response headers.

use super::ConnCtx;
use super::DownstreamBody;
use super::local_reply::{reply_for, reset_reason, reset_status, upstream_reset_text};
use super::record::{Recorder, details};
use super::upgrade;
use super::upstream_request::{RequestBody, buffer_for_retry, build_request};
use super::upstream_stats::Attempt;
use crate::protocol::body::{self, Body};
use crate::protocol::headers::upgrade_type;
use crate::protocol::headers::{NameSet, names, number_value};
use crate::router::{FormatContext, Matched, RequestInfo, RouteAction};
use crate::stream_info::ResponseFlag;
use crate::upstream::cluster::Cluster;
use crate::upstream::host::Host;
use crate::upstream::lb::LbContext;
use crate::upstream::pool::{self, UpstreamError, UpstreamProtocol, UpstreamTls};
use http::{HeaderMap, HeaderValue, Response, StatusCode, request};
use http_body_util::BodyExt;
use replies::{BodyTimers, finish_response, no_healthy, with_attempt_count};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};
use tracing::debug;

mod replies;

use super::peer::StreamExchange;

/// What a stream carries into the router phase.
pub(crate) struct StreamCtx<'a> {
    pub conn: &'a Arc<ConnCtx>,
    pub start: Instant,
    pub start_time: SystemTime,
    pub grpc: bool,
    pub downstream_h2: bool,
    pub authority: String,
    pub path: String,
    /// The `x-request-id` to echo in the response, if the response carries it.
    pub request_id: Option<HeaderValue>,
    /// The stream's record.
    pub rec: &'a mut Recorder,
    /// Istio's peer metadata exchange, when configured.
    pub mx: Option<&'a mut StreamExchange>,
}

/// Request headers Envoy's router removes before the upstream request.
const ROUTER_CONSUMED_HEADERS: NameSet = NameSet::new(&[
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-alt-stat-name",
]);

/// Run the router phase for a matched route.
pub(crate) async fn forward(
    mut parts: request::Parts,
    body: DownstreamBody,
    matched: &Matched<'_>,
    action: &RouteAction,
    mut s: StreamCtx<'_>,
) -> Response<Body> {
    let ctx = s.conn;
    let cfg = &ctx.hcm.config;
    let router = &cfg.router;
    let suppress = router.suppress_envoy_headers;
    // Envoy's router adds `x-envoy-attempt-count` (include_attempt_count_in_response) to its
    // own local replies too, once the cluster is known: no healthy upstream, overflow, reset,
    // timeout.
    let count_in_response = matched.virtual_host.include_attempt_count_in_response;
    let local =
        |resp: Response<Body>, attempt: u32| with_attempt_count(resp, count_in_response, attempt);

    // Choose the cluster.
    let (cluster_name, weighted_entry) = action.pick_cluster_entry(&parts.headers, rand::random());
    let Some(cluster_name) = cluster_name else {
        // cluster_header absent or not a valid name: Envoy answers 404.
        cfg.stats.no_cluster.inc();
        s.rec
            .request(&parts.method, &s.path, &s.authority, &parts.headers);
        s.rec.local(
            Some(ResponseFlag::NoClusterFound),
            details::CLUSTER_NOT_FOUND,
        );
        return reply_for(s.grpc, StatusCode::NOT_FOUND, "");
    };
    let Some(cluster) = ctx.world.cluster(cluster_name) else {
        debug!(cluster = cluster_name, "cluster not found");
        cfg.stats.no_cluster.inc();
        s.rec
            .request(&parts.method, &s.path, &s.authority, &parts.headers);
        s.rec.local(
            Some(ResponseFlag::NoClusterFound),
            details::CLUSTER_NOT_FOUND,
        );
        return reply_for(s.grpc, action.cluster_not_found_response_code, "");
    };
    s.rec.cluster(&cluster);
    if let Some(m) = s.mx.as_deref_mut() {
        m.upstream(&mut parts.headers, &cluster);
    }
    let hash = action.hash(&RequestInfo {
        authority: &s.authority,
        path: &s.path,
        method: &parts.method,
        headers: &parts.headers,
        downstream_remote: ctx.conn.remote,
    });

    // Request header mutations of route, virtual host and route configuration.
    let fmt = FormatContext {
        downstream_remote: ctx.conn.remote,
        downstream_local: ctx.conn.local,
        upstream_remote: None,
        upstream_cluster: Some(&cluster.name),
        start_time: s.start_time,
        protocol: if s.downstream_h2 {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        },
        request_headers: None,
        hostname: "",
    };
    // Envoy's router consumes these request headers and never passes them upstream (a
    // client's x-envoy-expected-rq-timeout-ms is replaced, or dropped when there is no
    // timeout or envoy headers are suppressed).
    crate::protocol::headers::remove_all(&mut parts.headers, &ROUTER_CONSUMED_HEADERS);
    matched.apply_request_headers_with(weighted_entry, &mut parts.headers, &fmt);

    // Path and host rewrites.
    let mut path = std::mem::take(&mut s.path);
    if let Some(p) = action.rewrite_path(matched.route, &path) {
        if !suppress && let Ok(v) = HeaderValue::from_str(&path) {
            parts.headers.insert(names::X_ENVOY_ORIGINAL_PATH, v);
        }
        path = p;
    }
    let mut authority = std::mem::take(&mut s.authority);
    if let Some(h) = weighted_entry.and_then(|e| e.host_rewrite_literal.as_ref()) {
        authority = h.clone();
    } else if let Some(h) = &action.host_rewrite_literal {
        authority = h.clone();
    } else if let Some(name) = &action.host_rewrite_header
        && let Some(v) = parts.headers.get(name).and_then(|v| v.to_str().ok())
    {
        authority = v.to_owned();
    }

    s.rec
        .request(&parts.method, &path, &authority, &parts.headers);

    // Circuit breaker: max_requests.
    let active = cluster.active_requests.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(&cluster);
    if active >= cluster.circuit_breakers.max_requests {
        cluster.stats.upstream_rq_pending_overflow().inc();
        s.rec
            .local(Some(ResponseFlag::UpstreamOverflow), details::OVERFLOW);
        return local(
            reply_for(
                s.grpc,
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            ),
            1,
        );
    }

    // Upgrades (WebSocket) and CONNECT tunnel through a dedicated connection.
    let up_type = if parts.method == http::Method::CONNECT {
        Some("connect".to_owned())
    } else {
        upgrade_type(&parts.headers)
    };
    if let Some(t) = up_type {
        let route_override = action
            .upgrade_configs
            .iter()
            .find(|(u, _)| *u == t)
            .map(|(_, e)| *e);
        if !cfg.upgrade_allowed(&t, route_override) {
            cfg.stats.downstream_rq_ws_on_non_ws_route.inc();
            s.rec.details(details::UPGRADE_FAILED);
            return reply_for(s.grpc, StatusCode::FORBIDDEN, "");
        }
        let host = match cluster.choose_host(&LbContext {
            hash,
            excluded: &[],
        }) {
            Some(h) => h,
            None => return local(no_healthy(&cluster, s.grpc, s.rec, 1), 1),
        };
        s.rec.host(&host, 1);
        let downstream = parts.extensions.remove::<super::h1::DownstreamUpgrade>();
        if action.auto_host_rewrite && !host.hostname.is_empty() {
            authority = host.hostname.to_string();
        }
        let req = build_request(
            parts,
            body.boxed_unsync(),
            UpstreamProtocol::Http1,
            &authority,
            path,
            true,
        );
        return upgrade::proxy(
            req,
            downstream,
            &t,
            host,
            &cluster,
            &ctx.world.secrets,
            s.rec,
        )
        .await;
    }

    // The stream idle timeout: the route's `idle_timeout` (zero disables it), else the
    // connection manager's `stream_idle_timeout`. It bounds the wait for response headers and
    // every gap between body frames, both ways.
    let stream_idle = match action.idle_timeout {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => cfg.stream_idle_timeout,
    };
    // request_timeout: the whole request body must arrive in time, else 408. Only a body
    // still to come is timed.
    let streaming = !http_body::Body::is_end_stream(&body);
    let flag = || Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timers = BodyTimers {
        idle: (streaming && stream_idle.is_some()).then(flag),
        expired: (streaming && cfg.request_timeout.is_some()).then(flag),
    };
    let body: Body = match (stream_idle, &timers.idle) {
        (Some(i), Some(f)) => body::TimedBody::idle(body, i, Some(f.clone())).boxed_unsync(),
        _ => body.boxed_unsync(),
    };
    let body: Body = match (cfg.request_timeout, &timers.expired) {
        (Some(t), Some(f)) => {
            body::TimedBody::deadline(body, tokio::time::Instant::from_std(s.start + t), f.clone())
                .boxed_unsync()
        }
        _ => body,
    };
    let body = s.rec.count_request_body(body);
    let policy = action.retry_policy.as_ref();
    let max_attempts = 1 + policy.map_or(0, |p| p.num_retries);
    let mut req_body = if max_attempts > 1 {
        buffer_for_retry(body, ctx.conn.buffer_limit).await
    } else {
        RequestBody::Once(Some(body))
    };
    let replayable = matches!(req_body, RequestBody::Replay(..));
    let protocol = cluster.upstream_protocol(s.downstream_h2);
    let global_deadline = action.timeout.map(|t| s.start + t);
    let mut tried: Vec<Arc<Host>> = Vec::new();
    let mut parts_slot = Some(parts);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let excluded: &[Arc<Host>] = if policy.is_some_and(|p| p.retry_other_hosts) {
            &tried
        } else {
            &[]
        };
        let Some(host) = cluster.choose_host(&LbContext { hash, excluded }) else {
            return local(no_healthy(&cluster, s.grpc, s.rec, attempt), attempt);
        };
        s.rec.host(&host, attempt);
        let auto_host =
            (action.auto_host_rewrite && !host.hostname.is_empty()).then_some(&*host.hostname);
        // The last possible attempt takes the request head; earlier ones send a copy. Both
        // are missing only when the body could not be read (timed out, or over its limit).
        let head = if attempt < max_attempts && replayable {
            parts_slot.clone()
        } else {
            parts_slot.take()
        };
        let (Some(b), Some(head)) = (req_body.take(), head) else {
            if let Some(r) = timers.reply(cfg, s.grpc, s.rec) {
                return r;
            }
            return local(
                reply_for(
                    s.grpc,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream reset before headers",
                ),
                attempt,
            );
        };
        let mut req = build_request(
            head,
            b,
            protocol,
            auto_host.unwrap_or(&authority),
            if attempt < max_attempts && replayable {
                path.clone()
            } else {
                std::mem::take(&mut path)
            },
            false,
        );
        let h = req.headers_mut();
        if !suppress && let Some(v) = &action.expected_timeout_header {
            h.insert(names::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, v.clone());
        }
        if matched.virtual_host.include_attempt_count_in_request {
            h.insert(names::X_ENVOY_ATTEMPT_COUNT, number_value(attempt.into()));
        }
        let tls = UpstreamTls::for_host(
            &cluster,
            &host,
            || ctx.world.secrets.load_full(),
            Some(protocol),
            Some(auto_host.unwrap_or(&authority)),
            cfg.istio_alpn(protocol == UpstreamProtocol::Http2),
        );
        let sent = Instant::now();
        let try_stats = Attempt::start(&cluster.stats, &host, sent);
        let per_try = policy.and_then(|p| p.per_try_timeout);
        let limit = [
            global_deadline.map(|d| d.saturating_duration_since(sent)),
            per_try,
            stream_idle,
        ]
        .into_iter()
        .flatten()
        .min();
        let result = match limit {
            Some(l) => {
                match tokio::time::timeout(
                    l,
                    pool::send(
                        &host,
                        &cluster.stats,
                        &cluster.pool,
                        protocol,
                        req,
                        tls.as_ref(),
                    ),
                )
                .await
                {
                    Ok(r) => Outcome::Done(r),
                    Err(_) if global_deadline.is_some_and(|d| Instant::now() >= d) => {
                        Outcome::Timeout { global: true }
                    }
                    Err(_) if per_try.is_none_or(|p| stream_idle.is_some_and(|i| i < p)) => {
                        Outcome::Idle
                    }
                    Err(_) => Outcome::Timeout { global: false },
                }
            }
            None => Outcome::Done(
                pool::send(
                    &host,
                    &cluster.stats,
                    &cluster.pool,
                    protocol,
                    req,
                    tls.as_ref(),
                )
                .await,
            ),
        };
        let more = attempt < max_attempts && replayable;
        let retriable = match &result {
            Outcome::Done(Ok(r)) => {
                try_stats.headers(r.response.status());
                policy.is_some_and(|p| {
                    p.retriable_response(r.response.status(), r.response.headers())
                })
            }
            Outcome::Done(Err(e)) => {
                try_stats.failed();
                policy.is_some_and(|p| p.retriable_reset(e.is_connect_failure()))
            }
            Outcome::Idle => {
                try_stats.timed_out();
                false
            }
            Outcome::Timeout { global } => {
                try_stats.timed_out();
                if *global {
                    cluster.stats.upstream_rq_timeout().inc();
                } else {
                    cluster.stats.upstream_rq_per_try_timeout().inc();
                }
                !global
                    && policy.is_some_and(|p| {
                        p.retriable_reset(false)
                            || p.retriable_response(StatusCode::GATEWAY_TIMEOUT, &HeaderMap::new())
                    })
            }
        };
        let retry = more && retriable;
        if retriable && !more && replayable && max_attempts > 1 {
            // Envoy's `URX`: the attempt would have been retried, but retries ran out.
            s.rec.flag(ResponseFlag::UpstreamRetryLimitExceeded);
        }
        if retry && let Some(p) = policy {
            if cluster.active_retries.load(Ordering::Relaxed)
                >= cluster.circuit_breakers.max_retries
            {
                cluster.stats.upstream_rq_retry_overflow().inc();
            } else {
                cluster.stats.upstream_rq_retry().inc();
                tried.push(host.clone());
                cluster.active_retries.fetch_add(1, Ordering::Relaxed);
                let backoff = p.backoff(attempt, rand::random());
                let wait = match global_deadline {
                    Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                    None => backoff,
                };
                tokio::time::sleep(wait).await;
                cluster.active_retries.fetch_sub(1, Ordering::Relaxed);
                if global_deadline.is_some_and(|d| Instant::now() >= d) {
                    cluster.stats.upstream_rq_timeout().inc();
                    cfg.stats.downstream_rq_timeout.inc();
                    s.rec.local(
                        Some(ResponseFlag::UpstreamRequestTimeout),
                        details::RESPONSE_TIMEOUT,
                    );
                    return local(
                        reply_for(
                            s.grpc,
                            StatusCode::GATEWAY_TIMEOUT,
                            "upstream request timeout",
                        ),
                        attempt,
                    );
                }
                continue;
            }
        }
        return match result {
            Outcome::Done(Ok(r)) => {
                s.rec.upstream_response(r.upstream_local);
                s.rec.upstream_tls(r.upstream_tls.clone());
                let upstream = r.upstream_addr;
                let mut resp = r.response;
                if let Some(i) = stream_idle
                    && !http_body::Body::is_end_stream(resp.body())
                {
                    // A response body that stalls for the idle timeout is reset.
                    resp = resp.map(|b| body::TimedBody::idle(b, i, None).boxed_unsync());
                }
                let service_time = sent.elapsed();
                finish_response(
                    &mut resp,
                    matched,
                    weighted_entry,
                    &s,
                    &fmt,
                    &upstream,
                    service_time,
                    attempt,
                    suppress,
                );
                try_stats.wrap(resp)
            }
            Outcome::Done(Err(_)) if let Some(r) = timers.reply(cfg, s.grpc, s.rec) => r,
            Outcome::Done(Err(e)) => {
                if matches!(e, UpstreamError::RequestBody(_)) {
                    // The client reset the stream (or left) while its body was going up. Let
                    // the codec see the reset before anything answers: the stream then ends
                    // as a reset (counted by the rapid-reset check), not with a reply
                    // nobody reads.
                    tokio::task::yield_now().await;
                }
                debug!(host = %host.address, error = %e, "upstream request failed");
                s.rec.upstream_failure(&e);
                let text = upstream_reset_text(attempt > 1, reset_reason(&e));
                local(reply_for(s.grpc, reset_status(&e), &text), attempt)
            }
            Outcome::Timeout { global } => {
                cfg.stats.downstream_rq_timeout.inc();
                s.rec.local(
                    Some(ResponseFlag::UpstreamRequestTimeout),
                    if global {
                        details::RESPONSE_TIMEOUT
                    } else {
                        details::PER_TRY_TIMEOUT
                    },
                );
                local(
                    reply_for(
                        s.grpc,
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream request timeout",
                    ),
                    attempt,
                )
            }
            Outcome::Idle => {
                cfg.stats.downstream_rq_idle_timeout.inc();
                s.rec.local(
                    Some(ResponseFlag::StreamIdleTimeout),
                    details::STREAM_IDLE_TIMEOUT,
                );
                reply_for(s.grpc, StatusCode::REQUEST_TIMEOUT, "stream timeout")
            }
        };
    }
}

enum Outcome {
    Done(Result<pool::PooledResponse, UpstreamError>),
    /// The route's global timeout (`global`) or the per-try timeout expired.
    Timeout {
        global: bool,
    },
    /// The stream idle timeout expired before response headers.
    Idle,
}

struct ActiveGuard<'a>(&'a Cluster);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}
