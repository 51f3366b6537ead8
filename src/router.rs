//! The compiled route table: an `envoy.config.route.v3.RouteConfiguration` validated and turned
//! into matchers once, then matched per request with pure functions (no I/O, no locks, and no
//! allocation except for rewritten paths and formatted header values).
//!
//! Depends on `config` only. The HCM (in `proxy`) calls [`RouteTable::find`] for each stream
//! and then does what the route says; what stays with the HCM is listed on each item (for
//! example `internal_only_headers` removal, `require_tls`, retry loops, timeouts, cookie
//! generation for cookie hash policies with a `ttl`).

mod action;
mod domains;
pub use domains::{DomainError, DomainTable};
mod format;
mod hash;
mod headers;
mod matcher;
mod redirect;
mod retry;

pub use action::{
    ClusterSpecifier, ClusterWeight, MirrorPolicy, RegexRewrite, RouteAction, WeightedClusters,
};
pub use format::{FormatContext, Formatter};
pub use hash::{HashPolicy, HashPolicyKind};
pub use headers::{AppendAction, HeaderMutations, HeaderOps};
pub(crate) use matcher::is_grpc;
pub use matcher::{HeaderKey, HeaderMatch, PathMatch, QueryMatch, RouteMatch, StringMatch};
pub use redirect::{DirectResponse, Redirect};
use retry::RetryCache;
pub use retry::{ResetReason, RetryOn, RetryPolicy};
use std::sync::Arc;

use crate::config::{ConfigError, Within, u32_or};
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::google::protobuf;
use std::collections::HashMap;
use std::net::SocketAddr;

/// What route matching reads from a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// `:authority` / `Host` as received (maybe with `:port`).
    pub authority: &'a str,
    /// Path and query as received, e.g. `/a/b?x=1`.
    pub path: &'a str,
    /// `:method`.
    pub method: &'a http::Method,
    /// The request headers (pseudo-headers are taken from the fields above).
    pub headers: &'a http::HeaderMap,
    /// The downstream peer, for the `source_ip` hash policy.
    pub downstream_remote: Option<SocketAddr>,
}

/// `VirtualHost.require_tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRequirement {
    /// `NONE`.
    #[default]
    None,
    /// `EXTERNAL_ONLY`: requests not from an internal address must use TLS.
    ExternalOnly,
    /// `ALL`.
    All,
}

/// A compiled `envoy.config.route.v3.VirtualHost`.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    /// `retry_policy` (already shared with routes that have none).
    pub retry_policy: Option<Arc<RetryPolicy>>,
    /// `include_request_attempt_count`.
    pub include_attempt_count_in_request: bool,
    /// `include_attempt_count_in_response`.
    pub include_attempt_count_in_response: bool,
    /// `require_tls`: enforced by the HCM (it knows the connection), which redirects to https.
    pub require_tls: TlsRequirement,
    /// `typed_per_filter_config`, for HTTP filters to read.
    pub typed_per_filter_config: PerFilterConfig,
    /// `routes`, in config order.
    pub routes: Box<[Route]>,
    headers: Option<Box<HeaderMutations>>,
}

/// `typed_per_filter_config` of a virtual host or route; `None` when empty (most are).
pub type PerFilterConfig = Option<Box<HashMap<String, protobuf::Any>>>;

fn per_filter_config(m: &HashMap<String, protobuf::Any>) -> PerFilterConfig {
    (!m.is_empty()).then(|| Box::new(m.clone()))
}

/// Header mutations, boxed when there are any: most virtual hosts and routes have none.
fn boxed_mutations(m: HeaderMutations) -> Option<Box<HeaderMutations>> {
    (!m.is_empty()).then(|| Box::new(m))
}

static NO_MUTATIONS: std::sync::LazyLock<HeaderMutations> =
    std::sync::LazyLock::new(HeaderMutations::default);

/// A compiled `envoy.config.route.v3.Route`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`.
    pub name: String,
    /// `action`.
    pub action: Action,
    /// `decorator.operation`, if set.
    pub decorator_operation: Option<String>,
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `typed_per_filter_config`, for HTTP filters to read.
    pub typed_per_filter_config: PerFilterConfig,
    pub(crate) matcher: RouteMatch,
    headers: Option<Box<HeaderMutations>>,
}

impl Route {
    /// The compiled `match`.
    pub fn route_match(&self) -> &RouteMatch {
        &self.matcher
    }

    /// The route's `request/response_headers_to_add/remove`.
    pub fn header_mutations(&self) -> &HeaderMutations {
        self.headers.as_deref().unwrap_or(&NO_MUTATIONS)
    }

    /// The `RouteAction`, if this route forwards.
    pub fn route_action(&self) -> Option<&RouteAction> {
        match &self.action {
            Action::Forward(a) => Some(a),
            _ => None,
        }
    }
}

/// `Route.action`.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// `route`.
    Forward(RouteAction),
    /// `redirect`.
    Redirect(Redirect),
    /// `direct_response`.
    Direct(DirectResponse),
    /// `non_forwarding_action`: the request goes through the filters but is not forwarded.
    NonForwarding,
}

/// A compiled `envoy.config.route.v3.RouteConfiguration`.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    name: String,
    virtual_hosts: Box<[VirtualHost]>,
    /// Domains (lowercase) to virtual hosts.
    domains: DomainTable,
    ignore_port: bool,
    most_specific_wins: bool,
    headers: HeaderMutations,
    /// `internal_only_headers`: the HCM removes these from requests of external origin.
    pub internal_only_headers: Vec<http::HeaderName>,
}

/// A route found for a request.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// The virtual host.
    pub virtual_host: &'a VirtualHost,
    /// The first matching route of that virtual host.
    pub route: &'a Route,
    table: &'a RouteTable,
}

impl Matched<'_> {
    fn levels<'s>(
        &'s self,
        cluster: Option<&'s ClusterWeight>,
    ) -> [Option<&'s HeaderMutations>; 4] {
        let c = cluster.map(|c| &c.headers);
        let (r, v, t) = (
            self.route.headers.as_deref(),
            self.virtual_host.headers.as_deref(),
            Some(&self.table.headers),
        );
        if self.table.most_specific_wins {
            [t, v, r, c]
        } else {
            [c, r, v, t]
        }
    }

    /// Apply `request_headers_to_remove/add` of the route, virtual host and route
    /// configuration in Envoy's order: route first, then virtual host, then route configuration
    /// (reversed with `most_specific_header_mutations_wins`). Each level removes, then adds.
    /// `internal_only_headers` removal is the HCM's job.
    pub fn apply_request_headers(&self, headers: &mut http::HeaderMap, ctx: &FormatContext<'_>) {
        self.apply_request_headers_with(None, headers, ctx);
    }

    /// As [`apply_request_headers`](Self::apply_request_headers), with the chosen weighted
    /// cluster entry's mutations applied as the most specific level.
    pub fn apply_request_headers_with(
        &self,
        cluster: Option<&ClusterWeight>,
        headers: &mut http::HeaderMap,
        ctx: &FormatContext<'_>,
    ) {
        for m in self.levels(cluster).into_iter().flatten() {
            m.request.apply(headers, ctx);
        }
    }

    /// Apply `response_headers_to_remove/add`, in the same order as request headers.
    pub fn apply_response_headers(&self, headers: &mut http::HeaderMap, ctx: &FormatContext<'_>) {
        self.apply_response_headers_with(None, headers, ctx);
    }

    /// As [`apply_response_headers`](Self::apply_response_headers), with the weighted cluster
    /// entry's mutations.
    pub fn apply_response_headers_with(
        &self,
        cluster: Option<&ClusterWeight>,
        headers: &mut http::HeaderMap,
        ctx: &FormatContext<'_>,
    ) {
        for m in self.levels(cluster).into_iter().flatten() {
            m.response.apply(headers, ctx);
        }
    }
}

fn compile_route(
    r: &route_pb::Route,
    vh_retry: Option<&Arc<RetryPolicy>>,
    max_body: u32,
    retries: &mut RetryCache,
) -> Result<Route, ConfigError> {
    use route_pb::route::Action as A;
    let matcher = RouteMatch::compile(
        r.r#match
            .as_ref()
            .ok_or_else(|| ConfigError::new("match", "is required"))?,
    )
    .within("match")?;
    let action = match &r.action {
        Some(A::Route(a)) => {
            Action::Forward(RouteAction::compile(a, vh_retry, retries).within("route")?)
        }
        Some(A::Redirect(a)) => Action::Redirect(Redirect::compile(a).within("redirect")?),
        Some(A::DirectResponse(d)) => {
            Action::Direct(DirectResponse::compile(d, max_body).within("direct_response")?)
        }
        Some(A::NonForwardingAction(_)) => Action::NonForwarding,
        Some(A::FilterAction(_)) => {
            return Err(ConfigError::new(
                "filter_action",
                "is not supported in an HTTP route configuration",
            ));
        }
        None => return Err(ConfigError::new("action", "is required")),
    };
    Ok(Route {
        name: r.name.clone(),
        action,
        decorator_operation: r
            .decorator
            .as_ref()
            .map(|d| d.operation.clone())
            .filter(|o| !o.is_empty()),
        stat_prefix: r.stat_prefix.clone(),
        typed_per_filter_config: per_filter_config(&r.typed_per_filter_config),
        matcher,
        headers: boxed_mutations(HeaderMutations::compile(
            &r.request_headers_to_add,
            &r.request_headers_to_remove,
            &r.response_headers_to_add,
            &r.response_headers_to_remove,
        )?),
    })
}

fn compile_virtual_host(
    vh: &route_pb::VirtualHost,
    max_body: u32,
    retries: &mut RetryCache,
) -> Result<VirtualHost, ConfigError> {
    use route_pb::virtual_host::TlsRequirementType as T;
    if vh.name.is_empty() {
        return Err(ConfigError::new("name", "must not be empty"));
    }
    if vh.domains.is_empty() {
        return Err(ConfigError::new(
            "domains",
            "at least one domain is required",
        ));
    }
    if vh.matcher.is_some() {
        return Err(ConfigError::new(
            "matcher",
            "the matcher tree is not supported",
        ));
    }
    let retry_policy = vh
        .retry_policy
        .as_ref()
        .map(|p| retries.compile(p))
        .transpose()
        .within("retry_policy")?;
    let routes = vh
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            compile_route(r, retry_policy.as_ref(), max_body, retries)
                .within(format!("routes[{i}]"))
        })
        .collect::<Result<_, _>>()?;
    Ok(VirtualHost {
        name: vh.name.clone(),
        retry_policy,
        include_attempt_count_in_request: vh.include_request_attempt_count,
        include_attempt_count_in_response: vh.include_attempt_count_in_response,
        require_tls: match T::try_from(vh.require_tls) {
            Ok(T::ExternalOnly) => TlsRequirement::ExternalOnly,
            Ok(T::All) => TlsRequirement::All,
            _ => TlsRequirement::None,
        },
        typed_per_filter_config: per_filter_config(&vh.typed_per_filter_config),
        routes,
        headers: boxed_mutations(HeaderMutations::compile(
            &vh.request_headers_to_add,
            &vh.request_headers_to_remove,
            &vh.response_headers_to_add,
            &vh.response_headers_to_remove,
        )?),
    })
}

impl RouteTable {
    /// Compile a `RouteConfiguration`. Every invalid field is a [`ConfigError`] naming the
    /// route configuration, virtual host, route index and field, e.g.
    /// `route_config local: virtual_hosts[0].routes[2].match.safe_regex: invalid regex …`.
    pub fn compile(rc: &route_pb::RouteConfiguration) -> Result<RouteTable, ConfigError> {
        Self::compile_inner(rc).map_err(|e| ConfigError {
            path: if e.path.is_empty() {
                format!("route_config {}", rc.name)
            } else {
                format!("route_config {}: {}", rc.name, e.path)
            },
            reason: e.reason,
        })
    }

    fn compile_inner(rc: &route_pb::RouteConfiguration) -> Result<RouteTable, ConfigError> {
        if rc.vhds.is_some() {
            return Err(ConfigError::new("vhds", "VHDS is not supported"));
        }
        if !rc.cluster_specifier_plugins.is_empty() {
            return Err(ConfigError::new(
                "cluster_specifier_plugins",
                "cluster specifier plugins are not supported",
            ));
        }
        let max_body = u32_or(rc.max_direct_response_body_size_bytes.as_ref(), 4096);
        let mut t = RouteTable {
            name: rc.name.clone(),
            ignore_port: rc.ignore_port_in_host_matching,
            most_specific_wins: rc.most_specific_header_mutations_wins,
            headers: HeaderMutations::compile(
                &rc.request_headers_to_add,
                &rc.request_headers_to_remove,
                &rc.response_headers_to_add,
                &rc.response_headers_to_remove,
            )?,
            ..RouteTable::default()
        };
        for (i, h) in rc.internal_only_headers.iter().enumerate() {
            t.internal_only_headers
                .push(http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        format!("internal_only_headers[{i}]"),
                        format!("invalid header name {h:?}"),
                    )
                })?);
        }
        let mut retries = RetryCache::default();
        let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
        for (i, vh) in rc.virtual_hosts.iter().enumerate() {
            let at = format!("virtual_hosts[{i}]");
            let compiled = compile_virtual_host(vh, max_body, &mut retries).within(&at)?;
            for (j, d) in vh.domains.iter().enumerate() {
                let d = &d.to_ascii_lowercase();
                let dup = || {
                    ConfigError::new(
                        format!("{at}.domains[{j}]"),
                        format!(
                            "only unique values for domains are permitted; duplicate entry of domain {d}"
                        ),
                    )
                };
                match t.domains.insert(d, i) {
                    Ok(()) => {}
                    Err(DomainError::Duplicate) if d == "*" => {
                        return Err(ConfigError::new(
                            format!("{at}.domains[{j}]"),
                            "only a single wildcard domain '*' is permitted",
                        ));
                    }
                    Err(DomainError::Duplicate) => return Err(dup()),
                    Err(DomainError::Empty) => {
                        return Err(ConfigError::new(
                            format!("{at}.domains[{j}]"),
                            "must not be empty",
                        ));
                    }
                }
            }
            virtual_hosts.push(compiled);
        }
        t.virtual_hosts = virtual_hosts.into_boxed_slice();
        t.domains.shrink_to_fit();
        Ok(t)
    }

    /// `RouteConfiguration.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All virtual hosts in config order.
    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.virtual_hosts
    }

    /// The virtual host for an authority: exact domain, then the longest suffix wildcard, then
    /// the longest prefix wildcard, then `*`. Case-insensitive; with
    /// `ignore_port_in_host_matching` the port is removed first (`[::1]:80` → `[::1]`).
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        if self.domains.only_default() {
            return self
                .domains
                .wildcard()
                .and_then(|i| self.virtual_hosts.get(i));
        }
        let host = if self.ignore_port {
            redirect::strip_port(authority).0
        } else {
            authority
        };
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let idx = self.domains.find(host)?;
        self.virtual_hosts.get(idx)
    }

    /// The virtual host for the request's authority, then its first matching route.
    /// `runtime_fraction` matchers are decided with a random number of 0 here (a fraction
    /// matches unless it is 0%); the HCM should call [`find_with_random`](Self::find_with_random)
    /// with a per-stream random number instead.
    pub fn find<'a>(&'a self, req: &RequestInfo<'_>) -> Option<Matched<'a>> {
        self.find_with_random(req, 0)
    }

    /// As [`find`](Self::find); `random` decides `RouteMatch.runtime_fraction`
    /// (`random % denominator < numerator`).
    pub fn find_with_random<'a>(
        &'a self,
        req: &RequestInfo<'_>,
        random: u64,
    ) -> Option<Matched<'a>> {
        let virtual_host = self.virtual_host(req.authority)?;
        let route = virtual_host
            .routes
            .iter()
            .find(|r| r.matcher.matches(req, random))?;
        Some(Matched {
            virtual_host,
            route,
            table: self,
        })
    }
}

#[cfg(test)]
mod tests;
