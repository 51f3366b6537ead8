//! Istio shapes: SDS secrets `default` and `ROOTCA` from an ADS server, rotation by an SDS
//! push, file rotation. (Two sidecars talking ISTIO_MUTUAL: `mesh.rs`.)

use super::support::ads::{AdsServer, Batch, dynamic_resources_yaml};
use super::support::certs::{Ca, Cert, LeafSpec, spiffe_id};
use super::support::{start_tern, upstream, within};
use super::{client_config, tls_get, tls_http_listener};
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use std::net::SocketAddr;
use std::time::Duration;

const SDS: &str = "{ ads: {}, resource_api_version: V3 }";

fn inline(s: &str) -> Option<core_pb::DataSource> {
    Some(core_pb::DataSource {
        specifier: Some(core_pb::data_source::Specifier::InlineString(s.into())),
        ..Default::default()
    })
}

pub(super) fn default_secret(c: &Cert) -> tls_pb::Secret {
    tls_pb::Secret {
        name: "default".into(),
        r#type: Some(tls_pb::secret::Type::TlsCertificate(
            tls_pb::TlsCertificate {
                certificate_chain: inline(&c.cert_pem),
                private_key: inline(&c.key_pem),
                ..Default::default()
            },
        )),
    }
}

pub(super) fn rootca(ca: &Ca) -> tls_pb::Secret {
    tls_pb::Secret {
        name: "ROOTCA".into(),
        r#type: Some(tls_pb::secret::Type::ValidationContext(
            tls_pb::CertificateValidationContext {
                trusted_ca: inline(&ca.cert_pem),
                ..Default::default()
            },
        )),
    }
}

/// Istio's `common_tls_context` with the SDS secrets, as a YAML flow mapping.
pub(super) fn istio_common(alpn: &str, sans: &str) -> String {
    format!(
        r#"{{ tls_params: {{ tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3, cipher_suites: [ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384, ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256, AES256-GCM-SHA384, AES128-GCM-SHA256] }}, alpn_protocols: [{alpn}], tls_certificate_sds_secret_configs: [{{ name: default, sds_config: {SDS} }}], combined_validation_context: {{ default_validation_context: {{ {sans} }}, validation_context_sds_secret_config: {{ name: ROOTCA, sds_config: {SDS} }} }} }}"#
    )
}

/// The inbound filter chain's transport socket istiod sends for ISTIO_MUTUAL.
pub(super) fn istio_inbound_tls() -> String {
    format!(
        r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {}
          require_client_certificate: true
"#,
        istio_common(
            "h2, http/1.1",
            r#"match_subject_alt_names: [{ prefix: "spiffe://cluster.local/" }]"#
        )
    )
}

/// A tern bootstrap: ADS (for SDS) to `ads`, then these static listeners and clusters.
pub(super) fn sidecar_bootstrap(
    ads: &AdsServer,
    listeners: &[String],
    clusters: &[String],
) -> String {
    let mut y = format!(
        "node: {{ id: sidecar~127.0.0.1~pod.ns~ns.svc.cluster.local, cluster: pod.ns }}\n{}static_resources:\n  listeners:\n",
        dynamic_resources_yaml("xds-grpc", true)
    );
    for l in listeners {
        y.push_str(l);
    }
    y.push_str("  clusters:\n");
    y.push_str(&ads.cluster_yaml("xds-grpc"));
    for c in clusters {
        y.push_str(c);
    }
    y
}

pub(super) async fn bound(tern: &tern::server::Server, name: &str) -> SocketAddr {
    let mut addr = None;
    assert!(
        super::support::eventually(10, || {
            addr = tern.listener_addr(name);
            addr.is_some()
        })
        .await,
        "listener {name} never bound"
    );
    addr.expect("checked")
}

/// A server workload certificate with its SPIFFE id and the DNS name `s` the test client
/// verifies.
fn workload(ca: &Ca) -> Cert {
    ca.leaf(&LeafSpec {
        dns: vec!["s".into()],
        uris: vec![spiffe_id("cluster.local", "ns", "server")],
        ..Default::default()
    })
}

/// Keep making new TLS connections until one is served `want` (SDS updates apply
/// asynchronously).
async fn served(addr: SocketAddr, ca: &Ca, client: Option<&Cert>, want: &Cert) -> bool {
    for _ in 0..200 {
        if let Ok(g) = tls_get(addr, client_config(ca, client, &[]), "s", "/").await
            && g.peer_der == want.der
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn sds_push_switches_the_served_certificate_and_keeps_open_connections() {
    let app = upstream::http("app").await;
    let ca = Ca::new("root");
    let ads = AdsServer::tcp().await;
    let tern = start_tern(&sidecar_bootstrap(
        &ads,
        &[tls_http_listener(
            "inbound",
            &istio_inbound_tls(),
            "app",
            None,
        )],
        &[super::support::static_cluster("app", &[app.addr], "")],
    ))
    .await;
    let first = workload(&ca);
    ads.apply(
        Batch::new()
            .secret(&default_secret(&first))
            .secret(&rootca(&ca)),
    );
    let addr = bound(&tern, "inbound").await;
    let client = ca.spiffe("cluster.local", "other", "client");
    assert!(served(addr, &ca, Some(&client), &first).await);

    // An open keep-alive connection, served the first certificate.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("s").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(&ca, Some(&client), &["http/1.1"]))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.peer_certificates().unwrap()[0].as_ref(),
        first.der.as_slice()
    );
    let (mut open, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = || {
        http::Request::get("/")
            .header("host", "s")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        within(10, open.send_request(get())).await.unwrap().status(),
        200
    );

    // Rotation: istiod (pilot-agent) pushes a new `default`.
    let second = workload(&ca);
    ads.apply(Batch::new().secret(&default_secret(&second)));
    assert!(
        served(addr, &ca, Some(&client), &second).await,
        "new handshakes get the new chain"
    );
    // The open connection was not cut.
    let resp = within(10, open.send_request(get())).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        tern.world.stats.counter_value("sds.default.update_success"),
        Some(2)
    );
}

#[tokio::test]
async fn file_certificates_are_reread_when_the_file_is_replaced() {
    let app = upstream::http("app").await;
    let ca = Ca::new("root");
    let first = ca.server(&["s"]);
    let cert_path = super::temp_file("rotating-cert.pem", &first.cert_pem);
    let key_path = super::temp_file("rotating-key.pem", &first.key_pem);
    let ts = format!(
        r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {{ tls_certificates: [{{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}] }}
"#,
        cert_path.display(),
        key_path.display()
    );
    let tern = start_tern(&super::support::bootstrap(
        &[tls_http_listener("l", &ts, "app", None)],
        &[super::support::static_cluster("app", &[app.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    assert!(served(addr, &ca, None, &first).await);
    // Swap both files by rename, as Istio's mounted secrets are rotated.
    let second = ca.server(&["s"]);
    let tmp_cert = super::temp_file("rotating-cert.pem.new", &second.cert_pem);
    let tmp_key = super::temp_file("rotating-key.pem.new", &second.key_pem);
    std::fs::rename(&tmp_key, &key_path).unwrap();
    std::fs::rename(&tmp_cert, &cert_path).unwrap();
    assert!(
        served(addr, &ca, None, &second).await,
        "the new file is served"
    );
}
