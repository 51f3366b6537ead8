//! Handshakes between a [`ServerContext`] and a [`ClientContext`] over an in-memory pipe, with
//! certificates made by rcgen.
#![allow(deprecated)] // match_subject_alt_names is what istiod sends

#[path = "../../tests/support/certs.rs"]
mod certs;

use super::*;
use certs::{Ca, Cert, KeyKind, LeafSpec, spiffe_id};
use core_pb::DataSource;
use core_pb::data_source::Specifier;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;
use std::time::Duration;
use tls_pb::common_tls_context::{CombinedCertificateValidationContext, ValidationContextType};

fn inline(s: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineString(s.into())),
        ..Default::default()
    })
}

fn tls_cert(c: &Cert) -> tls_pb::TlsCertificate {
    tls_pb::TlsCertificate {
        certificate_chain: inline(&c.cert_pem),
        private_key: inline(&c.key_pem),
        ..Default::default()
    }
}

fn vc(ca: &Ca) -> tls_pb::CertificateValidationContext {
    tls_pb::CertificateValidationContext {
        trusted_ca: inline(&ca.cert_pem),
        ..Default::default()
    }
}

fn san(
    kind: tls_pb::subject_alt_name_matcher::SanType,
    m: matcher_pb::string_matcher::MatchPattern,
) -> tls_pb::SubjectAltNameMatcher {
    tls_pb::SubjectAltNameMatcher {
        san_type: kind as i32,
        matcher: Some(matcher_pb::StringMatcher {
            match_pattern: Some(m),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn common(
    cert: Option<&Cert>,
    v: Option<tls_pb::CertificateValidationContext>,
    alpn: &[&str],
) -> tls_pb::CommonTlsContext {
    tls_pb::CommonTlsContext {
        tls_certificates: cert.map(tls_cert).into_iter().collect(),
        validation_context_type: v.map(ValidationContextType::ValidationContext),
        alpn_protocols: alpn.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn server(store: &Store, common: tls_pb::CommonTlsContext, require: bool) -> ServerContext {
    let ctx = tls_pb::DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(envoy_types::pb::google::protobuf::BoolValue {
            value: require,
        }),
        ..Default::default()
    };
    ServerContext::compile(&ctx, store, "listener.l.").unwrap()
}

fn client(store: &Store, common: tls_pb::CommonTlsContext, sni: &str) -> ClientContext {
    let ctx = tls_pb::UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: sni.into(),
        ..Default::default()
    };
    ClientContext::compile(&ctx, store, "cluster.c.").unwrap()
}

/// Handshake both ends; the results of the server and the client.
async fn handshake(
    s: &ServerContext,
    c: &ClientContext,
    secrets: &SecretMap,
    opts: ConnectOptions,
) -> (Result<TlsInfo, TlsError>, Result<TlsInfo, TlsError>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b) = tokio::io::duplex(64 * 1024);
    // One byte each way after the handshake, so TLS 1.3 session tickets reach the client.
    let srv = async {
        let (mut stream, info) = s.accept(a, secrets, Duration::from_secs(5)).await?;
        let _ = stream.write_all(b"x").await;
        let _ = stream.flush().await;
        let _ = stream.read(&mut [0u8; 1]).await;
        Ok(info)
    };
    let cli = async {
        let (mut stream, info) = c.connect(b, secrets, None, &opts).await?;
        let _ = stream.read(&mut [0u8; 1]).await;
        let _ = stream.write_all(b"y").await;
        let _ = stream.flush().await;
        Ok(info)
    };
    tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(srv, cli) })
        .await
        .expect("handshake hung")
}

fn count(store: &Store, name: &str) -> u64 {
    store.counter_value(name).unwrap_or(0)
}

#[tokio::test]
async fn mutual_tls_with_spiffe_ids_and_stats() {
    let store = Store::new();
    let ca = Ca::new("root");
    let srv_cert = ca.spiffe("cluster.local", "ns1", "server");
    let cli_cert = ca.spiffe("cluster.local", "ns2", "client");
    use matcher_pb::string_matcher::MatchPattern as P;
    use tls_pb::subject_alt_name_matcher::SanType as T;
    let mut sv = vc(&ca);
    sv.match_typed_subject_alt_names =
        vec![san(T::Uri, P::Prefix("spiffe://cluster.local/".into()))];
    let s = server(
        &store,
        common(Some(&srv_cert), Some(sv), &["h2", "http/1.1"]),
        true,
    );
    let mut cv = vc(&ca);
    cv.match_typed_subject_alt_names = vec![san(
        T::Uri,
        P::Exact(spiffe_id("cluster.local", "ns1", "server")),
    )];
    let c = client(
        &store,
        common(Some(&cli_cert), Some(cv), &["h2"]),
        "outbound_.80_._.svc",
    );
    let (si, ci) = handshake(&s, &c, &SecretMap::new(), Default::default()).await;
    let (si, ci) = (si.unwrap(), ci.unwrap());
    assert_eq!(si.sni.as_deref(), Some("outbound_.80_._.svc"));
    assert_eq!(si.alpn.as_deref(), Some("h2"));
    assert_eq!(
        si.peer_spiffe_id(),
        Some(spiffe_id("cluster.local", "ns2", "client").as_str())
    );
    assert_eq!(
        si.local_uri_sans(),
        spiffe_id("cluster.local", "ns1", "server")
    );
    assert_eq!(
        ci.peer_uri_sans(),
        spiffe_id("cluster.local", "ns1", "server")
    );
    assert_eq!(
        si.version, "TLSv1.2",
        "the client default is TLS 1.2 only, as Envoy"
    );
    assert_eq!(count(&store, "listener.l.ssl.handshake"), 1);
    assert_eq!(count(&store, "cluster.c.ssl.handshake"), 1);
    assert_eq!(
        count(&store, &format!("listener.l.ssl.ciphers.{}", si.cipher)),
        1
    );
    assert_eq!(count(&store, "listener.l.ssl.versions.TLSv1.2"), 1);
    assert_eq!(count(&store, "listener.l.ssl.curves.X25519"), 1);
}

#[tokio::test]
async fn san_mismatch_and_missing_client_cert_are_refused() {
    let store = Store::new();
    let ca = Ca::new("root");
    let srv_cert = ca.spiffe("cluster.local", "ns1", "server");
    let cli_cert = ca.spiffe("cluster.local", "ns2", "client");
    use matcher_pb::string_matcher::MatchPattern as P;
    use tls_pb::subject_alt_name_matcher::SanType as T;
    let s = server(&store, common(Some(&srv_cert), Some(vc(&ca)), &[]), true);
    let mut cv = vc(&ca);
    cv.match_typed_subject_alt_names = vec![san(
        T::Uri,
        P::Exact(spiffe_id("cluster.local", "ns1", "other")),
    )];
    let c = client(&store, common(Some(&cli_cert), Some(cv), &[]), "");
    let (_, ci) = handshake(&s, &c, &SecretMap::new(), Default::default()).await;
    assert!(ci.is_err());
    assert_eq!(count(&store, "cluster.c.ssl.fail_verify_san"), 1);
    assert_eq!(count(&store, "cluster.c.ssl.connection_error"), 1);

    // No client certificate: refused by the server.
    let c = client(&store, common(None, Some(vc(&ca)), &[]), "");
    let (si, _) = handshake(&s, &c, &SecretMap::new(), Default::default()).await;
    assert!(si.unwrap_err().is_no_certificate());
    assert_eq!(count(&store, "listener.l.ssl.fail_verify_no_cert"), 1);

    // A client certificate from another CA: fail_verify_error.
    let other = Ca::new("other");
    let c = client(
        &store,
        common(Some(&other.spiffe("cluster.local", "x", "y")), None, &[]),
        "",
    );
    let (si, _) = handshake(&s, &c, &SecretMap::new(), Default::default()).await;
    assert!(si.is_err());
    assert_eq!(count(&store, "listener.l.ssl.fail_verify_error"), 1);
}

#[tokio::test]
async fn alpn_disjoint_goes_on_without_alpn_as_boringssl() {
    let store = Store::new();
    let ca = Ca::new("root");
    let s = server(
        &store,
        common(Some(&ca.server(&["a.test"])), None, &["h2", "http/1.1"]),
        false,
    );
    let c = client(&store, common(None, Some(vc(&ca)), &[]), "a.test");
    let opts = ConnectOptions {
        alpn: Some(vec![b"istio-peer-exchange".to_vec(), b"istio".to_vec()].into()),
        ..Default::default()
    };
    let (si, ci) = handshake(&s, &c, &SecretMap::new(), opts).await;
    assert_eq!(si.unwrap().alpn, None);
    assert_eq!(ci.unwrap().alpn, None);
    assert_eq!(count(&store, "listener.l.ssl.no_certificate"), 1);
}

#[tokio::test]
async fn pins_crl_expiry_and_accept_untrusted() {
    let store = Store::new();
    let ca = Ca::new("root");
    let good = ca.server(&["a.test"]);
    let s = server(&store, common(Some(&good), None, &[]), false);
    // Hash pin: the right one passes, a wrong one fails.
    let mut pinned = vc(&ca);
    pinned.verify_certificate_hash = vec![cert::hex(&cert::sha256(&good.der))];
    let c = client(&store, common(None, Some(pinned), &[]), "a.test");
    assert!(
        handshake(&s, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_ok()
    );
    let mut wrong = vc(&ca);
    wrong.verify_certificate_hash = vec!["00".repeat(32)];
    let c = client(&store, common(None, Some(wrong), &[]), "a.test");
    assert!(
        handshake(&s, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_err()
    );
    assert_eq!(count(&store, "cluster.c.ssl.fail_verify_cert_hash"), 1);
    // SPKI pin.
    use base64::Engine;
    let mut spki = vc(&ca);
    spki.verify_certificate_spki = vec![
        base64::engine::general_purpose::STANDARD
            .encode(cert::sha256(&cert::spki(&good.der).unwrap())),
    ];
    let c = client(&store, common(None, Some(spki), &[]), "a.test");
    assert!(
        handshake(&s, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_ok()
    );

    // A revoked server certificate.
    let revoked = ca.server(&["a.test"]);
    let s2 = server(&store, common(Some(&revoked), None, &[]), false);
    let mut with_crl = vc(&ca);
    with_crl.crl = inline(&ca.crl(&[&revoked]));
    let c = client(&store, common(None, Some(with_crl.clone()), &[]), "a.test");
    let (_, ci) = handshake(&s2, &c, &SecretMap::new(), Default::default()).await;
    assert!(matches!(
        ci.unwrap_err().rustls(),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))
    ));
    // The good one passes the same CRL.
    assert!(
        handshake(&s, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_ok()
    );

    // Expired: refused, unless allow_expired_certificate.
    let expired = ca.leaf(&LeafSpec {
        cn: "old".into(),
        dns: vec!["a.test".into()],
        expired: true,
        ..Default::default()
    });
    let s3 = server(&store, common(Some(&expired), None, &[]), false);
    let c = client(&store, common(None, Some(vc(&ca)), &[]), "a.test");
    assert!(
        handshake(&s3, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_err()
    );
    let mut lax = vc(&ca);
    lax.allow_expired_certificate = true;
    let c = client(&store, common(None, Some(lax), &[]), "a.test");
    assert!(
        handshake(&s3, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_ok()
    );

    // ACCEPT_UNTRUSTED: an unknown CA gets through, counted.
    let other = Ca::new("other");
    let s4 = server(
        &store,
        common(Some(&other.server(&["a.test"])), None, &[]),
        false,
    );
    let mut untrusted = vc(&ca);
    untrusted.trust_chain_verification =
        tls_pb::certificate_validation_context::TrustChainVerification::AcceptUntrusted as i32;
    let before = count(&store, "cluster.c.ssl.fail_verify_error");
    let c = client(&store, common(None, Some(untrusted), &[]), "a.test");
    assert!(
        handshake(&s4, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_ok()
    );
    assert_eq!(count(&store, "cluster.c.ssl.fail_verify_error"), before + 1);
}

#[tokio::test]
async fn auto_san_validation_and_key_types() {
    let store = Store::new();
    let ca = Ca::new("root");
    for kind in [KeyKind::EcdsaP256, KeyKind::EcdsaP384, KeyKind::Ed25519] {
        let cert = ca.leaf(&LeafSpec {
            cn: "k".into(),
            dns: vec!["*.svc.test".into()],
            key: Some(kind),
            ..Default::default()
        });
        let s = server(&store, common(Some(&cert), None, &[]), false);
        let c = client(&store, common(None, Some(vc(&ca)), &[]), "");
        let ok = ConnectOptions {
            sni: Some("foo.svc.test".into()),
            auto_san: true,
            ..Default::default()
        };
        assert!(
            handshake(&s, &c, &SecretMap::new(), ok).await.1.is_ok(),
            "{kind:?}"
        );
        let bad = ConnectOptions {
            sni: Some("foo.other.test".into()),
            auto_san: true,
            ..Default::default()
        };
        assert!(
            handshake(&s, &c, &SecretMap::new(), bad).await.1.is_err(),
            "{kind:?}"
        );
    }
}

mod more;

#[tokio::test]
async fn sessions_resume_on_both_versions() {
    let store = Store::new();
    let ca = Ca::new("root");
    let s = server(
        &store,
        common(Some(&ca.server(&["a.test"])), None, &[]),
        false,
    );
    for max in [3, 4] {
        // TLS 1.2 (the client default) resumes by ticket or id, TLS 1.3 by ticket.
        let mut cc = common(None, Some(vc(&ca)), &[]);
        cc.tls_params = Some(tls_pb::TlsParameters {
            tls_maximum_protocol_version: max,
            ..Default::default()
        });
        let c = client(&store, cc, "a.test");
        let first = handshake(&s, &c, &SecretMap::new(), Default::default()).await;
        assert!(!first.1.unwrap().resumed);
        let second = handshake(&s, &c, &SecretMap::new(), Default::default()).await;
        assert!(second.1.unwrap().resumed, "TLS max {max}");
    }
    assert_eq!(count(&store, "cluster.c.ssl.session_reused"), 2);
    assert_eq!(count(&store, "listener.l.ssl.session_reused"), 2);
}

#[tokio::test]
async fn intermediates_and_max_verify_depth() {
    let store = Store::new();
    let root = Ca::new("root");
    let mid = root.intermediate("mid");
    let s = server(
        &store,
        common(Some(&mid.server(&["a.test"])), None, &[]),
        false,
    );
    // The server sends its intermediate; the client trusts the root only.
    let c = client(&store, common(None, Some(vc(&root)), &[]), "a.test");
    assert!(
        handshake(&s, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_ok()
    );
    // max_verify_depth counts the intermediates and the anchor, not the leaf.
    for (depth, ok) in [(1, false), (2, true)] {
        let mut v = vc(&root);
        v.max_verify_depth = Some(envoy_types::pb::google::protobuf::UInt32Value { value: depth });
        let c = client(&store, common(None, Some(v), &[]), "a.test");
        let r = handshake(&s, &c, &SecretMap::new(), Default::default())
            .await
            .1;
        assert_eq!(r.is_ok(), ok, "depth {depth}");
    }
    // A CRL of the root that revokes the intermediate.
    let mut v = vc(&root);
    let mid_as_cert = Cert {
        cert_pem: String::new(),
        der: mid.der.clone(),
        key_pem: String::new(),
        serial: cert::CertSummary::parse(&mid.der)
            .map(|s| u64::from_str_radix(&s.serial, 16).unwrap())
            .unwrap(),
    };
    v.crl = inline(&format!("{}{}", root.crl(&[&mid_as_cert]), mid.crl(&[])));
    let c = client(&store, common(None, Some(v.clone()), &[]), "a.test");
    assert!(
        handshake(&s, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_err()
    );
    // Leaf-only CRL checking does not look at the intermediate.
    v.only_verify_leaf_cert_crl = true;
    let c = client(&store, common(None, Some(v), &[]), "a.test");
    assert!(
        handshake(&s, &c, &SecretMap::new(), Default::default())
            .await
            .1
            .is_ok()
    );
}
