//! CDS: clusters, their warming and their snapshot.

use super::*;

impl Store {
    pub(super) fn apply_clusters(&mut self, u: Update) -> Outcome {
        self.apply_wildcard(
            u,
            &Wildcard::<cluster_pb::Cluster> {
                kind: Kind::Cluster,
                what: "cluster",
                name: |c| &c.name,
                stats: |s| s.stats.cds.clone(),
                add: Store::add_cluster,
                held: |s| {
                    s.clusters
                        .keys()
                        .chain(s.warming_clusters.keys())
                        .map(|n| n.to_string())
                        .collect()
                },
                remove: Store::remove_cluster,
                publish: Store::publish_clusters,
                phase: |s| &mut s.cds_phase,
            },
        )
    }

    /// Remove a dynamic cluster (active or warming); false when there was none.
    fn remove_cluster(&mut self, name: &str) -> bool {
        if self.static_clusters.contains_key(name) {
            return false;
        }
        let was_active = self.clusters.remove(name);
        if let Some(e) = &was_active {
            self.retire(e.cluster.clone());
        }
        let was_warming = self.warming_clusters.remove(name);
        if let Some(e) = was_active.as_ref().or(was_warming.as_ref()) {
            // A removed cluster's stats go with it, as in Envoy (churn must not grow the
            // registry for ever).
            e.cluster
                .stats
                .remove(&self.world.stats, e.cluster.stat_name());
        }
        if let Some(e) = &was_active {
            // Pools of its hosts close once idle; in-flight requests hold their own handles.
            e.cluster.set_hosts(PrioritySet::default());
        }
        if was_active.is_none() && was_warming.is_none() {
            return false;
        }
        info!(cluster = %name, "cds: cluster removed");
        self.stats.cluster_removed.inc();
        true
    }

    /// Add or update one cluster. `Ok(false)` when it is unchanged.
    pub(super) fn add_cluster(
        &mut self,
        c: cluster_pb::Cluster,
        version: &str,
    ) -> Result<bool, String> {
        let name = c.name.clone();
        if self.static_clusters.contains_key(name.as_str()) {
            return Err(format!(
                "cluster {name}: a static cluster cannot be added or updated by CDS"
            ));
        }
        let encoded = c.encode_to_vec();
        let same =
            |e: Option<&ClusterEntry>| e.is_some_and(|e| e.cluster.source_bytes() == encoded);
        if same(self.warming_clusters.get(name.as_str()))
            || (same(self.clusters.get(name.as_str()))
                && !self.warming_clusters.contains_key(name.as_str()))
        {
            return Ok(false);
        }
        let eds =
            match &c.cluster_discovery_type {
                Some(cluster_pb::cluster::ClusterDiscoveryType::Type(t))
                    if *t == cluster_pb::cluster::DiscoveryType::Eds as i32 =>
                {
                    let cs = c
                        .eds_cluster_config
                        .as_ref()
                        .and_then(|e| e.eds_config.as_ref())
                        .ok_or_else(|| {
                            format!("cluster {name}: eds_cluster_config.eds_config is required")
                        })?;
                    Some(self.resolve_dynamic(cs).map_err(|e| {
                        format!("cluster {name}: eds_cluster_config.eds_config: {e}")
                    })?)
                }
                _ => None,
            };
        let compiled = Cluster::compile(&c, &self.world.stats).map_err(|e| e.to_string())?;
        let mut timeouts: Vec<Option<Duration>> =
            eds.iter().map(|r| r.initial_fetch_timeout).collect();
        for (secret, cs) in sds_refs(compiled.sds_secrets()) {
            let r = self
                .resolve_dynamic(&cs)
                .map_err(|e| format!("cluster {name}: secret {secret}: sds_config: {e}"))?;
            timeouts.push(r.initial_fetch_timeout);
        }
        if self.clusters.contains_key(name.as_str()) {
            self.stats.cluster_modified.inc();
        } else {
            self.stats.cluster_added.inc();
        }
        let mut entry = ClusterEntry {
            meta: Meta::now(version),
            cluster: compiled,
            deadline: None,
        };
        if let Some(service_name) = entry.cluster.eds_service_name()
            && self.endpoints.contains_key(service_name)
            && let Some(set) = self.hosts_of_service(service_name)
        {
            entry.cluster.set_hosts(set);
        }
        entry.cluster.start_dns();
        if self.cluster_ready(&entry.cluster) {
            self.warming_clusters.remove(name.as_str());
            if let Some(old) = self.clusters.insert(entry.cluster.name.clone(), entry) {
                self.retire(old.cluster);
            }
        } else {
            entry.deadline = longest(timeouts).map(|t| Instant::now() + t);
            debug!(cluster = %name, "cds: cluster warming until its endpoints and secrets arrive");
            self.warming_clusters
                .insert(entry.cluster.name.clone(), entry);
        }
        Ok(true)
    }

    pub(super) fn activate_cluster(&mut self, name: &str) {
        if let Some(mut e) = self.warming_clusters.remove(name) {
            e.deadline = None;
            debug!(cluster = %name, "cluster warmed");
            if let Some(old) = self.clusters.insert(e.cluster.name.clone(), e) {
                self.retire(old.cluster);
            }
        }
    }

    pub(super) fn publish_clusters(&mut self) {
        let mut map = self.static_clusters.clone();
        map.reserve(self.clusters.len());
        for (n, e) in &self.clusters {
            map.insert(n.clone(), e.cluster.clone());
        }
        let old = self.world.clusters.swap(Arc::new(map));
        self.retire(old);
        self.stats.active_clusters.set(self.clusters.len() as i64);
        self.stats
            .warming_clusters
            .set(self.warming_clusters.len() as i64);
    }
}
