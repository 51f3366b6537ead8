//! Certificates made at test time with rcgen: a CA, leaves signed by it (DNS names, SPIFFE
//! ids, IPs), CRLs. Nothing is checked in, nothing expires during a run. Also included by
//! tern's unit tests (`src/tls/tests.rs`), so it uses rcgen and the standard library only.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use std::sync::atomic::{AtomicU64, Ordering};

static SERIAL: AtomicU64 = AtomicU64::new(1000);

fn next_serial() -> u64 {
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// Which key a certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256.
    EcdsaP256,
    /// ECDSA P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

fn key(kind: KeyKind) -> KeyPair {
    let alg = match kind {
        KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
    };
    KeyPair::generate_for(alg).expect("key generation")
}

/// A certificate authority.
pub struct Ca {
    /// Its certificate, PEM.
    pub cert_pem: String,
    /// Its certificate, DER.
    pub der: Vec<u8>,
    /// The certificates a leaf it signs is sent with: empty for a root, the intermediates
    /// (this one first) for an intermediate.
    pub chain_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key.
#[derive(Debug, Clone)]
pub struct Cert {
    /// The leaf certificate then its intermediates, PEM.
    pub cert_pem: String,
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The serial number.
    pub serial: u64,
}

/// What goes into a leaf.
#[derive(Debug, Clone, Default)]
pub struct LeafSpec {
    /// Subject common name.
    pub cn: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// IP SANs.
    pub ips: Vec<std::net::IpAddr>,
    /// Email SANs.
    pub emails: Vec<String>,
    /// Already expired.
    pub expired: bool,
    /// Key type (default ECDSA P-256).
    pub key: Option<KeyKind>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "tern tests");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(SerialNumber::from(next_serial()));
    p
}

impl Ca {
    /// An intermediate CA named `cn`, signed by this one.
    pub fn intermediate(&self, cn: &str) -> Ca {
        let p = ca_params(cn);
        let k = key(KeyKind::EcdsaP256);
        let cert = p.signed_by(&k, &self.issuer).expect("sign intermediate");
        Ca {
            chain_pem: format!("{}{}", cert.pem(), self.chain_pem),
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(p, k),
        }
    }

    /// A new self-signed CA named `cn`.
    pub fn new(cn: &str) -> Ca {
        let p = ca_params(cn);
        let k = key(KeyKind::EcdsaP256);
        let cert = p.self_signed(&k).expect("self-signed CA");
        Ca {
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
            chain_pem: String::new(),
            issuer: Issuer::new(p, k),
        }
    }

    /// A leaf as `spec` describes.
    pub fn leaf(&self, spec: &LeafSpec) -> Cert {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.cn.as_str());
        p.distinguished_name = dn;
        for d in &spec.dns {
            p.subject_alt_names
                .push(SanType::DnsName(d.clone().try_into().expect("dns name")));
        }
        for u in &spec.uris {
            p.subject_alt_names
                .push(SanType::URI(u.clone().try_into().expect("uri")));
        }
        for e in &spec.emails {
            p.subject_alt_names
                .push(SanType::Rfc822Name(e.clone().try_into().expect("email")));
        }
        for ip in &spec.ips {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let serial = next_serial();
        p.serial_number = Some(SerialNumber::from(serial));
        if spec.expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        } else {
            p.not_before = rcgen::date_time_ymd(2024, 1, 1);
            p.not_after = rcgen::date_time_ymd(2090, 1, 1);
        }
        let k = key(spec.key.unwrap_or(KeyKind::EcdsaP256));
        let cert = p.signed_by(&k, &self.issuer).expect("sign leaf");
        Cert {
            cert_pem: format!("{}{}", cert.pem(), self.chain_pem),
            der: cert.der().to_vec(),
            key_pem: k.serialize_pem(),
            serial,
        }
    }

    /// A server certificate for DNS names (the first is also the CN) and 127.0.0.1.
    pub fn server(&self, dns: &[&str]) -> Cert {
        self.leaf(&LeafSpec {
            cn: dns.first().copied().unwrap_or("server").into(),
            dns: dns.iter().map(|d| d.to_string()).collect(),
            ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            ..Default::default()
        })
    }

    /// An Istio workload certificate: URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`, no subject.
    pub fn spiffe(&self, td: &str, ns: &str, sa: &str) -> Cert {
        self.leaf(&LeafSpec {
            uris: vec![spiffe_id(td, ns, sa)],
            ..Default::default()
        })
    }

    /// A CRL revoking `revoked`.
    pub fn crl(&self, revoked: &[&Cert]) -> String {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2090, 1, 1),
            crl_number: SerialNumber::from(next_serial()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| RevokedCertParams {
                    serial_number: SerialNumber::from(c.serial),
                    revocation_time: rcgen::date_time_ymd(2024, 6, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("sign CRL")
            .pem()
            .expect("CRL PEM")
    }
}

/// `spiffe://<td>/ns/<ns>/sa/<sa>`.
pub fn spiffe_id(td: &str, ns: &str, sa: &str) -> String {
    format!("spiffe://{td}/ns/{ns}/sa/{sa}")
}
