//! `/certs`: the certificates of every TLS context, in Envoy's `admin.v3.Certificates` shape —
//! per context its CA certificates (`ca_cert`) and its own certificates (`cert_chain`, the
//! leaf of each), with path, serial, SANs, days until expiration and validity. Clusters come
//! first, then listeners' filter chains. A context not built yet is built from the current
//! secrets; one whose secrets are missing shows empty lists.

use crate::snapshot::World;
use crate::tls::cert::{self, CertSummary};
use crate::tls::{SecretMap, TransportSocket};
use envoy_types::pb::envoy::admin::v3 as admin_pb;
use envoy_types::pb::google::protobuf::Timestamp;
use rustls::pki_types::CertificateDer;
use std::time::{SystemTime, UNIX_EPOCH};

fn details(path: &str, der: &CertificateDer<'_>, now: i64) -> admin_pb::CertificateDetails {
    use admin_pb::subject_alternate_name::Name;
    let s = CertSummary::parse(der).unwrap_or_default();
    let ts = |secs: i64| Timestamp {
        seconds: secs,
        nanos: 0,
    };
    admin_pb::CertificateDetails {
        path: path.to_owned(),
        serial_number: s.serial.clone(),
        subject_alt_names: cert::ordered_sans(der)
            .into_iter()
            .map(|(kind, v)| admin_pb::SubjectAlternateName {
                name: Some(match kind {
                    "dns" => Name::Dns(v),
                    "uri" => Name::Uri(v),
                    _ => Name::IpAddress(v),
                }),
            })
            .collect(),
        days_until_expiration: u64::try_from((s.not_after - now) / 86_400).unwrap_or(0),
        valid_from: Some(ts(s.not_before)),
        expiration_time: Some(ts(s.not_after)),
        ocsp_details: None,
    }
}

fn context(ts: &TransportSocket, secrets: &SecretMap, now: i64) -> Option<admin_pb::Certificate> {
    let mut out = admin_pb::Certificate::default();
    if let Some(s) = ts.server() {
        if let Some(b) = s.last().or_else(|| s.current(secrets).ok()) {
            if let Some(v) = &b.validator {
                out.ca_cert = crate::tls::ca_certificates(v)
                    .map(|(p, d)| details(p, d, now))
                    .collect();
            }
            out.cert_chain = b
                .certs
                .iter()
                .filter_map(|c| c.key.cert.first().map(|d| details(&c.chain_path, d, now)))
                .collect();
        }
    } else if let Some(c) = ts.client() {
        if let Some(b) = c.last().or_else(|| c.current(secrets).ok()) {
            if let Some(v) = &b.validator {
                out.ca_cert = crate::tls::ca_certificates(v)
                    .map(|(p, d)| details(p, d, now))
                    .collect();
            }
            out.cert_chain = b
                .certs
                .iter()
                .filter_map(|c| c.key.cert.first().map(|d| details(&c.chain_path, d, now)))
                .collect();
        }
    } else {
        return None;
    }
    Some(out)
}

/// The certificates of every TLS context in `world`.
pub fn certificates(world: &World) -> admin_pb::Certificates {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secrets = world.secrets.load();
    let mut out = admin_pb::Certificates::default();
    let clusters = world.clusters.load();
    let mut names: Vec<&std::sync::Arc<str>> = clusters.keys().collect();
    names.sort();
    for n in names {
        let c = &clusters[&**n];
        let sockets = c
            .transport_socket
            .iter()
            .chain(c.transport_socket_matches.iter().map(|m| &m.socket));
        out.certificates
            .extend(sockets.filter_map(|ts| context(ts, &secrets, now)));
    }
    for l in world.listeners.load().values() {
        for chain in l.chains.iter().chain(l.default_chain.as_ref()) {
            if let Some(ts) = &chain.transport_socket {
                out.certificates.extend(context(ts, &secrets, now));
            }
        }
    }
    out
}
