//! The same bootstrap through Envoy 1.40 and through tern: what a client sees must be the same.
//!
//! Each test starts the scripted upstream(s), renders one bootstrap template twice (only the
//! listener and admin ports differ), runs Envoy and the `tern` binary as child processes, sends
//! the same requests to both and compares status, body and a chosen set of headers.
//!
//! Allowed differences, compared for presence only: `date` (wall clock),
//! `x-envoy-upstream-service-time` (a duration), `x-request-id` (random). The upstream's echo of
//! the request has its header lines sorted (header order is not compared).
//!
//! Without Envoy the tests print a notice and pass, except under `CI` (see
//! `support/envoy.rs`). Locally: `ENVOY_BIN=/path/to/envoy cargo test --test compat`.

#[path = "compat/config_dump.rs"]
mod config_dump;
#[path = "support/envoy.rs"]
mod envoy_support;
mod support;

#[path = "compat/compressor.rs"]
mod compressor;

use bytes::Bytes;
use envoy_support::{Pair, Seen, echo_view, listener, raw_view, start_pair};
use http_body_util::Full;
use std::fmt::Debug;
use std::net::SocketAddr;
use support::{Client, Got, h1_client, h2_client, send, static_cluster, upstream};

/// Differences found so far; the test fails at the end listing all of them.
#[derive(Default)]
struct Diffs(Vec<String>);

impl Diffs {
    fn check<T: PartialEq + Debug>(&mut self, what: &str, envoy: T, tern: T) {
        if envoy != tern {
            self.0
                .push(format!("{what}:\n  envoy: {envoy:?}\n  tern:  {tern:?}"));
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "tern differs from Envoy in {} case(s):\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

type Req = http::Request<Full<Bytes>>;

fn get(addr: SocketAddr, host: &str, path: &str) -> http::request::Builder {
    http::Request::get(format!("http://{addr}{path}")).header("host", host)
}

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

/// Send the request `mk` builds to Envoy, then to tern.
async fn both(pair: &Pair, client: &Client, mk: impl Fn(SocketAddr) -> Req) -> (Got, Got) {
    let e = send(client, mk(pair.envoy)).await;
    let t = send(client, mk(pair.tern)).await;
    (e, t)
}

/// Headers compared by value on local replies.
const REPLY_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "server",
    "location",
    "grpc-status",
    "grpc-message",
    "x-envoy-attempt-count",
    "connection",
];
/// Headers compared by presence only (their values differ by nature).
const PRESENT: &[&str] = &["date", "x-envoy-upstream-service-time", "x-request-id"];

fn seen(g: &Got) -> Seen {
    Seen::from(g, REPLY_HEADERS, PRESENT)
}

/// One virtual host `*` with these routes (YAML list items, indented by 14).
fn star_vh(routes: &str) -> String {
    format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n{routes}"
    )
}

fn dead_addr() -> SocketAddr {
    support::dead_addr()
}

/// A STATIC cluster without endpoints.
fn empty_cluster(name: &str) -> String {
    format!(
        "\n  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment: {{ cluster_name: {name} }}\n"
    )
}

#[tokio::test]
async fn local_replies() {
    let up = upstream::http("up").await;
    let routes = r#"              - match: { prefix: /direct-503 }
                direct_response: { status: 503, body: { inline_string: "closed for lunch" } }
              - match: { prefix: /direct-204 }
                direct_response: { status: 204 }
              - match: { prefix: /direct }
                direct_response: { status: 200, body: { inline_string: "direct answer\n" } }
              - match: { prefix: /redirect }
                redirect: { host_redirect: new.example.com, path_redirect: /moved }
              - match: { prefix: /unknown }
                route: { cluster: no-such-cluster }
              - match: { prefix: /empty }
                route: { cluster: empty }
              - match: { prefix: /dead }
                route: { cluster: dead }
              - match: { prefix: /delay/ }
                route: { cluster: up, timeout: 0.3s }
"#;
    let template = envoy_support::bootstrap(
        &[listener(&star_vh(routes), "", "")],
        &[
            static_cluster("up", &[up.addr], ""),
            static_cluster("dead", &[dead_addr()], ""),
            empty_cluster("empty"),
        ],
    );
    let Some(pair) = start_pair("local_replies", &template).await else {
        return;
    };
    let h1 = h1_client();
    let h2 = h2_client();
    let mut d = Diffs::default();

    for path in [
        "/nothing",
        "/unknown",
        "/empty",
        "/dead",
        "/delay/2000",
        "/direct",
        "/direct-503",
        "/direct-204",
        "/redirect/x?q=1",
    ] {
        let (e, t) = both(&pair, &h1, |a| {
            get(a, "example.com", path).body(empty()).unwrap()
        })
        .await;
        d.check(&format!("GET {path}"), seen(&e), seen(&t));
    }

    // gRPC requests (HTTP/2, application/grpc) get trailers-only replies.
    for path in [
        "/nothing",
        "/unknown",
        "/empty",
        "/dead",
        "/delay/2000",
        "/direct",
        "/direct-503",
        "/direct-204",
        "/redirect/x",
    ] {
        let (e, t) = both(&pair, &h2, |a| {
            http::Request::post(format!("http://{a}{path}"))
                .header("host", "example.com")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(empty())
                .unwrap()
        })
        .await;
        d.check(&format!("gRPC POST {path}"), seen(&e), seen(&t));
    }

    // Exact bytes: no Host on HTTP/1.1, HEAD of a direct response, headers too large.
    let big = "a".repeat(70 * 1024);
    let raws: Vec<(&str, String)> = vec![
        (
            "HTTP/1.1 without Host",
            "GET /direct HTTP/1.1\r\nconnection: close\r\n\r\n".to_owned(),
        ),
        (
            "HEAD of a direct response",
            "HEAD /direct HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n".to_owned(),
        ),
        (
            "request headers over 60 KiB",
            format!(
                "GET /direct HTTP/1.1\r\nhost: example.com\r\nx-big: {big}\r\nconnection: close\r\n\r\n"
            ),
        ),
    ];
    for (what, bytes) in raws {
        let e = support::raw(pair.envoy, bytes.as_bytes()).await;
        let t = support::raw(pair.tern, bytes.as_bytes()).await;
        d.check(what, raw_view(&e), raw_view(&t));
    }
    d.finish();
}

/// Response headers compared when an upstream answered.
const UPSTREAM_RESPONSE_HEADERS: &[&str] = &[
    "server",
    "x-upstream",
    "content-length",
    "content-type",
    "x-envoy-attempt-count",
    "x-request-id",
];

/// Status, chosen response headers, and the upstream's echo of the request it got. The
/// proxy's own address (an HTTP/2 client's `:authority`, which becomes `host`) is masked.
fn seen_upstream(g: &Got, proxy: SocketAddr) -> Seen {
    let mut s = Seen::from(
        g,
        UPSTREAM_RESPONSE_HEADERS,
        &["date", "x-envoy-upstream-service-time"],
    );
    s.body = echo_view(&s.body.replace(&proxy.to_string(), "<proxy>"));
    s
}

async fn envoy_headers_case(test: &str, hcm_extra: &str, router_extra: &str) {
    let up = upstream::http("up").await;
    let vhosts = r#"            - name: all
              domains: ["*"]
              include_request_attempt_count: true
              routes:
              - match: { prefix: /old/ }
                route: { cluster: up, prefix_rewrite: /new/ }
              - match: { prefix: /timeout/ }
                route: { cluster: up, timeout: 3s }
              - match: { prefix: /per-try/ }
                route: { cluster: up, timeout: 3s, retry_policy: { retry_on: 5xx, num_retries: 1, per_try_timeout: 1s } }
              - match: { prefix: /no-timeout/ }
                route: { cluster: up, timeout: 0s }
              - match: { prefix: / }
                route: { cluster: up }
"#;
    let template = envoy_support::bootstrap(
        &[listener(vhosts, hcm_extra, router_extra)],
        &[static_cluster("up", &[up.addr], "")],
    );
    let Some(pair) = start_pair(test, &template).await else {
        return;
    };
    let h1 = h1_client();
    let h2 = h2_client();
    let mut d = Diffs::default();
    for path in [
        "/plain?q=1",
        "/old/x?y=2",
        "/timeout/x",
        "/per-try/x",
        "/no-timeout/x",
    ] {
        let (e, t) = both(&pair, &h1, |a| {
            get(a, "example.com", path).body(empty()).unwrap()
        })
        .await;
        d.check(
            &format!("HTTP/1.1 GET {path}"),
            seen_upstream(&e, pair.envoy),
            seen_upstream(&t, pair.tern),
        );
        let (e, t) = both(&pair, &h2, |a| {
            get(a, "example.com", path).body(empty()).unwrap()
        })
        .await;
        d.check(
            &format!("HTTP/2 GET {path}"),
            seen_upstream(&e, pair.envoy),
            seen_upstream(&t, pair.tern),
        );
    }
    // Client-supplied x-request-id, x-forwarded-proto and x-envoy-* headers.
    for path in ["/plain", "/no-timeout/x", "/per-try/x"] {
        let (e, t) = both(&pair, &h1, |a| {
            get(a, "example.com", path)
                .header("x-request-id", "client-id")
                .header("x-forwarded-proto", "https")
                .header("x-envoy-expected-rq-timeout-ms", "1")
                .header("x-envoy-upstream-rq-timeout-ms", "2500")
                .header("x-envoy-upstream-rq-per-try-timeout-ms", "700")
                .header("x-envoy-attempt-count", "7")
                .header("x-envoy-original-path", "/client")
                .header("x-envoy-retry-on", "5xx")
                .header("x-envoy-max-retries", "1")
                .header("x-envoy-retriable-status-codes", "418")
                .header("x-envoy-upstream-alt-stat-name", "alt")
                .header("x-envoy-retry-grpc-on", "cancelled")
                .header("x-envoy-retriable-header-names", "x-foo")
                .header("x-envoy-hedge-on-per-try-timeout", "true")
                .header("x-forwarded-for", "10.0.0.1")
                .body(empty())
                .unwrap()
        })
        .await;
        d.check(
            &format!("client-supplied headers, {path}"),
            seen_upstream(&e, pair.envoy),
            seen_upstream(&t, pair.tern),
        );
    }
    d.finish();
}

#[tokio::test]
async fn envoy_headers_on_upstream_request_and_response() {
    envoy_headers_case("envoy_headers", "", "").await;
}

#[tokio::test]
async fn suppress_envoy_headers() {
    envoy_headers_case(
        "suppress_envoy_headers",
        "",
        "              suppress_envoy_headers: true",
    )
    .await;
}

/// Host, path and request headers of one request in [`route_matching_order`].
type RouteCase = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[tokio::test]
async fn route_matching_order() {
    let direct = |name: &str| {
        format!("direct_response: {{ status: 200, body: {{ inline_string: \"{name}\" }} }}")
    };
    let vh = |name: &str, domains: &str, routes: &[(&str, &str)]| {
        let mut y = format!(
            "            - name: {name}\n              domains: {domains}\n              routes:\n"
        );
        for (m, r) in routes {
            y.push_str(&format!(
                "              - match: {m}\n                {}\n",
                direct(r)
            ));
        }
        y
    };
    let mut vhosts = String::new();
    vhosts.push_str(&vh(
        "exact",
        r#"["api.example.com", "api.example.com:8080"]"#,
        &[("{ prefix: / }", "exact")],
    ));
    vhosts.push_str(&vh(
        "long-suffix",
        r#"["*.b.example.com"]"#,
        &[("{ prefix: / }", "long-suffix")],
    ));
    vhosts.push_str(&vh(
        "suffix",
        r#"["*.example.com", "*-svc.local"]"#,
        &[("{ prefix: / }", "suffix")],
    ));
    vhosts.push_str(&vh(
        "prefix",
        r#"["internal.*"]"#,
        &[("{ prefix: / }", "prefix")],
    ));
    vhosts.push_str(&vh(
        "star",
        r#"["*"]"#,
        &[
            ("{ path: /exact }", "path-exact"),
            ("{ prefix: /exact }", "prefix-exact"),
            (r#"{ safe_regex: { regex: "/re/[0-9]+" } }"#, "regex"),
            ("{ prefix: /re }", "prefix-re"),
            (
                "{ prefix: /h, headers: [ { name: x-a, string_match: { exact: \"yes\" } } ] }",
                "header-a",
            ),
            (
                "{ prefix: /h, headers: [ { name: x-b, present_match: true }, { name: x-c, string_match: { exact: \"no\" }, invert_match: true } ] }",
                "header-b-not-c",
            ),
            ("{ prefix: /h }", "prefix-h"),
            ("{ prefix: /CaSe, case_sensitive: false }", "case-insensitive"),
            ("{ path: /Path, case_sensitive: false }", "path-case-insensitive"),
            ("{ prefix: /case }", "prefix-case"),
            ("{ path_separated_prefix: /sep }", "sep"),
            (
                "{ prefix: /q, query_parameters: [ { name: debug, string_match: { exact: \"1\" } } ] }",
                "query",
            ),
            ("{ prefix: /g, grpc: {} }", "grpc"),
            ("{ prefix: / }", "default"),
        ],
    ));
    let template = envoy_support::bootstrap(&[listener(&vhosts, "", "")], &[]);
    let Some(pair) = start_pair("route_matching_order", &template).await else {
        return;
    };
    let h1 = h1_client();
    let mut d = Diffs::default();
    let requests: &[RouteCase] = &[
        ("api.example.com", "/", &[]),
        ("API.Example.COM", "/", &[]),
        ("api.example.com:8080", "/", &[]),
        ("api.example.com:9090", "/", &[]),
        ("www.example.com", "/", &[]),
        ("www.example.com:8080", "/", &[]),
        ("x.b.example.com", "/", &[]),
        ("b.example.com", "/", &[]),
        ("example.com", "/", &[]),
        ("foo-svc.local", "/", &[]),
        ("-svc.local", "/", &[]),
        ("internal.corp", "/", &[]),
        ("internal.corp:80", "/", &[]),
        ("internal", "/", &[]),
        ("other.org", "/", &[]),
        ("other.org", "/exact", &[]),
        ("other.org", "/exact?x=1", &[]),
        ("other.org", "/exact/", &[]),
        ("other.org", "/exactly", &[]),
        ("other.org", "/re/42", &[]),
        ("other.org", "/re/42?x=y", &[]),
        ("other.org", "/re/42/x", &[]),
        ("other.org", "/re/x", &[]),
        ("other.org", "/h", &[("x-a", "yes")]),
        ("other.org", "/h", &[("x-a", "YES")]),
        ("other.org", "/h", &[("x-b", "")]),
        ("other.org", "/h", &[("x-b", "1"), ("x-c", "no")]),
        ("other.org", "/h", &[("x-b", "1"), ("x-c", "maybe")]),
        ("other.org", "/h", &[]),
        ("other.org", "/case/x", &[]),
        ("other.org", "/CASE", &[]),
        ("other.org", "/path", &[]),
        ("other.org", "/PATH", &[]),
        ("other.org", "/path/", &[]),
        ("other.org", "/sep", &[]),
        ("other.org", "/sep/", &[]),
        ("other.org", "/sep/x", &[]),
        ("other.org", "/sepx", &[]),
        ("other.org", "/sep?x", &[]),
        ("other.org", "/q?debug=1", &[]),
        ("other.org", "/q?debug=1&x", &[]),
        ("other.org", "/q?debug", &[]),
        ("other.org", "/q?debug=2", &[]),
        ("other.org", "/g", &[("content-type", "application/grpc")]),
        (
            "other.org",
            "/g",
            &[("content-type", "application/grpc+proto")],
        ),
        (
            "other.org",
            "/g",
            &[("content-type", "application/grpc-web")],
        ),
        ("other.org", "/g", &[]),
    ];
    for (host, path, headers) in requests {
        let (e, t) = both(&pair, &h1, |a| {
            let mut r = get(a, host, path);
            for (k, v) in *headers {
                r = r.header(*k, *v);
            }
            r.body(empty()).unwrap()
        })
        .await;
        d.check(
            &format!("GET {path} host {host} headers {headers:?}"),
            seen(&e),
            seen(&t),
        );
    }
    d.finish();
}

#[tokio::test]
async fn retries() {
    let up = upstream::http("up").await;
    let live = upstream::http("live").await;
    let dead = dead_addr();
    let vhosts = r#"            - name: all
              domains: ["*"]
              include_request_attempt_count: true
              include_attempt_count_in_response: true
              routes:
              - match: { prefix: /fail-once/ }
                route: { cluster: up, retry_policy: { retry_on: 5xx, num_retries: 2 } }
              - match: { prefix: /status/418 }
                route: { cluster: up, retry_policy: { retry_on: retriable-status-codes, retriable_status_codes: [418], num_retries: 2 } }
              - match: { prefix: /status/ }
                route: { cluster: up, retry_policy: { retry_on: 5xx, num_retries: 2 } }
              - match: { prefix: /mixed }
                route:
                  cluster: mixed
                  retry_policy:
                    retry_on: connect-failure
                    num_retries: 3
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 3
              - match: { prefix: /dead-no-retry }
                route: { cluster: dead }
              - match: { prefix: /dead }
                route: { cluster: dead, retry_policy: { retry_on: connect-failure, num_retries: 2 } }
              - match: { prefix: /empty }
                route: { cluster: empty, retry_policy: { retry_on: 5xx, num_retries: 2 } }
              - match: { prefix: /unknown }
                route: { cluster: unknown, retry_policy: { retry_on: 5xx, num_retries: 2 } }
              - match: { prefix: /delay/ }
                route: { cluster: up, timeout: 3s, retry_policy: { retry_on: 5xx, num_retries: 1, per_try_timeout: 0.2s } }
              - match: { prefix: /short/delay/ }
                route: { cluster: up, prefix_rewrite: /delay/, timeout: 0.3s, retry_policy: { retry_on: 5xx, num_retries: 3, per_try_timeout: 0.2s } }
"#;
    let template = envoy_support::bootstrap(
        &[listener(vhosts, "", "")],
        &[
            static_cluster("up", &[up.addr], ""),
            static_cluster("mixed", &[dead, live.addr], ""),
            static_cluster("dead", &[dead], ""),
            empty_cluster("empty"),
        ],
    );
    let Some(pair) = start_pair("retries", &template).await else {
        return;
    };
    let h1 = h1_client();
    let mut d = Diffs::default();
    // The upstream remembers fail-once keys: one key per proxy.
    let (e, t) = (
        send(
            &h1,
            get(pair.envoy, "example.com", "/fail-once/envoy")
                .body(empty())
                .unwrap(),
        )
        .await,
        send(
            &h1,
            get(pair.tern, "example.com", "/fail-once/tern")
                .body(empty())
                .unwrap(),
        )
        .await,
    );
    d.check("5xx retry of /fail-once", seen(&e), seen(&t));
    for path in [
        "/status/418",
        "/status/503",
        "/status/500",
        "/status/404",
        "/dead",
        "/dead-no-retry",
        "/empty",
        "/unknown",
        "/delay/1000",
        "/short/delay/1000",
    ] {
        let (e, t) = both(&pair, &h1, |a| {
            get(a, "example.com", path).body(empty()).unwrap()
        })
        .await;
        d.check(&format!("GET {path}"), seen(&e), seen(&t));
    }
    // One dead and one live host: with connect-failure retries and previous_hosts, every
    // request ends at the live host (the attempt count depends on the first pick).
    for i in 0..4 {
        let (e, t) = both(&pair, &h1, |a| {
            get(a, "example.com", "/mixed").body(empty()).unwrap()
        })
        .await;
        d.check(
            &format!("GET /mixed #{i}"),
            (e.status, e.headers.get("x-upstream").cloned()),
            (t.status, t.headers.get("x-upstream").cloned()),
        );
    }
    d.finish();
}

/// `use_remote_address: true` with a client on loopback. Envoy 1.40 treats the request as
/// external (no `internal_address_config`, so no address is internal): it sets
/// `x-envoy-external-address: 127.0.0.1`, sends no `x-envoy-internal`, removes a client's
/// `x-envoy-original-path`, and appends to `x-forwarded-for` not the loopback peer but its own
/// local address (the host's first non-loopback address, e.g. `10.0.0.1,192.0.2.2`).
///
/// tern does the same.
#[tokio::test]
async fn use_remote_address_headers() {
    envoy_headers_case(
        "use_remote_address",
        "          use_remote_address: true\n          skip_xff_append: false",
        "",
    )
    .await;
}

/// A listener whose routes answer `/direct` directly and forward the rest to `up`, for raw
/// HTTP/1 requests.
fn edge_template(up: SocketAddr) -> String {
    let routes = r#"              - match: { prefix: /direct }
                direct_response: { status: 200, body: { inline_string: "direct answer\n" } }
              - match: { prefix: /https }
                redirect: { https_redirect: true }
              - match: { prefix: /port }
                redirect: { port_redirect: 8443 }
              - match: { prefix: / }
                route: { cluster: up }
"#;
    envoy_support::bootstrap(
        &[listener(&star_vh(routes), "", "")],
        &[static_cluster("up", &[up], "")],
    )
}

/// Send each raw request to both and compare the replies byte for byte (header order, `date`
/// and the service time's value aside).
async fn compare_raw(pair: &Pair, cases: &[(&str, &str)]) {
    let mut d = Diffs::default();
    let mask = |s: &str| {
        raw_view(s)
            .lines()
            .map(|l| {
                if l.starts_with("x-envoy-upstream-service-time:") {
                    "x-envoy-upstream-service-time: <ms>"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (what, bytes) in cases {
        let e = support::raw(pair.envoy, bytes.as_bytes()).await;
        let t = support::raw(pair.tern, bytes.as_bytes()).await;
        d.check(what, mask(&e), mask(&t));
    }
    d.finish();
}

/// Raw HTTP/1 requests at the edges of the protocol that tern answers as Envoy does.
#[tokio::test]
async fn http1_edge_cases() {
    let up = upstream::http("up").await;
    let Some(pair) = start_pair("http1_edge_cases", &edge_template(up.addr)).await else {
        return;
    };
    let cases: &[(&str, &str)] = &[
        (
            "absolute-form URI",
            "GET http://example.com/direct HTTP/1.1\r\nconnection: close\r\n\r\n",
        ),
        (
            "path without a leading slash",
            "GET direct HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
        ),
        (
            "OPTIONS *",
            "OPTIONS * HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
        ),
        (
            "dot segments (no normalize_path)",
            "GET /x/../direct HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
        ),
        (
            "two Host headers",
            "GET /direct HTTP/1.1\r\nhost: a.example.com\r\nhost: b.example.com\r\nconnection: close\r\n\r\n",
        ),
        (
            "https redirect keeps the path and query",
            "GET /https/x?y=1 HTTP/1.1\r\nhost: example.com:8080\r\nconnection: close\r\n\r\n",
        ),
        (
            "port redirect",
            "GET /port/x HTTP/1.1\r\nhost: example.com:8080\r\nconnection: close\r\n\r\n",
        ),
        (
            "HEAD of an upstream response",
            "HEAD /status/200 HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
        ),
        (
            "upstream 204",
            "GET /status/204 HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
        ),
        (
            "POST with a body echoed",
            "POST /echo HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        ),
        (
            "chunked POST echoed",
            "POST /echo HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    compare_raw(&pair, cases).await;
}

/// Malformed HTTP/1 requests. Envoy's codec rejects each with 400, `content-type:
/// text/plain`, body `Bad Request`, `server: envoy` and `connection: close`: a header line
/// without a colon, a space before the colon, a garbage request line, `content-length` with
/// `transfer-encoding: chunked`. A request target with a fragment gets 400 with an empty body
/// (`content-length: 0`). tern's HTTP/1 codec answers each the same way.
#[tokio::test]
async fn http1_malformed_requests() {
    let up = upstream::http("up").await;
    let Some(pair) = start_pair("http1_malformed", &edge_template(up.addr)).await else {
        return;
    };
    let cases: &[(&str, &str)] = &[
        (
            "header without a colon",
            "GET /direct HTTP/1.1\r\nhost: example.com\r\nbogus\r\nconnection: close\r\n\r\n",
        ),
        (
            "space before the colon",
            "GET /direct HTTP/1.1\r\nhost : example.com\r\nconnection: close\r\n\r\n",
        ),
        ("garbage request line", "HELLO\r\n\r\n"),
        (
            "content-length and transfer-encoding",
            "POST /direct HTTP/1.1\r\nhost: example.com\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n",
        ),
        (
            "fragment",
            "GET /direct#frag HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
        ),
    ];
    compare_raw(&pair, cases).await;
}

/// HTTP/1.0. Envoy (`http_protocol_options.accept_http_10` false, the default) answers
/// `HTTP/1.1 426 Upgrade Required` with `content-type: text/plain`, body `Upgrade Required`
/// and `connection: close`; tern does the same.
#[tokio::test]
async fn http10_is_refused() {
    let up = upstream::http("up").await;
    let Some(pair) = start_pair("http10", &edge_template(up.addr)).await else {
        return;
    };
    let req = b"GET /direct HTTP/1.0\r\nhost: example.com\r\n\r\n";
    let e = raw_view(&support::raw(pair.envoy, req).await);
    let t = raw_view(&support::raw(pair.tern, req).await);
    assert_eq!(e, t, "HTTP/1.0 request: envoy vs tern");
}
