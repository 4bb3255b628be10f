//! Native HTTPS/WSS on the public port (`TLS_CERT_FILE`, `TLS_KEY_FILE`).
//!
//! rustls (ring) over glommio's `TcpStream` through `futures-rustls`: a
//! shard accepts a TCP connection, completes the TLS handshake within the
//! handshake timeout, and serves the decrypted stream exactly as a plain
//! one (WebSocket upgrade or REST). The port then speaks TLS only.
//!
//! Reloading (SIGHUP, see `server`): the `ServerConfig` never changes; its
//! certificate resolver holds the current certificate and key behind a
//! lock that is read once per handshake. A reload parses both files first
//! and swaps them in only when they are good, so new connections get the
//! new certificate, existing ones keep their session (one handed to another
//! shard too: it moves with its keys, `shard::handoff`), and a bad file
//! leaves the old certificate in place (with an error in the log).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use futures_rustls::TlsAcceptor;
use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, ConfigError};

/// The public port's TLS: the acceptor every shard uses, and the files to
/// reload from.
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The certificate new handshakes get.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

impl Tls {
    /// Loads the certificate chain and key; errors name the setting.
    pub fn from_files(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<Tls>> {
        let key = load(cert_file, key_file)?;
        let current = Arc::new(Current(RwLock::new(key)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // WebSocket upgrades and the REST API are HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
        }))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads both files again; on success new handshakes use them, on
    /// failure nothing changes.
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let key = load(&self.cert_file, &self.key_file)?;
        *self.current.0.write() = key;
        Ok(())
    }
}

/// What is wrong with a TLS file, and which setting names it.
#[derive(Debug)]
pub struct TlsFileError {
    /// The config key: `tls_cert_file` or `tls_key_file`.
    pub key: &'static str,
    pub problem: String,
}

impl std::fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) {}",
            self.key.to_ascii_uppercase(),
            self.key,
            self.problem
        )
    }
}

impl std::error::Error for TlsFileError {}

/// Whether the configured files parse and belong together, as a
/// configuration error naming the setting (`config check` and start-up
/// validation, through `cli::problems`); `None` without TLS.
pub(crate) fn config_problem(config: &Config) -> Option<ConfigError> {
    let (cert_file, key_file) = config.tls_files()?;
    let e = load(cert_file, key_file).err()?;
    Some(ConfigError::invalid(
        e.key,
        e.problem,
        "give a PEM certificate chain (leaf first) and the PEM private key of its leaf",
    ))
}

/// Parses a PEM certificate chain and its private key into what rustls
/// serves, checking that the key fits the certificate.
fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, TlsFileError> {
    let cert_error = |problem: String| TlsFileError {
        key: "tls_cert_file",
        problem: format!("{}: {problem}", cert_file.display()),
    };
    let key_error = |problem: String| TlsFileError {
        key: "tls_key_file",
        problem: format!("{}: {problem}", key_file.display()),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| cert_error(format!("not a readable PEM certificate chain ({e})")))?;
    if certs.is_empty() {
        return Err(cert_error("holds no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| key_error(format!("not a readable PEM private key ({e})")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| key_error(format!("unsupported key ({e})")))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        key_error(format!(
            "does not belong to the certificate in TLS_CERT_FILE {} ({e})",
            cert_file.display()
        ))
    })?;
    Ok(Arc::new(certified))
}
