//! LDS and CDS share how an update is applied: a resource that does not decode rejects the
//! response; each valid resource is applied and each invalid one named in the NACK (with its
//! error kept for the dump); a state-of-the-world response removes what it leaves out. What
//! differs between the two is in a [`Wildcard`].

use super::*;

/// The parts of applying an update that differ between LDS and CDS.
pub(super) struct Wildcard<M> {
    pub(super) kind: Kind,
    /// `cluster` or `listener`, for messages.
    pub(super) what: &'static str,
    pub(super) name: fn(&M) -> &str,
    pub(super) stats: fn(&Store) -> UpdateStats,
    /// Add or update one resource; `Ok(false)` when it is unchanged.
    pub(super) add: fn(&mut Store, M, &str) -> Result<bool, String>,
    /// The dynamic resources held, active and warming.
    pub(super) held: fn(&Store) -> Vec<String>,
    /// Remove one; false when it was not there (or is static).
    pub(super) remove: fn(&mut Store, &str) -> bool,
    /// Swap the snapshot in.
    pub(super) publish: fn(&mut Store),
    /// The type's initialization phase.
    pub(super) phase: fn(&mut Store) -> &mut Phase,
}

impl Store {
    pub(super) fn apply_wildcard<M: Message + Default>(
        &mut self,
        u: Update,
        w: &Wildcard<M>,
    ) -> Outcome {
        let stats = (w.stats)(self);
        stats.attempt.inc();
        if u.resources.is_empty() && u.state_of_world {
            stats.empty.inc();
        }
        // A resource that does not even decode rejects the whole response (as Envoy's
        // subscription does before anything is applied); invalid but decodable resources
        // are rejected one by one below.
        let mut decoded = Vec::with_capacity(u.resources.len());
        for inc in &u.resources {
            match decode::<M>(w.kind, inc) {
                Ok(r) => decoded.push((r, &inc.version, &inc.any)),
                Err(e) => {
                    stats.rejected.inc();
                    return Outcome {
                        accepted: Vec::new(),
                        error: Some(e),
                    };
                }
            }
        }
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        let mut accepted = Vec::new();
        let mut changed = false;
        for (r, version, any) in decoded {
            let name = (w.name)(&r).to_string();
            if !seen.insert(name.clone()) {
                errors.push(format!("{} {name}: duplicate in the response", w.what));
                continue;
            }
            match (w.add)(self, r, version) {
                Ok(ch) => {
                    changed |= ch;
                    accepted.push(name.clone());
                    self.errors.remove(&(w.kind, name));
                }
                Err(e) => {
                    self.errors.insert(
                        (w.kind, name),
                        ErrorState {
                            version: u.version_info.clone(),
                            details: e.clone(),
                            at: SystemTime::now(),
                            failed: Some(any.clone()),
                        },
                    );
                    errors.push(e);
                }
            }
        }
        let mut removed = u.removed.clone();
        if u.state_of_world {
            removed.extend((w.held)(self).into_iter().filter(|n| !seen.contains(n)));
        }
        for name in removed {
            changed |= (w.remove)(self, &name);
        }
        if changed {
            (w.publish)(self);
            self.interest_dirty();
        }
        let phase = (w.phase)(self);
        if let Phase::Waiting { deadline, .. } = *phase {
            *phase = Phase::Waiting {
                responded: true,
                deadline,
            };
        }
        // As Envoy's `system_version_info`: the version of the last update that applied
        // something, even if it rejected some resources (`/config_dump` shows it).
        if changed {
            self.versions.insert(w.kind, u.version_info.clone());
        }
        if errors.is_empty() {
            stats.success.inc();
            stats.version.set(version_hash(&u.version_info));
            Outcome {
                accepted,
                error: None,
            }
        } else {
            stats.rejected.inc();
            Outcome {
                accepted,
                error: Some(format!(
                    "Error adding/updating {}(s) {}",
                    w.what,
                    errors.join("; ")
                )),
            }
        }
    }
}
