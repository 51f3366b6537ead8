//! xDS stats with Envoy's names: `control_plane.*`, `cluster_manager.cds.*`,
//! `listener_manager.lds.*`, `http.<stat_prefix>.rds.<name>.*` and `sds.<name>.*`. EDS's
//! `cluster.<name>.update_*` live in the cluster's own block (`upstream::cluster::ClusterStats`).

use crate::stats::{Counter, Gauge, Store};
use std::collections::HashMap;

/// The counters of [`UpdateStats`], one block per prefix.
const UPDATE_NAMES: &[&str] = &[
    "update_attempt",
    "update_success",
    "update_rejected",
    "update_empty",
];

/// `update_attempt`, `update_success`, `update_rejected`, `update_empty` and `version` under
/// one prefix.
#[derive(Debug, Clone)]
pub struct UpdateStats {
    /// `update_attempt`.
    pub attempt: Counter,
    /// `update_success`.
    pub success: Counter,
    /// `update_rejected`.
    pub rejected: Counter,
    /// `update_empty`.
    pub empty: Counter,
    /// `version`: a hash of the last accepted `version_info`.
    pub version: Gauge,
}

impl UpdateStats {
    /// The stats under `prefix` (which ends with a dot).
    pub fn new(store: &Store, prefix: &str) -> UpdateStats {
        let mut c = store.counter_block(prefix, UPDATE_NAMES).into_iter();
        let mut next = || c.next().unwrap_or_default();
        UpdateStats {
            attempt: next(),
            success: next(),
            rejected: next(),
            empty: next(),
            version: store.gauge(format!("{prefix}version")),
        }
    }
}

/// `control_plane.*`.
#[derive(Debug, Clone)]
pub struct ControlPlaneStats {
    /// `control_plane.connected_state`: 1 while the stream is up.
    pub connected_state: Gauge,
    /// `control_plane.rate_limit_enforced`: requests delayed by `rate_limit_settings`.
    pub rate_limit_enforced: Counter,
    /// `control_plane.pending_requests`: requests waiting for a rate-limit token.
    pub pending_requests: Gauge,
}

impl ControlPlaneStats {
    /// The stats.
    pub fn new(store: &Store) -> ControlPlaneStats {
        ControlPlaneStats {
            connected_state: store.gauge("control_plane.connected_state"),
            rate_limit_enforced: store.counter("control_plane.rate_limit_enforced"),
            pending_requests: store.gauge("control_plane.pending_requests"),
        }
    }
}

/// The store's stats.
#[derive(Debug)]
pub struct XdsStats {
    /// `cluster_manager.cds.*`.
    pub cds: UpdateStats,
    /// `listener_manager.lds.*`.
    pub lds: UpdateStats,
    /// `cluster_manager.cluster_added`.
    pub cluster_added: Counter,
    /// `cluster_manager.cluster_modified`.
    pub cluster_modified: Counter,
    /// `cluster_manager.cluster_removed`.
    pub cluster_removed: Counter,
    /// `cluster_manager.active_clusters` (dynamic).
    pub active_clusters: Gauge,
    /// `cluster_manager.warming_clusters`.
    pub warming_clusters: Gauge,
    /// `listener_manager.listener_added`.
    pub listener_added: Counter,
    /// `listener_manager.listener_modified`.
    pub listener_modified: Counter,
    /// `listener_manager.listener_removed`.
    pub listener_removed: Counter,
    /// `listener_manager.total_listeners_active` (dynamic).
    pub listeners_active: Gauge,
    /// `listener_manager.total_listeners_warming`.
    pub listeners_warming: Gauge,
    rds: HashMap<String, (String, UpdateStats)>,
    sds: HashMap<String, (String, UpdateStats)>,
}

impl XdsStats {
    /// Resolve the fixed stats.
    pub fn new(store: &Store) -> XdsStats {
        XdsStats {
            cds: UpdateStats::new(store, "cluster_manager.cds."),
            lds: UpdateStats::new(store, "listener_manager.lds."),
            cluster_added: store.counter("cluster_manager.cluster_added"),
            cluster_modified: store.counter("cluster_manager.cluster_modified"),
            cluster_removed: store.counter("cluster_manager.cluster_removed"),
            active_clusters: store.gauge("cluster_manager.active_clusters"),
            warming_clusters: store.gauge("cluster_manager.warming_clusters"),
            listener_added: store.counter("listener_manager.listener_added"),
            listener_modified: store.counter("listener_manager.listener_modified"),
            listener_removed: store.counter("listener_manager.listener_removed"),
            listeners_active: store.gauge("listener_manager.total_listeners_active"),
            listeners_warming: store.gauge("listener_manager.total_listeners_warming"),
            rds: HashMap::new(),
            sds: HashMap::new(),
        }
    }

    /// `http.<stat_prefix>.rds.<name>.*`; the prefix is fixed by the first call for a name.
    pub fn rds(&mut self, store: &Store, name: &str, stat_prefix: &str) -> UpdateStats {
        self.rds
            .entry(name.to_string())
            .or_insert_with(|| {
                let p = format!("http.{stat_prefix}.rds.{name}.");
                let s = UpdateStats::new(store, &p);
                (p, s)
            })
            .1
            .clone()
    }

    /// Forget the stats of resources that are gone: RDS and SDS stats of names nobody
    /// subscribes to any more (Envoy drops a removed resource's stats too; without this, churn
    /// would grow the registry for ever). EDS stats live in their cluster's block and go with it.
    pub fn retain(
        &mut self,
        store: &Store,
        routes: impl Fn(&str) -> bool,
        secrets: impl Fn(&str) -> bool,
    ) {
        let forget = |map: &mut HashMap<String, (String, UpdateStats)>,
                      keep: &dyn Fn(&str) -> bool| {
            map.retain(|name, (prefix, _)| {
                let k = keep(name);
                if !k {
                    store.remove_block(prefix, UPDATE_NAMES, &["version"]);
                }
                k
            });
        };
        forget(&mut self.rds, &routes);
        forget(&mut self.sds, &secrets);
    }

    /// `sds.<name>.*`.
    pub fn sds(&mut self, store: &Store, name: &str) -> UpdateStats {
        self.sds
            .entry(name.to_string())
            .or_insert_with(|| {
                let p = format!("sds.{name}.");
                let s = UpdateStats::new(store, &p);
                (p, s)
            })
            .1
            .clone()
    }
}
