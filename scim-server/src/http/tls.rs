//! Built-in HTTPS: rustls (ring provider, TLS 1.2 and 1.3 only), ALPN `h2` and `http/1.1`, and a
//! certificate that reloads on SIGHUP or when its files change without dropping a connection.
//!
//! The rustls `ServerConfig` is built once; its certificate comes from [`CertReloader`] (a
//! `ResolvesServerCert`) at every handshake, so swapping the certificate affects only handshakes
//! that start afterwards: established connections keep the session they negotiated. A reload
//! that fails (unreadable file, no certificate, a key that does not match the certificate) keeps
//! the certificate in force and logs an error, as the policy reload does (`policy::reload`).
//!
//! [`check_plain_http`] is the rule that plain HTTP is served only on loopback unless the
//! operator allowed it (`--allow-plain-http`, for a TLS-terminating reverse proxy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::Digest;

/// ALPN protocols offered, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How long a client may take over the TLS handshake before the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate chain: {reason}")]
    BadCert { path: PathBuf, reason: String },
    #[error("{path}: no certificate found (expected PEM `BEGIN CERTIFICATE` blocks)")]
    NoCert { path: PathBuf },
    #[error("{path}: no usable private key (expected PEM PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the private key {key} does not match the certificate {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// The provider every TLS listener uses: ring, the one the rest of the build uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain and its key and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        path: cert.to_path_buf(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read {
        path: key.to_path_buf(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_path_buf(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    })
}

/// SHA-256 of the leaf certificate, hex (logged on every load so an operator can tell which
/// certificate is in force).
pub fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|c| hex::encode(sha2::Sha256::digest(c.as_ref())))
        .unwrap_or_default()
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[derive(Debug)]
struct State {
    key: Arc<CertifiedKey>,
    /// Modification times at the last (attempted) load.
    stamps: (Option<SystemTime>, Option<SystemTime>),
    generation: u64,
}

/// The certificate in force and the files it came from; cheap to clone.
#[derive(Debug, Clone)]
pub struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    state: Arc<RwLock<State>>,
}

impl CertReloader {
    /// Loads the pair; fails when the first load fails.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamps = (mtime(cert), mtime(key));
        let loaded = load_certified_key(cert, key)?;
        tracing::info!(
            cert = %cert.display(),
            sha256 = %fingerprint(&loaded),
            "TLS certificate loaded"
        );
        Ok(CertReloader {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Arc::new(RwLock::new(State {
                key: Arc::new(loaded),
                stamps,
                generation: 1,
            })),
        })
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .key
            .clone()
    }

    /// Increments on every successful reload.
    pub fn generation(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    /// Re-reads both files. On error the certificate in force stays and the error is returned
    /// (and logged).
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (mtime(&self.cert), mtime(&self.key));
        let result = load_certified_key(&self.cert, &self.key);
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.stamps = stamps;
        match result {
            Ok(k) => {
                s.generation += 1;
                tracing::info!(
                    cert = %self.cert.display(),
                    sha256 = %fingerprint(&k),
                    generation = s.generation,
                    "TLS certificate reloaded; new connections use it"
                );
                s.key = Arc::new(k);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "TLS certificate reload rejected; the previous certificate stays in force"
                );
                Err(e)
            }
        }
    }

    /// Reloads when either file's modification time changed since the last (attempted) load.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (mtime(&self.cert), mtime(&self.key));
        let changed = self.state.read().unwrap_or_else(|p| p.into_inner()).stamps != now;
        if changed {
            self.reload().map(|()| true)
        } else {
            Ok(false)
        }
    }

    /// Polls the files every `every` and reloads on SIGHUP (Unix), on the current tokio runtime.
    pub fn spawn_watcher(&self, every: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            loop {
                tick.tick().await;
                let _ = me.reload_if_changed();
            }
        });
        #[cfg(unix)]
        {
            let me = self.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    tracing::warn!(
                        "cannot listen for SIGHUP; the TLS certificate reloads on file change only"
                    );
                    return;
                };
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    let _ = me.reload();
                }
            });
        }
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The server configuration: TLS 1.2 and 1.3, no client certificates, ALPN `h2` then
/// `http/1.1`, the certificate from `certs` at each handshake.
pub fn server_config(certs: &CertReloader) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs.clone()));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Plain HTTP is served only on loopback addresses unless `allowed`: a SCIM bearer token sent
/// in clear over a network is a token given away.
pub fn check_plain_http(addrs: &[SocketAddr], allowed: bool) -> Result<(), String> {
    if allowed {
        return Ok(());
    }
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        None => Ok(()),
        Some(addr) => Err(format!(
            "refusing to serve plain HTTP on {addr}, which is not a loopback address: bearer \
             tokens would cross the network in clear. Give --tls-cert and --tls-key (or `[tls] \
             cert` and `key` in the config) to serve HTTPS, or --allow-plain-http \
             (`allow_plain_http = true`) when a TLS-terminating reverse proxy is in front."
        )),
    }
}

/// An accepted connection, plain or TLS (one type, so the front door and actix-http see one IO
/// type per listener either way).
#[derive(Debug)]
pub enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl Conn {
    /// Completes the TLS handshake (bounded by [`HANDSHAKE_TIMEOUT`]); `true` when the client
    /// chose HTTP/2 through ALPN.
    pub async fn accept(
        acceptor: &tokio_rustls::TlsAcceptor,
        io: tokio::net::TcpStream,
    ) -> std::io::Result<(Conn, bool)> {
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        Ok((Conn::Tls(Box::new(tls)), h2))
    }
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_write_vectored(cx, bufs),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io) => io.is_write_vectored(),
            Conn::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_flush(cx),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_unless_allowed() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().expect("test value");
        let lo6: SocketAddr = "[::1]:8080".parse().expect("test value");
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("test value");
        let lan: SocketAddr = "10.1.2.3:8080".parse().expect("test value");
        assert!(check_plain_http(&[lo, lo6], false).is_ok());
        let err = check_plain_http(&[lo, any], false).expect_err("refused");
        assert!(err.contains("0.0.0.0:8080"), "{err}");
        assert!(err.contains("--allow-plain-http"), "{err}");
        assert!(check_plain_http(&[lan], false).is_err());
        assert!(check_plain_http(&[lan, any], true).is_ok());
    }

    fn self_signed(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_reload_swaps_the_certificate_and_a_bad_one_keeps_the_old() {
        let dir = std::env::temp_dir().join(format!("scimhub-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let (a_cert, a_key) = self_signed("a");
        std::fs::write(&cert, &a_cert).expect("write");
        std::fs::write(&key, &a_key).expect("write");
        let certs = CertReloader::load(&cert, &key).expect("loads");
        let a = fingerprint(&certs.current());
        assert!(!certs.reload_if_changed().expect("unchanged"));

        // A certificate whose key is still the old one: refused, A stays.
        let (b_cert, b_key) = self_signed("b");
        std::fs::write(&cert, &b_cert).expect("write");
        let err = certs.reload().expect_err("mismatch");
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        assert_eq!(fingerprint(&certs.current()), a);
        assert_eq!(certs.generation(), 1);

        // The matching key arrives: B is in force.
        std::fs::write(&key, &b_key).expect("write");
        certs.reload().expect("reloads");
        assert_ne!(fingerprint(&certs.current()), a);
        assert_eq!(certs.generation(), 2);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn missing_or_garbage_files_are_named() {
        let dir = std::env::temp_dir().join(format!("scimhub-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("test value");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let err = load_certified_key(&cert, &key).expect_err("refused");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        std::fs::write(&cert, "not a certificate").expect("test value");
        std::fs::write(&key, "not a key").expect("test value");
        let err = load_certified_key(&cert, &key).expect_err("refused");
        assert!(matches!(err, TlsError::NoCert { .. }), "{err}");
        std::fs::remove_dir_all(&dir).expect("test value");
    }
}
