use super::*;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use http::{HeaderMap, Method, StatusCode};
use prost::{Message, Name};
use std::time::{Duration, SystemTime};

mod props;

/// A RouteConfiguration from YAML in the proto3 JSON mapping.
pub(super) fn rc(yaml: &str) -> route_pb::RouteConfiguration {
    let desc = crate::config::pool()
        .get_message_by_name(&route_pb::RouteConfiguration::full_name())
        .unwrap();
    let value: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    let msg = prost_reflect::DynamicMessage::deserialize(desc, value).unwrap();
    route_pb::RouteConfiguration::decode(msg.encode_to_vec().as_slice()).unwrap()
}

fn table(yaml: &str) -> RouteTable {
    RouteTable::compile(&rc(yaml)).unwrap()
}

fn err(yaml: &str) -> String {
    RouteTable::compile(&rc(yaml)).unwrap_err().to_string()
}

/// One virtual host `vh` for `*` with the given routes (YAML list items).
fn routes(routes: &str) -> RouteTable {
    table(&format!(
        "name: local\nvirtual_hosts:\n- name: vh\n  domains: ['*']\n  routes:\n{}",
        indent(routes, 4)
    ))
}

fn indent(s: &str, n: usize) -> String {
    s.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

pub(super) struct Req {
    pub authority: String,
    pub path: String,
    pub method: Method,
    pub headers: HeaderMap,
}

impl Req {
    pub fn new(path: &str) -> Self {
        Req {
            authority: "example.com".into(),
            path: path.into(),
            method: Method::GET,
            headers: HeaderMap::new(),
        }
    }
    pub fn h(mut self, k: &'static str, v: &str) -> Self {
        self.headers.append(k, v.parse().unwrap());
        self
    }
    pub fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            authority: &self.authority,
            path: &self.path,
            method: &self.method,
            headers: &self.headers,
            downstream_remote: Some("10.0.0.7:4444".parse().unwrap()),
        }
    }
}

fn route_name(t: &RouteTable, r: &Req) -> Option<String> {
    t.find(&r.info()).map(|m| m.route.name.clone())
}

fn ctx<'a>(req: Option<&'a HeaderMap>) -> FormatContext<'a> {
    FormatContext {
        downstream_remote: Some("10.0.0.7:4444".parse().unwrap()),
        downstream_local: None,
        upstream_remote: None,
        upstream_cluster: Some("c1"),
        start_time: SystemTime::UNIX_EPOCH,
        protocol: "HTTP/2",
        request_headers: req,
        hostname: "h",
    }
}

#[test]
fn virtual_host_selection_order() {
    let t = table(
        r#"
name: local
virtual_hosts:
- {name: exact, domains: ["www.foo.com", "[::1]:80"], routes: []}
- {name: suffix_long, domains: ["*-bar.foo.com"], routes: []}
- {name: suffix, domains: ["*.foo.com"], routes: []}
- {name: prefix, domains: ["foo.*", "foo.bar.*"], routes: []}
- {name: default, domains: ["*"], routes: []}
"#,
    );
    let vh = |a: &str| t.virtual_host(a).map(|v| v.name.as_str());
    assert_eq!(vh("www.foo.com"), Some("exact"));
    assert_eq!(vh("WWW.Foo.COM"), Some("exact"));
    assert_eq!(vh("x-bar.foo.com"), Some("suffix_long"));
    assert_eq!(vh("a.foo.com"), Some("suffix"));
    assert_eq!(
        vh("-bar.foo.com"),
        Some("suffix"),
        "'*' needs one character"
    );
    assert_eq!(vh("foo."), Some("default"), "'*' needs one character");
    assert_eq!(vh("foo.bar.baz"), Some("prefix"));
    assert_eq!(vh("other"), Some("default"));
    assert_eq!(
        vh("www.foo.com:80"),
        Some("default"),
        "port kept by default"
    );
    assert_eq!(vh("[::1]:80"), Some("exact"));
    assert_eq!(t.name(), "local");
}

#[test]
fn ignore_port_in_host_matching() {
    let t = table(
        r#"
name: local
ignore_port_in_host_matching: true
virtual_hosts:
- {name: a, domains: ["foo.com", "[::1]"], routes: []}
"#,
    );
    assert_eq!(t.virtual_host("foo.com:8080").unwrap().name, "a");
    assert_eq!(t.virtual_host("[::1]:80").unwrap().name, "a");
    assert_eq!(t.virtual_host("[::1]").unwrap().name, "a");
    assert!(t.virtual_host("bar.com").is_none());
}

#[test]
fn duplicate_and_bad_domains_are_errors() {
    let e = err(
        "name: r\nvirtual_hosts:\n- {name: a, domains: [x.com]}\n- {name: b, domains: [X.com]}",
    );
    assert!(
        e.contains("route_config r: virtual_hosts[1].domains[0]"),
        "{e}"
    );
    let e =
        err("name: r\nvirtual_hosts:\n- {name: a, domains: ['*']}\n- {name: b, domains: ['*']}");
    assert!(e.contains("single wildcard"), "{e}");
    let e = err("name: r\nvirtual_hosts:\n- {name: a, domains: ['*.x', '*.x']}");
    assert!(e.contains("duplicate"), "{e}");
    assert!(err("name: r\nvirtual_hosts:\n- {name: a, domains: []}").contains("domains"));
}

#[test]
fn compile_errors_name_the_path() {
    let e = err(r#"
name: local
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {match: {prefix: /}, route: {cluster: a}}
  - {match: {prefix: /}, route: {cluster: a}}
  - {match: {safe_regex: {regex: "(("}}, route: {cluster: a}}
"#);
    assert!(
        e.starts_with("route_config local: virtual_hosts[0].routes[2].match.safe_regex"),
        "{e}"
    );
    assert!(e.contains("invalid regex"), "{e}");
    for (yaml, want) in [
        ("{match: {prefix: /}}", "routes[0].action"),
        ("{route: {cluster: a}}", "routes[0].match"),
        (
            "{match: {path_separated_prefix: /a/}, route: {cluster: a}}",
            "path_separated_prefix",
        ),
        ("{match: {prefix: /}, route: {}}", "cluster_specifier"),
        (
            "{match: {prefix: /}, route: {cluster_header: 'a b'}}",
            "cluster_header",
        ),
        (
            "{match: {prefix: /}, route: {cluster: a, prefix_rewrite: /x, regex_rewrite: {pattern: {regex: a}, substitution: b}}}",
            "regex_rewrite",
        ),
        (
            "{match: {prefix: /}, route: {weighted_clusters: {clusters: [{name: a, weight: 0}]}}}",
            "weighted_clusters.clusters",
        ),
        (
            "{match: {prefix: /}, route: {cluster: a, upgrade_configs: [{upgrade_type: ws}, {upgrade_type: WS}]}}",
            "upgrade_configs[1]",
        ),
        (
            "{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_back_off: {base_interval: 1s, max_interval: 0.5s}}}}",
            "route.retry_policy.retry_back_off.max_interval",
        ),
        (
            "{match: {prefix: /}, route: {cluster: a}, request_headers_to_remove: [':path']}",
            "request_headers_to_remove[0]",
        ),
        (
            "{match: {prefix: /}, route: {cluster: a}, request_headers_to_remove: [host]}",
            "request_headers_to_remove[0]",
        ),
        (
            "{match: {prefix: /}, route: {cluster: a}, response_headers_to_add: [{header: {key: 'a b', value: x}}]}",
            "response_headers_to_add[0].header.key",
        ),
        (
            "{match: {prefix: /}, route: {cluster: a}, request_headers_to_add: [{header: {key: x, value: '%NOPE%'}}]}",
            "request_headers_to_add[0].header.value",
        ),
        (
            "{match: {prefix: /}, route: {cluster: a}, request_headers_to_add: [{header: {key: x, value: y}, append: true, append_action: ADD_IF_ABSENT}]}",
            "request_headers_to_add[0].append",
        ),
        (
            "{match: {prefix: /, headers: [{name: x, string_match: {prefix: ''}}]}, route: {cluster: a}}",
            "match.headers[0].string_match.prefix",
        ),
        (
            "{match: {prefix: /}, direct_response: {status: 99}}",
            "direct_response.status",
        ),
        (
            "{match: {prefix: /}, direct_response: {status: 200, body: {filename: /nonexistent/x}}}",
            "direct_response.body.filename",
        ),
        (
            "{match: {prefix: /}, redirect: {regex_rewrite: {pattern: {regex: a}, substitution: '\\2'}}}",
            "redirect.regex_rewrite.substitution",
        ),
    ] {
        let e = err(&format!(
            "name: local\nvirtual_hosts:\n- name: vh\n  domains: ['*']\n  routes:\n  - {yaml}"
        ));
        assert!(
            e.starts_with("route_config local: virtual_hosts[0].routes[0]") && e.contains(want),
            "{yaml}: {e}"
        );
    }
}

#[test]
fn path_matchers() {
    let t = routes(
        r#"
- {name: exact, match: {path: /exact}, route: {cluster: a}}
- {name: ci, match: {path: /CI, case_sensitive: false}, route: {cluster: a}}
- {name: regex, match: {safe_regex: {regex: "/re/[0-9]+"}}, route: {cluster: a}}
- {name: sep, match: {path_separated_prefix: /sep}, route: {cluster: a}}
- {name: connect, match: {connect_matcher: {}}, route: {cluster: a}}
- {name: prefix_ci, match: {prefix: /Pre, case_sensitive: false}, route: {cluster: a}}
- {name: prefix, match: {prefix: /}, route: {cluster: a}}
"#,
    );
    let n = |p: &str| route_name(&t, &Req::new(p)).unwrap();
    assert_eq!(n("/exact"), "exact");
    assert_eq!(n("/exact?q=1"), "exact");
    assert_eq!(n("/exact/"), "prefix");
    assert_eq!(n("/ci"), "ci");
    assert_eq!(n("/re/123?x"), "regex");
    assert_eq!(n("/re/123x"), "prefix", "regex is a full match");
    assert_eq!(n("/sep"), "sep");
    assert_eq!(n("/sep/x"), "sep");
    assert_eq!(n("/sep?x"), "sep");
    assert_eq!(n("/sepx"), "prefix");
    assert_eq!(n("/pREfix"), "prefix_ci");
    let mut r = Req::new("example.com:443");
    r.method = Method::CONNECT;
    assert_eq!(route_name(&t, &r).unwrap(), "connect");
}

#[test]
fn header_matchers() {
    let t = routes(
        r#"
- {name: exact, match: {prefix: /, headers: [{name: x-e, exact_match: v}]}}
- {name: regex, match: {prefix: /, headers: [{name: x-r, safe_regex_match: {regex: "[a-c]+"}}]}}
- {name: range, match: {prefix: /, headers: [{name: x-n, range_match: {start: -10, end: 0}}]}}
- {name: present, match: {prefix: /, headers: [{name: x-p, present_match: true}]}}
- {name: absent, match: {prefix: /, headers: [{name: x-a, present_match: false}, {name: x-absent-test, present_match: true}]}}
- {name: prefix, match: {prefix: /, headers: [{name: x-pre, prefix_match: ab}]}}
- {name: suffix, match: {prefix: /, headers: [{name: x-suf, suffix_match: yz}]}}
- {name: contains, match: {prefix: /, headers: [{name: x-con, contains_match: mid}]}}
- {name: sm_ci, match: {prefix: /, headers: [{name: x-sm, string_match: {exact: HeLLo, ignore_case: true}}]}}
- {name: invert, match: {prefix: /, headers: [{name: x-inv, exact_match: no, invert_match: true}]}}
- {name: missing_empty, match: {prefix: /, headers: [{name: x-me, exact_match: v, invert_match: true, treat_missing_header_as_empty: true}, {name: x-me-on, present_match: true}]}}
- {name: multi, match: {prefix: /, headers: [{name: x-m, exact_match: "a,b"}]}}
- {name: authority, match: {prefix: /, headers: [{name: ":authority", exact_match: "special"}]}}
- {name: fallback, match: {prefix: /}}
"#
        .replace("}]}}\n", "}]}, route: {cluster: a}}\n")
        .replace("match: {prefix: /}}", "match: {prefix: /}, route: {cluster: a}}")
        .as_str(),
    );
    let n = |r: Req| route_name(&t, &r).unwrap();
    assert_eq!(n(Req::new("/").h("x-e", "v")), "exact");
    assert_eq!(n(Req::new("/").h("x-e", "vv")), "fallback");
    assert_eq!(n(Req::new("/").h("x-r", "abc")), "regex");
    assert_eq!(n(Req::new("/").h("x-r", "abcd")), "fallback");
    assert_eq!(n(Req::new("/").h("x-n", "-1")), "range");
    assert_eq!(n(Req::new("/").h("x-n", "0")), "fallback");
    assert_eq!(n(Req::new("/").h("x-n", "abc")), "fallback");
    assert_eq!(n(Req::new("/").h("x-p", "")), "present");
    assert_eq!(n(Req::new("/").h("x-absent-test", "1")), "absent");
    assert_eq!(
        n(Req::new("/").h("x-absent-test", "1").h("x-a", "1")),
        "fallback"
    );
    assert_eq!(n(Req::new("/").h("x-pre", "abc")), "prefix");
    assert_eq!(n(Req::new("/").h("x-suf", "xyz")), "suffix");
    assert_eq!(n(Req::new("/").h("x-con", "amidb")), "contains");
    assert_eq!(n(Req::new("/").h("x-sm", "hello")), "sm_ci");
    assert_eq!(n(Req::new("/").h("x-inv", "yes")), "invert");
    assert_eq!(n(Req::new("/").h("x-inv", "no")), "fallback");
    // A missing header never matches an inverted value matcher...
    assert_eq!(n(Req::new("/")), "fallback");
    // ...unless treated as empty.
    assert_eq!(n(Req::new("/").h("x-me-on", "1")), "missing_empty");
    assert_eq!(
        n(Req::new("/").h("x-me-on", "1").h("x-me", "v")),
        "fallback"
    );
    assert_eq!(n(Req::new("/").h("x-m", "a").h("x-m", "b")), "multi");
    let mut r = Req::new("/");
    r.authority = "special".into();
    assert_eq!(n(r), "authority");
}

#[test]
fn query_cookie_grpc_fraction_metadata() {
    let t = table(
        r#"
name: local
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: q_exact, match: {prefix: /, query_parameters: [{name: a, string_match: {exact: "1"}}]}, route: {cluster: a}}
  - {name: q_present, match: {prefix: /, query_parameters: [{name: b, present_match: true}]}, route: {cluster: a}}
  - {name: cookie, match: {prefix: /, cookies: [{name: user, string_match: {exact: bob}}]}, route: {cluster: a}}
  - {name: grpc, match: {prefix: /, grpc: {}}, route: {cluster: a}}
  - {name: never, match: {prefix: /, runtime_fraction: {default_value: {numerator: 0}}}, route: {cluster: a}}
  - {name: half, match: {prefix: /half, runtime_fraction: {default_value: {numerator: 50}}}, route: {cluster: a}}
  - {name: md, match: {prefix: /, dynamic_metadata: [{filter: f, path: [{key: k}], value: {present_match: true}}]}, route: {cluster: a}}
  - {name: fallback, match: {prefix: /}, route: {cluster: a}}
"#,
    );
    let n = |r: Req| route_name(&t, &r).unwrap();
    assert_eq!(n(Req::new("/?x=2&a=1")), "q_exact");
    assert_eq!(n(Req::new("/?a=2")), "fallback");
    assert_eq!(n(Req::new("/?b")), "q_present");
    assert_eq!(n(Req::new("/").h("cookie", "x=1; user=bob")), "cookie");
    assert_eq!(
        n(Req::new("/").h("content-type", "application/grpc+proto")),
        "grpc"
    );
    assert_eq!(
        n(Req::new("/").h("content-type", "application/grpcx")),
        "fallback"
    );
    let r = Req::new("/half");
    assert_eq!(
        t.find_with_random(&r.info(), 49).unwrap().route.name,
        "half"
    );
    assert_eq!(
        t.find_with_random(&r.info(), 149).unwrap().route.name,
        "half"
    );
    assert_eq!(
        t.find_with_random(&r.info(), 50).unwrap().route.name,
        "fallback"
    );
}

#[test]
fn actions_compile() {
    let t = routes(
        r#"
- name: fwd
  match: {prefix: /fwd}
  route:
    cluster: c
    timeout: 0s
    idle_timeout: 5s
    auto_host_rewrite: true
    cluster_not_found_response_code: NOT_FOUND
    upgrade_configs: [{upgrade_type: WebSocket}, {upgrade_type: CONNECT, enabled: false}]
    max_stream_duration: {max_stream_duration: 0s, grpc_timeout_header_max: 3s}
    request_mirror_policies: [{cluster: m, runtime_fraction: {default_value: {numerator: 10}}}]
- {name: lit, match: {prefix: /lit}, route: {cluster: c, host_rewrite_literal: h.example}}
- {name: hdr, match: {prefix: /hdr}, route: {cluster: c, host_rewrite_header: X-Host}}
- {name: redir, match: {prefix: /r}, redirect: {https_redirect: true, response_code: FOUND}}
- {name: direct, match: {prefix: /d}, direct_response: {status: 418, body: {inline_string: teapot}}}
- {name: nf, match: {prefix: /nf}, non_forwarding_action: {}}
- {name: dflt, match: {prefix: /}, route: {cluster: c}}
"#,
    );
    let find = |p: &str| {
        let r = Req::new(p);
        t.find(&r.info()).unwrap().route.clone()
    };
    let r = find("/fwd");
    let a = r.route_action().unwrap();
    assert_eq!(a.timeout, None);
    assert_eq!(a.idle_timeout, Some(Duration::from_secs(5)));
    assert!(a.auto_host_rewrite);
    assert_eq!(a.cluster_not_found_response_code, StatusCode::NOT_FOUND);
    assert_eq!(
        a.upgrade_configs,
        vec![
            ("websocket".to_string(), true),
            ("connect".to_string(), false)
        ]
    );
    assert!(a.upgrade_enabled("WEBSOCKET", false));
    assert!(!a.upgrade_enabled("connect", true));
    assert!(a.upgrade_enabled("h2c", true));
    assert_eq!(a.max_stream_duration, Some(Duration::ZERO));
    assert_eq!(a.grpc_timeout_header_max, Some(Duration::from_secs(3)));
    assert_eq!(a.request_mirror_policies[0].fraction, Some((10, 100)));
    assert_eq!(
        find("/lit")
            .route_action()
            .unwrap()
            .host_rewrite_literal
            .as_deref(),
        Some("h.example")
    );
    assert_eq!(
        find("/hdr").route_action().unwrap().host_rewrite_header,
        Some(http::HeaderName::from_static("x-host"))
    );
    assert_eq!(
        find("/").route_action().unwrap().timeout,
        Some(Duration::from_secs(15))
    );
    match find("/d").action {
        Action::Direct(d) => {
            assert_eq!(d.status.as_u16(), 418);
            assert_eq!(d.body.as_deref(), Some(&b"teapot"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(find("/nf").action, Action::NonForwarding));
    assert!(matches!(find("/r").action, Action::Redirect(_)));
}

#[test]
fn direct_response_body_limit() {
    let big = "x".repeat(5000);
    let e = err(&format!(
        "name: l\nvirtual_hosts:\n- {{name: v, domains: ['*'], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200, body: {{inline_string: {big}}}}}}}]}}"
    ));
    assert!(e.contains("maximum is 4096"), "{e}");
    let ok = format!(
        "name: l\nmax_direct_response_body_size_bytes: 10000\nvirtual_hosts:\n- {{name: v, domains: ['*'], routes: [{{match: {{prefix: /}}, direct_response: {{status: 200, body: {{inline_string: {big}}}}}}}]}}"
    );
    table(&ok);
}

#[test]
fn routes_with_the_same_retry_policy_share_one() {
    // Istio gives every route of a mesh the same policy: 10,000 routes keep one copy.
    let t = table(
        r#"
name: l
virtual_hosts:
- name: a
  domains: [a]
  routes:
  - {match: {prefix: /}, route: {cluster: c, retry_policy: {retry_on: "connect-failure", num_retries: 2}}}
- name: b
  domains: [b]
  routes:
  - {match: {prefix: /}, route: {cluster: c, retry_policy: {retry_on: "connect-failure", num_retries: 2}}}
  - {match: {prefix: /other}, route: {cluster: c, retry_policy: {retry_on: "reset"}}}
"#,
    );
    let policy = |host: &str, i: usize| {
        t.virtual_host(host).unwrap().routes[i]
            .route_action()
            .unwrap()
            .retry_policy
            .clone()
            .unwrap()
    };
    assert!(std::sync::Arc::ptr_eq(&policy("a", 0), &policy("b", 0)));
    assert!(!std::sync::Arc::ptr_eq(&policy("a", 0), &policy("b", 1)));
    assert_eq!(policy("b", 1).retry_on, RetryOn::RESET);
    assert_eq!(policy("a", 0).num_retries, 2);
}

#[test]
fn retry_policy_inherited_from_virtual_host() {
    let t = table(
        r#"
name: l
virtual_hosts:
- name: v
  domains: ["*"]
  include_request_attempt_count: true
  retry_policy: {retry_on: "5xx", num_retries: 3}
  routes:
  - {name: own, match: {prefix: /own}, route: {cluster: c, retry_policy: {retry_on: reset}}}
  - {name: inh, match: {prefix: /}, route: {cluster: c}}
"#,
    );
    let vh = t.virtual_host("x").unwrap();
    assert!(vh.include_attempt_count_in_request);
    assert_eq!(vh.retry_policy.as_ref().unwrap().num_retries, 3);
    let p = |path: &str| {
        let r = Req::new(path);
        let m = t.find(&r.info()).unwrap();
        m.route
            .route_action()
            .unwrap()
            .retry_policy
            .clone()
            .unwrap()
    };
    assert_eq!(p("/own").retry_on, RetryOn::RESET);
    assert_eq!(p("/own").num_retries, 1);
    assert_eq!(p("/x").retry_on, RetryOn::FIVE_XX);
    assert_eq!(p("/x").num_retries, 3);
}

mod actions;
