//! Incremental (delta) sessions.

use super::*;

#[derive(Default)]
pub(super) struct DeltaSession {
    pub(super) types: BTreeMap<String, DeltaType>,
}

/// One type on one delta stream.
#[derive(Default)]
pub(super) struct DeltaType {
    pub(super) wildcard: bool,
    pub(super) names: BTreeSet<String>,
    /// The version of each resource the client has.
    pub(super) known: HashMap<String, String>,
    /// Names to report in `removed_resources` with the next response: subscribed but absent.
    pub(super) absent: BTreeSet<String>,
    /// How much of the store's change log this type has seen (`None`: walk everything).
    pub(super) seen: Option<usize>,
}

impl Session for DeltaSession {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const PROTOCOL: Protocol = Protocol::Delta;

    fn on_request(
        &mut self,
        inner: &mut Inner,
        req: DeltaDiscoveryRequest,
    ) -> Vec<DeltaDiscoveryResponse> {
        let first = !self.types.contains_key(&req.type_url);
        let t = self.types.entry(req.type_url.clone()).or_default();
        let exists = |n: &str| inner.store.get(&req.type_url, n).is_some();
        if first {
            t.known = req.initial_resource_versions.clone();
            t.wildcard = req.resource_names_subscribe.is_empty()
                && req.resource_names_unsubscribe.is_empty()
                && is_wildcard_type(&req.type_url);
        }
        for n in &req.resource_names_subscribe {
            if n == "*" {
                t.wildcard = true;
                continue;
            }
            t.names.insert(n.clone());
            if !first {
                t.known.remove(n); // the client may have forgotten it: send it again
            }
            if !exists(n) {
                t.absent.insert(n.clone());
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                t.wildcard = false;
                t.known.retain(|k, _| t.names.contains(k));
                continue;
            }
            t.names.remove(n);
            t.known.remove(n);
            t.absent.remove(n);
            // Still covered by the wildcard? Tell the client whether to keep it.
            if t.wildcard && !exists(n) {
                t.absent.insert(n.clone());
            }
        }
        if !inner.auto {
            return Vec::new();
        }
        if !first
            && req.resource_names_subscribe.is_empty()
            && req.resource_names_unsubscribe.is_empty()
        {
            // An ACK or NACK: nothing new to send (changes are pushed as they happen).
            return Vec::new();
        }
        t.seen = Some(inner.store.changes.len());
        delta_response(inner, &req.type_url, t, None)
            .into_iter()
            .collect()
    }

    fn on_sync(
        &mut self,
        inner: &mut Inner,
        types: Option<&BTreeSet<String>>,
    ) -> Vec<DeltaDiscoveryResponse> {
        if !inner.auto {
            return Vec::new();
        }
        let mut out = Vec::new();
        let end = inner.store.changes.len();
        for (type_url, t) in &mut self.types {
            if types.is_none_or(|ts| ts.contains(type_url)) {
                // The names changed since this type's last look, or everything.
                let only: Option<BTreeSet<String>> = match (types, t.seen) {
                    (Some(_), Some(from)) => inner.store.changes[from.min(end)..end]
                        .iter()
                        .filter(|(ty, _)| ty == type_url)
                        .map(|(_, n)| n.clone())
                        .collect::<Option<BTreeSet<String>>>(),
                    _ => None,
                };
                t.seen = Some(end);
                out.extend(delta_response(inner, type_url, t, only.as_ref()));
            }
        }
        out
    }

    fn on_raw(&mut self, response: XdsResponse) -> Option<DeltaDiscoveryResponse> {
        match response {
            XdsResponse::Delta(r) => Some(r),
            XdsResponse::Sotw(_) => None,
        }
    }
}

/// The difference between the store and what the client has, if any.
pub(super) fn delta_response(
    inner: &mut Inner,
    type_url: &str,
    t: &mut DeltaType,
    only: Option<&BTreeSet<String>>,
) -> Option<DeltaDiscoveryResponse> {
    let store = &inner.store;
    let wanted = |n: &str| t.wildcard || t.names.contains(n);
    let to_send = |(n, r): (&String, &Stored)| {
        (wanted(n) && t.known.get(n) != Some(&r.version)).then(|| discovery_pb::Resource {
            name: n.clone(),
            version: r.version.clone(),
            resource: Some(r.resource.clone()),
            ..Default::default()
        })
    };
    let resources: Vec<_> = match only {
        None => store.resources(type_url).filter_map(to_send).collect(),
        Some(names) => names
            .iter()
            .filter_map(|n| store.get(type_url, n).map(|r| (n, r)))
            .filter_map(to_send)
            .collect(),
    };
    let gone = |n: &&String| wanted(n) && store.get(type_url, n).is_none();
    let mut removed: BTreeSet<String> = match only {
        None => t.known.keys().filter(gone).cloned().collect(),
        Some(names) => names
            .iter()
            .filter(|n| t.known.contains_key(*n))
            .filter(gone)
            .cloned()
            .collect(),
    };
    removed.extend(
        std::mem::take(&mut t.absent)
            .into_iter()
            .filter(|n| store.get(type_url, n).is_none()),
    );
    if resources.is_empty() && removed.is_empty() {
        return None;
    }
    for r in &resources {
        t.known.insert(r.name.clone(), r.version.clone());
    }
    for n in &removed {
        t.known.remove(n);
    }
    let system_version_info = store.system_version.to_string();
    Some(DeltaDiscoveryResponse {
        system_version_info,
        resources,
        type_url: type_url.to_owned(),
        removed_resources: removed.into_iter().collect(),
        nonce: inner.nonce(),
        ..Default::default()
    })
}
