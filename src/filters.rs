//! Network and HTTP filters by name and type URL: one explicit registry that turns a filter's
//! `typed_config` into a compiled configuration, once, when the configuration arrives. The
//! per-connection and per-stream runtime of the terminal filters is in `proxy`.
//!
//! Depends on `config` and `stats` only. The HTTP connection manager's route table is kept
//! here as the proto (inline `route_config`) or the RDS name; `snapshot` compiles it.

pub mod hcm;
pub mod tcp_proxy;

use crate::config::{ConfigError, Within};
use crate::stats::Store;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::google::protobuf::Any;
use prost::Name;

pub use hcm::HcmConfig;
pub use tcp_proxy::TcpProxyConfig;

/// The terminal network filter of a filter chain.
#[derive(Debug, Clone)]
pub enum NetworkFilterConfig {
    /// `envoy.filters.network.tcp_proxy`.
    TcpProxy(TcpProxyConfig),
    /// `envoy.filters.network.http_connection_manager`.
    Hcm(Box<HcmConfig>),
}

fn typed_config_of(f: &listener_pb::Filter) -> Result<&Any, ConfigError> {
    use listener_pb::filter::ConfigType;
    match &f.config_type {
        Some(ConfigType::TypedConfig(any)) => Ok(any),
        Some(ConfigType::ConfigDiscovery(_)) => Err(ConfigError::new(
            "config_discovery",
            "extension config discovery (ECDS) for network filters is not supported",
        )),
        None => Err(ConfigError::new("typed_config", "is required")),
    }
}

/// Compile the network filters of one filter chain. The last filter must be terminal
/// (tcp_proxy or http_connection_manager); tern has no other network filters yet, so any
/// other filter is an error naming it and its type URL.
pub fn compile_network_filters(
    filters: &[listener_pb::Filter],
    stats: &Store,
) -> Result<NetworkFilterConfig, ConfigError> {
    let Some((last, rest)) = filters.split_last() else {
        return Err(ConfigError::new(
            "filters",
            "a filter chain needs a terminal network filter",
        ));
    };
    if let Some((i, f)) = rest.iter().enumerate().next() {
        let url = typed_config_of(f)
            .map(|a| a.type_url.clone())
            .unwrap_or_default();
        return Err(ConfigError::new(
            format!("filters[{i}]"),
            format!("network filter {} ({url}) is not supported", f.name),
        ));
    }
    let i = filters.len() - 1;
    let any = typed_config_of(last).within(format!("filters[{i}]"))?;
    let path = format!("filters[{i}]");
    if any.type_url == envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy::type_url() {
        Ok(NetworkFilterConfig::TcpProxy(TcpProxyConfig::compile(any, stats).within(path)?))
    } else if any.type_url
        == envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager::type_url()
    {
        Ok(NetworkFilterConfig::Hcm(Box::new(HcmConfig::compile(any, stats).within(path)?)))
    } else {
        Err(ConfigError::new(
            path,
            format!("network filter {} has unsupported type {}", last.name, any.type_url),
        ))
    }
}
