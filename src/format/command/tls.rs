//! The TLS commands: `%DOWNSTREAM_PEER_URI_SAN%`, `%UPSTREAM_TLS_VERSION%`...

/// A TLS fact of the downstream or upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsField {
    /// `*_PEER_URI_SAN`.
    PeerUriSan,
    /// `*_LOCAL_URI_SAN`.
    LocalUriSan,
    /// `*_PEER_DNS_SAN`.
    PeerDnsSan,
    /// `*_LOCAL_DNS_SAN`.
    LocalDnsSan,
    /// `*_PEER_SUBJECT`.
    PeerSubject,
    /// `*_LOCAL_SUBJECT`.
    LocalSubject,
    /// `*_PEER_ISSUER`.
    PeerIssuer,
    /// `*_PEER_SERIAL`.
    PeerSerial,
    /// `*_PEER_FINGERPRINT_256`.
    PeerFingerprint256,
    /// `*_TLS_VERSION`.
    Version,
    /// `*_TLS_CIPHER`.
    Cipher,
}

impl TlsField {
    /// `DOWNSTREAM_PEER_URI_SAN` → (false, PeerUriSan); `UPSTREAM_...` → (true, ...).
    pub(super) fn parse(name: &str) -> Option<(bool, TlsField)> {
        let (upstream, rest) = if let Some(r) = name.strip_prefix("DOWNSTREAM_") {
            (false, r)
        } else {
            (true, name.strip_prefix("UPSTREAM_")?)
        };
        let f = match rest {
            "PEER_URI_SAN" => TlsField::PeerUriSan,
            "LOCAL_URI_SAN" => TlsField::LocalUriSan,
            "PEER_DNS_SAN" => TlsField::PeerDnsSan,
            "LOCAL_DNS_SAN" => TlsField::LocalDnsSan,
            "PEER_SUBJECT" => TlsField::PeerSubject,
            "LOCAL_SUBJECT" => TlsField::LocalSubject,
            "PEER_ISSUER" => TlsField::PeerIssuer,
            "PEER_SERIAL" => TlsField::PeerSerial,
            "PEER_FINGERPRINT_256" => TlsField::PeerFingerprint256,
            "TLS_VERSION" => TlsField::Version,
            "TLS_CIPHER" => TlsField::Cipher,
            _ => return None,
        };
        Some((upstream, f))
    }

    /// The value for `tls`, `None` when the connection has no such fact (printed `-`).
    pub fn value(self, tls: &crate::tls::TlsInfo) -> Option<String> {
        let peer = tls.peer.as_ref();
        let local = tls.local.as_deref();
        let v = match self {
            TlsField::PeerUriSan => peer?.uri_sans.join(","),
            TlsField::LocalUriSan => local?.uri_sans.join(","),
            TlsField::PeerDnsSan => peer?.dns_sans.join(","),
            TlsField::LocalDnsSan => local?.dns_sans.join(","),
            TlsField::PeerSubject => peer?.subject.clone(),
            TlsField::LocalSubject => local?.subject.clone(),
            TlsField::PeerIssuer => peer?.issuer.clone(),
            TlsField::PeerSerial => peer?.serial.clone(),
            TlsField::PeerFingerprint256 => tls.peer_fingerprint.clone()?,
            TlsField::Version => tls.version.to_owned(),
            TlsField::Cipher => tls.cipher.to_owned(),
        };
        (!v.is_empty()).then_some(v)
    }
}
