//! [`ClientContext`]: a cluster's `UpstreamTlsContext`, and the client handshake on a new
//! upstream connection: SNI (`sni`; the host's name with `auto_host_sni`; the request's host
//! with the cluster's `auto_sni`), SAN checks (configured matchers, and the SNI with
//! `auto_sni_san_validation` or the cluster's `auto_san_validation`), ALPN (configured, or
//! overridden per connection by the caller: `h2` for HTTP/2 clusters, Istio's `istio.alpn`),
//! session resumption (`max_session_keys`).

use super::context::{self, Cached, LoadedCert};
use super::info::TlsInfo;
use super::params::{self, Params};
use super::server::unsupported_common;
use super::stats::SslStats;
use super::validation::{self, ValidationSource};
use super::verifier::{Validator, Verifier};
use super::{SecretMap, TlsError};
use crate::config::{ConfigError, Within};
use crate::stats::Store;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use rustls::ClientConfig;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::pki_types::ServerName;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

/// A compiled `UpstreamTlsContext`.
pub struct ClientContext {
    /// The proto it came from.
    pub proto: tls_pb::UpstreamTlsContext,
    params: Params,
    /// `common_tls_context.alpn_protocols`.
    pub alpn: Vec<Vec<u8>>,
    validation: ValidationSource,
    /// `ssl.*` stats of the cluster.
    pub stats: SslStats,
    sessions: Option<Arc<dyn ClientSessionStore>>,
    cache: Cached<ClientBuilt>,
    /// A digest of the proto: connections made with different contexts are never pooled
    /// together.
    pub fingerprint: u64,
}

impl std::fmt::Debug for ClientContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientContext")
            .field("proto", &self.proto)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientContext {
    fn eq(&self, o: &Self) -> bool {
        self.proto == o.proto
    }
}

/// A context's rustls configuration for the current secrets.
#[derive(Debug)]
pub struct ClientBuilt {
    config: Arc<ClientConfig>,
    /// The same, checking the SNI against the server's DNS SANs.
    config_auto_san: Arc<ClientConfig>,
    /// Our client certificate(s).
    pub certs: Vec<LoadedCert>,
    /// The server validation, if any.
    pub validator: Option<Arc<Validator>>,
}

/// Per-connection choices of the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConnectOptions {
    /// The SNI to send (the cluster's `auto_sni`: the request's host; `auto_host_sni`: the
    /// host's name), instead of `sni`.
    pub sni: Option<String>,
    /// Check the SNI against the server's DNS SANs (the cluster's `auto_san_validation`).
    pub auto_san: bool,
    /// ALPN protocols to offer instead of `alpn_protocols`.
    pub alpn: Option<Arc<[Vec<u8>]>>,
}

impl ClientContext {
    /// Compile an `UpstreamTlsContext`; stats go under `<scope>ssl.`.
    pub fn compile(
        ctx: &tls_pb::UpstreamTlsContext,
        store: &Store,
        scope: &str,
    ) -> Result<Self, ConfigError> {
        let default = tls_pb::CommonTlsContext::default();
        let common = ctx.common_tls_context.as_ref().unwrap_or(&default);
        let params = params::compile(common.tls_params.as_ref(), false)
            .within("common_tls_context.tls_params")?;
        unsupported_common(common).within("common_tls_context")?;
        let validation = ValidationSource::compile(common).within("common_tls_context")?;
        if common.tls_certificates.len() + common.tls_certificate_sds_secret_configs.len() > 1 {
            return Err(ConfigError::new(
                "common_tls_context",
                "an UpstreamTlsContext takes at most one client certificate",
            ));
        }
        let keys = ctx.max_session_keys.as_ref().map_or(1, |v| v.value) as usize;
        let sessions: Option<Arc<dyn ClientSessionStore>> =
            (keys > 0).then(|| Arc::new(ClientSessionMemoryCache::new(keys)) as _);
        let fingerprint = xxhash_rust::xxh64::xxh64(&prost::Message::encode_to_vec(ctx), 0);
        Ok(Self {
            proto: ctx.clone(),
            params,
            alpn: common
                .alpn_protocols
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            validation,
            stats: SslStats::new(store, scope),
            sessions,
            cache: Cached::default(),
            fingerprint,
        })
    }

    /// `auto_host_sni`: send the host's name as SNI.
    pub fn auto_host_sni(&self) -> bool {
        self.proto.auto_host_sni
    }

    /// The configuration for the current secrets (built now if they changed).
    pub fn current(&self, secrets: &SecretMap) -> Result<Arc<ClientBuilt>, TlsError> {
        self.cache.get(secrets, |r| {
            let common = self.proto.common_tls_context.clone().unwrap_or_default();
            let certs = context::load_certs(&common, r, &self.params.provider)?;
            let validator = match self.validation.resolve(r)? {
                Some(vc) => Some(Arc::new(validation::build(
                    &vc,
                    r,
                    &self.stats,
                    &self.params.provider,
                    true,
                )?)),
                None => None,
            };
            let v = validator.clone().unwrap_or_else(|| {
                Arc::new(validation::no_validation(
                    &self.stats,
                    &self.params.provider,
                ))
            });
            let make = |auto_san: bool| -> Result<Arc<ClientConfig>, TlsError> {
                let b = ClientConfig::builder_with_provider(self.params.provider.clone())
                    .with_protocol_versions(&self.params.versions)
                    .map_err(|e| TlsError::Secret(e.to_string()))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Verifier(v.clone(), auto_san)));
                let mut cfg = match certs.first() {
                    Some(c) => b.with_client_cert_resolver(Arc::new(OneCert(c.key.clone()))),
                    None => b.with_no_client_auth(),
                };
                cfg.alpn_protocols = self.alpn.clone();
                cfg.resumption = match &self.sessions {
                    Some(s) => Resumption::store(s.clone()),
                    None => Resumption::disabled(),
                };
                Ok(Arc::new(cfg))
            };
            let auto = self.proto.auto_sni_san_validation;
            Ok(ClientBuilt {
                config: make(auto)?,
                config_auto_san: make(true)?,
                certs,
                validator,
            })
        })
    }

    /// The configuration built last, for `/certs`.
    pub fn last(&self) -> Option<Arc<ClientBuilt>> {
        self.cache.last()
    }

    /// Run the client handshake on `io` (connected to `peer`).
    pub async fn connect<IO>(
        &self,
        io: IO,
        secrets: &SecretMap,
        peer: Option<IpAddr>,
        opts: &ConnectOptions,
    ) -> Result<(TlsStream<IO>, TlsInfo), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let res = self.handshake(io, secrets, peer, opts).await;
        if res.is_err() {
            self.stats.connection_error().inc();
        }
        res
    }

    async fn handshake<IO>(
        &self,
        io: IO,
        secrets: &SecretMap,
        peer: Option<IpAddr>,
        opts: &ConnectOptions,
    ) -> Result<(TlsStream<IO>, TlsInfo), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let built = self.current(secrets)?;
        let base = if opts.auto_san {
            &built.config_auto_san
        } else {
            &built.config
        };
        let config = match &opts.alpn {
            Some(a) if **a != base.alpn_protocols[..] => {
                let mut c = (**base).clone();
                c.alpn_protocols = a.to_vec();
                Arc::new(c)
            }
            _ => base.clone(),
        };
        let sni = opts
            .sni
            .clone()
            .or_else(|| (!self.proto.sni.is_empty()).then(|| self.proto.sni.clone()));
        // No SNI: name the peer by its address, which rustls never sends as SNI.
        let fallback =
            || ServerName::IpAddress(peer.unwrap_or(IpAddr::from([127, 0, 0, 1])).into());
        let name = match &sni {
            Some(s) => ServerName::try_from(s.clone()).unwrap_or_else(|_| fallback()),
            None => fallback(),
        };
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, io)
            .await
            .map_err(TlsError::Handshake)?;
        let local = built.certs.first().map(|c| Arc::new(c.leaf.clone()));
        let info = TlsInfo::from_connection(stream.get_ref().1, sni, local, &self.stats);
        Ok((stream, info))
    }
}

/// Presents one client certificate whenever the server asks.
#[derive(Debug)]
struct OneCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}
