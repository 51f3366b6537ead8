//! `x-forwarded-client-cert` on requests, as Envoy's connection manager sets it
//! (`forward_client_cert_details`): removed on connections without a client certificate
//! (unless `ALWAYS_FORWARD_ONLY`); on mutual TLS kept, removed, appended to or replaced by this
//! hop's `By=<our URI SAN>;Hash=<peer certificate SHA-256>;Subject="...";URI=...;DNS=...`.

use crate::filters::hcm::{ClientCertConfig, ForwardClientCert as F};
use crate::tls::TlsInfo;
use http::{HeaderMap, HeaderValue};

/// Made once: a `&str` key is parsed and validated as a name on every map operation.
const XFCC: http::HeaderName = http::HeaderName::from_static("x-forwarded-client-cert");

/// Apply the connection manager's XFCC settings for a request on a connection with `tls`.
pub(super) fn apply(headers: &mut HeaderMap, cfg: &ClientCertConfig, tls: Option<&TlsInfo>) {
    let Some((t, peer)) = tls.and_then(|t| t.peer.as_ref().map(|p| (t, p))) else {
        if cfg.mode != F::AlwaysForwardOnly {
            headers.remove(&XFCC);
        }
        return;
    };
    match cfg.mode {
        F::ForwardOnly | F::AlwaysForwardOnly => return,
        F::Sanitize => {
            headers.remove(&XFCC);
            return;
        }
        F::AppendForward | F::SanitizeSet => {}
    }
    let mut parts = Vec::new();
    for u in t.local.iter().flat_map(|l| &l.uri_sans) {
        parts.push(format!("By={u}"));
    }
    if let Some(h) = &t.peer_fingerprint {
        parts.push(format!("Hash={h}"));
    }
    if cfg.subject {
        parts.push(format!("Subject=\"{}\"", peer.subject.replace('"', "\\\"")));
    }
    if cfg.uri {
        if peer.uri_sans.is_empty() {
            parts.push("URI=".into());
        }
        parts.extend(peer.uri_sans.iter().map(|u| format!("URI={u}")));
    }
    if cfg.dns {
        parts.extend(peer.dns_sans.iter().map(|d| format!("DNS={d}")));
    }
    let mine = parts.join(";");
    let value = match (cfg.mode, headers.get(&XFCC).and_then(|v| v.to_str().ok())) {
        (F::AppendForward, Some(old)) if !old.is_empty() => format!("{old},{mine}"),
        _ => mine,
    };
    match HeaderValue::from_str(&value) {
        Ok(v) => {
            headers.insert(&XFCC, v);
        }
        Err(_) => {
            headers.remove(&XFCC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::cert::CertSummary;
    use std::sync::Arc;

    fn mtls() -> TlsInfo {
        TlsInfo {
            peer: Some(CertSummary {
                uri_sans: vec!["spiffe://cluster.local/ns/a/sa/client".into()],
                subject: "CN=client".into(),
                ..Default::default()
            }),
            peer_fingerprint: Some("ab12".into()),
            local: Some(Arc::new(CertSummary {
                uri_sans: vec!["spiffe://cluster.local/ns/b/sa/server".into()],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn modes() {
        let istio = ClientCertConfig {
            mode: F::AppendForward,
            subject: true,
            uri: true,
            dns: true,
        };
        let mut h = HeaderMap::new();
        h.insert(&XFCC, HeaderValue::from_static("By=x;Hash=y"));
        apply(&mut h, &istio, Some(&mtls()));
        assert_eq!(
            h[&XFCC],
            "By=x;Hash=y,By=spiffe://cluster.local/ns/b/sa/server;Hash=ab12;Subject=\"CN=client\";URI=spiffe://cluster.local/ns/a/sa/client"
        );
        let set = ClientCertConfig {
            mode: F::SanitizeSet,
            ..Default::default()
        };
        apply(&mut h, &set, Some(&mtls()));
        assert_eq!(
            h[&XFCC],
            "By=spiffe://cluster.local/ns/b/sa/server;Hash=ab12"
        );
        // Plain connections: removed, unless ALWAYS_FORWARD_ONLY.
        apply(&mut h, &istio, None);
        assert!(h.get(XFCC).is_none());
        h.insert(&XFCC, HeaderValue::from_static("kept"));
        let always = ClientCertConfig {
            mode: F::AlwaysForwardOnly,
            ..Default::default()
        };
        apply(&mut h, &always, None);
        assert_eq!(h[&XFCC], "kept");
        apply(&mut h, &ClientCertConfig::default(), Some(&mtls()));
        assert!(h.get(XFCC).is_none(), "SANITIZE");
    }
}
