//! [`TlsInfo`]: what the rest of tern may know about a TLS connection once its handshake is
//! done (access log commands, RBAC principals, Istio's peer identity), and counting the
//! handshake in `ssl.*`.

use super::cert::{self, CertSummary};
use super::params::{cipher_name, curve_name, version_name};
use super::stats::SslStats;
use rustls::CommonState;
use std::sync::Arc;

/// A TLS connection's negotiated parameters and certificates.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The SNI the client sent (`%REQUESTED_SERVER_NAME%`) or, upstream, the one we sent.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// `TLSv1.2` or `TLSv1.3` (`%DOWNSTREAM_TLS_VERSION%`).
    pub version: &'static str,
    /// BoringSSL's name of the cipher suite (`%DOWNSTREAM_TLS_CIPHER%`).
    pub cipher: &'static str,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// The peer's leaf certificate (`%DOWNSTREAM_PEER_URI_SAN%`, `%DOWNSTREAM_PEER_SUBJECT%`).
    pub peer: Option<CertSummary>,
    /// SHA-256 of the peer's leaf certificate, hex (`%DOWNSTREAM_PEER_FINGERPRINT_256%`).
    pub peer_fingerprint: Option<String>,
    /// Our own certificate (`%DOWNSTREAM_LOCAL_URI_SAN%`).
    pub local: Option<Arc<CertSummary>>,
}

impl TlsInfo {
    /// The peer's URI SANs joined by `,`, as Envoy prints them (empty without a certificate).
    pub fn peer_uri_sans(&self) -> String {
        self.peer
            .as_ref()
            .map(|p| p.uri_sans.join(","))
            .unwrap_or_default()
    }

    /// Our URI SANs joined by `,`.
    pub fn local_uri_sans(&self) -> String {
        self.local
            .as_ref()
            .map(|p| p.uri_sans.join(","))
            .unwrap_or_default()
    }

    /// The peer's SPIFFE identity (its first `spiffe://` URI SAN): Istio's principal.
    pub fn peer_spiffe_id(&self) -> Option<&str> {
        self.peer
            .as_ref()?
            .uri_sans
            .iter()
            .find(|u| u.starts_with("spiffe://"))
            .map(String::as_str)
    }

    /// Read a finished handshake and count it in `stats`.
    pub(super) fn from_connection(
        conn: &CommonState,
        sni: Option<String>,
        local: Option<Arc<CertSummary>>,
        stats: &SslStats,
    ) -> Self {
        let version = conn
            .protocol_version()
            .map(version_name)
            .unwrap_or("unknown");
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| cipher_name(s.suite()))
            .unwrap_or("unknown");
        let curve = conn
            .negotiated_key_exchange_group()
            .map(|g| curve_name(g.name()));
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        stats.completed(cipher, version, curve);
        if resumed {
            stats.session_reused().inc();
        }
        let leaf = conn.peer_certificates().and_then(|c| c.first());
        if leaf.is_none() {
            stats.no_certificate().inc();
        }
        TlsInfo {
            sni,
            alpn: conn
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            version,
            cipher,
            resumed,
            peer: leaf.and_then(|d| CertSummary::parse(d)),
            peer_fingerprint: leaf.map(|d| cert::hex(&cert::sha256(d))),
            local,
        }
    }
}
