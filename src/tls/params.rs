//! `TlsParameters` mapped onto rustls: protocol versions, cipher suites and ECDH curves by
//! their BoringSSL names (what Envoy's configuration and `ssl.*` stats use). rustls speaks
//! TLS 1.2 and 1.3 with AEAD ECDHE suites only. A list that names something rustls lacks but
//! BoringSSL knows (Istio's default inbound list ends with the RSA key-exchange suites
//! `AES256-GCM-SHA384`, `AES128-GCM-SHA256`) keeps the rest; a list that leaves nothing rustls
//! can do, an unknown name, or a version range outside 1.2–1.3 is a configuration error.

use crate::config::ConfigError;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use rustls::crypto::{CryptoProvider, ring};
use rustls::{CipherSuite, NamedGroup, ProtocolVersion, SupportedProtocolVersion};
use std::sync::Arc;

/// BoringSSL's name of a cipher suite (`ssl.ciphers.<name>`).
pub fn cipher_name(s: CipherSuite) -> &'static str {
    use CipherSuite as C;
    match s {
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => "unknown",
    }
}

/// BoringSSL's name of a key exchange group (`ssl.curves.<name>`).
pub fn curve_name(g: NamedGroup) -> &'static str {
    match g {
        NamedGroup::X25519 => "X25519",
        NamedGroup::secp256r1 => "P-256",
        NamedGroup::secp384r1 => "P-384",
        NamedGroup::secp521r1 => "P-521",
        _ => "unknown",
    }
}

/// Envoy's name of a protocol version (`ssl.versions.<name>`, `%DOWNSTREAM_TLS_VERSION%`).
pub fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        ProtocolVersion::TLSv1_1 => "TLSv1.1",
        ProtocolVersion::TLSv1_0 => "TLSv1",
        _ => "unknown",
    }
}

/// Suites BoringSSL knows that rustls does not implement: skipped in a list.
const BORINGSSL_ONLY_SUITES: &[&str] = &[
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "PSK-AES128-CBC-SHA",
    "PSK-AES256-CBC-SHA",
];

/// Curves BoringSSL knows that the ring provider does not: skipped in a list.
const BORINGSSL_ONLY_CURVES: &[&str] = &["P-521", "X25519Kyber768Draft00", "X25519MLKEM768"];

/// The versions and the crypto provider (suites and groups) of one context.
#[derive(Debug, Clone)]
pub struct Params {
    /// The protocol versions to offer or accept.
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// ring with the chosen suites and groups.
    pub provider: Arc<CryptoProvider>,
}

fn version(v: i32, field: &str) -> Result<Option<u8>, ConfigError> {
    use tls_pb::tls_parameters::TlsProtocol as P;
    Ok(match P::try_from(v) {
        Ok(P::TlsAuto) => None,
        Ok(P::TlSv10) => Some(0),
        Ok(P::TlSv11) => Some(1),
        Ok(P::TlSv12) => Some(2),
        Ok(P::TlSv13) => Some(3),
        Err(_) => return Err(ConfigError::new(field, format!("unknown TLS version {v}"))),
    })
}

/// Compile `tls_params`. `server` picks Envoy's defaults: TLS 1.2–1.3 for servers, and for
/// clients TLS 1.2–1.2 as Envoy's documentation gives it.
pub fn compile(p: Option<&tls_pb::TlsParameters>, server: bool) -> Result<Params, ConfigError> {
    let default = tls_pb::TlsParameters::default();
    let p = p.unwrap_or(&default);
    let min = version(
        p.tls_minimum_protocol_version,
        "tls_minimum_protocol_version",
    )?
    .unwrap_or(2);
    let max = version(
        p.tls_maximum_protocol_version,
        "tls_maximum_protocol_version",
    )?
    .unwrap_or(if server { 3 } else { 2 });
    if min > max {
        return Err(ConfigError::new(
            "tls_minimum_protocol_version",
            "is above tls_maximum_protocol_version",
        ));
    }
    let mut versions = Vec::new();
    if min <= 3 && max >= 3 {
        versions.push(&rustls::version::TLS13);
    }
    if min <= 2 && max >= 2 {
        versions.push(&rustls::version::TLS12);
    }
    if versions.is_empty() {
        return Err(ConfigError::new(
            "tls_maximum_protocol_version",
            "TLS 1.0 and 1.1 are not supported (rustls speaks TLS 1.2 and 1.3)",
        ));
    }
    if !p.signature_algorithms.is_empty() {
        return Err(ConfigError::new(
            "signature_algorithms",
            "is not supported (rustls chooses among its own signature schemes)",
        ));
    }
    if !p.compliance_policies.is_empty() {
        return Err(ConfigError::new("compliance_policies", "is not supported"));
    }
    let mut provider = ring::default_provider();
    if !p.cipher_suites.is_empty() {
        let all = provider.cipher_suites.clone();
        let mut chosen: Vec<_> = all
            .iter()
            .filter(|s| s.tls13().is_some())
            .copied()
            .collect();
        let mut tls12 = 0;
        for entry in &p.cipher_suites {
            // `[A|B]` is an equal-preference group; rustls has no such notion, keep the order.
            let names = entry
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split('|');
            for name in names {
                if BORINGSSL_ONLY_SUITES.contains(&name) {
                    continue;
                }
                let Some(s) = all
                    .iter()
                    .find(|s| s.tls13().is_none() && cipher_name(s.suite()) == name)
                else {
                    return Err(ConfigError::new(
                        "cipher_suites",
                        format!("unknown cipher suite {name:?}"),
                    ));
                };
                if !chosen.contains(s) {
                    chosen.push(*s);
                    tls12 += 1;
                }
            }
        }
        if tls12 == 0 && min <= 2 {
            return Err(ConfigError::new(
                "cipher_suites",
                "none of the listed TLS 1.2 cipher suites is supported by rustls (AEAD ECDHE suites only)",
            ));
        }
        provider.cipher_suites = chosen;
    }
    if !p.ecdh_curves.is_empty() {
        let all = provider.kx_groups.clone();
        let mut chosen = Vec::new();
        for name in &p.ecdh_curves {
            if BORINGSSL_ONLY_CURVES.contains(&name.as_str()) {
                continue;
            }
            let Some(g) = all.iter().find(|g| curve_name(g.name()) == name) else {
                return Err(ConfigError::new(
                    "ecdh_curves",
                    format!("unknown curve {name:?}"),
                ));
            };
            chosen.push(*g);
        }
        if chosen.is_empty() {
            return Err(ConfigError::new(
                "ecdh_curves",
                "none of the listed curves is supported (X25519, P-256, P-384)",
            ));
        }
        provider.kx_groups = chosen;
    }
    Ok(Params {
        versions,
        provider: Arc::new(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut tls_pb::TlsParameters)) -> tls_pb::TlsParameters {
        let mut p = tls_pb::TlsParameters::default();
        f(&mut p);
        p
    }

    #[test]
    fn defaults_and_versions() {
        let s = compile(None, true).unwrap();
        assert_eq!(s.versions.len(), 2);
        let c = compile(None, false).unwrap();
        assert_eq!(c.versions.len(), 1);
        assert_eq!(c.versions[0].version, ProtocolVersion::TLSv1_2);
        let only13 = params(|p| {
            p.tls_minimum_protocol_version = 4;
            p.tls_maximum_protocol_version = 4;
        });
        let s = compile(Some(&only13), false).unwrap();
        assert_eq!(s.versions.len(), 1);
        assert_eq!(s.versions[0].version, ProtocolVersion::TLSv1_3);
        let old = params(|p| {
            p.tls_minimum_protocol_version = 1;
            p.tls_maximum_protocol_version = 2;
        });
        let e = compile(Some(&old), true).unwrap_err().to_string();
        assert!(e.contains("TLS 1.0 and 1.1"), "{e}");
        let inverted = params(|p| {
            p.tls_minimum_protocol_version = 4;
            p.tls_maximum_protocol_version = 3;
        });
        assert!(compile(Some(&inverted), true).is_err());
    }

    #[test]
    fn istio_cipher_list_keeps_what_rustls_has() {
        let istio = params(|p| {
            p.cipher_suites = [
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "AES256-GCM-SHA384",
                "AES128-GCM-SHA256",
            ]
            .map(String::from)
            .to_vec();
        });
        let s = compile(Some(&istio), true).unwrap();
        let names: Vec<_> = s
            .provider
            .cipher_suites
            .iter()
            .map(|c| cipher_name(c.suite()))
            .collect();
        assert_eq!(names.len(), 3 + 4, "{names:?}");
        assert_eq!(names[3], "ECDHE-ECDSA-AES256-GCM-SHA384");
        assert!(!names.contains(&"ECDHE-RSA-CHACHA20-POLY1305"));

        let group = params(|p| {
            p.cipher_suites =
                vec!["[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]".into()]
        });
        assert_eq!(
            compile(Some(&group), true)
                .unwrap()
                .provider
                .cipher_suites
                .len(),
            5
        );

        let none = params(|p| p.cipher_suites = vec!["AES128-SHA".into()]);
        let e = compile(Some(&none), true).unwrap_err().to_string();
        assert!(e.contains("none of the listed"), "{e}");
        let unknown = params(|p| p.cipher_suites = vec!["NOPE".into()]);
        assert!(compile(Some(&unknown), true).is_err());
    }

    #[test]
    fn curves() {
        let c = params(|p| p.ecdh_curves = vec!["P-256".into(), "P-521".into()]);
        let s = compile(Some(&c), true).unwrap();
        assert_eq!(s.provider.kx_groups.len(), 1);
        assert_eq!(curve_name(s.provider.kx_groups[0].name()), "P-256");
        let bad = params(|p| p.ecdh_curves = vec!["P-521".into()]);
        assert!(compile(Some(&bad), true).is_err());
        let sig = params(|p| p.signature_algorithms = vec!["rsa_pss_rsae_sha256".into()]);
        assert!(compile(Some(&sig), true).is_err());
    }
}
