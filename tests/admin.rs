//! The admin API as its users call it: pilot-agent (readiness, drain, quit), istioctl and
//! Kubernetes probes. tern runs in-process (or as the binary, where the process itself is
//! under test) with an admin on a loopback port chosen at run time.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::ads::{AdsServer, dynamic_resources_yaml};
use support::{Got, h1_client, send, within};

const ADMIN: &str =
    "admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }\n";

/// A listener answering 200 `hello` directly, with a traffic direction.
fn direct_listener(name: &str, direction: &str) -> String {
    support::http_listener(
        name,
        "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: / }\n                direct_response: { status: 200, body: { inline_string: hello } }\n",
        "",
    )
    .replace(
        "    filter_chains:\n",
        &format!("    traffic_direction: {direction}\n    filter_chains:\n"),
    )
}

async fn admin_get(addr: SocketAddr, path: &str) -> Got {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(&h1_client(), req).await
}

/// pilot-agent's filters, sent as its Go client sends them (the regex unescaped in the query).
const READY_STATS: &str = r"^(server\.state|listener_manager\.workers_started)";
const UPDATE_STATS: &str =
    r"^(cluster_manager\.cds|listener_manager\.lds)\.(update_success|update_rejected)$";

/// `GET /stats?usedonly&filter=<filter>` on a raw connection; the body.
async fn raw_stats(admin: SocketAddr, filter: &str) -> String {
    let resp = support::raw(
        admin,
        format!(
            "GET /stats?usedonly&filter={filter} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    }
}

/// The payload of a chunked body.
fn dechunk(body: &str) -> String {
    let mut text = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        text.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    text
}

async fn admin_post(addr: SocketAddr, path: &str) -> Got {
    let req = http::Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(&h1_client(), req).await
}

fn json(got: &Got) -> Value {
    assert_eq!(got.headers["content-type"], "application/json", "{got:?}");
    serde_json::from_str(&got.body).unwrap_or_else(|e| panic!("{e}: {}", got.body))
}

#[tokio::test]
async fn endpoints_answer_in_envoys_shapes() {
    let yaml = format!(
        "node: {{ id: sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local, cluster: pod.ns }}\n{ADMIN}layered_runtime:\n  layers:\n  - name: static\n    static_layer: {{ overload.global_downstream_max_connections: 2147483647 }}\n  - name: admin\n    admin_layer: {{}}\n{}",
        support::bootstrap(&[direct_listener("in", "INBOUND")], &[])
    );
    let server = support::start_tern(&yaml).await;
    let admin = server.admin_addr().expect("admin bound");
    let in_addr = server.listener_addr("in").expect("bound");

    let got = admin_get(admin, "/ready").await;
    assert_eq!((got.status, got.body.as_str()), (200, "LIVE\n"));
    assert_eq!(got.headers["content-type"], "text/plain; charset=UTF-8");
    assert_eq!(got.headers["cache-control"], "no-cache, max-age=0");
    assert_eq!(got.headers["x-content-type-options"], "nosniff");

    let info = json(&admin_get(admin, "/server_info").await);
    assert_eq!(info["state"], "LIVE");
    assert_eq!(
        info["version"],
        format!("tern/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(info["hot_restart_version"], "disabled");
    assert!(
        info["uptime_current_epoch"]
            .as_str()
            .unwrap()
            .ends_with('s')
    );
    let cli = &info["command_line_options"];
    assert_eq!(cli["drain_time"], "1s");
    assert_eq!(cli["mode"], "Serve");
    assert_eq!(cli["config_path"], "", "defaults are printed");
    assert_eq!(
        info["node"]["id"],
        "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local"
    );
    assert_eq!(info["node"]["user_agent_name"], "tern");

    let got = admin_get(admin, "/listeners").await;
    assert_eq!(got.body, format!("in::{in_addr}\n"));
    let l = json(&admin_get(admin, "/listeners?format=json").await);
    assert_eq!(l["listener_statuses"][0]["name"], "in");
    assert_eq!(
        l["listener_statuses"][0]["local_address"]["socket_address"]["port_value"],
        in_addr.port()
    );

    let m = json(&admin_get(admin, "/memory").await);
    for k in [
        "allocated",
        "heap_size",
        "pageheap_unmapped",
        "pageheap_free",
        "total_thread_cache",
        "total_physical_bytes",
    ] {
        let v = m[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} is a string: {m}"));
        v.parse::<u64>().expect("a number");
    }
    assert!(m["allocated"].as_str().unwrap().parse::<u64>().unwrap() > 0);

    let r = json(&admin_get(admin, "/runtime").await);
    assert_eq!(r["layers"], serde_json::json!(["static", "admin"]));
    assert_eq!(
        r["entries"]["overload.global_downstream_max_connections"],
        serde_json::json!({"final_value": "2.14748e+09", "layer_values": ["2.14748e+09", ""]})
    );
    assert_eq!(
        json(&admin_get(admin, "/certs").await),
        serde_json::json!({"certificates": []})
    );

    let help = admin_get(admin, "/help").await;
    assert!(
        help.body.starts_with("admin commands are:\n"),
        "{}",
        help.body
    );
    let home = admin_get(admin, "/").await;
    assert!(home.body.contains("/server_info"));
    let missing = admin_get(admin, "/nope").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing
            .body
            .starts_with("invalid path. admin commands are:")
    );

    // Mutating endpoints answer only to POST.
    for p in [
        "/healthcheck/fail",
        "/drain_listeners",
        "/quitquitquit",
        "/logging",
    ] {
        let got = admin_get(admin, p).await;
        assert_eq!(got.status, 405, "{p}");
        assert_eq!(got.body, "Method GET not allowed, POST required.\n");
    }
    // Nothing was failed or drained by those GETs.
    assert_eq!(admin_get(admin, "/ready").await.status, 200);

    // Health check fail and ok.
    assert_eq!(admin_post(admin, "/healthcheck/fail").await.body, "OK\n");
    let got = admin_get(admin, "/ready").await;
    assert_eq!((got.status, got.body.as_str()), (503, "DRAINING\n"));
    assert_eq!(
        json(&admin_get(admin, "/server_info").await)["state"],
        "DRAINING"
    );
    admin_post(admin, "/healthcheck/ok").await;
    assert_eq!(admin_get(admin, "/ready").await.status, 200);

    // Admin connections are counted as Envoy's `listener.admin`.
    assert!(
        server
            .world
            .stats
            .counter_value("listener.admin.downstream_cx_total")
            .unwrap()
            >= 10
    );
}

/// pilot-agent's side: wait for LIVE while xDS initializes, then at shutdown drain the
/// inbound listeners gracefully and quit.
#[tokio::test]
async fn readiness_follows_xds_and_drain_follows_pilot_agent() {
    let ads = AdsServer::tcp().await;
    ads.set_auto(false);
    let yaml = format!(
        "node: {{ id: sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local, cluster: pod.ns }}\n{ADMIN}{}{}",
        dynamic_resources_yaml("xds-grpc", true),
        support::bootstrap(
            &[
                direct_listener("inbound", "INBOUND"),
                direct_listener("outbound", "OUTBOUND")
            ],
            &[ads.cluster_yaml("xds-grpc")]
        ),
    );
    let server = support::start_tern(&yaml).await;
    let admin = server.admin_addr().expect("admin bound");
    // No answer from the control plane yet: not ready.
    let got = admin_get(admin, "/ready").await;
    assert_eq!((got.status, got.body.as_str()), (503, "INITIALIZING\n"));
    // pilot-agent's readiness probe reads these two with usedonly (state 3: INITIALIZING).
    let ready = raw_stats(admin, READY_STATS).await;
    assert!(ready.contains("server.state: 3\n"), "{ready}");
    assert_eq!(
        json(&admin_get(admin, "/server_info").await)["state"],
        "INITIALIZING"
    );

    // The first CDS and LDS responses complete initialization.
    ads.set_cluster(&envoy_types::pb::envoy::config::cluster::v3::Cluster {
        name: "c".into(),
        ..Default::default()
    });
    let l: envoy_types::pb::envoy::config::listener::v3::Listener =
        tern::config::resource_from_json(&serde_json::json!({
            "name": "dyn",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "tcp",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "dyn",
                    "cluster": "c"
                }
            }]}]
        }), true)
        .expect("listener");
    ads.set_listener(&l);
    ads.set_auto(true);
    within(10, server.wait_initialized()).await;
    assert!(
        support::eventually(5, || server.status.state()
            == envoy_types::pb::envoy::admin::v3::server_info::State::Live)
        .await
    );
    let got = admin_get(admin, "/ready").await;
    assert_eq!((got.status, got.body.as_str()), (200, "LIVE\n"));
    let ready = raw_stats(admin, READY_STATS).await;
    assert_eq!(
        ready, "listener_manager.workers_started: 1\nserver.state: 0\n",
        "pilot-agent reads exactly these lines"
    );
    let updates = raw_stats(admin, UPDATE_STATS).await;
    assert!(
        updates.contains("cluster_manager.cds.update_success: 1\n")
            && updates.contains("listener_manager.lds.update_success: 1\n"),
        "{updates}"
    );

    // Shutdown as pilot-agent does it for a sidecar.
    let inbound = server.listener_addr("inbound").expect("bound");
    let outbound = server.listener_addr("outbound").expect("bound");
    let mut conn = support::h1_conn(inbound).await;
    let first = within(
        5,
        conn.send_request(
            support::req(inbound, "/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
    )
    .await
    .expect("response");
    assert!(first.headers().get("connection").is_none());
    // pilot-agent counts the active downstream connections of the listeners.
    let active = raw_stats(admin, "downstream_cx_active$").await;
    // (The listeners were configured with port 0; the stat prefix is the configured address.)
    assert!(
        active.contains("listener.127.0.0.1_0.downstream_cx_active: 1\n"),
        "{active}"
    );
    let got = admin_post(admin, "/drain_listeners?inboundonly&graceful").await;
    assert_eq!((got.status, got.body.as_str()), (200, "OK\n"));
    let got = admin_get(admin, "/ready").await;
    assert_eq!((got.status, got.body.as_str()), (503, "DRAINING\n"));
    // The open inbound connection is told to close with its next response; the inbound
    // listener still accepts during the drain time; outbound traffic is untouched.
    let resp = within(
        5,
        conn.send_request(
            support::req(inbound, "/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
    )
    .await
    .expect("response");
    assert_eq!(resp.headers()["connection"], "close");
    let got = support::get(&h1_client(), inbound, "x", "/").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["connection"], "close");
    let got = support::get(&h1_client(), outbound, "x", "/").await;
    assert_eq!(got.status, 200);
    assert!(got.headers.get("connection").is_none(), "{got:?}");
    // After --drain-time-s (1s here) the inbound listener stops accepting.
    let stopped = async {
        loop {
            if tokio::net::TcpStream::connect(inbound).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within(10, stopped).await;
    assert_eq!(
        server
            .world
            .stats
            .counter_value("listener_manager.listener_stopped"),
        Some(1)
    );
    assert_eq!(
        support::get(&h1_client(), outbound, "x", "/").await.status,
        200
    );

    // quitquitquit tells the process to exit.
    let quit = server.status.clone();
    let waiter = tokio::spawn(async move { quit.quit.notified().await });
    assert_eq!(admin_post(admin, "/quitquitquit").await.body, "OK\n");
    within(5, waiter).await.expect("quit signalled");
}

/// The binary: `/logging` changes levels at run time; `/quitquitquit` ends the process.
#[test]
fn binary_changes_log_levels_and_quits() {
    use std::io::{Read, Write};
    let port = envoy_support::free_port();
    let dir = std::env::temp_dir().join(format!("tern-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("b.yaml");
    std::fs::write(
        &cfg,
        format!(
            "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}\nstatic_resources: {{}}\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("-c")
        .arg(&cfg)
        .args(["-l", "warning", "--component-log-level", "upstream:error"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let call = |method: &str, path: &str| -> (u16, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("admin never came up: {e}"),
            }
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        // Chunked: keep the chunk payloads only.
        let mut text = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            text.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        if text.is_empty() {
            text = body.to_string();
        }
        (status, text)
    };
    let (status, levels) = call("POST", "/logging");
    assert_eq!(status, 200);
    assert!(levels.starts_with("active loggers:\n"), "{levels}");
    assert!(levels.contains("  upstream: error\n"), "{levels}");
    assert!(levels.contains("  http: warning\n"), "{levels}");
    let (status, levels) = call("POST", "/logging?http=debug");
    assert_eq!(status, 200);
    assert!(levels.contains("  http: debug\n"), "{levels}");
    let (status, levels) = call("POST", "/logging?paths=router:trace,pool:info");
    assert_eq!(status, 200);
    assert!(levels.contains("  router: trace\n") && levels.contains("  pool: info\n"));
    let (status, body) = call("POST", "/logging?level=loud");
    assert_eq!(status, 400);
    assert!(body.starts_with("error: unknown logger level\n"), "{body}");
    let (status, body) = call("POST", "/logging?nosuch=debug");
    assert_eq!(status, 400);
    assert!(body.starts_with("error: unknown logger name\n"), "{body}");
    let (status, levels) = call("POST", "/logging?level=info");
    assert_eq!(status, 200);
    assert!(levels.contains("  upstream: info\n") && levels.contains("  http: info\n"));

    let (status, body) = call("POST", "/quitquitquit");
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "tern did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[path = "support/envoy.rs"]
mod envoy_support;

/// Every path of a JSON value with the kind of value there (`a.b[]`: an array's elements).
fn shape(v: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                shape(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                shape(v, &format!("{prefix}[]"), out);
            }
            if a.is_empty() {
                out.insert(format!("{prefix}: []"));
            }
        }
        Value::String(_) => {
            out.insert(format!("{prefix}: string"));
        }
        Value::Number(_) => {
            out.insert(format!("{prefix}: number"));
        }
        Value::Bool(_) => {
            out.insert(format!("{prefix}: bool"));
        }
        Value::Null => {
            out.insert(format!("{prefix}: null"));
        }
    }
}

/// Compare the shapes of two JSON documents; paths that start with one of `allowed` (each
/// listed with the reason in the caller) may differ.
fn same_shape(what: &str, envoy: &Value, tern: &Value, allowed: &[&str]) -> Vec<String> {
    let (mut e, mut t) = (Default::default(), Default::default());
    shape(envoy, "", &mut e);
    shape(tern, "", &mut t);
    let ok = |p: &String| allowed.iter().any(|a| p.starts_with(a));
    let mut diffs = Vec::new();
    for p in e.difference(&t).filter(|p| !ok(p)) {
        diffs.push(format!("{what}: only Envoy has {p}"));
    }
    for p in t.difference(&e).filter(|p| !ok(p)) {
        diffs.push(format!("{what}: only tern has {p}"));
    }
    diffs
}

/// Envoy 1.40 and tern on the same bootstrap: the admin's JSON answers have the same shape.
#[tokio::test]
async fn differential_admin_output_matches_envoy() {
    let template = format!(
        "node: {{ id: sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local, cluster: pod.ns, locality: {{ zone: z1 }} }}\n{}",
        envoy_support::bootstrap(
            &[envoy_support::listener(
                "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: / }\n                direct_response: { status: 200, body: { inline_string: hello } }\n",
                "",
                "",
            )],
            &[support::static_cluster(
                "backend",
                &[support::dead_addr()],
                "    circuit_breakers: { thresholds: [{ max_requests: 77 }] }\n",
            )],
        )
    );
    let Some(pair) = envoy_support::start_pair("admin-differential", &template).await else {
        return;
    };
    let mut diffs = Vec::new();

    let e = json(&admin_get(pair.envoy_admin, "/server_info").await);
    let t = json(&admin_get(pair.tern_admin, "/server_info").await);
    diffs.extend(same_shape(
        "/server_info",
        &e,
        &t,
        &[
            // Envoy lists its compiled-in extensions and its build in the node; tern sends
            // its own node (user agent tern, its version, client features).
            "node.extensions",
            "node.user_agent_build_version",
            "node.client_features",
        ],
    ));
    for k in ["state", "hot_restart_version"] {
        if e[k] != t[k] {
            diffs.push(format!("/server_info {k}: envoy {} tern {}", e[k], t[k]));
        }
    }
    for k in [
        "concurrency",
        "drain_time",
        "mode",
        "log_level",
        "restart_epoch",
    ] {
        let (ev, tv) = (&e["command_line_options"][k], &t["command_line_options"][k]);
        if ev != tv {
            diffs.push(format!(
                "/server_info command_line_options.{k}: envoy {ev} tern {tv}"
            ));
        }
    }
    if e["node"]["id"] != t["node"]["id"] || e["node"]["locality"] != t["node"]["locality"] {
        diffs.push(format!(
            "/server_info node: envoy {} tern {}",
            e["node"], t["node"]
        ));
    }

    let e = json(&admin_get(pair.envoy_admin, "/listeners?format=json").await);
    let t = json(&admin_get(pair.tern_admin, "/listeners?format=json").await);
    diffs.extend(same_shape("/listeners?format=json", &e, &t, &[]));
    let e_text = admin_get(pair.envoy_admin, "/listeners").await.body;
    let t_text = admin_get(pair.tern_admin, "/listeners").await.body;
    let strip = |s: &str, port: u16| s.replace(&port.to_string(), "PORT");
    if strip(&e_text, pair.envoy.port()) != strip(&t_text, pair.tern.port()) {
        diffs.push(format!("/listeners: envoy {e_text:?} tern {t_text:?}"));
    }

    for p in ["/ready", "/certs", "/nope"] {
        let e = admin_get(pair.envoy_admin, p).await;
        let t = admin_get(pair.tern_admin, p).await;
        if (e.status, &e.headers["content-type"]) != (t.status, &t.headers["content-type"]) {
            diffs.push(format!(
                "{p}: envoy {} {:?} tern {} {:?}",
                e.status, e.headers["content-type"], t.status, t.headers["content-type"]
            ));
        }
    }
    let e = admin_get(pair.envoy_admin, "/ready").await.body;
    let t = admin_get(pair.tern_admin, "/ready").await.body;
    if e != t {
        diffs.push(format!("/ready body: envoy {e:?} tern {t:?}"));
    }
    let e = json(&admin_get(pair.envoy_admin, "/clusters?format=json").await);
    let t = json(&admin_get(pair.tern_admin, "/clusters?format=json").await);
    diffs.extend(same_shape("/clusters?format=json", &e, &t, &[]));
    if e["cluster_statuses"][0]["circuit_breakers"] != t["cluster_statuses"][0]["circuit_breakers"]
    {
        diffs.push(format!("/clusters circuit_breakers: envoy {e} tern {t}"));
    }
    // Text: the same lines, except the host stat Envoy has and tern does not track
    // (rq_pending_active: tern has no per-host pending queue).
    let lines = |s: String| -> Vec<String> {
        s.lines()
            .filter(|l| !l.contains("::rq_pending_active::"))
            .map(str::to_owned)
            .collect()
    };
    let e = lines(admin_get(pair.envoy_admin, "/clusters").await.body);
    let t = lines(admin_get(pair.tern_admin, "/clusters").await.body);
    if e != t {
        diffs.push(format!("/clusters text:\n envoy {e:?}\n tern  {t:?}"));
    }
    let e = admin_get(pair.envoy_admin, "/stats/prometheus").await;
    let t = admin_get(pair.tern_admin, "/stats/prometheus").await;
    if e.headers["content-type"] != t.headers["content-type"] {
        diffs.push(format!(
            "/stats/prometheus content-type: envoy {:?} tern {:?}",
            e.headers["content-type"], t.headers["content-type"]
        ));
    }

    let e = json(&admin_get(pair.envoy_admin, "/memory").await);
    let t = json(&admin_get(pair.tern_admin, "/memory").await);
    diffs.extend(same_shape("/memory", &e, &t, &[]));

    assert!(
        diffs.is_empty(),
        "tern differs from Envoy:\n{}",
        diffs.join("\n")
    );
}

/// `POST /reopen_logs` (Envoy's answer to logrotate, like SIGUSR1): after the log file was
/// moved away, the next lines go to a new file at the configured path.
#[tokio::test]
async fn reopen_logs_starts_a_new_access_log_file() {
    let log = support::logs::temp_log("reopen");
    let moved = log.with_extension("log.1");
    let _ = std::fs::remove_file(&moved);
    let listener = support::http_listener(
        "l",
        "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: / }\n                direct_response: { status: 200, body: { inline_string: hello } }\n",
        &format!(
            "          access_log:\n{}",
            support::logs::file_access_log(&log, "{ text_format: \"%REQ(:PATH)%\\n\" }", "", 10)
        ),
    );
    let server =
        support::start_tern(&format!("{ADMIN}{}", support::bootstrap(&[listener], &[]))).await;
    let admin = server.admin_addr().expect("admin bound");
    let addr = server.listener_addr("l").expect("bound");
    let c = h1_client();
    support::get(&c, addr, "h", "/first").await;
    assert_eq!(support::logs::lines(&log, 1).await, ["/first"]);
    std::fs::rename(&log, &moved).expect("rotate");
    assert_eq!(admin_get(admin, "/reopen_logs").await.status, 405);
    assert_eq!(admin_post(admin, "/reopen_logs").await.body, "OK\n");
    support::get(&c, addr, "h", "/second").await;
    assert_eq!(support::logs::lines(&log, 1).await, ["/second"]);
    assert_eq!(
        std::fs::read_to_string(&moved).expect("the moved file"),
        "/first\n"
    );
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&moved);
}
