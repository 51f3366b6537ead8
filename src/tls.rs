//! Transport sockets: a filter chain's or cluster's `transport_socket`, compiled once when the
//! configuration arrives, with the SDS secrets it names. TLS runs on rustls with the ring
//! provider: [`ServerContext`] terminates TLS on accepted connections, [`ClientContext`]
//! originates it to upstream hosts. Each builds its rustls configuration from the secrets
//! current at handshake time (SDS `World::secrets`, files, inline data) and rebuilds it when
//! they change, so rotation reaches new handshakes at once while open connections keep theirs.
//! Peer certificates go through tern's own verifier (`verifier`): CA and CRLs, SAN matchers,
//! pins, Istio's SPIFFE validator, with Envoy's `ssl.*` counters.
//!
//! Depends on `config` and `stats` only.

pub mod cert;
mod client;
mod context;
#[cfg(test)]
mod handshake_tests;
mod info;
pub mod params;
mod server;
pub mod source;
mod stats;
mod validation;
mod verifier;

pub use client::{ClientBuilt, ClientContext, ConnectOptions};
pub use context::LoadedCert;
pub use info::TlsInfo;
pub use server::{ServerBuilt, ServerContext};
pub use stats::SslStats;
pub use validation::ca_certificates;
pub use verifier::Validator;

use crate::config::{ConfigError, Within, typed_config};
use crate::stats::Store;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::internal_upstream::v3 as internal_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3 as raw_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tcp_stats::v3 as tcp_stats_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use prost::Name;
use std::collections::HashMap;
use std::sync::Arc;

pub use tls_pb::SdsSecretConfig;

/// SDS secrets by name (`World::secrets`).
pub type SecretMap = HashMap<String, Arc<tls_pb::Secret>>;

/// Why a TLS context could not be used or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A secret, file or inline certificate is missing or bad.
    #[error("{0}")]
    Secret(String),
    /// The handshake failed (the rustls error is the source's inner error).
    #[error("TLS handshake: {0}")]
    Handshake(#[source] std::io::Error),
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out")]
    Timeout,
}

impl TlsError {
    /// The rustls error behind a failed handshake.
    pub fn rustls(&self) -> Option<&rustls::Error> {
        match self {
            TlsError::Handshake(e) => e.get_ref()?.downcast_ref::<rustls::Error>(),
            _ => None,
        }
    }

    /// Whether the peer sent no certificate where one was required.
    pub fn is_no_certificate(&self) -> bool {
        matches!(self.rustls(), Some(rustls::Error::NoCertificatesPresented))
    }
}

/// Which end of a connection a transport socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A filter chain's socket (tern is the server).
    Downstream,
    /// A cluster's socket (tern is the client).
    Upstream,
}

/// A compiled `TransportSocket`.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportSocket {
    /// `envoy.transport_sockets.raw_buffer`: plaintext.
    RawBuffer,
    /// `envoy.transport_sockets.tls` with a `DownstreamTlsContext`.
    DownstreamTls(Arc<ServerContext>),
    /// `envoy.transport_sockets.tls` with an `UpstreamTlsContext`.
    UpstreamTls(Arc<ClientContext>),
    /// `envoy.transport_sockets.internal_upstream`: its `transport_socket` runs; the metadata
    /// passthrough to internal listeners is not enforced (tern has no internal listeners yet).
    InternalUpstream(Box<TransportSocket>),
    /// `envoy.transport_sockets.tcp_stats`: its `transport_socket` runs; the kernel TCP stats
    /// are not collected.
    TcpStats(Box<TransportSocket>),
}

impl TransportSocket {
    /// Decode a `TransportSocket` for `side`. The type URL decides (Istio names the socket
    /// `tls` as often as `envoy.transport_sockets.tls`); an unknown type, a context for the
    /// other side, a malformed value or TLS settings rustls cannot honour are an error naming
    /// the socket. TLS contexts count `ssl.*` under `scope` (`listener.<address>.` or
    /// `cluster.<name>.`). Each wrapper that is not enforced counts
    /// `tern.config.not_enforced.<kind>` in `store`.
    pub fn compile(
        ts: &core_pb::TransportSocket,
        side: Side,
        store: &Store,
        scope: &str,
    ) -> Result<Self, ConfigError> {
        compile_inner(ts, side, store, scope, 0)
    }

    /// The server context, looking through wrappers.
    pub fn server(&self) -> Option<&Arc<ServerContext>> {
        match self {
            TransportSocket::DownstreamTls(c) => Some(c),
            TransportSocket::InternalUpstream(i) | TransportSocket::TcpStats(i) => i.server(),
            _ => None,
        }
    }

    /// The client context, looking through wrappers.
    pub fn client(&self) -> Option<&Arc<ClientContext>> {
        match self {
            TransportSocket::UpstreamTls(c) => Some(c),
            TransportSocket::InternalUpstream(i) | TransportSocket::TcpStats(i) => i.client(),
            _ => None,
        }
    }

    /// Whether the socket needs TLS (directly or inside a wrapper).
    pub fn is_tls(&self) -> bool {
        match self {
            TransportSocket::RawBuffer => false,
            TransportSocket::DownstreamTls(_) | TransportSocket::UpstreamTls(_) => true,
            TransportSocket::InternalUpstream(inner) | TransportSocket::TcpStats(inner) => {
                inner.is_tls()
            }
        }
    }

    /// Append the SDS secrets the socket refers to (`tls_certificate_sds_secret_configs`,
    /// `validation_context_sds_secret_config`,
    /// `combined_validation_context.validation_context_sds_secret_config` and, downstream,
    /// `session_ticket_keys_sds_secret_config`) to `out`, skipping ones already there.
    pub fn sds_secrets_into(&self, out: &mut Vec<SdsSecretConfig>) {
        fn push(out: &mut Vec<SdsSecretConfig>, s: &SdsSecretConfig) {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        let common = match self {
            TransportSocket::RawBuffer => None,
            TransportSocket::DownstreamTls(d) => {
                use tls_pb::downstream_tls_context::SessionTicketKeysType;
                if let Some(SessionTicketKeysType::SessionTicketKeysSdsSecretConfig(s)) =
                    &d.proto.session_ticket_keys_type
                {
                    push(out, s);
                }
                d.proto.common_tls_context.as_ref()
            }
            TransportSocket::UpstreamTls(u) => u.proto.common_tls_context.as_ref(),
            TransportSocket::InternalUpstream(inner) | TransportSocket::TcpStats(inner) => {
                inner.sds_secrets_into(out);
                None
            }
        };
        let Some(common) = common else {
            return;
        };
        for s in &common.tls_certificate_sds_secret_configs {
            push(out, s);
        }
        use tls_pb::common_tls_context::ValidationContextType;
        match &common.validation_context_type {
            Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => push(out, s),
            Some(ValidationContextType::CombinedValidationContext(c)) => {
                if let Some(s) = &c.validation_context_sds_secret_config {
                    push(out, s);
                }
            }
            _ => {}
        }
    }

    /// The SDS secrets the socket refers to, without duplicates.
    pub fn sds_secrets(&self) -> Vec<SdsSecretConfig> {
        let mut out = Vec::new();
        self.sds_secrets_into(&mut out);
        out
    }
}

/// Wrappers nest (internal_upstream around tcp_stats around tls...); a few levels are plenty.
const MAX_NESTING: usize = 4;

fn compile_inner(
    ts: &core_pb::TransportSocket,
    side: Side,
    store: &Store,
    scope: &str,
    depth: usize,
) -> Result<TransportSocket, ConfigError> {
    if depth > MAX_NESTING {
        return Err(ConfigError::new(
            "",
            format!("transport sockets nested more than {MAX_NESTING} deep"),
        ));
    }
    use core_pb::transport_socket::ConfigType;
    let any = match &ts.config_type {
        Some(ConfigType::TypedConfig(any)) => any,
        // Envoy still accepts a name alone for the plaintext socket.
        None if matches!(
            ts.name.as_str(),
            "envoy.transport_sockets.raw_buffer" | "raw_buffer"
        ) =>
        {
            return Ok(TransportSocket::RawBuffer);
        }
        None => {
            return Err(ConfigError::new(
                "typed_config",
                format!("transport socket {}: typed_config is required", ts.name),
            ));
        }
    };
    let tc = typed_config(any)?;
    let url = tc.type_url();
    let unsupported = |why: &str| {
        ConfigError::new(
            "typed_config",
            format!("transport socket {} ({url}) {why}", ts.name),
        )
    };
    if url == raw_pb::RawBuffer::type_url() {
        tc.decode::<raw_pb::RawBuffer>()?;
        return Ok(TransportSocket::RawBuffer);
    }
    if url == tls_pb::DownstreamTlsContext::type_url() {
        if side != Side::Downstream {
            return Err(unsupported("is a downstream context on an upstream socket"));
        }
        let ctx: tls_pb::DownstreamTlsContext = tc.decode()?;
        let ctx = ServerContext::compile(&ctx, store, scope).within("typed_config")?;
        return Ok(TransportSocket::DownstreamTls(Arc::new(ctx)));
    }
    if url == tls_pb::UpstreamTlsContext::type_url() {
        if side != Side::Upstream {
            return Err(unsupported("is an upstream context on a filter chain"));
        }
        let ctx: tls_pb::UpstreamTlsContext = tc.decode()?;
        let ctx = ClientContext::compile(&ctx, store, scope).within("typed_config")?;
        return Ok(TransportSocket::UpstreamTls(Arc::new(ctx)));
    }
    if url == internal_pb::InternalUpstreamTransport::type_url() {
        if side != Side::Upstream {
            return Err(unsupported("is an upstream socket on a filter chain"));
        }
        let cfg: internal_pb::InternalUpstreamTransport = tc.decode()?;
        let inner = cfg
            .transport_socket
            .as_ref()
            .ok_or_else(|| ConfigError::new("transport_socket", "is required"))
            .within("typed_config")?;
        let inner = compile_inner(inner, side, store, scope, depth + 1)
            .within("typed_config.transport_socket")?;
        store.not_enforced(
            "envoy.transport_sockets.internal_upstream",
            "metadata passthrough to internal listeners; the inner transport socket is used",
        );
        return Ok(TransportSocket::InternalUpstream(Box::new(inner)));
    }
    if url == tcp_stats_pb::Config::type_url() {
        let cfg: tcp_stats_pb::Config = tc.decode()?;
        let inner = cfg
            .transport_socket
            .as_ref()
            .ok_or_else(|| ConfigError::new("transport_socket", "is required"))
            .within("typed_config")?;
        let inner = compile_inner(inner, side, store, scope, depth + 1)
            .within("typed_config.transport_socket")?;
        store.not_enforced(
            "envoy.transport_sockets.tcp_stats",
            "kernel TCP statistics; the inner transport socket is used",
        );
        return Ok(TransportSocket::TcpStats(Box::new(inner)));
    }
    Err(unsupported("is not supported"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn socket<T: Message + Name>(name: &str, m: &T) -> core_pb::TransportSocket {
        core_pb::TransportSocket {
            name: name.into(),
            config_type: Some(core_pb::transport_socket::ConfigType::TypedConfig(Any {
                type_url: T::type_url(),
                value: m.encode_to_vec(),
            })),
        }
    }

    fn sds(name: &str) -> SdsSecretConfig {
        SdsSecretConfig {
            name: name.into(),
            ..Default::default()
        }
    }

    fn istio_common() -> tls_pb::CommonTlsContext {
        use tls_pb::common_tls_context::{
            CombinedCertificateValidationContext, ValidationContextType,
        };
        tls_pb::CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds("default")],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    validation_context_sds_secret_config: Some(sds("ROOTCA")),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn tls_contexts_expose_their_secrets_and_count() {
        let store = Store::new();
        let down = socket(
            "tls",
            &tls_pb::DownstreamTlsContext {
                common_tls_context: Some(istio_common()),
                ..Default::default()
            },
        );
        let ts =
            TransportSocket::compile(&down, Side::Downstream, &store, "listener.test.").unwrap();
        assert!(ts.is_tls());
        let names: Vec<String> = ts.sds_secrets().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["default", "ROOTCA"]);
        assert_eq!(store.counter_value("listener.test.ssl.handshake"), Some(0));
        // The same context on the wrong side is an error.
        let e =
            TransportSocket::compile(&down, Side::Upstream, &store, "listener.test.").unwrap_err();
        assert!(e.to_string().contains("DownstreamTlsContext"), "{e}");

        let up = socket(
            "envoy.transport_sockets.tls",
            &tls_pb::UpstreamTlsContext {
                common_tls_context: Some(istio_common()),
                sni: "outbound_.80_._.svc.ns.svc.cluster.local".into(),
                ..Default::default()
            },
        );
        let wrapped = socket(
            "envoy.transport_sockets.internal_upstream",
            &internal_pb::InternalUpstreamTransport {
                transport_socket: Some(up),
                ..Default::default()
            },
        );
        let ts =
            TransportSocket::compile(&wrapped, Side::Upstream, &store, "listener.test.").unwrap();
        assert!(ts.is_tls());
        assert_eq!(ts.sds_secrets().len(), 2);
    }

    #[test]
    fn raw_buffer_and_unknown_sockets() {
        let store = Store::new();
        let raw = socket("envoy.transport_sockets.raw_buffer", &raw_pb::RawBuffer {});
        let ts = TransportSocket::compile(&raw, Side::Upstream, &store, "listener.test.").unwrap();
        assert_eq!(ts, TransportSocket::RawBuffer);
        assert!(ts.sds_secrets().is_empty());
        let bare = core_pb::TransportSocket {
            name: "raw_buffer".into(),
            config_type: None,
        };
        assert!(
            TransportSocket::compile(&bare, Side::Downstream, &store, "listener.test.").is_ok()
        );
        let alts = core_pb::TransportSocket {
            name: "envoy.transport_sockets.alts".into(),
            config_type: Some(core_pb::transport_socket::ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.extensions.transport_sockets.alts.v3.Alts"
                    .into(),
                value: vec![],
            })),
        };
        let e =
            TransportSocket::compile(&alts, Side::Upstream, &store, "listener.test.").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("envoy.transport_sockets.alts") && e.contains("v3.Alts"),
            "{e}"
        );
        let bad = core_pb::TransportSocket {
            name: "tls".into(),
            config_type: Some(core_pb::transport_socket::ConfigType::TypedConfig(Any {
                type_url: tls_pb::UpstreamTlsContext::type_url(),
                value: vec![0xff, 0xff],
            })),
        };
        assert!(TransportSocket::compile(&bad, Side::Upstream, &store, "listener.test.").is_err());
    }
}
