//! SDS-shaped contexts and rotation, Istio's SPIFFE validator, configuration errors.
#![allow(deprecated)] // match_subject_alt_names is what istiod sends

use super::certs::{Ca, Cert};
use super::*;

fn secret_cert(name: &str, c: &Cert) -> Arc<tls_pb::Secret> {
    Arc::new(tls_pb::Secret {
        name: name.into(),
        r#type: Some(tls_pb::secret::Type::TlsCertificate(tls_cert(c))),
    })
}

fn secret_ca(name: &str, pem: &str) -> Arc<tls_pb::Secret> {
    Arc::new(tls_pb::Secret {
        name: name.into(),
        r#type: Some(tls_pb::secret::Type::ValidationContext(
            tls_pb::CertificateValidationContext {
                trusted_ca: inline(pem),
                ..Default::default()
            },
        )),
    })
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn sds_secrets_istio_shape_and_rotation() {
    let store = Store::new();
    let ca = Ca::new("root");
    use matcher_pb::string_matcher::MatchPattern as P;
    let istio = |alpn: &[&str]| tls_pb::CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds("default")],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(tls_pb::CertificateValidationContext {
                    match_subject_alt_names: vec![matcher_pb::StringMatcher {
                        match_pattern: Some(P::Prefix("spiffe://cluster.local/".into())),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds("ROOTCA")),
                ..Default::default()
            },
        )),
        alpn_protocols: alpn.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    let s = server(&store, istio(&["h2", "http/1.1"]), true);
    let c = client(
        &store,
        istio(&["istio-peer-exchange", "istio"]),
        "outbound_.8080_._.b.ns.svc.cluster.local",
    );
    // No secrets yet: the handshake fails, nothing is cached.
    let empty = SecretMap::new();
    assert!(
        handshake(&s, &c, &empty, Default::default())
            .await
            .0
            .is_err()
    );

    let first = ca.spiffe("cluster.local", "ns", "a");
    let mut map = SecretMap::new();
    map.insert("default".into(), secret_cert("default", &first));
    map.insert("ROOTCA".into(), secret_ca("ROOTCA", &ca.cert_pem));
    let (si, ci) = handshake(&s, &c, &map, Default::default()).await;
    assert_eq!(
        ci.unwrap().peer.unwrap().serial,
        cert::CertSummary::parse(&first.der).unwrap().serial
    );
    assert!(si.is_ok());

    // A new `default` secret: the next handshake serves it.
    let second = ca.spiffe("cluster.local", "ns", "a");
    map.insert("default".into(), secret_cert("default", &second));
    let (_, ci) = handshake(&s, &c, &map, Default::default()).await;
    assert_eq!(
        ci.unwrap().peer.unwrap().serial,
        cert::CertSummary::parse(&second.der).unwrap().serial
    );
    // A bad rotation keeps the last good certificate.
    let mut broken = map.clone();
    broken.insert(
        "default".into(),
        Arc::new(tls_pb::Secret {
            name: "default".into(),
            r#type: Some(tls_pb::secret::Type::TlsCertificate(
                tls_pb::TlsCertificate {
                    certificate_chain: inline("not pem"),
                    private_key: inline(&second.key_pem),
                    ..Default::default()
                },
            )),
        }),
    );
    let (_, ci) = handshake(&s, &c, &broken, Default::default()).await;
    assert_eq!(
        ci.unwrap().peer.unwrap().serial,
        cert::CertSummary::parse(&second.der).unwrap().serial
    );
}

#[tokio::test]
async fn spiffe_validator_picks_the_bundle_of_the_peer_trust_domain() {
    let store = Store::new();
    let ca_a = Ca::new("a");
    let ca_b = Ca::new("b");
    let td = |name: &str, ca: &Ca| tls_pb::spiffe_cert_validator_config::TrustDomain {
        name: name.into(),
        trust_bundle: inline(&ca.cert_pem),
        ..Default::default()
    };
    let cfg = tls_pb::SpiffeCertValidatorConfig {
        trust_domains: vec![td("a.local", &ca_a), td("b.local", &ca_b)],
        ..Default::default()
    };
    let v = tls_pb::CertificateValidationContext {
        custom_validator_config: Some(core_pb::TypedExtensionConfig {
            name: "envoy.tls.cert_validator.spiffe".into(),
            typed_config: Some(envoy_types::pb::google::protobuf::Any {
                type_url: tls_pb::SpiffeCertValidatorConfig::type_url(),
                value: prost::Message::encode_to_vec(&cfg),
            }),
        }),
        ..Default::default()
    };
    let s = server(
        &store,
        common(Some(&ca_a.server(&["s"])), Some(v), &[]),
        true,
    );
    let ok_b = client(
        &store,
        common(Some(&ca_b.spiffe("b.local", "ns", "x")), None, &[]),
        "",
    );
    assert!(
        handshake(&s, &ok_b, &SecretMap::new(), Default::default())
            .await
            .0
            .is_ok()
    );
    // Signed by A but claiming B's trust domain: refused.
    let wrong = client(
        &store,
        common(Some(&ca_a.spiffe("b.local", "ns", "x")), None, &[]),
        "",
    );
    assert!(
        handshake(&s, &wrong, &SecretMap::new(), Default::default())
            .await
            .0
            .is_err()
    );
    // Unknown trust domain.
    let unknown = client(
        &store,
        common(Some(&ca_a.spiffe("c.local", "ns", "x")), None, &[]),
        "",
    );
    assert!(
        handshake(&s, &unknown, &SecretMap::new(), Default::default())
            .await
            .0
            .is_err()
    );
}

#[test]
fn config_errors_are_clear() {
    let store = Store::new();
    let ca = Ca::new("root");
    let cert = ca.server(&["a"]);
    let no_cert = tls_pb::DownstreamTlsContext::default();
    let e = ServerContext::compile(&no_cert, &store, "l.")
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs tls_certificates"), "{e}");
    let mut sans_without_ca = tls_pb::CertificateValidationContext::default();
    use matcher_pb::string_matcher::MatchPattern as P;
    sans_without_ca.match_typed_subject_alt_names = vec![san(
        tls_pb::subject_alt_name_matcher::SanType::Dns,
        P::Exact("x".into()),
    )];
    let ctx = tls_pb::DownstreamTlsContext {
        common_tls_context: Some(common(Some(&cert), Some(sans_without_ca), &[])),
        ..Default::default()
    };
    let e = ServerContext::compile(&ctx, &store, "l.")
        .unwrap_err()
        .to_string();
    assert!(e.contains("without trusted CA"), "{e}");
    let mut bad_re = vc(&ca);
    bad_re.match_typed_subject_alt_names = vec![san(
        tls_pb::subject_alt_name_matcher::SanType::Uri,
        P::SafeRegex(matcher_pb::RegexMatcher {
            regex: "(".into(),
            ..Default::default()
        }),
    )];
    let ctx = tls_pb::UpstreamTlsContext {
        common_tls_context: Some(common(None, Some(bad_re), &[])),
        ..Default::default()
    };
    let e = ClientContext::compile(&ctx, &store, "c.")
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid regex"), "{e}");
}

#[test]
fn certificate_summaries_as_envoy_prints_them() {
    let ca = Ca::new("root");
    let s = cert::CertSummary::parse(&ca.der).unwrap();
    // RFC 2253: the last RDN first.
    assert_eq!(s.subject, "O=tern tests,CN=root");
    assert_eq!(s.issuer, s.subject);
    let leaf = ca.leaf(&certs::LeafSpec {
        cn: "a,b".into(),
        dns: vec!["a.test".into()],
        uris: vec!["spiffe://td/ns/x/sa/y".into()],
        ips: vec![std::net::Ipv6Addr::LOCALHOST.into()],
        emails: vec!["me@a.test".into()],
        ..Default::default()
    });
    let s = cert::CertSummary::parse(&leaf.der).unwrap();
    assert_eq!(s.subject, "CN=a\\,b");
    assert_eq!(s.serial, format!("{:04x}", leaf.serial));
    assert_eq!(s.uri_sans, ["spiffe://td/ns/x/sa/y"]);
    assert_eq!(s.ip_sans, ["::1"]);
    assert_eq!(s.email_sans, ["me@a.test"]);
    assert_eq!(
        cert::ordered_sans(&leaf.der),
        [
            ("dns", "a.test".to_owned()),
            ("uri", "spiffe://td/ns/x/sa/y".to_owned()),
            ("ip_address", "::1".to_owned())
        ]
    );
    assert!(cert::CertSummary::parse(b"not a certificate").is_none());
}
