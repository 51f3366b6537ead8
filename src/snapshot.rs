//! The immutable compiled world: listeners, route tables and clusters, each behind an
//! `ArcSwap`. The data path loads a snapshot once per connection (listener) or stream (routes,
//! clusters) and never takes a lock a writer holds; `xds` (and the bootstrap loader) are the
//! only writers. Old snapshots live until their last reader drops them.

mod chain_match;
mod listener;

pub use chain_match::{ChainMatch, ConnMeta};
pub use listener::{
    FilterChain, FilterDisabled, HTTP_INITIAL_READ, HTTP_MAX_INSPECT, HttpConnectionManager,
    HttpInspector, HttpInspectorStats, Listener, ListenerFilter, ListenerFilterConfig,
    ListenerStats, NetworkFilter, RouteSource, TLS_MAX_CLIENT_HELLO, TlsInspector,
    TlsInspectorStats, compile_listener,
};

use crate::config::{ConfigError, Within};
use crate::router::RouteTable;
use crate::stats::Store;
use crate::upstream::cluster::Cluster;
use arc_swap::ArcSwap;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

/// Clusters by name.
pub type ClusterMap = HashMap<Arc<str>, Arc<Cluster>>;
/// RDS route tables by `route_config_name`.
pub type RouteMap = HashMap<String, Arc<RouteTable>>;
/// Listeners by name.
pub type ListenerMap = BTreeMap<String, Arc<Listener>>;
/// SDS secrets by name (the bootstrap's `static_resources.secrets` and SDS).
pub type SecretMap = crate::tls::SecretMap;

/// Everything the data path reads.
#[derive(Debug)]
pub struct World {
    /// The stats store.
    pub stats: Arc<Store>,
    /// Clusters (static and CDS).
    pub clusters: ArcSwap<ClusterMap>,
    /// RDS route tables.
    pub routes: ArcSwap<RouteMap>,
    /// Listeners (static and LDS).
    pub listeners: ArcSwap<ListenerMap>,
    /// SDS secrets.
    pub secrets: ArcSwap<SecretMap>,
    /// When the world was made: the `last_updated` of the bootstrap and its static resources
    /// in `/config_dump`.
    pub created: SystemTime,
}

impl World {
    /// An empty world.
    pub fn new(stats: Arc<Store>) -> Arc<Self> {
        Arc::new(Self {
            stats,
            clusters: ArcSwap::from_pointee(ClusterMap::new()),
            routes: ArcSwap::from_pointee(RouteMap::new()),
            listeners: ArcSwap::from_pointee(ListenerMap::new()),
            secrets: ArcSwap::from_pointee(SecretMap::new()),
            created: SystemTime::now(),
        })
    }

    /// Compile the bootstrap's `static_resources` without installing anything (`--mode
    /// validate` stops here).
    pub fn compile_static(&self, b: &Bootstrap) -> Result<(ClusterMap, ListenerMap), ConfigError> {
        let mut clusters = ClusterMap::new();
        let mut listeners = ListenerMap::new();
        let Some(sr) = &b.static_resources else {
            return Ok((clusters, listeners));
        };
        for (i, c) in sr.clusters.iter().enumerate() {
            let compiled = Cluster::compile(c, &self.stats)
                .within(format!("static_resources.clusters[{i}]"))?;
            if clusters.insert(compiled.name.clone(), compiled).is_some() {
                return Err(ConfigError::new(
                    format!("static_resources.clusters[{i}]"),
                    format!("duplicate cluster {}", c.name),
                ));
            }
        }
        for (i, l) in sr.listeners.iter().enumerate() {
            let compiled = compile_listener(l, &self.stats)
                .within(format!("static_resources.listeners[{i}]"))?;
            // By the compiled name: a listener without one gets a generated name.
            if listeners.insert(compiled.name.clone(), compiled).is_some() {
                return Err(ConfigError::new(
                    format!("static_resources.listeners[{i}]"),
                    format!("duplicate listener {}", l.name),
                ));
            }
        }
        Ok((clusters, listeners))
    }

    /// Compile the bootstrap's `static_resources` and install them (starting DNS resolution
    /// of DNS clusters). Nothing is installed if any resource is invalid.
    pub fn load_static(&self, b: &Bootstrap) -> Result<(), ConfigError> {
        let (clusters, listeners) = self.compile_static(b)?;
        for c in clusters.values() {
            c.start_dns();
        }
        // Static secrets are found by name like SDS ones (an SdsSecretConfig without
        // sds_config names one of them).
        if let Some(sr) = &b.static_resources
            && !sr.secrets.is_empty()
        {
            let mut map = (**self.secrets.load()).clone();
            for s in &sr.secrets {
                map.insert(s.name.clone(), Arc::new(s.clone()));
            }
            self.secrets.store(Arc::new(map));
        }
        self.clusters.store(Arc::new(clusters));
        self.listeners.store(Arc::new(listeners));
        Ok(())
    }

    /// A cluster by name, from the current snapshot.
    pub fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters.load().get(name).cloned()
    }
}
