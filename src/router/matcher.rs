//! Compiled request matchers: `RouteMatch` and the string, header, query-parameter and cookie
//! matchers it is made of. Everything here is built once in `compile` and evaluated per request
//! without allocating (except joining a header that appears more than once).

use super::RequestInfo;
pub use crate::config::StringMatch;
use crate::config::{ConfigError, Within};
pub(crate) use crate::config::{full_regex, starts_with_ignore_case};
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;
use envoy_types::pb::envoy::r#type::v3 as type_pb;
use http::HeaderMap;
use regex::Regex;
use std::borrow::Cow;

/// Compile a regex for search and substitution (`RegexMatchAndSubstitute.pattern`).
pub(crate) fn search_regex(re: &matcher_pb::RegexMatcher) -> Result<Regex, ConfigError> {
    Regex::new(&re.regex)
        .map_err(|e| ConfigError::new("regex", format!("invalid regex {:?}: {e}", re.regex)))
}

/// The part of a `:path` before the query string or fragment.
pub(crate) fn path_without_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(i) => &path[..i],
        None => path,
    }
}

/// How a header value is tested (`HeaderMatcher.header_match_specifier`).
#[derive(Debug, Clone)]
enum HeaderTest {
    String(StringMatch),
    /// `range_match`: `start <= value < end`, value parsed as a signed integer.
    Range(i64, i64),
    /// `present_match`.
    Present(bool),
}

/// A header name that may be a pseudo-header, which `http::HeaderMap` does not hold; those
/// are read from [`RequestInfo`].
#[derive(Debug, Clone)]
pub enum HeaderKey {
    /// `:authority` or `host`.
    Authority,
    /// `:path`.
    Path,
    /// `:method`.
    Method,
    /// `:scheme` (never present: route matching does not see it).
    Scheme,
    /// A regular header.
    Name(http::HeaderName),
}

impl HeaderKey {
    pub(crate) fn parse(name: &str) -> Result<Self, ConfigError> {
        Ok(match name.to_ascii_lowercase().as_str() {
            ":authority" | "host" => HeaderKey::Authority,
            ":path" => HeaderKey::Path,
            ":method" => HeaderKey::Method,
            ":scheme" => HeaderKey::Scheme,
            _ => {
                HeaderKey::Name(http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ConfigError::new("name", format!("invalid header name {name:?}"))
                })?)
            }
        })
    }

    /// All values of the header joined with `,` (Envoy's `getAllOfHeaderAsString`), or `None` if
    /// absent. Only allocates when the header appears more than once.
    pub(crate) fn get<'a>(
        &self,
        req: Option<&RequestInfo<'a>>,
        headers: &'a HeaderMap,
    ) -> Option<Cow<'a, str>> {
        match self {
            HeaderKey::Authority => match req {
                Some(r) => Some(Cow::Borrowed(r.authority)),
                None => joined(headers, &http::header::HOST),
            },
            HeaderKey::Path => req.map(|r| Cow::Borrowed(r.path)),
            HeaderKey::Method => req.map(|r| Cow::Borrowed(r.method.as_str())),
            HeaderKey::Scheme => None,
            HeaderKey::Name(n) => joined(headers, n),
        }
    }
}

fn joined<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<Cow<'a, str>> {
    let mut it = headers.get_all(name).iter();
    let first = it.next()?;
    let first = String::from_utf8_lossy(first.as_bytes());
    match it.next() {
        None => Some(first),
        Some(second) => {
            let mut s = first.into_owned();
            s.push(',');
            s.push_str(&String::from_utf8_lossy(second.as_bytes()));
            for v in it {
                s.push(',');
                s.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            Some(Cow::Owned(s))
        }
    }
}

/// `envoy.config.route.v3.HeaderMatcher`.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    key: HeaderKey,
    test: HeaderTest,
    invert: bool,
    treat_missing_as_empty: bool,
}

impl HeaderMatch {
    /// Compile a `HeaderMatcher`.
    #[allow(deprecated)]
    pub fn compile(h: &route_pb::HeaderMatcher) -> Result<Self, ConfigError> {
        use route_pb::header_matcher::HeaderMatchSpecifier as S;
        if h.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        let key = HeaderKey::parse(&h.name)?;
        let nonempty = |field: &str, s: &String| {
            if s.is_empty() {
                Err(ConfigError::new(field, "must not be empty"))
            } else {
                Ok(s.clone())
            }
        };
        let test = match &h.header_match_specifier {
            Some(S::ExactMatch(s)) => HeaderTest::String(StringMatch::Exact(s.clone(), false)),
            Some(S::SafeRegexMatch(re)) => HeaderTest::String(StringMatch::Regex(
                full_regex(re).within("safe_regex_match")?,
            )),
            Some(S::RangeMatch(type_pb::Int64Range { start, end })) => {
                HeaderTest::Range(*start, *end)
            }
            Some(S::PresentMatch(p)) => HeaderTest::Present(*p),
            Some(S::PrefixMatch(s)) => {
                HeaderTest::String(StringMatch::Prefix(nonempty("prefix_match", s)?, false))
            }
            Some(S::SuffixMatch(s)) => {
                HeaderTest::String(StringMatch::Suffix(nonempty("suffix_match", s)?, false))
            }
            Some(S::ContainsMatch(s)) => {
                HeaderTest::String(StringMatch::Contains(nonempty("contains_match", s)?, false))
            }
            Some(S::StringMatch(m)) => {
                HeaderTest::String(StringMatch::compile(m).within("string_match")?)
            }
            // No specifier: the header must be present (Envoy's "present" default).
            None => HeaderTest::Present(true),
        };
        Ok(HeaderMatch {
            key,
            test,
            invert: h.invert_match,
            treat_missing_as_empty: h.treat_missing_header_as_empty,
        })
    }

    /// Evaluate against a request (pseudo-headers resolved from `req`).
    pub(crate) fn matches_request(&self, req: &RequestInfo<'_>) -> bool {
        self.eval(self.key.get(Some(req), req.headers))
    }

    /// Evaluate against a plain header map (response headers for `retriable_headers`).
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.eval(self.key.get(None, headers))
    }

    fn eval(&self, value: Option<Cow<'_, str>>) -> bool {
        if let HeaderTest::Present(want) = self.test {
            let present = value.is_some() || self.treat_missing_as_empty;
            return (present == want) != self.invert;
        }
        let value = match value {
            Some(v) => v,
            None if self.treat_missing_as_empty => Cow::Borrowed(""),
            // A missing header fails every value matcher, inverted or not (Envoy).
            None => return false,
        };
        let m = match &self.test {
            HeaderTest::String(s) => s.matches(&value),
            HeaderTest::Range(start, end) => value
                .trim()
                .strip_prefix('+')
                .unwrap_or(value.trim())
                .parse::<i64>()
                .is_ok_and(|v| *start <= v && v < *end),
            HeaderTest::Present(_) => true,
        };
        m != self.invert
    }
}

/// `envoy.config.route.v3.QueryParameterMatcher`.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    name: String,
    /// `None`: `present_match` (or no specifier): the parameter must be present. Envoy treats
    /// `present_match: false` the same way.
    string: Option<StringMatch>,
}

/// The first value of query parameter `name` in `path` (not percent-decoded, as Envoy's route
/// matching), `""` for a parameter without `=`.
pub(crate) fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let q = &path[path.find('?')? + 1..];
    let q = q.split('#').next().unwrap_or(q);
    q.split('&').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if kv == name => Some(""),
        _ => None,
    })
}

impl QueryMatch {
    /// Compile a `QueryParameterMatcher`.
    pub fn compile(q: &route_pb::QueryParameterMatcher) -> Result<Self, ConfigError> {
        use route_pb::query_parameter_matcher::QueryParameterMatchSpecifier as S;
        if q.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        let string = match &q.query_parameter_match_specifier {
            Some(S::StringMatch(m)) => Some(StringMatch::compile(m).within("string_match")?),
            Some(S::PresentMatch(_)) | None => None,
        };
        Ok(QueryMatch {
            name: q.name.clone(),
            string,
        })
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match (query_param(path, &self.name), &self.string) {
            (None, _) => false,
            (Some(v), Some(m)) => m.matches(v),
            (Some(_), None) => true,
        }
    }
}

/// The value of cookie `name` across all `Cookie` headers; surrounding quotes removed.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            })
        })
}

/// `envoy.config.route.v3.CookieMatcher`.
#[derive(Debug, Clone)]
pub struct CookieMatch {
    name: String,
    string: StringMatch,
    invert: bool,
}

impl CookieMatch {
    fn compile(c: &route_pb::CookieMatcher) -> Result<Self, ConfigError> {
        if c.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        let m = c
            .string_match
            .as_ref()
            .ok_or_else(|| ConfigError::new("string_match", "is required"))?;
        Ok(CookieMatch {
            name: c.name.clone(),
            string: StringMatch::compile(m).within("string_match")?,
            invert: c.invert_match,
        })
    }

    fn matches(&self, headers: &HeaderMap) -> bool {
        match cookie(headers, &self.name) {
            Some(v) => self.string.matches(v) != self.invert,
            None => false,
        }
    }
}

/// `RouteMatch.path_specifier`.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `prefix`: compared with the whole `:path`, query included (as Envoy).
    Prefix(String),
    /// `path`: the path without query must equal this.
    Exact(String),
    /// `safe_regex`: full match on the path without query.
    Regex(Regex),
    /// `path_separated_prefix`: equal to the path without query, or a prefix followed by `/`.
    SeparatedPrefix(String),
    /// `connect_matcher`: any CONNECT request.
    Connect,
}

/// A compiled `envoy.config.route.v3.RouteMatch`.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub(crate) path: PathMatch,
    case_sensitive: bool,
    headers: Vec<HeaderMatch>,
    query: Vec<QueryMatch>,
    cookies: Vec<CookieMatch>,
    grpc: bool,
    /// `runtime_fraction.default_value` as (numerator, denominator).
    fraction: Option<(u64, u64)>,
    /// A `dynamic_metadata` / `filter_state` matcher that tern cannot evaluate: `Some(invert)` of
    /// the first one means the route matches only if that matcher would match absent metadata.
    unavailable: Option<bool>,
}

/// (numerator, denominator) of a `FractionalPercent`.
pub(crate) fn fraction(p: &type_pb::FractionalPercent) -> (u64, u64) {
    use type_pb::fractional_percent::DenominatorType as D;
    let den = match D::try_from(p.denominator) {
        Ok(D::TenThousand) => 10_000,
        Ok(D::Million) => 1_000_000,
        _ => 100,
    };
    (u64::from(p.numerator).min(den), den)
}

impl RouteMatch {
    /// Compile a `RouteMatch`; paths in errors are relative to `match`.
    pub fn compile(m: &route_pb::RouteMatch) -> Result<Self, ConfigError> {
        use route_pb::route_match::PathSpecifier as P;
        let case_sensitive = crate::config::bool_or(m.case_sensitive.as_ref(), true);
        let path = match &m.path_specifier {
            Some(P::Prefix(p)) => PathMatch::Prefix(p.clone()),
            Some(P::Path(p)) => PathMatch::Exact(p.clone()),
            Some(P::SafeRegex(re)) => PathMatch::Regex(full_regex(re).within("safe_regex")?),
            Some(P::PathSeparatedPrefix(p)) => {
                if p.is_empty() || p.ends_with('/') || p.contains(['?', '#']) {
                    return Err(ConfigError::new(
                        "path_separated_prefix",
                        format!(
                            "{p:?} must be non-empty, not end with '/' and contain no '?' or '#'"
                        ),
                    ));
                }
                PathMatch::SeparatedPrefix(p.clone())
            }
            Some(P::ConnectMatcher(_)) => PathMatch::Connect,
            Some(P::PathMatchPolicy(p)) => {
                return Err(ConfigError::new(
                    "path_match_policy",
                    format!("extension {:?} is not supported", p.name),
                ));
            }
            None => return Err(ConfigError::new("path_specifier", "is required")),
        };
        let headers = m
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatch::compile(h).within(format!("headers[{i}]")))
            .collect::<Result<_, _>>()?;
        let query = m
            .query_parameters
            .iter()
            .enumerate()
            .map(|(i, q)| QueryMatch::compile(q).within(format!("query_parameters[{i}]")))
            .collect::<Result<_, _>>()?;
        let cookies = m
            .cookies
            .iter()
            .enumerate()
            .map(|(i, c)| CookieMatch::compile(c).within(format!("cookies[{i}]")))
            .collect::<Result<_, _>>()?;
        let fraction = match &m.runtime_fraction {
            Some(rf) => Some(fraction(rf.default_value.as_ref().ok_or_else(|| {
                ConfigError::new("runtime_fraction.default_value", "is required")
            })?)),
            None => None,
        };
        let unavailable = match (m.dynamic_metadata.first(), m.filter_state.is_empty()) {
            (Some(md), _) => Some(md.invert),
            (None, false) => Some(false),
            (None, true) => None,
        };
        Ok(RouteMatch {
            path,
            case_sensitive,
            headers,
            query,
            cookies,
            grpc: m.grpc.is_some(),
            fraction,
            unavailable,
        })
    }

    /// Does the request match? `random` decides `runtime_fraction`.
    pub(crate) fn matches(&self, req: &RequestInfo<'_>, random: u64) -> bool {
        self.path_matches(req)
            && self.headers.iter().all(|h| h.matches_request(req))
            && self.query.iter().all(|q| q.matches(req.path))
            && self.cookies.iter().all(|c| c.matches(req.headers))
            && (!self.grpc || is_grpc(req.headers))
            && self.fraction.is_none_or(|(n, d)| random % d < n)
            && self.unavailable.is_none_or(|invert| invert)
    }

    fn path_matches(&self, req: &RequestInfo<'_>) -> bool {
        let eq = |a: &str, b: &str| {
            if self.case_sensitive {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            }
        };
        match &self.path {
            PathMatch::Prefix(p) => {
                if self.case_sensitive {
                    req.path.starts_with(p.as_str())
                } else {
                    starts_with_ignore_case(req.path, p)
                }
            }
            PathMatch::Exact(p) => eq(path_without_query(req.path), p),
            PathMatch::Regex(re) => re.is_match(path_without_query(req.path)),
            PathMatch::SeparatedPrefix(p) => {
                let path = path_without_query(req.path);
                match path.get(..p.len()) {
                    Some(head) if eq(head, p) => {
                        path.len() == p.len() || path.as_bytes()[p.len()] == b'/'
                    }
                    _ => false,
                }
            }
            PathMatch::Connect => req.method == http::Method::CONNECT,
        }
    }

    /// Length of the `:path` prefix this route matched, for `prefix_rewrite`.
    pub(crate) fn matched_prefix_len(&self, path: &str) -> usize {
        match &self.path {
            PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) => p.len().min(path.len()),
            PathMatch::Exact(_) | PathMatch::Regex(_) => path_without_query(path).len(),
            PathMatch::Connect => 0,
        }
    }
}

/// `content-type` is `application/grpc`, `application/grpc+…` or `application/grpc;…`.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.strip_prefix("application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
}
