//! `forward_client_cert_details` and `set_current_client_cert_details`: what the connection
//! manager does with `x-forwarded-client-cert` (XFCC). Istio's inbound listeners use
//! `APPEND_FORWARD` with subject, URI and DNS.

use crate::config::ConfigError;
use crate::stats::Store;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;

/// `ForwardClientCertDetails`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardClientCert {
    /// `SANITIZE` (default): the header is removed.
    #[default]
    Sanitize,
    /// `FORWARD_ONLY`: kept as it came on mTLS connections, removed otherwise.
    ForwardOnly,
    /// `APPEND_FORWARD`: this hop's client certificate details are appended (mTLS only).
    AppendForward,
    /// `SANITIZE_SET`: replaced by this hop's details (mTLS only).
    SanitizeSet,
    /// `ALWAYS_FORWARD_ONLY`: always kept as it came.
    AlwaysForwardOnly,
}

/// The XFCC settings of a connection manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertConfig {
    /// `forward_client_cert_details`.
    pub mode: ForwardClientCert,
    /// `set_current_client_cert_details.subject`.
    pub subject: bool,
    /// `set_current_client_cert_details.uri`.
    pub uri: bool,
    /// `set_current_client_cert_details.dns`.
    pub dns: bool,
}

impl ClientCertConfig {
    /// Read the connection manager's fields.
    pub fn compile(h: &hcm_pb::HttpConnectionManager, store: &Store) -> Result<Self, ConfigError> {
        use hcm_pb::http_connection_manager::ForwardClientCertDetails as F;
        let mode = match F::try_from(h.forward_client_cert_details) {
            Ok(F::Sanitize) => ForwardClientCert::Sanitize,
            Ok(F::ForwardOnly) => ForwardClientCert::ForwardOnly,
            Ok(F::AppendForward) => ForwardClientCert::AppendForward,
            Ok(F::SanitizeSet) => ForwardClientCert::SanitizeSet,
            Ok(F::AlwaysForwardOnly) => ForwardClientCert::AlwaysForwardOnly,
            Err(_) => {
                return Err(ConfigError::new(
                    "forward_client_cert_details",
                    format!("unknown value {}", h.forward_client_cert_details),
                ));
            }
        };
        let d = h.set_current_client_cert_details.unwrap_or_default();
        if d.cert || d.chain {
            store.not_enforced(
                "http_connection_manager.set_current_client_cert_details.cert",
                "the URL-encoded client certificate (Cert=, Chain=) is not added to XFCC",
            );
        }
        Ok(Self {
            mode,
            subject: d.subject.is_some_and(|b| b.value),
            uri: d.uri,
            dns: d.dns,
        })
    }
}
