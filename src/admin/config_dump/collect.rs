//! What the dump needs from the xDS store, copied under its lock: `Arc`s of the compiled
//! resources (which keep their protos or encodings), names, versions and times. Nothing is
//! encoded, decoded or sorted while the lock is held; the xDS thread waits only for the copy.

use crate::snapshot::Listener;
use crate::upstream::cluster::Cluster;
use crate::xds::Kind;
use crate::xds::store::{ErrorState, Meta, Store};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The dynamic resources at one moment.
#[derive(Default)]
pub(super) struct Dynamic {
    /// Last accepted `version_info` per type.
    pub(super) versions: HashMap<Kind, String>,
    /// Active CDS clusters, by name.
    pub(super) clusters: Vec<(Meta, Arc<Cluster>)>,
    /// CDS clusters waiting for their endpoints or secrets.
    pub(super) warming_clusters: Vec<(Meta, Arc<Cluster>)>,
    /// Active LDS listeners, by name.
    pub(super) listeners: Vec<(String, Meta, Arc<Listener>)>,
    /// LDS listeners waiting for their routes or secrets.
    pub(super) warming_listeners: Vec<(String, Meta, Arc<Listener>)>,
    /// RDS route configurations (encoded), unsorted.
    pub(super) routes: Vec<(String, Meta, Arc<[u8]>)>,
    /// SDS secrets, unsorted.
    pub(super) secrets: Vec<(String, Meta, Arc<Secret>)>,
    /// Every secret name asked for.
    pub(super) wanted_secrets: BTreeSet<String>,
    /// The last rejection of each resource that has one.
    pub(super) errors: Vec<((Kind, String), ErrorState)>,
}

impl Dynamic {
    /// Copy what the dump shows out of `store`.
    pub(super) fn copy(store: &Store) -> Dynamic {
        let clusters =
            |m: &std::collections::BTreeMap<Arc<str>, crate::xds::store::ClusterEntry>| {
                m.values()
                    .map(|e| (e.meta.clone(), e.cluster.clone()))
                    .collect()
            };
        let listeners =
            |m: &std::collections::BTreeMap<String, crate::xds::store::ListenerEntry>| {
                m.iter()
                    .map(|(n, e)| (n.clone(), e.meta.clone(), e.listener.clone()))
                    .collect()
            };
        Dynamic {
            versions: store.versions.clone(),
            clusters: clusters(&store.clusters),
            warming_clusters: clusters(&store.warming_clusters),
            listeners: listeners(&store.listeners),
            warming_listeners: listeners(&store.warming_listeners),
            routes: store
                .routes
                .iter()
                .map(|(n, e)| (n.clone(), e.meta.clone(), e.raw.clone()))
                .collect(),
            secrets: store
                .secrets
                .iter()
                .map(|(n, e)| (n.clone(), e.meta.clone(), e.secret.clone()))
                .collect(),
            wanted_secrets: store.wanted_secrets(),
            errors: store
                .errors
                .iter()
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
        }
    }

    /// The last rejection of a resource.
    pub(super) fn error(&self, kind: Kind, name: &str) -> Option<&ErrorState> {
        self.errors
            .iter()
            .find(|((k, n), _)| *k == kind && n == name)
            .map(|(_, e)| e)
    }
}
