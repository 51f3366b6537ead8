//! Dubbo through tern's generic proxy: id remapping over one shared upstream connection with
//! answers out of order, heartbeats answered locally, one-way requests, routing by service
//! and method to two clusters, an upstream killed mid-flight, route timeouts, downstream
//! disconnects, malformed and truncated frames, dubbo_proxy's config, and config errors.

use super::common::{Client, Server, action, frame_of, generic_proxy_listener};
use crate::support::{bootstrap, eventually, start_tern, static_cluster, within};
use bytes::BytesMut;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tern::protocol::xprotocol::dubbo::{Dubbo, HEADER_LEN, build, status};
use tern::protocol::xprotocol::{Codec, Frame, FrameKind};

fn codec() -> Codec {
    Arc::new(Dubbo::default())
}

const SERVICE: &str = "org.apache.dubbo.samples.DemoService";

/// A Dubbo server that echoes the request body in an OK response, after a delay that
/// scatters the answers; method `hang` is never answered.
async fn echo_server() -> Server {
    Server::start(
        codec(),
        Arc::new(|f: &Frame| {
            if f.headers.method.as_deref() == Some("hang") {
                return None;
            }
            let delay = Duration::from_millis((f.request_id.wrapping_mul(7919)) % 23);
            let body = &f.raw[HEADER_LEN..];
            Some((delay, build::response(0, status::OK, body)))
        }),
    )
    .await
}

fn dubbo_codec_yaml(routes: &str) -> String {
    format!(
        r#"          codec_config:
            name: envoy.generic_proxy.codecs.dubbo
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.codecs.dubbo.v3.DubboCodecConfig
          route_config:
            name: routes
{routes}"#
    )
}

/// Every request to `cluster`.
fn all_to(cluster: &str, extra: &str) -> String {
    dubbo_codec_yaml(&format!(
        "            routes:\n              on_no_match:\n                action: {}\n",
        action(cluster, extra)
    ))
}

fn request(id: u64, method: &str, marker: &str) -> BytesMut {
    let mut rest = build::string("Ljava/lang/String;");
    rest.extend(build::string(marker));
    rest.push(b'H');
    rest.push(b'Z');
    build::request(id, true, SERVICE, "1.0.0", method, &rest)
}

#[tokio::test]
async fn ids_are_remapped_for_1000_requests_from_10_connections_over_one_upstream_connection() {
    let server = echo_server().await;
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &all_to("echo", ""))],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("d").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..10u64 {
        tasks.spawn(async move {
            let mut client = Client::connect(addr, codec()).await;
            // Every connection uses the same ids 1..=100: only remapping keeps them apart.
            let mut all = Vec::new();
            for id in 1..=100u64 {
                all.extend_from_slice(&request(id, "sayHello", &format!("conn {c} request {id}")));
            }
            client.send(&all).await;
            let got = client.recv_n(100).await;
            for id in 1..=100u64 {
                let f = &got[&id];
                assert_eq!(f.kind, FrameKind::Response);
                assert_eq!(f.status.unwrap().code, u32::from(status::OK));
                let want = request(id, "sayHello", &format!("conn {c} request {id}"));
                assert_eq!(
                    &f.raw[HEADER_LEN..],
                    &want[HEADER_LEN..],
                    "conn {c} id {id}"
                );
            }
        });
    }
    within(30, async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await;
    assert_eq!(server.seen.connections.load(Ordering::Relaxed), 1);
    assert_eq!(server.requests(), 1000);
    let arrival = server.seen.arrival.lock().unwrap().clone();
    let answered = server.seen.answered.lock().unwrap().clone();
    assert_ne!(arrival, answered, "answers went back in arrival order");
    let mut ids = arrival.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "upstream ids are unique on the connection");
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("generic_proxy.d.downstream_rq_total"),
        Some(1000)
    );
    assert_eq!(
        stats.counter_value("cluster.echo.upstream_rq_total"),
        Some(1000)
    );
    assert!(
        eventually(5, || stats
            .gauge_value("generic_proxy.d.downstream_rq_active")
            == Some(0))
        .await
    );
    assert_eq!(
        stats.counter_value("cluster.echo.upstream_cx_total"),
        Some(1)
    );
}

#[tokio::test]
async fn heartbeat_is_answered_locally_and_oneway_is_forwarded_without_waiting() {
    let server = echo_server().await;
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &all_to("echo", ""))],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("d").unwrap();
    let mut client = Client::connect(addr, codec()).await;
    client.send(&build::heartbeat(42)).await;
    let hb = client.recv().await.unwrap();
    assert_eq!(hb.kind, FrameKind::HeartbeatResponse);
    assert_eq!(hb.request_id, 42);
    assert_eq!(
        server.seen.connections.load(Ordering::Relaxed),
        0,
        "heartbeat went upstream"
    );
    // One-way, then a two-way request: only the latter is answered.
    client
        .send(&build::request(7, false, SERVICE, "", "notify", b""))
        .await;
    client.send(&request(8, "sayHello", "after oneway")).await;
    let r = client.recv().await.unwrap();
    assert_eq!(r.request_id, 8);
    assert!(eventually(5, || server.seen.oneway.load(Ordering::Relaxed) == 1).await);
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("generic_proxy.d.downstream_rq_heartbeat"),
        Some(1)
    );
    assert_eq!(
        stats.counter_value("generic_proxy.d.downstream_rq_oneway"),
        Some(1)
    );
    assert!(
        eventually(5, || stats
            .gauge_value("generic_proxy.d.downstream_rq_active")
            == Some(0))
        .await
    );
}

#[tokio::test]
async fn routes_by_service_and_method_to_two_clusters() {
    let a = echo_server().await;
    let b = echo_server().await;
    let routes = dubbo_codec_yaml(&format!(
        r#"            virtual_hosts:
            - name: demo
              hosts: ["{SERVICE}"]
              routes:
                matcher_list:
                  matchers:
                  - predicate:
                      single_predicate:
                        input:
                          name: method
                          typed_config:
                            "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.MethodMatchInput
                        value_match: {{ prefix: say }}
                    on_match:
                      action: {}
                on_no_match:
                  action: {}
"#,
        action("a", ""),
        action("b", "")
    ));
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &routes)],
        &[
            static_cluster("a", &[a.addr], ""),
            static_cluster("b", &[b.addr], ""),
        ],
    ))
    .await;
    let mut client = Client::connect(tern.listener_addr("d").unwrap(), codec()).await;
    client.send(&request(1, "sayHello", "x")).await;
    client.send(&request(2, "getUser", "y")).await;
    client.send(&request(3, "sayBye", "z")).await;
    let got = client.recv_n(3).await;
    assert!(got.values().all(|f| f.status.unwrap().ok));
    assert_eq!(a.requests(), 2);
    assert_eq!(b.requests(), 1);
    // An unknown service: Dubbo's "service not found" from the proxy.
    client
        .send(&build::request(
            4,
            true,
            "com.example.Unknown",
            "",
            "m",
            b"",
        ))
        .await;
    let r = client.recv().await.unwrap();
    assert_eq!(r.request_id, 4);
    assert_eq!(r.status.unwrap().code, u32::from(status::SERVICE_NOT_FOUND));
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("generic_proxy.d.downstream_rq_error"),
        Some(1)
    );
    assert_eq!(
        stats.counter_value("generic_proxy.d.downstream_rq_local"),
        Some(1)
    );
}

#[tokio::test]
async fn killed_upstream_fails_every_pending_request_and_timeouts_answer() {
    let server = echo_server().await;
    let tern = start_tern(&bootstrap(
        &[
            generic_proxy_listener("d", &all_to("echo", "")),
            generic_proxy_listener("t", &all_to("echo", ", timeout: 0.2s")),
        ],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    // A route timeout: Dubbo's server-timeout status.
    let mut t = Client::connect(tern.listener_addr("t").unwrap(), codec()).await;
    t.send(&request(5, "hang", "late")).await;
    let r = within(5, t.recv()).await.unwrap();
    assert_eq!(r.request_id, 5);
    assert_eq!(r.status.unwrap().code, u32::from(status::SERVER_TIMEOUT));
    // 50 requests hang upstream on two client connections, then the upstream dies.
    let addr = tern.listener_addr("d").unwrap();
    let mut c1 = Client::connect(addr, codec()).await;
    let mut c2 = Client::connect(addr, codec()).await;
    for id in 1..=25u64 {
        c1.send(&request(id, "hang", "a")).await;
        c2.send(&request(id + 1000, "hang", "b")).await;
    }
    assert!(
        eventually(5, || server.requests() == 51).await,
        "{}",
        server.requests()
    );
    server.kill();
    for (c, base) in [(&mut c1, 0u64), (&mut c2, 1000)] {
        let got = within(5, c.recv_n(25)).await;
        for id in 1..=25u64 {
            let f = &got[&(id + base)];
            assert_eq!(f.status.unwrap().code, u32::from(status::SERVER_ERROR));
        }
    }
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("cluster.echo.upstream_rq_timeout"),
        Some(1)
    );
    assert!(
        eventually(5, || stats
            .gauge_value("generic_proxy.d.downstream_rq_active")
            == Some(0))
        .await
    );
    // Nothing listens now: a new request gets an error response, it does not hang.
    c1.send(&request(99, "sayHello", "after")).await;
    let r = within(5, c1.recv()).await.unwrap();
    assert_eq!(r.request_id, 99);
    assert_eq!(r.status.unwrap().code, u32::from(status::SERVER_ERROR));
}

#[tokio::test]
async fn downstream_close_cancels_its_pending_requests() {
    let server = echo_server().await;
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &all_to("echo", ""))],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("d").unwrap();
    let mut c = Client::connect(addr, codec()).await;
    for id in 1..=10u64 {
        c.send(&request(id, "hang", "x")).await;
    }
    assert!(eventually(5, || server.requests() == 10).await);
    drop(c);
    let stats = &tern.world.stats;
    assert!(
        eventually(5, || stats
            .counter_value("generic_proxy.d.downstream_rq_reset")
            == Some(10))
        .await
    );
    assert!(
        eventually(5, || stats
            .gauge_value("generic_proxy.d.downstream_rq_active")
            == Some(0))
        .await
    );
    // The shared upstream connection stays and serves the next client.
    let mut c = Client::connect(addr, codec()).await;
    c.send(&request(1, "sayHello", "again")).await;
    assert!(c.recv().await.unwrap().status.unwrap().ok);
    assert_eq!(server.seen.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn malformed_and_truncated_frames_close_the_connection() {
    let server = echo_server().await;
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &all_to("echo", ""))],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("d").unwrap();
    // Not Dubbo at all.
    let mut c = Client::connect(addr, codec()).await;
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(c.closed().await);
    // A good frame, then a bad magic: the connection closes (the request in flight is
    // cancelled, as Envoy does on a decoding error).
    let mut c = Client::connect(addr, codec()).await;
    let mut bytes = request(1, "sayHello", "ok").to_vec();
    bytes.extend_from_slice(&[0xda, 0xbc, 0, 0]);
    c.send(&bytes).await;
    assert!(c.closed().await);
    // Over the frame limit (8 MiB): closed on the header alone.
    let mut c = Client::connect(addr, codec()).await;
    let mut big = request(2, "sayHello", "big");
    big[12..16].copy_from_slice(&(64u32 << 20).to_be_bytes());
    c.send(&big[..HEADER_LEN]).await;
    assert!(c.closed().await);
    // A request body that is not Hessian.
    let mut c = Client::connect(addr, codec()).await;
    let mut bad = BytesMut::from(&request(3, "m", "x")[..HEADER_LEN]);
    bad[12..16].copy_from_slice(&3u32.to_be_bytes());
    bad.extend_from_slice(&[0x90, 0x91, 0x92]);
    c.send(&bad).await;
    assert!(c.closed().await);
    // Truncated: half a frame and a close; tern stays up and serves the next client.
    let mut c = Client::connect(addr, codec()).await;
    c.send(&request(4, "sayHello", "cut")[..20]).await;
    drop(c);
    let mut c = Client::connect(addr, codec()).await;
    c.send(&request(5, "sayHello", "fine")).await;
    assert_eq!(c.recv().await.unwrap().request_id, 5);
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("generic_proxy.d.downstream_rq_decoding_error"),
        Some(4)
    );
}

#[tokio::test]
async fn dubbo_proxy_config_routes_by_interface_and_method() {
    let a = echo_server().await;
    let b = echo_server().await;
    let listener = format!(
        r#"
  - name: dp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.dubbo_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy
          stat_prefix: dp
          multiple_route_config:
            name: local
            route_config:
            - name: demo
              interface: {SERVICE}
              routes:
              - match: {{ method: {{ name: {{ exact: sayHello }} }} }}
                route: {{ cluster: a }}
              - match: {{ method: {{ name: {{ safe_regex: {{ regex: ".*" }} }} }} }}
                route: {{ cluster: b }}
          dubbo_filters:
          - name: envoy.filters.dubbo.router
"#
    );
    let tern = start_tern(&bootstrap(
        &[listener],
        &[
            static_cluster("a", &[a.addr], ""),
            static_cluster("b", &[b.addr], ""),
        ],
    ))
    .await;
    let mut c = Client::connect(tern.listener_addr("dp").unwrap(), codec()).await;
    c.send(&request(1, "sayHello", "x")).await;
    c.send(&request(2, "other", "y")).await;
    let got = c.recv_n(2).await;
    assert!(got.values().all(|f| f.status.unwrap().ok));
    assert_eq!((a.requests(), b.requests()), (1, 1));
    assert_eq!(tern.world.stats.counter_value("dubbo.dp.request"), Some(2));
}

#[tokio::test]
async fn unknown_codec_is_a_config_error_naming_it() {
    let listener = generic_proxy_listener(
        "d",
        r#"          codec_config:
            name: thrift
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.codecs.http1.v3.Http1CodecConfig
          route_config:
            name: r
            routes:
              on_no_match:
                action: { name: x, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.action.v3.RouteAction, cluster: x } }
"#,
    );
    let options = tern::server::Options {
        config_yaml: Some(bootstrap(&[listener], &[])),
        ..Default::default()
    };
    let err = tern::server::Server::start(options).await.err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("codec thrift has unsupported type type.googleapis.com/envoy.extensions.filters.network.generic_proxy.codecs.http1.v3.Http1CodecConfig"),
        "{text}"
    );
}

/// `frame_of` is shared with the Bolt tests; keep it used here too.
#[test]
fn build_helpers_decode() {
    let mut b = request(1, "m", "x");
    assert_eq!(frame_of(&codec(), &mut b).request_id, 1);
}

/// The Python with python3-dubbo 0.0.8: `DUBBO_PYTHON`, else `target/envoy-venv/bin/python`,
/// where `.ci/run` installs it. Without one the test skips with a notice, except in CI.
fn dubbo_python() -> Option<std::path::PathBuf> {
    crate::support::python_with("DUBBO_PYTHON", "dubbo.client")
}

/// A third-party Dubbo client (python3-dubbo 0.0.8) through tern to a server that answers
/// `sayHello(name)` with `"hello " + name`: a single call, a call whose attachment routes it to
/// another cluster, 80 concurrent calls from 8 threads
/// on one connection, and an unknown service answered by tern with an error response.
#[tokio::test]
async fn python3_dubbo_client_through_tern() {
    let Some(python) = dubbo_python() else {
        return;
    };
    let hello = |greeting: &'static str| {
        Arc::new(move |f: &Frame| {
            let (strings, _) = build::leading_strings(&f.raw[HEADER_LEN..], 6)?;
            let name = strings.get(5).cloned().flatten().unwrap_or_default();
            let mut body = vec![0x91];
            body.extend(build::string(&format!("{greeting} {name}")));
            let delay = Duration::from_millis(f.request_id % 7);
            Some((delay, build::response(0, status::OK, &body)))
        })
    };
    let server = Server::start(codec(), hello("hello")).await;
    let canary = Server::start(codec(), hello("canary")).await;
    let routes = dubbo_codec_yaml(&format!(
        r#"            virtual_hosts:
            - name: demo
              hosts: ["{SERVICE}"]
              routes:
                matcher_list:
                  matchers:
                  - predicate:
                      single_predicate:
                        input:
                          name: env
                          typed_config:
                            "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.PropertyMatchInput
                            property_name: env
                        value_match: {{ exact: canary }}
                    on_match:
                      action: {}
                on_no_match:
                  action: {}
"#,
        action("canary", ""),
        action("echo", "")
    ));
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &routes)],
        &[
            static_cluster("echo", &[server.addr], ""),
            static_cluster("canary", &[canary.addr], ""),
        ],
    ))
    .await;
    let addr = tern.listener_addr("d").unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rpc/dubbo_client.py");
    let out = within(
        60,
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(addr.to_string())
            .arg(SERVICE)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3-dubbo client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["single"], "hello world");
    assert_eq!(v["canary"], "canary ctx");
    assert_eq!(canary.requests(), 1);
    let concurrent = v["concurrent"].as_object().unwrap();
    assert_eq!(concurrent.len(), 80);
    for (name, got) in concurrent {
        assert_eq!(got.as_str(), Some(format!("hello {name}").as_str()));
    }
    let unknown = v["unknown"].as_str().unwrap();
    // The client raises the error message of a non-OK response (status 60 here; the status
    // itself is checked in `routes_by_service_and_method_to_two_clusters`).
    assert!(
        unknown.starts_with("DubboResponseException") && unknown.contains("no route"),
        "{unknown}"
    );
    assert_eq!(server.requests(), 81);
}

/// One access log line per request, in the HTTP access log's format: the service as
/// `:authority`, the method as `:path`, the protocol's status as the response code.
#[tokio::test]
async fn access_log_line_per_request() {
    let server = echo_server().await;
    let log = crate::support::logs::temp_log("rpc-access");
    let format = r#"{ text_format_source: { inline_string: "%CONNECTION_ID% %REQ(:AUTHORITY)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %ROUTE_NAME%\n" } }"#;
    let yaml = format!(
        "{}          access_log:\n{}",
        all_to("echo", ""),
        crate::support::logs::file_access_log(&log, format, "", 10)
    );
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &yaml)],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    let mut c = Client::connect(tern.listener_addr("d").unwrap(), codec()).await;
    c.send(&request(1, "sayHello", "x")).await;
    assert!(c.recv().await.unwrap().status.unwrap().ok);
    c.send(&request(2, "hang", "x")).await;
    drop(c);
    let lines = crate::support::logs::lines(&log, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    assert_eq!(
        fields[0][1..],
        [SERVICE, "sayHello", "20", "-", "echo", "to-echo"]
    );
    assert_eq!(
        fields[1][1..],
        [SERVICE, "hang", "0", "DC", "echo", "to-echo"]
    );
    assert_eq!(fields[0][0], fields[1][0], "same connection id");
}

/// A generic_proxy listener over LDS (a file source): applied, and a bad codec in a later
/// version is rejected with the last good listener kept.
#[tokio::test]
async fn generic_proxy_over_lds() {
    let server = echo_server().await;
    let dir = std::env::temp_dir().join(format!(
        "tern-rpc-lds-{}-{}",
        std::process::id(),
        server.addr.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let lds_path = dir.join("lds.yaml");
    let lds = |version: &str, codec_type: &str| {
        format!(
            r#"version_info: "{version}"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: rpc
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.generic_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.v3.GenericProxy
        stat_prefix: rpc
        codec_config:
          name: codec
          typed_config: {{ "@type": {codec_type} }}
        route_config:
          name: r
          routes:
            on_no_match:
              action: {}
        filters:
        - name: router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.router.v3.Router }}
"#,
            action("echo", "")
        )
    };
    let write = |text: String| {
        let tmp = lds_path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &lds_path).unwrap();
    };
    write(lds(
        "1",
        "type.googleapis.com/envoy.extensions.filters.network.generic_proxy.codecs.dubbo.v3.DubboCodecConfig",
    ));
    let yaml = format!(
        "node: {{id: n, cluster: c}}\ndynamic_resources:\n  lds_config: {{path_config_source: {{path: {}}}, resource_api_version: V3}}\n{}",
        lds_path.display(),
        bootstrap(&[], &[static_cluster("echo", &[server.addr], "")])
            .replace("  listeners:\n", "  listeners: []\n")
    );
    let tern = start_tern(&yaml).await;
    within(10, tern.wait_initialized()).await;
    let mut addr = None;
    assert!(
        eventually(5, || {
            addr = tern.listener_addr("rpc");
            addr.is_some()
        })
        .await
    );
    let mut c = Client::connect(addr.unwrap(), codec()).await;
    c.send(&request(1, "sayHello", "lds")).await;
    assert!(c.recv().await.unwrap().status.unwrap().ok);
    write(lds(
        "2",
        "type.googleapis.com/envoy.extensions.filters.network.generic_proxy.codecs.http1.v3.Http1CodecConfig",
    ));
    let stats = &tern.world.stats;
    assert!(
        eventually(5, || stats
            .counter_value("listener_manager.lds.update_rejected")
            .unwrap_or(0)
            >= 1)
        .await
    );
    c.send(&request(2, "sayHello", "still")).await;
    assert!(c.recv().await.unwrap().status.unwrap().ok);
    let _ = std::fs::remove_dir_all(&dir);
}

/// tern's `MultiCodecConfig`: a codec list on one listener, chosen per connection by magic.
#[tokio::test]
async fn multi_codec_config_selects_by_magic() {
    let server = echo_server().await;
    let routes = format!(
        r#"          codec_config:
            name: tern.generic_proxy.codecs.multi
            typed_config:
              "@type": type.googleapis.com/tern.generic_proxy.codecs.multi.v3.MultiCodecConfig
              codecs:
              - name: envoy.generic_proxy.codecs.dubbo
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.codecs.dubbo.v3.DubboCodecConfig
          route_config:
            name: routes
            routes:
              on_no_match:
                action: {}
"#,
        action("echo", "")
    );
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &routes)],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("d").unwrap();
    let mut c = Client::connect(addr, codec()).await;
    c.send(&request(1, "sayHello", "multi")).await;
    assert!(c.recv().await.unwrap().status.unwrap().ok);
    // No codec's magic: closed, counted.
    let mut c = Client::connect(addr, codec()).await;
    c.send(b"\x01\x02\x03").await;
    assert!(c.closed().await);
    assert_eq!(
        tern.world
            .stats
            .counter_value("generic_proxy.d.downstream_rq_decoding_error"),
        Some(1)
    );
}

/// `retry_policy.num_retries`: a connect failure goes to another host; without retries the
/// client gets Dubbo's server error.
#[tokio::test]
async fn connect_failures_are_retried_on_another_host() {
    let server = echo_server().await;
    let dead = crate::support::dead_addr();
    let tern = start_tern(&bootstrap(
        &[
            generic_proxy_listener("r", &all_to("two", ", retry_policy: { num_retries: 1 }")),
            generic_proxy_listener("n", &all_to("two", "")),
        ],
        &[static_cluster("two", &[dead, server.addr], "")],
    ))
    .await;
    let mut c = Client::connect(tern.listener_addr("r").unwrap(), codec()).await;
    for id in 1..=4u64 {
        c.send(&request(id, "sayHello", "retry")).await;
        let r = c.recv().await.unwrap();
        assert_eq!(r.request_id, id);
        assert!(r.status.unwrap().ok, "request {id}");
    }
    let stats = &tern.world.stats;
    assert!(
        stats
            .counter_value("cluster.two.upstream_rq_retry")
            .unwrap_or(0)
            >= 1
    );
    let mut c = Client::connect(tern.listener_addr("n").unwrap(), codec()).await;
    let mut failed = 0;
    for id in 1..=4u64 {
        c.send(&request(id, "sayHello", "once")).await;
        let r = c.recv().await.unwrap();
        if r.status.unwrap().code == u32::from(status::SERVER_ERROR) {
            failed += 1;
        }
    }
    assert!(
        failed >= 1,
        "round robin reaches the dead host without retries"
    );
}

/// A client that sends requests but never reads its responses is disconnected once its
/// queue of responses is full: the proxy's memory per connection stays bounded.
#[tokio::test]
async fn client_that_never_reads_is_disconnected() {
    use tokio::io::AsyncWriteExt;
    let server = echo_server().await;
    let tern = start_tern(&bootstrap(
        &[generic_proxy_listener("d", &all_to("echo", ""))],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("d").unwrap();
    let mut c = Client::connect(addr, codec()).await;
    let big = "z".repeat(2048);
    let mut batch = Vec::new();
    let mut closed = false;
    'send: for round in 0..40u64 {
        batch.clear();
        for i in 0..1000u64 {
            batch.extend_from_slice(&request(round * 1000 + i + 1, "sayHello", &big));
        }
        match within(10, c.stream.write_all(&batch)).await {
            Ok(()) => {}
            Err(_) => {
                closed = true;
                break 'send;
            }
        }
    }
    assert!(
        closed || c.closed().await,
        "a client that never reads stays connected"
    );
    // tern still serves others.
    let mut c = Client::connect(addr, codec()).await;
    c.send(&request(1, "sayHello", "next")).await;
    assert!(c.recv().await.unwrap().status.unwrap().ok);
}

/// An Istio-style hop for RPC: the generic proxy's cluster originates TLS (SNI, CA, SAN check)
/// to a second tern that terminates it in front of the Dubbo server. The requests share one
/// TLS connection, and a cluster whose SAN check fails gets Dubbo's error answer.
#[tokio::test]
async fn requests_reach_a_tls_cluster_over_one_shared_tls_connection() {
    use crate::support::certs::Ca;
    let server = echo_server().await;
    let ca = Ca::new("rpc-root");
    let cert = ca.server(&["dubbo.test"]);
    let q = |s: &str| serde_json::to_string(s).unwrap();
    // The server side: TLS terminated, then plain TCP to the Dubbo server.
    let terminating = format!(
        r#"
  - name: tls-in
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{ inline_string: {cert} }}
              private_key: {{ inline_string: {key} }}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tls-in
          cluster: echo
"#,
        cert = q(&cert.cert_pem),
        key = q(&cert.key_pem),
    );
    let back = start_tern(&bootstrap(
        &[terminating],
        &[static_cluster("echo", &[server.addr], "")],
    ))
    .await;
    let tls_addr = back.listener_addr("tls-in").unwrap();
    let upstream_tls = |san: &str| {
        format!(
            "    transport_socket: {{ name: envoy.transport_sockets.tls, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: dubbo.test, common_tls_context: {{ validation_context: {{ trusted_ca: {{ inline_string: {} }}, match_typed_subject_alt_names: [{{ san_type: DNS, matcher: {{ exact: {san} }} }}] }} }} }} }}\n",
            q(&ca.cert_pem)
        )
    };
    let front = start_tern(&bootstrap(
        &[
            generic_proxy_listener("d", &all_to("secure", "")),
            generic_proxy_listener("bad", &all_to("wrong-san", "")),
        ],
        &[
            static_cluster("secure", &[tls_addr], &upstream_tls("dubbo.test")),
            static_cluster("wrong-san", &[tls_addr], &upstream_tls("other.test")),
        ],
    ))
    .await;
    let addr = front.listener_addr("d").unwrap();
    let mut client = Client::connect(addr, codec()).await;
    let mut all = Vec::new();
    for id in 1..=20u64 {
        all.extend_from_slice(&request(id, "sayHello", &format!("over tls {id}")));
    }
    client.send(&all).await;
    let got = within(20, client.recv_n(20)).await;
    for id in 1..=20u64 {
        assert_eq!(
            got[&id].status.unwrap().code,
            u32::from(status::OK),
            "id {id}"
        );
    }
    assert_eq!(server.requests(), 20);
    let front_stats = &front.world.stats;
    assert_eq!(
        front_stats.counter_value("cluster.secure.ssl.handshake"),
        Some(1)
    );
    assert_eq!(
        back.world
            .stats
            .counter_value("listener.127.0.0.1_0.ssl.handshake"),
        Some(1)
    );
    // A certificate that fails the cluster's SAN check: no connection, Dubbo's error answer.
    let mut client = Client::connect(front.listener_addr("bad").unwrap(), codec()).await;
    client.send(&request(7, "sayHello", "refused")).await;
    let got = within(20, client.recv()).await.unwrap();
    assert_eq!(got.request_id, 7);
    assert_ne!(got.status.unwrap().code, u32::from(status::OK));
    assert!(front_stats.counter_value("cluster.wrong-san.ssl.fail_verify_san") >= Some(1));
    assert_eq!(server.requests(), 20);
}
