//! LDS: listeners, their warming, and the listener manager.

use super::*;

impl Store {
    pub(super) fn apply_listeners(&mut self, u: Update) -> Outcome {
        self.apply_wildcard(
            u,
            &Wildcard::<listener_pb::Listener> {
                kind: Kind::Listener,
                what: "listener",
                name: |l| &l.name,
                stats: |s| s.stats.lds.clone(),
                add: Store::add_listener,
                held: |s| {
                    s.listeners
                        .keys()
                        .chain(s.warming_listeners.keys())
                        .cloned()
                        .collect()
                },
                remove: Store::remove_listener,
                publish: Store::publish_listeners,
                phase: |s| &mut s.lds_phase,
            },
        )
    }

    /// Remove a dynamic listener (active or warming); false when there was none. An active
    /// one stops accepting and drains.
    fn remove_listener(&mut self, name: &str) -> bool {
        if self.static_listeners.contains_key(name) {
            return false;
        }
        let active = self.listeners.remove(name);
        let warming = self.warming_listeners.remove(name);
        if active.is_some() {
            self.listener_manager.remove(name);
        }
        if active.is_none() && warming.is_none() {
            return false;
        }
        info!(listener = %name, "lds: listener removed");
        self.stats.listener_removed.inc();
        true
    }

    pub(super) fn add_listener(
        &mut self,
        l: listener_pb::Listener,
        version: &str,
    ) -> Result<bool, String> {
        let name = l.name.clone();
        if self.static_listeners.contains_key(&name) {
            return Err(format!(
                "listener {name}: a static listener cannot be added or updated by LDS"
            ));
        }
        let same = |e: Option<&ListenerEntry>| e.is_some_and(|e| e.listener.source == l);
        if same(self.warming_listeners.get(&name))
            || (same(self.listeners.get(&name)) && !self.warming_listeners.contains_key(&name))
        {
            return Ok(false);
        }
        let compiled =
            crate::snapshot::compile_listener(&l, &self.world.stats).map_err(|e| e.to_string())?;
        // Every source it names must resolve; it warms for as long as the longest initial
        // fetch timeout of what it waits for (for ever if one of them says 0s).
        let mut timeouts = Vec::new();
        for (route, _, cs) in rds_refs(&compiled) {
            let r = self
                .resolve_dynamic(cs)
                .map_err(|e| format!("listener {name}: rds {route}: config_source: {e}"))?;
            timeouts.push(r.initial_fetch_timeout);
        }
        for (secret, cs) in sds_refs(compiled.sds_secrets()) {
            let r = self
                .resolve_dynamic(&cs)
                .map_err(|e| format!("listener {name}: secret {secret}: sds_config: {e}"))?;
            timeouts.push(r.initial_fetch_timeout);
        }
        let timeout = longest(timeouts);
        if self.listeners.contains_key(&name) {
            self.stats.listener_modified.inc();
        } else {
            self.stats.listener_added.inc();
        }
        let entry = ListenerEntry {
            meta: Meta::now(version),
            listener: compiled,
            deadline: timeout.map(|t| Instant::now() + t),
        };
        if self.listener_ready(&entry.listener) {
            self.warming_listeners.remove(&name);
            self.install_listener(name, entry)?;
        } else {
            debug!(listener = %name, "lds: listener warming until its routes arrive");
            self.warming_listeners.insert(name, entry);
        }
        Ok(true)
    }

    /// Whether everything a listener depends on is here.
    pub(super) fn listener_ready(&self, l: &Listener) -> bool {
        rds_names(l).all(|(r, _)| self.routes.contains_key(r))
            && self.secrets_ready(l.sds_secrets())
    }

    /// Whether everything a cluster depends on is here: its endpoints (EDS) and secrets.
    pub(super) fn cluster_ready(&self, c: &Cluster) -> bool {
        let endpoints = c
            .eds_service_name()
            .is_none_or(|s| self.endpoints.contains_key(s));
        endpoints && self.secrets_ready(c.sds_secrets())
    }

    pub(super) fn secrets_ready(&self, secrets: Vec<SdsSecretConfig>) -> bool {
        sds_refs(secrets).all(|(n, _)| self.secrets.contains_key(&n))
    }

    /// Resolve a config source a dynamic resource names: gRPC or ADS (files only for LDS and
    /// CDS, as in Envoy).
    pub(super) fn resolve_dynamic(&self, cs: &core_pb::ConfigSource) -> Result<Resolved, String> {
        let r = self.plan.resolve(cs).map_err(|e| e.to_string())?;
        if matches!(r.key, SourceKey::Path(_)) {
            return Err("file-based sources are supported for LDS and CDS only".into());
        }
        Ok(r)
    }

    pub(super) fn install_listener(
        &mut self,
        name: String,
        mut entry: ListenerEntry,
    ) -> Result<(), String> {
        entry.deadline = None;
        self.listener_manager
            .upsert(&name, &entry.listener)
            .map_err(|e| e.to_string())?;
        self.listeners.insert(name, entry);
        Ok(())
    }

    pub(super) fn activate_listener(&mut self, name: &str) {
        if let Some(e) = self.warming_listeners.remove(name) {
            debug!(listener = %name, "listener warmed");
            if let Err(err) = self.install_listener(name.to_string(), e.clone()) {
                warn!(listener = %name, error = %err, "listener could not start");
                self.errors.insert(
                    (Kind::Listener, name.to_string()),
                    ErrorState {
                        version: e.meta.version.clone(),
                        details: err,
                        at: SystemTime::now(),
                        failed: Some(Any {
                            type_url: Kind::Listener.type_url().to_string(),
                            value: e.listener.source.encode_to_vec(),
                        }),
                    },
                );
            }
            self.publish_listeners();
        }
    }

    pub(super) fn publish_listeners(&mut self) {
        let mut map = self.static_listeners.clone();
        for (n, e) in &self.listeners {
            map.insert(n.clone(), e.listener.clone());
        }
        let old = self.world.listeners.swap(Arc::new(map));
        self.retire(old);
        self.stats.listeners_active.set(self.listeners.len() as i64);
        self.stats
            .listeners_warming
            .set(self.warming_listeners.len() as i64);
    }
}
