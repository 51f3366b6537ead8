//! HTTP through tern: route matching and actions, load balancing, retries, timeouts, protocol
//! conversion, upgrades, local replies and connection-manager options. Each test starts real
//! upstream servers, tern in-process, and a real client.

mod support;

#[path = "http/access_log.rs"]
mod access_log;
#[path = "http/compressor.rs"]
mod compressor;
#[path = "http/downstream_h1.rs"]
mod downstream_h1;
#[path = "http/inspector.rs"]
mod inspector;
#[path = "http/tracing.rs"]
mod tracing;
#[path = "http/upstream_h1.rs"]
mod upstream_h1;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::net::SocketAddr;
use support::{
    bootstrap, get, h1_client, h2_client, http_listener, send, start_tern, static_cluster,
    upstream, within,
};

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

/// One virtual host `*` with these routes (YAML list items, indented by 14).
fn vh(routes: &str) -> String {
    format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n{routes}"
    )
}

async fn one_route_tern(routes: &str, clusters: &[String]) -> (tern::server::Server, SocketAddr) {
    let tern = start_tern(&bootstrap(&[http_listener("l", &vh(routes), "")], clusters)).await;
    let addr = tern.listener_addr("l").expect("bound");
    (tern, addr)
}

fn header_line<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[tokio::test]
async fn proxies_http1_to_upstream_with_envoy_headers() {
    let up = upstream::http("u1").await;
    let (_t, addr) = one_route_tern(
        "              - match: { prefix: / }\n                route: { cluster: up }\n",
        &[static_cluster("up", &[up.addr], "")],
    )
    .await;
    let c = h1_client();
    let r = get(&c, addr, "example.com", "/hello?x=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-upstream"], "u1");
    assert!(r.headers.contains_key("x-envoy-upstream-service-time"));
    assert_eq!(r.headers["server"], "envoy");
    assert!(r.body.contains("path /hello?x=1"), "{}", r.body);
    assert_eq!(header_line(&r.body, "host"), Some("example.com"));
    assert!(header_line(&r.body, "x-request-id").is_some_and(|v| v.len() == 36));
    assert_eq!(header_line(&r.body, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        header_line(&r.body, "x-envoy-expected-rq-timeout-ms"),
        Some("15000")
    );
}

#[tokio::test]
async fn route_match_kinds() {
    let a = upstream::http("a").await;
    let b = upstream::http("b").await;
    let routes = r#"              - match: { path: /exact }
                route: { cluster: a }
              - match: { safe_regex: { regex: "/re/[0-9]+" } }
                route: { cluster: a }
              - match: { path_separated_prefix: /sep }
                route: { cluster: a }
              - match: { prefix: /CaSe, case_sensitive: false }
                route: { cluster: a }
              - match: { prefix: /h, headers: [ { name: x-exact, string_match: { exact: yes } } ] }
                route: { cluster: a }
              - match: { prefix: /h, headers: [ { name: x-pre, string_match: { prefix: ab } } ] }
                route: { cluster: a }
              - match: { prefix: /h, headers: [ { name: x-suf, string_match: { suffix: yz } } ] }
                route: { cluster: a }
              - match: { prefix: /h, headers: [ { name: x-con, string_match: { contains: mid } } ] }
                route: { cluster: a }
              - match: { prefix: /h, headers: [ { name: x-re, string_match: { safe_regex: { regex: "^v[0-9]$" } } } ] }
                route: { cluster: a }
              - match: { prefix: /h, headers: [ { name: x-present, present_match: true } ] }
                route: { cluster: a }
              - match: { prefix: /h, headers: [ { name: x-not, string_match: { exact: bad }, invert_match: true }, { name: x-inv, present_match: true } ] }
                route: { cluster: a }
              - match: { prefix: /q, query_parameters: [ { name: debug, string_match: { exact: "1" } } ] }
                route: { cluster: a }
              - match: { prefix: /g, grpc: {} }
                route: { cluster: a }
              - match: { prefix: / }
                route: { cluster: b }
"#;
    let (_t, addr) = one_route_tern(
        routes,
        &[
            static_cluster("a", &[a.addr], ""),
            static_cluster("b", &[b.addr], ""),
        ],
    )
    .await;
    let c = h1_client();
    let to = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let c = c.clone();
        async move {
            let mut r = support::req(addr, path);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            send(&c, r.body(empty()).unwrap()).await.headers["x-upstream"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(to("/exact", &[]).await, "a");
    assert_eq!(to("/exact/more", &[]).await, "b");
    assert_eq!(to("/re/42", &[]).await, "a");
    assert_eq!(to("/re/4x", &[]).await, "b");
    assert_eq!(to("/sep", &[]).await, "a");
    assert_eq!(to("/sep/x", &[]).await, "a");
    assert_eq!(to("/separate", &[]).await, "b");
    assert_eq!(to("/case/x", &[]).await, "a");
    assert_eq!(to("/h", &[("x-exact", "yes")]).await, "a");
    assert_eq!(to("/h", &[("x-exact", "no")]).await, "b");
    assert_eq!(to("/h", &[("x-pre", "abc")]).await, "a");
    assert_eq!(to("/h", &[("x-suf", "xyz")]).await, "a");
    assert_eq!(to("/h", &[("x-con", "amidb")]).await, "a");
    assert_eq!(to("/h", &[("x-re", "v7")]).await, "a");
    assert_eq!(to("/h", &[("x-re", "v77")]).await, "b");
    assert_eq!(to("/h", &[("x-present", "")]).await, "a");
    assert_eq!(to("/h", &[("x-inv", "1"), ("x-not", "good")]).await, "a");
    assert_eq!(to("/h", &[("x-inv", "1"), ("x-not", "bad")]).await, "b");
    assert_eq!(to("/q?debug=1", &[]).await, "a");
    assert_eq!(to("/q?debug=2", &[]).await, "b");
    assert_eq!(to("/g", &[("content-type", "application/grpc")]).await, "a");
    assert_eq!(to("/g", &[("content-type", "text/plain")]).await, "b");
}

#[tokio::test]
async fn virtual_host_selection_by_authority() {
    let ups: Vec<_> =
        futures_util::future::join_all(["exact", "suffix", "prefix", "star"].map(upstream::http))
            .await;
    let vhosts = r#"            - name: exact
              domains: ["api.example.com", "api.example.com:8080"]
              routes: [ { match: { prefix: / }, route: { cluster: exact } } ]
            - name: suffix
              domains: ["*.example.com"]
              routes: [ { match: { prefix: / }, route: { cluster: suffix } } ]
            - name: prefix
              domains: ["internal.*"]
              routes: [ { match: { prefix: / }, route: { cluster: prefix } } ]
            - name: star
              domains: ["*"]
              routes: [ { match: { prefix: / }, route: { cluster: star } } ]
"#;
    let clusters: Vec<String> = ups
        .iter()
        .map(|u| static_cluster(&u.name, &[u.addr], ""))
        .collect();
    let tern = start_tern(&bootstrap(&[http_listener("l", vhosts, "")], &clusters)).await;
    let addr = tern.listener_addr("l").unwrap();
    let c = h1_client();
    for (host, want) in [
        ("api.example.com", "exact"),
        ("API.Example.com", "exact"),
        ("api.example.com:8080", "exact"),
        ("www.example.com", "suffix"),
        ("internal.corp", "prefix"),
        ("other.org", "star"),
    ] {
        assert_eq!(
            get(&c, addr, host, "/").await.headers["x-upstream"],
            want,
            "host {host}"
        );
    }
}

#[tokio::test]
async fn actions_redirect_direct_rewrites_and_cluster_header() {
    let a = upstream::http("a").await;
    let b = upstream::http("b").await;
    let routes = r#"              - match: { prefix: /redir }
                redirect: { host_redirect: new.example.com, response_code: FOUND }
              - match: { prefix: /https }
                redirect: { https_redirect: true }
              - match: { prefix: /direct }
                direct_response: { status: 418, body: { inline_string: "teapot\n" } }
              - match: { prefix: /old/ }
                route: { cluster: a, prefix_rewrite: /new/ }
              - match: { prefix: /re/ }
                route: { cluster: a, regex_rewrite: { pattern: { regex: "^/re/(\\d+)$" }, substitution: "/num/\\1" } }
              - match: { prefix: /host }
                route: { cluster: a, host_rewrite_literal: rewritten.example.com }
              - match: { prefix: /by-header }
                route: { cluster_header: x-cluster }
"#;
    let (_t, addr) = one_route_tern(
        routes,
        &[
            static_cluster("a", &[a.addr], ""),
            static_cluster("b", &[b.addr], ""),
        ],
    )
    .await;
    let c = h1_client();
    let r = get(&c, addr, "old.example.com", "/redir/x?y=1").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], "http://new.example.com/redir/x?y=1");
    let r = get(&c, addr, "h.example.com", "/https").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://h.example.com/https");
    let r = get(&c, addr, "h", "/direct").await;
    assert_eq!((r.status, r.body.as_str()), (418, "teapot\n"));
    let r = get(&c, addr, "h", "/old/path").await;
    assert!(r.body.contains("path /new/path"), "{}", r.body);
    assert_eq!(
        header_line(&r.body, "x-envoy-original-path"),
        Some("/old/path")
    );
    let r = get(&c, addr, "h", "/re/42").await;
    assert!(r.body.contains("path /num/42"), "{}", r.body);
    let r = get(&c, addr, "h", "/host").await;
    assert_eq!(header_line(&r.body, "host"), Some("rewritten.example.com"));
    let r = send(
        &c,
        support::req(addr, "/by-header")
            .header("x-cluster", "b")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.headers["x-upstream"], "b");
    let r = send(&c, support::req(addr, "/by-header").body(empty()).unwrap()).await;
    assert_eq!(r.status, 404, "no cluster header");
}

#[tokio::test]
async fn header_mutations_at_three_levels_with_variables() {
    let up = upstream::http("u").await;
    let vhosts = r#"            - name: all
              domains: ["*"]
              request_headers_to_add: [ { header: { key: x-level, value: vhost } } ]
              response_headers_to_add: [ { header: { key: x-resp-vh, value: "1" } } ]
              routes:
              - match: { prefix: / }
                route: { cluster: up }
                request_headers_to_add:
                - { header: { key: x-level, value: route } }
                - { header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" } }
                request_headers_to_remove: [ x-remove-me ]
                response_headers_to_add:
                - { header: { key: x-upstream-addr, value: "%UPSTREAM_REMOTE_ADDRESS%" }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
                response_headers_to_remove: [ x-upstream ]
"#;
    let listener = http_listener("l", vhosts, "").replace(
        "            virtual_hosts:",
        "            request_headers_to_add: [ { header: { key: x-level, value: global } } ]\n            virtual_hosts:",
    );
    let tern = start_tern(&bootstrap(
        &[listener],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let c = h1_client();
    let r = send(
        &c,
        support::req(addr, "/")
            .header("x-remove-me", "1")
            .body(empty())
            .unwrap(),
    )
    .await;
    let levels: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("x-level: "))
        .collect();
    assert_eq!(levels, ["route", "vhost", "global"]);
    assert_eq!(header_line(&r.body, "x-client"), Some("127.0.0.1"));
    assert!(header_line(&r.body, "x-remove-me").is_none());
    assert_eq!(r.headers["x-upstream-addr"], up.addr.to_string().as_str());
    assert_eq!(r.headers["x-resp-vh"], "1");
    assert!(!r.headers.contains_key("x-upstream"));
}

async fn spread(
    policy: &str,
    extra_route: &str,
    n: usize,
    headers: impl Fn(usize) -> Vec<(String, String)>,
) -> HashMap<String, usize> {
    let ups: Vec<_> = futures_util::future::join_all(["h0", "h1", "h2"].map(upstream::http)).await;
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let routes = format!(
        "              - match: {{ prefix: / }}\n                route: {{ cluster: c {extra_route} }}\n"
    );
    let (_t, addr) = one_route_tern(
        &routes,
        &[static_cluster(
            "c",
            &addrs,
            &format!("    lb_policy: {policy}"),
        )],
    )
    .await;
    let c = h1_client();
    let mut seen = HashMap::new();
    for i in 0..n {
        let mut r = support::req(addr, "/");
        for (k, v) in headers(i) {
            r = r.header(k, v);
        }
        let got = send(&c, r.body(empty()).unwrap()).await;
        *seen
            .entry(got.headers["x-upstream"].to_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn load_balancers_spread_and_stick() {
    let rr = spread("ROUND_ROBIN", "", 30, |_| vec![]).await;
    assert_eq!(
        rr.values()
            .copied()
            .collect::<Vec<_>>()
            .iter()
            .sum::<usize>(),
        30
    );
    assert!(rr.values().all(|&v| v == 10), "round robin {rr:?}");
    let random = spread("RANDOM", "", 90, |_| vec![]).await;
    assert!(
        random.len() == 3 && random.values().all(|&v| v >= 10),
        "random {random:?}"
    );
    let lr = spread("LEAST_REQUEST", "", 60, |_| vec![]).await;
    assert!(lr.len() == 3, "least request {lr:?}");
    let hash = ", hash_policy: [ { header: { header_name: x-user } } ]";
    for policy in ["RING_HASH", "MAGLEV"] {
        // The same key always lands on the same host; different keys spread.
        let same = spread(policy, hash, 20, |_| {
            vec![("x-user".into(), "alice".into())]
        })
        .await;
        assert_eq!(same.len(), 1, "{policy} {same:?}");
        let many = spread(policy, hash, 60, |i| {
            vec![("x-user".into(), format!("user-{i}"))]
        })
        .await;
        assert!(many.len() >= 2, "{policy} {many:?}");
    }
    let cookie = ", hash_policy: [ { cookie: { name: session } } ]";
    let same = spread("RING_HASH", cookie, 15, |_| {
        vec![("cookie".into(), "a=1; session=xyz".into())]
    })
    .await;
    assert_eq!(same.len(), 1, "cookie {same:?}");
    let src = ", hash_policy: [ { connection_properties: { source_ip: true } } ]";
    let same = spread("MAGLEV", src, 15, |_| vec![]).await;
    assert_eq!(same.len(), 1, "source ip {same:?}");
}

#[tokio::test]
async fn weighted_clusters_follow_weights() {
    let a = upstream::http("a").await;
    let b = upstream::http("b").await;
    let routes = "              - match: { prefix: / }\n                route: { weighted_clusters: { clusters: [ { name: a, weight: 80 }, { name: b, weight: 20 } ] } }\n";
    let (_t, addr) = one_route_tern(
        routes,
        &[
            static_cluster("a", &[a.addr], ""),
            static_cluster("b", &[b.addr], ""),
        ],
    )
    .await;
    let c = h1_client();
    for _ in 0..200 {
        get(&c, addr, "h", "/").await;
    }
    let (na, nb) = (a.requests(), b.requests());
    assert_eq!(na + nb, 200);
    assert!((130..=185).contains(&na), "a={na} b={nb}");
}

#[tokio::test]
async fn retries_on_5xx_and_connect_failure_and_not_without_policy() {
    let up = upstream::http("u").await;
    let dead = support::dead_addr();
    let routes = r#"              - match: { prefix: /retry/ }
                route: { cluster: up, retry_policy: { retry_on: 5xx, num_retries: 2 } }
              - match: { prefix: /codes/ }
                route: { cluster: up, retry_policy: { retry_on: retriable-status-codes, retriable_status_codes: [503], num_retries: 1 } }
              - match: { prefix: /connect }
                route: { cluster: mixed, retry_policy: { retry_on: connect-failure, num_retries: 3, retry_host_predicate: [ { name: envoy.retry_host_predicates.previous_hosts, typed_config: { "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate } } ] } }
              - match: { prefix: / }
                route: { cluster: up }
"#;
    let tern = start_tern(&bootstrap(
        &[http_listener("l", &vh(routes), "")],
        &[
            static_cluster("up", &[up.addr], ""),
            static_cluster("mixed", &[dead, up.addr], ""),
        ],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let c = h1_client();
    let r = get(&c, addr, "h", "/retry/fail-once/k1").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok after failure\n"));
    let r = get(&c, addr, "h", "/codes/fail-once/k2").await;
    assert_eq!(r.status, 200);
    let r = get(&c, addr, "h", "/fail-once/k3").await;
    assert_eq!(
        r.status, 503,
        "no retry policy: the upstream's 503 passes through"
    );
    for _ in 0..6 {
        let r = get(&c, addr, "h", "/connect").await;
        assert_eq!(r.status, 200);
    }
    let up_stats = tern.world.cluster("up").unwrap().stats.clone();
    assert_eq!(up_stats.upstream_rq_retry().value(), 2);
    assert!(
        tern.world
            .cluster("mixed")
            .unwrap()
            .stats
            .upstream_cx_connect_fail()
            .value()
            >= 1
    );
}

#[tokio::test]
async fn timeouts_give_504_and_per_try_timeout_retries() {
    let up = upstream::http("u").await;
    let routes = r#"              - match: { prefix: /slow }
                route: { cluster: up, timeout: 0.2s }
              - match: { prefix: /per-try }
                route: { cluster: up, timeout: 5s, retry_policy: { retry_on: 5xx, num_retries: 1, per_try_timeout: 0.2s } }
"#;
    let (t, addr) = one_route_tern(routes, &[static_cluster("up", &[up.addr], "")]).await;
    let c = h1_client();
    let r = get(&c, addr, "h", "/slow/delay/2000").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (504, "upstream request timeout")
    );
    let r = get(&c, addr, "h", "/per-try/delay/1000").await;
    assert_eq!(r.status, 504);
    let stats = t.world.cluster("up").unwrap().stats.clone();
    assert_eq!(stats.upstream_rq_retry().value(), 1);
    // One global timeout (/slow); the per-try timeouts are counted apart, as Envoy does.
    assert_eq!(stats.upstream_rq_timeout().value(), 1);
    assert_eq!(stats.upstream_rq_per_try_timeout().value(), 2);
}

#[tokio::test]
async fn local_replies_match_envoy() {
    let dead = support::dead_addr();
    let routes = r#"              - match: { prefix: /nocluster }
                route: { cluster: does-not-exist }
              - match: { prefix: /dead }
                route: { cluster: dead }
              - match: { prefix: /empty }
                route: { cluster: empty }
"#;
    let empty_cluster =
        "\n  - name: empty\n    type: STATIC\n    connect_timeout: 1s\n".to_string();
    let (_t, addr) = one_route_tern(
        routes,
        &[static_cluster("dead", &[dead], ""), empty_cluster],
    )
    .await;
    let c = h1_client();
    let r = get(&c, addr, "h", "/nothing-here").await;
    assert_eq!((r.status, r.body.as_str()), (404, ""));
    let r = get(&c, addr, "h", "/nocluster").await;
    assert_eq!(r.status, 503);
    let r = get(&c, addr, "h", "/empty").await;
    assert_eq!((r.status, r.body.as_str()), (503, "no healthy upstream"));
    let r = get(&c, addr, "h", "/dead").await;
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"), "{}", r.body);
    // gRPC requests get a gRPC-shaped local reply.
    let r = send(
        &c,
        support::req(addr, "/empty")
            .header("content-type", "application/grpc")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["grpc-status"], "14");
    // Missing Host on HTTP/1.1, and oversized headers.
    let raw = support::raw(addr, b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    let big = format!(
        "GET / HTTP/1.1\r\nhost: h\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let raw = support::raw(addr, big.as_bytes()).await;
    assert!(
        raw.starts_with("HTTP/1.1 431") || raw.starts_with("HTTP/1.1 413") || raw.is_empty(),
        "{raw}"
    );
}

#[tokio::test]
async fn protocol_conversion_both_ways_and_trailers() {
    let up = upstream::http("u").await;
    let h2_cluster = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: {} }";
    let routes = "              - match: { prefix: /h2/ }\n                route: { cluster: h2, prefix_rewrite: / }\n              - match: { prefix: / }\n                route: { cluster: h1 }\n";
    let (_t, addr) = one_route_tern(
        routes,
        &[
            static_cluster("h1", &[up.addr], ""),
            static_cluster("h2", &[up.addr], h2_cluster),
        ],
    )
    .await;
    // HTTP/1.1 client -> HTTP/2 upstream.
    let r = get(&h1_client(), addr, "h", "/h2/x").await;
    assert!(r.body.contains("version HTTP/2.0"), "{}", r.body);
    assert!(r.body.contains(":authority: h"), "{}", r.body);
    // HTTP/2 client -> HTTP/1.1 upstream: :authority becomes Host.
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = within(
        10,
        h2.send_request(http::Request::get("http://h/x").body(empty()).unwrap()),
    )
    .await
    .unwrap();
    let body = String::from_utf8_lossy(
        &within(10, resp.into_body().collect())
            .await
            .unwrap()
            .to_bytes(),
    )
    .into_owned();
    assert!(body.contains("version HTTP/1.1"), "{body}");
    assert_eq!(header_line(&body, "host"), Some("h"));
    // Trailers pass end to end over HTTP/2.
    let resp = within(
        10,
        h2_client().request(support::req(addr, "/h2/trailers").body(empty()).unwrap()),
    )
    .await
    .unwrap();
    let collected = within(10, resp.into_body().collect()).await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-trailer"], "yes");
}

#[tokio::test]
async fn hundred_h2_streams_on_one_connection_spread_over_two_hosts() {
    let a = upstream::http("a").await;
    let b = upstream::http("b").await;
    let (_t, addr) = one_route_tern(
        "              - match: { prefix: / }\n                route: { cluster: c }\n",
        &[static_cluster("c", &[a.addr, b.addr], "")],
    )
    .await;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let futs = (0..100).map(|i| {
        let mut sender = sender.clone();
        async move {
            let req = http::Request::get(format!("http://h/delay/{}", 20 + i % 5))
                .body(empty())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let up = resp.headers()["x-upstream"].to_str().unwrap().to_owned();
            resp.into_body().collect().await.unwrap();
            up
        }
    });
    let got = within(20, futures_util::future::join_all(futs)).await;
    let on_a = got.iter().filter(|u| *u == "a").count();
    assert_eq!(got.len(), 100);
    assert_eq!(on_a, 50, "round robin per stream");
    assert_eq!(a.requests() + b.requests(), 100);
}

/// A burst of streams to an HTTP/2 cluster with no connection yet shares the one connection
/// the first stream makes; when that connection fails, the streams that waited for it fail
/// with it instead of each trying in turn.
#[tokio::test]
async fn a_burst_of_streams_opens_one_upstream_h2_connection() {
    let up = upstream::http("u").await;
    let dead = support::dead_addr();
    let h2 = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: {} }";
    let (tern, addr) = one_route_tern(
        "              - match: { prefix: /dead/ }\n                route: { cluster: dead }\n              - match: { prefix: / }\n                route: { cluster: h2 }\n",
        &[
            static_cluster("h2", &[up.addr], h2),
            static_cluster("dead", &[dead], h2),
        ],
    )
    .await;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let burst = |path: &'static str| {
        futures_util::future::join_all((0..50).map(|_| {
            let mut sender = sender.clone();
            async move {
                let req = http::Request::get(format!("http://h{path}"))
                    .body(empty())
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                let status = resp.status();
                resp.into_body().collect().await.unwrap();
                status
            }
        }))
    };
    let got = within(20, burst("/x")).await;
    assert!(got.iter().all(|s| *s == 200), "{got:?}");
    let stats = &tern.world.stats;
    assert_eq!(
        stats.counter_value("cluster.h2.upstream_cx_http2_total"),
        Some(1)
    );
    assert_eq!(
        stats.counter_value("cluster.h2.upstream_rq_total"),
        Some(50)
    );
    let got = within(20, burst("/dead/x")).await;
    assert!(got.iter().all(|s| *s == 503), "{got:?}");
    assert_eq!(
        stats.counter_value("cluster.dead.upstream_cx_connect_fail"),
        Some(1)
    );
}

/// An HTTP/2 upstream may answer before it has read the request body and then reset the
/// stream with NO_ERROR (RFC 9113 §8.1); the answer is complete and must reach the client.
#[tokio::test]
async fn h2_upstream_answering_before_the_body_is_read() {
    let up = upstream::http("u").await;
    let h2 = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: {} }";
    let (_tern, addr) = one_route_tern(
        "              - match: { prefix: / }\n                route: { cluster: h2 }\n",
        &[static_cluster("h2", &[up.addr], h2)],
    )
    .await;
    let body = bytes::Bytes::from(vec![b'x'; 256 * 1024]);
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..20 {
        // HTTP/1.1 and HTTP/2 downstream in turn.
        let client = if round % 2 == 0 {
            h1_client()
        } else {
            h2_client()
        };
        let futs = (0..16).map(|i| {
            let client = client.clone();
            let body = body.clone();
            async move {
                let req = support::req(addr, &format!("/status/200?r={round}&i={i}"))
                    .method("POST")
                    .body(http_body_util::Full::new(body))
                    .unwrap();
                match client.request(req).await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.into_body().collect().await;
                        s
                    }
                    Err(_) => 0,
                }
            }
        });
        for s in within(30, futures_util::future::join_all(futs)).await {
            *statuses.entry(s).or_insert(0) += 1;
        }
    }
    assert_eq!(statuses.get(&200), Some(&320), "{statuses:?}");
    assert_eq!(up.requests(), 320);
}

#[tokio::test]
async fn curl_http2_prior_knowledge() {
    if !support::have("curl") {
        assert!(
            std::env::var("CI").is_err(),
            "curl is required in CI (.ci/run installs it)"
        );
        return;
    }
    let up = upstream::http("u").await;
    let (_t, addr) = one_route_tern(
        "              - match: { prefix: /direct }\n                direct_response: { status: 200, body: { inline_string: twelve bytes } }\n              - match: { prefix: /none }\n                route: { cluster: nobody }\n              - match: { prefix: / }\n                route: { cluster: up }\n",
        &[
            static_cluster("up", &[up.addr], ""),
            static_cluster("nobody", &[], ""),
        ],
    )
    .await;
    let curl = |args: &[&str], path: &str| {
        let mut c = tokio::process::Command::new("curl");
        c.args(["-sS", "-i", "--http2-prior-knowledge"])
            .args(args)
            .arg(format!("http://{addr}{path}"));
        async move { c.output().await.unwrap() }
    };
    let out = curl(&[], "/curl").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("x-upstream: u"), "{text}");

    // HEAD answered by tern itself (a direct response, a local reply): the headers, with the
    // length the body would have, end the stream; no body, no reset.
    let out = curl(&["-I"], "/direct").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?} {text}", out.status);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("content-length: 12"), "{text}");
    let out = curl(&["-I"], "/none").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?} {text}", out.status);
    assert!(text.starts_with("HTTP/2 503"), "{text}");
    assert!(text.contains("content-length: 19"), "{text}");
}

#[tokio::test]
async fn websocket_upgrade_echo_and_refused_when_not_enabled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream::http("u").await;
    let routes = "              - match: { prefix: / }\n                route: { cluster: up }\n";
    let ws = "          upgrade_configs: [ { upgrade_type: websocket } ]";
    let tern = start_tern(&bootstrap(
        &[
            http_listener("ws", &vh(routes), ws),
            http_listener("plain", &vh(routes), ""),
        ],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let handshake = b"GET /ws HTTP/1.1\r\nhost: h\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(tern.listener_addr("ws").unwrap())
        .await
        .unwrap();
    s.write_all(handshake).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = within(5, s.read(&mut buf)).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut echo = vec![0u8; 23];
    within(5, s.read_exact(&mut echo)).await.unwrap();
    assert_eq!(&echo, b"ping through the tunnel");

    let raw = support::raw_head(tern.listener_addr("plain").unwrap(), handshake).await;
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
}

#[tokio::test]
async fn hcm_options_xff_request_id_server_name_ports_and_paths() {
    let up = upstream::http("u").await;
    let routes = "              - match: { prefix: / }\n                route: { cluster: up }\n";
    let extra = "          use_remote_address: true\n          server_name: tern-test\n          strip_any_host_port: true\n          normalize_path: true\n          merge_slashes: true\n          always_set_request_id_in_response: true";
    let tern = start_tern(&bootstrap(
        &[http_listener("l", &vh(routes), extra)],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let c = h1_client();
    let r = send(
        &c,
        support::req(addr, "/a//b/../c")
            .header("host", "h:1234")
            .header("x-request-id", "keep-me")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.headers["server"], "tern-test");
    assert!(r.body.contains("path /a/c"), "{}", r.body);
    assert_eq!(header_line(&r.body, "host"), Some("h"));
    // No internal_address_config: a loopback client is external (Envoy 1.40). Its id is
    // replaced, x-envoy-external-address names it, and XFF gets the host's own address in
    // place of the loopback peer.
    assert_eq!(
        header_line(&r.body, "x-envoy-external-address"),
        Some("127.0.0.1")
    );
    assert!(header_line(&r.body, "x-envoy-internal").is_none());
    let xff = header_line(&r.body, "x-forwarded-for").unwrap();
    assert!(
        xff.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_ipv4() || ip.is_ipv6()),
        "{xff}"
    );
    assert_ne!(header_line(&r.body, "x-request-id"), Some("keep-me"));

    // With internal_address_config covering loopback, the request is internal: the id is
    // kept and echoed, and client x-envoy headers survive.
    let internal = format!(
        "{extra}\n          internal_address_config: {{ cidr_ranges: [ {{ address_prefix: 127.0.0.0, prefix_len: 8 }} ] }}"
    );
    let tern = start_tern(&bootstrap(
        &[http_listener("i", &vh(routes), &internal)],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("i").unwrap();
    let r = send(
        &c,
        support::req(addr, "/")
            .header("x-request-id", "keep-me")
            .header("x-envoy-decorator-operation", "op")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(header_line(&r.body, "x-envoy-internal"), Some("true"));
    assert_eq!(header_line(&r.body, "x-request-id"), Some("keep-me"));
    assert_eq!(r.headers["x-request-id"], "keep-me");
    assert_eq!(
        header_line(&r.body, "x-envoy-decorator-operation"),
        Some("op")
    );
}

#[tokio::test]
async fn strict_and_logical_dns_clusters_resolve_localhost() {
    let up = upstream::http("u").await;
    for kind in ["STRICT_DNS", "LOGICAL_DNS"] {
        let routes = "              - match: { prefix: / }\n                route: { cluster: dns, auto_host_rewrite: true }\n";
        let cluster = format!(
            "\n  - name: dns\n    type: {kind}\n    dns_lookup_family: V4_ONLY\n    dns_refresh_rate: 0.2s\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: dns\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: {} }} }} }}\n",
            up.addr.port()
        );
        let (t, addr) = one_route_tern(routes, &[cluster]).await;
        let cluster = t.world.cluster("dns").unwrap();
        assert!(
            support::eventually(5, || !cluster.priority_set().is_empty()).await,
            "{kind}"
        );
        assert_eq!(
            cluster.priority_set().len(),
            1,
            "{kind}: localhost resolves to 127.0.0.1 only (V4_ONLY)"
        );
        let r = get(&h1_client(), addr, "h", "/").await;
        assert_eq!(r.status, 200, "{kind}");
        assert_eq!(header_line(&r.body, "host"), Some("localhost"), "{kind}");
    }
}

#[tokio::test]
async fn unix_socket_listener_and_upstream() {
    let up = upstream::http("u").await;
    let dir = std::env::temp_dir().join(format!("tern-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("front.sock");
    let listener = http_listener(
        "uds",
        &vh("              - match: { prefix: / }\n                route: { cluster: up }\n"),
        "",
    )
    .replace(
        "address: { socket_address: { address: 127.0.0.1, port_value: 0 } }",
        &format!("address: {{ pipe: {{ path: {} }} }}", sock.display()),
    );
    let _t = start_tern(&bootstrap(
        &[listener],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = within(
        5,
        sender.send_request(
            http::Request::get("/over-uds")
                .header("host", "h")
                .body(empty())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["x-upstream"], "u");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn grpc_unary_and_streaming_with_trailers_through_tern() {
    use envoy_types::pb::envoy::service::auth::v3::{
        CheckRequest, CheckResponse,
        authorization_client::AuthorizationClient,
        authorization_server::{Authorization, AuthorizationServer},
    };
    use envoy_types::pb::envoy::service::discovery::v3::{
        DiscoveryRequest, DiscoveryResponse,
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        aggregated_discovery_service_server::{
            AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
        },
    };
    use tokio_stream::StreamExt;

    struct Svc;
    #[tonic::async_trait]
    impl Authorization for Svc {
        async fn check(
            &self,
            _r: tonic::Request<CheckRequest>,
        ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
            Err(tonic::Status::permission_denied(
                "checked by the test server",
            ))
        }
    }
    type Stream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<DiscoveryResponse, tonic::Status>> + Send>,
    >;
    #[tonic::async_trait]
    impl AggregatedDiscoveryService for Svc {
        type StreamAggregatedResourcesStream = Stream;
        type DeltaAggregatedResourcesStream = std::pin::Pin<
            Box<
                dyn tokio_stream::Stream<
                        Item = Result<
                            envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse,
                            tonic::Status,
                        >,
                    > + Send,
            >,
        >;
        async fn stream_aggregated_resources(
            &self,
            r: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
        ) -> Result<tonic::Response<Stream>, tonic::Status> {
            Ok(tonic::Response::new(echo_stream(r.into_inner())))
        }
        async fn delta_aggregated_resources(
            &self,
            _r: tonic::Request<
                tonic::Streaming<
                    envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest,
                >,
            >,
        ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
            Err(tonic::Status::unimplemented("delta"))
        }
    }
    /// Echo each request's version_info back as a response, then end with OK trailers.
    fn echo_stream(mut inbound: tonic::Streaming<DiscoveryRequest>) -> Stream {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                let _ = tx
                    .send(Ok(DiscoveryResponse {
                        version_info: format!("echo {}", req.version_info),
                        ..Default::default()
                    }))
                    .await;
            }
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AuthorizationServer::new(Svc))
            .add_service(AggregatedDiscoveryServiceServer::new(Svc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let h2 = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: {} }";
    let routes = "              - match: { prefix: /, grpc: {} }\n                route: { cluster: grpc, timeout: 0s }\n";
    let (_t, addr) = one_route_tern(routes, &[static_cluster("grpc", &[grpc_addr], h2)]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Unary: the server's status travels back in trailers.
    let err = within(
        10,
        AuthorizationClient::new(channel.clone()).check(CheckRequest::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(err.message(), "checked by the test server");

    // Bidirectional streaming.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut responses = within(
        10,
        client.stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .unwrap()
    .into_inner();
    for i in 0..5 {
        tx.send(DiscoveryRequest {
            version_info: format!("v{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
        let got = within(10, responses.next()).await.unwrap().unwrap();
        assert_eq!(got.version_info, format!("echo v{i}"));
    }
    drop(tx);
    assert!(
        within(10, responses.next()).await.is_none(),
        "stream ends with OK trailers"
    );
}

#[tokio::test]
async fn rejects_invalid_config_with_the_field_path() {
    let bad = bootstrap(
        &[http_listener(
            "l",
            &vh(
                "              - match: { safe_regex: { regex: \"(\" } }\n                route: { cluster: c }\n",
            ),
            "",
        )],
        &[],
    );
    let err = tern::server::Server::start(tern::server::Options {
        config_yaml: Some(bad),
        ..Default::default()
    })
    .await
    .err()
    .expect("fails");
    let text = err.to_string();
    assert!(
        text.contains("listener l") && text.contains("routes[0]") && text.contains("regex"),
        "{text}"
    );
}

#[tokio::test]
async fn stream_idle_timeout_internal_only_headers_and_weighted_entry_headers() {
    let up = upstream::http("u").await;
    let routes = r#"              - match: { prefix: /idle }
                route: { cluster: up, timeout: 0s, idle_timeout: 0.2s }
              - match: { prefix: /w }
                route:
                  weighted_clusters:
                    clusters:
                    - { name: up, weight: 1, request_headers_to_add: [ { header: { key: x-entry, value: chosen } } ], response_headers_to_add: [ { header: { key: x-entry-resp, value: "1" } } ] }
              - match: { prefix: / }
                route: { cluster: up }
"#;
    let listener = http_listener("l", &vh(routes), "          use_remote_address: false").replace(
        "            virtual_hosts:",
        "            internal_only_headers: [ x-secret ]\n            virtual_hosts:",
    );
    let tern = start_tern(&bootstrap(
        &[listener],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let addr = tern.listener_addr("l").unwrap();
    let c = h1_client();
    let r = get(&c, addr, "h", "/idle/delay/2000").await;
    assert_eq!((r.status, r.body.as_str()), (408, "stream timeout"));
    let r = get(&c, addr, "h", "/w").await;
    assert_eq!(header_line(&r.body, "x-entry"), Some("chosen"));
    assert_eq!(r.headers["x-entry-resp"], "1");
    // Not marked internal (no x-envoy-internal): internal-only headers are removed.
    let r = send(
        &c,
        support::req(addr, "/")
            .header("x-secret", "s")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert!(header_line(&r.body, "x-secret").is_none(), "{}", r.body);
}

#[tokio::test]
async fn connect_is_terminated_and_tunnels_to_the_cluster() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (echo, _t) = upstream::tcp_echo().await;
    let routes = "              - match: { connect_matcher: {} }\n                route: { cluster: echo, upgrade_configs: [ { upgrade_type: CONNECT, connect_config: {} } ] }\n";
    let tern = start_tern(&bootstrap(
        &[http_listener(
            "l",
            &vh(routes),
            "          upgrade_configs: [ { upgrade_type: CONNECT } ]",
        )],
        &[static_cluster("echo", &[echo], "")],
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(tern.listener_addr("l").unwrap())
        .await
        .unwrap();
    s.write_all(b"CONNECT backend.example:443 HTTP/1.1\r\nhost: backend.example:443\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = within(5, s.read(&mut buf)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"raw bytes").await.unwrap();
    let mut echo_back = vec![0u8; 9];
    within(5, s.read_exact(&mut echo_back)).await.unwrap();
    assert_eq!(&echo_back, b"raw bytes");
}

#[tokio::test]
async fn http10_refused_by_default_and_accepted_with_default_host() {
    let up = upstream::http("u").await;
    let routes = "              - match: { prefix: / }\n                route: { cluster: up }\n";
    let opts = "          http_protocol_options: { accept_http_10: true, default_host_for_http_10: legacy.example }";
    let tern = start_tern(&bootstrap(
        &[
            http_listener("strict", &vh(routes), ""),
            http_listener("legacy", &vh(routes), opts),
        ],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let raw = support::raw(
        tern.listener_addr("strict").unwrap(),
        b"GET / HTTP/1.0\r\n\r\n",
    )
    .await;
    assert!(
        raw.contains(" 426 ") && raw.ends_with("Upgrade Required"),
        "{raw}"
    );
    let raw = support::raw(
        tern.listener_addr("legacy").unwrap(),
        b"GET / HTTP/1.0\r\n\r\n",
    )
    .await;
    assert!(
        raw.contains(" 200 ") && raw.contains("host: legacy.example"),
        "{raw}"
    );
}

/// Rapid reset (CVE-2023-44487): streams opened and reset in a loop. tern closes the connection
/// once most of its streams are reset prematurely, so the work stays bounded; other clients
/// are still served.
#[tokio::test]
async fn h2_rapid_reset_closes_the_connection() {
    let up = upstream::http("u").await;
    let (t, addr) = one_route_tern(
        "              - match: { prefix: / }\n                route: { cluster: up }\n",
        &[static_cluster("up", &[up.addr], "")],
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = within(5, h2::client::handshake(tcp)).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut sent = 0;
    for _ in 0..5000 {
        let Ok(c) = within(5, client.ready()).await else {
            break;
        };
        client = c;
        let req = http::Request::get("http://h/delay/2000").body(()).unwrap();
        let Ok((_resp, mut stream)) = client.send_request(req, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    // The connection ends: GOAWAY, then close, even though the client keeps it open.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "tern kept the abusive connection open after {sent} reset streams"
    );
    // Streams reset before tern accepted them are cut off by the codec's own bound
    // (max_pending_accept_reset_streams); either way the upstream saw a bounded number.
    assert!(
        up.requests() < 1000,
        "upstream saw {} requests",
        up.requests()
    );

    // Streams that tern accepted (and forwarded) before the client reset them: after half of
    // Envoy's 500-stream window is reset prematurely, the connection is closed.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = within(5, h2::client::handshake(tcp)).await.unwrap();
    let conn = tokio::spawn(conn);
    let total = t.world.stats.counter("http.l.downstream_rq_total");
    let mut sent = 0u64;
    'batches: for _ in 0..20 {
        let before = total.value();
        let mut streams = Vec::new();
        for _ in 0..50 {
            let Ok(c) = within(5, client.clone().ready()).await else {
                break 'batches;
            };
            client = c;
            let req = http::Request::get("http://h/delay/2000").body(()).unwrap();
            let Ok((_resp, stream)) = client.send_request(req, false) else {
                break 'batches;
            };
            streams.push(stream);
        }
        // Wait (with a deadline) until tern has accepted this batch, then reset it.
        if !support::eventually(5, || total.value() >= before + streams.len() as u64).await {
            break;
        }
        for mut st in streams {
            st.send_reset(h2::Reason::CANCEL);
            sent += 1;
        }
    }
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "connection still open after {sent} premature resets"
    );
    assert!(sent <= 300, "closed only after {sent} premature resets");
    let stats = &t.world.stats;
    assert_eq!(
        stats.counter_value("http.l.downstream_rq_too_many_premature_resets"),
        Some(1)
    );
    // Everyone else is still served.
    let r = get(&h1_client(), addr, "h", "/after").await;
    assert_eq!(r.status, 200);
}

/// CONTINUATION flood: a header block that never ends. The header list limit
/// (`max_request_headers_kb`) stops it: tern closes the connection instead of buffering.
#[tokio::test]
async fn h2_continuation_flood_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_t, addr) = one_route_tern(
        "              - match: { prefix: / }\n                direct_response: { status: 200 }\n",
        &[],
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    // ":method GET" (indexed 2), ":path /" (4), ":scheme http" (6), then literal headers
    // "abc: xyz" without indexing, over and over.
    let mut first = vec![0x82, 0x84, 0x86];
    let lit = [0x00u8, 0x03, b'a', b'b', b'c', 0x03, b'x', b'y', b'z'];
    let mut block = Vec::new();
    while block.len() + lit.len() <= 16_000 {
        block.extend_from_slice(&lit);
    }
    first.extend_from_slice(&block[..9 * 100]);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(frame(0x1, 0x1, 1, &first)); // HEADERS, END_STREAM, no END_HEADERS
    s.write_all(&out).await.unwrap();
    let cont = frame(0x9, 0, 1, &block); // CONTINUATION without END_HEADERS
    let (mut rd, mut wr) = s.into_split();
    // The reader sees the connection end (EOF or reset) once tern gives up on the stream.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let mut written = 0usize;
    let closed = within(20, async {
        loop {
            if reader.is_finished() {
                return true;
            }
            if wr.write_all(&cont).await.is_err() {
                return true;
            }
            written += cont.len();
            if written > 64 * 1024 * 1024 {
                return false;
            }
        }
    })
    .await;
    assert!(closed, "tern accepted {written} bytes of one header block");
    assert!(
        written < 8 * 1024 * 1024,
        "cut off only after {written} bytes"
    );
}

#[tokio::test]
async fn request_timeout_answers_408_when_the_body_is_late() {
    let up = upstream::http("u").await;
    let routes = "              - match: { prefix: / }\n                route: { cluster: up }\n";
    let tern = start_tern(&bootstrap(
        &[http_listener(
            "l",
            &vh(routes),
            "          request_timeout: 0.3s",
        )],
        &[static_cluster("up", &[up.addr], "")],
    ))
    .await;
    let head = support::raw_head(
        tern.listener_addr("l").unwrap(),
        b"POST /echo HTTP/1.1\r\nhost: h\r\ncontent-length: 10\r\n\r\nabc",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert_eq!(
        tern.world
            .stats
            .counter_value("http.l.downstream_rq_timeout"),
        Some(1)
    );
    // A complete body in time goes through.
    let r = send(
        &h1_client(),
        http::Request::post(format!("http://{}/echo", tern.listener_addr("l").unwrap()))
            .body(Full::new(Bytes::from_static(b"0123456789")))
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "0123456789"));
}

#[tokio::test]
async fn large_bodies_stream_both_ways_on_pooled_connections() {
    let up = upstream::http("u").await;
    let (_t, addr) = one_route_tern(
        "              - match: { prefix: / }\n                route: { cluster: up }\n",
        &[static_cluster("up", &[up.addr], "")],
    )
    .await;
    let c = h1_client();
    let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..3 {
        let req = http::Request::post(format!("http://{addr}/echo"))
            .body(Full::new(Bytes::from(big.clone())))
            .unwrap();
        let resp = within(20, c.request(req)).await.unwrap();
        assert_eq!(resp.status(), 200);
        let got = within(20, resp.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(got.len(), big.len());
        assert!(got[..] == big[..]);
    }
    // Keep-alive: the three requests and the echoes reused one upstream connection.
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn stream_idle_timeout_covers_stalled_bodies_both_ways() {
    let up = upstream::http("u").await;
    let routes = "              - match: { prefix: / }\n                route: { cluster: up, timeout: 0s, idle_timeout: 0.3s }\n";
    let (t, addr) = one_route_tern(routes, &[static_cluster("up", &[up.addr], "")]).await;
    // The upstream stalls after the first chunk: the response is reset, the client is not
    // left hanging.
    let resp = within(
        5,
        h1_client().request(support::req(addr, "/stall").body(empty()).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body = within(5, resp.into_body().collect()).await;
    assert!(body.is_err(), "a stalled body ends in an error");
    // The client stalls while sending its body: 408 "stream timeout".
    let head = support::raw_head(
        addr,
        b"POST /echo HTTP/1.1\r\nhost: h\r\ncontent-length: 10\r\n\r\nabc",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        t.world
            .stats
            .counter_value("http.l.downstream_rq_idle_timeout")
            .unwrap_or(0)
            >= 1
    );
}
