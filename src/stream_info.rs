//! What tern knows about one stream (an HTTP request, a TCP connection) when it ends, as
//! Envoy's `StreamInfo`: addresses, protocol, request and response heads, the route and
//! upstream chosen, response code and details, response flags, byte counts and timings.
//!
//! The proxy fills a record in and hands it to the stream's observers (access loggers, Istio's
//! standard metrics) when the stream really ends. Nothing is recorded when nobody observes,
//! and an observer says up front which parts it needs ([`Needs`]), so headers are copied only
//! for observers that read them. A leaf module: it depends on `http` (and `rand`) only.

mod flags;

pub use flags::{ResponseFlag, ResponseFlags};

use crate::stats::istio::{IstioCluster, WorkloadMetadata};
use http::HeaderMap;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The downstream protocol of a stream (`%PROTOCOL%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
    /// `HTTP/2`.
    Http2,
}

impl Protocol {
    /// The name Envoy prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }

    /// From the request's version.
    pub fn from_version(v: http::Version) -> Protocol {
        if v == http::Version::HTTP_2 {
            Protocol::Http2
        } else if v == http::Version::HTTP_10 || v == http::Version::HTTP_09 {
            Protocol::Http10
        } else {
            Protocol::Http11
        }
    }
}

/// `Listener.traffic_direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficDirection {
    /// `UNSPECIFIED`.
    #[default]
    Unspecified,
    /// `INBOUND`: traffic to the local workload.
    Inbound,
    /// `OUTBOUND`: traffic from the local workload.
    Outbound,
}

/// Which record wrote a log line (`%ACCESS_LOG_TYPE%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogType {
    /// Envoy's `NotSet` (listener logs).
    #[default]
    NotSet,
    /// `DownstreamEnd`: an HTTP stream ended.
    DownstreamEnd,
    /// `TcpConnectionEnd`: a tcp_proxy connection ended.
    TcpConnectionEnd,
    /// `TcpPeriodic`: a tcp_proxy connection is still open (`access_log_flush_interval`).
    TcpPeriodic,
}

impl LogType {
    /// The name Envoy prints.
    pub fn as_str(self) -> &'static str {
        match self {
            LogType::NotSet => "NotSet",
            LogType::DownstreamEnd => "DownstreamEnd",
            LogType::TcpConnectionEnd => "TcpConnectionEnd",
            LogType::TcpPeriodic => "TcpPeriodic",
        }
    }
}

/// Times within a stream, measured from its start (Envoy's `%REQUEST_DURATION%` and
/// friends). `None`: the stream never got there.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// The last byte of the request arrived from downstream (`%REQUEST_DURATION%`).
    pub last_downstream_rx: Option<Duration>,
    /// The request was handed to the upstream (`%REQUEST_TX_DURATION%`).
    pub last_upstream_tx: Option<Duration>,
    /// The upstream's response headers arrived (`%RESPONSE_DURATION%`).
    pub first_upstream_rx: Option<Duration>,
    /// The last byte of the response went to downstream (`%DURATION%` when set).
    pub last_downstream_tx: Option<Duration>,
}

/// One stream, as observers see it when it ends.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Wall-clock start (`%START_TIME%`).
    pub start_time: SystemTime,
    /// Monotonic start: durations are measured from here.
    pub start: Instant,
    /// How long the stream lasted (`%DURATION%`), set when it ends.
    pub duration: Option<Duration>,
    /// Which record this is (`%ACCESS_LOG_TYPE%`).
    pub log_type: LogType,
    /// The downstream connection's id (`%CONNECTION_ID%`).
    pub connection_id: u64,
    /// The listener that accepted the connection.
    pub listener_name: Arc<str>,
    /// The listener's `traffic_direction`.
    pub direction: TrafficDirection,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    pub downstream_local: Option<SocketAddr>,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    pub downstream_remote: Option<SocketAddr>,
    /// `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`: the peer of the connection.
    pub downstream_direct_remote: Option<SocketAddr>,
    /// `%REQUESTED_SERVER_NAME%` (SNI; none until tern terminates TLS).
    pub requested_server_name: Option<String>,
    /// The downstream TLS session (`%DOWNSTREAM_PEER_URI_SAN%`...).
    pub downstream_tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
    /// The upstream TLS session (`%UPSTREAM_PEER_URI_SAN%`...).
    pub upstream_tls: Option<std::sync::Arc<crate::tls::TlsInfo>>,
    /// The downstream protocol (none for TCP).
    pub protocol: Option<Protocol>,
    /// `:method`.
    pub method: Option<http::Method>,
    /// `:path` (as sent upstream, after rewrites).
    pub path: Option<String>,
    /// `:authority`.
    pub authority: Option<String>,
    /// `:scheme`.
    pub scheme: Option<&'static str>,
    /// The request headers (when an observer needs them).
    pub request_headers: Option<HeaderMap>,
    /// The response headers (when an observer needs them).
    pub response_headers: Option<HeaderMap>,
    /// The response trailers (when an observer needs them and there were any).
    pub response_trailers: Option<HeaderMap>,
    /// The gRPC status (`grpc-status` of the trailers or headers, or the HTTP status mapped
    /// as Envoy does) when the response is gRPC.
    pub grpc_status: Option<u32>,
    /// `%ROUTE_NAME%`.
    pub route_name: Option<String>,
    /// `%UPSTREAM_CLUSTER_RAW%`: the cluster's name.
    pub upstream_cluster: Option<Arc<str>>,
    /// `%UPSTREAM_CLUSTER%`: the cluster's `alt_stat_name`, else its name.
    pub upstream_cluster_observability: Option<String>,
    /// `%UPSTREAM_HOST%`: the chosen host's address.
    pub upstream_host: Option<String>,
    /// `%UPSTREAM_HOST_NAME%`: the host's `hostname`, else its address.
    pub upstream_host_name: Option<String>,
    /// `%UPSTREAM_LOCAL_ADDRESS%`.
    pub upstream_local: Option<SocketAddr>,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    pub upstream_transport_failure_reason: Option<String>,
    /// `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`.
    pub attempt_count: u32,
    /// `%RESPONSE_CODE%` (none: no response was sent).
    pub response_code: Option<u16>,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub response_code_details: Option<Cow<'static, str>>,
    /// `%CONNECTION_TERMINATION_DETAILS%`.
    pub connection_termination_details: Option<Cow<'static, str>>,
    /// `%RESPONSE_FLAGS%`.
    pub response_flags: ResponseFlags,
    /// `%BYTES_RECEIVED%`: request body bytes (HTTP) or bytes from downstream (TCP).
    pub bytes_received: u64,
    /// `%BYTES_SENT%`: response body bytes (HTTP) or bytes to downstream (TCP).
    pub bytes_sent: u64,
    /// Times within the stream.
    pub timing: Timing,
    /// `%TRACE_ID%`: the trace id tern propagated, when tracing is configured.
    pub trace_id: Option<String>,
    /// The tracing decision: the stream is traced (`traceable_filter`).
    pub traced: bool,
    /// What Istio's metrics read beyond Envoy's fields.
    pub istio: IstioInfo,
}

/// What Istio's metrics and metadata exchange learn about a stream or connection.
#[derive(Debug, Clone, Default)]
pub struct IstioInfo {
    /// The downstream peer, from metadata exchange.
    pub downstream_peer: Option<Arc<WorkloadMetadata>>,
    /// The upstream peer, from metadata exchange.
    pub upstream_peer: Option<Arc<WorkloadMetadata>>,
    /// The upstream cluster's `istio` metadata.
    pub cluster: Option<Arc<IstioCluster>>,
    /// The chosen endpoint's `istio.workload` metadata.
    pub upstream_workload: Option<Arc<WorkloadMetadata>>,
    /// The chosen endpoint's address (TCP).
    pub upstream_address: Option<SocketAddr>,
}

impl StreamInfo {
    /// A record that starts now, with nothing else known yet.
    pub fn new(log_type: LogType, connection_id: u64, listener_name: Arc<str>) -> StreamInfo {
        Self::starting_at(
            log_type,
            connection_id,
            listener_name,
            Instant::now(),
            SystemTime::now(),
        )
    }

    /// A record of a stream that started at `start` (`start_time` on the wall clock).
    pub fn starting_at(
        log_type: LogType,
        connection_id: u64,
        listener_name: Arc<str>,
        start: Instant,
        start_time: SystemTime,
    ) -> StreamInfo {
        StreamInfo {
            start_time,
            start,
            duration: None,
            log_type,
            connection_id,
            listener_name,
            direction: TrafficDirection::Unspecified,
            downstream_local: None,
            downstream_remote: None,
            downstream_direct_remote: None,
            requested_server_name: None,
            downstream_tls: None,
            upstream_tls: None,
            protocol: None,
            method: None,
            path: None,
            authority: None,
            scheme: None,
            request_headers: None,
            response_headers: None,
            response_trailers: None,
            grpc_status: None,
            route_name: None,
            upstream_cluster: None,
            upstream_cluster_observability: None,
            upstream_host: None,
            upstream_host_name: None,
            upstream_local: None,
            upstream_transport_failure_reason: None,
            attempt_count: 0,
            response_code: None,
            response_code_details: None,
            connection_termination_details: None,
            response_flags: ResponseFlags::default(),
            bytes_received: 0,
            bytes_sent: 0,
            timing: Timing::default(),
            trace_id: None,
            traced: false,
            istio: IstioInfo::default(),
        }
    }

    /// Time since the start of the stream.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The stream's duration: as recorded at its end, else up to now.
    pub fn duration_or_now(&self) -> Duration {
        self.duration.unwrap_or_else(|| self.elapsed())
    }

    /// A request header, if request headers were recorded.
    pub fn request_header(&self, name: &str) -> Option<&http::HeaderValue> {
        self.request_headers.as_ref().and_then(|h| h.get(name))
    }
}

/// What an observer reads beyond the record's fixed fields; headers are copied into the
/// record only when some observer needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The request headers.
    pub request_headers: bool,
    /// The response headers.
    pub response_headers: bool,
    /// The response trailers.
    pub response_trailers: bool,
}

impl Needs {
    /// Everything either needs.
    pub fn union(self, o: Needs) -> Needs {
        Needs {
            request_headers: self.request_headers || o.request_headers,
            response_headers: self.response_headers || o.response_headers,
            response_trailers: self.response_trailers || o.response_trailers,
        }
    }
}

/// Something that wants to know about every stream that ends: an access log, Istio's standard
/// metrics. Called on the data path, from the task that ends the stream: it must not block.
pub trait StreamObserver: Send + Sync + std::fmt::Debug {
    /// What this observer reads besides the record's fixed fields.
    fn needs(&self) -> Needs;
    /// The stream ended.
    fn on_stream_end(&self, info: &StreamInfo);
}

/// The observers of a connection manager, tcp_proxy or listener. Cheap to clone; empty when
/// nobody observes, in which case the proxy records nothing.
#[derive(Debug, Clone, Default)]
pub struct Observers {
    /// Shared, so that a stream's record holds the list for the cost of a reference count.
    list: Arc<Vec<Arc<dyn StreamObserver>>>,
    needs: Needs,
}

impl Observers {
    /// No observer.
    pub fn new() -> Observers {
        Observers::default()
    }

    /// Add an observer.
    pub fn push(&mut self, o: Arc<dyn StreamObserver>) {
        self.needs = self.needs.union(o.needs());
        Arc::make_mut(&mut self.list).push(o);
    }

    /// Whether nobody observes.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many observe.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// What the observers need, together.
    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// Tell every observer that the stream ended.
    pub fn notify(&self, info: &StreamInfo) {
        for o in self.list.iter() {
            o.on_stream_end(info);
        }
    }
}

/// The size of a header map as Envoy counts it (`byteSize()`: names and values, no
/// separators): the header part of `%REQUEST_HEADERS_BYTES%` and `request.total_size`.
pub fn header_bytes(h: &HeaderMap) -> u64 {
    h.iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum()
}

/// The gRPC status Envoy maps an HTTP status to (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_for_http(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// Whether a `content-type` is gRPC as Envoy sees it (`application/grpc`, `application/grpc+…`,
/// not `application/grpc-web`).
pub fn is_grpc_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct == "application/grpc"
                || ct.starts_with("application/grpc+")
                || ct.starts_with("application/grpc;")
        })
}

/// The `grpc-status` value of a header map.
pub fn grpc_status_of(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The first eight hex digits of a UUID request id as a number: what Envoy's UUID request id
/// extension samples traces and access logs by.
pub fn request_id_integer(id: &[u8]) -> Option<u64> {
    let head = std::str::from_utf8(id.get(..8)?).ok()?;
    u64::from_str_radix(head, 16).ok()
}

/// A random version-4 UUID in its 36-character text form, as Envoy generates `x-request-id`
/// (and `%UNIQUE_ID%`).
pub fn uuid4() -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v: u128 = rand::random();
    let v = (v & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let mut out = [b'-'; 36];
    // Two hex digits per byte, the dashes (already in place) skipped over.
    let mut at = 0;
    for (i, byte) in v.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<Option<u16>>>, Needs);

    impl StreamObserver for Seen {
        fn needs(&self) -> Needs {
            self.1
        }
        fn on_stream_end(&self, info: &StreamInfo) {
            self.0.lock().unwrap().push(info.response_code);
        }
    }

    #[test]
    fn observers_combine_needs_and_are_all_told() {
        let a = Arc::new(Seen(
            Mutex::default(),
            Needs {
                request_headers: true,
                ..Needs::default()
            },
        ));
        let b = Arc::new(Seen(
            Mutex::default(),
            Needs {
                response_trailers: true,
                ..Needs::default()
            },
        ));
        let mut obs = Observers::new();
        assert!(obs.is_empty());
        obs.push(a.clone());
        obs.push(b.clone());
        assert_eq!(
            obs.needs(),
            Needs {
                request_headers: true,
                response_headers: false,
                response_trailers: true
            }
        );
        let mut info = StreamInfo::new(LogType::DownstreamEnd, 1, "l".into());
        info.response_code = Some(204);
        obs.notify(&info);
        assert_eq!(*a.0.lock().unwrap(), [Some(204)]);
        assert_eq!(*b.0.lock().unwrap(), [Some(204)]);
    }

    #[test]
    fn grpc_helpers() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc_content_type(&h));
        h.insert("content-type", "application/grpc+proto".parse().unwrap());
        assert!(is_grpc_content_type(&h));
        h.insert("content-type", "application/grpc-web".parse().unwrap());
        assert!(!is_grpc_content_type(&h));
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(grpc_status_of(&h), Some(14));
        assert_eq!(grpc_status_for_http(503), 14);
        assert_eq!(
            Protocol::from_version(http::Version::HTTP_2).as_str(),
            "HTTP/2"
        );
    }
}
