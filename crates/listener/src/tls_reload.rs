//! TLS from certificate and key files an operator manages (the public
//! gateway's `--gateway-tls-cert` / `--gateway-tls-key`), reloaded when the
//! files change, without dropping a connection.
//!
//! [`CertificateFiles`] is a rustls [`ResolvesServerCert`] that hands each
//! new handshake the certificate in force, an `Arc` swapped under a
//! read-write lock held only for the swap; a connection keeps the key it
//! was established with. [`CertificateFiles::watch`] polls the files'
//! modification times (and reloads on SIGHUP); a new pair that does not
//! load (unreadable, not PEM, no certificate, a key that does not match
//! the certificate) is logged and the old one stays in force.
//!
//! [`server_config`] is the rustls configuration of such a listener:
//! TLS 1.2 and 1.3 with the `ring` provider, ALPN `h2` then `http/1.1`.
//!
//! # Trust
//! Trusts the files (the operator's) and rustls for parsing and the
//! handshake. The private key is never logged or put in an error.
//! Client certificates are requested, never required; the handshake only
//! checks that a client holds the key of the certificate it sends
//! (`client_auth.rs`), the chain is validated per request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

/// ALPN protocol ids, most preferred first (RFC 7301; `h2` is RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Largest certificate or key file read (a chain is a few KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a certificate and key pair did not load.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is larger than {MAX_FILE_BYTES} bytes; is it the right file?")]
    TooLarge { path: PathBuf },
    #[error("`{path}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: PathBuf },
    #[error("`{path}` is not PEM certificates: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("`{path}` holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("the key in `{key}` does not fit the certificate in `{cert}`: {detail}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let read = |source| TlsFileError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_FILE_BYTES {
        return Err(TlsFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    std::fs::read(path).map_err(read)
}

/// Load a certificate chain (PEM, end-entity first) and its private key
/// (PEM), checking that the key is the certificate's.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsFileError> {
    let cert_pem = read_bounded(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::BadCertificate {
            path: cert.to_owned(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsFileError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_pem = zeroize::Zeroizing::new(read_bounded(key)?);
    // The parse error is not shown: it could quote key material.
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsFileError::NoKey {
        path: key.to_owned(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, private, &provider).map_err(|e| TlsFileError::KeyMismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// When each file was last modified, and its length: what a change is
/// noticed by.
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let c = std::fs::metadata(cert).ok()?;
    let k = std::fs::metadata(key).ok()?;
    Some((c.modified().ok()?, c.len(), k.modified().ok()?, k.len()))
}

/// The server certificate of a listener, from files, reloaded when they
/// change.
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamp when last loaded (or tried): a bad pair is
    /// reported once, not on every poll.
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CertificateFiles {
    /// Load the pair; a pair that does not load is an error (start-up
    /// fails rather than serving without a certificate).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertificateFiles>, TlsFileError> {
        let seen = stamp(cert, key);
        let loaded = load_certified_key(cert, key)?;
        Ok(Arc::new(CertificateFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
            seen: Mutex::new(seen),
        }))
    }

    /// The certificate chain in force (end-entity first).
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .cert
            .clone()
    }

    /// Reload if the files changed since last seen (`force`: whatever
    /// their stamps say). True when a new pair is in force.
    pub fn reload_if_changed(&self, force: bool) -> bool {
        let now = stamp(&self.cert, &self.key);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if !force && *seen == now {
                return false;
            }
            *seen = now;
        }
        match load_certified_key(&self.cert, &self.key) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "TLS certificate not reloaded; the one in force stays");
                false
            }
        }
    }

    /// Poll the files every `interval`, and reload at once on SIGHUP,
    /// until `shutdown` turns true.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler; TLS files are polled only");
                None
            }
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let force = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            };
            let this = self.clone();
            // File reads and a key parse: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed(force)).await;
        }
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The rustls configuration of a listener serving `certificates`: TLS 1.2
/// and 1.3 (`ring`), client certificates requested but not required (and
/// only proved to be the client's, [`PossessionVerifier`](crate::PossessionVerifier)), ALPN `h2` and
/// `http/1.1`.
pub fn server_config(
    certificates: Arc<CertificateFiles>,
) -> Result<rustls::ServerConfig, TlsFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let clients = crate::client_auth::PossessionVerifier::new(&provider);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsFileError::Config(e.to_string()))?
        .with_client_cert_verifier(clients)
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec![format!("{name}.test")]).unwrap();
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_bad_new_pair_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair(dir.path(), "a");
        let files = CertificateFiles::load(&c, &k).unwrap();
        let first = files.current_chain();
        // A key of another certificate: refused, the old pair stays.
        let (_, other_key) = pair(dir.path(), "b");
        std::fs::copy(&other_key, &k).unwrap();
        assert!(!files.reload_if_changed(true));
        assert_eq!(files.current_chain(), first);
        // Garbage instead of a certificate: the same.
        std::fs::write(&c, "not a certificate").unwrap();
        assert!(!files.reload_if_changed(true));
        assert_eq!(files.current_chain(), first);
        // A good new pair is taken.
        let (c2, k2) = pair(dir.path(), "c");
        std::fs::copy(&c2, &c).unwrap();
        std::fs::copy(&k2, &k).unwrap();
        assert!(files.reload_if_changed(true));
        assert_ne!(files.current_chain(), first);
    }

    #[test]
    fn start_up_with_a_bad_pair_fails_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = pair(dir.path(), "a");
        let (_, k) = pair(dir.path(), "b");
        let e = CertificateFiles::load(&c, &k).unwrap_err();
        assert!(matches!(e, TlsFileError::KeyMismatch { .. }), "{e}");
        let missing = dir.path().join("missing.key");
        let e = CertificateFiles::load(&c, &missing).unwrap_err();
        assert!(e.to_string().contains("missing.key"), "{e}");
        std::fs::write(
            &missing,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = CertificateFiles::load(&c, &missing).unwrap_err();
        assert!(!e.to_string().contains("AAAA"), "{e}");
    }
}
