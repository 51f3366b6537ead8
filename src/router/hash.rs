//! `RouteAction.hash_policy`: the request hash for ring hash and maglev load balancing.

use super::RequestInfo;
use super::action::RegexRewrite;
use super::matcher::{HeaderKey, cookie, query_param};
use crate::config::{ConfigError, Within, duration};
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use std::time::Duration;
use xxhash_rust::xxh64::xxh64;

/// One `RouteAction.hash_policy` entry.
#[derive(Debug, Clone)]
pub enum HashPolicyKind {
    /// `header`: all values, optionally rewritten, sorted, hashed in a chain.
    Header(HeaderKey, Option<RegexRewrite>),
    /// `cookie` (only an existing cookie; generating one with `ttl` is the proxy's job).
    Cookie {
        /// `name`.
        name: String,
        /// `ttl`: if set and the cookie is absent, Envoy generates the cookie. tern's router
        /// returns no hash then; the proxy may generate it.
        ttl: Option<Duration>,
        /// `path`.
        path: String,
    },
    /// `connection_properties.source_ip`.
    SourceIp,
    /// `query_parameter`.
    QueryParameter(String),
    /// `filter_state`: tern has no filter state, so it never yields a hash.
    FilterState,
}

/// `RouteAction.HashPolicy`.
#[derive(Debug, Clone)]
pub struct HashPolicy {
    /// The policy specifier.
    pub kind: HashPolicyKind,
    /// `terminal`.
    pub terminal: bool,
}

impl HashPolicy {
    pub(crate) fn compile(h: &route_pb::route_action::HashPolicy) -> Result<Self, ConfigError> {
        use route_pb::route_action::hash_policy::PolicySpecifier as P;
        let kind = match &h.policy_specifier {
            Some(P::Header(hd)) => {
                if hd.header_name.is_empty() {
                    return Err(ConfigError::new("header.header_name", "must not be empty"));
                }
                HashPolicyKind::Header(
                    HeaderKey::parse(&hd.header_name).within("header.header_name")?,
                    hd.regex_rewrite
                        .as_ref()
                        .map(RegexRewrite::compile)
                        .transpose()
                        .within("header.regex_rewrite")?,
                )
            }
            Some(P::Cookie(c)) => {
                if c.name.is_empty() {
                    return Err(ConfigError::new("cookie.name", "must not be empty"));
                }
                HashPolicyKind::Cookie {
                    name: c.name.clone(),
                    ttl: duration(c.ttl.as_ref()),
                    path: c.path.clone(),
                }
            }
            Some(P::ConnectionProperties(cp)) => {
                if cp.source_ip {
                    HashPolicyKind::SourceIp
                } else {
                    HashPolicyKind::FilterState
                }
            }
            Some(P::QueryParameter(q)) => {
                if q.name.is_empty() {
                    return Err(ConfigError::new(
                        "query_parameter.name",
                        "must not be empty",
                    ));
                }
                HashPolicyKind::QueryParameter(q.name.clone())
            }
            Some(P::FilterState(_)) => HashPolicyKind::FilterState,
            None => return Err(ConfigError::new("policy_specifier", "is required")),
        };
        Ok(HashPolicy {
            kind,
            terminal: h.terminal,
        })
    }

    pub(crate) fn evaluate(&self, req: &RequestInfo<'_>) -> Option<u64> {
        match &self.kind {
            HashPolicyKind::Header(key, rewrite) => {
                let mut values: Vec<std::borrow::Cow<'_, str>> = match key {
                    HeaderKey::Name(n) => req
                        .headers
                        .get_all(n)
                        .iter()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()))
                        .collect(),
                    other => other.get(Some(req), req.headers).into_iter().collect(),
                };
                if values.is_empty() {
                    return None;
                }
                if let Some(r) = rewrite {
                    for v in &mut values {
                        *v = std::borrow::Cow::Owned(r.apply(v));
                    }
                }
                values.sort();
                Some(
                    values
                        .iter()
                        .fold(0u64, |seed, v| xxh64(v.as_bytes(), seed)),
                )
            }
            HashPolicyKind::Cookie { name, .. } => {
                cookie(req.headers, name).map(|v| xxh64(v.as_bytes(), 0))
            }
            HashPolicyKind::SourceIp => req
                .downstream_remote
                .map(|a| xxh64(a.ip().to_string().as_bytes(), 0)),
            HashPolicyKind::QueryParameter(name) => {
                query_param(req.path, name).map(|v| xxh64(v.as_bytes(), 0))
            }
            HashPolicyKind::FilterState => None,
        }
    }
}
