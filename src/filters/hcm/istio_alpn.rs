//! Istio's `istio.alpn` HTTP filter: the ALPN protocols offered on upstream TLS connections
//! by the upstream HTTP protocol, compiled once per connection manager.

use super::HttpFilterConfig;
use std::sync::Arc;

/// The `istio.alpn` lists for HTTP/1.1 and HTTP/2, compiled once.
pub(super) fn lists(filters: &[HttpFilterConfig]) -> [Option<Arc<[Vec<u8>]>>; 2] {
    use crate::config::istio::alpn::Protocol;
    let pick = |want: Protocol| {
        filters.iter().find_map(|f| match f {
            HttpFilterConfig::Alpn(c) => c
                .alpn_override
                .iter()
                .find(|o| o.upstream_protocol == want as i32)
                .map(|o| {
                    o.alpn_override
                        .iter()
                        .map(|a| a.as_bytes().to_vec())
                        .collect::<Vec<_>>()
                        .into()
                }),
            _ => None,
        })
    };
    [pick(Protocol::Http11), pick(Protocol::Http2)]
}
