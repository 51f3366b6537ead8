//! Where TLS material comes from: `DataSource`s (inline bytes or strings, files, environment
//! variables) and SDS secrets by name, read when a context is (re)built. Every file read is
//! remembered with its identity (inode, size, modification time) so a context can tell that a
//! certificate on disk changed (Istio rotates mounted files by renaming a new one in place).

use super::{SecretMap, TlsError};
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

/// Certificates, keys and CRLs larger than this are refused (a PEM bundle of a few hundred
/// CAs is well under it).
pub const MAX_SOURCE_BYTES: u64 = 4 * 1024 * 1024;

/// The identity of a file when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    /// The path as configured.
    pub path: String,
    id: Option<(u64, u64, Option<SystemTime>)>,
}

impl FileStamp {
    fn of(path: &str) -> Self {
        use std::os::unix::fs::MetadataExt;
        let id = std::fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.len(), m.modified().ok()));
        Self {
            path: path.to_owned(),
            id,
        }
    }

    /// Whether the file is no longer the one that was read.
    pub fn changed(&self) -> bool {
        *self != Self::of(&self.path)
    }
}

/// Reads sources for one build of a context, collecting the secrets and files it used.
#[derive(Debug)]
pub struct Reader<'a> {
    secrets: &'a SecretMap,
    /// The secrets used, by name, as found (`None`: missing).
    pub used_secrets: Vec<(String, Option<Arc<tls_pb::Secret>>)>,
    /// The files read.
    pub files: Vec<FileStamp>,
}

/// Bytes with the path they came from (`<inline>` otherwise), for `/certs`.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The file name, or `<inline>`.
    pub path: String,
}

impl<'a> Reader<'a> {
    /// A reader over the current SDS secrets.
    pub fn new(secrets: &'a SecretMap) -> Self {
        Self {
            secrets,
            used_secrets: Vec::new(),
            files: Vec::new(),
        }
    }

    /// An SDS secret by name; a missing one is an error (the handshake fails until it comes).
    pub fn secret(&mut self, name: &str) -> Result<Arc<tls_pb::Secret>, TlsError> {
        let found = self.secrets.get(name).cloned();
        if !self.used_secrets.iter().any(|(n, _)| n == name) {
            self.used_secrets.push((name.to_owned(), found.clone()));
        }
        found.ok_or_else(|| TlsError::Secret(format!("SDS secret {name:?} is not available")))
    }

    /// Read a `DataSource`.
    pub fn read(&mut self, d: &core_pb::DataSource, what: &str) -> Result<Loaded, TlsError> {
        use core_pb::data_source::Specifier;
        let err = |m: String| TlsError::Secret(format!("{what}: {m}"));
        let (bytes, path) = match &d.specifier {
            Some(Specifier::InlineBytes(b)) => (b.clone(), "<inline>".to_owned()),
            Some(Specifier::InlineString(s)) => (s.clone().into_bytes(), "<inline>".to_owned()),
            Some(Specifier::Filename(f)) => {
                self.files.push(FileStamp::of(f));
                let file =
                    std::fs::File::open(f).map_err(|e| err(format!("cannot open {f}: {e}")))?;
                let mut buf = Vec::new();
                file.take(MAX_SOURCE_BYTES + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| err(format!("cannot read {f}: {e}")))?;
                (buf, f.clone())
            }
            Some(Specifier::EnvironmentVariable(v)) => (
                std::env::var(v)
                    .map_err(|_| err(format!("environment variable {v} is not set")))?
                    .into_bytes(),
                "<inline>".to_owned(),
            ),
            None => return Err(err("the data source is empty".into())),
        };
        if bytes.len() as u64 > MAX_SOURCE_BYTES {
            return Err(err(format!("larger than {MAX_SOURCE_BYTES} bytes")));
        }
        Ok(Loaded { bytes, path })
    }

    /// Whether anything this reader used has changed since: a secret replaced or removed in
    /// `now`, or a file changed on disk.
    pub fn stale(
        used: &[(String, Option<Arc<tls_pb::Secret>>)],
        files: &[FileStamp],
        now: &SecretMap,
        check_files: bool,
    ) -> bool {
        let secret_changed = used.iter().any(|(n, old)| match (old, now.get(n)) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, None) => false,
            _ => true,
        });
        secret_changed || (check_files && files.iter().any(FileStamp::changed))
    }
}

/// PEM certificates (a chain or a CA bundle); at least one.
pub fn certs(l: &Loaded, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&l.bytes).collect();
    let certs = certs.map_err(|e| TlsError::Secret(format!("{what} ({}): {e}", l.path)))?;
    if certs.is_empty() {
        return Err(TlsError::Secret(format!(
            "{what} ({}): no PEM certificate found",
            l.path
        )));
    }
    Ok(certs)
}

/// A PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn private_key(l: &Loaded, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&l.bytes)
        .map_err(|e| TlsError::Secret(format!("{what} ({}): {e}", l.path)))
}

/// PEM CRLs; at least one.
pub fn crls(
    l: &Loaded,
    what: &str,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&l.bytes).collect();
    let crls = crls.map_err(|e| TlsError::Secret(format!("{what} ({}): {e}", l.path)))?;
    if crls.is_empty() {
        return Err(TlsError::Secret(format!(
            "{what} ({}): no PEM CRL found",
            l.path
        )));
    }
    Ok(crls)
}
