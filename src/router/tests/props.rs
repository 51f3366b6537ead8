use super::*;
use proptest::prelude::*;

fn rich_table() -> RouteTable {
    table(
        r#"
name: p
ignore_port_in_host_matching: true
virtual_hosts:
- {name: a, domains: ["a.com", "*.b.com", "c.*", "[::1]"], routes: [
    {match: {safe_regex: {regex: "/r/.*"}}, route: {cluster: c, regex_rewrite: {pattern: {regex: "r"}, substitution: "\\0x"}}},
    {match: {path_separated_prefix: /s, case_sensitive: false}, route: {cluster: c, prefix_rewrite: /t}},
    {match: {prefix: /h, headers: [{name: x, range_match: {start: 0, end: 9}}, {name: y, string_match: {contains: é, ignore_case: true}, invert_match: true, treat_missing_header_as_empty: true}]}, route: {cluster: c}},
    {match: {prefix: /q, query_parameters: [{name: k, string_match: {suffix: v}}], cookies: [{name: c, string_match: {prefix: x}}]}, route: {cluster: c, hash_policy: [{header: {header_name: x}}, {cookie: {name: c}}, {query_parameter: {name: k}}]}},
    {match: {prefix: /R}, redirect: {prefix_rewrite: /z, port_redirect: 81}},
    {match: {prefix: ""}, route: {cluster: c, prefix_rewrite: /p}}]}
- {name: d, domains: ["*"], routes: [{match: {prefix: /}, redirect: {https_redirect: true}}]}
"#,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn matching_never_panics(
        authority in ".{0,24}",
        path in "(/[^?]{0,10}(\\?.{0,10})?|.{0,16})",
        names in proptest::collection::vec("[a-z]{1,2}", 0..4),
        values in proptest::collection::vec("[ -~é]{0,8}", 0..4),
    ) {
        let t = rich_table();
        let mut headers = HeaderMap::new();
        for (n, v) in names.iter().zip(values.iter()) {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                headers.append(n, v);
            }
        }
        let method = Method::GET;
        let req = RequestInfo {
            authority: &authority,
            path: &path,
            method: &method,
            headers: &headers,
            downstream_remote: None,
        };
        let _ = t.virtual_host(&authority);
        if let Some(m) = t.find(&req) {
            match &m.route.action {
                Action::Forward(a) => {
                    let _ = a.rewrite_path(m.route, &path);
                    let _ = a.hash(&req);
                    let _ = a.pick_cluster(&headers, 3);
                }
                Action::Redirect(r) => {
                    let _ = r.location(m.route, &req, "http");
                }
                _ => {}
            }
            let mut h = headers.clone();
            m.apply_request_headers(&mut h, &ctx(Some(&headers)));
        }
    }

    #[test]
    fn first_matching_prefix_wins(
        prefixes in proptest::collection::vec("/[ab]{0,3}", 1..8),
        paths in proptest::collection::vec("/[ab]{0,4}", 1..8),
    ) {
        let list: String = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| format!("- {{name: r{i}, match: {{prefix: '{p}'}}, route: {{cluster: c}}}}\n"))
            .collect();
        let t = routes(&list);
        for path in &paths {
            let want = prefixes.iter().position(|p| path.starts_with(p.as_str()));
            let got = route_name(&t, &Req::new(path));
            prop_assert_eq!(got, want.map(|i| format!("r{i}")));
        }
    }
}
