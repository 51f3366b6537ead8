//! What tern wants from each source: the names its listeners and clusters use, and the
//! clean-up of what nobody names any more.

use super::*;

impl Store {
    /// Recompute what each source is asked for, and drop resources nobody names any more.
    pub(super) fn recompute_interest(&mut self) {
        let mut out: BTreeMap<(SourceKey, Kind), Interest> = BTreeMap::new();
        if let Some(r) = &self.plan.cds {
            out.insert((r.key.clone(), Kind::Cluster), Interest::Wildcard);
        }
        if let Some(r) = &self.plan.lds
            && self.lds_phase != Phase::NotStarted
        {
            out.insert((r.key.clone(), Kind::Listener), Interest::Wildcard);
        }
        let mut add = |key: SourceKey, kind: Kind, name: &str| {
            if let Interest::Names(set) = out
                .entry((key, kind))
                .or_insert_with(|| Interest::Names(Arc::default()))
            {
                Arc::make_mut(set).insert(name.to_string());
            }
        };
        let clusters = self
            .static_clusters
            .values()
            .chain(self.clusters.values().map(|e| &e.cluster))
            .chain(self.warming_clusters.values().map(|e| &e.cluster));
        let mut eds_names = HashSet::new();
        let mut eds_index: HashMap<String, Vec<String>> = HashMap::new();
        for c in clusters {
            if let Some(service_name) = c.eds_service_name() {
                // A cluster named after its service (all of Istio's) is found by name; the
                // index holds only the others.
                if service_name != &*c.name {
                    eds_index
                        .entry(service_name.to_string())
                        .or_default()
                        .push(c.name.to_string());
                }
                let cs = c.eds_config();
                if let Some(Ok(r)) = cs.map(|cs| self.plan.resolve(&cs)) {
                    add(r.key, Kind::Endpoint, service_name);
                    eds_names.insert(service_name);
                }
            }
        }
        let listeners = self
            .static_listeners
            .values()
            .chain(self.listeners.values().map(|e| &e.listener))
            .chain(self.warming_listeners.values().map(|e| &e.listener));
        let mut rds = HashSet::new();
        let mut secrets = HashSet::new();
        for l in listeners {
            for (name, _, cs) in rds_refs(l) {
                if let Ok(r) = self.plan.resolve(cs) {
                    add(r.key, Kind::Route, name);
                    rds.insert(name.to_string());
                }
            }
            for (name, cs) in sds_refs(l.sds_secrets()) {
                if let Ok(r) = self.plan.resolve(&cs) {
                    add(r.key, Kind::Secret, &name);
                    secrets.insert(name);
                }
            }
        }
        let clusters = self
            .static_clusters
            .values()
            .chain(self.clusters.values().map(|e| &e.cluster))
            .chain(self.warming_clusters.values().map(|e| &e.cluster));
        for c in clusters {
            for (name, cs) in sds_refs(c.sds_secrets()) {
                if let Ok(r) = self.plan.resolve(&cs) {
                    add(r.key, Kind::Secret, &name);
                    secrets.insert(name);
                }
            }
        }
        self.stats.retain(
            &self.world.stats,
            |r| rds.contains(r),
            |n| secrets.contains(n),
        );
        // Only the SDS secrets no longer wanted leave the world: the bootstrap's static
        // secrets (named without an sds_config) stay.
        let dropped: HashSet<String> = self
            .secrets
            .keys()
            .filter(|n| !secrets.contains(*n))
            .cloned()
            .collect();
        self.secrets.retain(|n, _| secrets.contains(n));
        if !dropped.is_empty() {
            let map: crate::snapshot::SecretMap = self
                .world
                .secrets
                .load()
                .iter()
                .filter(|(n, _)| !dropped.contains(*n))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            let old = self.world.secrets.swap(Arc::new(map));
            self.graveyard.push(old);
        }
        let eds_names: HashSet<String> = eds_names.into_iter().map(String::from).collect();
        eds_index.shrink_to_fit();
        self.eds_index = eds_index;
        self.endpoints.retain(|n, _| eds_names.contains(&**n));
        let endpoints = &self.endpoints;
        self.endpoint_hashes
            .retain(|h, n| endpoints.get(n.as_str()).is_some_and(|e| e.hash == *h));
        let mut routes_dropped = false;
        self.routes.retain(|n, _| {
            let keep = rds.contains(n);
            routes_dropped |= !keep;
            keep
        });
        if routes_dropped {
            let map: crate::snapshot::RouteMap = self
                .world
                .routes
                .load()
                .iter()
                .filter(|(n, _)| rds.contains(*n))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            let old = self.world.routes.swap(Arc::new(map));
            self.retire(old);
        }
        self.dirty = false;
        if out != self.interest {
            self.interest = out;
            self.interest_changed = true;
        }
    }
}
