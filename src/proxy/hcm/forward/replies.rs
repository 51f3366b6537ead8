//! The router's replies and response headers: local replies with Envoy's stats and record
//! entries (no healthy upstream, request timeouts), `x-envoy-attempt-count`, and the headers
//! added to a proxied response.

use super::StreamCtx;
use crate::protocol::body::Body;
use crate::protocol::headers::strip_hop_by_hop;
use crate::protocol::headers::{names, number_value};
use crate::proxy::hcm::local_reply::reply_for;
use crate::proxy::hcm::record::{Recorder, details};
use crate::router::{ClusterWeight, FormatContext, Matched};
use crate::stream_info::ResponseFlag;
use crate::upstream::cluster::Cluster;
use http::{Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Add `x-envoy-attempt-count` to a router local reply when the virtual host asks for it.
pub(super) fn with_attempt_count(
    mut resp: Response<Body>,
    on: bool,
    attempt: u32,
) -> Response<Body> {
    if on {
        resp.headers_mut()
            .insert(names::X_ENVOY_ATTEMPT_COUNT, number_value(attempt.into()));
    }
    resp
}

pub(super) fn no_healthy(
    cluster: &Cluster,
    grpc: bool,
    rec: &mut Recorder,
    attempt: u32,
) -> Response<Body> {
    cluster.stats.upstream_cx_none_healthy().inc();
    rec.with(|i| i.attempt_count = attempt);
    rec.local(
        Some(ResponseFlag::NoHealthyUpstream),
        details::NO_HEALTHY_UPSTREAM,
    );
    reply_for(grpc, StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
}

/// The request body's timers: flags shared with the timed body, set by the timer that ended
/// it; made only for a body still to come.
pub(super) struct BodyTimers {
    /// `request_timeout` passed.
    pub expired: Option<Arc<AtomicBool>>,
    /// The stream idle timeout passed.
    pub idle: Option<Arc<AtomicBool>>,
}

impl BodyTimers {
    /// Envoy's 408 for a request whose body did not arrive within `request_timeout` ("request
    /// timeout") or stalled for the stream idle timeout ("stream timeout").
    pub(super) fn reply(
        &self,
        cfg: &crate::filters::HcmConfig,
        grpc: bool,
        rec: &mut Recorder,
    ) -> Option<Response<Body>> {
        let fired =
            |f: &Option<Arc<AtomicBool>>| f.as_ref().is_some_and(|f| f.load(Ordering::Relaxed));
        if fired(&self.expired) {
            cfg.stats.downstream_rq_timeout.inc();
            rec.details(details::REQUEST_OVERALL_TIMEOUT);
            return Some(reply_for(
                grpc,
                StatusCode::REQUEST_TIMEOUT,
                "request timeout",
            ));
        }
        fired(&self.idle).then(|| {
            cfg.stats.downstream_rq_idle_timeout.inc();
            rec.local(
                Some(ResponseFlag::StreamIdleTimeout),
                details::STREAM_IDLE_TIMEOUT,
            );
            reply_for(grpc, StatusCode::REQUEST_TIMEOUT, "stream timeout")
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn finish_response(
    resp: &mut Response<Body>,
    matched: &Matched<'_>,
    weighted_entry: Option<&ClusterWeight>,
    s: &StreamCtx<'_>,
    fmt: &FormatContext<'_>,
    upstream: &str,
    service_time: Duration,
    attempt: u32,
    suppress: bool,
) {
    strip_hop_by_hop(resp.headers_mut());
    let h = resp.headers_mut();
    if !suppress {
        h.insert(
            names::X_ENVOY_UPSTREAM_SERVICE_TIME,
            number_value(service_time.as_millis() as u64),
        );
    }
    if matched.virtual_host.include_attempt_count_in_response {
        h.insert(names::X_ENVOY_ATTEMPT_COUNT, number_value(attempt.into()));
    }
    let fmt = FormatContext {
        upstream_remote: Some(upstream),
        ..*fmt
    };
    matched.apply_response_headers_with(weighted_entry, resp.headers_mut(), &fmt);
    if let Some(id) = &s.request_id {
        resp.headers_mut().insert(names::X_REQUEST_ID, id.clone());
    }
}
