//! `Route.action`: forwarding (`RouteAction`), with cluster choice, path and host rewrites and
//! hashing for ring hash / maglev.

use super::hash::HashPolicy;
use super::headers::HeaderMutations;
use super::matcher::{fraction, path_without_query, search_regex};
use super::retry::{RetryCache, RetryPolicy};
use super::{RequestInfo, Route};
use crate::config::{ConfigError, Within, bool_or, duration, timeout_or_disabled};
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;
use http::{HeaderMap, HeaderName, StatusCode};
use regex::Regex;
use std::sync::Arc;
use std::time::Duration;

/// A regex substitution (`RegexMatchAndSubstitute`), the substitution converted from RE2's
/// `\1` syntax to the regex crate's `${1}`.
#[derive(Debug, Clone)]
pub struct RegexRewrite {
    regex: Regex,
    replacement: String,
}

impl RegexRewrite {
    /// Compile; paths relative to the `RegexMatchAndSubstitute` field.
    pub fn compile(r: &matcher_pb::RegexMatchAndSubstitute) -> Result<Self, ConfigError> {
        let pattern = r
            .pattern
            .as_ref()
            .ok_or_else(|| ConfigError::new("pattern", "is required"))?;
        let regex = search_regex(pattern).within("pattern")?;
        let mut replacement = String::with_capacity(r.substitution.len());
        let mut chars = r.substitution.chars();
        while let Some(c) = chars.next() {
            match c {
                '$' => replacement.push_str("$$"),
                '\\' => match chars.next() {
                    Some('\\') => replacement.push('\\'),
                    Some(d @ '0'..='9') => {
                        let n = d as usize - '0' as usize;
                        if n >= regex.captures_len() {
                            return Err(ConfigError::new(
                                "substitution",
                                format!(
                                    "\\{n} refers to a capture group the pattern does not have"
                                ),
                            ));
                        }
                        replacement.push_str(&format!("${{{n}}}"));
                    }
                    _ => {
                        return Err(ConfigError::new(
                            "substitution",
                            "'\\' must be followed by a digit or '\\'",
                        ));
                    }
                },
                c => replacement.push(c),
            }
        }
        Ok(RegexRewrite { regex, replacement })
    }

    /// Replace every match.
    pub fn apply(&self, s: &str) -> String {
        self.regex.replace_all(s, &self.replacement).into_owned()
    }
}

/// `RouteAction.cluster_specifier`.
#[derive(Debug, Clone)]
pub enum ClusterSpecifier {
    /// `cluster`.
    Cluster(String),
    /// `cluster_header`.
    Header(HeaderName),
    /// `weighted_clusters`.
    Weighted(Box<WeightedClusters>),
}

/// One `WeightedCluster.ClusterWeight`.
#[derive(Debug, Clone)]
pub struct ClusterWeight {
    /// `name` (empty when `cluster_header` is used).
    pub name: String,
    /// `cluster_header`.
    pub cluster_header: Option<HeaderName>,
    /// `weight`.
    pub weight: u32,
    /// `request/response_headers_to_add/remove` of this entry; applied before the route's.
    pub headers: HeaderMutations,
    /// `host_rewrite_literal`.
    pub host_rewrite_literal: Option<String>,
}

/// `RouteAction.weighted_clusters`.
#[derive(Debug, Clone)]
pub struct WeightedClusters {
    /// `clusters`, in config order.
    pub clusters: Vec<ClusterWeight>,
    /// Sum of the weights (> 0).
    pub total: u64,
    /// `random_value_specifier.header_name`: a request header whose numeric value replaces the
    /// random number. (`use_hash_policy` is not supported; the random number is used instead.)
    pub random_header: Option<HeaderName>,
}

impl WeightedClusters {
    #[allow(deprecated)]
    fn compile(w: &route_pb::WeightedCluster) -> Result<Self, ConfigError> {
        use route_pb::weighted_cluster::RandomValueSpecifier as R;
        use route_pb::weighted_cluster::cluster_weight::HostRewriteSpecifier as H;
        if w.clusters.is_empty() {
            return Err(ConfigError::new(
                "clusters",
                "at least one cluster is required",
            ));
        }
        let mut clusters = Vec::with_capacity(w.clusters.len());
        let mut total = 0u64;
        for (i, c) in w.clusters.iter().enumerate() {
            let at = format!("clusters[{i}]");
            let cluster_header = match (c.name.is_empty(), c.cluster_header.is_empty()) {
                (false, true) => None,
                (true, false) => {
                    Some(header(&c.cluster_header).within(format!("{at}.cluster_header"))?)
                }
                _ => {
                    return Err(ConfigError::new(
                        at,
                        "exactly one of name and cluster_header is required",
                    ));
                }
            };
            let weight = c.weight.as_ref().map_or(0, |w| w.value);
            total += u64::from(weight);
            clusters.push(ClusterWeight {
                name: c.name.clone(),
                cluster_header,
                weight,
                headers: HeaderMutations::compile(
                    &c.request_headers_to_add,
                    &c.request_headers_to_remove,
                    &c.response_headers_to_add,
                    &c.response_headers_to_remove,
                )
                .within(&at)?,
                host_rewrite_literal: c
                    .host_rewrite_specifier
                    .as_ref()
                    .map(|H::HostRewriteLiteral(h)| h.clone()),
            });
        }
        if let Some(t) = &w.total_weight
            && u64::from(t.value) != total
        {
            return Err(ConfigError::new(
                "total_weight",
                format!(
                    "sum of weights {total} does not equal total_weight {}",
                    t.value
                ),
            ));
        }
        if total == 0 {
            return Err(ConfigError::new(
                "clusters",
                "sum of weights must be greater than 0",
            ));
        }
        let random_header = match &w.random_value_specifier {
            Some(R::HeaderName(h)) => Some(header(h).within("header_name")?),
            _ => None,
        };
        Ok(WeightedClusters {
            clusters,
            total,
            random_header,
        })
    }

    /// The entry for `random` (or the value of `random_value_specifier.header_name`):
    /// `random % total` falls in the entry's `[begin, begin + weight)` in config order.
    pub fn pick(&self, headers: &HeaderMap, random: u64) -> Option<&ClusterWeight> {
        let random = self
            .random_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(random);
        let selected = random % self.total;
        let mut begin = 0u64;
        for c in &self.clusters {
            let end = begin + u64::from(c.weight);
            if selected < end {
                return Some(c);
            }
            begin = end;
        }
        None
    }
}

fn header(name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::new("", format!("invalid header name {name:?}")))
}

fn header_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// `RouteAction.request_mirror_policies` entry.
#[derive(Debug, Clone)]
pub struct MirrorPolicy {
    /// `cluster`.
    pub cluster: String,
    /// `cluster_header`.
    pub cluster_header: Option<HeaderName>,
    /// `runtime_fraction.default_value` as (numerator, denominator); `None`: always.
    pub fraction: Option<(u64, u64)>,
    /// `trace_sampled` (default true).
    pub trace_sampled: bool,
}

/// A compiled `envoy.config.route.v3.RouteAction`.
#[derive(Debug, Clone)]
pub struct RouteAction {
    /// `cluster_specifier`.
    pub cluster: ClusterSpecifier,
    /// `cluster_not_found_response_code` (503, 404 or 500).
    pub cluster_not_found_response_code: StatusCode,
    /// `timeout`: default 15s; an explicit 0 disables it (`None`).
    pub timeout: Option<Duration>,
    /// `idle_timeout`: `None` if unset (the HCM's `stream_idle_timeout` applies);
    /// `Some(ZERO)` if explicitly disabled.
    pub idle_timeout: Option<Duration>,
    /// `retry_policy`, else the virtual host's (resolved at compile time). Shared: Istio gives
    /// every route of a mesh the same policy, compiled once per table ([`RetryCache`]).
    pub retry_policy: Option<Arc<RetryPolicy>>,
    /// `hash_policy`.
    pub hash_policy: Vec<HashPolicy>,
    /// `upgrade_configs`: (lowercased `upgrade_type`, `enabled`).
    pub upgrade_configs: Vec<(String, bool)>,
    /// `max_stream_duration.max_stream_duration`: `None` if unset (the HCM's applies);
    /// `Some(ZERO)` if explicitly disabled.
    pub max_stream_duration: Option<Duration>,
    /// `max_stream_duration.grpc_timeout_header_max` (`Some(ZERO)`: no cap).
    pub grpc_timeout_header_max: Option<Duration>,
    /// `max_stream_duration.grpc_timeout_header_offset`.
    pub grpc_timeout_header_offset: Option<Duration>,
    /// `auto_host_rewrite`.
    pub auto_host_rewrite: bool,
    /// `host_rewrite_literal`.
    pub host_rewrite_literal: Option<String>,
    /// `host_rewrite_header`.
    pub host_rewrite_header: Option<HeaderName>,
    /// `host_rewrite_path_regex`.
    pub host_rewrite_path_regex: Option<Box<RegexRewrite>>,
    /// `append_x_forwarded_host`.
    pub append_x_forwarded_host: bool,
    /// `prefix_rewrite`.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite`.
    pub regex_rewrite: Option<Box<RegexRewrite>>,
    /// `request_mirror_policies`.
    pub request_mirror_policies: Vec<MirrorPolicy>,
    /// The value of `x-envoy-expected-rq-timeout-ms` the router sends upstream: the per-try
    /// timeout, else the route timeout (computed once, not per request).
    pub expected_timeout_header: Option<http::HeaderValue>,
}

impl RouteAction {
    /// Compile; error paths are relative to `route`. `vh_retry` is the virtual host's policy;
    /// retry policies are shared through `retries` with the table's other routes.
    #[allow(deprecated)]
    pub(crate) fn compile(
        a: &route_pb::RouteAction,
        vh_retry: Option<&Arc<RetryPolicy>>,
        retries: &mut RetryCache,
    ) -> Result<Self, ConfigError> {
        use route_pb::route_action::ClusterNotFoundResponseCode as Nf;
        use route_pb::route_action::ClusterSpecifier as C;
        use route_pb::route_action::HostRewriteSpecifier as H;
        let cluster = match &a.cluster_specifier {
            Some(C::Cluster(c)) if !c.is_empty() => ClusterSpecifier::Cluster(c.clone()),
            Some(C::Cluster(_)) => return Err(ConfigError::new("cluster", "must not be empty")),
            Some(C::ClusterHeader(h)) => {
                ClusterSpecifier::Header(header(h).within("cluster_header")?)
            }
            Some(C::WeightedClusters(w)) => ClusterSpecifier::Weighted(Box::new(
                WeightedClusters::compile(w).within("weighted_clusters")?,
            )),
            Some(C::ClusterSpecifierPlugin(_) | C::InlineClusterSpecifierPlugin(_)) => {
                return Err(ConfigError::new(
                    "cluster_specifier_plugin",
                    "cluster specifier plugins are not supported",
                ));
            }
            None => return Err(ConfigError::new("cluster_specifier", "is required")),
        };
        let cluster_not_found_response_code = match Nf::try_from(a.cluster_not_found_response_code)
        {
            Ok(Nf::NotFound) => StatusCode::NOT_FOUND,
            Ok(Nf::InternalServerError) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let retry_policy = match &a.retry_policy {
            Some(p) => Some(retries.compile(p).within("retry_policy")?),
            None => vh_retry.cloned(),
        };
        let hash_policy = a
            .hash_policy
            .iter()
            .enumerate()
            .map(|(i, h)| HashPolicy::compile(h).within(format!("hash_policy[{i}]")))
            .collect::<Result<_, _>>()?;
        let mut upgrade_configs: Vec<(String, bool)> = Vec::new();
        for (i, u) in a.upgrade_configs.iter().enumerate() {
            let t = u.upgrade_type.to_ascii_lowercase();
            if t.is_empty() || upgrade_configs.iter().any(|(x, _)| *x == t) {
                return Err(ConfigError::new(
                    format!("upgrade_configs[{i}].upgrade_type"),
                    format!("empty or duplicate upgrade {:?}", u.upgrade_type),
                ));
            }
            upgrade_configs.push((t, bool_or(u.enabled.as_ref(), true)));
        }
        let msd = a.max_stream_duration.as_ref();
        let timeout = timeout_or_disabled(a.timeout.as_ref(), Some(Duration::from_secs(15)));
        let expected_timeout_header = retry_policy
            .as_ref()
            .and_then(|p| p.per_try_timeout)
            .or(timeout)
            .map(|t| http::HeaderValue::from(t.as_millis() as u64));
        let mut out = RouteAction {
            cluster,
            cluster_not_found_response_code,
            timeout,
            idle_timeout: duration(a.idle_timeout.as_ref()),
            retry_policy,
            hash_policy,
            upgrade_configs,
            max_stream_duration: msd.and_then(|m| duration(m.max_stream_duration.as_ref())),
            grpc_timeout_header_max: msd.and_then(|m| duration(m.grpc_timeout_header_max.as_ref())),
            grpc_timeout_header_offset: msd
                .and_then(|m| duration(m.grpc_timeout_header_offset.as_ref())),
            auto_host_rewrite: false,
            host_rewrite_literal: None,
            host_rewrite_header: None,
            host_rewrite_path_regex: None,
            append_x_forwarded_host: a.append_x_forwarded_host,
            prefix_rewrite: (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone()),
            regex_rewrite: a
                .regex_rewrite
                .as_ref()
                .map(RegexRewrite::compile)
                .transpose()
                .within("regex_rewrite")?
                .map(Box::new),
            request_mirror_policies: Vec::new(),
            expected_timeout_header,
        };
        if out.prefix_rewrite.is_some() && out.regex_rewrite.is_some() {
            return Err(ConfigError::new(
                "regex_rewrite",
                "cannot specify both prefix_rewrite and regex_rewrite",
            ));
        }
        if a.path_rewrite_policy.is_some() || !a.path_rewrite.is_empty() {
            return Err(ConfigError::new(
                "path_rewrite_policy",
                "path_rewrite_policy and path_rewrite are not supported",
            ));
        }
        match &a.host_rewrite_specifier {
            Some(H::HostRewriteLiteral(h)) => out.host_rewrite_literal = Some(h.clone()),
            Some(H::AutoHostRewrite(b)) => out.auto_host_rewrite = b.value,
            Some(H::HostRewriteHeader(h)) => {
                out.host_rewrite_header = Some(header(h).within("host_rewrite_header")?)
            }
            Some(H::HostRewritePathRegex(r)) => {
                out.host_rewrite_path_regex = Some(Box::new(
                    RegexRewrite::compile(r).within("host_rewrite_path_regex")?,
                ))
            }
            Some(H::HostRewrite(_)) => {
                return Err(ConfigError::new("host_rewrite", "is not supported"));
            }
            None => {}
        }
        for (i, m) in a.request_mirror_policies.iter().enumerate() {
            let at = format!("request_mirror_policies[{i}]");
            let cluster_header = match (m.cluster.is_empty(), m.cluster_header.is_empty()) {
                (false, true) => None,
                (true, false) => {
                    Some(header(&m.cluster_header).within(format!("{at}.cluster_header"))?)
                }
                _ => {
                    return Err(ConfigError::new(
                        at,
                        "exactly one of cluster and cluster_header is required",
                    ));
                }
            };
            out.request_mirror_policies.push(MirrorPolicy {
                cluster: m.cluster.clone(),
                cluster_header,
                fraction: m
                    .runtime_fraction
                    .as_ref()
                    .and_then(|f| f.default_value.as_ref())
                    .map(fraction),
                trace_sampled: bool_or(m.trace_sampled.as_ref(), true),
            });
        }
        Ok(out)
    }

    /// Choose the cluster: the fixed name, the `cluster_header` value (`None` if absent or not
    /// UTF-8), or a weighted cluster (`random % total` in config order).
    pub fn pick_cluster<'a>(&'a self, headers: &'a HeaderMap, random: u64) -> Option<&'a str> {
        self.pick_cluster_entry(headers, random).0
    }

    /// As [`pick_cluster`](Self::pick_cluster), and also the chosen weighted cluster entry,
    /// whose header mutations and `host_rewrite_literal` the caller applies.
    pub fn pick_cluster_entry<'a, 's: 'a>(
        &'s self,
        headers: &'a HeaderMap,
        random: u64,
    ) -> (Option<&'a str>, Option<&'s ClusterWeight>) {
        match &self.cluster {
            ClusterSpecifier::Cluster(c) => (Some(c), None),
            ClusterSpecifier::Header(h) => (header_value(headers, h), None),
            ClusterSpecifier::Weighted(w) => match w.pick(headers, random) {
                Some(c) => match &c.cluster_header {
                    Some(h) => (header_value(headers, h), Some(c)),
                    None => (Some(&c.name), Some(c)),
                },
                None => (None, None),
            },
        }
    }

    /// The upstream path after `prefix_rewrite` (the matched prefix replaced; for `path` and
    /// `safe_regex` routes the whole path without query) or `regex_rewrite` (on the path
    /// without query; the query is kept). `None`: unchanged.
    pub fn rewrite_path(&self, route: &Route, path: &str) -> Option<String> {
        rewrite_path(
            self.prefix_rewrite.as_deref(),
            self.regex_rewrite.as_deref(),
            route,
            path,
        )
    }

    /// Is the upgrade (`websocket`, `CONNECT`, …) allowed by this route? `hcm_default` is the
    /// HCM's `upgrade_configs` verdict, which a route entry overrides.
    pub fn upgrade_enabled(&self, upgrade: &str, hcm_default: bool) -> bool {
        self.upgrade_configs
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(upgrade))
            .map_or(hcm_default, |(_, e)| *e)
    }

    /// The hash for ring hash / maglev: each policy's hash combined as
    /// `hash = rotl(hash, 1) ^ h`; a `terminal` policy that produced a hash stops.
    pub fn hash(&self, req: &RequestInfo<'_>) -> Option<u64> {
        let mut hash: Option<u64> = None;
        for p in &self.hash_policy {
            if let Some(h) = p.evaluate(req) {
                hash = Some(hash.map_or(0, |old| old.rotate_left(1)) ^ h);
            }
            if p.terminal && hash.is_some() {
                break;
            }
        }
        hash
    }
}

/// Shared by forwarding and redirects.
pub(crate) fn rewrite_path(
    prefix: Option<&str>,
    regex: Option<&RegexRewrite>,
    route: &Route,
    path: &str,
) -> Option<String> {
    if let Some(prefix) = prefix {
        let n = route.matcher.matched_prefix_len(path);
        let rest = path.get(n..)?;
        let mut out = String::with_capacity(prefix.len() + rest.len());
        out.push_str(prefix);
        out.push_str(rest);
        return Some(out);
    }
    if let Some(r) = regex {
        let base = path_without_query(path);
        let mut out = r.apply(base);
        out.push_str(&path[base.len()..]);
        return Some(out);
    }
    None
}
