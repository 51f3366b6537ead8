//! [`ServerContext`]: a filter chain's `DownstreamTlsContext`, and the handshake of an accepted
//! connection. The ClientHello is read before a configuration is chosen: when the client
//! offers ALPN protocols none of which we have, the handshake goes on without ALPN, as
//! BoringSSL does (rustls alone would refuse it; Istio clients offer `istio-peer-exchange`,
//! `istio-http/1.1`... to servers that list `h2`, `http/1.1`).

use super::cert::CertSummary;
use super::context::{self, Cached, CertResolver, LoadedCert};
use super::info::TlsInfo;
use super::params::{self, Params};
use super::stats::SslStats;
use super::validation::{self, ValidationSource};
use super::verifier::{Validator, Verifier};
use super::{SecretMap, TlsError};
use crate::config::{ConfigError, Within};
use crate::stats::Store;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use rustls::ServerConfig;
use rustls::server::{Acceptor, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

/// Sessions a context remembers for stateful resumption.
const SESSION_CACHE_SIZE: usize = 4096;

/// A compiled `DownstreamTlsContext`.
pub struct ServerContext {
    /// The proto it came from.
    pub proto: tls_pb::DownstreamTlsContext,
    params: Params,
    alpn: Vec<Vec<u8>>,
    validation: ValidationSource,
    require_client_cert: bool,
    prefer_client_ciphers: bool,
    /// `ssl.*` stats of the listener.
    pub stats: SslStats,
    sessions: Option<Arc<dyn StoresServerSessions>>,
    ticketer: Option<Arc<dyn ProducesTickets>>,
    cache: Cached<ServerBuilt>,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext")
            .field("proto", &self.proto)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ServerContext {
    fn eq(&self, o: &Self) -> bool {
        self.proto == o.proto
    }
}

/// A context's rustls configurations for the current secrets.
#[derive(Debug)]
pub struct ServerBuilt {
    with_alpn: Arc<ServerConfig>,
    without_alpn: Arc<ServerConfig>,
    /// The certificates served.
    pub certs: Vec<Arc<LoadedCert>>,
    /// The peer validation, if any.
    pub validator: Option<Arc<Validator>>,
    local: Option<Arc<CertSummary>>,
}

impl ServerContext {
    /// Compile a `DownstreamTlsContext`; stats go under `<scope>ssl.`.
    pub fn compile(
        ctx: &tls_pb::DownstreamTlsContext,
        store: &Store,
        scope: &str,
    ) -> Result<Self, ConfigError> {
        let default = tls_pb::CommonTlsContext::default();
        let common = ctx.common_tls_context.as_ref().unwrap_or(&default);
        let params = params::compile(common.tls_params.as_ref(), true)
            .within("common_tls_context.tls_params")?;
        if common.tls_certificates.is_empty()
            && common.tls_certificate_sds_secret_configs.is_empty()
        {
            return Err(ConfigError::new(
                "common_tls_context",
                "a DownstreamTlsContext needs tls_certificates or tls_certificate_sds_secret_configs",
            ));
        }
        unsupported_common(common).within("common_tls_context")?;
        let validation = ValidationSource::compile(common).within("common_tls_context")?;
        let require_client_cert = ctx
            .require_client_certificate
            .as_ref()
            .is_some_and(|b| b.value);
        if require_client_cert && validation == ValidationSource::None {
            return Err(ConfigError::new(
                "require_client_certificate",
                "needs a validation context",
            ));
        }
        use tls_pb::downstream_tls_context::SessionTicketKeysType as K;
        let mut stateless = true;
        match &ctx.session_ticket_keys_type {
            None => {}
            Some(K::DisableStatelessSessionResumption(d)) => stateless = !*d,
            Some(_) => {
                return Err(ConfigError::new(
                    "session_ticket_keys",
                    "explicit session ticket keys are not supported (rustls makes and rotates its own)",
                ));
            }
        }
        if ctx.session_timeout.is_some() {
            store.not_enforced(
                "envoy.transport_sockets.tls.session_timeout",
                "rustls sets the lifetime of its session tickets",
            );
        }
        let ticketer = if stateless {
            Some(rustls::crypto::ring::Ticketer::new().map_err(|e| {
                ConfigError::new(
                    "session_ticket_keys",
                    format!("cannot make a ticketer: {e}"),
                )
            })?)
        } else {
            None
        };
        let sessions: Option<Arc<dyn StoresServerSessions>> = (!ctx
            .disable_stateful_session_resumption)
            .then(|| ServerSessionMemoryCache::new(SESSION_CACHE_SIZE) as _);
        Ok(Self {
            proto: ctx.clone(),
            params,
            alpn: common
                .alpn_protocols
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            validation,
            require_client_cert,
            prefer_client_ciphers: ctx.prefer_client_ciphers,
            stats: SslStats::new(store, scope),
            sessions,
            ticketer,
            cache: Cached::default(),
        })
    }

    /// The configurations for the current secrets (built now if they changed).
    pub fn current(&self, secrets: &SecretMap) -> Result<Arc<ServerBuilt>, TlsError> {
        self.cache.get(secrets, |r| {
            let certs: Vec<Arc<LoadedCert>> = context::load_certs(
                self.proto
                    .common_tls_context
                    .as_ref()
                    .unwrap_or(&Default::default()),
                r,
                &self.params.provider,
            )?
            .into_iter()
            .map(Arc::new)
            .collect();
            let validator = match self.validation.resolve(r)? {
                Some(vc) => Some(Arc::new(validation::build(
                    &vc,
                    r,
                    &self.stats,
                    &self.params.provider,
                    self.require_client_cert,
                )?)),
                None => None,
            };
            let local = certs.first().map(|c| Arc::new(c.leaf.clone()));
            let make = |alpn: Vec<Vec<u8>>| -> Result<Arc<ServerConfig>, TlsError> {
                let b = ServerConfig::builder_with_provider(self.params.provider.clone())
                    .with_protocol_versions(&self.params.versions)
                    .map_err(|e| TlsError::Secret(e.to_string()))?;
                let b = match &validator {
                    Some(v) => b.with_client_cert_verifier(Arc::new(Verifier(v.clone(), false))),
                    None => b.with_no_client_auth(),
                };
                let mut cfg = b.with_cert_resolver(Arc::new(CertResolver(certs.clone())));
                cfg.alpn_protocols = alpn;
                cfg.ignore_client_order = !self.prefer_client_ciphers;
                cfg.session_storage = match &self.sessions {
                    Some(s) => s.clone(),
                    None => Arc::new(rustls::server::NoServerSessionStorage {}),
                };
                match &self.ticketer {
                    Some(t) => cfg.ticketer = t.clone(),
                    None => cfg.send_tls13_tickets = 0,
                }
                Ok(Arc::new(cfg))
            };
            Ok(ServerBuilt {
                with_alpn: make(self.alpn.clone())?,
                without_alpn: make(Vec::new())?,
                certs,
                validator,
                local,
            })
        })
    }

    /// The configuration built last, for `/certs`.
    pub fn last(&self) -> Option<Arc<ServerBuilt>> {
        self.cache.last()
    }

    /// Run the server handshake on `io` within `timeout`.
    pub async fn accept<IO>(
        &self,
        io: IO,
        secrets: &SecretMap,
        timeout: Duration,
    ) -> Result<(TlsStream<IO>, TlsInfo), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let res = tokio::time::timeout(timeout, self.handshake(io, secrets)).await;
        let res = res.unwrap_or(Err(TlsError::Timeout));
        if let Err(e) = &res {
            self.stats.connection_error().inc();
            if e.is_no_certificate() {
                self.stats.fail_verify_no_cert().inc();
            }
        }
        res
    }

    async fn handshake<IO>(
        &self,
        io: IO,
        secrets: &SecretMap,
    ) -> Result<(TlsStream<IO>, TlsInfo), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let built = self.current(secrets)?;
        let start = LazyConfigAcceptor::new(Acceptor::default(), io)
            .await
            .map_err(TlsError::Handshake)?;
        let hello = start.client_hello();
        let sni = hello.server_name().map(str::to_owned);
        let disjoint = !self.alpn.is_empty()
            && hello
                .alpn()
                .is_some_and(|mut offered| !offered.any(|p| self.alpn.iter().any(|a| a == p)));
        let cfg = if disjoint {
            built.without_alpn.clone()
        } else {
            built.with_alpn.clone()
        };
        let stream = start.into_stream(cfg).await.map_err(TlsError::Handshake)?;
        let info =
            TlsInfo::from_connection(stream.get_ref().1, sni, built.local.clone(), &self.stats);
        Ok((stream, info))
    }
}

/// `CommonTlsContext` fields rustls cannot honour.
#[allow(deprecated)]
pub(super) fn unsupported_common(c: &tls_pb::CommonTlsContext) -> Result<(), ConfigError> {
    let bad = [
        (
            "tls_certificate_provider_instance",
            c.tls_certificate_provider_instance.is_some(),
        ),
        (
            "tls_certificate_certificate_provider",
            c.tls_certificate_certificate_provider.is_some(),
        ),
        (
            "tls_certificate_certificate_provider_instance",
            c.tls_certificate_certificate_provider_instance.is_some(),
        ),
        (
            "custom_tls_certificate_selector",
            c.custom_tls_certificate_selector.is_some(),
        ),
        ("custom_handshaker", c.custom_handshaker.is_some()),
        ("key_log", c.key_log.is_some()),
    ];
    for (field, set) in bad {
        if set {
            return Err(ConfigError::new(field, "is not supported"));
        }
    }
    Ok(())
}
