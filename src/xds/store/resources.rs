//! RDS, EDS and SDS: route tables, endpoint assignments and secrets, each rejected as a
//! whole when one resource is bad.

use super::*;

impl Store {
    pub(super) fn apply_routes(&mut self, u: Update) -> Outcome {
        let mut decoded = Vec::with_capacity(u.resources.len());
        let mut errors = Vec::new();
        let mut names = Vec::with_capacity(u.resources.len());
        for inc in &u.resources {
            match decode::<RouteConfiguration>(Kind::Route, inc) {
                Ok(rc) => {
                    names.push(rc.name.clone());
                    match RouteTable::compile(&rc) {
                        Ok(t) => decoded.push((rc.name, t, inc.version.clone(), &inc.any.value)),
                        Err(e) => errors.push(format!("route configuration {}: {e}", rc.name)),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        for n in &names {
            let prefix = self.listeners_naming(n);
            self.stats.rds(&self.world.stats, n, &prefix).attempt.inc();
        }
        if !errors.is_empty() {
            for n in &names {
                self.stats.rds(&self.world.stats, n, "").rejected.inc();
            }
            return Outcome {
                accepted: Vec::new(),
                error: Some(errors.join("; ")),
            };
        }
        let mut map = (**self.world.routes.load()).clone();
        for (name, table, version, raw) in decoded {
            let s = self.stats.rds(&self.world.stats, &name, "");
            s.success.inc();
            s.version.set(version_hash(&version));
            if let Some(old) = map.insert(name.clone(), Arc::new(table)) {
                self.retire(old);
            }
            self.routes.insert(
                name,
                RouteEntry {
                    meta: Meta::now(&version),
                    raw: Arc::from(raw.as_slice()),
                },
            );
        }
        for n in &u.removed {
            self.routes.remove(n);
            map.remove(n);
        }
        let old = self.world.routes.swap(Arc::new(map));
        self.retire(old);
        self.versions.insert(Kind::Route, u.version_info);
        Outcome {
            accepted: names,
            error: None,
        }
    }

    /// The `stat_prefix` of the first listener naming route configuration `name`.
    pub(super) fn listeners_naming(&self, name: &str) -> String {
        self.listeners
            .values()
            .chain(self.warming_listeners.values())
            .map(|e| &e.listener)
            .chain(self.static_listeners.values())
            .flat_map(|l| rds_names(l).collect::<Vec<_>>())
            .find(|(r, _)| *r == name)
            .map(|(_, p)| p.to_string())
            .unwrap_or_default()
    }

    // ---- endpoints ----

    pub(super) fn apply_endpoints(&mut self, u: Update) -> Outcome {
        // One assignment at a time: decode, validate into a host set, drop the proto. Only a
        // hash of the bytes is kept (to skip unchanged assignments); the hosts live in the
        // clusters, and a cluster compiled later takes them from a cluster that has them.
        // (name, hash of the bytes, hosts, version, whether the resource came without a name)
        let mut decoded: Vec<(String, u64, PrioritySet, String, bool)> =
            Vec::with_capacity(u.resources.len());
        let mut errors = Vec::new();
        let mut names = Vec::with_capacity(u.resources.len());
        let mut unchanged_names = Vec::new();
        let mut shared = load_assignment::SharedMetadata::default();
        for inc in &u.resources {
            // A state-of-the-world push resends every assignment: one whose bytes are what tern
            // has (and whose clusters are not waiting for it) is not decoded again.
            let hash = xxhash_rust::xxh64::xxh64(&inc.any.value, 0);
            if !inc.name.is_empty() || u.state_of_world {
                let known = if inc.name.is_empty() {
                    self.endpoint_hashes.get(&hash)
                } else {
                    Some(&inc.name)
                };
                if let Some(name) = known
                    && self
                        .endpoints
                        .get(name.as_str())
                        .is_some_and(|e| e.hash == hash)
                    && !self.eds_waiting(name)
                {
                    names.push(name.clone());
                    unchanged_names.push(name.clone());
                    continue;
                }
            }
            match decode::<ClusterLoadAssignment>(Kind::Endpoint, inc) {
                Ok(cla) => {
                    names.push(cla.cluster_name.clone());
                    match load_assignment::priority_set_sharing(&cla, false, &mut shared) {
                        Ok(set) => decoded.push((
                            cla.cluster_name,
                            hash,
                            set,
                            inc.version.clone(),
                            inc.name.is_empty(),
                        )),
                        Err(e) => errors
                            .push(format!("cluster load assignment {}: {e}", cla.cluster_name)),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let users = self.eds_users(&names);
        for cluster in users.values().flatten() {
            cluster.stats.update_attempt().inc();
        }
        if !errors.is_empty() {
            for cluster in users.values().flatten() {
                cluster.stats.update_rejected().inc();
            }
            return Outcome {
                accepted: Vec::new(),
                error: Some(errors.join("; ")),
            };
        }
        for name in &unchanged_names {
            for cluster in users.get(name).into_iter().flatten() {
                cluster.stats.update_success().inc();
            }
        }
        for (name, hash, set, version, unnamed) in decoded {
            let unchanged = self
                .endpoints
                .get(name.as_str())
                .is_some_and(|e| e.hash == hash);
            let mut targets = Vec::new();
            for cluster in users.get(&name).into_iter().flatten() {
                cluster.stats.update_success().inc();
                cluster.stats.version().set(version_hash(&version));
                if !unchanged || self.warming_clusters.contains_key(&*cluster.name) {
                    targets.push(cluster);
                }
            }
            // The last user takes the set itself: hosts it owns alone can take over the pools
            // of the hosts they replace.
            let mut set = Some(set);
            for (i, cluster) in targets.iter().enumerate() {
                let hosts = if i + 1 == targets.len() {
                    set.take().unwrap_or_default()
                } else {
                    set.clone().unwrap_or_default()
                };
                cluster.set_hosts(hosts);
            }
            if !unchanged {
                // Only state-of-the-world responses come without names: only they need the
                // hash to find the name.
                if unnamed {
                    self.endpoint_hashes.insert(hash, name.clone());
                }
                // The key shares the name of the cluster called after the service, if any.
                let key: Arc<str> = users
                    .get(&name)
                    .into_iter()
                    .flatten()
                    .find(|c| *c.name == *name)
                    .map_or_else(|| Arc::from(name.as_str()), |c| c.name.clone());
                if let Some(old) = self.endpoints.insert(
                    key,
                    EndpointEntry {
                        meta: Meta::now(&version),
                        hash,
                    },
                ) {
                    self.endpoint_hashes.remove(&old.hash);
                }
            }
        }
        for n in &u.removed {
            self.endpoints.remove(n.as_str());
            for cluster in self.eds_users(std::slice::from_ref(n)).values().flatten() {
                cluster.set_hosts(PrioritySet::default());
            }
        }
        // Warming clusters that got their endpoints are activated by `settle`, once their
        // secrets are in too.
        self.versions.insert(Kind::Endpoint, u.version_info);
        Outcome {
            accepted: names,
            error: None,
        }
    }

    /// The hosts of EDS service `service`, from a cluster that has them.
    pub(super) fn hosts_of_service(&self, service: &str) -> Option<PrioritySet> {
        self.eds_users(&[service.to_string()])
            .remove(service)?
            .into_iter()
            .map(|c| c.priority_set())
            .max_by_key(|set| set.len())
            .map(|set| (*set).clone())
    }

    /// The clusters (static, active, warming) using each EDS service name, through the
    /// service index (an update of one assignment must not walk every cluster).
    pub(super) fn eds_users(&self, names: &[String]) -> HashMap<String, Vec<Arc<Cluster>>> {
        let mut out: HashMap<String, Vec<Arc<Cluster>>> = HashMap::new();
        for n in names {
            let found: Vec<Arc<Cluster>> = self
                .eds_clusters_named(n)
                .filter(|c| c.eds_service_name() == Some(n.as_str()))
                .chain(
                    self.eds_index
                        .get(n)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| self.eds_clusters_named(c).next()),
                )
                .collect();
            if !found.is_empty() {
                out.insert(n.clone(), found);
            }
        }
        out
    }

    /// The cluster called `name`: warming if a new version warms, else active, else static.
    fn eds_clusters_named<'a>(&'a self, name: &str) -> impl Iterator<Item = Arc<Cluster>> + 'a {
        self.clusters
            .get(name)
            .or_else(|| self.warming_clusters.get(name))
            .map(|e| e.cluster.clone())
            .or_else(|| self.static_clusters.get(name).cloned())
            .into_iter()
    }

    /// Whether a cluster using EDS service `name` still waits for it.
    pub(super) fn eds_waiting(&self, name: &str) -> bool {
        let warming = |c: &str| {
            self.warming_clusters
                .get(c)
                .is_some_and(|e| e.cluster.eds_service_name() == Some(name))
        };
        warming(name)
            || self
                .eds_index
                .get(name)
                .is_some_and(|cs| cs.iter().any(|c| warming(c)))
    }

    // ---- secrets ----

    pub(super) fn apply_secrets(&mut self, u: Update) -> Outcome {
        let mut decoded = Vec::with_capacity(u.resources.len());
        let mut errors = Vec::new();
        for inc in &u.resources {
            match decode::<Secret>(Kind::Secret, inc) {
                Ok(s) if s.name.is_empty() => errors.push("secret: name is required".to_string()),
                Ok(s) => decoded.push((s, inc.version.clone())),
                Err(e) => errors.push(e),
            }
        }
        let names: Vec<String> = decoded.iter().map(|(s, _)| s.name.clone()).collect();
        for n in &names {
            self.stats.sds(&self.world.stats, n).attempt.inc();
        }
        if !errors.is_empty() {
            for n in &names {
                self.stats.sds(&self.world.stats, n).rejected.inc();
            }
            return Outcome {
                accepted: Vec::new(),
                error: Some(errors.join("; ")),
            };
        }
        let mut map = (**self.world.secrets.load()).clone();
        for (s, version) in decoded {
            let st = self.stats.sds(&self.world.stats, &s.name);
            st.success.inc();
            st.version.set(version_hash(&version));
            let s = Arc::new(s);
            map.insert(s.name.clone(), s.clone());
            self.secrets.insert(
                s.name.clone(),
                SecretEntry {
                    meta: Meta::now(&version),
                    secret: s,
                },
            );
        }
        for n in &u.removed {
            self.secrets.remove(n);
            map.remove(n);
        }
        let old = self.world.secrets.swap(Arc::new(map));
        self.retire(old);
        self.versions.insert(Kind::Secret, u.version_info);
        Outcome {
            accepted: names,
            error: None,
        }
    }
}
