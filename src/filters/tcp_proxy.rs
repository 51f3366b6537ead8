//! `envoy.filters.network.tcp_proxy` configuration.

use crate::config::{self, ConfigError};
use crate::stats::istio::IstioStats;
use crate::stats::{Counter, Gauge, Store};
use crate::stream_info::Observers;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp_pb;
use envoy_types::pb::google::protobuf::Any;
use std::time::Duration;

/// Where a tcp_proxy sends connections.
#[derive(Debug, Clone)]
pub enum TcpCluster {
    /// `cluster`.
    Single(String),
    /// `weighted_clusters`: names with cumulative weights, and the total.
    Weighted(Vec<(String, u64)>, u64),
}

impl TcpCluster {
    /// Choose a cluster name with a random number.
    pub fn pick(&self, random: u64) -> &str {
        match self {
            TcpCluster::Single(c) => c,
            TcpCluster::Weighted(list, total) => {
                let r = random % (*total).max(1);
                list.iter()
                    .find(|(_, upto)| r < *upto)
                    .or(list.last())
                    .map_or("", |(n, _)| n.as_str())
            }
        }
    }
}

/// Stats of one tcp_proxy, `tcp.<stat_prefix>.*`.
#[derive(Debug, Clone)]
pub struct TcpProxyStats {
    /// `downstream_cx_total`.
    pub downstream_cx_total: Counter,
    /// `downstream_cx_no_route`.
    pub downstream_cx_no_route: Counter,
    /// `downstream_cx_rx_bytes_total`.
    pub downstream_cx_rx_bytes_total: Counter,
    /// `downstream_cx_tx_bytes_total`.
    pub downstream_cx_tx_bytes_total: Counter,
    /// `idle_timeout`.
    pub idle_timeout: Counter,
    /// `max_downstream_connection_duration`: connections closed at that limit.
    pub max_downstream_connection_duration: Counter,
    /// Connections being proxied now.
    pub downstream_cx_active: Gauge,
}

/// Compiled `TcpProxy`.
#[derive(Debug, Clone)]
pub struct TcpProxyConfig {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `cluster` / `weighted_clusters`.
    pub cluster: TcpCluster,
    /// `idle_timeout`: default 1 h, 0 disables.
    pub idle_timeout: Option<Duration>,
    /// `max_connect_attempts` (default 1).
    pub max_connect_attempts: u32,
    /// `max_downstream_connection_duration`.
    pub max_downstream_connection_duration: Option<Duration>,
    /// `tunneling_config`: accepted, not enforced yet (the connection goes upstream as plain
    /// TCP).
    pub tunneling_config: Option<Box<tcp_pb::tcp_proxy::TunnelingConfig>>,
    /// `access_log`, and any other observer of connections that end.
    pub observers: Observers,
    /// `access_log_options.access_log_flush_interval` (or the deprecated field): while a
    /// connection is open, a `TcpPeriodic` record goes to the observers this often.
    pub access_log_flush_interval: Option<Duration>,
    /// Stats.
    pub stats: TcpProxyStats,
    /// The chain's Istio stats filter: Istio's TCP metrics of each connection.
    pub istio: Option<IstioStats>,
}

impl TcpProxyConfig {
    /// Compile from the filter's `typed_config`.
    pub fn compile(any: &Any, store: &Store) -> Result<Self, ConfigError> {
        let p: tcp_pb::TcpProxy = config::typed_config(any)?.decode()?;
        if p.stat_prefix.is_empty() {
            return Err(ConfigError::new("stat_prefix", "must not be empty"));
        }
        use tcp_pb::tcp_proxy::ClusterSpecifier;
        let cluster = match &p.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => TcpCluster::Single(c.clone()),
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                let mut total = 0u64;
                let mut list = Vec::new();
                for (i, c) in w.clusters.iter().enumerate() {
                    if c.name.is_empty() {
                        return Err(ConfigError::new(
                            format!("weighted_clusters.clusters[{i}].name"),
                            "must not be empty",
                        ));
                    }
                    if c.weight == 0 {
                        continue;
                    }
                    total += u64::from(c.weight);
                    list.push((c.name.clone(), total));
                }
                if total == 0 {
                    return Err(ConfigError::new(
                        "weighted_clusters",
                        "needs a cluster with a positive weight",
                    ));
                }
                TcpCluster::Weighted(list, total)
            }
            _ => {
                return Err(ConfigError::new(
                    "cluster",
                    "one of cluster or weighted_clusters is required",
                ));
            }
        };
        if p.tunneling_config.is_some() {
            // Istio sets it on the HBONE `connect_originate` internal listener, which receives
            // no connections in tern yet.
            store.not_enforced(
                "envoy.filters.network.tcp_proxy.tunneling_config",
                "TCP over HTTP CONNECT (HBONE, no issue yet): the connection is proxied as plain TCP",
            );
        }
        let observers = crate::access_log::compile(&p.access_log, store)?;
        #[allow(deprecated)]
        let flush = p
            .access_log_options
            .as_ref()
            .and_then(|o| o.access_log_flush_interval.as_ref())
            .or(p.access_log_flush_interval.as_ref());
        let access_log_flush_interval = config::duration(flush).filter(|d| !d.is_zero());
        #[allow(deprecated)]
        if p.flush_access_log_on_connected
            || p.access_log_options
                .as_ref()
                .is_some_and(|o| o.flush_access_log_on_connected || o.flush_access_log_on_start)
        {
            store.not_enforced(
                "envoy.filters.network.tcp_proxy.flush_access_log_on_connected",
                "access log records when the upstream connects or the connection starts",
            );
        }
        let c = |s: &str| store.counter(format!("tcp.{}.{s}", p.stat_prefix));
        Ok(Self {
            stats: TcpProxyStats {
                downstream_cx_total: c("downstream_cx_total"),
                downstream_cx_no_route: c("downstream_cx_no_route"),
                downstream_cx_rx_bytes_total: c("downstream_cx_rx_bytes_total"),
                downstream_cx_tx_bytes_total: c("downstream_cx_tx_bytes_total"),
                idle_timeout: c("idle_timeout"),
                max_downstream_connection_duration: c("max_downstream_connection_duration"),
                downstream_cx_active: store
                    .gauge(format!("tcp.{}.downstream_cx_active", p.stat_prefix)),
            },
            stat_prefix: p.stat_prefix.clone(),
            cluster,
            idle_timeout: config::timeout_or_disabled(
                p.idle_timeout.as_ref(),
                Some(Duration::from_secs(3600)),
            ),
            max_connect_attempts: config::u32_or(p.max_connect_attempts.as_ref(), 1).max(1),
            max_downstream_connection_duration: config::duration(
                p.max_downstream_connection_duration.as_ref(),
            )
            .filter(|d| !d.is_zero()),
            tunneling_config: p.tunneling_config.clone().map(Box::new),
            observers,
            access_log_flush_interval,
            istio: None,
        })
    }
}
