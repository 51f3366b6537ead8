//! Listener filters, compiled: the TLS and HTTP inspectors with their limits and stats, the
//! filters tern decodes but does not run yet, and `filter_disabled` predicates.

use crate::config::istio::set_internal_dst_address;
use crate::config::{self, ConfigError, Within, typed_config};
use crate::filters;
use crate::stats::{Counter, Histogram, Store, Unit};
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3 as http_inspector_pb;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3 as original_dst_pb;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3 as tls_inspector_pb;
use prost::Name;
use std::sync::Arc;

/// The ClientHello size limit, and the largest `max_client_hello_size` accepted (16 KiB).
pub const TLS_MAX_CLIENT_HELLO: u32 = 16 * 1024;
/// How far the HTTP inspector reads for a request line before giving up (64 KiB).
pub const HTTP_MAX_INSPECT: usize = 64 * 1024;
/// The HTTP inspector's first read (8 KiB); it doubles up to `HTTP_MAX_INSPECT`.
pub const HTTP_INITIAL_READ: usize = 8 * 1024;

/// One `listener_filters` entry.
#[derive(Debug, Clone)]
pub struct ListenerFilter {
    /// `ListenerFilter.name`.
    pub name: String,
    /// The filter.
    pub config: ListenerFilterConfig,
    /// `filter_disabled`: the filter is skipped for connections this matches.
    pub disabled: Option<FilterDisabled>,
}

/// A listener filter's compiled configuration.
#[derive(Debug, Clone)]
pub enum ListenerFilterConfig {
    /// `envoy.filters.listener.tls_inspector`: TLS or not, SNI and ALPN for filter chain match.
    /// Without it every connection matches as `raw_buffer` with no server name.
    TlsInspector(Arc<TlsInspector>),
    /// `envoy.filters.listener.http_inspector`: HTTP/1.0, HTTP/1.1 or h2c as the application
    /// protocol of plaintext connections.
    HttpInspector(Arc<HttpInspector>),
    /// `envoy.filters.listener.original_dst`: the destination before iptables redirection
    /// (decoded, not run yet: counted as not enforced).
    OriginalDst(original_dst_pb::OriginalDst),
    /// Istio's `set_dst_address` (`istio.set_internal_dst_address.v1.Config`): the destination
    /// from internal-listener metadata (decoded, not run yet: counted as not enforced).
    SetInternalDstAddress(set_internal_dst_address::Config),
}

/// `envoy.filters.listener.tls_inspector`, compiled.
#[derive(Debug)]
pub struct TlsInspector {
    /// `initial_read_buffer_size` (default and upper bound: `max_client_hello_size`).
    pub initial_read_buffer_size: usize,
    /// `max_client_hello_size` (default 16 KiB): a ClientHello that does not fit closes the
    /// connection and counts `client_hello_too_large`.
    pub max_client_hello_size: usize,
    /// `close_connection_on_client_hello_parsing_errors`: bytes that are not a ClientHello close
    /// the connection instead of matching as plaintext.
    pub close_on_parse_error: bool,
    /// Stats `tls_inspector.*`.
    pub stats: TlsInspectorStats,
}

/// Stats `tls_inspector.*` (Envoy's names, in the server's root scope: shared by listeners).
#[derive(Debug, Clone)]
pub struct TlsInspectorStats {
    /// `client_hello_too_large`.
    pub client_hello_too_large: Counter,
    /// `tls_found`.
    pub tls_found: Counter,
    /// `tls_not_found`.
    pub tls_not_found: Counter,
    /// `alpn_found`.
    pub alpn_found: Counter,
    /// `alpn_not_found`.
    pub alpn_not_found: Counter,
    /// `sni_found`.
    pub sni_found: Counter,
    /// `sni_not_found`.
    pub sni_not_found: Counter,
    /// `bytes_processed`: bytes examined per connection.
    pub bytes_processed: Histogram,
}

/// `envoy.filters.listener.http_inspector`, compiled.
#[derive(Debug)]
pub struct HttpInspector {
    /// Stats `http_inspector.*`.
    pub stats: HttpInspectorStats,
}

/// Stats `http_inspector.*` (Envoy's names, in the root scope).
#[derive(Debug, Clone)]
pub struct HttpInspectorStats {
    /// `read_error`: the socket failed, or no request line within 64 KiB (connection closed).
    pub read_error: Counter,
    /// `http10_found`.
    pub http10_found: Counter,
    /// `http11_found`.
    pub http11_found: Counter,
    /// `http2_found`.
    pub http2_found: Counter,
    /// `http_not_found`.
    pub http_not_found: Counter,
}

/// `ListenerFilterChainMatchPredicate`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterDisabled {
    /// `or_match`.
    Or(Vec<FilterDisabled>),
    /// `and_match`.
    And(Vec<FilterDisabled>),
    /// `not_match`.
    Not(Box<FilterDisabled>),
    /// `any_match`.
    Any,
    /// `destination_port_range`: `[start, end)`.
    DestinationPort(i32, i32),
}

impl FilterDisabled {
    fn compile(p: &listener_pb::ListenerFilterChainMatchPredicate) -> Result<Self, ConfigError> {
        use listener_pb::listener_filter_chain_match_predicate::Rule;
        let set = |s: &listener_pb::listener_filter_chain_match_predicate::MatchSet,
                   field: &str|
         -> Result<Vec<Self>, ConfigError> {
            if s.rules.len() < 2 {
                return Err(ConfigError::new(field, "needs at least 2 rules"));
            }
            s.rules
                .iter()
                .enumerate()
                .map(|(i, r)| Self::compile(r).within(format!("{field}.rules[{i}]")))
                .collect()
        };
        Ok(match &p.rule {
            Some(Rule::OrMatch(s)) => Self::Or(set(s, "or_match")?),
            Some(Rule::AndMatch(s)) => Self::And(set(s, "and_match")?),
            Some(Rule::NotMatch(n)) => Self::Not(Box::new(Self::compile(n).within("not_match")?)),
            Some(Rule::AnyMatch(true)) => Self::Any,
            Some(Rule::AnyMatch(false)) => {
                return Err(ConfigError::new("any_match", "must be true"));
            }
            Some(Rule::DestinationPortRange(r)) => Self::DestinationPort(r.start, r.end),
            None => return Err(ConfigError::new("rule", "is required")),
        })
    }

    /// Whether the connection with this local port matches (the filter is then skipped).
    pub fn matches(&self, local_port: Option<u16>) -> bool {
        match self {
            Self::Or(v) => v.iter().any(|p| p.matches(local_port)),
            Self::And(v) => v.iter().all(|p| p.matches(local_port)),
            Self::Not(p) => !p.matches(local_port),
            Self::Any => true,
            Self::DestinationPort(start, end) => {
                local_port.is_some_and(|p| (*start..*end).contains(&i32::from(p)))
            }
        }
    }
}

impl TlsInspector {
    fn compile(c: &tls_inspector_pb::TlsInspector, store: &Store) -> Result<Self, ConfigError> {
        let max = config::u32_or(c.max_client_hello_size.as_ref(), TLS_MAX_CLIENT_HELLO);
        if !(256..=TLS_MAX_CLIENT_HELLO).contains(&max) {
            return Err(ConfigError::new(
                "max_client_hello_size",
                format!("{max} is outside 256..={TLS_MAX_CLIENT_HELLO}"),
            ));
        }
        let initial = config::u32_or(c.initial_read_buffer_size.as_ref(), max);
        if !(256..=65536).contains(&initial) {
            return Err(ConfigError::new(
                "initial_read_buffer_size",
                format!("{initial} is outside 256..=65536"),
            ));
        }
        for (set, what) in [
            (&c.enable_ja3_fingerprinting, "enable_ja3_fingerprinting"),
            (&c.enable_ja4_fingerprinting, "enable_ja4_fingerprinting"),
        ] {
            if set.as_ref().is_some_and(|b| b.value) {
                store.not_enforced(
                    &format!("envoy.filters.listener.tls_inspector.{what}"),
                    "TLS fingerprints are not computed",
                );
            }
        }
        let c_ = |n: &str| store.counter(format!("tls_inspector.{n}"));
        Ok(Self {
            initial_read_buffer_size: initial.min(max) as usize,
            max_client_hello_size: max as usize,
            close_on_parse_error: c.close_connection_on_client_hello_parsing_errors,
            stats: TlsInspectorStats {
                client_hello_too_large: c_("client_hello_too_large"),
                tls_found: c_("tls_found"),
                tls_not_found: c_("tls_not_found"),
                alpn_found: c_("alpn_found"),
                alpn_not_found: c_("alpn_not_found"),
                sni_found: c_("sni_found"),
                sni_not_found: c_("sni_not_found"),
                bytes_processed: store.histogram("tls_inspector.bytes_processed", Unit::Bytes),
            },
        })
    }
}

impl HttpInspector {
    fn compile(store: &Store) -> Self {
        let c = |n: &str| store.counter(format!("http_inspector.{n}"));
        Self {
            stats: HttpInspectorStats {
                read_error: c("read_error"),
                http10_found: c("http10_found"),
                http11_found: c("http11_found"),
                http2_found: c("http2_found"),
                http_not_found: c("http_not_found"),
            },
        }
    }
}

impl ListenerFilter {
    /// Decode one `listener_filters` entry. An unknown type is an error naming the filter and
    /// its type URL.
    pub(super) fn compile(
        f: &listener_pb::ListenerFilter,
        store: &Store,
    ) -> Result<Self, ConfigError> {
        use listener_pb::listener_filter::ConfigType;
        let any = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => any,
            Some(ConfigType::ConfigDiscovery(_)) => {
                return Err(ConfigError::new(
                    "config_discovery",
                    format!(
                        "listener filter {}: extension config discovery is not supported",
                        f.name
                    ),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "typed_config",
                    format!("listener filter {}: typed_config is required", f.name),
                ));
            }
        };
        let tc = typed_config(any)?;
        let url = tc.type_url();
        let decoded = if url == tls_inspector_pb::TlsInspector::type_url() {
            tc.decode().and_then(|c| {
                TlsInspector::compile(&c, store)
                    .map(|t| ListenerFilterConfig::TlsInspector(Arc::new(t)))
            })
        } else if url == http_inspector_pb::HttpInspector::type_url() {
            tc.decode::<http_inspector_pb::HttpInspector>().map(|_| {
                ListenerFilterConfig::HttpInspector(Arc::new(HttpInspector::compile(store)))
            })
        } else if url == original_dst_pb::OriginalDst::type_url() {
            tc.decode().map(|c| {
                store.not_enforced(
                    "envoy.filters.listener.original_dst",
                    "the original destination of redirected connections (sidecar capture)",
                );
                ListenerFilterConfig::OriginalDst(c)
            })
        } else if url == set_internal_dst_address::Config::type_url() {
            tc.decode().map(|c| {
                store.not_enforced(
                    "istio.set_dst_address",
                    "destination from internal listener metadata (no internal listeners yet)",
                );
                ListenerFilterConfig::SetInternalDstAddress(c)
            })
        } else {
            Err(ConfigError::new("typed_config", "unsupported type"))
        };
        let config = decoded.map_err(|e| filters::naming(e, "listener filter", &f.name, url))?;
        let disabled = f
            .filter_disabled
            .as_ref()
            .map(FilterDisabled::compile)
            .transpose()
            .within("filter_disabled")?;
        Ok(Self {
            name: f.name.clone(),
            config,
            disabled,
        })
    }

    /// Whether the filter runs on a connection to this local port.
    pub fn enabled_for(&self, local_port: Option<u16>) -> bool {
        !self
            .disabled
            .as_ref()
            .is_some_and(|d| d.matches(local_port))
    }
}
