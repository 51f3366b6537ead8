//! `envoy.filters.network.http_connection_manager` configuration, and its HTTP filter chain.

mod istio_alpn;
mod xfcc;

pub use xfcc::{ClientCertConfig, ForwardClientCert};

use super::http::HttpFilterConfig;
use super::istio_metrics::IstioHttpObserver;
use crate::config::{self, ConfigError, Within};
use crate::stats::istio::ListenerDirection;
use crate::stats::istio::exchange::PeerExchange;
use crate::stats::{Counter, Gauge, Histogram, Store, Unit};
use crate::stream_info::Observers;
use crate::trace_context::TracingConfig;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use envoy_types::pb::google::protobuf::Any;
use std::sync::Arc;
use std::time::Duration;

/// `codec_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// AUTO: HTTP/2 when the connection starts with the preface (or ALPN says h2).
    Auto,
    /// HTTP1 only.
    Http1,
    /// HTTP2 only.
    Http2,
}

/// `server_header_transformation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHeader {
    /// OVERWRITE: always `server_name`.
    Overwrite,
    /// APPEND_IF_ABSENT: `server_name` when the upstream sent none.
    AppendIfAbsent,
    /// PASS_THROUGH: the upstream's, or none.
    PassThrough,
}

/// Where the route table comes from.
#[derive(Debug, Clone)]
pub enum RouteSpec {
    /// `route_config`, compiled by the snapshot builder.
    Inline(Box<route_pb::RouteConfiguration>),
    /// `rds`: the route configuration's name and where it comes from.
    Rds {
        /// `route_config_name`.
        name: String,
        /// `config_source`.
        config_source: Box<envoy_types::pb::envoy::config::core::v3::ConfigSource>,
    },
}

/// An `upgrade_configs` entry.
#[derive(Debug, Clone)]
pub struct UpgradeConfig {
    /// `upgrade_type`, lowercased (`websocket`, `connect`, ...).
    pub upgrade_type: String,
    /// `enabled` (default true).
    pub enabled: bool,
}

/// `envoy.extensions.filters.http.router.v3.Router`.
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    /// `suppress_envoy_headers`: no `x-envoy-*` headers on requests or responses.
    pub suppress_envoy_headers: bool,
    /// `respect_expected_rq_timeout`.
    pub respect_expected_rq_timeout: bool,
}

/// Stats `http.<stat_prefix>.*`.
#[derive(Debug, Clone)]
pub struct HcmStats {
    /// `downstream_cx_total`.
    pub downstream_cx_total: Counter,
    /// `downstream_cx_active`.
    pub downstream_cx_active: Gauge,
    /// `downstream_cx_http1_total`.
    pub downstream_cx_http1_total: Counter,
    /// `downstream_cx_http2_total`.
    pub downstream_cx_http2_total: Counter,
    /// `downstream_rq_total`.
    pub downstream_rq_total: Counter,
    /// `downstream_rq_active`.
    pub downstream_rq_active: Gauge,
    /// `downstream_rq_1xx` .. `downstream_rq_5xx`.
    pub downstream_rq_xx: [Counter; 5],
    /// `no_route`.
    pub no_route: Counter,
    /// `no_cluster`.
    pub no_cluster: Counter,
    /// `downstream_rq_timeout`.
    pub downstream_rq_timeout: Counter,
    /// `rq_direct_response`.
    pub rq_direct_response: Counter,
    /// `rq_redirect`.
    pub rq_redirect: Counter,
    /// `downstream_rq_idle_timeout`.
    pub downstream_rq_idle_timeout: Counter,
    /// `downstream_rq_ws_on_non_ws_route` (an upgrade that is not allowed).
    pub downstream_rq_ws_on_non_ws_route: Counter,
    /// `downstream_rq_too_many_premature_resets` (rapid reset).
    pub downstream_rq_too_many_premature_resets: Counter,
    /// `downstream_rq_completed`: requests that got a response.
    pub downstream_rq_completed: Counter,
    /// `downstream_cx_destroy`.
    pub downstream_cx_destroy: Counter,
    /// `downstream_cx_protocol_error`: requests the HTTP/1 codec could not read.
    pub downstream_cx_protocol_error: Counter,
    /// `downstream_rq_header_timeout`: `request_headers_timeout` passed.
    pub downstream_rq_header_timeout: Counter,
    /// `downstream_cx_rx_bytes_total`.
    pub downstream_cx_rx_bytes_total: Counter,
    /// `downstream_cx_tx_bytes_total`.
    pub downstream_cx_tx_bytes_total: Counter,
    /// `downstream_cx_length_ms`.
    pub downstream_cx_length_ms: Histogram,
    /// `downstream_rq_time`: request start to the end of the response.
    pub downstream_rq_time: Histogram,
}

impl HcmStats {
    fn new(store: &Store, prefix: &str) -> Self {
        let c = |s: &str| store.counter(format!("http.{prefix}.{s}"));
        Self {
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_active: store.gauge(format!("http.{prefix}.downstream_cx_active")),
            downstream_cx_http1_total: c("downstream_cx_http1_total"),
            downstream_cx_http2_total: c("downstream_cx_http2_total"),
            downstream_rq_total: c("downstream_rq_total"),
            downstream_rq_active: store.gauge(format!("http.{prefix}.downstream_rq_active")),
            downstream_rq_xx: [
                c("downstream_rq_1xx"),
                c("downstream_rq_2xx"),
                c("downstream_rq_3xx"),
                c("downstream_rq_4xx"),
                c("downstream_rq_5xx"),
            ],
            no_route: c("no_route"),
            no_cluster: c("no_cluster"),
            downstream_rq_timeout: c("downstream_rq_timeout"),
            rq_direct_response: c("rq_direct_response"),
            rq_redirect: c("rq_redirect"),
            downstream_rq_idle_timeout: c("downstream_rq_idle_timeout"),
            downstream_rq_ws_on_non_ws_route: c("downstream_rq_ws_on_non_ws_route"),
            downstream_rq_too_many_premature_resets: c("downstream_rq_too_many_premature_resets"),
            downstream_rq_completed: c("downstream_rq_completed"),
            downstream_cx_destroy: c("downstream_cx_destroy"),
            downstream_cx_protocol_error: c("downstream_cx_protocol_error"),
            downstream_rq_header_timeout: c("downstream_rq_header_timeout"),
            downstream_cx_rx_bytes_total: c("downstream_cx_rx_bytes_total"),
            downstream_cx_tx_bytes_total: c("downstream_cx_tx_bytes_total"),
            downstream_cx_length_ms: store.histogram(
                format!("http.{prefix}.downstream_cx_length_ms"),
                Unit::Milliseconds,
            ),
            downstream_rq_time: store.histogram(
                format!("http.{prefix}.downstream_rq_time"),
                Unit::Milliseconds,
            ),
        }
    }

    /// A request answered with `status`: `downstream_rq_<n>xx` and `downstream_rq_completed`.
    pub fn answered(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100);
        if let Some(c) = self.downstream_rq_xx.get(class.wrapping_sub(1)) {
            c.inc();
        }
        self.downstream_rq_completed.inc();
    }
}

/// Compiled `HttpConnectionManager` (all but the route table).
#[derive(Debug, Clone)]
pub struct HcmConfig {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `codec_type`.
    pub codec: Codec,
    /// `route_config` or `rds`.
    pub route: RouteSpec,
    /// `http_filters`, router last.
    pub http_filters: Vec<HttpFilterConfig>,
    /// Istio's `istio.alpn` lists for HTTP/1.1 and HTTP/2 upstreams.
    istio_alpn: [Option<Arc<[Vec<u8>]>>; 2],
    /// The router filter's settings.
    pub router: RouterConfig,
    /// `stream_idle_timeout` (default 5 min; 0 disables).
    pub stream_idle_timeout: Option<Duration>,
    /// `request_timeout` (default disabled).
    pub request_timeout: Option<Duration>,
    /// `request_headers_timeout` (default disabled).
    pub request_headers_timeout: Option<Duration>,
    /// `common_http_protocol_options.idle_timeout` (default 1 h; 0 disables).
    pub idle_timeout: Option<Duration>,
    /// `drain_timeout` (default 5 s): how long a draining connection stays open for what its
    /// client is already sending.
    pub drain_timeout: Duration,
    /// `common_http_protocol_options.max_connection_duration`.
    pub max_connection_duration: Option<Duration>,
    /// `common_http_protocol_options.max_headers_count` (default 100).
    pub max_headers_count: usize,
    /// `common_http_protocol_options.max_stream_duration`.
    pub max_stream_duration: Option<Duration>,
    /// `common_http_protocol_options.max_requests_per_connection`.
    pub max_requests_per_connection: Option<u32>,
    /// `max_request_headers_kb` in bytes (default 60 KiB, at most 8 MiB... Envoy caps at 8192 KiB).
    pub max_request_headers_bytes: usize,
    /// `http2_protocol_options.max_concurrent_streams` (Envoy's default is 2^31-1; tern caps
    /// the default at 1024 streams to bound memory).
    pub h2_max_concurrent_streams: u32,
    /// `http2_protocol_options.initial_stream_window_size`.
    pub h2_initial_stream_window: Option<u32>,
    /// `http2_protocol_options.initial_connection_window_size`.
    pub h2_initial_connection_window: Option<u32>,
    /// `use_remote_address`.
    pub use_remote_address: bool,
    /// `forward_client_cert_details` / `set_current_client_cert_details`.
    pub client_cert: ClientCertConfig,
    /// `xff_num_trusted_hops`.
    pub xff_num_trusted_hops: u32,
    /// `skip_xff_append`.
    pub skip_xff_append: bool,
    /// `via`.
    pub via: Option<http::HeaderValue>,
    /// `generate_request_id` (default true).
    pub generate_request_id: bool,
    /// `preserve_external_request_id`.
    pub preserve_external_request_id: bool,
    /// `always_set_request_id_in_response`.
    pub always_set_request_id_in_response: bool,
    /// `server_name` (default `envoy`, as Envoy: clients and tests compare it).
    pub server_name: http::HeaderValue,
    /// `server_header_transformation`.
    pub server_header: ServerHeader,
    /// `strip_matching_host_port`.
    pub strip_matching_host_port: bool,
    /// `strip_any_host_port`.
    pub strip_any_host_port: bool,
    /// `normalize_path` (default false).
    pub normalize_path: bool,
    /// `merge_slashes`.
    pub merge_slashes: bool,
    /// `upgrade_configs`.
    pub upgrade_configs: Vec<UpgradeConfig>,
    /// `http2_protocol_options.allow_connect` (extended CONNECT) and plain CONNECT through
    /// upgrade_configs.
    pub allow_connect: bool,
    /// `internal_address_config.cidr_ranges`: peers in these ranges are internal. Unset means
    /// no address is internal (Envoy 1.40's default).
    pub internal_addresses: Vec<crate::config::Cidr>,
    /// `internal_address_config.unix_sockets`: Unix-socket peers are internal.
    pub internal_unix_sockets: bool,
    /// `http_protocol_options.accept_http_10` (default false: HTTP/1.0 gets 426).
    pub accept_http_10: bool,
    /// `http_protocol_options.default_host_for_http_10`.
    pub default_host_for_http_10: Option<String>,
    /// Who is told about every stream that ends: the `access_log` entries, then any other
    /// observer added after compilation (Istio's standard metrics).
    pub observers: Observers,
    /// `tracing` (with `request_id_extension`): the sampling decision and trace headers.
    pub tracing: Option<TracingConfig>,
    /// Stats.
    pub stats: HcmStats,
    /// Istio's peer metadata exchange, when a filter asks for it (the first one applies).
    pub peer_exchange: Option<Arc<PeerExchange>>,
}

impl HcmConfig {
    /// Istio's `istio.alpn` filter: the ALPN protocols to offer upstream for a request sent
    /// over HTTP/2 (`http2`) or HTTP/1.1, if the filter is in the chain and lists them.
    pub fn istio_alpn(&self, http2: bool) -> Option<Arc<[Vec<u8>]>> {
        self.istio_alpn[usize::from(http2)].clone()
    }
}

impl HcmConfig {
    /// Compile from the filter's `typed_config`, on a listener of no particular direction.
    pub fn compile(any: &Any, store: &Store) -> Result<Self, ConfigError> {
        Self::compile_in(any, store, ListenerDirection::Unspecified)
    }

    /// Compile from the filter's `typed_config`, on a listener of this `traffic_direction`
    /// (Istio's stats filter reports by it).
    pub fn compile_in(
        any: &Any,
        store: &Store,
        direction: ListenerDirection,
    ) -> Result<Self, ConfigError> {
        let h: hcm_pb::HttpConnectionManager = config::typed_config(any)?.decode()?;
        if h.stat_prefix.is_empty() {
            return Err(ConfigError::new("stat_prefix", "must not be empty"));
        }
        let codec = match hcm_pb::http_connection_manager::CodecType::try_from(h.codec_type) {
            Ok(hcm_pb::http_connection_manager::CodecType::Auto) => Codec::Auto,
            Ok(hcm_pb::http_connection_manager::CodecType::Http1) => Codec::Http1,
            Ok(hcm_pb::http_connection_manager::CodecType::Http2) => Codec::Http2,
            _ => return Err(ConfigError::new("codec_type", "HTTP/3 is not supported")),
        };
        use hcm_pb::http_connection_manager::RouteSpecifier;
        let route = match &h.route_specifier {
            Some(RouteSpecifier::RouteConfig(rc)) => RouteSpec::Inline(Box::new(rc.clone())),
            Some(RouteSpecifier::Rds(rds)) => {
                if rds.route_config_name.is_empty() {
                    return Err(ConfigError::new(
                        "rds.route_config_name",
                        "must not be empty",
                    ));
                }
                RouteSpec::Rds {
                    name: rds.route_config_name.clone(),
                    config_source: Box::new(
                        rds.config_source
                            .clone()
                            .ok_or_else(|| ConfigError::new("rds.config_source", "is required"))?,
                    ),
                }
            }
            Some(RouteSpecifier::ScopedRoutes(_)) => {
                return Err(ConfigError::new(
                    "scoped_routes",
                    "scoped routes are not supported",
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "route_specifier",
                    "one of route_config or rds is required",
                ));
            }
        };
        let (http_filters, router) =
            super::http::compile_http_filters(&h.http_filters, &h.stat_prefix, store, direction)
                .within("http_filters")?;
        let common = h.common_http_protocol_options.unwrap_or_default();
        let h2 = h.http2_protocol_options.clone().unwrap_or_default();
        let mut upgrade_configs = Vec::new();
        for (i, u) in h.upgrade_configs.iter().enumerate() {
            if !u.filters.is_empty() {
                return Err(ConfigError::new(
                    format!("upgrade_configs[{i}].filters"),
                    "per-upgrade filter chains are not supported",
                ));
            }
            upgrade_configs.push(UpgradeConfig {
                upgrade_type: u.upgrade_type.to_ascii_lowercase(),
                enabled: config::bool_or(u.enabled.as_ref(), true),
            });
        }
        let server_name = if h.server_name.is_empty() {
            "envoy"
        } else {
            h.server_name.as_str()
        };
        let server_name = http::HeaderValue::from_str(server_name)
            .map_err(|_| ConfigError::new("server_name", "not a valid header value"))?;
        let via = if h.via.is_empty() {
            None
        } else {
            Some(
                http::HeaderValue::from_str(&h.via)
                    .map_err(|_| ConfigError::new("via", "not a valid header value"))?,
            )
        };
        let headers_kb = config::u32_or(h.max_request_headers_kb.as_ref(), 60);
        if headers_kb == 0 || headers_kb > 8192 {
            return Err(ConfigError::new(
                "max_request_headers_kb",
                "must be in 1..=8192",
            ));
        }
        use hcm_pb::http_connection_manager::StripPortMode;
        let strip_any_host_port = matches!(
            h.strip_port_mode,
            Some(StripPortMode::StripAnyHostPort(true))
        );
        let peer_exchange = http_filters.iter().find_map(|f| match f {
            HttpFilterConfig::PeerExchange(x) => Some(x.clone()),
            _ => None,
        });
        let mut observers = crate::access_log::compile(&h.access_log, store)?;
        for f in &http_filters {
            if let HttpFilterConfig::IstioStats(stats) = f {
                observers.push(Arc::new(IstioHttpObserver::new(stats.clone())));
            }
        }
        #[allow(deprecated)]
        if h.access_log_flush_interval.is_some()
            || h.access_log_options.as_ref().is_some_and(|o| {
                o.access_log_flush_interval.is_some()
                    || o.flush_access_log_on_new_request
                    || o.flush_log_on_tunnel_successfully_established
            })
        {
            store.not_enforced(
                "http_connection_manager.access_log_options",
                "periodic and early HTTP access logs: each stream is logged once, when it ends",
            );
        }
        let request_id = crate::trace_context::request_id_options(h.request_id_extension.as_ref())?;
        let tracing = h
            .tracing
            .as_ref()
            .map(|t| TracingConfig::compile(t, request_id, store))
            .transpose()
            .within("tracing")?;
        Ok(Self {
            stats: HcmStats::new(store, &h.stat_prefix),
            stat_prefix: h.stat_prefix.clone(),
            codec,
            route,
            istio_alpn: istio_alpn::lists(&http_filters),
            http_filters,
            router,
            stream_idle_timeout: config::timeout_or_disabled(
                h.stream_idle_timeout.as_ref(),
                Some(Duration::from_secs(300)),
            ),
            request_timeout: config::timeout_or_disabled(h.request_timeout.as_ref(), None),
            request_headers_timeout: config::timeout_or_disabled(
                h.request_headers_timeout.as_ref(),
                None,
            ),
            idle_timeout: config::timeout_or_disabled(
                common.idle_timeout.as_ref(),
                Some(Duration::from_secs(3600)),
            ),
            drain_timeout: config::duration(h.drain_timeout.as_ref())
                .unwrap_or(Duration::from_secs(5)),
            max_connection_duration: config::timeout_or_disabled(
                common.max_connection_duration.as_ref(),
                None,
            ),
            max_headers_count: config::u32_or(common.max_headers_count.as_ref(), 100).max(1)
                as usize,
            max_stream_duration: config::timeout_or_disabled(
                common.max_stream_duration.as_ref(),
                None,
            ),
            max_requests_per_connection: common
                .max_requests_per_connection
                .as_ref()
                .map(|v| v.value)
                .filter(|v| *v > 0),
            max_request_headers_bytes: headers_kb as usize * 1024,
            h2_max_concurrent_streams: config::u32_or(h2.max_concurrent_streams.as_ref(), 1024)
                .max(1),
            h2_initial_stream_window: h2.initial_stream_window_size.as_ref().map(|v| v.value),
            h2_initial_connection_window: h2
                .initial_connection_window_size
                .as_ref()
                .map(|v| v.value),
            use_remote_address: config::bool_or(h.use_remote_address.as_ref(), false),
            client_cert: ClientCertConfig::compile(&h, store)?,
            xff_num_trusted_hops: h.xff_num_trusted_hops,
            skip_xff_append: h.skip_xff_append,
            via,
            generate_request_id: config::bool_or(h.generate_request_id.as_ref(), true),
            preserve_external_request_id: h.preserve_external_request_id,
            always_set_request_id_in_response: h.always_set_request_id_in_response,
            server_name,
            server_header:
                match hcm_pb::http_connection_manager::ServerHeaderTransformation::try_from(
                    h.server_header_transformation,
                ) {
                    Ok(
                        hcm_pb::http_connection_manager::ServerHeaderTransformation::AppendIfAbsent,
                    ) => ServerHeader::AppendIfAbsent,
                    Ok(
                        hcm_pb::http_connection_manager::ServerHeaderTransformation::PassThrough,
                    ) => ServerHeader::PassThrough,
                    _ => ServerHeader::Overwrite,
                },
            strip_matching_host_port: h.strip_matching_host_port,
            strip_any_host_port,
            normalize_path: config::bool_or(h.normalize_path.as_ref(), false),
            merge_slashes: h.merge_slashes,
            upgrade_configs,
            allow_connect: h2.allow_connect,
            internal_addresses: h
                .internal_address_config
                .as_ref()
                .map(|c| {
                    c.cidr_ranges
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            crate::config::Cidr::from_proto(r).map_err(|e| {
                                e.within(format!("internal_address_config.cidr_ranges[{i}]"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
            internal_unix_sockets: h
                .internal_address_config
                .as_ref()
                .is_some_and(|c| c.unix_sockets),
            accept_http_10: h
                .http_protocol_options
                .as_ref()
                .is_some_and(|o| o.accept_http_10),
            default_host_for_http_10: h
                .http_protocol_options
                .as_ref()
                .map(|o| o.default_host_for_http_10.clone())
                .filter(|s| !s.is_empty()),
            observers,
            peer_exchange,
            tracing,
        })
    }

    /// Whether an upgrade of this type is allowed, given the route's own `upgrade_configs`
    /// (which override the connection manager's).
    pub fn upgrade_allowed(&self, upgrade_type: &str, route_override: Option<bool>) -> bool {
        let hcm = self
            .upgrade_configs
            .iter()
            .find(|u| u.upgrade_type == upgrade_type);
        match (hcm, route_override) {
            (None, _) => false,
            (Some(_), Some(route)) => route,
            (Some(u), None) => u.enabled,
        }
    }
}
