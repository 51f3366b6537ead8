//! Compiled listeners: listener filters, filter chains (transport socket, network filters)
//! and stats.

use super::World;
use super::chain_match::{ChainMatch, ConnMeta};
use crate::config::{self, Address, ConfigError, Within};
use crate::filters::{
    self, HcmConfig, NetworkFilterConfig, NonTerminalFilterConfig, TcpProxyConfig, hcm::RouteSpec,
};
use crate::router::RouteTable;
use crate::stats::istio::ListenerDirection;
use crate::stats::{Counter, Gauge, Histogram, Store, Unit};
use crate::tls::{SdsSecretConfig, Side, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use std::sync::Arc;
use std::time::Duration;

mod listener_filters;
#[cfg(test)]
mod tests;

pub use listener_filters::{
    FilterDisabled, HTTP_INITIAL_READ, HTTP_MAX_INSPECT, HttpInspector, HttpInspectorStats,
    ListenerFilter, ListenerFilterConfig, TLS_MAX_CLIENT_HELLO, TlsInspector, TlsInspectorStats,
};

/// The terminal network filter of a chain, ready to run.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    /// tcp_proxy.
    TcpProxy(Arc<TcpProxyConfig>),
    /// http_connection_manager.
    Hcm(Arc<HttpConnectionManager>),
    /// generic_proxy / dubbo_proxy (Dubbo, Bolt).
    GenericProxy(Arc<crate::filters::GenericProxyConfig>),
}

/// Where an HTTP connection manager finds its routes.
#[derive(Debug, Clone)]
pub enum RouteSource {
    /// Inline `route_config`, compiled with the listener.
    Static(Arc<RouteTable>),
    /// RDS: looked up by name in the world's route map on every stream.
    Rds {
        /// `route_config_name`.
        name: String,
        /// Where it comes from.
        config_source: Box<envoy_types::pb::envoy::config::core::v3::ConfigSource>,
    },
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
            RouteSource::Rds { name, .. } => world.routes.load().get(name).cloned(),
        }
    }
}

impl super::chain_match::HasMatch for Arc<FilterChain> {
    fn chain_match(&self) -> &ChainMatch {
        &self.matcher
    }
}

/// One filter chain.
#[derive(Debug)]
pub struct FilterChain {
    /// `FilterChain.name`.
    pub name: String,
    /// `filter_chain_match`, compiled.
    pub matcher: ChainMatch,
    /// `transport_socket` (none: plaintext).
    pub transport_socket: Option<TransportSocket>,
    /// The network filters before the terminal one (none enforced yet).
    pub filters: Vec<NonTerminalFilterConfig>,
    /// The terminal network filter.
    pub network: NetworkFilter,
}

impl FilterChain {
    /// Whether the chain terminates TLS. Until TLS arrives (issue #6) a connection that
    /// selects such a chain is closed and counted in `listener.<prefix>.tls_not_supported`.
    pub fn requires_tls(&self) -> bool {
        self.transport_socket
            .as_ref()
            .is_some_and(TransportSocket::is_tls)
    }
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
    /// `tls_not_supported`: connections closed because their filter chain needs TLS, which
    /// tern does not terminate yet (issue #6).
    pub tls_not_supported: Counter,
    /// `downstream_cx_length_ms`.
    pub downstream_cx_length_ms: Histogram,
    /// `downstream_pre_cx_active`: connections in the listener filters.
    pub downstream_pre_cx_active: Gauge,
    /// `downstream_pre_cx_timeout`: connections whose listener filters ran out of
    /// `listener_filters_timeout`.
    pub downstream_pre_cx_timeout: Counter,
}

/// A compiled listener.
#[derive(Debug)]
pub struct Listener {
    /// `Listener.name`, or a generated UUID when it is empty (as Envoy).
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
    /// `listener_filters`, compiled: the TLS and HTTP inspectors run on TCP connections
    /// before filter chain selection; the others are decoded only.
    pub listener_filters: Vec<ListenerFilter>,
    /// `listener_filters_timeout` (default 15 s; 0 disables).
    pub listener_filters_timeout: Option<Duration>,
    /// `continue_on_listener_filters_timeout`.
    pub continue_on_listener_filters_timeout: bool,
    /// Filter chains in config order.
    pub chains: Vec<Arc<FilterChain>>,
    /// `default_filter_chain`.
    pub default_chain: Option<Arc<FilterChain>>,
    /// Stats.
    pub stats: ListenerStats,
    /// `access_log`: told about connections that end before a filter chain takes them (no
    /// filter chain matched: `NR`).
    pub access_log: crate::stream_info::Observers,
    /// `traffic_direction`.
    pub direction: crate::stream_info::TrafficDirection,
    /// The proto, for `/config_dump` and for telling a changed listener from an equal one.
    pub source: listener_pb::Listener,
}

impl Listener {
    /// The SDS secrets the filter chains' transport sockets refer to (`default`, `ROOTCA` in
    /// Istio), without duplicates, for the SDS subscription.
    pub fn sds_secrets(&self) -> Vec<SdsSecretConfig> {
        let mut out = Vec::new();
        for chain in self.chains.iter().chain(self.default_chain.as_ref()) {
            if let Some(ts) = &chain.transport_socket {
                ts.sds_secrets_into(&mut out);
            }
        }
        out
    }

    /// The filter chain for a connection, by Envoy's match order; `default_filter_chain` when
    /// none matches.
    pub fn select_chain(&self, meta: &ConnMeta<'_>) -> Option<&Arc<FilterChain>> {
        self.select_chain_index(meta)
            .and_then(|i| self.chains.get(i).or(self.default_chain.as_ref()))
    }

    /// The index of the chain for a connection: into `chains`, or `chains.len()` for the
    /// default chain.
    pub fn select_chain_index(&self, meta: &ConnMeta<'_>) -> Option<usize> {
        match super::chain_match::select(&self.chains, meta) {
            Some(i) => Some(i),
            None => self.default_chain.as_ref().map(|_| self.chains.len()),
        }
    }
}

/// Compile a `Listener`. Errors name the listener and the field.
pub fn compile_listener(
    l: &listener_pb::Listener,
    stats: &Store,
) -> Result<Arc<Listener>, ConfigError> {
    let name = if l.name.is_empty() {
        "(unnamed)"
    } else {
        l.name.as_str()
    };
    compile_inner(l, stats).within(format!("listener {name}"))
}

/// A name for a listener configured without one: as Envoy, a random UUID (only static
/// listeners can go without a name; LDS resources are named).
fn generated_name() -> String {
    let v: u128 = rand::random();
    // Version 4, variant 1.
    let v = (v & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn compile_inner(l: &listener_pb::Listener, store: &Store) -> Result<Arc<Listener>, ConfigError> {
    let name = if l.name.is_empty() {
        generated_name()
    } else {
        l.name.clone()
    };
    if l.api_listener.is_some() {
        return Err(ConfigError::new(
            "api_listener",
            "API listeners are not supported",
        ));
    }
    use listener_pb::listener::ListenerSpecifier;
    let internal = matches!(
        l.listener_specifier,
        Some(ListenerSpecifier::InternalListener(_))
    );
    let address = match (&l.address, internal) {
        (Some(a), false) => Address::from_proto(a).within("address")?,
        (None, false) => return Err(ConfigError::new("address", "is required")),
        (Some(_), true) => {
            return Err(ConfigError::new(
                "address",
                "must not be set on an internal listener",
            ));
        }
        (None, true) => {
            store.not_enforced(
                "internal_listener",
                "internal listeners receive no connections (no internal upstreams yet)",
            );
            Address::Internal(name.clone())
        }
    };
    let mut listener_filters = Vec::with_capacity(l.listener_filters.len());
    for (i, f) in l.listener_filters.iter().enumerate() {
        listener_filters
            .push(ListenerFilter::compile(f, store).within(format!("listener_filters[{i}]"))?);
    }
    if matches!(address, Address::Pipe(_))
        && listener_filters.iter().any(|f| {
            matches!(
                f.config,
                ListenerFilterConfig::TlsInspector(_) | ListenerFilterConfig::HttpInspector(_)
            )
        })
    {
        store.not_enforced(
            "listener_filters.pipe",
            "TLS and HTTP inspectors run on TCP listeners only",
        );
    }
    let istio_direction = filters::istio_metrics::listener_direction(l.traffic_direction);
    let mut chains = Vec::with_capacity(l.filter_chains.len());
    for (i, fc) in l.filter_chains.iter().enumerate() {
        chains
            .push(compile_chain(fc, store, istio_direction).within(format!("filter_chains[{i}]"))?);
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
        Some(fc) => Some(compile_chain(fc, store, istio_direction).within("default_filter_chain")?),
        None => None,
    };
    if chains.is_empty() && default_chain.is_none() {
        return Err(ConfigError::new(
            "filter_chains",
            "a listener needs a filter chain or a default_filter_chain",
        ));
    }
    // Envoy's stat names have no colons: `listener.127.0.0.1_15001`, `listener.[__]_15001`.
    let prefix = match &address {
        Address::Tcp(a) => a.to_string().replace(':', "_"),
        Address::Pipe(p) => p.display().to_string(),
        Address::Internal(n) => n.clone(),
    };
    let prefix = if l.stat_prefix.is_empty() {
        prefix
    } else {
        l.stat_prefix.clone()
    };
    let c = |s: &str| store.counter(format!("listener.{prefix}.{s}"));
    let access_log = crate::access_log::compile(&l.access_log, store)?;
    use envoy_types::pb::envoy::config::core::v3::TrafficDirection as Direction;
    let direction = match Direction::try_from(l.traffic_direction) {
        Ok(Direction::Inbound) => crate::stream_info::TrafficDirection::Inbound,
        Ok(Direction::Outbound) => crate::stream_info::TrafficDirection::Outbound,
        _ => crate::stream_info::TrafficDirection::Unspecified,
    };
    Ok(Arc::new(Listener {
        name,
        address,
        // An internal listener has no socket: it is reached by hand-off only.
        bind_to_port: !internal && config::bool_or(l.bind_to_port.as_ref(), true),
        use_original_dst: config::bool_or(l.use_original_dst.as_ref(), false),
        reuse_port: config::bool_or(l.enable_reuse_port.as_ref(), true),
        backlog: config::u32_or(l.tcp_backlog_size.as_ref(), 1024),
        per_connection_buffer_limit: config::u32_or(
            l.per_connection_buffer_limit_bytes.as_ref(),
            1024 * 1024,
        ),
        listener_filters,
        listener_filters_timeout: config::timeout_or_disabled(
            l.listener_filters_timeout.as_ref(),
            Some(Duration::from_secs(15)),
        ),
        continue_on_listener_filters_timeout: l.continue_on_listener_filters_timeout,
        chains,
        default_chain,
        stats: ListenerStats {
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_active: store.gauge(format!("listener.{prefix}.downstream_cx_active")),
            downstream_cx_destroy: c("downstream_cx_destroy"),
            no_filter_chain_match: c("no_filter_chain_match"),
            tls_not_supported: c("tls_not_supported"),
            downstream_cx_length_ms: store.histogram(
                format!("listener.{prefix}.downstream_cx_length_ms"),
                Unit::Milliseconds,
            ),
            downstream_pre_cx_active: store
                .gauge(format!("listener.{prefix}.downstream_pre_cx_active")),
            downstream_pre_cx_timeout: c("downstream_pre_cx_timeout"),
        },
        access_log,
        direction,
        source: l.clone(),
    }))
}

fn compile_chain(
    fc: &listener_pb::FilterChain,
    store: &Store,
    direction: ListenerDirection,
) -> Result<Arc<FilterChain>, ConfigError> {
    let transport_socket = fc
        .transport_socket
        .as_ref()
        .map(|ts| TransportSocket::compile(ts, Side::Downstream, store))
        .transpose()
        .within("transport_socket")?;
    let matcher =
        ChainMatch::compile(fc.filter_chain_match.as_ref()).within("filter_chain_match")?;
    let compiled = filters::compile_network_filters(&fc.filters, store, direction)?;
    let network = match compiled.terminal {
        NetworkFilterConfig::TcpProxy(t) => NetworkFilter::TcpProxy(Arc::new(*t)),
        NetworkFilterConfig::GenericProxy(g) => NetworkFilter::GenericProxy(Arc::new(*g)),
        NetworkFilterConfig::Hcm(h) => {
            let routes = match &h.route {
                RouteSpec::Inline(rc) => RouteSource::Static(Arc::new(
                    RouteTable::compile(rc)
                        .within("filters.http_connection_manager.route_config")?,
                )),
                RouteSpec::Rds {
                    name,
                    config_source,
                } => RouteSource::Rds {
                    name: name.clone(),
                    config_source: config_source.clone(),
                },
            };
            NetworkFilter::Hcm(Arc::new(HttpConnectionManager { config: *h, routes }))
        }
    };
    Ok(Arc::new(FilterChain {
        name: fc.name.clone(),
        matcher,
        transport_socket,
        filters: compiled.filters,
        network,
    }))
}
