//! Native TLS for the serve loop (rustls on aws-lc-rs, the one TLS stack
//! Keyport links): the certificate chain and private key read from PEM
//! files, and re-read on demand (`keyport serve` does it on SIGHUP). A
//! reload changes what new handshakes get; open connections keep the
//! session they made, and a reload that fails leaves the served
//! certificate as it was.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::TlsFiles;

/// A request extension the serve loop adds to every request that arrived
/// over Keyport's own TLS, so the HTTPS rule can trust the transport rather
/// than the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverTls;

/// Why a certificate or key could not be used. Each message names the file
/// and holds its cause, so it is one line for an operator.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("TLS key {} does not belong to the certificate {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// The certificate the server presents, read from `files`, swapped by
/// [`TlsCertificate::reload`]. It is the rustls certificate resolver, so
/// every handshake asks it for the current certificate.
pub struct TlsCertificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl TlsCertificate {
    /// Reads and checks the certificate chain and key: both must parse and
    /// the key must be the certificate's.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let current = read_certified_key(files, &provider)?;
        Ok(Self {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Reads the files again. New handshakes get the new certificate;
    /// on an error the previous one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(read_certified_key(&self.files, &self.provider)?);
        *self.current.write().expect("tls certificate") = fresh;
        Ok(())
    }

    /// The files this certificate is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// A TLS acceptor presenting this certificate, offering HTTP/1.1 only
    /// (the serve loop speaks nothing else).
    pub(crate) fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for TlsCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("tls certificate").clone())
    }
}

impl fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish_non_exhaustive()
    }
}

fn read_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let certificate_error = |reason: String| TlsError::Certificate {
        path: files.cert.clone(),
        reason,
    };
    let key_error = |reason: String| TlsError::Key {
        path: files.key.clone(),
        reason,
    };
    let chain = read_chain(&files.cert).map_err(certificate_error)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        key_error(match e {
            pem::Error::NoItemsFound => "no private key in the file".into(),
            e => pem_reason(e),
        })
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(rustls_reason(e)))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // aws-lc-rs keys know their public half, so a mismatch is caught
        // here; a key that cannot say is given the benefit of the doubt,
        // as rustls itself does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(e) => Err(certificate_error(rustls_reason(e))),
    }
}

/// The chain in `path`: the server's certificate first, then any
/// intermediates, as web servers expect them.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(pem_reason)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_reason)?;
    if chain.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(chain)
}

fn pem_reason(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a PEM section has a malformed BEGIN line".into(),
        pem::Error::Base64Decode(e) => format!("a PEM section is not valid base64 ({e})"),
        e => e.to_string(),
    }
}

fn rustls_reason(e: rustls::Error) -> String {
    match e {
        // rustls prefixes these with "unexpected error", which they are not.
        rustls::Error::General(reason) => reason,
        e => e.to_string(),
    }
}
