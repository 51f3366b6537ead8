//! The HTTP filter registry of the connection manager: `http_filters` → [`HttpFilterConfig`],
//! by type URL (looking through `TypedStruct`). The router, the compressor, Istio's stats and
//! Istio's peer metadata exchange are enforced; the other filters Istio puts in every listener
//! are decoded (a malformed one is an error) and counted as
//! `tern.config.not_enforced.<kind>` until their runtime arrives (README.md, "Accepted, not
//! yet enforced"). Any other type is an error naming the filter and the type URL, unless the
//! filter `is_optional` (skipped, `tern.config.skipped.<filter name>`); `disabled` filters are
//! skipped.

use super::compressor::CompressorConfig;
use super::hcm::RouterConfig;
use super::istio_metrics::{compile_stats, exchange_config};
use super::wasm::{self, NullVmPlugin};
use crate::config::istio::{alpn, connect_authority, connect_baggage, peer_metadata, stats};
use crate::config::{ConfigError, TypedConfig, Within, typed_config};
use crate::stats::Store;
use crate::stats::istio::exchange::{ExchangeConfig, PeerExchange};
use crate::stats::istio::{IstioStats, ListenerDirection};
use envoy_types::pb::envoy::extensions::filters::http::compressor::v3 as compressor_pb;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3 as cors_pb;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3 as ext_authz_pb;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as fault_pb;
use envoy_types::pb::envoy::extensions::filters::http::grpc_stats::v3 as grpc_stats_pb;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as rbac_pb;
use envoy_types::pb::envoy::extensions::filters::http::router::v3 as router_pb;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3 as wasm_pb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use envoy_types::pb::google::protobuf::Any;
use prost::Name;
use std::sync::Arc;

/// One compiled HTTP filter, in `http_filters` order; the router is always last.
#[derive(Debug, Clone)]
pub enum HttpFilterConfig {
    /// `envoy.filters.http.router`.
    Router(RouterConfig),
    /// Istio's `istio.stats` (`stats.PluginConfig`, or the null-VM `envoy.wasm.stats`
    /// plugin): Istio's standard HTTP metrics, recorded when each stream ends.
    IstioStats(IstioStats),
    /// Istio's peer metadata exchange: the null-VM `envoy.wasm.metadata_exchange` plugin or
    /// the peer metadata filter (`io.istio.http.peer_metadata.Config`).
    PeerExchange(Arc<PeerExchange>),
    /// Istio's `istio.alpn`: the ALPN values offered on upstream TLS connections, by the
    /// upstream HTTP protocol (see `HcmConfig::istio_alpn`).
    Alpn(alpn::FilterConfig),
    /// Istio's `connect_authority` (HBONE). Not enforced.
    ConnectAuthority(connect_authority::Config),
    /// Istio's `connect_baggage` (HBONE). Not enforced.
    ConnectBaggage(connect_baggage::Config),
    /// `envoy.filters.http.cors`. Not enforced.
    Cors(cors_pb::Cors),
    /// `envoy.filters.http.compressor` (Istio's 15090 Prometheus listener): response
    /// compression (request compression is not enforced).
    Compressor(Box<CompressorConfig>),
    /// `envoy.filters.http.fault`. Not enforced.
    Fault(Box<fault_pb::HttpFault>),
    /// `envoy.filters.http.grpc_stats`. Not enforced.
    GrpcStats(grpc_stats_pb::FilterConfig),
    /// `envoy.filters.http.rbac`. Not enforced: requests are allowed.
    Rbac(Box<rbac_pb::Rbac>),
    /// `envoy.filters.http.ext_authz`. Not enforced: requests are allowed.
    ExtAuthz(Box<ext_authz_pb::ExtAuthz>),
}

/// Compile `http_filters`: the filters in order, and the router's settings. The router must be
/// the last filter.
pub(crate) fn compile_http_filters(
    filters: &[hcm_pb::HttpFilter],
    stat_prefix: &str,
    store: &Store,
    direction: ListenerDirection,
) -> Result<(Vec<HttpFilterConfig>, RouterConfig), ConfigError> {
    let mut out = Vec::new();
    let mut router = None;
    for (i, f) in filters.iter().enumerate() {
        let path = format!("[{i}]");
        if router.is_some() {
            return Err(ConfigError::new(
                path,
                format!(
                    "{} comes after the router, which must be the last filter",
                    f.name
                ),
            ));
        }
        if f.disabled {
            continue;
        }
        use hcm_pb::http_filter::ConfigType;
        let router_default;
        let any = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => any,
            Some(ConfigType::ConfigDiscovery(_)) => {
                return Err(ConfigError::new(
                    path,
                    format!("{}: extension config discovery is not supported", f.name),
                ));
            }
            None if f.name == "envoy.filters.http.router" => {
                router_default = Any {
                    type_url: router_pb::Router::type_url(),
                    value: Vec::new(),
                };
                &router_default
            }
            None => {
                return Err(ConfigError::new(
                    path,
                    format!("{}: typed_config is required", f.name),
                ));
            }
        };
        let tc = typed_config(any).within(&path)?;
        let compiled = compile_one(f, &tc, stat_prefix, store, direction)
            .map_err(|e| super::naming(e, "HTTP filter", &f.name, tc.type_url()))
            .within(&path)?;
        match compiled {
            Compiled::Filter(HttpFilterConfig::Router(rc)) => {
                out.push(HttpFilterConfig::Router(rc.clone()));
                router = Some(rc);
            }
            Compiled::Filter(c) => out.push(c),
            Compiled::Skipped => {}
            Compiled::Unknown if f.is_optional => {
                tracing::warn!(filter = %f.name, type_url = %tc.type_url(), "optional HTTP filter not supported; skipped");
                store
                    .counter(format!("tern.config.skipped.{}", f.name))
                    .inc();
            }
            Compiled::Unknown => {
                return Err(ConfigError::new(
                    path,
                    format!(
                        "HTTP filter {} has unsupported type {}",
                        f.name,
                        tc.type_url()
                    ),
                ));
            }
        }
    }
    let router = router.ok_or_else(|| {
        ConfigError::new("", "the last HTTP filter must be envoy.filters.http.router")
    })?;
    Ok((out, router))
}

enum Compiled {
    Filter(HttpFilterConfig),
    /// A Wasm filter that may fail open, skipped.
    Skipped,
    /// A type tern does not know.
    Unknown,
}

/// The registry: one arm per type URL.
fn compile_one(
    f: &hcm_pb::HttpFilter,
    tc: &TypedConfig<'_>,
    stat_prefix: &str,
    store: &Store,
    direction: ListenerDirection,
) -> Result<Compiled, ConfigError> {
    let url = tc.type_url();
    let filter = if url == router_pb::Router::type_url() {
        let r: router_pb::Router = tc.decode()?;
        HttpFilterConfig::Router(RouterConfig {
            suppress_envoy_headers: r.suppress_envoy_headers,
            respect_expected_rq_timeout: r.respect_expected_rq_timeout,
        })
    } else if url == stats::PluginConfig::type_url() {
        let c: stats::PluginConfig = tc.decode()?;
        HttpFilterConfig::IstioStats(compile_stats(&c, direction, store))
    } else if url == wasm_pb::Wasm::type_url() {
        let w: wasm_pb::Wasm = tc.decode()?;
        let Some(plugin) = wasm::compile(w.config.as_ref(), &f.name, f.is_optional, store)
            .within("typed_config")?
        else {
            return Ok(Compiled::Skipped);
        };
        match plugin {
            NullVmPlugin::MetadataExchange(_) => {
                HttpFilterConfig::PeerExchange(Arc::new(PeerExchange::new(
                    ExchangeConfig::legacy_metadata_exchange(direction),
                    store.istio().node(),
                )))
            }
            NullVmPlugin::Stats(c) => {
                HttpFilterConfig::IstioStats(compile_stats(&c, direction, store))
            }
        }
    } else if url == alpn::FilterConfig::type_url() {
        HttpFilterConfig::Alpn(tc.decode()?)
    } else if url == peer_metadata::Config::type_url() {
        let c: peer_metadata::Config = tc.decode()?;
        let x = exchange_config(&c, store);
        HttpFilterConfig::PeerExchange(Arc::new(PeerExchange::new(x, store.istio().node())))
    } else if url == connect_authority::Config::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "istio.connect_authority",
            "HBONE CONNECT authority (no issue yet)",
        );
        HttpFilterConfig::ConnectAuthority(c)
    } else if url == connect_baggage::Config::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "istio.connect_baggage",
            "HBONE baggage propagation (no issue yet)",
        );
        HttpFilterConfig::ConnectBaggage(c)
    } else if url == compressor_pb::Compressor::type_url() {
        let c: compressor_pb::Compressor = tc.decode()?;
        HttpFilterConfig::Compressor(Box::new(CompressorConfig::compile(&c, stat_prefix, store)?))
    } else if url == cors_pb::Cors::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "envoy.filters.http.cors",
            "CORS policies (no issue yet): no preflight replies or CORS headers",
        );
        HttpFilterConfig::Cors(c)
    } else if url == fault_pb::HttpFault::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "envoy.filters.http.fault",
            "fault injection (no issue yet): no delays or aborts",
        );
        HttpFilterConfig::Fault(Box::new(c))
    } else if url == grpc_stats_pb::FilterConfig::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "envoy.filters.http.grpc_stats",
            "gRPC call statistics (no issue yet)",
        );
        HttpFilterConfig::GrpcStats(c)
    } else if url == rbac_pb::Rbac::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "envoy.filters.http.rbac",
            "HTTP authorization policies (no issue yet): requests are allowed",
        );
        HttpFilterConfig::Rbac(Box::new(c))
    } else if url == ext_authz_pb::ExtAuthz::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "envoy.filters.http.ext_authz",
            "external authorization (no issue yet): requests are allowed",
        );
        HttpFilterConfig::ExtAuthz(Box::new(c))
    } else {
        return Ok(Compiled::Unknown);
    };
    Ok(Compiled::Filter(filter))
}
