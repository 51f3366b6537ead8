//! `envoy.filters.http.compressor`: response compression with gzip, brotli or zstd, as Envoy
//! does it (Istio serves `/stats/prometheus` on 15090 through three of these filters).
//!
//! The configuration is compiled here once ([`CompressorConfig`]); the per-stream part is in
//! [`stream`]: [`stream::decode`] reads the request (`Accept-Encoding`, HEAD) before the
//! router, [`stream::StreamCompression::encode`] decides on the response headers and returns
//! the body wrapper ([`stream::CompressBody`]) that compresses frame by frame. Several
//! compressor filters in one chain negotiate one encoding per stream ([`negotiate`]).
//!
//! Depends on `config` and `stats` only.

pub mod library;
pub mod negotiate;
pub mod stream;

#[cfg(test)]
mod tests;

use crate::config::{ConfigError, StringMatch, TypedConfig, Within, typed_config, u32_or};
use crate::stats::{Counter, Store};
use envoy_types::pb::envoy::extensions::filters::http::compressor::v3 as compressor_pb;
pub use library::{Encoding, Library};

/// Envoy's content types when a direction lists none.
const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "application/javascript",
    "application/x-javascript",
    "text/javascript",
    "text/x-javascript",
    "text/ecmascript",
    "text/js",
    "text/jscript",
    "text/x-js",
    "application/ecmascript",
    "application/x-json",
    "application/xml",
    "application/json",
    "image/svg+xml",
    "text/xml",
    "application/xhtml+xml",
];

/// Which content types a direction compresses (`CommonDirectionConfig.content_type` /
/// `content_type_matcher`), compared with the `Content-Type` up to its first `;`, trimmed.
#[derive(Debug, Clone)]
pub enum ContentTypes {
    /// `content_type` (or Envoy's default list): exact, case-insensitive.
    List(Vec<String>),
    /// `content_type_matcher`: any matcher matches (case as each matcher says).
    Matchers(Vec<StringMatch>),
}

impl ContentTypes {
    /// Whether a response (or request) with this content type (`None`: no `Content-Type`
    /// header) may be compressed. A message without one may.
    pub fn allows(&self, content_type: Option<&str>) -> bool {
        let Some(ct) = content_type else {
            return true;
        };
        match self {
            ContentTypes::List(l) => l.iter().any(|t| t.eq_ignore_ascii_case(ct)),
            ContentTypes::Matchers(m) => m.iter().any(|m| m.matches(ct)),
        }
    }
}

/// The stats of one direction: `<prefix>[response.|request.]<name>`.
#[derive(Debug, Clone)]
pub struct DirectionStats {
    /// `compressed`.
    pub compressed: Counter,
    /// `not_compressed`.
    pub not_compressed: Counter,
    /// `total_uncompressed_bytes`.
    pub total_uncompressed_bytes: Counter,
    /// `total_compressed_bytes`.
    pub total_compressed_bytes: Counter,
    /// `content_length_too_small`.
    pub content_length_too_small: Counter,
}

const DIRECTION_STATS: &[&str] = &[
    "compressed",
    "not_compressed",
    "total_uncompressed_bytes",
    "total_compressed_bytes",
    "content_length_too_small",
];

impl DirectionStats {
    fn new(store: &Store, prefix: &str) -> Self {
        let mut c = store.counter_block(prefix, DIRECTION_STATS).into_iter();
        let mut next = || c.next().unwrap_or_default();
        Self {
            compressed: next(),
            not_compressed: next(),
            total_uncompressed_bytes: next(),
            total_compressed_bytes: next(),
            content_length_too_small: next(),
        }
    }
}

/// The filter's `Accept-Encoding` and ETag stats, `<prefix><name>` in both layouts.
#[derive(Debug, Clone)]
pub struct HeaderStats {
    /// `no_accept_header`.
    pub no_accept_header: Counter,
    /// `header_identity`.
    pub header_identity: Counter,
    /// `header_compressor_used`.
    pub header_compressor_used: Counter,
    /// `header_compressor_overshadowed`.
    pub header_compressor_overshadowed: Counter,
    /// `header_wildcard`.
    pub header_wildcard: Counter,
    /// `header_not_valid`.
    pub header_not_valid: Counter,
    /// `not_compressed_etag`.
    pub not_compressed_etag: Counter,
}

const HEADER_STATS: &[&str] = &[
    "no_accept_header",
    "header_identity",
    "header_compressor_used",
    "header_compressor_overshadowed",
    "header_wildcard",
    "header_not_valid",
    "not_compressed_etag",
];

impl HeaderStats {
    fn new(store: &Store, prefix: &str) -> Self {
        let mut c = store.counter_block(prefix, HEADER_STATS).into_iter();
        let mut next = || c.next().unwrap_or_default();
        Self {
            no_accept_header: next(),
            header_identity: next(),
            header_compressor_used: next(),
            header_compressor_overshadowed: next(),
            header_wildcard: next(),
            header_not_valid: next(),
            not_compressed_etag: next(),
        }
    }
}

/// `response_direction_config` (or the deprecated top-level fields when it is absent).
#[derive(Debug, Clone)]
pub struct ResponseDirection {
    /// `common_config.enabled` (a runtime flag: its `default_value`; default true).
    pub enabled: bool,
    /// `common_config.min_content_length` (default 30).
    pub min_content_length: u64,
    /// `common_config.content_type` / `content_type_matcher`.
    pub content_types: ContentTypes,
    /// `disable_on_etag_header`.
    pub disable_on_etag_header: bool,
    /// `weaken_etag_on_compress`: a strong ETag becomes `W/...` instead of being removed.
    pub weaken_etag_on_compress: bool,
    /// `remove_accept_encoding_header`.
    pub remove_accept_encoding_header: bool,
    /// `uncompressible_response_codes`.
    pub uncompressible_response_codes: Vec<u16>,
    /// `status_header_enabled`: add `x-envoy-compression-status`.
    pub status_header: bool,
    /// `compressed`, `not_compressed`, byte totals, `content_length_too_small`.
    pub stats: DirectionStats,
}

/// Compiled `envoy.extensions.filters.http.compressor.v3.Compressor`.
#[derive(Debug, Clone)]
pub struct CompressorConfig {
    /// `compressor_library`.
    pub library: Library,
    /// `choose_first`.
    pub choose_first: bool,
    /// The response direction.
    pub response: ResponseDirection,
    /// `Accept-Encoding` and ETag stats.
    pub header_stats: HeaderStats,
    /// `request.*` stats. Request compression is not enforced: requests always pass as they
    /// are and count `request.not_compressed`.
    pub request_stats: DirectionStats,
}

fn runtime_flag(f: Option<&envoy_types::pb::envoy::config::core::v3::RuntimeFeatureFlag>) -> bool {
    // tern has no runtime layer: a flag is its default value.
    f.is_none_or(|f| f.default_value.as_ref().is_none_or(|v| v.value))
}

fn content_types(
    list: &[String],
    matchers: &[envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher],
) -> Result<ContentTypes, ConfigError> {
    if !matchers.is_empty() {
        let m = matchers
            .iter()
            .enumerate()
            .map(|(i, m)| StringMatch::compile(m).within(format!("content_type_matcher[{i}]")))
            .collect::<Result<_, _>>()?;
        return Ok(ContentTypes::Matchers(m));
    }
    let list: &[String] = list;
    Ok(ContentTypes::List(if list.is_empty() {
        DEFAULT_CONTENT_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        list.to_vec()
    }))
}

fn min_length(v: Option<&envoy_types::pb::google::protobuf::UInt32Value>) -> u64 {
    // Envoy treats 0 as unset.
    match u32_or(v, 30) {
        0 => 30,
        n => n.into(),
    }
}

impl CompressorConfig {
    /// Compile the filter's config; stats go under `http.<hcm_prefix>.compressor.<library
    /// name>.<library>.`.
    #[allow(deprecated)]
    pub fn compile(
        c: &compressor_pb::Compressor,
        hcm_prefix: &str,
        store: &Store,
    ) -> Result<Self, ConfigError> {
        let lib = c
            .compressor_library
            .as_ref()
            .ok_or_else(|| ConfigError::new("compressor_library", "is required"))?;
        if lib.name.is_empty() {
            return Err(ConfigError::new(
                "compressor_library.name",
                "must not be empty",
            ));
        }
        let any = lib
            .typed_config
            .as_ref()
            .ok_or_else(|| ConfigError::new("compressor_library.typed_config", "is required"))?;
        let tc: TypedConfig<'_> = typed_config(any).within("compressor_library")?;
        let library = Library::compile(&tc, store).within("compressor_library.typed_config")?;
        let prefix = format!(
            "http.{hcm_prefix}.compressor.{}.{}.",
            lib.name,
            library.encoding().stat_name()
        );
        let response = match &c.response_direction_config {
            Some(r) => {
                let common = r.common_config.clone().unwrap_or_default();
                let mut codes = Vec::with_capacity(r.uncompressible_response_codes.len());
                for (i, &code) in r.uncompressible_response_codes.iter().enumerate() {
                    if !(200..600).contains(&code) || codes.contains(&(code as u16)) {
                        return Err(ConfigError::new(
                            format!("response_direction_config.uncompressible_response_codes[{i}]"),
                            format!("{code}: codes must be unique and in 200..600"),
                        ));
                    }
                    codes.push(code as u16);
                }
                ResponseDirection {
                    enabled: runtime_flag(common.enabled.as_ref()),
                    min_content_length: min_length(common.min_content_length.as_ref()),
                    content_types: content_types(
                        &common.content_type,
                        &common.content_type_matcher,
                    )
                    .within("response_direction_config.common_config")?,
                    disable_on_etag_header: r.disable_on_etag_header,
                    weaken_etag_on_compress: r.weaken_etag_on_compress,
                    remove_accept_encoding_header: r.remove_accept_encoding_header,
                    uncompressible_response_codes: codes,
                    status_header: r.status_header_enabled,
                    stats: DirectionStats::new(store, &format!("{prefix}response.")),
                }
            }
            // The deprecated top-level fields, and stats without `response.`.
            None => ResponseDirection {
                enabled: runtime_flag(c.runtime_enabled.as_ref()),
                min_content_length: min_length(c.content_length.as_ref()),
                content_types: content_types(&c.content_type, &[])?,
                disable_on_etag_header: c.disable_on_etag_header,
                weaken_etag_on_compress: false,
                remove_accept_encoding_header: c.remove_accept_encoding_header,
                uncompressible_response_codes: Vec::new(),
                status_header: false,
                stats: DirectionStats::new(store, &prefix),
            },
        };
        if let Some(r) = &c.request_direction_config {
            let common = r.common_config.clone().unwrap_or_default();
            content_types(&common.content_type, &common.content_type_matcher)
                .within("request_direction_config.common_config")?;
            if runtime_flag(common.enabled.as_ref()) {
                store.not_enforced(
                    "envoy.filters.http.compressor.request_direction_config",
                    "request body compression: requests are forwarded uncompressed",
                );
            }
        }
        Ok(Self {
            library,
            choose_first: c.choose_first,
            response,
            header_stats: HeaderStats::new(store, &prefix),
            request_stats: DirectionStats::new(store, &format!("{prefix}request.")),
        })
    }

    /// The content coding this filter produces.
    pub fn encoding(&self) -> Encoding {
        self.library.encoding()
    }
}
