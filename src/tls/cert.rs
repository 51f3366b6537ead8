//! What tern reads from an X.509 certificate: subject alternative names by type, the subject
//! in RFC 2253 form (as Envoy prints it), serial, validity, and the SPKI / whole-certificate
//! SHA-256 digests that pins compare against. Parsing failures give empty answers: the chain
//! check has already refused a malformed certificate where it matters.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The parts of a certificate tern looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSummary {
    /// URI SANs (SPIFFE ids).
    pub uri_sans: Vec<String>,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// IP address SANs, printed.
    pub ip_sans: Vec<String>,
    /// Email (RFC 822) SANs.
    pub email_sans: Vec<String>,
    /// The subject, RFC 2253 (`CN=foo,O=bar`).
    pub subject: String,
    /// The issuer, RFC 2253.
    pub issuer: String,
    /// The serial number in lowercase hex, no separators (as Envoy prints it).
    pub serial: String,
    /// `notBefore`, seconds since the epoch.
    pub not_before: i64,
    /// `notAfter`, seconds since the epoch.
    pub not_after: i64,
}

impl CertSummary {
    /// Summarise a DER certificate (`None` if it does not parse).
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, c) = X509Certificate::from_der(der).ok()?;
        let mut s = CertSummary {
            subject: rfc2253(c.subject()),
            issuer: rfc2253(c.issuer()),
            serial: serial_hex(c.tbs_certificate.raw_serial()),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            ..Default::default()
        };
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::URI(u) => s.uri_sans.push((*u).to_owned()),
                    GeneralName::DNSName(d) => s.dns_sans.push((*d).to_owned()),
                    GeneralName::RFC822Name(e) => s.email_sans.push((*e).to_owned()),
                    GeneralName::IPAddress(ip) => {
                        if let Some(ip) = ip_string(ip) {
                            s.ip_sans.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(s)
    }
}

/// The DNS, URI and IP SANs of a certificate in their order, tagged `dns`, `uri`,
/// `ip_address` (the SAN kinds `/certs` lists).
pub fn ordered_sans(der: &[u8]) -> Vec<(&'static str, String)> {
    let Ok((_, c)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(("dns", (*d).to_owned())),
            GeneralName::URI(u) => Some(("uri", (*u).to_owned())),
            GeneralName::IPAddress(ip) => ip_string(ip).map(|i| ("ip_address", i)),
            _ => None,
        })
        .collect()
}

/// The raw DER subject of a certificate (for the CA list a server sends).
pub fn raw_subject(der: &[u8]) -> Option<Vec<u8>> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    Some(c.tbs_certificate.subject.as_raw().to_vec())
}

/// The DER `SubjectPublicKeyInfo` of a certificate.
pub fn spki(der: &[u8]) -> Option<Vec<u8>> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    Some(c.tbs_certificate.subject_pki.raw.to_vec())
}

/// Whether the certificate is a CA (`basicConstraints cA`).
pub fn is_ca(der: &[u8]) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, c)| c.is_ca())
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A serial number in lowercase hex, without the sign byte DER adds to a positive number.
fn serial_hex(raw: &[u8]) -> String {
    match raw {
        [0, rest @ ..] if !rest.is_empty() => hex(rest),
        _ => hex(raw),
    }
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn ip_string(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => {
            let a: [u8; 4] = b.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(a).to_string())
        }
        16 => {
            let a: [u8; 16] = b.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(a).to_string())
        }
        _ => None,
    }
}

fn attr_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "serialNumber",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 2253: RDNs last to first, joined by `,`; special characters escaped.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut rdns = Vec::new();
    for rdn in name.iter() {
        let mut parts = Vec::new();
        for a in rdn.iter() {
            let oid = a.attr_type().to_id_string();
            let key = attr_name(&oid).map(str::to_owned).unwrap_or(oid);
            let value = a
                .as_str()
                .map(escape)
                .unwrap_or_else(|_| format!("#{}", hex(a.attr_value().data)));
            parts.push(format!("{key}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    rdns.join(",")
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, ch) in v.chars().enumerate() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (ch == '#' || ch == ' '))
            || (i + 1 == v.chars().count() && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}
