//! Access logs and tracing headers through tern: real requests (successful and failed), log
//! lines read back field by field. The expected values are what Envoy 1.40 writes for the same
//! configuration and requests.

use super::support::logs::{file_access_log, json_lines, lines, temp_log};
use super::support::{
    bootstrap, dead_addr, get, h1_client, h2_client, http_listener, send, start_tern,
    static_cluster, upstream, within,
};
use super::{empty, vh};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A JSON access log of the fields the tests read.
const JSON: &str = r#"{ json_format: { code: "%RESPONSE_CODE%", flags: "%RESPONSE_FLAGS%", details: "%RESPONSE_CODE_DETAILS%", rx: "%BYTES_RECEIVED%", tx: "%BYTES_SENT%", host: "%UPSTREAM_HOST%", cluster: "%UPSTREAM_CLUSTER%", route: "%ROUTE_NAME%", attempts: "%UPSTREAM_REQUEST_ATTEMPT_COUNT%", method: "%REQ(:METHOD)%", path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", protocol: "%PROTOCOL%", duration: "%DURATION%", ust: "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", rid: "%REQ(X-REQUEST-ID)%", failure: "%UPSTREAM_TRANSPORT_FAILURE_REASON%", ula: "%UPSTREAM_LOCAL_ADDRESS%", remote: "%DOWNSTREAM_REMOTE_ADDRESS%" } }"#;

/// Istio's default text format (`EnvoyTextLogFormat` in istio/istio).
const ISTIO: &str = r#"[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"#;

fn empty_cluster(name: &str) -> String {
    format!(
        "\n  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment: {{ cluster_name: {name} }}\n"
    )
}

fn by_path(lines: Vec<Value>) -> HashMap<String, Value> {
    lines
        .into_iter()
        .map(|v| (v["path"].as_str().unwrap_or("-").to_owned(), v))
        .collect()
}

/// Open a connection, send `request`, read until `until` shows up in the response, then
/// close the connection: the client goes away mid-response.
async fn disconnect_after(addr: SocketAddr, request: &[u8], until: &str) {
    let mut s = within(5, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(until) {
        let n = within(10, s.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed before {until:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn access_log_fields_for_each_outcome() {
    let up = upstream::http("up").await;
    let log = temp_log("outcomes");
    let routes = r#"              - name: ok-route
                match: { prefix: /ok }
                route: { cluster: up }
              - match: { prefix: /echo }
                route: { cluster: up }
              - match: { prefix: /dead }
                route: { cluster: dead }
              - match: { prefix: /rdead }
                route: { cluster: dead, retry_policy: { retry_on: connect-failure, num_retries: 2 } }
              - match: { prefix: /delay }
                route: { cluster: up, timeout: 0.2s }
              - match: { prefix: /uh }
                route: { cluster: empty }
              - match: { prefix: /direct }
                direct_response: { status: 200, body: { inline_string: hello } }
              - match: { prefix: /status }
                route: { cluster: up, retry_policy: { retry_on: 5xx, num_retries: 1 } }
              - match: { prefix: /stall }
                route: { cluster: up }
              - match: { prefix: /rewrite/ }
                route: { cluster: up, prefix_rewrite: /ok/ }
"#;
    let hcm = format!(
        "          access_log:\n{}",
        file_access_log(&log, JSON, "", 10)
    );
    let tern = start_tern(&bootstrap(
        &[http_listener("l", &vh(routes), &hcm)],
        &[
            static_cluster("up", &[up.addr], ""),
            static_cluster("dead", &[dead_addr()], ""),
            empty_cluster("empty"),
        ],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let c = h1_client();
    let ok = get(&c, addr, "svc.local", "/ok/a").await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        get(&h2_client(), addr, "svc.local", "/ok/h2").await.status,
        200
    );
    let post = http::Request::post(format!("http://{addr}/echo"))
        .body(Full::new(Bytes::from_static(b"hello world")))
        .unwrap();
    assert_eq!(send(&c, post).await.body, "hello world");
    for (path, status) in [
        ("/dead", 503),
        ("/rdead", 503),
        ("/delay/2000", 504),
        ("/uh", 503),
        ("/nomatch", 404),
        ("/direct", 200),
        ("/status/503", 503),
        ("/rewrite/zz", 200),
    ] {
        assert_eq!(
            get(&c, addr, "svc.local", path).await.status,
            status,
            "{path}"
        );
    }
    disconnect_after(
        addr,
        b"GET /stall HTTP/1.1\r\nHost: svc.local\r\n\r\n",
        "first chunk",
    )
    .await;
    let old = support_raw(addr, b"GET /ok/old HTTP/1.0\r\n\r\n").await;
    assert!(
        old.starts_with("HTTP/1.0 426") || old.starts_with("HTTP/1.1 426"),
        "{old}"
    );

    let logged = by_path(json_lines(&log, 13).await);
    assert_eq!(logged.len(), 13, "one line per request: {logged:#?}");
    let l = |p: &str| {
        logged
            .get(p)
            .unwrap_or_else(|| panic!("no line for {p}: {logged:#?}"))
    };
    let up_host = up.addr.to_string();
    let dead = dead_addr().to_string();

    let a = l("/ok/a");
    assert_eq!(a["code"], 200);
    assert_eq!(a["flags"], "-");
    assert_eq!(a["details"], "via_upstream");
    assert_eq!(a["host"], up_host.as_str());
    assert_eq!(a["cluster"], "up");
    assert_eq!(a["route"], "ok-route");
    assert_eq!(a["attempts"], 1);
    assert_eq!(a["method"], "GET");
    assert_eq!(a["protocol"], "HTTP/1.1");
    assert_eq!(a["rx"], 0);
    assert_eq!(a["tx"], ok.body.len());
    assert_eq!(a["failure"], Value::Null);
    assert!(a["duration"].is_u64());
    assert!(
        a["ust"].as_str().is_some_and(|s| s.parse::<u64>().is_ok()),
        "{a}"
    );
    assert_eq!(a["rid"].as_str().map(str::len), Some(36));
    assert!(
        a["ula"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{a}"
    );
    assert!(
        a["remote"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{a}"
    );

    assert_eq!(l("/ok/h2")["protocol"], "HTTP/2");
    let p = l("/echo");
    assert_eq!(
        (&p["method"], &p["rx"], &p["tx"]),
        (&"POST".into(), &11.into(), &11.into())
    );

    let d = l("/dead");
    assert_eq!(d["code"], 503);
    assert_eq!(d["flags"], "UF");
    assert_eq!(
        d["details"],
        "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}"
    );
    assert_eq!(d["failure"], "delayed_connect_error:_Connection_refused");
    assert_eq!(d["host"], dead.as_str());
    assert_eq!(d["ula"], Value::Null);
    assert_eq!(d["ust"], Value::Null);

    let r = l("/rdead");
    assert_eq!(r["flags"], "URX,UF");
    assert_eq!(r["attempts"], 3);

    let t = l("/delay/2000");
    assert_eq!(
        (&t["code"], &t["flags"], &t["details"]),
        (&504.into(), &"UT".into(), &"response_timeout".into())
    );

    let u = l("/uh");
    assert_eq!(
        (&u["code"], &u["flags"], &u["details"]),
        (&503.into(), &"UH".into(), &"no_healthy_upstream".into())
    );
    assert_eq!((&u["host"], &u["cluster"]), (&Value::Null, &"empty".into()));

    let n = l("/nomatch");
    assert_eq!(
        (&n["code"], &n["flags"], &n["details"]),
        (&404.into(), &"NR".into(), &"route_not_found".into())
    );
    assert_eq!(
        (&n["cluster"], &n["route"], &n["attempts"]),
        (&Value::Null, &Value::Null, &0.into())
    );

    let dr = l("/direct");
    assert_eq!(
        (&dr["code"], &dr["flags"], &dr["details"], &dr["tx"]),
        (
            &200.into(),
            &"-".into(),
            &"direct_response".into(),
            &5.into()
        )
    );

    let s = l("/status/503");
    assert_eq!(
        (&s["code"], &s["flags"], &s["details"], &s["attempts"]),
        (
            &503.into(),
            &"URX".into(),
            &"via_upstream".into(),
            &2.into()
        )
    );

    // The original path, from x-envoy-original-path.
    assert_eq!(l("/rewrite/zz")["code"], 200);

    let dc = l("/stall");
    assert_eq!(dc["code"], 200);
    assert_eq!(dc["flags"], "DC");
    assert_eq!(dc["details"], "downstream_remote_disconnect");
    assert!(dc["tx"].as_u64().unwrap() >= 12, "{dc}");

    let old = logged
        .values()
        .find(|v| v["code"] == 426)
        .expect("the 426 line");
    assert_eq!(
        (&old["flags"], &old["details"]),
        (&"DPE".into(), &"low_version".into())
    );
    let _ = std::fs::remove_file(log);
}

async fn support_raw(addr: SocketAddr, bytes: &[u8]) -> String {
    super::support::raw(addr, bytes).await
}

#[tokio::test]
async fn istio_and_default_formats_and_a_filtered_stdout_log() {
    let up = upstream::http("up").await;
    let istio = temp_log("istio");
    let default = temp_log("default");
    let stdout = "          - name: envoy.access_loggers.stdout\n            filter: { header_filter: { header: { name: x-log-stdout, present_match: true } } }\n            typed_config: { \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog }\n";
    let hcm = format!(
        "          access_log:\n{}{}{stdout}",
        file_access_log(
            &istio,
            &format!("{{ text_format_source: {{ inline_string: \"{ISTIO}\" }} }}"),
            "",
            10
        ),
        file_access_log(&default, "", "", 10),
    );
    let routes = "              - name: r1\n                match: { prefix: / }\n                route: { cluster: up }\n";
    let tern = start_tern(&bootstrap(
        &[http_listener("l", &vh(routes), &hcm)],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let req = http::Request::get(format!("http://{addr}/p?q=1"))
        .header("host", "svc.ns:8080")
        .header("user-agent", "test-agent")
        .header("x-request-id", "11111111-2222-4333-8444-555555555555")
        .body(empty())
        .unwrap();
    let got = send(&h1_client(), req).await;
    assert_eq!(got.status, 200);

    let line = lines(&istio, 1).await.remove(0);
    let up_host = up.addr.to_string();
    let (time, rest) = line.split_once("] ").unwrap();
    assert!(
        time.starts_with('[') && time.ends_with('Z') && time.len() == 25,
        "{time}"
    );
    let parts: Vec<&str> = rest.split('"').collect();
    assert_eq!(parts[1], "GET /p?q=1 HTTP/1.1");
    let fields: Vec<&str> = parts[2].split_whitespace().collect();
    assert_eq!(fields, ["200", "-", "via_upstream", "-"]);
    assert_eq!(parts[3], "-", "no transport failure");
    let counts: Vec<&str> = parts[4].split_whitespace().collect();
    assert_eq!(counts[0], "0");
    assert_eq!(counts[1], got.body.len().to_string());
    assert!(
        counts[2].parse::<u64>().is_ok() && counts[3].parse::<u64>().is_ok(),
        "{line}"
    );
    assert_eq!(parts[5], "-", "no x-forwarded-for");
    assert_eq!(parts[7], "test-agent");
    assert_eq!(parts[9], "11111111-2222-4333-8444-555555555555");
    assert_eq!(parts[11], "svc.ns:8080");
    assert_eq!(parts[13], up_host);
    let tail: Vec<&str> = parts[14].split_whitespace().collect();
    assert_eq!(tail[0], "up");
    assert!(
        tail[1].starts_with("127.0.0.1:"),
        "upstream local address: {line}"
    );
    assert_eq!(tail[2], addr.to_string());
    assert!(tail[3].starts_with("127.0.0.1:"));
    assert_eq!(&tail[4..], ["-", "r1"]);

    let line = lines(&default, 1).await.remove(0);
    let parts: Vec<&str> = line.split('"').collect();
    assert_eq!(parts[1], "GET /p?q=1 HTTP/1.1");
    let fields: Vec<&str> = parts[2].split_whitespace().collect();
    assert_eq!(&fields[..3], ["200", "-", "0"]);
    assert_eq!(parts[5], "test-agent");
    assert_eq!(parts[7], "11111111-2222-4333-8444-555555555555");
    assert_eq!(parts[9], "svc.ns:8080");
    assert_eq!(parts[11], up_host);

    // The stdout log writes only requests that carry x-log-stdout.
    let buffered = || {
        tern.world
            .stats
            .counter_value("filesystem.write_buffered")
            .unwrap_or(0)
    };
    let before = buffered();
    let req = http::Request::get(format!("http://{addr}/s"))
        .header("x-log-stdout", "1")
        .body(empty())
        .unwrap();
    assert_eq!(send(&h1_client(), req).await.status, 200);
    assert_eq!(lines(&default, 2).await.len(), 2);
    assert!(
        super::support::eventually(5, || buffered() >= before + 3).await,
        "two file lines and one stdout line"
    );
    let _ = std::fs::remove_file(istio);
    let _ = std::fs::remove_file(default);
}

#[tokio::test]
async fn log_filters_and_the_listener_log_for_no_filter_chain() {
    let up = upstream::http("up").await;
    let errors = temp_log("errors");
    let nr = temp_log("listener-nr");
    let hcm = format!(
        "          access_log:\n{}",
        file_access_log(
            &errors,
            "{ text_format_source: { inline_string: \"%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%\\n\" } }",
            "{ status_code_filter: { comparison: { op: GE, value: { default_value: 400, runtime_key: istio.io/unset } } } }",
            10
        )
    );
    let routes = "              - match: { prefix: /ok }\n                route: { cluster: up }\n";
    let listener_nr = format!(
        r#"
  - name: nochain
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    access_log:
{}    filter_chains:
    - filter_chain_match: {{ destination_port: 1 }}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: nochain
          cluster: up
"#,
        file_access_log(&nr, "", "{ response_flag_filter: { flags: [NR] } }", 4)
    );
    let tern = start_tern(&bootstrap(
        &[http_listener("l", &vh(routes), &hcm), listener_nr],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let c = h1_client();
    assert_eq!(get(&c, addr, "a", "/ok/1").await.status, 200);
    assert_eq!(get(&c, addr, "a", "/missing").await.status, 404);
    assert_eq!(get(&c, addr, "a", "/ok/status/500").await.status, 500);
    assert_eq!(get(&c, addr, "a", "/ok/2").await.status, 200);
    let got = lines(&errors, 2).await;
    assert_eq!(got, ["404 NR /missing", "500 - /ok/status/500"]);

    let nochain = tern.listener_addr("nochain").unwrap();
    let mut s = within(5, tokio::net::TcpStream::connect(nochain))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = within(5, s.read_to_end(&mut buf)).await;
    let got = lines(&nr, 1).await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0].ends_with("] \"- - -\" 0 NR 0 0 0 - \"-\" \"-\" \"-\" \"-\" \"-\""),
        "{}",
        got[0]
    );
    let _ = std::fs::remove_file(errors);
    let _ = std::fs::remove_file(nr);
}
