//! State-of-the-world sessions.

use super::*;

#[derive(Default)]
pub(super) struct SotwSession {
    pub(super) types: BTreeMap<String, SotwType>,
}

/// One type on one SotW stream.
#[derive(Default)]
pub(super) struct SotwType {
    /// A request for the type was accepted (the stream is subscribed).
    pub(super) subscribed: bool,
    /// Some request named a resource: an empty list no longer means the wildcard.
    pub(super) named: bool,
    pub(super) wildcard: bool,
    pub(super) names: BTreeSet<String>,
    /// The last nonce sent for the type, `""` before any.
    pub(super) nonce: String,
    /// The version and the names of the last automatic response (or what the client said it
    /// had when no response was needed).
    pub(super) sent_version: Option<String>,
    pub(super) sent_names: BTreeSet<String>,
}

impl Session for SotwSession {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const PROTOCOL: Protocol = Protocol::Sotw;

    fn on_request(&mut self, inner: &mut Inner, req: DiscoveryRequest) -> Vec<DiscoveryResponse> {
        let t = self.types.entry(req.type_url.clone()).or_default();
        if !req.response_nonce.is_empty() && !t.nonce.is_empty() && req.response_nonce != t.nonce {
            return Vec::new(); // stale: an answer to a response that was superseded
        }
        t.subscribed = true;
        t.named |= !req.resource_names.is_empty();
        t.wildcard = req.resource_names.iter().any(|n| n == "*")
            || (!t.named && is_wildcard_type(&req.type_url));
        t.names = req
            .resource_names
            .iter()
            .filter(|n| *n != "*")
            .cloned()
            .collect();
        if !inner.auto {
            return Vec::new();
        }
        let version = inner.store.type_version(&req.type_url);
        let content = sotw_content(&inner.store, &req.type_url, t);
        // A resource named (not through the wildcard) that exists and was not sent yet.
        let new_names =
            (t.names.iter()).any(|n| content.contains_key(n) && !t.sent_names.contains(n));
        let nack = req.error_detail.is_some();
        if new_names || (!nack && req.version_info != version) {
            return vec![sotw_response(inner, &req.type_url, t)];
        }
        if !nack && t.sent_version.is_none() {
            // The client already has the current version (a reconnect): nothing to send.
            t.sent_names = content.keys().map(|n| (*n).clone()).collect();
            t.sent_version = Some(version);
        }
        Vec::new()
    }

    fn on_sync(
        &mut self,
        inner: &mut Inner,
        types: Option<&BTreeSet<String>>,
    ) -> Vec<DiscoveryResponse> {
        if !inner.auto {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (type_url, t) in &mut self.types {
            if !t.subscribed || types.is_some_and(|ts| !ts.contains(type_url)) {
                continue;
            }
            if t.sent_version.as_deref() != Some(inner.store.type_version(type_url).as_str()) {
                out.push(sotw_response(inner, type_url, t));
            }
        }
        out
    }

    fn on_raw(&mut self, response: XdsResponse) -> Option<DiscoveryResponse> {
        let XdsResponse::Sotw(r) = response else {
            return None;
        };
        let t = self.types.entry(r.type_url.clone()).or_default();
        t.nonce = r.nonce.clone();
        Some(r)
    }
}

/// What a SotW subscription gets: all resources for a wildcard, else the names that exist.
pub(super) fn sotw_content<'a>(
    store: &'a Store,
    type_url: &str,
    t: &SotwType,
) -> BTreeMap<&'a String, &'a Any> {
    store
        .resources(type_url)
        .filter(|(n, _)| t.wildcard || t.names.contains(*n))
        .map(|(n, r)| (n, &r.resource))
        .collect()
}

pub(super) fn sotw_response(
    inner: &mut Inner,
    type_url: &str,
    t: &mut SotwType,
) -> DiscoveryResponse {
    let nonce = inner.nonce();
    let version = inner.store.type_version(type_url);
    let content = sotw_content(&inner.store, type_url, t);
    t.sent_names = content.keys().map(|n| (*n).clone()).collect();
    let resources = content.into_values().cloned().collect();
    t.nonce = nonce.clone();
    t.sent_version = Some(version.clone());
    DiscoveryResponse {
        version_info: version,
        resources,
        type_url: type_url.to_owned(),
        nonce,
        ..Default::default()
    }
}
