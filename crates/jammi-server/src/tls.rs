//! TLS on every listener (rustls with the ring provider), and the transport rule: a listener
//! on a non-loopback address needs TLS unless the operator says the network is trusted
//! (`--allow-insecure-transport`), because tokens and rows would otherwise cross it in
//! clear text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::error::{Result, ServerError};

/// A client that has not finished its TLS handshake by then is dropped, so slow handshakes
/// cannot pile up.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key files (PEM) of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// TLS loaded and checked at start.
#[derive(Clone)]
pub(crate) struct Tls {
    /// For the Postgres protocol (no ALPN).
    pub(crate) plain: TlsAcceptor,
    /// For HTTP: ALPN offers HTTP/2 and HTTP/1.1.
    pub(crate) http: TlsAcceptor,
    /// The PEM texts, for tonic's own TLS set-up (Flight SQL).
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// Read and check `files`; every problem names the file and what is wrong with it.
    pub(crate) fn load(files: &TlsFiles) -> Result<Tls> {
        let read = |path: &PathBuf, what: &str| std::fs::read(path).map_err(|e| ServerError::Start(format!("cannot read the TLS {what} {}: {e}", path.display())));
        let cert_pem = read(&files.cert, "certificate")?;
        let key_pem = read(&files.key, "key")?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| ServerError::Start(format!("the TLS certificate {} is not PEM: {e}", files.cert.display())))?;
        if chain.is_empty() {
            return Err(ServerError::Start(format!("the TLS certificate {} holds no CERTIFICATE block", files.cert.display())));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| ServerError::Start(format!("the TLS key {} holds no private key in PEM: {e}", files.key.display())))?;
        let config = |alpn: Vec<Vec<u8>>| -> Result<TlsAcceptor> {
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| ServerError::Start(format!("TLS: {e}")))?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| ServerError::Start(format!("the TLS key {} does not fit the certificate {}: {e}", files.key.display(), files.cert.display())))?;
            config.alpn_protocols = alpn;
            Ok(TlsAcceptor::from(Arc::new(config)))
        };
        Ok(Tls { plain: config(Vec::new())?, http: config(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?, cert_pem, key_pem })
    }
}

/// Refuse a listener on a non-loopback address without TLS unless the operator allowed it.
pub fn check_transport(addr: &SocketAddr, tls: bool, allow_insecure: bool, protocol: &str) -> Result<()> {
    if tls || allow_insecure || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(ServerError::Start(format!(
        "refusing to serve {protocol} on {addr} without TLS: tokens and rows would cross the network in clear text; give --tls-cert and --tls-key, or --allow-insecure-transport when a trusted network or a TLS proxy on this host protects it"
    )))
}

/// A connection, encrypted or not.
pub(crate) enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
