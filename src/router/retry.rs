//! `envoy.config.route.v3.RetryPolicy`: when a failed attempt may be retried and how long to
//! wait. The retry loop itself (budgets, `x-envoy-retry-on` request headers, counting) belongs to
//! the proxy.

use super::matcher::HeaderMatch;
use crate::config::{ConfigError, Within, duration, timeout_or_disabled, u32_or};
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use http::{HeaderMap, StatusCode};
use std::time::Duration;

/// `RetryPolicy.retry_on`: a set of retry conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`.
    pub const FIVE_XX: RetryOn = RetryOn(1);
    /// `gateway-error`: 502, 503, 504.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// `reset`.
    pub const RESET: RetryOn = RetryOn(1 << 2);
    /// `connect-failure`.
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 4);
    /// `refused-stream`.
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 5);
    /// `retriable-status-codes`.
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    /// `retriable-headers`.
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 7);
    /// `http3-post-connect-failure`.
    pub const HTTP3_POST_CONNECT_FAILURE: RetryOn = RetryOn(1 << 8);
    /// `envoy-ratelimited`.
    pub const ENVOY_RATE_LIMITED: RetryOn = RetryOn(1 << 9);
    /// `reset-before-request`.
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 10);
    /// gRPC `cancelled` (status 1).
    pub const CANCELLED: RetryOn = RetryOn(1 << 16);
    /// gRPC `deadline-exceeded` (status 4).
    pub const DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 17);
    /// gRPC `internal` (status 13).
    pub const INTERNAL: RetryOn = RetryOn(1 << 18);
    /// gRPC `resource-exhausted` (status 8).
    pub const RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 19);
    /// gRPC `unavailable` (status 14).
    pub const UNAVAILABLE: RetryOn = RetryOn(1 << 20);

    const NAMES: &[(&'static str, RetryOn)] = &[
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("retriable-headers", Self::RETRIABLE_HEADERS),
        (
            "http3-post-connect-failure",
            Self::HTTP3_POST_CONNECT_FAILURE,
        ),
        ("envoy-ratelimited", Self::ENVOY_RATE_LIMITED),
        ("reset-before-request", Self::RESET_BEFORE_REQUEST),
        ("cancelled", Self::CANCELLED),
        ("deadline-exceeded", Self::DEADLINE_EXCEEDED),
        ("internal", Self::INTERNAL),
        ("resource-exhausted", Self::RESOURCE_EXHAUSTED),
        ("unavailable", Self::UNAVAILABLE),
    ];

    /// Parse a comma-separated list (whitespace around names allowed). Like Envoy's route
    /// configuration, unknown names are ignored; they are returned so a caller may log them.
    pub fn parse(s: &str) -> (RetryOn, Vec<&str>) {
        let mut on = RetryOn(0);
        let mut unknown = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match Self::NAMES.iter().find(|(n, _)| *n == name) {
                Some((_, f)) => on.0 |= f.0,
                None => unknown.push(name),
            }
        }
        (on, unknown)
    }

    /// All of `other`'s conditions are set.
    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Any of `other`'s conditions is set.
    pub fn intersects(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = RetryOn;
    fn bitor(self, rhs: RetryOn) -> RetryOn {
        RetryOn(self.0 | rhs.0)
    }
}

/// Why an upstream attempt failed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The connection could not be established (refused, timed out, TLS failure).
    ConnectFailure,
    /// HTTP/2 `REFUSED_STREAM`.
    RefusedStream,
    /// Any other reset or disconnect.
    Reset,
    /// A local resource limit (circuit breaker): never retried.
    Overflow,
}

/// A compiled `envoy.config.route.v3.RetryPolicy`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// `retry_on`.
    pub retry_on: RetryOn,
    /// `num_retries` (default 1).
    pub num_retries: u32,
    /// `per_try_timeout` (0 or absent: none).
    pub per_try_timeout: Option<Duration>,
    /// `per_try_idle_timeout` (0 or absent: none).
    pub per_try_idle_timeout: Option<Duration>,
    /// `retriable_status_codes`.
    pub retriable_status_codes: Vec<u16>,
    /// `retry_back_off.base_interval` (default 25ms).
    pub base_interval: Duration,
    /// `retry_back_off.max_interval` (default 10 × base).
    pub max_interval: Duration,
    /// `host_selection_retry_max_attempts`.
    pub host_selection_retry_max_attempts: i64,
    /// `retry_host_predicate` contains `envoy.retry_host_predicates.previous_hosts`.
    pub retry_other_hosts: bool,
    /// Names of all `retry_host_predicate`s (by name, or type URL when unnamed).
    pub retry_host_predicates: Vec<String>,
    /// `retry_priority.name`, if any (e.g. `envoy.retry_priorities.previous_priorities`).
    pub retry_priority: Option<String>,
    /// `retriable_headers`.
    pub retriable_headers: Vec<HeaderMatch>,
    /// `retriable_request_headers`.
    pub retriable_request_headers: Vec<HeaderMatch>,
}

/// Retry policies compiled while one route table compiles, by their encoded proto: routes
/// with the same policy (Istio gives every route the mesh's default) share one.
#[derive(Debug, Default)]
pub(crate) struct RetryCache(std::collections::HashMap<Vec<u8>, std::sync::Arc<RetryPolicy>>);

impl RetryCache {
    /// The compiled `p`, shared with earlier routes that had the same policy.
    pub(crate) fn compile(
        &mut self,
        p: &route_pb::RetryPolicy,
    ) -> Result<std::sync::Arc<RetryPolicy>, ConfigError> {
        use prost::Message;
        let key = p.encode_to_vec();
        if let Some(shared) = self.0.get(&key) {
            return Ok(shared.clone());
        }
        let compiled = std::sync::Arc::new(RetryPolicy::compile(p)?);
        self.0.insert(key, compiled.clone());
        Ok(compiled)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let base = Duration::from_millis(25);
        RetryPolicy {
            retry_on: RetryOn(0),
            num_retries: 1,
            per_try_timeout: None,
            per_try_idle_timeout: None,
            retriable_status_codes: Vec::new(),
            base_interval: base,
            max_interval: base * 10,
            host_selection_retry_max_attempts: 0,
            retry_other_hosts: false,
            retry_host_predicates: Vec::new(),
            retry_priority: None,
            retriable_headers: Vec::new(),
            retriable_request_headers: Vec::new(),
        }
    }
}

const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

impl RetryPolicy {
    /// Compile; error paths are relative to `retry_policy`.
    pub fn compile(p: &route_pb::RetryPolicy) -> Result<Self, ConfigError> {
        use route_pb::retry_policy::retry_host_predicate::ConfigType;
        let mut out = RetryPolicy {
            retry_on: RetryOn::parse(&p.retry_on).0,
            num_retries: u32_or(p.num_retries.as_ref(), 1),
            per_try_timeout: timeout_or_disabled(p.per_try_timeout.as_ref(), None),
            per_try_idle_timeout: timeout_or_disabled(p.per_try_idle_timeout.as_ref(), None),
            host_selection_retry_max_attempts: p.host_selection_retry_max_attempts,
            ..RetryPolicy::default()
        };
        for (i, c) in p.retriable_status_codes.iter().enumerate() {
            let c = u16::try_from(*c)
                .ok()
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("retriable_status_codes[{i}]"),
                        format!("{c} is not an HTTP status code"),
                    )
                })?;
            out.retriable_status_codes.push(c);
        }
        if let Some(b) = &p.retry_back_off {
            let base = duration(b.base_interval.as_ref())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::new(
                        "retry_back_off.base_interval",
                        "is required and must be > 0",
                    )
                })?;
            let max = match &b.max_interval {
                Some(m) => duration(Some(m)).filter(|d| !d.is_zero()).ok_or_else(|| {
                    ConfigError::new("retry_back_off.max_interval", "must be > 0")
                })?,
                None => base * 10,
            };
            if max < base {
                return Err(ConfigError::new(
                    "retry_back_off.max_interval",
                    "must be greater than or equal to base_interval",
                ));
            }
            out.base_interval = base;
            out.max_interval = max;
        }
        for pred in &p.retry_host_predicate {
            let name = match (&pred.name, &pred.config_type) {
                (n, _) if !n.is_empty() => n.clone(),
                (_, Some(ConfigType::TypedConfig(any))) => any.type_url.clone(),
                _ => String::new(),
            };
            if name == PREVIOUS_HOSTS || name.ends_with("previous_hosts.v3.PreviousHostsPredicate")
            {
                out.retry_other_hosts = true;
            }
            out.retry_host_predicates.push(name);
        }
        out.retry_priority = p.retry_priority.as_ref().map(|r| r.name.clone());
        out.retriable_headers = p
            .retriable_headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatch::compile(h).within(format!("retriable_headers[{i}]")))
            .collect::<Result<_, _>>()?;
        out.retriable_request_headers = p
            .retriable_request_headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatch::compile(h).within(format!("retriable_request_headers[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// May this request be retried at all (`retriable_request_headers`: empty, or one matches)?
    pub fn request_retriable(&self, request_headers: &HeaderMap) -> bool {
        self.retriable_request_headers.is_empty()
            || self
                .retriable_request_headers
                .iter()
                .any(|m| m.matches(request_headers))
    }

    /// Is a response with this status (and headers, for `grpc-status`, `retriable_headers` and
    /// `x-envoy-ratelimited`) retriable under `retry_on`?
    pub fn retriable_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let on = self.retry_on;
        if headers.contains_key("x-envoy-ratelimited") {
            return on.intersects(RetryOn::ENVOY_RATE_LIMITED);
        }
        let code = status.as_u16();
        if on.intersects(RetryOn::FIVE_XX) && status.is_server_error() {
            return true;
        }
        if on.intersects(RetryOn::GATEWAY_ERROR) && matches!(code, 502..=504) {
            return true;
        }
        if on.intersects(RetryOn::RETRIABLE_4XX) && code == 409 {
            return true;
        }
        if on.intersects(RetryOn::RETRIABLE_STATUS_CODES)
            && self.retriable_status_codes.contains(&code)
        {
            return true;
        }
        if on.intersects(RetryOn::RETRIABLE_HEADERS)
            && self.retriable_headers.iter().any(|m| m.matches(headers))
        {
            return true;
        }
        let grpc = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        match grpc {
            Some(1) => on.intersects(RetryOn::CANCELLED),
            Some(4) => on.intersects(RetryOn::DEADLINE_EXCEEDED),
            Some(8) => on.intersects(RetryOn::RESOURCE_EXHAUSTED),
            Some(13) => on.intersects(RetryOn::INTERNAL),
            Some(14) => on.intersects(RetryOn::UNAVAILABLE),
            _ => false,
        }
    }

    /// Is a reset (or, with `connect_failure`, a connection failure) retriable?
    pub fn retriable_reset(&self, connect_failure: bool) -> bool {
        let reason = if connect_failure {
            ResetReason::ConnectFailure
        } else {
            ResetReason::Reset
        };
        self.retriable_reset_reason(reason, true)
    }

    /// Envoy's decision for a reset of the given kind; `request_sent` is whether any of the
    /// request reached the upstream (for `reset-before-request`).
    pub fn retriable_reset_reason(&self, reason: ResetReason, request_sent: bool) -> bool {
        let on = self.retry_on;
        match reason {
            ResetReason::Overflow => false,
            _ if on.intersects(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET) => true,
            ResetReason::ConnectFailure if on.intersects(RetryOn::CONNECT_FAILURE) => true,
            ResetReason::RefusedStream if on.intersects(RetryOn::REFUSED_STREAM) => true,
            _ => !request_sent && on.intersects(RetryOn::RESET_BEFORE_REQUEST),
        }
    }

    /// The back-off before retry number `attempt` (1-based), as Envoy's
    /// `JitteredExponentialBackOffStrategy`: `random % interval` milliseconds, where the interval
    /// starts at `base_interval`, doubles with every retry and is capped at `max_interval`; the
    /// result is at most `max_interval`.
    pub fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let base = (self.base_interval.as_millis() as u64).max(1);
        let max = (self.max_interval.as_millis() as u64).max(base);
        let mut interval = base;
        for _ in 1..attempt.max(1) {
            if interval >= max / 2 {
                interval = max;
                break;
            }
            interval *= 2;
        }
        Duration::from_millis((random % interval).min(max))
    }
}
