use super::*;
use crate::config::resource_from_json;

fn from_json<T: prost::Message + Name + Default>(v: serde_json::Value) -> Result<T, ConfigError> {
    resource_from_json(&v, true)
}

fn generic(yaml: &str) -> Result<RpcRouteTable, ConfigError> {
    let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    let rc: gp_pb::RouteConfiguration = from_json(v).unwrap();
    RpcRouteTable::compile(&rc)
}

fn req(service: &str, method: &str, props: &[(&str, &str)]) -> RouteHeaders {
    let field = |k: &str| {
        props
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    RouteHeaders {
        group: field("group"),
        service: Some(service.into()),
        method: Some(method.into()),
        attachments: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn cluster_of(t: &RpcRouteTable, h: &RouteHeaders) -> Option<String> {
    t.find(h).map(|r| r.cluster.pick(0).to_owned())
}

const ACTION: &str =
    "type.googleapis.com/envoy.extensions.filters.network.generic_proxy.action.v3.RouteAction";

#[test]
fn virtual_hosts_and_matcher_list_route_by_service_method_and_property() {
    let t = generic(&format!(
        r#"
name: rc
virtual_hosts:
- name: demo
  hosts: ["org.apache.dubbo.samples.DemoService"]
  routes:
    matcher_list:
      matchers:
      - predicate:
          single_predicate:
            input:
              name: method
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.MethodMatchInput
            value_match: {{ exact: sayHello }}
        on_match:
          action:
            name: hello
            typed_config: {{ "@type": {ACTION}, cluster: a, timeout: 2s }}
      - predicate:
          single_predicate:
            input:
              name: request
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.RequestMatchInput
            custom_match:
              name: request
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.RequestMatcher
                method: {{ prefix: get }}
                properties:
                - name: group
                  string_match: {{ exact: blue }}
        on_match:
          action:
            name: get-blue
            typed_config: {{ "@type": {ACTION}, cluster: b, retry_policy: {{ num_retries: 2 }} }}
    on_no_match:
      action:
        name: rest
        typed_config: {{ "@type": {ACTION}, cluster: c }}
routes:
  matcher_tree:
    input:
      name: service
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.matcher.v3.ServiceMatchInput
    prefix_match_map:
      map:
        "org.":
          action:
            name: org
            typed_config: {{ "@type": {ACTION}, cluster: d, timeout: 0s }}
"#
    ))
    .unwrap();
    let s = "org.apache.dubbo.samples.DemoService";
    assert_eq!(
        cluster_of(&t, &req(s, "sayHello", &[])).as_deref(),
        Some("a")
    );
    let r = t.find(&req(s, "sayHello", &[])).unwrap();
    assert_eq!(r.timeout, Some(Duration::from_secs(2)));
    assert_eq!(r.name, "hello");
    assert_eq!(
        cluster_of(&t, &req(s, "getUser", &[("group", "blue")])).as_deref(),
        Some("b")
    );
    assert_eq!(
        t.find(&req(s, "getUser", &[("group", "blue")]))
            .unwrap()
            .num_retries,
        2
    );
    assert_eq!(
        cluster_of(&t, &req(s, "getUser", &[])).as_deref(),
        Some("c")
    );
    let other = t.find(&req("org.x.Other", "m", &[])).unwrap();
    assert_eq!(other.cluster.pick(0), "d");
    assert_eq!(other.timeout, None);
    assert_eq!(other.num_retries, 0);
    assert!(t.find(&req("com.x", "m", &[])).is_none());
}

#[test]
fn bad_route_configs_are_errors_naming_the_field() {
    let e = generic(
        r#"
name: rc
routes:
  matcher_list:
    matchers:
    - predicate:
        single_predicate:
          input:
            name: x
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.router.v3.Router }
          value_match: { exact: a }
      on_match: { action: { name: a, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.generic_proxy.router.v3.Router } } }
"#,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(
            "unsupported generic_proxy match input type.googleapis.com/envoy.extensions.filters.network.generic_proxy.router.v3.Router"
        ),
        "{e}"
    );
    assert!(
        e.path
            .starts_with("routes.matcher_list.matchers[0].predicate"),
        "{e}"
    );
    let e = generic("name: rc").unwrap_err();
    assert!(e.reason.contains("needs routes or virtual_hosts"), "{e}");
}

#[test]
fn dubbo_proxy_route_config_compiles_to_the_same_model() {
    let v: serde_json::Value = serde_yaml_ng::from_str(
        r#"
- name: local_route
  interface: org.apache.dubbo.samples.DemoService
  version: "1.0.0"
  routes:
  - match: { method: { name: { exact: sayHello } } }
    route: { cluster: a }
  - match: { method: { name: { prefix: "say" } }, headers: [{ name: env, exact_match: canary }] }
    route: { cluster: canary }
  - match: {}
    route: { cluster: b }
- name: any
  interface: "*"
  routes:
  - match: {}
    route: { cluster: fallback }
"#,
    )
    .unwrap();
    let list: Vec<dubbo_pb::RouteConfiguration> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|v| from_json(v.clone()).unwrap())
        .collect();
    let t = RpcRouteTable::compile_dubbo(&list).unwrap();
    let s = "org.apache.dubbo.samples.DemoService";
    let with_version = |m: &str, extra: &[(&str, &str)]| {
        let mut h = req(s, m, extra);
        h.version = Some("1.0.0".into());
        h
    };
    assert_eq!(
        cluster_of(&t, &with_version("sayHello", &[])).as_deref(),
        Some("a")
    );
    assert_eq!(
        cluster_of(&t, &with_version("sayBye", &[("env", "canary")])).as_deref(),
        Some("canary")
    );
    assert_eq!(
        cluster_of(&t, &with_version("other", &[])).as_deref(),
        Some("b")
    );
    // The wrong version matches none of the interface's routes.
    assert_eq!(cluster_of(&t, &req(s, "sayHello", &[])), None);
    assert_eq!(
        cluster_of(&t, &req("x.Y", "m", &[])).as_deref(),
        Some("fallback")
    );
}

#[test]
fn services_pick_virtual_hosts_by_envoys_domain_rules() {
    let vh = |name: &str, hosts: &str, cluster: &str| {
        format!(
            r#"
- name: {name}
  hosts: {hosts}
  routes:
    on_no_match:
      action:
        name: {name}
        typed_config: {{ "@type": {ACTION}, cluster: {cluster} }}"#
        )
    };
    let t = generic(&format!(
        "name: rc\nvirtual_hosts:{}{}{}{}",
        vh("any", r#"["*"]"#, "any"),
        vh("short", r#"["*.Service"]"#, "short"),
        vh("long", r#"["*.DemoService", "org.*"]"#, "long"),
        vh("exact", r#"["org.a.DemoService"]"#, "exact"),
    ))
    .unwrap();
    let c = |s: &str| cluster_of(&t, &req(s, "m", &[]));
    assert_eq!(c("org.a.DemoService").as_deref(), Some("exact"));
    // The longest suffix wins over an earlier, shorter one.
    assert_eq!(c("com.b.DemoService").as_deref(), Some("long"));
    assert_eq!(c("com.b.Service").as_deref(), Some("short"));
    assert_eq!(c("org.c.Other").as_deref(), Some("long"));
    assert_eq!(c("net.Other").as_deref(), Some("any"));
    // Service names keep their case.
    assert_eq!(c("com.b.demoservice").as_deref(), Some("any"));
    // A host listed twice is an error naming it.
    let e = generic(&format!(
        "name: rc\nvirtual_hosts:{}{}",
        vh("a", r#"["x.*"]"#, "a"),
        vh("b", r#"["x.*"]"#, "b"),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("virtual_hosts[1].hosts[0]"), "{e}");
}
