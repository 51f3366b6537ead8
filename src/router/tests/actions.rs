use super::*;

fn action(t: &RouteTable, path: &str) -> (Route, RouteAction) {
    let r = Req::new(path);
    let route = t.find(&r.info()).unwrap().route.clone();
    let a = route.route_action().unwrap().clone();
    (route, a)
}

#[test]
fn weighted_clusters_pick_in_config_order() {
    let t = routes(
        r#"
- match: {prefix: /}
  route:
    weighted_clusters:
      clusters:
      - {name: a, weight: 10, request_headers_to_add: [{header: {key: x-w, value: a}}]}
      - {name: b, weight: 30}
      - {cluster_header: x-c, weight: 60}
"#,
    );
    let (_, a) = action(&t, "/");
    let mut h = HeaderMap::new();
    assert_eq!(a.pick_cluster(&h, 0), Some("a"));
    assert_eq!(a.pick_cluster(&h, 9), Some("a"));
    assert_eq!(a.pick_cluster(&h, 10), Some("b"));
    assert_eq!(a.pick_cluster(&h, 39), Some("b"));
    assert_eq!(a.pick_cluster(&h, 40), None, "cluster_header absent");
    h.insert("x-c", "dyn".parse().unwrap());
    assert_eq!(a.pick_cluster(&h, 99), Some("dyn"));
    assert_eq!(a.pick_cluster(&h, 100), Some("a"));
    let mut counts = [0u32; 3];
    for i in 0..10_000u64 {
        let r = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        match a.pick_cluster(&h, r) {
            Some("a") => counts[0] += 1,
            Some("b") => counts[1] += 1,
            _ => counts[2] += 1,
        }
    }
    for (c, want) in counts.iter().zip([1000, 3000, 6000]) {
        assert!((*c as i32 - want).abs() < 300, "{counts:?}");
    }
    // The entry's own header mutations are applied first.
    let (name, entry) = a.pick_cluster_entry(&h, 0);
    assert_eq!(name, Some("a"));
    let r = Req::new("/");
    let m = t.find(&r.info()).unwrap();
    let mut out = HeaderMap::new();
    m.apply_request_headers_with(entry, &mut out, &ctx(None));
    assert_eq!(out["x-w"], "a");
}

#[test]
fn weighted_random_from_header() {
    let t = routes(
        r#"
- match: {prefix: /}
  route:
    weighted_clusters:
      header_name: x-rand
      clusters: [{name: a, weight: 1}, {name: b, weight: 1}]
"#,
    );
    let (_, a) = action(&t, "/");
    let mut h = HeaderMap::new();
    h.insert("x-rand", "1".parse().unwrap());
    assert_eq!(a.pick_cluster(&h, 0), Some("b"));
    let e = err(
        "name: l\nvirtual_hosts:\n- {name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {weighted_clusters: {total_weight: 5, clusters: [{name: a, weight: 1}]}}}]}",
    );
    assert!(e.contains("total_weight"), "{e}");
}

#[test]
fn path_rewrites() {
    let t = routes(
        r#"
- {name: p, match: {prefix: /api/}, route: {cluster: c, prefix_rewrite: /v2/}}
- {name: ci, match: {prefix: /CI, case_sensitive: false}, route: {cluster: c, prefix_rewrite: /ci}}
- {name: sep, match: {path_separated_prefix: /sep}, route: {cluster: c, prefix_rewrite: /new}}
- {name: exact, match: {path: /exact}, route: {cluster: c, prefix_rewrite: /other}}
- name: rx
  match: {prefix: /rx/}
  route: {cluster: c, regex_rewrite: {pattern: {regex: "^/rx/([^/]+)/(.*)$"}, substitution: "/\\2/\\1$"}}
- {name: none, match: {prefix: /}, route: {cluster: c}}
"#,
    );
    let rw = |p: &str| {
        let (route, a) = action(&t, p);
        a.rewrite_path(&route, p)
    };
    assert_eq!(rw("/api/users?x=1").as_deref(), Some("/v2/users?x=1"));
    assert_eq!(rw("/ci/x").as_deref(), Some("/ci/x"));
    assert_eq!(rw("/Ci/x").as_deref(), Some("/ci/x"));
    assert_eq!(rw("/sep/a").as_deref(), Some("/new/a"));
    assert_eq!(rw("/sep?q").as_deref(), Some("/new?q"));
    assert_eq!(rw("/exact?q=1").as_deref(), Some("/other?q=1"));
    assert_eq!(rw("/rx/a/b/c?k=v").as_deref(), Some("/b/c/a$?k=v"));
    assert_eq!(rw("/plain"), None);
}

#[test]
fn hash_policies() {
    let t = routes(
        r#"
- name: h
  match: {prefix: /h}
  route:
    cluster: c
    hash_policy:
    - header: {header_name: x-user}
- name: multi
  match: {prefix: /m}
  route:
    cluster: c
    hash_policy:
    - header: {header_name: x-missing}
    - cookie: {name: sess, ttl: 10s}
    - connection_properties: {source_ip: true}
      terminal: true
    - query_parameter: {name: q}
- name: q
  match: {prefix: /q}
  route:
    cluster: c
    hash_policy:
    - query_parameter: {name: q}
    - filter_state: {key: k}
- name: none
  match: {prefix: /}
  route: {cluster: c}
"#,
    );
    let hash = |r: &Req| {
        let m = t.find(&r.info()).unwrap();
        m.route.route_action().unwrap().hash(&r.info())
    };
    let xx = |s: &str| xxhash_rust::xxh64::xxh64(s.as_bytes(), 0);
    assert_eq!(
        hash(&Req::new("/h").h("x-user", "alice")),
        Some(xx("alice"))
    );
    assert_eq!(hash(&Req::new("/h")), None);
    // Several values: sorted, chained; order does not matter.
    let ab = hash(&Req::new("/h").h("x-user", "b").h("x-user", "a"));
    let ba = hash(&Req::new("/h").h("x-user", "a").h("x-user", "b"));
    assert_eq!(ab, ba);
    assert_eq!(ab, Some(xxhash_rust::xxh64::xxh64(b"b", xx("a"))));
    // Cookie then source IP (terminal): rotl(cookie, 1) ^ ip; the query parameter is skipped.
    let r = Req::new("/m?q=1").h("cookie", "sess=s1");
    assert_eq!(hash(&r), Some(xx("s1").rotate_left(1) ^ xx("10.0.0.7")));
    // Without the cookie, only the IP.
    assert_eq!(hash(&Req::new("/m?q=1")), Some(xx("10.0.0.7")));
    assert_eq!(hash(&Req::new("/q?q=v")), Some(xx("v")));
    assert_eq!(hash(&Req::new("/q")), None);
    assert_eq!(hash(&Req::new("/")), None);
    // Stable across calls.
    let r = Req::new("/h").h("x-user", "alice");
    assert_eq!(hash(&r), hash(&r));
}

#[test]
fn redirects() {
    let t = routes(
        r#"
- {name: https, match: {prefix: /https}, redirect: {https_redirect: true}}
- {name: host, match: {prefix: /host}, redirect: {host_redirect: "new.com:99", port_redirect: 8443, response_code: TEMPORARY_REDIRECT}}
- {name: path, match: {prefix: /path}, redirect: {path_redirect: /p, response_code: SEE_OTHER}}
- {name: pathq, match: {prefix: /pq}, redirect: {path_redirect: "/p?z=1", response_code: PERMANENT_REDIRECT}}
- {name: strip, match: {prefix: /strip}, redirect: {path_redirect: /s, strip_query: true, response_code: FOUND}}
- {name: prefix, match: {prefix: /old/}, redirect: {prefix_rewrite: /new/, strip_query: true}}
- {name: regex, match: {prefix: /re/}, redirect: {regex_rewrite: {pattern: {regex: "^/re/(.*)$"}, substitution: "/x/\\1"}}}
- {name: scheme, match: {prefix: /scheme}, redirect: {scheme_redirect: HTTP}}
"#,
    );
    let loc = |authority: &str, path: &str, scheme: &str| {
        let mut r = Req::new(path);
        r.authority = authority.into();
        let m = t.find(&r.info()).unwrap();
        match &m.route.action {
            Action::Redirect(rd) => {
                let (s, l) = rd.location(m.route, &r.info(), scheme);
                (s.as_u16(), l)
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        loc("a.com", "/https?x=1", "http"),
        (301, "https://a.com/https?x=1".into())
    );
    assert_eq!(
        loc("a.com:80", "/https", "http"),
        (301, "https://a.com/https".into()),
        "default port of the old scheme dropped"
    );
    assert_eq!(
        loc("a.com:8080", "/https", "http"),
        (301, "https://a.com:8080/https".into())
    );
    assert_eq!(
        loc("[::1]:80", "/https", "http"),
        (301, "https://[::1]/https".into())
    );
    assert_eq!(
        loc("a.com", "/host/x", "https"),
        (307, "https://new.com:8443/host/x".into())
    );
    assert_eq!(
        loc("a.com", "/path/x?q=1", "http"),
        (303, "http://a.com/p?q=1".into())
    );
    assert_eq!(
        loc("a.com", "/pq?q=1", "http"),
        (308, "http://a.com/p?z=1".into())
    );
    assert_eq!(
        loc("a.com", "/strip?q=1", "http"),
        (302, "http://a.com/s".into())
    );
    assert_eq!(
        loc("a.com", "/old/a/b?q=1", "http"),
        (301, "http://a.com/new/a/b".into())
    );
    assert_eq!(
        loc("a.com", "/re/y?k", "http"),
        (301, "http://a.com/x/y?k".into())
    );
    assert_eq!(
        loc("a.com:443", "/scheme", "https"),
        (301, "http://a.com/scheme".into())
    );
}

#[test]
fn header_mutation_order_and_append_actions() {
    let yaml = |most_specific: bool| {
        format!(
            r#"
name: l
most_specific_header_mutations_wins: {most_specific}
request_headers_to_add:
- {{header: {{key: x-over, value: global}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
- {{header: {{key: x-app, value: global}}}}
response_headers_to_add:
- {{header: {{key: x-resp, value: "%UPSTREAM_CLUSTER%"}}}}
response_headers_to_remove: [x-secret]
virtual_hosts:
- name: v
  domains: ["*"]
  request_headers_to_add:
  - {{header: {{key: x-over, value: vhost}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
  - {{header: {{key: x-app, value: vhost}}, append: true}}
  routes:
  - match: {{prefix: /}}
    route: {{cluster: c}}
    request_headers_to_remove: [x-drop]
    request_headers_to_add:
    - {{header: {{key: x-over, value: route}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
    - {{header: {{key: x-app, value: route}}}}
    - {{header: {{key: x-absent, value: new}}, append_action: ADD_IF_ABSENT}}
    - {{header: {{key: x-present, value: new}}, append_action: ADD_IF_ABSENT}}
    - {{header: {{key: x-ow, value: new}}, append_action: OVERWRITE_IF_EXISTS}}
    - {{header: {{key: x-ow-missing, value: new}}, append_action: OVERWRITE_IF_EXISTS}}
    - {{header: {{key: x-set, value: new}}, append: false}}
    - {{header: {{key: x-empty, value: "%REQ(x-nothing)%"}}}}
    - {{header: {{key: x-keep, value: ""}}, keep_empty_value: true}}
    - {{header: {{key: x-fmt, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% via %PROTOCOL%"}}}}
    - {{header: {{key: x-raw, raw_value: cmF3}}}}
"#
        )
    };
    let t = table(&yaml(false));
    let r = Req::new("/");
    let m = t.find(&r.info()).unwrap();
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("x-drop", "1"),
        ("x-present", "old"),
        ("x-ow", "old"),
        ("x-set", "old1"),
        ("x-app", "orig"),
    ] {
        h.append(k, v.parse().unwrap());
    }
    h.append("x-set", "old2".parse().unwrap());
    m.apply_request_headers(&mut h, &ctx(None));
    let all = |h: &HeaderMap, k: &str| {
        h.get_all(k)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(!h.contains_key("x-drop"));
    assert_eq!(all(&h, "x-over"), ["global"], "route, vhost, then global");
    assert_eq!(all(&h, "x-app"), ["orig", "route", "vhost", "global"]);
    assert_eq!(all(&h, "x-absent"), ["new"]);
    assert_eq!(all(&h, "x-present"), ["old"]);
    assert_eq!(all(&h, "x-ow"), ["new"]);
    assert!(!h.contains_key("x-ow-missing"));
    assert_eq!(all(&h, "x-set"), ["new"]);
    assert!(!h.contains_key("x-empty"), "empty values dropped");
    assert_eq!(all(&h, "x-keep"), [""]);
    assert_eq!(all(&h, "x-fmt"), ["10.0.0.7 via HTTP/2"]);
    assert_eq!(all(&h, "x-raw"), ["raw"]);

    let mut resp = HeaderMap::new();
    resp.insert("x-secret", "s".parse().unwrap());
    m.apply_response_headers(&mut resp, &ctx(None));
    assert!(!resp.contains_key("x-secret"));
    assert_eq!(resp["x-resp"], "c1");

    let t = table(&yaml(true));
    let m = t.find(&r.info()).unwrap();
    let mut h = HeaderMap::new();
    m.apply_request_headers(&mut h, &ctx(None));
    assert_eq!(all(&h, "x-over"), ["route"], "most specific wins");
    assert_eq!(all(&h, "x-app"), ["global", "vhost", "route"]);
}

#[test]
fn retry_on_parsing() {
    let (on, unknown) = RetryOn::parse(
        "5xx, gateway-error,reset,connect-failure,retriable-4xx,refused-stream,\
         retriable-status-codes,retriable-headers,http3-post-connect-failure,\
         cancelled,deadline-exceeded,internal,resource-exhausted,unavailable,bogus,",
    );
    assert_eq!(unknown, ["bogus"]);
    for f in [
        RetryOn::FIVE_XX,
        RetryOn::GATEWAY_ERROR,
        RetryOn::RESET,
        RetryOn::CONNECT_FAILURE,
        RetryOn::RETRIABLE_4XX,
        RetryOn::REFUSED_STREAM,
        RetryOn::RETRIABLE_STATUS_CODES,
        RetryOn::RETRIABLE_HEADERS,
        RetryOn::HTTP3_POST_CONNECT_FAILURE,
        RetryOn::CANCELLED,
        RetryOn::DEADLINE_EXCEEDED,
        RetryOn::INTERNAL,
        RetryOn::RESOURCE_EXHAUSTED,
        RetryOn::UNAVAILABLE,
    ] {
        assert!(on.contains(f), "{f:?}");
    }
    assert!(!on.contains(RetryOn::ENVOY_RATE_LIMITED));
    assert_eq!(RetryOn::parse("").0, RetryOn(0));
}

fn policy(yaml: &str) -> RetryPolicy {
    let t = routes(&format!(
        "- {{match: {{prefix: /}}, route: {{cluster: c, retry_policy: {yaml}}}}}"
    ));
    (*action(&t, "/").1.retry_policy.unwrap()).clone()
}

#[test]
fn retriable_responses_and_resets() {
    let hm = |pairs: &[(&'static str, &str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    };
    let none = HeaderMap::new();
    let s = |c: u16| StatusCode::from_u16(c).unwrap();
    let p = policy("{retry_on: '5xx'}");
    assert!(p.retriable_response(s(500), &none));
    assert!(!p.retriable_response(s(409), &none));
    assert!(p.retriable_reset(false) && p.retriable_reset(true));
    let p = policy("{retry_on: 'gateway-error,retriable-4xx'}");
    assert!(p.retriable_response(s(503), &none));
    assert!(!p.retriable_response(s(500), &none));
    assert!(p.retriable_response(s(409), &none));
    let p = policy("{retry_on: 'retriable-status-codes', retriable_status_codes: [418]}");
    assert!(p.retriable_response(s(418), &none));
    assert!(!p.retriable_response(s(503), &none));
    let p = policy(
        "{retry_on: 'retriable-headers', retriable_headers: [{name: x-retry, exact_match: yes}]}",
    );
    assert!(p.retriable_response(s(200), &hm(&[("x-retry", "yes")])));
    assert!(!p.retriable_response(s(200), &none));
    let p = policy("{retry_on: 'unavailable,cancelled'}");
    assert!(p.retriable_response(s(200), &hm(&[("grpc-status", "14")])));
    assert!(p.retriable_response(s(200), &hm(&[("grpc-status", "1")])));
    assert!(!p.retriable_response(s(200), &hm(&[("grpc-status", "13")])));
    assert!(!p.retriable_reset(false));
    let p = policy("{retry_on: '5xx'}");
    assert!(!p.retriable_response(s(503), &hm(&[("x-envoy-ratelimited", "1")])));
    let p = policy("{retry_on: 'connect-failure,refused-stream'}");
    assert!(p.retriable_reset(true));
    assert!(!p.retriable_reset(false));
    assert!(p.retriable_reset_reason(ResetReason::RefusedStream, true));
    assert!(!p.retriable_reset_reason(ResetReason::Overflow, false));
    let p = policy("{retry_on: 'reset-before-request'}");
    assert!(p.retriable_reset_reason(ResetReason::Reset, false));
    assert!(!p.retriable_reset_reason(ResetReason::Reset, true));
    let p = policy(
        "{retry_on: '5xx', retriable_request_headers: [{name: ':method', exact_match: GET}]}",
    );
    assert!(!p.request_retriable(&none));
}

#[test]
fn retry_policy_fields_and_backoff() {
    let p = policy(
        "{retry_on: '5xx', num_retries: 4, per_try_timeout: 2s, per_try_idle_timeout: 0s, \
         host_selection_retry_max_attempts: 5, \
         retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts}], \
         retry_back_off: {base_interval: 0.1s}}",
    );
    assert_eq!(p.num_retries, 4);
    assert_eq!(p.per_try_timeout, Some(Duration::from_secs(2)));
    assert_eq!(p.per_try_idle_timeout, None);
    assert_eq!(p.host_selection_retry_max_attempts, 5);
    assert!(p.retry_other_hosts);
    assert_eq!(p.base_interval, Duration::from_millis(100));
    assert_eq!(p.max_interval, Duration::from_secs(1));
    let d = RetryPolicy::default();
    assert_eq!(d.num_retries, 1);
    assert_eq!(d.base_interval, Duration::from_millis(25));
    assert_eq!(d.max_interval, Duration::from_millis(250));
    // Interval 100, 200, 400, 800, then capped at 1000.
    for (attempt, interval) in [
        (1, 100),
        (2, 200),
        (3, 400),
        (4, 800),
        (5, 1000),
        (40, 1000),
    ] {
        assert_eq!(
            p.backoff(attempt, u64::MAX),
            Duration::from_millis(u64::MAX % interval)
        );
        assert_eq!(
            p.backoff(attempt, interval - 1),
            Duration::from_millis(interval - 1)
        );
        assert_eq!(p.backoff(attempt, interval), Duration::ZERO);
        for r in [0, 7, 12345, 987_654_321] {
            assert!(p.backoff(attempt, r) < Duration::from_millis(interval));
        }
    }
    assert!(d.backoff(0, 24) <= d.max_interval);
}
