//! tern's own certificate verifier, used by both sides: the chain against the trusted CA (or,
//! with Istio's SPIFFE validator, against the bundle of the peer's trust domain) with CRLs,
//! then subject alternative names, then hash / SPKI pins, in Envoy's order and with its
//! `ssl.fail_verify_*` counters. `trust_chain_verification: ACCEPT_UNTRUSTED` lets a failing
//! certificate through (still counted).

use super::TlsError;
use super::cert::{self, CertSummary};
use super::stats::SslStats;
use crate::config::StringMatch;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::collections::HashMap;

/// What the chain is checked against.
#[derive(Debug)]
pub enum Trust {
    /// No CA: the chain is not checked (pins may still apply).
    None,
    /// `trusted_ca`.
    Roots(Vec<TrustAnchor<'static>>, Vec<DistinguishedName>),
    /// SPIFFE validator: anchors per trust domain.
    Spiffe(
        HashMap<String, Vec<TrustAnchor<'static>>>,
        Vec<DistinguishedName>,
    ),
}

fn anchors(certs: &[CertificateDer<'static>]) -> Result<Vec<TrustAnchor<'static>>, TlsError> {
    certs
        .iter()
        .map(|c| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.to_owned())
                .map_err(|e| TlsError::Secret(format!("CA certificate: {e}")))
        })
        .collect()
}

fn subjects(certs: &[CertificateDer<'static>]) -> Vec<DistinguishedName> {
    certs
        .iter()
        .filter_map(|c| cert::raw_subject(c))
        .map(DistinguishedName::from)
        .collect()
}

impl Trust {
    /// Trust `certs`.
    pub fn roots(certs: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        Ok(Trust::Roots(anchors(&certs)?, subjects(&certs)))
    }

    /// Trust each domain's bundle for peers of that domain only.
    pub fn spiffe(
        domains: HashMap<String, Vec<CertificateDer<'static>>>,
    ) -> Result<Self, TlsError> {
        let mut all = Vec::new();
        let mut map = HashMap::new();
        for (d, certs) in domains {
            all.extend(subjects(&certs));
            map.insert(d, anchors(&certs)?);
        }
        Ok(Trust::Spiffe(map, all))
    }
}

/// One SAN matcher: a typed one, or (`kind: None`) the deprecated `match_subject_alt_names`
/// that looks at every SAN.
#[derive(Debug, Clone)]
pub struct SanMatcher {
    /// The SAN type, `None` for any.
    pub kind: Option<SanType>,
    /// The matcher.
    pub matcher: StringMatch,
}

/// DNS SAN matching as Envoy: a wildcard SAN `*.example.com` is matched by an exact matcher
/// for any single label under `example.com`.
fn dns_matches(m: &StringMatch, san: &str) -> bool {
    if m.matches(san) {
        return true;
    }
    if let (StringMatch::Exact(want, _), Some(rest)) = (m, san.strip_prefix("*."))
        && let Some((_, tail)) = want.split_once('.')
    {
        return tail.eq_ignore_ascii_case(rest);
    }
    false
}

impl SanMatcher {
    fn matches(&self, s: &CertSummary) -> bool {
        let m = &self.matcher;
        let any = |v: &[String]| v.iter().any(|x| m.matches(x));
        match self.kind {
            Some(SanType::Uri) => any(&s.uri_sans),
            Some(SanType::Dns) => s.dns_sans.iter().any(|d| dns_matches(m, d)),
            Some(SanType::Email) => any(&s.email_sans),
            Some(SanType::IpAddress) => any(&s.ip_sans),
            _ => {
                s.dns_sans.iter().any(|d| dns_matches(m, d))
                    || any(&s.uri_sans)
                    || any(&s.email_sans)
                    || any(&s.ip_sans)
            }
        }
    }
}

/// A compiled validation context with its trust material.
#[derive(Debug)]
pub struct Validator {
    pub(super) trust: Trust,
    /// The CA certificates with the path they came from, for `/certs`.
    pub(super) ca_ders: Vec<(String, Vec<CertificateDer<'static>>)>,
    pub(super) crls: Vec<webpki::OwnedCertRevocationList>,
    pub(super) crl_leaf_only: bool,
    pub(super) sans: Vec<SanMatcher>,
    pub(super) spki: Vec<[u8; 32]>,
    pub(super) hashes: Vec<[u8; 32]>,
    pub(super) accept_untrusted: bool,
    pub(super) allow_expired: bool,
    pub(super) max_depth: Option<u32>,
    pub(super) require_cert: bool,
    pub(super) send_ca_list: bool,
    pub(super) stats: SslStats,
    pub(super) algs: WebPkiSupportedAlgorithms,
}

fn chain_error(e: webpki::Error) -> Error {
    use webpki::Error as W;
    Error::InvalidCertificate(match e {
        W::CertExpired { .. } => CertificateError::Expired,
        W::CertNotValidYet { .. } => CertificateError::NotValidYet,
        W::CertRevoked => CertificateError::Revoked,
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        _ => CertificateError::BadEncoding,
    })
}

impl Validator {
    fn check_chain(
        &self,
        ee: &CertificateDer<'_>,
        inter: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
        summary: &CertSummary,
    ) -> Result<(), Error> {
        let anchors = match &self.trust {
            Trust::None => return Ok(()),
            Trust::Roots(a, _) => a,
            Trust::Spiffe(map, _) => {
                let ids: Vec<&String> = summary
                    .uri_sans
                    .iter()
                    .filter(|u| u.starts_with("spiffe://"))
                    .collect();
                let domain = match ids.as_slice() {
                    [one] => one["spiffe://".len()..].split('/').next().unwrap_or(""),
                    _ => return Err(Error::InvalidCertificate(CertificateError::NotValidForName)),
                };
                if cert::is_ca(ee) {
                    return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
                }
                map.get(domain)
                    .ok_or(Error::InvalidCertificate(CertificateError::UnknownIssuer))?
            }
        };
        let ee_cert = webpki::EndEntityCert::try_from(ee).map_err(chain_error)?;
        let crls: Vec<webpki::CertRevocationList<'_>> =
            self.crls.iter().map(|c| c.clone().into()).collect();
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| {
                b.with_depth(if self.crl_leaf_only {
                    webpki::RevocationCheckDepth::EndEntity
                } else {
                    webpki::RevocationCheckDepth::Chain
                })
                .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                .build()
            });
        let depth = self.max_depth;
        let path_check = move |p: &webpki::VerifiedPath<'_>| match depth {
            Some(d) if p.intermediate_certificates().count() >= d.max(1) as usize => {
                Err(webpki::Error::MaximumPathDepthExceeded)
            }
            _ => Ok(()),
        };
        let verify = |time: UnixTime| {
            ee_cert
                .verify_for_usage(
                    self.algs.all,
                    anchors,
                    inter,
                    time,
                    usage,
                    revocation,
                    Some(&path_check),
                )
                .map(|_| ())
        };
        match verify(now) {
            Err(webpki::Error::CertExpired { .. }) if self.allow_expired => {
                let at = u64::try_from(summary.not_after.saturating_sub(1)).unwrap_or(0);
                verify(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    at,
                )))
                .map_err(chain_error)
            }
            r => r.map_err(chain_error),
        }
    }

    /// Verify a peer's certificate. `server_name` (`auto_san_validation`) must then match a
    /// DNS SAN too.
    pub fn verify(
        &self,
        ee: &CertificateDer<'_>,
        inter: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
        server_name: Option<&str>,
    ) -> Result<(), Error> {
        let summary = CertSummary::parse(ee).unwrap_or_default();
        let untrusted = |e: Error| {
            if self.accept_untrusted {
                Ok(())
            } else {
                Err(e)
            }
        };
        if let Err(e) = self.check_chain(ee, inter, now, usage, &summary) {
            self.stats.fail_verify_error().inc();
            untrusted(e)?;
        }
        let auto = server_name;
        let san_ok = (self.sans.is_empty() || self.sans.iter().any(|m| m.matches(&summary)))
            && auto.is_none_or(|n| {
                let m = StringMatch::Exact(n.to_owned(), true);
                summary.dns_sans.iter().any(|d| dns_matches(&m, d))
            });
        if !san_ok {
            self.stats.fail_verify_san().inc();
            untrusted(Error::InvalidCertificate(CertificateError::NotValidForName))?;
        }
        if !self.spki.is_empty() || !self.hashes.is_empty() {
            let hash_ok = self.hashes.contains(&cert::sha256(ee));
            let spki_ok = !self.spki.is_empty()
                && cert::spki(ee).is_some_and(|s| self.spki.contains(&cert::sha256(&s)));
            if !hash_ok && !spki_ok {
                self.stats.fail_verify_cert_hash().inc();
                untrusted(Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))?;
            }
        }
        Ok(())
    }

    fn hints(&self) -> &[DistinguishedName] {
        match &self.trust {
            _ if !self.send_ca_list => &[],
            Trust::None => &[],
            Trust::Roots(_, s) | Trust::Spiffe(_, s) => s,
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
}

/// A [`Validator`] as rustls's server and client certificate verifier; upstream, the flag asks
/// for the server name to be checked against the DNS SANs (`auto_san_validation`).
#[derive(Debug)]
pub struct Verifier(pub std::sync::Arc<Validator>, pub bool);

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let name = match server_name {
            ServerName::DnsName(d) if self.1 => Some(d.as_ref()),
            _ => None,
        };
        self.0
            .verify(
                end_entity,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                name,
            )
            .map(|()| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.tls12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algs.supported_schemes()
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        self.0.require_cert
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.hints()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.0
            .verify(
                end_entity,
                intermediates,
                now,
                webpki::KeyUsage::client_auth(),
                None,
            )
            .map(|()| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.tls12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algs.supported_schemes()
    }
}
