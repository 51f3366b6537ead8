//! TLS on new upstream connections: which context and per-connection options (SNI, ALPN,
//! SAN check) a request's connection needs, and the pool key that keeps connections made with
//! different options apart.

use crate::tls::{ClientContext, ConnectOptions, SecretMap};
use crate::upstream::cluster::Cluster;
use crate::upstream::host::Host;
use crate::upstream::pool::UpstreamProtocol;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// TLS for a new upstream connection.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The cluster's (or the matching `transport_socket_matches` entry's) context.
    pub ctx: Arc<ClientContext>,
    /// The secrets current when the request was routed.
    pub secrets: Arc<SecretMap>,
    /// SNI, ALPN and SAN choices for this connection.
    pub opts: ConnectOptions,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// The pool key: connections share a pool only with the same context and options.
    pub fn key(&self) -> u64 {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        self.ctx.fingerprint.hash(&mut h);
        self.opts.hash(&mut h);
        h.finish().max(1)
    }

    /// The TLS a connection from `cluster` to `host` needs, if any. `authority` is the
    /// request's host (for the cluster's `auto_sni`); `alpn` an override (Istio's `istio.alpn`);
    /// without one, an HTTP/2 cluster whose context lists no ALPN protocol offers `h2`.
    pub fn for_host(
        cluster: &Cluster,
        host: &Host,
        secrets: impl FnOnce() -> Arc<SecretMap>,
        protocol: Option<UpstreamProtocol>,
        authority: Option<&str>,
        alpn: Option<Arc<[Vec<u8>]>>,
    ) -> Option<UpstreamTls> {
        let ctx = cluster.tls_for(host)?.clone();
        let mut opts = ConnectOptions::default();
        if ctx.auto_host_sni() && !host.hostname.is_empty() {
            opts.sni = Some(host.hostname.to_string());
        }
        if cluster.pool.auto_sni
            && let Some(a) = authority
        {
            let name = match a.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => h,
                _ => a,
            };
            opts.sni = Some(name.to_owned());
        }
        opts.auto_san = cluster.pool.auto_san_validation;
        opts.alpn = alpn.or_else(|| {
            (ctx.alpn.is_empty() && protocol == Some(UpstreamProtocol::Http2)).then(|| {
                static H2: std::sync::OnceLock<Arc<[Vec<u8>]>> = std::sync::OnceLock::new();
                H2.get_or_init(|| Arc::from(vec![b"h2".to_vec()])).clone()
            })
        });
        Some(UpstreamTls {
            ctx,
            secrets: secrets(),
            opts,
        })
    }
}
