//! Tracing as it shows on the wire, for the HTTP connection manager's `tracing`: the sampling
//! decision packed into `x-request-id` (Envoy's UUID request id extension), and the trace
//! context headers a tracer propagates upstream. tern exports no spans: a configured tracer is
//! counted as `tern.config.not_enforced.<tracer>`, but its headers are what Envoy's tracer
//! would send, so traces stay connected across tern and Envoy hops.
//!
//! - Zipkin: B3 (`x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, or the
//!   single `b3` header when the request came with one). Outbound (egress) streams are a new
//!   child span; inbound (ingress) streams share the client's span (`shared_span_context`,
//!   default true). Without incoming context a new root span starts.
//! - OpenTelemetry: W3C `traceparent` with the same trace id and a new span id; `tracestate`
//!   passed on.
//! - Other headers (W3C headers under Zipkin, B3 under OpenTelemetry) pass through untouched.
//!
//! Depends on `config` and `stream_info`.

mod propagate;

#[cfg(test)]
mod tests;

use crate::config::{ConfigError, Within, typed_config};
use crate::stats::Store;
use crate::stream_info::TrafficDirection;
use envoy_types::pb::envoy::config::trace::v3 as trace_pb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use envoy_types::pb::envoy::extensions::request_id::uuid::v3::UuidRequestIdConfig;
use envoy_types::pb::envoy::r#type::v3 as type_pb;
use http::{HeaderMap, HeaderValue};
use prost::Name;

/// The tracer whose headers tern propagates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// No tracer (Istio's default without a tracing provider): only the sampling decision in
    /// `x-request-id`.
    None,
    /// `envoy.tracers.zipkin`: B3 headers.
    Zipkin {
        /// `trace_id_128bit`: new traces get 128-bit ids.
        trace_id_128bit: bool,
        /// `shared_span_context` (default true): inbound streams share the client's span.
        shared_span_context: bool,
    },
    /// `envoy.tracers.opentelemetry`: W3C `traceparent`.
    OpenTelemetry,
    /// A tracer whose headers tern does not write (Datadog, SkyWalking, ...).
    Unsupported,
}

/// A sampling percentage as a fraction of 10,000 (Envoy turns `Percent` into that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampling(u64);

impl Sampling {
    fn from_percent(p: Option<&type_pb::Percent>) -> Sampling {
        let v = p.map_or(100.0, |p| p.value);
        let v = if v.is_finite() {
            v.clamp(0.0, 100.0)
        } else {
            100.0
        };
        Sampling((v * 100.0).round() as u64)
    }

    /// Whether `value` (0..10,000) falls in the sample.
    fn admits(self, value: u64) -> bool {
        value % 10_000 < self.0
    }
}

/// Compiled `HttpConnectionManager.tracing` (and `request_id_extension`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// `client_sampling` (requests with `x-client-trace-id`).
    pub client_sampling: Sampling,
    /// `random_sampling`.
    pub random_sampling: Sampling,
    /// `overall_sampling`.
    pub overall_sampling: Sampling,
    /// The tracer.
    pub provider: Provider,
    /// `UuidRequestIdConfig.pack_trace_reason` (default true).
    pub pack_trace_reason: bool,
    /// `UuidRequestIdConfig.use_request_id_for_trace_sampling` (default true).
    pub use_request_id_for_sampling: bool,
}

/// `request_id_extension`: the UUID extension's two switches.
pub fn request_id_options(
    ext: Option<&hcm_pb::RequestIdExtension>,
) -> Result<(bool, bool), ConfigError> {
    let Some(any) = ext.and_then(|e| e.typed_config.as_ref()) else {
        return Ok((true, true));
    };
    let tc = typed_config(any).within("request_id_extension.typed_config")?;
    if tc.type_url() != UuidRequestIdConfig::type_url() {
        return Err(ConfigError::new(
            "request_id_extension.typed_config",
            format!("unsupported request id extension {}", tc.type_url()),
        ));
    }
    let c: UuidRequestIdConfig = tc.decode()?;
    Ok((
        crate::config::bool_or(c.pack_trace_reason.as_ref(), true),
        crate::config::bool_or(c.use_request_id_for_trace_sampling.as_ref(), true),
    ))
}

impl TracingConfig {
    /// Compile `tracing` with the `request_id_extension` options. A tracer is counted as not
    /// enforced (tern exports no spans).
    pub fn compile(
        t: &hcm_pb::http_connection_manager::Tracing,
        request_id: (bool, bool),
        store: &Store,
    ) -> Result<TracingConfig, ConfigError> {
        use trace_pb::tracing::http::ConfigType;
        let provider = match &t.provider {
            None => Provider::None,
            Some(p) => {
                let Some(ConfigType::TypedConfig(any)) = &p.config_type else {
                    return Err(ConfigError::new(
                        "provider.typed_config",
                        format!("tracer {}: typed_config is required", p.name),
                    ));
                };
                let tc = typed_config(any).within("provider.typed_config")?;
                let url = tc.type_url();
                if url == trace_pb::ZipkinConfig::type_url() {
                    let z: trace_pb::ZipkinConfig = tc.decode().within("provider.typed_config")?;
                    store.not_enforced(
                        "envoy.tracers.zipkin",
                        "span export to the Zipkin collector (B3 headers are propagated)",
                    );
                    Provider::Zipkin {
                        trace_id_128bit: z.trace_id_128bit,
                        shared_span_context: crate::config::bool_or(
                            z.shared_span_context.as_ref(),
                            true,
                        ),
                    }
                } else if url == trace_pb::OpenTelemetryConfig::type_url() {
                    let _: trace_pb::OpenTelemetryConfig =
                        tc.decode().within("provider.typed_config")?;
                    store.not_enforced(
                        "envoy.tracers.opentelemetry",
                        "span export to the OpenTelemetry collector (traceparent is propagated)",
                    );
                    Provider::OpenTelemetry
                } else {
                    store.not_enforced(
                        &format!("tracer.{}", p.name),
                        "this tracer: no spans, and its own headers are not written",
                    );
                    Provider::Unsupported
                }
            }
        };
        Ok(TracingConfig {
            client_sampling: Sampling::from_percent(t.client_sampling.as_ref()),
            random_sampling: Sampling::from_percent(t.random_sampling.as_ref()),
            overall_sampling: Sampling::from_percent(t.overall_sampling.as_ref()),
            provider,
            pack_trace_reason: request_id.0,
            use_request_id_for_sampling: request_id.1,
        })
    }
}

/// Why a request is traced (Envoy's `Tracing::Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not traced.
    NotTraceable,
    /// Sampled by `random_sampling`.
    Sampling,
    /// Forced by `x-envoy-force-trace`.
    ServiceForced,
    /// Forced by the client (`x-client-trace-id`).
    ClientForced,
}

/// Where the reason sits in a UUID request id, and how it is written.
const TRACE_BYTE: usize = 14;

fn reason_in(id: &[u8]) -> Reason {
    if id.len() != 36 {
        return Reason::NotTraceable;
    }
    match id[TRACE_BYTE] {
        b'a' => Reason::ServiceForced,
        b'9' => Reason::Sampling,
        b'b' => Reason::ClientForced,
        _ => Reason::NotTraceable,
    }
}

fn set_reason(headers: &mut HeaderMap, reason: Reason, pack: bool) {
    if !pack {
        return;
    }
    let Some(v) = headers.get("x-request-id") else {
        return;
    };
    let mut id = v.as_bytes().to_vec();
    if id.len() != 36 {
        return;
    }
    id[TRACE_BYTE] = match reason {
        Reason::ServiceForced => b'a',
        Reason::Sampling => b'9',
        Reason::ClientForced => b'b',
        Reason::NotTraceable => b'4',
    };
    if let Ok(v) = HeaderValue::from_bytes(&id) {
        headers.insert(crate::protocol::headers::names::X_REQUEST_ID, v);
    }
}

/// What tracing decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The reason (and whether the request is traced at all).
    pub reason: Reason,
    /// `x-envoy-force-trace` applied: Envoy echoes `x-request-id` in the response.
    pub forced: bool,
    /// The trace id propagated upstream (`%TRACE_ID%`).
    pub trace_id: Option<String>,
}

impl Decision {
    /// Whether the request is traced.
    pub fn traced(&self) -> bool {
        self.reason != Reason::NotTraceable
    }
}

/// Envoy's `mutateTracingRequestHeader`: decide whether the request is traced from its request
/// id (and `x-client-trace-id`, `x-envoy-force-trace` on internal requests), and pack the
/// reason into `x-request-id`.
pub fn sample(cfg: &TracingConfig, headers: &mut HeaderMap, internal: bool) -> Reason {
    if !cfg.use_request_id_for_sampling {
        return Reason::Sampling;
    }
    let Some(value) = headers
        .get("x-request-id")
        .and_then(|v| crate::stream_info::request_id_integer(v.as_bytes()))
    else {
        return Reason::NotTraceable;
    };
    let result = value % 10_000;
    let id_reason = headers
        .get("x-request-id")
        .map_or(Reason::NotTraceable, |v| reason_in(v.as_bytes()));
    let mut reason = id_reason;
    if reason == Reason::NotTraceable {
        if headers.contains_key("x-client-trace-id")
            && cfg.client_sampling.admits(rand::random::<u64>() % 10_000)
        {
            reason = Reason::ClientForced;
        } else if internal && headers.contains_key("x-envoy-force-trace") {
            reason = Reason::ServiceForced;
        } else if cfg.random_sampling.admits(result) {
            reason = Reason::Sampling;
        }
        if reason != Reason::NotTraceable {
            set_reason(headers, reason, cfg.pack_trace_reason);
        }
    }
    if reason != Reason::NotTraceable && !cfg.overall_sampling.admits(result) {
        reason = Reason::NotTraceable;
        set_reason(headers, reason, cfg.pack_trace_reason);
    }
    reason
}

/// The whole tracing step for a request about to be routed: the sampling decision, then the
/// tracer's headers for the upstream request.
pub fn apply(
    cfg: &TracingConfig,
    headers: &mut HeaderMap,
    internal: bool,
    direction: TrafficDirection,
) -> Decision {
    let reason = sample(cfg, headers, internal);
    let traced = reason != Reason::NotTraceable;
    let trace_id = match cfg.provider {
        Provider::Zipkin {
            trace_id_128bit,
            shared_span_context,
        } => {
            // Outbound listeners are Envoy's egress operation; everything else is ingress.
            let egress = direction == TrafficDirection::Outbound;
            let shared = shared_span_context && !egress;
            propagate::zipkin(headers, traced, trace_id_128bit, shared)
        }
        Provider::OpenTelemetry => propagate::w3c(headers, traced),
        Provider::None | Provider::Unsupported => None,
    };
    Decision {
        reason,
        forced: internal && headers.contains_key("x-envoy-force-trace"),
        trace_id,
    }
}
