//! Recording: what the data path tells the stats about one HTTP stream or TCP connection
//! ([`HttpObservation`], [`TcpObservation`]), and how it becomes series, as Istio's stats
//! filter does it at the end of a stream (HTTP) or when the peer is known, periodically and at
//! close (TCP).

use super::attrs::Ctx;
use super::labels::{
    ClusterRef, INTERNED, Label, PeerInputs, Principals, Reporter, destination_service, peer_labels,
};

/// A standard label by index into [`super::labels::STANDARD_LABELS`], with its value.
type Indexed = (usize, Arc<str>);
use super::IstioStats;
use super::peer::WorkloadMetadata;
use super::registry::Key;
use super::settings::{
    Plan, REQUEST_BYTES, REQUEST_DURATION, REQUESTS_TOTAL, RESPONSE_BYTES, TCP_CLOSED, TCP_OPENED,
    TCP_RECEIVED, TCP_SENT,
};
use envoy_types::pb::envoy::config::core::v3::Metadata;
use http::HeaderMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The upstream side of a stream or connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamInfo<'a> {
    /// The cluster, with its Istio service (from its `istio` metadata).
    pub cluster: Option<ClusterRef<'a>>,
    /// The cluster's metadata, for `xds.cluster_metadata` expressions.
    pub cluster_metadata: Option<&'a Metadata>,
    /// The chosen endpoint's `filter_metadata.istio.workload`, decoded: a client reporter's
    /// fallback when the upstream sent no peer metadata.
    pub host_metadata: Option<&'a WorkloadMetadata>,
    /// The chosen endpoint's address.
    pub address: Option<SocketAddr>,
    /// The upstream TLS identities (a client reporter's principals): the upstream's first
    /// URI SAN and ours. Empty over plaintext.
    pub principals: Principals<'a>,
}

/// The downstream connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionInfo<'a> {
    /// The downstream peer address.
    pub source: Option<SocketAddr>,
    /// The local address the connection was accepted on.
    pub destination: Option<SocketAddr>,
    /// TLS SNI.
    pub requested_server_name: Option<&'a str>,
    /// The downstream TLS identities (a server reporter's principals): the peer's first URI
    /// SAN and ours. Empty over plaintext, so `connection_security_policy` is `none` and the
    /// principals `unknown`.
    pub principals: Principals<'a>,
}

/// One finished HTTP stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpObservation<'a> {
    /// The request headers (for `is gRPC` and `request.headers[...]`).
    pub request_headers: Option<&'a HeaderMap>,
    /// The request's `:authority` / Host (the host-header fallback of `destination_service`).
    pub authority: Option<&'a str>,
    /// `:method`.
    pub method: Option<&'a str>,
    /// `:path`.
    pub path: Option<&'a str>,
    /// `:scheme`.
    pub scheme: Option<&'a str>,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2` (`request.protocol`).
    pub protocol: &'a str,
    /// The response status sent downstream; `None` when no response was sent (code `0`).
    pub response_code: Option<u16>,
    /// The response headers sent downstream.
    pub response_headers: Option<&'a HeaderMap>,
    /// The response trailers sent downstream.
    pub response_trailers: Option<&'a HeaderMap>,
    /// Envoy's short response flags (`UH`, `UF,URX`); empty or `-` for none.
    pub response_flags: &'a str,
    /// From the first request byte to the end of the stream.
    pub duration: Option<Duration>,
    /// Request body bytes (`request.size`).
    pub request_body_bytes: u64,
    /// Response body bytes (`response.size`).
    pub response_body_bytes: u64,
    /// Downstream wire bytes (received, sent) including headers: `istio_request_bytes` and
    /// `istio_response_bytes`. `None` leaves both histograms out, as Envoy without a meter.
    pub wire_bytes: Option<(u64, u64)>,
    /// The matched route's name.
    pub route_name: Option<&'a str>,
    /// The upstream side.
    pub upstream: UpstreamInfo<'a>,
    /// The downstream peer from metadata exchange.
    pub downstream_peer: Option<&'a WorkloadMetadata>,
    /// The upstream peer from metadata exchange.
    pub upstream_peer: Option<&'a WorkloadMetadata>,
    /// The downstream connection.
    pub connection: ConnectionInfo<'a>,
}

/// One TCP connection, as known when it reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpObservation<'a> {
    /// The upstream side.
    pub upstream: UpstreamInfo<'a>,
    /// The downstream peer from TCP metadata exchange.
    pub downstream_peer: Option<&'a WorkloadMetadata>,
    /// The upstream peer from TCP metadata exchange.
    pub upstream_peer: Option<&'a WorkloadMetadata>,
    /// The downstream connection.
    pub connection: ConnectionInfo<'a>,
    /// Envoy's short response flags; empty or `-` for none.
    pub response_flags: &'a str,
    /// Bytes sent downstream so far (wire).
    pub sent_bytes: u64,
    /// Bytes received from downstream so far (wire).
    pub received_bytes: u64,
}

/// gRPC per Envoy: `content-type` is `application/grpc`, or starts with `application/grpc+` or
/// `application/grpc;`.
pub fn is_grpc(headers: Option<&HeaderMap>) -> bool {
    let Some(ct) = headers
        .and_then(|h| h.get(http::header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    ct == "application/grpc"
        || ct.starts_with("application/grpc+")
        || ct.starts_with("application/grpc;")
}

/// Envoy's mapping of an HTTP status to a gRPC status when the response carried none.
pub fn http_to_grpc_status(code: u16) -> u64 {
    match code {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

fn grpc_status_of(h: Option<&HeaderMap>) -> Option<u64> {
    let v = h?.get("grpc-status")?.to_str().ok()?;
    if v.is_empty() {
        return None;
    }
    // A value that is not a known status (0..=16) is Envoy's InvalidCode (-1 as unsigned).
    Some(
        v.parse::<u64>()
            .ok()
            .filter(|c| *c <= 16)
            .unwrap_or(u64::MAX),
    )
}

/// The gRPC status: trailers, then headers, then inferred from the HTTP status.
pub(crate) fn grpc_status(obs: &HttpObservation<'_>) -> Option<u64> {
    grpc_status_of(obs.response_trailers)
        .or_else(|| grpc_status_of(obs.response_headers))
        .or_else(|| obs.response_code.map(http_to_grpc_status))
}

/// The standard labels of one stream, each with its standard index, and the expression values.
pub(crate) struct Prepared {
    base: Vec<Indexed>,
    shared: Option<Key>,
    values: Vec<Arc<str>>,
    amounts: Vec<u64>,
}

impl IstioStats {
    fn reporter(&self) -> Reporter {
        self.inner.reporter
    }

    /// The standard labels before `request_protocol`, and `connection_security_policy`.
    fn peer_part(
        &self,
        upstream: &UpstreamInfo<'_>,
        downstream_peer: Option<&WorkloadMetadata>,
        upstream_peer: Option<&WorkloadMetadata>,
        connection: &ConnectionInfo<'_>,
        authority: Option<&str>,
        route_name: Option<&str>,
    ) -> (Vec<Indexed>, Arc<str>) {
        let reporter = self.reporter();
        let peer = match reporter {
            Reporter::ClientSidecar => upstream_peer.or(upstream.host_metadata),
            _ => downstream_peer,
        };
        let service = destination_service(
            authority,
            self.inner.disable_host_header_fallback,
            route_name,
            upstream.cluster,
        );
        let mut labels = Vec::with_capacity(25);
        labels.push((0, self.inner.reporter_label.clone()));
        let inputs = PeerInputs {
            peer,
            upstream_peer,
            service: &service,
            principals: if reporter.is_server() {
                connection.principals
            } else {
                upstream.principals
            },
        };
        let policy = peer_labels(reporter, &self.inner.metrics.local, &inputs, &mut labels);
        (labels, policy)
    }

    fn prepare(&self, base: Vec<Indexed>, ctx: &Ctx<'_>) -> Prepared {
        let exprs = &self.inner.compiled.exprs;
        let mut values = Vec::with_capacity(exprs.len());
        let mut amounts = Vec::with_capacity(exprs.len());
        for e in exprs {
            let printed = e
                .expr
                .as_ref()
                .and_then(|e| e.eval(ctx).ok())
                .map(|v| v.print());
            amounts.push(printed.as_deref().and_then(|p| p.parse().ok()).unwrap_or(0));
            values.push(printed.map_or_else(|| INTERNED.unknown.clone(), Arc::from));
        }
        Prepared {
            base,
            shared: None,
            values,
            amounts,
        }
    }

    /// The key of metric `metric`'s label set, or `None` when the metric is dropped.
    fn key(&self, p: &mut Prepared, metric: usize) -> Option<Key> {
        let plan: &Plan = &self.inner.compiled.plans[metric];
        if plan.drop {
            return None;
        }
        let registry = &self.inner.metrics.registry;
        let limit = &self.inner.metrics;
        if plan.is_identity() {
            if p.shared.is_none() {
                let labels = p
                    .base
                    .iter()
                    .map(|(i, v)| limit.label(*i, v, None))
                    .collect();
                p.shared = Some(registry.key(labels));
            }
            return p.shared.clone();
        }
        let mut out: Vec<Label> = Vec::with_capacity(p.base.len() + plan.additions.len());
        for (i, v) in &p.base {
            match plan.overrides.get(i) {
                Some(None) => {}
                Some(Some(e)) => out.push(limit.label(*i, &p.values[*e], None)),
                None => out.push(limit.label(*i, v, None)),
            }
        }
        for (name, e) in &plan.additions {
            out.push(limit.label(usize::MAX, &p.values[*e], Some(name)));
        }
        Some(registry.key(out.into()))
    }

    fn record_custom(&self, p: &Prepared) {
        let m = &self.inner.metrics;
        for c in &self.inner.compiled.custom {
            let labels: Arc<[Label]> = c
                .additions
                .iter()
                .map(|(name, e)| m.label(usize::MAX, &p.values[*e], Some(name)))
                .collect();
            let key = m.registry.key(labels);
            let amount = p.amounts[c.value];
            match &c.family.kind {
                super::registry::Kind::Counter => m.registry.add(&c.family, &key, amount),
                super::registry::Kind::Gauge => m.registry.set(&c.family, &key, amount),
                super::registry::Kind::Histogram(_) => m.registry.record(&c.family, &key, amount),
            }
        }
    }

    /// Record one finished HTTP stream: `istio_requests_total`,
    /// `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`
    /// and the custom metrics.
    pub fn record_http(&self, obs: &HttpObservation<'_>) {
        let i = &*INTERNED;
        let (mut labels, policy) = self.peer_part(
            &obs.upstream,
            obs.downstream_peer,
            obs.upstream_peer,
            &obs.connection,
            obs.authority,
            obs.route_name,
        );
        let grpc = is_grpc(obs.request_headers);
        let status = grpc.then(|| grpc_status(obs)).flatten();
        labels.push((20, if grpc { &i.grpc } else { &i.http }.clone()));
        let code = obs.response_code.unwrap_or(0).to_string();
        labels.push((21, code.into()));
        let status_text = status.map_or_else(|| i.empty.clone(), |s| s.to_string().into());
        labels.push((22, status_text));
        labels.push((23, flags(obs.response_flags)));
        labels.push((24, policy));
        let ctx = Ctx {
            node: &self.inner.metrics.node,
            http: Some(obs),
            upstream: &obs.upstream,
            connection: &obs.connection,
            downstream_peer: obs.downstream_peer,
            upstream_peer: obs.upstream_peer,
            route_name: obs.route_name,
            listener_direction: self.inner.listener_direction,
            grpc_status: status,
        };
        let mut p = self.prepare(labels, &ctx);
        let reg = &self.inner.metrics.registry;
        let fam = &self.inner.families;
        if let Some(k) = self.key(&mut p, REQUESTS_TOTAL) {
            reg.add(&fam[REQUESTS_TOTAL], &k, 1);
        }
        if let Some(d) = obs.duration
            && let Some(k) = self.key(&mut p, REQUEST_DURATION)
        {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            reg.record(&fam[REQUEST_DURATION], &k, ms);
        }
        if let Some((received, sent)) = obs.wire_bytes {
            if let Some(k) = self.key(&mut p, REQUEST_BYTES) {
                reg.record(&fam[REQUEST_BYTES], &k, received);
            }
            if let Some(k) = self.key(&mut p, RESPONSE_BYTES) {
                reg.record(&fam[RESPONSE_BYTES], &k, sent);
            }
        }
        self.record_custom(&p);
    }

    /// The recorder of one TCP connection.
    pub fn tcp_connection(&self) -> TcpConnection {
        TcpConnection {
            stats: self.clone(),
            state: None,
            sent: 0,
            received: 0,
        }
    }

    /// `tcp_reporting_duration`: how often an open connection reports its bytes.
    pub fn tcp_reporting_duration(&self) -> Duration {
        self.inner.tcp_reporting_duration
    }
}

fn flags(f: &str) -> Arc<str> {
    if f.is_empty() { "-".into() } else { f.into() }
}

/// The Istio TCP metrics of one connection. Istio reports a connection once its peer is known
/// (TCP metadata exchange done or given up), then every `tcp_reporting_duration`, and at
/// close; without metadata exchange only at close. Call [`TcpConnection::report`] at those
/// moments and [`TcpConnection::close`] at the end: the first report counts
/// `istio_tcp_connections_opened_total` and fixes the labels; each report adds the bytes since
/// the previous one.
#[derive(Debug)]
pub struct TcpConnection {
    stats: IstioStats,
    state: Option<TcpState>,
    sent: u64,
    received: u64,
}

#[derive(Debug)]
struct TcpState {
    prepared: Prepared,
    keys: [Option<Key>; 4],
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("base", &self.base)
            .finish()
    }
}

impl TcpConnection {
    /// Report: on the first call compute the labels and count the connection opened; then add
    /// the bytes sent and received since the previous report.
    pub fn report(&mut self, obs: &TcpObservation<'_>) {
        let s = &self.stats;
        let reg = &s.inner.metrics.registry;
        let fam = &s.inner.families;
        if self.state.is_none() {
            let (mut labels, policy) = s.peer_part(
                &obs.upstream,
                obs.downstream_peer,
                obs.upstream_peer,
                &obs.connection,
                None,
                None,
            );
            let i = &*INTERNED;
            labels.push((20, i.tcp.clone()));
            labels.push((23, flags(obs.response_flags)));
            labels.push((24, policy));
            let ctx = Ctx {
                node: &s.inner.metrics.node,
                http: None,
                upstream: &obs.upstream,
                connection: &obs.connection,
                downstream_peer: obs.downstream_peer,
                upstream_peer: obs.upstream_peer,
                route_name: None,
                listener_direction: s.inner.listener_direction,
                grpc_status: None,
            };
            let mut prepared = s.prepare(labels, &ctx);
            let keys =
                [TCP_OPENED, TCP_CLOSED, TCP_SENT, TCP_RECEIVED].map(|m| s.key(&mut prepared, m));
            if let Some(k) = &keys[0] {
                reg.add(&fam[TCP_OPENED], k, 1);
            }
            self.state = Some(TcpState { prepared, keys });
        }
        let Some(state) = &self.state else { return };
        let sent = obs.sent_bytes.saturating_sub(self.sent);
        let received = obs.received_bytes.saturating_sub(self.received);
        self.sent = self.sent.max(obs.sent_bytes);
        self.received = self.received.max(obs.received_bytes);
        if let Some(k) = &state.keys[2] {
            reg.add(&fam[TCP_SENT], k, sent);
        }
        if let Some(k) = &state.keys[3] {
            reg.add(&fam[TCP_RECEIVED], k, received);
        }
    }

    /// The connection ended: a last report, `istio_tcp_connections_closed_total` and the custom
    /// metrics.
    pub fn close(mut self, obs: &TcpObservation<'_>) {
        self.report(obs);
        let Some(state) = &self.state else { return };
        let s = &self.stats;
        if let Some(k) = &state.keys[1] {
            s.inner
                .metrics
                .registry
                .add(&s.inner.families[TCP_CLOSED], k, 1);
        }
        s.record_custom(&state.prepared);
    }
}
