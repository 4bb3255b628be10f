//! TLS clients for a server started with `TLS_CERT_FILE`/`TLS_KEY_FILE`:
//! a test CA generated with rcgen, the leaves it signs, and rustls client
//! connections trusting it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::TestServer;

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A test CA and the leaves it signs.
pub struct Ca {
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gatrix test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a leaf for localhost/127.0.0.1 into `dir` (cert.pem,
    /// key.pem) and returns its DER.
    pub fn leaf(&self, dir: &Path, name: &str, serial: u64) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// A TLS connection to the server, verified against the test CA, with
/// its handshake done.
pub fn tls_connect(port: u16, config: &Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// `GET path` over HTTPS; returns (status, body).
pub fn https_get(
    port: u16,
    config: &Arc<ClientConfig>,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let mut tls = tls_connect(port, config)?;
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify ends the read with an error;
    // what arrived before it is the answer.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

/// A server with the certificate and key in `dir` (cert.pem, key.pem),
/// once it answers `/health` over HTTPS.
pub fn start_tls(dir: &Path, config: &Arc<ClientConfig>) -> TestServer {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut server = TestServer::start_unready(&[
        ("TLS_CERT_FILE", cert.to_str().unwrap()),
        ("TLS_KEY_FILE", key.to_str().unwrap()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, _)) = https_get(server.port(), config, "/health") {
            return server;
        }
        assert!(server.exited().is_none(), "exited:\n{}", server.log());
        assert!(Instant::now() < deadline, "not ready:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// TLS connections for `common::polling`, reads timing out after `WAIT`.
pub fn dial(config: Arc<ClientConfig>) -> super::polling::Dial {
    Arc::new(move |port| {
        let tls = tls_connect(port, &config).expect("TLS connect");
        tls.sock.set_read_timeout(Some(super::raw::WAIT)).unwrap();
        Box::new(tls)
    })
}
