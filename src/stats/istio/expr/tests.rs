use super::*;
use std::collections::HashMap;

/// A flat attribute table: `root.a.b` paths (keys written as `[k]`) to values.
struct Table(HashMap<String, Value<'static>>);

impl Table {
    fn new(entries: &[(&str, Value<'static>)]) -> Self {
        Table(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }
}

impl Attributes for Table {
    fn resolve(&self, root: &str, path: &[Seg<'_>]) -> Result<Value<'_>, EvalError> {
        let mut key = root.to_string();
        for s in path {
            match s {
                Seg::Field(f) => key.push_str(&format!(".{f}")),
                Seg::Key(k) => key.push_str(&format!("[{}]", k.print())),
            }
        }
        if let Some(v) = self.0.get(&key) {
            return Ok(v.clone());
        }
        // A prefix of a known path is a container.
        if self.0.keys().any(|k| k.starts_with(&key)) {
            return Ok(Value::Container("map"));
        }
        Err(EvalError::NotFound)
    }
}

fn str(s: &str) -> Value<'static> {
    Value::Str(Cow::Owned(s.into()))
}

fn eval(src: &str, t: &Table) -> Result<String, EvalError> {
    Expr::parse(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval(t)
        .map(|v| v.print())
}

fn table() -> Table {
    Table::new(&[
        ("request.host", str("reviews:9080")),
        ("request.headers[x-user]", str("jason")),
        ("request.protocol", str("HTTP/1.1")),
        ("response.code", Value::Int(503)),
        ("destination.port", Value::Int(9080)),
        ("xds.node.metadata[WORKLOAD_NAME]", str("productpage-v1")),
        ("xds.node.metadata[LABELS].app", str("productpage")),
        ("xds.node.metadata.LABELS.version", str("v1")),
        ("xds.route_name", str("client_route")),
        (
            "xds.cluster_metadata.filter_metadata.istio.services[0].name",
            str("server"),
        ),
        ("filter_state.upstream_peer.labels[role]", str("server")),
        (
            "node.metadata[ENVOY_PROMETHEUS_PORT]",
            Value::Double(15090.0),
        ),
    ])
}

#[test]
fn attribute_paths_and_literals() {
    let t = table();
    assert_eq!(eval("request.host", &t).unwrap(), "reviews:9080");
    assert_eq!(eval("request.headers['x-user']", &t).unwrap(), "jason");
    assert_eq!(eval("request.headers[\"x-user\"]", &t).unwrap(), "jason");
    assert_eq!(eval("'gateway'", &t).unwrap(), "gateway");
    assert_eq!(eval("\"it's\"", &t).unwrap(), "it's");
    assert_eq!(eval("'a\\'b\\n'", &t).unwrap(), "a'b\n");
    assert_eq!(
        eval("filter_state.upstream_peer.labels['role']", &t).unwrap(),
        "server"
    );
    assert_eq!(
        eval(
            "xds.cluster_metadata.filter_metadata.istio.services[0].name",
            &t
        )
        .unwrap(),
        "server"
    );
    assert_eq!(
        eval("node.metadata['ENVOY_PROMETHEUS_PORT']", &t).unwrap(),
        "15090"
    );
    assert_eq!(eval("response.code", &t).unwrap(), "503");
    assert_eq!(eval("true", &t).unwrap(), "true");
    assert_eq!(eval("null", &t).unwrap(), "NULL");
    assert_eq!(eval("7u", &t).unwrap(), "7");
    assert_eq!(eval("0x10", &t).unwrap(), "16");
    assert_eq!(eval("1.5", &t).unwrap(), "1.5");
}

#[test]
fn istios_customized_dimensions() {
    // The expressions of istio/proxy's customized stats test.
    let t = table();
    assert_eq!(
        eval("'_' + xds.node.metadata['WORKLOAD_NAME']", &t).unwrap(),
        "_productpage-v1"
    );
    assert_eq!(
        eval("'_' + xds.node.metadata['LABELS'].app", &t).unwrap(),
        "_productpage"
    );
    assert_eq!(
        eval("'_' + xds.node.metadata.LABELS.version", &t).unwrap(),
        "_v1"
    );
    assert_eq!(
        eval(
            "xds.route_name + \",\" + xds.route_name + \",\" + \
             xds.cluster_metadata.filter_metadata.istio.services[0].name",
            &t
        )
        .unwrap(),
        "client_route,client_route,server"
    );
    // An identifier nobody defines evaluates to an error (Istio: `unknown`).
    assert_eq!(eval("cannot_evaluate", &t), Err(EvalError::NotFound));
    assert!(matches!(
        Expr::parse("cannot _ parse | 1"),
        Err(ExprError::Invalid(_))
    ));
}

#[test]
fn operators_functions_and_conditions() {
    let t = table();
    assert_eq!(
        eval("has(request.host) ? request.host : 'none'", &t).unwrap(),
        "reviews:9080"
    );
    assert_eq!(
        eval("has(request.path) ? request.path : 'none'", &t).unwrap(),
        "none"
    );
    assert_eq!(eval("'x-user' in request.headers", &t).unwrap(), "true");
    assert_eq!(eval("'x-other' in request.headers", &t).unwrap(), "false");
    assert_eq!(eval("string(destination.port)", &t).unwrap(), "9080");
    assert_eq!(
        eval("string(destination.port) + '/tcp'", &t).unwrap(),
        "9080/tcp"
    );
    assert_eq!(
        eval("response.code >= 500 ? 'error' : 'ok'", &t).unwrap(),
        "error"
    );
    assert_eq!(
        eval("response.code / 100 * 100 + 1 - 1", &t).unwrap(),
        "500"
    );
    assert_eq!(eval("response.code % 100", &t).unwrap(), "3");
    assert_eq!(eval("-response.code", &t).unwrap(), "-503");
    assert_eq!(eval("!(response.code == 503)", &t).unwrap(), "false");
    assert_eq!(
        eval("response.code != 200 && request.host == 'reviews:9080'", &t).unwrap(),
        "true"
    );
    assert_eq!(eval("request.path == 'x' || true", &t).unwrap(), "true");
    assert_eq!(eval("false && request.path == 'x'", &t).unwrap(), "false");
    assert_eq!(eval("request.host.startsWith('rev')", &t).unwrap(), "true");
    assert_eq!(eval("request.host.endsWith(':9080')", &t).unwrap(), "true");
    assert_eq!(eval("request.host.contains('iew')", &t).unwrap(), "true");
    assert_eq!(eval("int('42') + 1", &t).unwrap(), "43");
    assert_eq!(eval("uint(response.code)", &t).unwrap(), "503");
    assert_eq!(eval("size(request.host)", &t).unwrap(), "12");
    assert_eq!(eval("'b' > 'a'", &t).unwrap(), "true");
    assert_eq!(eval("1.5 * 2.0", &t).unwrap(), "3");
}

#[test]
fn evaluation_errors_never_panic() {
    let t = table();
    for src in [
        "request.path",
        "request.host + 1",
        "response.code / 0",
        "9223372036854775807 + 1",
        "-(-9223372036854775807 - 1)",
        "uint(-1)",
        "int('x')",
        "response.code ? 'a' : 'b'",
        "request.host.app",
        "request.headers",
        "string(request.headers)",
        "(request.host + 'x').y",
    ] {
        let r = Expr::parse(src).unwrap().eval(&t);
        if src == "request.headers" {
            assert_eq!(r.map(|v| v.print()).unwrap(), "map value");
        } else {
            assert!(r.is_err(), "{src}: {r:?}");
        }
    }
}

#[test]
fn invalid_and_unsupported_are_told_apart() {
    for src in [
        "", "   ", "'open", "a.", "(a", "a[1", "a b", "1 +", "a | b", "has(a)", "a ? b", "#",
    ] {
        assert!(
            matches!(Expr::parse(src), Err(ExprError::Invalid(_))),
            "{src}"
        );
    }
    for src in [
        "request.path.matches('x')",
        "timestamp('2020-01-01T00:00:00Z')",
        "[1, 2]",
        "{'a': 1}",
        "r'raw'",
        "'''triple'''",
        "'\\x41'",
        "a.all(x, x)",
    ] {
        assert!(
            matches!(Expr::parse(src), Err(ExprError::Unsupported(_))),
            "{src}"
        );
    }
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert!(matches!(Expr::parse(&deep), Err(ExprError::Invalid(_))));
    let negs = format!("{}1", "-".repeat(100));
    assert!(matches!(Expr::parse(&negs), Err(ExprError::Invalid(_))));
}

#[test]
fn doubles_print_like_absl() {
    for (d, s) in [
        (15090.0, "15090"),
        (0.5, "0.5"),
        (123456.0, "123456"),
        (1234567.0, "1.23457e+06"),
        (0.0001, "0.0001"),
        (0.00001234, "1.234e-05"),
        (-2.5, "-2.5"),
        (1e21, "1e+21"),
        (100.0, "100"),
    ] {
        assert_eq!(format_g6(d), s, "{d}");
    }
}
