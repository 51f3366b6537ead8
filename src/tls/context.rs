//! What the server and client contexts share: loading certificate/key pairs (inline, files or
//! SDS `tls_certificate` secrets), choosing a server certificate by SNI and signature scheme,
//! and the cache that rebuilds a context's rustls configuration when the SDS secrets or the
//! files it was built from change (rotation: new handshakes use the new certificate at once,
//! open connections keep theirs).

use super::cert::CertSummary;
use super::source::{self, FileStamp, Reader};
use super::{SecretMap, TlsError};
use arc_swap::ArcSwapOption;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a context looks at the files it was built from.
pub const FILE_POLL: Duration = Duration::from_secs(2);

/// A loaded certificate chain and key.
#[derive(Debug)]
pub struct LoadedCert {
    /// The chain (leaf first) and signing key.
    pub key: Arc<CertifiedKey>,
    /// Where the chain came from (file name or `<inline>`).
    pub chain_path: String,
    /// The leaf, summarised.
    pub leaf: CertSummary,
}

/// Load `tls_certificates` and the SDS `tls_certificate_sds_secret_configs` of a context.
pub fn load_certs(
    common: &tls_pb::CommonTlsContext,
    r: &mut Reader<'_>,
    provider: &CryptoProvider,
) -> Result<Vec<LoadedCert>, TlsError> {
    let mut out = Vec::new();
    for c in &common.tls_certificates {
        out.push(load_one(c, r, provider)?);
    }
    for s in &common.tls_certificate_sds_secret_configs {
        let secret = r.secret(&s.name)?;
        let Some(tls_pb::secret::Type::TlsCertificate(c)) = &secret.r#type else {
            return Err(TlsError::Secret(format!(
                "SDS secret {:?} is not a tls_certificate",
                s.name
            )));
        };
        out.push(load_one(c, r, provider)?);
    }
    Ok(out)
}

fn load_one(
    c: &tls_pb::TlsCertificate,
    r: &mut Reader<'_>,
    provider: &CryptoProvider,
) -> Result<LoadedCert, TlsError> {
    if c.password.is_some() {
        return Err(TlsError::Secret(
            "encrypted private keys (password) are not supported".into(),
        ));
    }
    if c.private_key_provider.is_some() {
        return Err(TlsError::Secret(
            "private_key_provider is not supported".into(),
        ));
    }
    let chain_src = c
        .certificate_chain
        .as_ref()
        .ok_or_else(|| TlsError::Secret("certificate_chain is required".into()))?;
    let key_src = c
        .private_key
        .as_ref()
        .ok_or_else(|| TlsError::Secret("private_key is required".into()))?;
    let chain_l = r.read(chain_src, "certificate_chain")?;
    let chain = source::certs(&chain_l, "certificate_chain")?;
    let key_l = r.read(key_src, "private_key")?;
    let key = source::private_key(&key_l, "private_key")?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Secret(format!("private_key ({}): {e}", key_l.path)))?;
    let mut ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| TlsError::Secret(format!("certificate_chain ({}): {e}", chain_l.path)))?;
    if let Some(o) = &c.ocsp_staple {
        ck.ocsp = Some(r.read(o, "ocsp_staple")?.bytes);
    }
    let leaf = ck
        .cert
        .first()
        .and_then(|d| CertSummary::parse(d))
        .unwrap_or_default();
    Ok(LoadedCert {
        key: Arc::new(ck),
        chain_path: chain_l.path,
        leaf,
    })
}

/// Picks the server certificate: one whose DNS SANs match the SNI and whose key can sign with
/// a scheme the client offers; else the first that can sign; else the first.
#[derive(Debug)]
pub struct CertResolver(pub Vec<Arc<LoadedCert>>);

fn sni_matches(c: &CertSummary, sni: &str) -> bool {
    c.dns_sans.iter().any(|d| {
        d.eq_ignore_ascii_case(sni)
            || d.strip_prefix("*.").is_some_and(|rest| {
                sni.split_once('.')
                    .is_some_and(|(_, tail)| tail.eq_ignore_ascii_case(rest))
            })
    })
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let can_sign = |c: &&Arc<LoadedCert>| c.key.key.choose_scheme(schemes).is_some();
        let by_sni = hello.server_name().and_then(|sni| {
            self.0
                .iter()
                .filter(can_sign)
                .find(|c| sni_matches(&c.leaf, sni))
        });
        by_sni
            .or_else(|| self.0.iter().find(can_sign))
            .or_else(|| self.0.first())
            .map(|c| c.key.clone())
    }
}

struct Built<T> {
    value: Arc<T>,
    used: Vec<(String, Option<Arc<tls_pb::Secret>>)>,
    files: Vec<FileStamp>,
    /// Milliseconds after `origin` when the files were last looked at.
    checked: AtomicU64,
    origin: Instant,
}

/// A context's current rustls configuration, rebuilt when what it was built from changes.
pub struct Cached<T> {
    cur: ArcSwapOption<Built<T>>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self {
            cur: ArcSwapOption::empty(),
        }
    }
}

impl<T> std::fmt::Debug for Cached<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cached")
    }
}

impl<T> Cached<T> {
    /// The value for the secrets in `secrets`, built by `build` if nothing is cached or what
    /// the cached value used has changed. When a rebuild fails while an older value exists,
    /// the older value stays in use (as Envoy keeps a context when an update is rejected)
    /// until the inputs change again.
    pub fn get(
        &self,
        secrets: &SecretMap,
        build: impl FnOnce(&mut Reader<'_>) -> Result<T, TlsError>,
    ) -> Result<Arc<T>, TlsError> {
        let cur = self.cur.load_full();
        if let Some(b) = &cur {
            let now_ms = b.origin.elapsed().as_millis() as u64;
            let last = b.checked.load(Ordering::Relaxed);
            let check_files = !b.files.is_empty()
                && now_ms.saturating_sub(last) >= FILE_POLL.as_millis() as u64
                && b.checked
                    .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
            if !Reader::stale(&b.used, &b.files, secrets, check_files) {
                return Ok(b.value.clone());
            }
        }
        let mut r = Reader::new(secrets);
        let result = build(&mut r);
        let value = match (result, &cur) {
            (Ok(v), _) => Arc::new(v),
            (Err(e), Some(old)) => {
                tracing::warn!(error = %e, "TLS context rebuild failed; the previous certificates stay in use");
                old.value.clone()
            }
            (Err(e), None) => {
                // Nothing cached: a missing secret is retried on the next handshake.
                return Err(e);
            }
        };
        self.cur.store(Some(Arc::new(Built {
            value: value.clone(),
            used: r.used_secrets,
            files: r.files,
            checked: AtomicU64::new(0),
            origin: Instant::now(),
        })));
        Ok(value)
    }

    /// The value built last, if any (for `/certs`).
    pub fn last(&self) -> Option<Arc<T>> {
        self.cur.load().as_ref().map(|b| b.value.clone())
    }
}
