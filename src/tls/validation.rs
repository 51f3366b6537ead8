//! `CertificateValidationContext`: the static checks done when configuration arrives (so a bad
//! matcher is a NACK), the merge of a combined context's default part with the SDS one, and
//! the compiled [`Validator`] with its trust material, built when a context is (re)built.

// `match_subject_alt_names` and the certificate-provider fields are deprecated but still Envoy
// API that istiod sends (the former) or that must be refused clearly (the latter).
#![allow(deprecated)]

use super::TlsError;
use super::source::{self, Reader};
use super::stats::SslStats;
use super::verifier::{SanMatcher, Trust, Validator};
use crate::config::{ConfigError, StringMatch, Within, typed_config};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use prost::Name;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;

/// Where the validation context of a TLS context comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValidationSource {
    /// None: the peer is not verified (a server does not ask for a client certificate).
    None,
    /// `validation_context`, inline.
    Static(Box<tls_pb::CertificateValidationContext>),
    /// `validation_context_sds_secret_config` or `combined_validation_context`: the SDS
    /// secret merged over the default (possibly empty) context.
    Sds {
        /// The secret's name.
        name: String,
        /// `default_validation_context`.
        default: Box<tls_pb::CertificateValidationContext>,
    },
}

impl ValidationSource {
    /// Read the validation context type of a `CommonTlsContext`, checking what can be checked
    /// before the secrets arrive.
    pub fn compile(common: &tls_pb::CommonTlsContext) -> Result<Self, ConfigError> {
        use tls_pb::common_tls_context::ValidationContextType as V;
        let out = match &common.validation_context_type {
            None => ValidationSource::None,
            Some(V::ValidationContext(vc)) => ValidationSource::Static(Box::new(vc.clone())),
            Some(V::ValidationContextSdsSecretConfig(s)) => ValidationSource::Sds {
                name: s.name.clone(),
                default: Box::default(),
            },
            Some(V::CombinedValidationContext(c)) => {
                let Some(s) = &c.validation_context_sds_secret_config else {
                    return Err(ConfigError::new(
                        "combined_validation_context.validation_context_sds_secret_config",
                        "is required",
                    ));
                };
                ValidationSource::Sds {
                    name: s.name.clone(),
                    default: Box::new(c.default_validation_context.clone().unwrap_or_default()),
                }
            }
            Some(V::ValidationContextCertificateProvider(_))
            | Some(V::ValidationContextCertificateProviderInstance(_)) => {
                return Err(ConfigError::new(
                    "validation_context_certificate_provider",
                    "certificate providers are not supported",
                ));
            }
        };
        match &out {
            ValidationSource::Static(vc) => check(vc, true).within("validation_context")?,
            ValidationSource::Sds { default, .. } => check(default, false)
                .within("combined_validation_context.default_validation_context")?,
            ValidationSource::None => {}
        }
        Ok(out)
    }

    /// The context to use now: the static one, or the SDS secret merged over the default.
    pub fn resolve(
        &self,
        r: &mut Reader<'_>,
    ) -> Result<Option<tls_pb::CertificateValidationContext>, TlsError> {
        match self {
            ValidationSource::None => Ok(None),
            ValidationSource::Static(vc) => Ok(Some((**vc).clone())),
            ValidationSource::Sds { name, default } => {
                let secret = r.secret(name)?;
                let Some(tls_pb::secret::Type::ValidationContext(dynamic)) = &secret.r#type else {
                    return Err(TlsError::Secret(format!(
                        "SDS secret {name:?} is not a validation context"
                    )));
                };
                check(dynamic, true).map_err(|e| TlsError::Secret(format!("{name}: {e}")))?;
                Ok(Some(merge((**default).clone(), dynamic)))
            }
        }
    }
}

/// Merge `over` into `base` as protobuf's `MergeFrom` does: set message fields replace,
/// repeated fields append, set scalars replace.
fn merge(
    mut base: tls_pb::CertificateValidationContext,
    over: &tls_pb::CertificateValidationContext,
) -> tls_pb::CertificateValidationContext {
    let o = over.clone();
    macro_rules! take {
        ($($f:ident),*) => { $( if o.$f.is_some() { base.$f = o.$f; } )* };
    }
    take!(
        trusted_ca,
        crl,
        custom_validator_config,
        max_verify_depth,
        watched_directory,
        system_root_certs,
        ca_certificate_provider_instance,
        require_signed_certificate_timestamp
    );
    base.verify_certificate_spki
        .extend(o.verify_certificate_spki);
    base.verify_certificate_hash
        .extend(o.verify_certificate_hash);
    base.match_typed_subject_alt_names
        .extend(o.match_typed_subject_alt_names);
    base.match_subject_alt_names
        .extend(o.match_subject_alt_names);
    base.allow_expired_certificate |= o.allow_expired_certificate;
    base.only_verify_leaf_cert_crl |= o.only_verify_leaf_cert_crl;
    base.suppress_client_ca_list |= o.suppress_client_ca_list;
    if o.trust_chain_verification != 0 {
        base.trust_chain_verification = o.trust_chain_verification;
    }
    base
}

/// Check a validation context (`complete`: it is the final one, so SAN matchers need a CA).
fn check(vc: &tls_pb::CertificateValidationContext, complete: bool) -> Result<(), ConfigError> {
    matchers(vc)?;
    pins(vc)?;
    if complete
        && vc.trusted_ca.is_none()
        && vc.custom_validator_config.is_none()
        && (!vc.match_typed_subject_alt_names.is_empty() || !vc.match_subject_alt_names.is_empty())
    {
        return Err(ConfigError::new(
            "match_typed_subject_alt_names",
            "SAN-based verification of peer certificates without trusted CA is insecure and not allowed",
        ));
    }
    if vc.system_root_certs.is_some() {
        return Err(ConfigError::new("system_root_certs", "is not supported"));
    }
    if vc.ca_certificate_provider_instance.is_some() {
        return Err(ConfigError::new(
            "ca_certificate_provider_instance",
            "is not supported",
        ));
    }
    if vc
        .require_signed_certificate_timestamp
        .as_ref()
        .is_some_and(|b| b.value)
    {
        return Err(ConfigError::new(
            "require_signed_certificate_timestamp",
            "is not supported",
        ));
    }
    if let Some(cv) = &vc.custom_validator_config {
        spiffe_config(cv).within("custom_validator_config")?;
    }
    Ok(())
}

fn matchers(vc: &tls_pb::CertificateValidationContext) -> Result<Vec<SanMatcher>, ConfigError> {
    use tls_pb::subject_alt_name_matcher::SanType;
    let mut out = Vec::new();
    for (i, m) in vc.match_typed_subject_alt_names.iter().enumerate() {
        let path = format!("match_typed_subject_alt_names[{i}]");
        let kind = match SanType::try_from(m.san_type) {
            Ok(SanType::Uri) => SanType::Uri,
            Ok(SanType::Dns) => SanType::Dns,
            Ok(SanType::Email) => SanType::Email,
            Ok(SanType::IpAddress) => SanType::IpAddress,
            Ok(SanType::OtherName) => {
                return Err(ConfigError::new(
                    &path,
                    "OTHER_NAME SAN matching is not supported",
                ));
            }
            _ => return Err(ConfigError::new(&path, "san_type is required")),
        };
        let sm = m
            .matcher
            .as_ref()
            .ok_or_else(|| ConfigError::new("matcher", "is required"))
            .and_then(StringMatch::compile)
            .within(&path)?;
        out.push(SanMatcher {
            kind: Some(kind),
            matcher: sm,
        });
    }
    for (i, m) in vc.match_subject_alt_names.iter().enumerate() {
        let sm = StringMatch::compile(m).within(format!("match_subject_alt_names[{i}]"))?;
        out.push(SanMatcher {
            kind: None,
            matcher: sm,
        });
    }
    Ok(out)
}

type Pins = (Vec<[u8; 32]>, Vec<[u8; 32]>);

fn pins(vc: &tls_pb::CertificateValidationContext) -> Result<Pins, ConfigError> {
    use base64::Engine;
    let mut spki = Vec::new();
    for (i, p) in vc.verify_certificate_spki.iter().enumerate() {
        let b = base64::engine::general_purpose::STANDARD
            .decode(p)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                ConfigError::new(
                    format!("verify_certificate_spki[{i}]"),
                    format!("invalid base64-encoded SHA-256 {p:?}"),
                )
            })?;
        spki.push(b);
    }
    let mut hashes = Vec::new();
    for (i, h) in vc.verify_certificate_hash.iter().enumerate() {
        let clean: String = h.chars().filter(|c| *c != ':').collect();
        let bytes: Option<Vec<u8>> = (0..clean.len())
            .step_by(2)
            .map(|j| {
                clean
                    .get(j..j + 2)
                    .and_then(|x| u8::from_str_radix(x, 16).ok())
            })
            .collect();
        let b = bytes
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                ConfigError::new(
                    format!("verify_certificate_hash[{i}]"),
                    format!("invalid hex-encoded SHA-256 {h:?}"),
                )
            })?;
        hashes.push(b);
    }
    Ok((spki, hashes))
}

/// Istio's `envoy.tls.cert_validator.spiffe`: per-trust-domain bundles.
fn spiffe_config(
    cv: &envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig,
) -> Result<tls_pb::SpiffeCertValidatorConfig, ConfigError> {
    let any = cv
        .typed_config
        .as_ref()
        .ok_or_else(|| ConfigError::new("typed_config", "is required"))?;
    let tc = typed_config(any)?;
    if tc.type_url() != tls_pb::SpiffeCertValidatorConfig::type_url() {
        return Err(ConfigError::new(
            "typed_config",
            format!(
                "certificate validator {} ({}) is not supported",
                cv.name,
                tc.type_url()
            ),
        ));
    }
    let cfg: tls_pb::SpiffeCertValidatorConfig = tc.decode()?;
    if cfg.trust_bundles.is_some() {
        return Err(ConfigError::new(
            "trust_bundles",
            "SPIFFE bundle maps are not supported; use trust_domains",
        ));
    }
    if cfg.trust_domains.is_empty() {
        return Err(ConfigError::new("trust_domains", "must not be empty"));
    }
    Ok(cfg)
}

/// Build the validator of a resolved validation context.
pub fn build(
    vc: &tls_pb::CertificateValidationContext,
    r: &mut Reader<'_>,
    stats: &SslStats,
    provider: &rustls::crypto::CryptoProvider,
    require_cert: bool,
) -> Result<Validator, TlsError> {
    let cfg = |e: ConfigError| TlsError::Secret(e.to_string());
    let sans = matchers(vc).map_err(cfg)?;
    let (spki, hashes) = pins(vc).map_err(cfg)?;
    let mut ca_ders = Vec::new();
    let trust = if let Some(cv) = &vc.custom_validator_config {
        let spiffe = spiffe_config(cv).map_err(cfg)?;
        let mut domains = HashMap::new();
        for td in &spiffe.trust_domains {
            let bundle = td.trust_bundle.as_ref().ok_or_else(|| {
                TlsError::Secret(format!(
                    "trust domain {}: trust_bundle is required",
                    td.name
                ))
            })?;
            let loaded = r.read(bundle, "trust_bundle")?;
            let certs = source::certs(&loaded, "trust_bundle")?;
            ca_ders.push((loaded.path.clone(), certs.clone()));
            domains.insert(td.name.clone(), certs);
        }
        Trust::spiffe(domains)?
    } else if let Some(ca) = &vc.trusted_ca {
        let loaded = r.read(ca, "trusted_ca")?;
        let certs = source::certs(&loaded, "trusted_ca")?;
        ca_ders.push((loaded.path.clone(), certs.clone()));
        Trust::roots(certs)?
    } else {
        Trust::None
    };
    let crls = match &vc.crl {
        Some(c) => {
            let loaded = r.read(c, "crl")?;
            source::crls(&loaded, "crl")?
                .iter()
                .map(|d| {
                    webpki::OwnedCertRevocationList::from_der(d.as_ref())
                        .map_err(|e| TlsError::Secret(format!("crl: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    use tls_pb::certificate_validation_context::TrustChainVerification as T;
    Ok(Validator {
        trust,
        ca_ders,
        crls,
        crl_leaf_only: vc.only_verify_leaf_cert_crl,
        sans,
        spki,
        hashes,
        accept_untrusted: vc.trust_chain_verification == T::AcceptUntrusted as i32,
        allow_expired: vc.allow_expired_certificate,
        max_depth: vc.max_verify_depth.as_ref().map(|d| d.value),
        require_cert,
        send_ca_list: !vc.suppress_client_ca_list,
        stats: stats.clone(),
        algs: provider.signature_verification_algorithms,
    })
}

/// The CA certificates of a validator as DER, for `/certs`.
pub fn ca_certificates(v: &Validator) -> impl Iterator<Item = (&str, &CertificateDer<'static>)> {
    v.ca_ders
        .iter()
        .flat_map(|(path, certs)| certs.iter().map(move |c| (path.as_str(), c)))
}

/// A validator that accepts any certificate (an upstream context without a validation
/// context: Envoy does not verify the server then).
pub fn no_validation(stats: &SslStats, provider: &rustls::crypto::CryptoProvider) -> Validator {
    Validator {
        trust: Trust::None,
        ca_ders: Vec::new(),
        crls: Vec::new(),
        crl_leaf_only: false,
        sans: Vec::new(),
        spki: Vec::new(),
        hashes: Vec::new(),
        accept_untrusted: false,
        allow_expired: false,
        max_depth: None,
        require_cert: false,
        send_ca_list: false,
        stats: stats.clone(),
        algs: provider.signature_verification_algorithms,
    }
}
