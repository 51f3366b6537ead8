//! The stats of one upstream attempt: `upstream_rq_total` and `upstream_rq_active` when it
//! starts, the status-code counters and the host's success/error counters when its response
//! headers (or its failure) arrive, and `upstream_rq_completed` and `upstream_rq_time` when
//! its response body ends.

use crate::protocol::body::{Body, OnEnd};
use crate::upstream::cluster::ClusterStats;
use crate::upstream::host::{ActiveRequest, Host};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// An attempt in flight; dropped without [`Attempt::wrap`], it ends with no response.
pub(crate) struct Attempt {
    stats: ClusterStats,
    host: Arc<Host>,
    _inflight: ActiveRequest,
    sent: Instant,
}

impl Attempt {
    /// An attempt to `host` starts, at `sent`.
    pub(crate) fn start(stats: &ClusterStats, host: &Arc<Host>, sent: Instant) -> Self {
        stats.upstream_rq_total().inc();
        stats.upstream_rq_active().inc();
        Attempt {
            stats: stats.clone(),
            host: host.clone(),
            _inflight: host.start_request(),
            sent,
        }
    }

    /// Response headers arrived with `status`.
    pub(crate) fn headers(&self, status: StatusCode) {
        self.stats.block().status_codes().record(status.as_u16());
        let c = &self.host.counters();
        if status.is_server_error() {
            c.rq_error.fetch_add(1, Ordering::Relaxed);
        } else {
            c.rq_success.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The attempt failed before response headers (reset, connect failure).
    pub(crate) fn failed(&self) {
        self.host
            .counters()
            .rq_error
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The attempt timed out before response headers.
    pub(crate) fn timed_out(&self) {
        self.host
            .counters()
            .rq_timeout
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Keep the attempt open until `resp`'s body ends, then count it completed.
    pub(crate) fn wrap(self, resp: Response<Body>) -> Response<Body> {
        resp.map(|b| {
            OnEnd::new(b, move || {
                self.stats.upstream_rq_completed().inc();
                self.stats
                    .upstream_rq_time()
                    .record_duration(self.sent.elapsed());
            })
            .boxed_unsync()
        })
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.stats.upstream_rq_active().dec();
    }
}
