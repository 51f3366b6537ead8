//! Network and HTTP filters by name and type URL: one explicit registry that turns a filter's
//! `typed_config` into a compiled configuration, once, when the configuration arrives. The
//! per-connection and per-stream runtime of the terminal filters is in `proxy`.
//!
//! Depends on `config` and `stats` only. The HTTP connection manager's route table is kept
//! here as the proto (inline `route_config`) or the RDS name; `snapshot` compiles it.

pub mod bolt_codec;
pub mod compressor;
pub mod generic_proxy;
pub mod hcm;
pub mod http;
pub mod istio_metrics;
pub mod tcp_proxy;
pub mod wasm;

use crate::config::istio::{authn, metadata_exchange, stats as istio_stats};
use crate::config::{ConfigError, TypedConfig, Within, typed_config};
use crate::stats::Store;
use crate::stats::istio::{IstioStats, ListenerDirection};
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::extensions::filters::network::dubbo_proxy::v3 as dubbo_pb;
use envoy_types::pb::envoy::extensions::filters::network::generic_proxy::v3 as gp_pb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as rbac_pb;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp_pb;
use envoy_types::pb::envoy::extensions::filters::network::wasm::v3 as wasm_pb;
use envoy_types::pb::google::protobuf::Any;
use prost::Name;

pub use generic_proxy::GenericProxyConfig;
pub use hcm::HcmConfig;
pub use http::HttpFilterConfig;
pub use tcp_proxy::TcpProxyConfig;
pub use wasm::NullVmPlugin;

#[cfg(test)]
mod tests;

/// The terminal network filter of a filter chain.
#[derive(Debug, Clone)]
pub enum NetworkFilterConfig {
    /// `envoy.filters.network.tcp_proxy`.
    TcpProxy(Box<TcpProxyConfig>),
    /// `envoy.filters.network.http_connection_manager`.
    Hcm(Box<HcmConfig>),
    /// `envoy.filters.network.generic_proxy` or `envoy.filters.network.dubbo_proxy`.
    GenericProxy(Box<GenericProxyConfig>),
}

/// A network filter before the terminal one. Istio's stats filter records through the
/// terminal tcp_proxy; the others are accepted, decoded (so a malformed one is an error), and
/// counted as `tern.config.not_enforced.<kind>` (README.md, "Accepted, not yet enforced").
#[derive(Debug, Clone)]
pub enum NonTerminalFilterConfig {
    /// Istio's `istio.metadata_exchange` (`envoy.tcp.metadataexchange.config.MetadataExchange`).
    MetadataExchange(metadata_exchange::MetadataExchange),
    /// Istio's `istio.stats` (`stats.PluginConfig`, or the null-VM `envoy.wasm.stats`
    /// plugin): Istio's TCP metrics, recorded by the chain's tcp_proxy.
    IstioStats(IstioStats),
    /// Istio's `istio_authn` (`io.istio.network.authn.Config`): the peer principal from mTLS.
    IstioAuthn(authn::Config),
    /// `envoy.filters.network.rbac`.
    Rbac(Box<rbac_pb::Rbac>),
    /// A Wasm network filter on Envoy's null runtime (an Istio built-in plugin).
    Wasm(NullVmPlugin),
}

/// The network filters of one filter chain: the non-terminal ones in order, then the terminal
/// one.
#[derive(Debug, Clone)]
pub struct NetworkFilters {
    /// Filters before the terminal one.
    pub filters: Vec<NonTerminalFilterConfig>,
    /// The last filter: tcp_proxy, http_connection_manager, generic_proxy or dubbo_proxy.
    pub terminal: NetworkFilterConfig,
}

fn typed_config_of(f: &listener_pb::Filter) -> Result<&Any, ConfigError> {
    use listener_pb::filter::ConfigType;
    match &f.config_type {
        Some(ConfigType::TypedConfig(any)) => Ok(any),
        Some(ConfigType::ConfigDiscovery(_)) => Err(ConfigError::new(
            "config_discovery",
            format!(
                "network filter {}: extension config discovery (ECDS) is not supported",
                f.name
            ),
        )),
        None => Err(ConfigError::new(
            "typed_config",
            format!("network filter {}: typed_config is required", f.name),
        )),
    }
}

/// Say which filter an error is about: `<kind> <name> (<type URL>): <reason>`.
pub(crate) fn naming(mut e: ConfigError, kind: &str, name: &str, type_url: &str) -> ConfigError {
    e.reason = format!("{kind} {name} ({type_url}): {}", e.reason);
    e
}

/// Whether a type URL is one of the terminal network filters.
fn is_terminal(type_url: &str) -> bool {
    type_url == tcp_pb::TcpProxy::type_url()
        || type_url == hcm_pb::HttpConnectionManager::type_url()
        || type_url == gp_pb::GenericProxy::type_url()
        || type_url == dubbo_pb::DubboProxy::type_url()
}

/// Compile the network filters of one filter chain. The last filter must be terminal
/// (tcp_proxy, http_connection_manager, generic_proxy or dubbo_proxy) and no other may be.
/// Filters are matched by type URL (looking through `TypedStruct`); an unknown type is an
/// error naming the filter and its type URL.
pub fn compile_network_filters(
    filters: &[listener_pb::Filter],
    stats: &Store,
    direction: ListenerDirection,
) -> Result<NetworkFilters, ConfigError> {
    let Some((last, rest)) = filters.split_last() else {
        return Err(ConfigError::new(
            "filters",
            "a filter chain needs a terminal network filter",
        ));
    };
    let mut out = Vec::with_capacity(rest.len());
    for (i, f) in rest.iter().enumerate() {
        let path = format!("filters[{i}]");
        let any = typed_config_of(f).within(&path)?;
        let tc = typed_config(any).within(&path)?;
        if is_terminal(tc.type_url()) {
            return Err(ConfigError::new(
                path,
                format!(
                    "terminal network filter {} ({}) must be the last filter",
                    f.name,
                    tc.type_url()
                ),
            ));
        }
        let compiled = compile_non_terminal(&f.name, &tc, stats, direction)
            .map_err(|e| naming(e, "network filter", &f.name, tc.type_url()))
            .within(path)?;
        if let Some(c) = compiled {
            out.push(c);
        }
    }
    let i = filters.len() - 1;
    let path = format!("filters[{i}]");
    let any = typed_config_of(last).within(&path)?;
    let tc = typed_config(any).within(&path)?;
    // Errors inside the terminal filter carry their own path (`http_filters[2]...`); only a
    // typed_config that does not decode needs the filter named.
    let name_it = |e: ConfigError| {
        if e.path == "typed_config" {
            naming(e, "network filter", &last.name, tc.type_url())
        } else {
            e
        }
    };
    let terminal = if tc.type_url() == tcp_pb::TcpProxy::type_url() {
        let mut t = TcpProxyConfig::compile(any, stats)
            .map_err(name_it)
            .within(path)?;
        t.istio = out.iter().find_map(|f| match f {
            NonTerminalFilterConfig::IstioStats(s) => Some(s.clone()),
            _ => None,
        });
        NetworkFilterConfig::TcpProxy(Box::new(t))
    } else if tc.type_url() == hcm_pb::HttpConnectionManager::type_url() {
        NetworkFilterConfig::Hcm(Box::new(
            HcmConfig::compile_in(any, stats, direction)
                .map_err(name_it)
                .within(path)?,
        ))
    } else if tc.type_url() == gp_pb::GenericProxy::type_url() {
        NetworkFilterConfig::GenericProxy(Box::new(
            GenericProxyConfig::compile(any, stats)
                .map_err(name_it)
                .within(path)?,
        ))
    } else if tc.type_url() == dubbo_pb::DubboProxy::type_url() {
        NetworkFilterConfig::GenericProxy(Box::new(
            GenericProxyConfig::compile_dubbo_proxy(any, stats)
                .map_err(name_it)
                .within(path)?,
        ))
    } else {
        return Err(ConfigError::new(
            path,
            if is_non_terminal(tc.type_url()) {
                format!(
                    "network filter {} ({}) is not terminal; the last filter must be tcp_proxy, http_connection_manager, generic_proxy or dubbo_proxy",
                    last.name,
                    tc.type_url()
                )
            } else {
                format!(
                    "network filter {} has unsupported type {}",
                    last.name,
                    tc.type_url()
                )
            },
        ));
    };
    Ok(NetworkFilters {
        filters: out,
        terminal,
    })
}

/// Whether a type URL is one of the non-terminal network filters tern knows.
fn is_non_terminal(type_url: &str) -> bool {
    [
        metadata_exchange::MetadataExchange::type_url(),
        istio_stats::PluginConfig::type_url(),
        authn::Config::type_url(),
        rbac_pb::Rbac::type_url(),
        wasm_pb::Wasm::type_url(),
    ]
    .iter()
    .any(|u| u == type_url)
}

/// TCP metadata exchange runs in-band after an `istio-peer-exchange` ALPN, which needs mTLS.
fn tcp_metadata_exchange_not_enforced(store: &Store) {
    store.not_enforced(
        "istio.metadata_exchange.network",
        "TCP peer metadata exchange (needs mTLS ALPN istio-peer-exchange, issue #6)",
    );
}

/// The registry of non-terminal network filters. `Ok(None)`: a filter that is skipped (a Wasm
/// filter on a real VM that may fail open).
fn compile_non_terminal(
    name: &str,
    tc: &TypedConfig<'_>,
    store: &Store,
    direction: ListenerDirection,
) -> Result<Option<NonTerminalFilterConfig>, ConfigError> {
    let url = tc.type_url();
    if url == metadata_exchange::MetadataExchange::type_url() {
        let c = tc.decode()?;
        tcp_metadata_exchange_not_enforced(store);
        Ok(Some(NonTerminalFilterConfig::MetadataExchange(c)))
    } else if url == istio_stats::PluginConfig::type_url() {
        let c: istio_stats::PluginConfig = tc.decode()?;
        Ok(Some(NonTerminalFilterConfig::IstioStats(
            istio_metrics::compile_stats(&c, direction, store),
        )))
    } else if url == authn::Config::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "istio_authn",
            "the peer principal as filter state (tern has no filter state; the peer's SPIFFE id is in the connection's TLS info)",
        );
        Ok(Some(NonTerminalFilterConfig::IstioAuthn(c)))
    } else if url == rbac_pb::Rbac::type_url() {
        let c = tc.decode()?;
        store.not_enforced(
            "envoy.filters.network.rbac",
            "connection-level authorization policies (no issue yet): connections are allowed",
        );
        Ok(Some(NonTerminalFilterConfig::Rbac(Box::new(c))))
    } else if url == wasm_pb::Wasm::type_url() {
        let w: wasm_pb::Wasm = tc.decode()?;
        let plugin = wasm::compile(w.config.as_ref(), name, false, store).within("typed_config")?;
        Ok(plugin.map(|p| match p {
            NullVmPlugin::Stats(c) => NonTerminalFilterConfig::IstioStats(
                istio_metrics::compile_stats(&c, direction, store),
            ),
            NullVmPlugin::MetadataExchange(c) => {
                tcp_metadata_exchange_not_enforced(store);
                NonTerminalFilterConfig::MetadataExchange(c)
            }
        }))
    } else {
        Err(ConfigError::new("typed_config", "unsupported type"))
    }
}
