//! `envoy.filters.network.generic_proxy` and `envoy.filters.network.dubbo_proxy`, compiled
//! to one model: the codecs a connection may speak (chosen by the first bytes), the route
//! table, the access log and the stats. The per-connection runtime is `proxy::rpc`.
//!
//! Codecs are chosen by `codec_config`'s type URL in [`compile_codec`], the one place a new
//! protocol registers (Bolt adds tern's own codec config message there). An unknown codec is a
//! configuration error naming its type URL.

pub mod route;

use crate::config::{ConfigError, Within, typed_config};
use crate::protocol::xprotocol::Codec;
use crate::protocol::xprotocol::dubbo::Dubbo;
use crate::stats::{Counter, Gauge, Histogram, Store, Unit};
use crate::stream_info::Observers;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::filters::network::dubbo_proxy::v3 as dubbo_pb;
use envoy_types::pb::envoy::extensions::filters::network::generic_proxy::codecs::dubbo::v3 as gp_dubbo_pb;
use envoy_types::pb::envoy::extensions::filters::network::generic_proxy::router::v3 as gp_router_pb;
use envoy_types::pb::envoy::extensions::filters::network::generic_proxy::v3 as gp_pb;
use envoy_types::pb::google::protobuf::Any;
use prost::Name;
use route::RpcRouteTable;
use std::sync::Arc;

/// Stats of one generic proxy, under `generic_proxy.<stat_prefix>.` with Envoy's generic_proxy
/// names (`ALL_GENERIC_FILTER_STATS`; the per-status `downstream_rq_code_<code>` and per-flag
/// counters are not written), or `dubbo.<stat_prefix>.` with dubbo_proxy's.
/// `downstream_rq_heartbeat` and `downstream_rq_oneway` are tern's own.
#[derive(Debug, Clone)]
pub struct RpcStats {
    /// Requests received (heartbeats excluded): `downstream_rq_total` / `request`.
    pub rq_total: Counter,
    /// Requests in flight: `downstream_rq_active` / `request_active`.
    pub rq_active: Gauge,
    /// From the request to its response: `downstream_rq_time` / `request_time_ms`.
    pub rq_time: Histogram,
    /// From the request to its sending upstream, µs: `downstream_rq_tx_time`.
    pub rq_tx_time: Histogram,
    /// Requests answered with a status that is not success (from upstream or the proxy):
    /// `downstream_rq_error` / `response_error`.
    pub rq_error: Counter,
    /// Requests the proxy answered itself (no route, no upstream, timeout, overflow, upstream
    /// reset): `downstream_rq_local` / `local_response_error`.
    pub rq_local: Counter,
    /// Requests cancelled because their downstream connection closed: `downstream_rq_reset` /
    /// `cx_destroy_remote_with_active_rq`.
    pub rq_reset: Counter,
    /// Frames that did not decode (the connection is closed): `downstream_rq_decoding_error` /
    /// `request_decoding_error`.
    pub rq_decoding_error: Counter,
    /// Heartbeats answered locally: `downstream_rq_heartbeat` / `request_event`.
    pub rq_heartbeat: Counter,
    /// One-way requests: `downstream_rq_oneway` / `request_oneway`.
    pub rq_oneway: Counter,
}

impl RpcStats {
    fn generic(store: &Store, prefix: &str) -> Self {
        let p = format!("generic_proxy.{prefix}.");
        let c = |s: &str| store.counter(format!("{p}{s}"));
        Self {
            rq_total: c("downstream_rq_total"),
            rq_active: store.gauge(format!("{p}downstream_rq_active")),
            rq_time: store.histogram(format!("{p}downstream_rq_time"), Unit::Milliseconds),
            rq_tx_time: store.histogram(format!("{p}downstream_rq_tx_time"), Unit::Microseconds),
            rq_error: c("downstream_rq_error"),
            rq_local: c("downstream_rq_local"),
            rq_reset: c("downstream_rq_reset"),
            rq_decoding_error: c("downstream_rq_decoding_error"),
            rq_heartbeat: c("downstream_rq_heartbeat"),
            rq_oneway: c("downstream_rq_oneway"),
        }
    }

    fn dubbo(store: &Store, prefix: &str) -> Self {
        let p = format!("dubbo.{prefix}.");
        let c = |s: &str| store.counter(format!("{p}{s}"));
        Self {
            rq_total: c("request"),
            rq_active: store.gauge(format!("{p}request_active")),
            rq_time: store.histogram(format!("{p}request_time_ms"), Unit::Milliseconds),
            rq_tx_time: store.histogram(format!("{p}request_tx_time_us"), Unit::Microseconds),
            rq_error: c("response_error"),
            rq_local: c("local_response_error"),
            rq_reset: c("cx_destroy_remote_with_active_rq"),
            rq_decoding_error: c("request_decoding_error"),
            rq_heartbeat: c("request_event"),
            rq_oneway: c("request_oneway"),
        }
    }
}

/// A compiled generic proxy (or dubbo_proxy).
#[derive(Debug, Clone)]
pub struct GenericProxyConfig {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// The codecs a connection may speak, in order; the first bytes select one by magic.
    pub codecs: Vec<Codec>,
    /// `route_config`.
    pub routes: Arc<RpcRouteTable>,
    /// `access_log`.
    pub observers: Observers,
    /// Stats.
    pub stats: RpcStats,
}

/// `tern.generic_proxy.codecs.multi.v3.MultiCodecConfig` (`proto/tern/generic_proxy/codecs/
/// multi/v3/multi.proto`): several codecs on one generic_proxy, chosen per connection by the
/// first bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MultiCodecConfig {
    /// `codecs`.
    #[prost(message, repeated, tag = "1")]
    pub codecs: Vec<core_pb::TypedExtensionConfig>,
}

impl prost::Name for MultiCodecConfig {
    const NAME: &'static str = "MultiCodecConfig";
    const PACKAGE: &'static str = "tern.generic_proxy.codecs.multi.v3";
    fn full_name() -> String {
        "tern.generic_proxy.codecs.multi.v3.MultiCodecConfig".into()
    }
    fn type_url() -> String {
        "type.googleapis.com/tern.generic_proxy.codecs.multi.v3.MultiCodecConfig".into()
    }
}

/// The type URLs of the codecs [`compile_codec`] knows.
pub fn codec_type_urls() -> Vec<String> {
    vec![
        gp_dubbo_pb::DubboCodecConfig::type_url(),
        crate::filters::bolt_codec::type_url(),
    ]
}

/// `codec_config` → the codecs a connection may speak: one, or the list of a
/// [`MultiCodecConfig`].
pub fn compile_codecs(c: &core_pb::TypedExtensionConfig) -> Result<Vec<Codec>, ConfigError> {
    let Some(any) = c.typed_config.as_ref() else {
        return Err(ConfigError::new("typed_config", "is required"));
    };
    let tc = typed_config(any)?;
    if tc.type_url() != MultiCodecConfig::type_url() {
        return Ok(vec![compile_codec(c)?]);
    }
    let m: MultiCodecConfig = tc.decode()?;
    if m.codecs.is_empty() {
        return Err(ConfigError::new(
            "typed_config.codecs",
            "needs at least one codec",
        ));
    }
    m.codecs
        .iter()
        .enumerate()
        .map(|(i, c)| compile_codec(c).within(format!("typed_config.codecs[{i}]")))
        .collect()
}

/// The codec registry: `codec_config` → codec. An unknown type URL is an error naming it.
///
/// Extension point: a new protocol adds a branch here for its config message (Bolt: tern's
/// own codec config in `proto/`, as Envoy has none) and a line in [`codec_type_urls`].
pub fn compile_codec(c: &core_pb::TypedExtensionConfig) -> Result<Codec, ConfigError> {
    let any = c
        .typed_config
        .as_ref()
        .ok_or_else(|| ConfigError::new("typed_config", "is required"))?;
    let tc = typed_config(any)?;
    let url = tc.type_url();
    if url == gp_dubbo_pb::DubboCodecConfig::type_url() {
        let _: gp_dubbo_pb::DubboCodecConfig = tc.decode()?;
        Ok(Arc::new(Dubbo::default()))
    } else if url == crate::filters::bolt_codec::type_url() {
        crate::filters::bolt_codec::compile(&tc)
    } else {
        Err(ConfigError::new(
            "typed_config",
            format!(
                "codec {} has unsupported type {url} (tern knows {})",
                c.name,
                codec_type_urls().join(", ")
            ),
        ))
    }
}

impl GenericProxyConfig {
    /// Compile `envoy.extensions.filters.network.generic_proxy.v3.GenericProxy`.
    pub fn compile(any: &Any, store: &Store) -> Result<Self, ConfigError> {
        let p: gp_pb::GenericProxy = typed_config(any)?.decode()?;
        if p.stat_prefix.is_empty() {
            return Err(ConfigError::new("stat_prefix", "must not be empty"));
        }
        let codec = p
            .codec_config
            .as_ref()
            .ok_or_else(|| ConfigError::new("codec_config", "is required"))?;
        let codecs = compile_codecs(codec).within("codec_config")?;
        let routes = match &p.route_specifier {
            Some(gp_pb::generic_proxy::RouteSpecifier::RouteConfig(rc)) => {
                RpcRouteTable::compile(rc).within("route_config")?
            }
            Some(gp_pb::generic_proxy::RouteSpecifier::GenericRds(_)) => {
                return Err(ConfigError::new(
                    "generic_rds",
                    "RDS for generic_proxy is not supported yet; use an inline route_config",
                ));
            }
            None => return Err(ConfigError::new("route_config", "is required")),
        };
        for (i, f) in p.filters.iter().enumerate() {
            let url = f
                .typed_config
                .as_ref()
                .map(|a| a.type_url.as_str())
                .unwrap_or("");
            if url != gp_router_pb::Router::type_url() {
                return Err(ConfigError::new(
                    format!("filters[{i}]"),
                    format!(
                        "generic_proxy filter {} has unsupported type {url} (only the router is supported)",
                        f.name
                    ),
                ));
            }
        }
        if p.tracing.is_some() {
            store.not_enforced(
                "envoy.filters.network.generic_proxy.tracing",
                "tracing of generic_proxy requests (no issue yet)",
            );
        }
        let observers = crate::access_log::compile(&p.access_log, store).within("access_log")?;
        Ok(Self {
            stats: RpcStats::generic(store, &p.stat_prefix),
            stat_prefix: p.stat_prefix,
            codecs,
            routes: Arc::new(routes),
            observers,
        })
    }

    /// Compile `envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy` (Dubbo over
    /// Hessian 2, inline `route_config`).
    pub fn compile_dubbo_proxy(any: &Any, store: &Store) -> Result<Self, ConfigError> {
        let p: dubbo_pb::DubboProxy = typed_config(any)?.decode()?;
        if p.stat_prefix.is_empty() {
            return Err(ConfigError::new("stat_prefix", "must not be empty"));
        }
        if p.protocol_type != dubbo_pb::ProtocolType::Dubbo as i32 {
            return Err(ConfigError::new("protocol_type", "only Dubbo is supported"));
        }
        if p.serialization_type != dubbo_pb::SerializationType::Hessian2 as i32 {
            return Err(ConfigError::new(
                "serialization_type",
                "only Hessian2 is supported",
            ));
        }
        let routes = match &p.route_specifier {
            Some(dubbo_pb::dubbo_proxy::RouteSpecifier::Drds(_)) => {
                return Err(ConfigError::new(
                    "drds",
                    "RDS for dubbo_proxy is not supported; use route_config",
                ));
            }
            Some(dubbo_pb::dubbo_proxy::RouteSpecifier::MultipleRouteConfig(m)) => {
                RpcRouteTable::compile_dubbo(&m.route_config)
                    .within("multiple_route_config.route_config")?
            }
            #[allow(deprecated)]
            None => RpcRouteTable::compile_dubbo(&p.route_config).within("route_config")?,
        };
        for (i, f) in p.dubbo_filters.iter().enumerate() {
            if f.name != "envoy.filters.dubbo.router" {
                return Err(ConfigError::new(
                    format!("dubbo_filters[{i}]"),
                    format!(
                        "dubbo filter {} is not supported (only envoy.filters.dubbo.router)",
                        f.name
                    ),
                ));
            }
        }
        Ok(Self {
            stats: RpcStats::dubbo(store, &p.stat_prefix),
            stat_prefix: p.stat_prefix,
            codecs: vec![Arc::new(Dubbo::default())],
            routes: Arc::new(routes),
            observers: Observers::default(),
        })
    }
}
