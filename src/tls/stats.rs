//! Envoy's `ssl.*` statistics of one TLS context, under `listener.<address>.ssl.` for a filter
//! chain and `cluster.<name>.ssl.` for a cluster.

use crate::stats::{Counter, Store};

const NAMES: &[&str] = &[
    "handshake",
    "connection_error",
    "fail_verify_no_cert",
    "fail_verify_san",
    "fail_verify_error",
    "fail_verify_cert_hash",
    "no_certificate",
    "session_reused",
];

/// `ciphers.<c>`, `versions.<v>` and `curves.<g>` for everything the ring provider can
/// negotiate (made with the context, so the handshake path never takes the store's lock).
const NEGOTIATED: &[&str] = &[
    "ciphers.TLS_AES_128_GCM_SHA256",
    "ciphers.TLS_AES_256_GCM_SHA384",
    "ciphers.TLS_CHACHA20_POLY1305_SHA256",
    "ciphers.ECDHE-ECDSA-AES128-GCM-SHA256",
    "ciphers.ECDHE-RSA-AES128-GCM-SHA256",
    "ciphers.ECDHE-ECDSA-AES256-GCM-SHA384",
    "ciphers.ECDHE-RSA-AES256-GCM-SHA384",
    "ciphers.ECDHE-ECDSA-CHACHA20-POLY1305",
    "ciphers.ECDHE-RSA-CHACHA20-POLY1305",
    "versions.TLSv1.2",
    "versions.TLSv1.3",
    "curves.X25519",
    "curves.P-256",
    "curves.P-384",
];

/// The `ssl.*` counters of a context.
#[derive(Debug, Clone)]
pub struct SslStats {
    cells: Vec<Counter>,
    negotiated: Vec<Counter>,
}

impl SslStats {
    /// The counters `<scope>ssl.*` (`scope` is `listener.<address>.` or `cluster.<name>.`).
    pub fn new(store: &Store, scope: &str) -> Self {
        let prefix = format!("{scope}ssl.");
        Self {
            cells: store.counter_block(&prefix, NAMES),
            negotiated: store.counter_block(&prefix, NEGOTIATED),
        }
    }

    fn at(&self, i: usize) -> &Counter {
        &self.cells[i]
    }

    /// `ssl.handshake`: handshakes completed.
    pub fn handshake(&self) -> &Counter {
        self.at(0)
    }
    /// `ssl.connection_error`: handshakes (or TLS reads) that failed.
    pub fn connection_error(&self) -> &Counter {
        self.at(1)
    }
    /// `ssl.fail_verify_no_cert`: a required peer certificate was not presented.
    pub fn fail_verify_no_cert(&self) -> &Counter {
        self.at(2)
    }
    /// `ssl.fail_verify_san`: no subject alternative name matched.
    pub fn fail_verify_san(&self) -> &Counter {
        self.at(3)
    }
    /// `ssl.fail_verify_error`: the chain did not verify against the trusted CA.
    pub fn fail_verify_error(&self) -> &Counter {
        self.at(4)
    }
    /// `ssl.fail_verify_cert_hash`: neither a certificate hash nor an SPKI pin matched.
    pub fn fail_verify_cert_hash(&self) -> &Counter {
        self.at(5)
    }
    /// `ssl.no_certificate`: handshakes that completed without a peer certificate.
    pub fn no_certificate(&self) -> &Counter {
        self.at(6)
    }
    /// `ssl.session_reused`: handshakes that resumed a session.
    pub fn session_reused(&self) -> &Counter {
        self.at(7)
    }

    /// Count a completed handshake: `handshake`, `ciphers.<c>`, `versions.<v>`, `curves.<g>`
    /// (no curve on a resumed TLS 1.2 session).
    pub fn completed(&self, cipher: &str, version: &str, curve: Option<&str>) {
        self.handshake().inc();
        let names = [
            ("ciphers.", Some(cipher)),
            ("versions.", Some(version)),
            ("curves.", curve),
        ];
        for (kind, name) in names {
            let Some(name) = name else { continue };
            let found = NEGOTIATED
                .iter()
                .position(|n| n.strip_prefix(kind) == Some(name));
            if let Some(c) = found.and_then(|i| self.negotiated.get(i)) {
                c.inc();
            }
        }
    }
}
