//! Compiled listeners and filter chains.

use super::World;
use super::chain_match::{ChainMatch, ConnMeta};
use crate::config::{self, Address, ConfigError, Within};
use crate::filters::{
    self, HcmConfig, NetworkFilterConfig, NonTerminalFilterConfig, TcpProxyConfig, hcm::RouteSpec,
};
use crate::router::RouteTable;
use crate::stats::{Counter, Gauge, Store};
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use std::sync::Arc;

/// The terminal network filter of a chain, ready to run.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    /// tcp_proxy.
    TcpProxy(Arc<TcpProxyConfig>),
    /// http_connection_manager.
    Hcm(Arc<HttpConnectionManager>),
}

/// Where an HTTP connection manager finds its routes.
#[derive(Debug, Clone)]
pub enum RouteSource {
    /// Inline `route_config`, compiled with the listener.
    Static(Arc<RouteTable>),
    /// RDS: looked up by name in the world's route map on every stream.
    Rds(String),
}

/// An HTTP connection manager: its settings and its route source.
#[derive(Debug)]
pub struct HttpConnectionManager {
    /// Compiled settings.
    pub config: HcmConfig,
    /// The route table.
    pub routes: RouteSource,
}

impl HttpConnectionManager {
    /// The route table a new stream uses.
    pub fn route_table(&self, world: &World) -> Option<Arc<RouteTable>> {
        match &self.routes {
            RouteSource::Static(t) => Some(t.clone()),
            RouteSource::Rds(name) => world.routes.load().get(name).cloned(),
        }
    }
}

/// One filter chain.
#[derive(Debug)]
pub struct FilterChain {
    /// `FilterChain.name`.
    pub name: String,
    /// `filter_chain_match`, compiled.
    pub matcher: ChainMatch,
    /// The network filters before the terminal one (none enforced yet).
    pub filters: Vec<NonTerminalFilterConfig>,
    /// The terminal network filter.
    pub network: NetworkFilter,
}

/// Stats `listener.<address>.*`.
#[derive(Debug, Clone)]
pub struct ListenerStats {
    /// `downstream_cx_total`.
    pub downstream_cx_total: Counter,
    /// `downstream_cx_active`.
    pub downstream_cx_active: Gauge,
    /// `downstream_cx_destroy`.
    pub downstream_cx_destroy: Counter,
    /// `no_filter_chain_match`.
    pub no_filter_chain_match: Counter,
}

/// A compiled listener.
#[derive(Debug)]
pub struct Listener {
    /// `Listener.name`.
    pub name: String,
    /// `Listener.address`.
    pub address: Address,
    /// `bind_to_port` (default true). Listeners that do not bind receive connections handed
    /// over by a `use_original_dst` listener.
    pub bind_to_port: bool,
    /// `use_original_dst`.
    pub use_original_dst: bool,
    /// `enable_reuse_port` (default true).
    pub reuse_port: bool,
    /// `tcp_backlog_size` (default 128... Envoy uses 128 too... SOMAXCONN on Linux).
    pub backlog: u32,
    /// `per_connection_buffer_limit_bytes` (default 1 MiB).
    pub per_connection_buffer_limit: u32,
    /// Filter chains in config order.
    pub chains: Vec<Arc<FilterChain>>,
    /// `default_filter_chain`.
    pub default_chain: Option<Arc<FilterChain>>,
    /// Stats.
    pub stats: ListenerStats,
    /// The proto, for `/config_dump` and for telling a changed listener from an equal one.
    pub source: listener_pb::Listener,
}

impl Listener {
    /// The filter chain for a connection, by Envoy's match order; `default_filter_chain` when
    /// none matches.
    pub fn select_chain(&self, meta: &ConnMeta<'_>) -> Option<&Arc<FilterChain>> {
        let matchers: Vec<&ChainMatch> = self.chains.iter().map(|c| &c.matcher).collect();
        match super::chain_match::select(&matchers, meta) {
            Some(i) => self.chains.get(i),
            None => self.default_chain.as_ref(),
        }
    }
}

/// Compile a `Listener`. Errors name the listener and the field.
pub fn compile_listener(
    l: &listener_pb::Listener,
    stats: &Store,
) -> Result<Arc<Listener>, ConfigError> {
    compile_inner(l, stats).within(format!("listener {}", l.name))
}

fn compile_inner(l: &listener_pb::Listener, store: &Store) -> Result<Arc<Listener>, ConfigError> {
    if l.name.is_empty() {
        return Err(ConfigError::new("name", "must not be empty"));
    }
    let address = Address::from_proto(
        l.address
            .as_ref()
            .ok_or_else(|| ConfigError::new("address", "is required"))?,
    )
    .within("address")?;
    if l.api_listener.is_some() {
        return Err(ConfigError::new(
            "api_listener",
            "API listeners are not supported",
        ));
    }
    if let Some((i, f)) = l.listener_filters.iter().enumerate().next() {
        // Listener filters arrive with the TLS and sidecar work; until then they are an error
        // rather than silently ignored.
        return Err(ConfigError::new(
            format!("listener_filters[{i}]"),
            format!("listener filter {} is not supported yet", f.name),
        ));
    }
    let mut chains = Vec::with_capacity(l.filter_chains.len());
    for (i, fc) in l.filter_chains.iter().enumerate() {
        chains.push(compile_chain(fc, store).within(format!("filter_chains[{i}]"))?);
    }
    // Envoy rejects two chains with identical matches.
    for (i, a) in chains.iter().enumerate() {
        if let Some(j) = chains[..i].iter().position(|b| b.matcher == a.matcher) {
            return Err(ConfigError::new(
                format!("filter_chains[{i}]"),
                format!(
                    "multiple filter chains with the same matching rules (also filter_chains[{j}])"
                ),
            ));
        }
    }
    let default_chain = match &l.default_filter_chain {
        Some(fc) => Some(compile_chain(fc, store).within("default_filter_chain")?),
        None => None,
    };
    if chains.is_empty() && default_chain.is_none() {
        return Err(ConfigError::new(
            "filter_chains",
            "a listener needs a filter chain or a default_filter_chain",
        ));
    }
    let prefix = match &address {
        Address::Tcp(a) => a.to_string(),
        Address::Pipe(p) => p.display().to_string(),
        Address::Internal(n) => n.clone(),
    };
    let prefix = if l.stat_prefix.is_empty() {
        prefix
    } else {
        l.stat_prefix.clone()
    };
    let c = |s: &str| store.counter(format!("listener.{prefix}.{s}"));
    Ok(Arc::new(Listener {
        name: l.name.clone(),
        address,
        bind_to_port: config::bool_or(l.bind_to_port.as_ref(), true),
        use_original_dst: config::bool_or(l.use_original_dst.as_ref(), false),
        reuse_port: config::bool_or(l.enable_reuse_port.as_ref(), true),
        backlog: config::u32_or(l.tcp_backlog_size.as_ref(), 1024),
        per_connection_buffer_limit: config::u32_or(
            l.per_connection_buffer_limit_bytes.as_ref(),
            1024 * 1024,
        ),
        chains,
        default_chain,
        stats: ListenerStats {
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_active: store.gauge(format!("listener.{prefix}.downstream_cx_active")),
            downstream_cx_destroy: c("downstream_cx_destroy"),
            no_filter_chain_match: c("no_filter_chain_match"),
        },
        source: l.clone(),
    }))
}

fn compile_chain(
    fc: &listener_pb::FilterChain,
    store: &Store,
) -> Result<Arc<FilterChain>, ConfigError> {
    if fc.transport_socket.is_some() {
        return Err(ConfigError::new(
            "transport_socket",
            "TLS transport sockets are not supported yet",
        ));
    }
    let matcher =
        ChainMatch::compile(fc.filter_chain_match.as_ref()).within("filter_chain_match")?;
    let compiled = filters::compile_network_filters(&fc.filters, store)?;
    let network = match compiled.terminal {
        NetworkFilterConfig::TcpProxy(t) => NetworkFilter::TcpProxy(Arc::new(t)),
        NetworkFilterConfig::Hcm(h) => {
            let routes = match &h.route {
                RouteSpec::Inline(rc) => RouteSource::Static(Arc::new(
                    RouteTable::compile(rc)
                        .within("filters.http_connection_manager.route_config")?,
                )),
                RouteSpec::Rds(name) => RouteSource::Rds(name.clone()),
            };
            NetworkFilter::Hcm(Arc::new(HttpConnectionManager { config: *h, routes }))
        }
    };
    Ok(Arc::new(FilterChain {
        name: fc.name.clone(),
        matcher,
        filters: compiled.filters,
        network,
    }))
}
