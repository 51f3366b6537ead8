//! The stream record of the connection manager: what each phase learns goes into a
//! [`StreamInfo`], which the connection manager's observers (access logs, Istio's metrics)
//! get when the stream really ends — when the response body has been sent, when the client
//! goes away, or when the upstream resets mid-response. With no observer nothing is
//! recorded: every method is a no-op on an empty [`Recorder`] and no body is wrapped.

mod body;

use super::ConnCtx;
use crate::protocol::body::Body;
use crate::stream_info::{
    LogType, Needs, Observers, Protocol, ResponseFlag, StreamInfo, grpc_status_for_http,
    grpc_status_of, is_grpc_content_type,
};
use crate::upstream::pool::UpstreamError;
use body::{CountedBody, LoggedBody};
use http::{HeaderMap, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Envoy's `ResponseCodeDetails` for the outcomes tern has.
pub(crate) mod details {
    pub const VIA_UPSTREAM: &str = "via_upstream";
    pub const ROUTE_NOT_FOUND: &str = "route_not_found";
    pub const CLUSTER_NOT_FOUND: &str = "cluster_not_found";
    pub const NO_HEALTHY_UPSTREAM: &str = "no_healthy_upstream";
    pub const DIRECT_RESPONSE: &str = "direct_response";
    pub const RESPONSE_TIMEOUT: &str = "response_timeout";
    pub const PER_TRY_TIMEOUT: &str = "upstream_per_try_timeout";
    pub const STREAM_IDLE_TIMEOUT: &str = "stream_idle_timeout";
    pub const REQUEST_OVERALL_TIMEOUT: &str = "request_overall_timeout";
    pub const DOWNSTREAM_REMOTE_DISCONNECT: &str = "downstream_remote_disconnect";
    pub const LOW_VERSION: &str = "low_version";
    pub const MISSING_HOST: &str = "missing_host_header";
    pub const HEADERS_TOO_LARGE: &str = "http1.headers_too_large";
    pub const CODEC_ERROR: &str = "http1.codec_error";
    pub const INVALID_URL: &str = "http.invalid_url";
    pub const REQUEST_HEADER_TIMEOUT: &str = "request_header_timeout";
    pub const UPGRADE_FAILED: &str = "upgrade_failed";
    pub const PATH_NORMALIZATION_FAILED: &str = "path_normalization_failed";
    pub const OVERFLOW: &str = "upstream_reset_before_response_started{overflow}";
}

/// The request body's side of the record, shared with the body as it goes upstream.
#[derive(Debug)]
struct RequestSide {
    bytes: AtomicU64,
    /// Microseconds after the stream's start at which the body ended (0: not yet).
    ended_us: AtomicU64,
}

struct Rec {
    info: StreamInfo,
    observers: Observers,
    needs: Needs,
    request: Option<Arc<RequestSide>>,
    /// The response body ended normally.
    ended: bool,
}

impl Rec {
    fn end(&mut self) {
        let elapsed = self.info.start.elapsed();
        self.info.duration.get_or_insert(elapsed);
        if let Some(r) = &self.request {
            self.info.bytes_received = r.bytes.load(Ordering::Relaxed);
            let us = r.ended_us.load(Ordering::Relaxed);
            if us > 0 {
                let at = Some(Duration::from_micros(us));
                self.info.timing.last_downstream_rx = at;
                if self.info.upstream_host.is_some() {
                    self.info.timing.last_upstream_tx = at;
                }
            }
        } else if self.info.upstream_host.is_some() {
            // A request without a body went upstream with its headers.
            self.info.timing.last_upstream_tx = self.info.timing.last_downstream_rx;
        }
        if self.ended {
            self.info.timing.last_downstream_tx = Some(elapsed);
        } else if !self
            .info
            .response_flags
            .contains(ResponseFlag::StreamIdleTimeout)
            && !self
                .info
                .response_flags
                .contains(ResponseFlag::UpstreamProtocolError)
            && !self
                .info
                .response_flags
                .contains(ResponseFlag::UpstreamConnectionTermination)
            && !self
                .info
                .response_flags
                .contains(ResponseFlag::UpstreamRemoteReset)
        {
            // Neither the response nor an upstream error ended the stream: the client went away.
            self.info
                .response_flags
                .insert(ResponseFlag::DownstreamConnectionTermination);
            self.info.response_code_details = Some(details::DOWNSTREAM_REMOTE_DISCONNECT.into());
        }
    }
}

impl Drop for Rec {
    fn drop(&mut self) {
        self.end();
        self.observers.notify(&self.info);
    }
}

/// The record of one stream, empty when nobody observes.
pub(crate) struct Recorder(Option<Box<Rec>>);

impl Recorder {
    /// Start recording a stream of `ctx`'s connection manager, if anyone observes.
    pub(crate) fn start(
        ctx: &ConnCtx,
        version: http::Version,
        start: Instant,
        start_time: SystemTime,
    ) -> Recorder {
        let observers = &ctx.hcm.config.observers;
        if observers.is_empty() {
            return Recorder(None);
        }
        let conn = &ctx.conn;
        let mut info = StreamInfo::starting_at(
            LogType::DownstreamEnd,
            conn.id,
            conn.listener.clone(),
            start,
            start_time,
        );
        info.direction = conn.direction;
        info.downstream_local = conn.local;
        info.downstream_remote = conn.remote;
        info.downstream_direct_remote = conn.remote;
        info.protocol = Some(Protocol::from_version(version));
        if let Some(t) = &conn.tls {
            info.requested_server_name = t.sni.clone();
            info.downstream_tls = Some(t.clone());
        }
        Recorder(Some(Box::new(Rec {
            info,
            needs: observers.needs(),
            observers: observers.clone(),
            request: None,
            ended: false,
        })))
    }

    /// Update the record (nothing happens when nobody observes).
    pub(crate) fn with(&mut self, f: impl FnOnce(&mut StreamInfo)) {
        if let Some(r) = &mut self.0 {
            f(&mut r.info);
        }
    }

    /// Set a response flag.
    pub(crate) fn flag(&mut self, f: ResponseFlag) {
        self.with(|i| i.response_flags.insert(f));
    }

    /// Set the response code details.
    pub(crate) fn details(&mut self, d: &'static str) {
        self.with(|i| i.response_code_details = Some(Cow::Borrowed(d)));
    }

    /// A local reply: a flag (if any) and its details.
    pub(crate) fn local(&mut self, flag: Option<ResponseFlag>, d: &'static str) {
        self.with(|i| {
            if let Some(f) = flag {
                i.response_flags.insert(f);
            }
            i.response_code_details = Some(Cow::Borrowed(d));
        });
    }

    /// The request as routed: method, path, authority and (if an observer reads them) the
    /// request headers.
    pub(crate) fn request(
        &mut self,
        method: &http::Method,
        path: &str,
        authority: &str,
        headers: &HeaderMap,
    ) {
        if let Some(r) = &mut self.0
            && r.needs.request_headers
        {
            let i = &mut r.info;
            i.method = Some(method.clone());
            i.path = Some(path.to_owned());
            i.authority = Some(authority.to_owned());
            i.scheme = Some(if i.downstream_tls.is_some() {
                "https"
            } else {
                "http"
            });
            i.request_headers = Some(headers.clone());
        }
    }

    /// The cluster chosen for the stream.
    pub(crate) fn cluster(&mut self, cluster: &crate::upstream::cluster::Cluster) {
        self.with(|i| {
            i.upstream_cluster = Some(cluster.name.clone());
            i.istio.cluster = cluster.istio.clone();
        });
    }

    /// The route that matched.
    pub(crate) fn route(&mut self, m: &crate::router::Matched<'_>) {
        self.with(|i| {
            i.route_name = (!m.route.name.is_empty()).then(|| m.route.name.clone());
        });
    }

    /// The host an attempt went to.
    pub(crate) fn host(&mut self, host: &crate::upstream::host::Host, attempt: u32) {
        self.with(|i| {
            i.upstream_host = Some(match &host.address {
                crate::config::Address::Tcp(sa) => {
                    let mut s = String::with_capacity(24);
                    crate::format::push_socket_addr(&mut s, *sa);
                    s
                }
                other => other.to_string(),
            });
            i.upstream_host_name = (!host.hostname.is_empty()).then(|| host.hostname.to_string());
            i.istio.upstream_workload = host.istio_workload().cloned();
            i.istio.upstream_address = host.address.socket_addr();
            i.upstream_local = None;
            i.attempt_count = attempt;
        });
    }

    /// An upstream request failed before response headers: its flag, details and transport
    /// failure reason, as Envoy's router records them.
    pub(crate) fn upstream_failure(&mut self, e: &UpstreamError) {
        self.with(|i| {
            let (flag, reason) = failure(e);
            i.response_flags.insert(flag);
            let transport = transport_failure(e);
            let d = match &transport {
                Some(t) => format!("upstream_reset_before_response_started{{{reason}|{t}}}"),
                None => format!("upstream_reset_before_response_started{{{reason}}}"),
            };
            i.response_code_details = Some(Cow::Owned(d));
            i.upstream_transport_failure_reason = transport;
        });
    }

    /// Response headers arrived from the upstream.
    pub(crate) fn upstream_response(&mut self, upstream_local: Option<std::net::SocketAddr>) {
        self.with(|i| {
            i.upstream_local = upstream_local;
            i.timing.first_upstream_rx = Some(i.start.elapsed());
            i.response_code_details = Some(Cow::Borrowed(details::VIA_UPSTREAM));
        });
    }

    /// The upstream connection's TLS session, if any.
    pub(crate) fn upstream_tls(&mut self, tls: Option<Arc<crate::tls::TlsInfo>>) {
        if tls.is_some() {
            self.with(|i| i.upstream_tls = tls);
        }
    }

    /// The trace decision.
    pub(crate) fn trace(&mut self, d: &crate::trace_context::Decision) {
        self.with(|i| {
            i.traced = d.traced();
            i.trace_id = d.trace_id.clone();
        });
    }

    /// Count the request body as it is read (`%BYTES_RECEIVED%`) and note when it ends.
    pub(crate) fn count_request_body(&mut self, body: Body) -> Body {
        let Some(r) = &mut self.0 else { return body };
        if body.is_end_stream() {
            // No body: nothing to count, and the request was complete with its headers.
            r.info.timing.last_downstream_rx = Some(Duration::ZERO);
            return body;
        }
        let side = Arc::new(RequestSide {
            bytes: AtomicU64::new(0),
            ended_us: AtomicU64::new(0),
        });
        r.request = Some(side.clone());
        CountedBody {
            inner: body,
            side,
            start: r.info.start,
        }
        .boxed_unsync()
    }

    /// Take the record away (an upgraded connection ends it when its tunnel closes).
    pub(crate) fn detach(&mut self) -> Detached {
        Detached(self.0.take())
    }

    /// The response is ready: record its code (and headers if an observer reads them) and
    /// make its body end the stream.
    pub(crate) fn finish(mut self, mut resp: Response<Body>) -> Response<Body> {
        let Some(mut r) = self.0.take() else {
            return resp;
        };
        let status = resp.status().as_u16();
        r.info.response_code = Some(status);
        if is_grpc_content_type(resp.headers()) {
            r.info.grpc_status = Some(
                grpc_status_of(resp.headers()).unwrap_or_else(|| grpc_status_for_http(status)),
            );
        }
        if r.needs.response_headers {
            r.info.response_headers = Some(resp.headers().clone());
        }
        if resp.body().is_end_stream() {
            r.ended = true;
            drop(r);
            return resp;
        }
        let body = std::mem::replace(resp.body_mut(), crate::protocol::body::empty());
        *resp.body_mut() = LoggedBody {
            inner: body,
            rec: Some(r),
        }
        .boxed_unsync();
        resp
    }
}

/// A record taken from its stream, ended when dropped.
pub(crate) struct Detached(Option<Box<Rec>>);

impl Detached {
    /// The tunnel carried these bytes and then closed.
    pub(crate) fn tunnel_closed(mut self, from_downstream: u64, to_downstream: u64) {
        if let Some(r) = &mut self.0 {
            r.info.bytes_received += from_downstream;
            r.info.bytes_sent += to_downstream;
            r.ended = true;
        }
    }

    /// The response that opened the tunnel.
    pub(crate) fn response(&mut self, status: u16) {
        if let Some(r) = &mut self.0 {
            r.info.response_code = Some(status);
        }
    }
}

fn elapsed_us(start: Instant) -> u64 {
    (start.elapsed().as_micros() as u64).max(1)
}

/// Envoy's response flag and reset reason for an upstream failure before headers.
fn failure(e: &UpstreamError) -> (ResponseFlag, &'static str) {
    match e {
        UpstreamError::ConnectFailure(_)
        | UpstreamError::Unsupported(_)
        | UpstreamError::Tls(_) => (
            ResponseFlag::UpstreamConnectionFailure,
            "remote_connection_failure",
        ),
        UpstreamError::ConnectTimeout => (
            ResponseFlag::UpstreamConnectionFailure,
            "connection_timeout",
        ),
        UpstreamError::Handshake(_) | UpstreamError::Protocol(_) => {
            (ResponseFlag::UpstreamProtocolError, "protocol_error")
        }
        UpstreamError::Reset(_) => (
            ResponseFlag::UpstreamConnectionTermination,
            "connection_termination",
        ),
        // The client's side failed, not the upstream's.
        UpstreamError::RequestBody(_) => (
            ResponseFlag::DownstreamConnectionTermination,
            "connection_termination",
        ),
    }
}

/// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`: the socket error of a failed connect, as Envoy
/// words it (`delayed connect error: Connection refused`).
fn transport_failure(e: &UpstreamError) -> Option<String> {
    if let UpstreamError::Tls(t) = e {
        return Some(format!("TLS_error: {t}"));
    }
    let UpstreamError::ConnectFailure(io) = e else {
        return None;
    };
    let text = io.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    Some(format!("delayed connect error: {text}"))
}
