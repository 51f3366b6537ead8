//! TLS termination on listeners.

use super::support::certs::{Ca, LeafSpec, spiffe_id};
use super::support::{bootstrap, have, logs, start_tern, static_cluster, upstream, within};
use super::{client_config, downstream_tls, temp_file, tls_get, tls_http_listener, trust};
use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn termination_with_rustls_and_curl() {
    let up = upstream::http("up").await;
    let ca = Ca::new("root");
    let cert = ca.server(&["tern.test"]);
    let log = logs::temp_log("tls-termination");
    let ts = downstream_tls(&cert, None, "", "");
    let tern = start_tern(&bootstrap(
        &[tls_http_listener("l", &ts, "up", Some(&log))],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();

    let got = tls_get(addr, client_config(&ca, None, &[]), "tern.test", "/hello")
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert!(
        got.body.contains("x-forwarded-proto: https"),
        "{}",
        got.body
    );
    assert_eq!(got.peer_der, cert.der);

    if have("curl") {
        let ca_file = temp_file("termination-ca.pem", &ca.cert_pem);
        let out = within(
            20,
            tokio::process::Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(&ca_file)
                .arg("--resolve")
                .arg(format!("tern.test:{}:127.0.0.1", addr.port()))
                .arg(format!("https://tern.test:{}/curl", addr.port()))
                .output(),
        )
        .await
        .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(body.contains("path /curl"), "{body}");
    }

    let lines = logs::json_lines(&log, 1).await;
    assert_eq!(lines[0]["sni"], "tern.test");
    assert_eq!(lines[0]["version"], "TLSv1.3");
    assert_eq!(lines[0]["cipher"], "TLS_AES_256_GCM_SHA384");
    assert_eq!(lines[0]["peer_uri"], serde_json::Value::Null);
    assert_eq!(lines[0]["up_version"], serde_json::Value::Null);
    let stats = &tern.world.stats;
    // Stats are named after the configured address (port 0 here).
    let prefix = "listener.127.0.0.1_0.ssl.";
    assert!(stats.counter_value(&format!("{prefix}handshake")).unwrap() >= 1);
    assert!(
        stats
            .counter_value(&format!("{prefix}versions.TLSv1.3"))
            .unwrap()
            >= 1
    );
    assert!(
        stats
            .counter_value(&format!("{prefix}no_certificate"))
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn mutual_tls_required_and_spiffe_san_match() {
    let up = upstream::http("up").await;
    let ca = Ca::new("root");
    let cert = ca.leaf(&LeafSpec {
        dns: vec!["s".into()],
        uris: vec![spiffe_id("cluster.local", "server", "sa")],
        ..Default::default()
    });
    let log = logs::temp_log("tls-mtls");
    let sans = r#", match_typed_subject_alt_names: [{ san_type: URI, matcher: { prefix: "spiffe://cluster.local/ns/good/" } }]"#;
    let ts = downstream_tls(
        &cert,
        Some(trust(&ca, sans)),
        "",
        "require_client_certificate: true",
    );
    let tern = start_tern(&bootstrap(
        &[tls_http_listener("l", &ts, "up", Some(&log))],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let prefix = "listener.127.0.0.1_0.ssl.";
    let stat = |n: &str| {
        tern.world
            .stats
            .counter_value(&format!("{prefix}{n}"))
            .unwrap_or(0)
    };

    let good = ca.spiffe("cluster.local", "good", "client");
    let got = tls_get(addr, client_config(&ca, Some(&good), &[]), "s", "/")
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    let lines = logs::json_lines(&log, 1).await;
    assert_eq!(
        lines[0]["peer_uri"],
        spiffe_id("cluster.local", "good", "client")
    );
    assert_eq!(
        lines[0]["local_uri"],
        spiffe_id("cluster.local", "server", "sa")
    );

    // No client certificate: refused.
    assert!(
        tls_get(addr, client_config(&ca, None, &[]), "s", "/")
            .await
            .is_err()
    );
    assert!(super::support::eventually(5, || stat("fail_verify_no_cert") == 1).await);
    // A SPIFFE id outside the allowed namespace: refused.
    let bad = ca.spiffe("cluster.local", "bad", "client");
    assert!(
        tls_get(addr, client_config(&ca, Some(&bad), &[]), "s", "/")
            .await
            .is_err()
    );
    assert!(super::support::eventually(5, || stat("fail_verify_san") == 1).await);
    // A certificate from another CA: refused.
    let other = Ca::new("other").spiffe("cluster.local", "good", "client");
    assert!(
        tls_get(addr, client_config(&ca, Some(&other), &[]), "s", "/")
            .await
            .is_err()
    );
    assert!(super::support::eventually(5, || stat("fail_verify_error") == 1).await);
    assert_eq!(stat("handshake"), 1);
    assert!(stat("connection_error") >= 3);
}

#[tokio::test]
async fn http2_over_tls_by_alpn() {
    let up = upstream::http("up").await;
    let ca = Ca::new("root");
    let cert = ca.server(&["tern.test"]);
    let log = logs::temp_log("tls-h2");
    let ts = downstream_tls(&cert, None, ", alpn_protocols: [h2, http/1.1]", "");
    let tern = start_tern(&bootstrap(
        &[tls_http_listener("l", &ts, "up", Some(&log))],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let h2 = tls_get(
        addr,
        client_config(&ca, None, &["h2", "http/1.1"]),
        "tern.test",
        "/",
    )
    .await
    .unwrap();
    assert_eq!((h2.status, h2.alpn.as_deref()), (200, Some("h2")));
    let h1 = tls_get(
        addr,
        client_config(&ca, None, &["http/1.1"]),
        "tern.test",
        "/",
    )
    .await
    .unwrap();
    assert_eq!((h1.status, h1.alpn.as_deref()), (200, Some("http/1.1")));
    // No protocol in common: the handshake goes on without ALPN (as Envoy's BoringSSL).
    let none = tls_get(
        addr,
        client_config(&ca, None, &["istio-peer-exchange"]),
        "tern.test",
        "/",
    )
    .await
    .unwrap();
    assert_eq!((none.status, none.alpn), (200, None));
    let lines = logs::json_lines(&log, 3).await;
    let protocols: Vec<_> = lines
        .iter()
        .map(|l| l["protocol"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(protocols, ["HTTP/2", "HTTP/1.1", "HTTP/1.1"]);
}

async fn s_client(
    addr: std::net::SocketAddr,
    ca_file: &std::path::Path,
    args: &[&str],
) -> (bool, String) {
    let out = within(
        20,
        tokio::process::Command::new("openssl")
            .arg("s_client")
            .arg("-connect")
            .arg(addr.to_string())
            .args(["-servername", "tern.test", "-CAfile"])
            .arg(ca_file)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // "New, TLSv1.3, Cipher is ..." on success, "New, (NONE), Cipher is (NONE)" on failure.
    let ok = text.contains("New, TLSv") && text.contains("Verify return code: 0 (ok)");
    (ok, text)
}

#[tokio::test]
async fn openssl_s_client_versions_and_alpn() {
    if !have("openssl") {
        eprintln!("openssl not installed; skipped");
        return;
    }
    let up = upstream::http("up").await;
    let ca = Ca::new("root");
    let cert = ca.server(&["tern.test"]);
    let any = downstream_tls(&cert, None, ", alpn_protocols: [h2, http/1.1]", "");
    let only12 = downstream_tls(
        &cert,
        None,
        r#", tls_params: { tls_maximum_protocol_version: TLSv1_2, cipher_suites: ["ECDHE-ECDSA-AES128-GCM-SHA256"] }"#,
        "",
    );
    let tern = start_tern(&bootstrap(
        &[
            tls_http_listener("any", &any, "up", None),
            tls_http_listener("only12", &only12, "up", None),
        ],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let ca_file = temp_file("s_client-ca.pem", &ca.cert_pem);
    let any = tern.listener_addr("any").unwrap();
    let only12 = tern.listener_addr("only12").unwrap();

    let (ok, out) = s_client(any, &ca_file, &["-tls1_3", "-alpn", "h2"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let (ok, out) = s_client(any, &ca_file, &["-tls1_2", "-alpn", "http/1.1"]).await;
    assert!(
        ok && out.contains("TLSv1.2") && out.contains("ALPN protocol: http/1.1"),
        "{out}"
    );
    let (ok, out) = s_client(any, &ca_file, &["-tls1_2", "-alpn", "foo"]).await;
    assert!(ok && out.contains("No ALPN negotiated"), "{out}");
    // TLS 1.1 is never spoken.
    let (ok, _) = s_client(any, &ca_file, &["-tls1_1"]).await;
    assert!(!ok);
    // tls_params: TLS 1.2 at most, one cipher suite.
    let (ok, _) = s_client(only12, &ca_file, &["-tls1_3"]).await;
    assert!(!ok);
    let (ok, out) = s_client(only12, &ca_file, &["-tls1_2"]).await;
    assert!(ok && out.contains("ECDHE-ECDSA-AES128-GCM-SHA256"), "{out}");
}

#[tokio::test]
async fn static_secrets_are_found_by_name() {
    let up = upstream::http("up").await;
    let ca = Ca::new("root");
    let cert = ca.server(&["tern.test"]);
    let ts = r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: { tls_certificate_sds_secret_configs: [{ name: server_cert }] }
"#;
    let mut yaml = bootstrap(
        &[tls_http_listener("l", ts, "up", None)],
        &[static_cluster("up", &[up.addr], "")],
    );
    yaml.push_str(&format!(
        "  secrets:\n  - name: server_cert\n    tls_certificate: {}\n",
        super::inline_cert(&cert)
    ));
    let tern = start_tern(&yaml).await;
    let addr = tern.listener_addr("l").unwrap();
    let got = tls_get(addr, client_config(&ca, None, &[]), "tern.test", "/")
        .await
        .unwrap();
    assert_eq!((got.status, got.peer_der), (200, cert.der));
}

/// `openssl` makes the keys rcgen (on ring) cannot: RSA, in PKCS#1 and PKCS#8 PEM, and an EC
/// key in SEC1 PEM; each serves a handshake.
#[tokio::test]
async fn rsa_and_legacy_pem_keys_from_files() {
    if !have("openssl") {
        eprintln!("openssl not installed; skipped");
        return;
    }
    let up = upstream::http("up").await;
    let dir = temp_file("keys-marker", "").parent().unwrap().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let kinds = [
        (
            "rsa-pkcs8",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "rsa-pkcs8.key",
            ],
        ),
        (
            "rsa-pkcs1",
            vec!["genrsa", "-traditional", "-out", "rsa-pkcs1.key", "2048"],
        ),
        (
            "ec-sec1",
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ec-sec1.key",
            ],
        ),
    ];
    let mut listeners = Vec::new();
    for (name, genkey) in &kinds {
        run(genkey);
        // Self-signed, but not a CA (rustls refuses a CA certificate as a server's).
        std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:tern.test\n").unwrap();
        run(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=tern.test",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-signkey",
            &format!("{name}.key"),
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            &format!("{name}.pem"),
        ]);
        let header = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
        let first = header.lines().next().unwrap().to_owned();
        match *name {
            "rsa-pkcs1" => assert_eq!(first, "-----BEGIN RSA PRIVATE KEY-----"),
            "ec-sec1" => assert_eq!(first, "-----BEGIN EC PRIVATE KEY-----"),
            _ => assert_eq!(first, "-----BEGIN PRIVATE KEY-----"),
        }
        let ts = format!(
            r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {{ tls_certificates: [{{ certificate_chain: {{ filename: {d}/{name}.pem }}, private_key: {{ filename: {d}/{name}.key }} }}] }}
"#,
            d = dir.display()
        );
        listeners.push(tls_http_listener(name, &ts, "up", None));
    }
    let tern = start_tern(&bootstrap(
        &listeners,
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    for (name, _) in &kinds {
        let pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let addr = tern.listener_addr(name).unwrap();
        let got = tls_get(addr, std::sync::Arc::new(cfg), "tern.test", "/")
            .await
            .unwrap();
        assert_eq!((got.status, got.peer_der), (200, der.to_vec()), "{name}");
    }
}
