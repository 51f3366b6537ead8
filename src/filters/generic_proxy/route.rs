//! The generic proxy's route table, compiled once: Envoy's generic_proxy `RouteConfiguration`
//! (an `xds.type.matcher.v3.Matcher` tree over the request's service, method and properties,
//! with `RouteAction`s as leaves, optionally per virtual host) and dubbo_proxy's
//! `RouteConfiguration` list (interface, group, version, method name) compile to the same
//! model. Matching is a pure function of the request's [`RouteHeaders`].

use crate::config::StringMatch;
use crate::config::{self, ConfigError, Within, typed_config};
use crate::filters::tcp_proxy::TcpCluster;
use crate::protocol::xprotocol::RouteHeaders;
use crate::router::{DomainError, DomainTable};
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::filters::network::dubbo_proxy::v3 as dubbo_pb;
use envoy_types::pb::envoy::extensions::filters::network::generic_proxy::action::v3 as action_pb;
use envoy_types::pb::envoy::extensions::filters::network::generic_proxy::matcher::v3 as gmatch_pb;
use envoy_types::pb::envoy::extensions::filters::network::generic_proxy::v3 as gp_pb;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;
use envoy_types::pb::xds::core::v3 as xds_core_pb;
use envoy_types::pb::xds::r#type::matcher::v3 as xmatch_pb;
use prost::Name;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Where a matched request goes (`generic_proxy.action.v3.RouteAction`).
#[derive(Debug, Clone)]
pub struct RpcRoute {
    /// `name`.
    pub name: String,
    /// `cluster` / `weighted_clusters`.
    pub cluster: TcpCluster,
    /// `timeout`: how long to wait for the response. Envoy's default is 15 s; zero disables.
    pub timeout: Option<Duration>,
    /// `retry_policy.num_retries`: further attempts after a connect failure or an upstream
    /// reset (default 0: generic_proxy retries only when asked to).
    pub num_retries: u32,
}

/// Envoy generic_proxy's default route timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A request property a predicate reads.
#[derive(Debug, Clone)]
enum Input {
    /// `ServiceMatchInput`, `HostMatchInput`, `PathMatchInput`: the service.
    Service,
    /// `MethodMatchInput`.
    Method,
    /// `PropertyMatchInput`.
    Property(String),
}

impl Input {
    fn read<'a>(&self, h: &'a RouteHeaders) -> Option<&'a str> {
        match self {
            Input::Service => h.service.as_deref(),
            Input::Method => h.method.as_deref(),
            Input::Property(k) => h.get(k),
        }
    }
}

#[derive(Debug, Clone)]
enum Predicate {
    Single(Input, StringMatch),
    /// `RequestMatchInput` with a `RequestMatcher`: every field given must match.
    Request(Vec<(Input, StringMatch)>),
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
}

impl Predicate {
    fn matches(&self, h: &RouteHeaders) -> bool {
        match self {
            Predicate::Single(i, m) => i.read(h).is_some_and(|v| m.matches(v)),
            Predicate::Request(all) => all
                .iter()
                .all(|(i, m)| i.read(h).is_some_and(|v| m.matches(v))),
            Predicate::And(ps) => ps.iter().all(|p| p.matches(h)),
            Predicate::Or(ps) => ps.iter().any(|p| p.matches(h)),
            Predicate::Not(p) => !p.matches(h),
        }
    }
}

#[derive(Debug, Clone)]
enum OnMatch {
    Route(Arc<RpcRoute>),
    Matcher(Box<Matcher>),
}

impl OnMatch {
    fn find(&self, h: &RouteHeaders) -> Option<&Arc<RpcRoute>> {
        match self {
            OnMatch::Route(r) => Some(r),
            OnMatch::Matcher(m) => m.find(h),
        }
    }
}

#[derive(Debug, Clone)]
enum Tree {
    List(Vec<(Predicate, OnMatch)>),
    Exact(Input, HashMap<String, OnMatch>),
    /// Longest prefix first.
    Prefix(Input, Vec<(String, OnMatch)>),
}

/// A compiled `xds.type.matcher.v3.Matcher` whose actions are routes.
#[derive(Debug, Clone)]
pub struct Matcher {
    tree: Tree,
    on_no_match: Option<Box<OnMatch>>,
}

impl Matcher {
    /// The route for a request, if any.
    pub fn find(&self, h: &RouteHeaders) -> Option<&Arc<RpcRoute>> {
        let hit = match &self.tree {
            Tree::List(list) => list
                .iter()
                .find(|(p, _)| p.matches(h))
                .and_then(|(_, m)| m.find(h)),
            Tree::Exact(i, map) => i.read(h).and_then(|v| map.get(v)).and_then(|m| m.find(h)),
            Tree::Prefix(i, list) => i.read(h).and_then(|v| {
                list.iter()
                    .filter(|(p, _)| v.starts_with(p.as_str()))
                    .find_map(|(_, m)| m.find(h))
            }),
        };
        hit.or_else(|| self.on_no_match.as_ref().and_then(|m| m.find(h)))
    }
}

/// The compiled route table of one generic proxy.
#[derive(Debug, Clone, Default)]
pub struct RpcRouteTable {
    /// `name`.
    pub name: String,
    /// The routes of each virtual host, by index in `hosts`.
    virtual_hosts: Vec<Matcher>,
    /// Service names (`hosts`, with `*` wildcards at either end) to virtual hosts, chosen as
    /// Envoy's generic_proxy does: the HTTP router's domain rules.
    hosts: DomainTable,
    default: Option<Matcher>,
}

impl RpcRouteTable {
    /// The route for a request: the first virtual host whose hosts match the service (exact
    /// names before wildcards, as Envoy), else the table's own `routes`.
    pub fn find(&self, h: &RouteHeaders) -> Option<&Arc<RpcRoute>> {
        let service = h.service.as_deref().unwrap_or("");
        match self
            .hosts
            .find(service)
            .and_then(|i| self.virtual_hosts.get(i))
        {
            Some(routes) => routes.find(h),
            None => self.default.as_ref().and_then(|m| m.find(h)),
        }
    }

    /// Compile generic_proxy's `RouteConfiguration`.
    pub fn compile(rc: &gp_pb::RouteConfiguration) -> Result<Self, ConfigError> {
        let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
        let mut hosts = DomainTable::default();
        for (i, vh) in rc.virtual_hosts.iter().enumerate() {
            let path = format!("virtual_hosts[{i}]");
            for (j, host) in vh.hosts.iter().enumerate() {
                hosts.insert(host, i).map_err(|e| {
                    let why = match e {
                        DomainError::Duplicate => "is listed by an earlier virtual host",
                        DomainError::Empty => "must not be empty",
                    };
                    ConfigError::new(format!("{path}.hosts[{j}]"), format!("{host:?} {why}"))
                })?;
            }
            if vh.hosts.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.hosts"),
                    "needs at least one host",
                ));
            }
            let routes = vh
                .routes
                .as_ref()
                .ok_or_else(|| ConfigError::new(format!("{path}.routes"), "is required"))?;
            virtual_hosts.push(compile_matcher(routes, 0).within(format!("{path}.routes"))?);
        }
        let default = rc
            .routes
            .as_ref()
            .map(|m| compile_matcher(m, 0))
            .transpose()
            .within("routes")?;
        if default.is_none() && virtual_hosts.is_empty() {
            return Err(ConfigError::new(
                "routes",
                "a route configuration needs routes or virtual_hosts",
            ));
        }
        Ok(Self {
            name: rc.name.clone(),
            virtual_hosts,
            hosts,
            default,
        })
    }

    /// Compile dubbo_proxy's `route_config` list: one virtual host per interface (`*` for
    /// any), whose routes match the method name, the group and version of the configuration,
    /// and header matchers on attachments (exact, prefix, suffix, present).
    pub fn compile_dubbo(list: &[dubbo_pb::RouteConfiguration]) -> Result<Self, ConfigError> {
        let mut virtual_hosts = Vec::with_capacity(list.len());
        let mut hosts = DomainTable::default();
        for (i, rc) in list.iter().enumerate() {
            let path = format!("route_config[{i}]");
            let mut routes = Vec::with_capacity(rc.routes.len());
            for (j, r) in rc.routes.iter().enumerate() {
                let rpath = format!("{path}.routes[{j}]");
                let mut all = Vec::new();
                if !rc.group.is_empty() {
                    all.push(exact(Input::Property("group".into()), &rc.group));
                }
                if !rc.version.is_empty() {
                    all.push(exact(Input::Property("version".into()), &rc.version));
                }
                if let Some(m) = &r.r#match {
                    if let Some(name) = m.method.as_ref().and_then(|mm| mm.name.as_ref()) {
                        all.push(Predicate::Single(
                            Input::Method,
                            StringMatch::compile(name)
                                .within(format!("{rpath}.match.method.name"))?,
                        ));
                    }
                    if m.method
                        .as_ref()
                        .is_some_and(|mm| !mm.params_match.is_empty())
                    {
                        return Err(ConfigError::new(
                            format!("{rpath}.match.method.params_match"),
                            "matching on parameters is not supported",
                        ));
                    }
                    for (k, h) in m.headers.iter().enumerate() {
                        all.push(
                            header_predicate(h).within(format!("{rpath}.match.headers[{k}]"))?,
                        );
                    }
                }
                let action = r
                    .route
                    .as_ref()
                    .ok_or_else(|| ConfigError::new(format!("{rpath}.route"), "is required"))?;
                use dubbo_pb::route_action::ClusterSpecifier;
                let cluster = match &action.cluster_specifier {
                    Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => {
                        TcpCluster::Single(c.clone())
                    }
                    Some(ClusterSpecifier::WeightedClusters(w)) => {
                        weighted(w).within(format!("{rpath}.route.weighted_clusters"))?
                    }
                    _ => {
                        return Err(ConfigError::new(
                            format!("{rpath}.route"),
                            "one of cluster or weighted_clusters is required",
                        ));
                    }
                };
                let route = Arc::new(RpcRoute {
                    name: String::new(),
                    cluster,
                    timeout: Some(DEFAULT_TIMEOUT),
                    num_retries: 0,
                });
                routes.push((Predicate::And(all), OnMatch::Route(route)));
            }
            let interface = if rc.interface.is_empty() {
                "*"
            } else {
                rc.interface.as_str()
            };
            // A later configuration for the same interface is never reached, as in a list
            // searched in order.
            let _ = hosts.insert(interface, virtual_hosts.len());
            virtual_hosts.push(Matcher {
                tree: Tree::List(routes),
                on_no_match: None,
            });
        }
        Ok(Self {
            name: list.first().map(|r| r.name.clone()).unwrap_or_default(),
            virtual_hosts,
            hosts,
            default: None,
        })
    }
}

fn exact(input: Input, value: &str) -> Predicate {
    Predicate::Single(input, StringMatch::Exact(value.to_owned(), false))
}

/// A dubbo_proxy header matcher over the attachments (the forms Istio and Envoy's docs use).
fn header_predicate(
    h: &envoy_types::pb::envoy::config::route::v3::HeaderMatcher,
) -> Result<Predicate, ConfigError> {
    use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier as S;
    let input = Input::Property(h.name.clone());
    let p = match &h.header_match_specifier {
        Some(S::StringMatch(m)) => Predicate::Single(input, StringMatch::compile(m)?),
        #[allow(deprecated)]
        Some(S::ExactMatch(v)) => exact(input, v),
        #[allow(deprecated)]
        Some(S::PrefixMatch(v)) => Predicate::Single(input, StringMatch::Prefix(v.clone(), false)),
        #[allow(deprecated)]
        Some(S::SuffixMatch(v)) => Predicate::Single(input, StringMatch::Suffix(v.clone(), false)),
        Some(S::PresentMatch(true)) | None => {
            Predicate::Single(input, StringMatch::Prefix(String::new(), false))
        }
        Some(_) => {
            return Err(ConfigError::new(
                "header_match_specifier",
                "only string_match, exact, prefix, suffix and present matches are supported",
            ));
        }
    };
    Ok(if h.invert_match {
        Predicate::Not(Box::new(p))
    } else {
        p
    })
}

fn weighted(
    w: &envoy_types::pb::envoy::config::route::v3::WeightedCluster,
) -> Result<TcpCluster, ConfigError> {
    let mut total = 0u64;
    let mut list = Vec::new();
    for (i, c) in w.clusters.iter().enumerate() {
        if c.name.is_empty() {
            return Err(ConfigError::new(
                format!("clusters[{i}].name"),
                "must not be empty",
            ));
        }
        let weight = c.weight.as_ref().map_or(0, |v| u64::from(v.value));
        if weight == 0 {
            continue;
        }
        total += weight;
        list.push((c.name.clone(), total));
    }
    if total == 0 {
        return Err(ConfigError::new(
            "clusters",
            "needs a cluster with a positive weight",
        ));
    }
    Ok(TcpCluster::Weighted(list, total))
}

/// Matchers nest; a tree deeper than this is refused (a bound on config-time recursion).
const MAX_DEPTH: usize = 16;

fn compile_matcher(m: &xmatch_pb::Matcher, depth: usize) -> Result<Matcher, ConfigError> {
    if depth > MAX_DEPTH {
        return Err(ConfigError::new(
            "matcher",
            format!("matchers nest deeper than {MAX_DEPTH}"),
        ));
    }
    use xmatch_pb::matcher::MatcherType;
    use xmatch_pb::matcher::matcher_tree::TreeType;
    let tree = match &m.matcher_type {
        Some(MatcherType::MatcherList(list)) => {
            let mut out = Vec::with_capacity(list.matchers.len());
            for (i, fm) in list.matchers.iter().enumerate() {
                let path = format!("matcher_list.matchers[{i}]");
                let p = fm
                    .predicate
                    .as_ref()
                    .ok_or_else(|| ConfigError::new(format!("{path}.predicate"), "is required"))?;
                let pred = compile_predicate(p, depth).within(format!("{path}.predicate"))?;
                let on = fm
                    .on_match
                    .as_ref()
                    .ok_or_else(|| ConfigError::new(format!("{path}.on_match"), "is required"))?;
                out.push((
                    pred,
                    compile_on_match(on, depth).within(format!("{path}.on_match"))?,
                ));
            }
            Tree::List(out)
        }
        Some(MatcherType::MatcherTree(t)) => {
            let input = compile_input(t.input.as_ref()).within("matcher_tree.input")?;
            let map = |mm: &xmatch_pb::matcher::matcher_tree::MatchMap, field: &str| {
                let mut out = Vec::with_capacity(mm.map.len());
                let mut keys: Vec<_> = mm.map.keys().collect();
                keys.sort();
                for k in keys {
                    let on = &mm.map[k];
                    out.push((
                        k.clone(),
                        compile_on_match(on, depth).within(format!("matcher_tree.{field}[{k}]"))?,
                    ));
                }
                Ok::<_, ConfigError>(out)
            };
            match &t.tree_type {
                Some(TreeType::ExactMatchMap(mm)) => {
                    Tree::Exact(input, map(mm, "exact_match_map")?.into_iter().collect())
                }
                Some(TreeType::PrefixMatchMap(mm)) => {
                    let mut list = map(mm, "prefix_match_map")?;
                    list.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
                    Tree::Prefix(input, list)
                }
                Some(TreeType::CustomMatch(c)) => {
                    return Err(ConfigError::new(
                        "matcher_tree.custom_match",
                        format!("unsupported custom matcher {}", type_of(c)),
                    ));
                }
                None => {
                    return Err(ConfigError::new(
                        "matcher_tree",
                        "one of exact_match_map or prefix_match_map is required",
                    ));
                }
            }
        }
        None => Tree::List(Vec::new()),
    };
    let on_no_match = m
        .on_no_match
        .as_ref()
        .map(|o| compile_on_match(o, depth).map(Box::new))
        .transpose()
        .within("on_no_match")?;
    Ok(Matcher { tree, on_no_match })
}

fn type_of(c: &xds_core_pb::TypedExtensionConfig) -> String {
    match &c.typed_config {
        Some(any) => format!("{} ({})", c.name, any.type_url),
        None => c.name.clone(),
    }
}

fn compile_on_match(o: &xmatch_pb::matcher::OnMatch, depth: usize) -> Result<OnMatch, ConfigError> {
    use xmatch_pb::matcher::on_match::OnMatch as O;
    match &o.on_match {
        Some(O::Matcher(m)) => Ok(OnMatch::Matcher(Box::new(
            compile_matcher(m, depth + 1).within("matcher")?,
        ))),
        Some(O::Action(a)) => Ok(OnMatch::Route(Arc::new(
            compile_action(a).within("action")?,
        ))),
        None => Err(ConfigError::new(
            "on_match",
            "matcher or action is required",
        )),
    }
}

fn compile_predicate(
    p: &xmatch_pb::matcher::matcher_list::Predicate,
    depth: usize,
) -> Result<Predicate, ConfigError> {
    use xmatch_pb::matcher::matcher_list::predicate::MatchType;
    use xmatch_pb::matcher::matcher_list::predicate::single_predicate::Matcher as M;
    if depth > MAX_DEPTH {
        return Err(ConfigError::new(
            "predicate",
            format!("predicates nest deeper than {MAX_DEPTH}"),
        ));
    }
    let list = |ps: &[xmatch_pb::matcher::matcher_list::Predicate], field: &str| {
        ps.iter()
            .enumerate()
            .map(|(i, p)| compile_predicate(p, depth + 1).within(format!("{field}.predicate[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    match &p.match_type {
        Some(MatchType::SinglePredicate(s)) => {
            let input_cfg = s.input.as_ref();
            // `RequestMatchInput` goes with a `RequestMatcher` custom match.
            let is_request = input_cfg
                .and_then(|c| c.typed_config.as_ref())
                .is_some_and(|a| a.type_url == gmatch_pb::RequestMatchInput::type_url());
            match &s.matcher {
                Some(M::CustomMatch(c)) if is_request => {
                    let any = c.typed_config.as_ref().ok_or_else(|| {
                        ConfigError::new("custom_match.typed_config", "is required")
                    })?;
                    let rm: gmatch_pb::RequestMatcher =
                        typed_config(any)?.decode().within("custom_match")?;
                    Ok(Predicate::Request(
                        compile_request_matcher(&rm).within("custom_match")?,
                    ))
                }
                Some(M::ValueMatch(v)) if !is_request => {
                    let input = compile_input(input_cfg).within("single_predicate.input")?;
                    Ok(Predicate::Single(
                        input,
                        StringMatch::compile(&to_envoy_matcher(v))
                            .within("single_predicate.value_match")?,
                    ))
                }
                Some(M::CustomMatch(c)) => Err(ConfigError::new(
                    "single_predicate.custom_match",
                    format!("unsupported custom matcher {}", type_of(c)),
                )),
                _ => Err(ConfigError::new(
                    "single_predicate",
                    "a value_match (or a RequestMatcher with RequestMatchInput) is required",
                )),
            }
        }
        Some(MatchType::OrMatcher(l)) => Ok(Predicate::Or(list(&l.predicate, "or_matcher")?)),
        Some(MatchType::AndMatcher(l)) => Ok(Predicate::And(list(&l.predicate, "and_matcher")?)),
        Some(MatchType::NotMatcher(p)) => Ok(Predicate::Not(Box::new(
            compile_predicate(p, depth + 1).within("not_matcher")?,
        ))),
        None => Err(ConfigError::new("match_type", "is required")),
    }
}

fn compile_request_matcher(
    rm: &gmatch_pb::RequestMatcher,
) -> Result<Vec<(Input, StringMatch)>, ConfigError> {
    let mut all = Vec::new();
    for (field, input, m) in [
        ("host", Input::Service, &rm.host),
        ("path", Input::Service, &rm.path),
        ("method", Input::Method, &rm.method),
    ] {
        if let Some(m) = m {
            all.push((input, StringMatch::compile(m).within(field)?));
        }
    }
    for (i, p) in rm.properties.iter().enumerate() {
        let m = p.string_match.as_ref().ok_or_else(|| {
            ConfigError::new(format!("properties[{i}].string_match"), "is required")
        })?;
        all.push((
            Input::Property(p.name.clone()),
            StringMatch::compile(m).within(format!("properties[{i}].string_match"))?,
        ));
    }
    Ok(all)
}

/// `xds.type.matcher.v3.StringMatcher` as Envoy's own (the same fields).
fn to_envoy_matcher(m: &xmatch_pb::StringMatcher) -> matcher_pb::StringMatcher {
    use matcher_pb::string_matcher::MatchPattern as E;
    use xmatch_pb::string_matcher::MatchPattern as X;
    matcher_pb::StringMatcher {
        ignore_case: m.ignore_case,
        match_pattern: m.match_pattern.as_ref().map(|p| match p {
            X::Exact(s) => E::Exact(s.clone()),
            X::Prefix(s) => E::Prefix(s.clone()),
            X::Suffix(s) => E::Suffix(s.clone()),
            X::Contains(s) => E::Contains(s.clone()),
            X::SafeRegex(r) => E::SafeRegex(matcher_pb::RegexMatcher {
                regex: r.regex.clone(),
                ..Default::default()
            }),
            X::Custom(_) => E::Contains(String::new()),
        }),
    }
}

fn compile_input(c: Option<&xds_core_pb::TypedExtensionConfig>) -> Result<Input, ConfigError> {
    let any = c
        .and_then(|c| c.typed_config.as_ref())
        .ok_or_else(|| ConfigError::new("typed_config", "an input is required"))?;
    let tc = typed_config(any)?;
    let url = tc.type_url();
    if url == gmatch_pb::ServiceMatchInput::type_url()
        || url == gmatch_pb::HostMatchInput::type_url()
        || url == gmatch_pb::PathMatchInput::type_url()
    {
        Ok(Input::Service)
    } else if url == gmatch_pb::MethodMatchInput::type_url() {
        Ok(Input::Method)
    } else if url == gmatch_pb::PropertyMatchInput::type_url() {
        let p: gmatch_pb::PropertyMatchInput = tc.decode()?;
        if p.property_name.is_empty() {
            return Err(ConfigError::new("property_name", "must not be empty"));
        }
        Ok(Input::Property(p.property_name))
    } else {
        Err(ConfigError::new(
            "typed_config",
            format!("unsupported generic_proxy match input {url}"),
        ))
    }
}

fn compile_action(a: &xds_core_pb::TypedExtensionConfig) -> Result<RpcRoute, ConfigError> {
    let any = a
        .typed_config
        .as_ref()
        .ok_or_else(|| ConfigError::new("typed_config", "is required"))?;
    let tc = typed_config(any)?;
    if tc.type_url() != action_pb::RouteAction::type_url() {
        return Err(ConfigError::new(
            "typed_config",
            format!(
                "unsupported route action {} (expected {})",
                tc.type_url(),
                action_pb::RouteAction::type_url()
            ),
        ));
    }
    let r: action_pb::RouteAction = tc.decode()?;
    use action_pb::route_action::ClusterSpecifier;
    let cluster = match &r.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => TcpCluster::Single(c.clone()),
        Some(ClusterSpecifier::WeightedClusters(w)) => weighted(w).within("weighted_clusters")?,
        _ => {
            return Err(ConfigError::new(
                "cluster",
                "one of cluster or weighted_clusters is required",
            ));
        }
    };
    let num_retries = r
        .retry_policy
        .as_ref()
        .map_or(0, |p: &core_pb::RetryPolicy| {
            p.num_retries.as_ref().map_or(1, |n| n.value)
        });
    Ok(RpcRoute {
        name: if r.name.is_empty() {
            a.name.clone()
        } else {
            r.name
        },
        cluster,
        timeout: config::timeout_or_disabled(r.timeout.as_ref(), Some(DEFAULT_TIMEOUT)),
        num_retries: num_retries.min(10),
    })
}

#[cfg(test)]
mod tests;
