//! `Route.redirect` and `Route.direct_response`: routes answered by the proxy itself.

use super::action::{RegexRewrite, rewrite_path};
use super::{RequestInfo, Route};
use crate::config::{ConfigError, Within};
use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use http::StatusCode;

/// A compiled `envoy.config.route.v3.RedirectAction`.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// `response_code` (301 by default).
    pub status: StatusCode,
    /// `scheme_redirect` (lowercased) or `https_redirect` (`https`).
    pub scheme: Option<String>,
    /// `host_redirect`.
    pub host: Option<String>,
    /// `port_redirect`.
    pub port: Option<u16>,
    /// `path_redirect`.
    pub path: Option<String>,
    /// `prefix_rewrite`.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite`.
    pub regex_rewrite: Option<RegexRewrite>,
    /// `strip_query`.
    pub strip_query: bool,
}

impl Redirect {
    /// Compile; paths relative to `redirect`.
    pub fn compile(r: &route_pb::RedirectAction) -> Result<Self, ConfigError> {
        use route_pb::redirect_action::PathRewriteSpecifier as P;
        use route_pb::redirect_action::RedirectResponseCode as C;
        use route_pb::redirect_action::SchemeRewriteSpecifier as S;
        let status = match C::try_from(r.response_code) {
            Ok(C::MovedPermanently) => StatusCode::MOVED_PERMANENTLY,
            Ok(C::Found) => StatusCode::FOUND,
            Ok(C::SeeOther) => StatusCode::SEE_OTHER,
            Ok(C::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
            Ok(C::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
            Err(_) => {
                return Err(ConfigError::new(
                    "response_code",
                    format!("unknown value {}", r.response_code),
                ));
            }
        };
        let scheme = match &r.scheme_rewrite_specifier {
            Some(S::HttpsRedirect(true)) => Some("https".to_string()),
            Some(S::SchemeRedirect(s)) if !s.is_empty() => Some(s.to_ascii_lowercase()),
            _ => None,
        };
        let port = match r.port_redirect {
            0 => None,
            p => Some(
                u16::try_from(p)
                    .map_err(|_| ConfigError::new("port_redirect", format!("{p} is not a port")))?,
            ),
        };
        let (mut path, mut prefix_rewrite, mut regex_rewrite) = (None, None, None);
        match &r.path_rewrite_specifier {
            Some(P::PathRedirect(p)) if !p.is_empty() => path = Some(p.clone()),
            Some(P::PrefixRewrite(p)) if !p.is_empty() => prefix_rewrite = Some(p.clone()),
            Some(P::RegexRewrite(rr)) => {
                regex_rewrite = Some(RegexRewrite::compile(rr).within("regex_rewrite")?)
            }
            Some(P::PathRewrite(_)) => {
                return Err(ConfigError::new("path_rewrite", "is not supported"));
            }
            _ => {}
        }
        Ok(Redirect {
            status,
            scheme,
            host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
            port,
            path,
            prefix_rewrite,
            regex_rewrite,
            strip_query: r.strip_query,
        })
    }

    /// The status and `Location` for this request. `scheme` is the request's scheme as the HCM
    /// determined it (`x-forwarded-proto`).
    pub fn location(
        &self,
        route: &Route,
        req: &RequestInfo<'_>,
        scheme: &str,
    ) -> (StatusCode, String) {
        let final_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let host = match &self.host {
            Some(h) if self.port.is_some() => strip_port(h).0,
            Some(h) => h.as_str(),
            None => {
                let (bare, req_port) = strip_port(req.authority);
                let mut remove = self.port.is_some();
                if final_scheme != scheme {
                    remove |= scheme.eq_ignore_ascii_case("https") && req_port == Some("443");
                    remove |= scheme.eq_ignore_ascii_case("http") && req_port == Some("80");
                }
                if remove { bare } else { req.authority }
            }
        };
        let path = match &self.path {
            Some(p) => {
                if p.contains('?') || self.strip_query {
                    p.clone()
                } else {
                    let q = req.path.find('?').map_or("", |i| &req.path[i..]);
                    format!("{p}{q}")
                }
            }
            None => {
                let p = rewrite_path(
                    self.prefix_rewrite.as_deref(),
                    self.regex_rewrite.as_ref(),
                    route,
                    req.path,
                )
                .unwrap_or_else(|| req.path.to_string());
                if self.strip_query {
                    p.split('?').next().unwrap_or("").to_string()
                } else {
                    p
                }
            }
        };
        (self.status, format!("{final_scheme}://{host}{port}{path}"))
    }
}

/// Split `host[:port]`, `[v6]:port`: (host, port). A bare IPv6 literal has no port.
pub(crate) fn strip_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.rfind("]:") {
            Some(i) => (&authority[..=i], Some(&authority[i + 2..])),
            None => (authority, None),
        };
    }
    match authority.rfind(':') {
        // More than one ':' without brackets is not host:port; leave it alone.
        Some(i) if !authority[..i].contains(':') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    }
}

/// A compiled `envoy.config.route.v3.DirectResponseAction`.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    /// `status`.
    pub status: StatusCode,
    /// `body`: from `inline_string`, `inline_bytes`, `filename` (read at compile time) or
    /// `environment_variable`.
    pub body: Option<Bytes>,
}

impl DirectResponse {
    /// Compile; paths relative to `direct_response`. `max_body` is the route configuration's
    /// `max_direct_response_body_size_bytes` (default 4096).
    pub fn compile(d: &route_pb::DirectResponseAction, max_body: u32) -> Result<Self, ConfigError> {
        use core_pb::data_source::Specifier as S;
        let status = u16::try_from(d.status)
            .ok()
            .filter(|s| (200..600).contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| {
                ConfigError::new("status", format!("{} is not in [200, 600)", d.status))
            })?;
        if d.body_format.is_some() {
            return Err(ConfigError::new("body_format", "is not supported"));
        }
        let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
            None => None,
            Some(S::InlineString(s)) => Some(Bytes::from(s.clone())),
            Some(S::InlineBytes(b)) => Some(Bytes::from(b.clone())),
            Some(S::Filename(f)) => Some(Bytes::from(std::fs::read(f).map_err(|e| {
                ConfigError::new("body.filename", format!("cannot read {f:?}: {e}"))
            })?)),
            Some(S::EnvironmentVariable(v)) => {
                Some(Bytes::from(std::env::var(v).map_err(|_| {
                    ConfigError::new(
                        "body.environment_variable",
                        format!("environment variable {v:?} is not set or not UTF-8"),
                    )
                })?))
            }
        };
        if let Some(b) = &body
            && b.len() > max_body as usize
        {
            return Err(ConfigError::new(
                "body",
                format!(
                    "response body size is {} bytes; maximum is {max_body}",
                    b.len()
                ),
            ));
        }
        Ok(DirectResponse { status, body })
    }
}
