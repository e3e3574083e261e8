//! The webhook port's TLS: a rustls configuration (TLS 1.2 and 1.3, ALPN h2 and
//! http/1.1) whose certificate comes from a resolver that can be swapped at run time.

use anyhow::{anyhow, Context};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The serving certificate and key files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What the logs and metrics say about a serving certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub names: Vec<String>,
    pub serial: String,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
}

/// A validated certificate chain and key, ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedPair {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// The crypto provider of every TLS configuration here (ring), independent of any
/// process-wide default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM chain and key and checks that the key belongs to the first certificate.
pub fn parse_pair(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<LoadedPair> {
    let chain = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .context("reading the certificate PEM")?;
    anyhow::ensure!(
        !chain.is_empty(),
        "no CERTIFICATE block in the certificate file"
    );
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .context("reading the key PEM")?
        .ok_or_else(|| anyhow!("no private key block in the key file"))?;
    let info = cert_info(&chain[0])?;
    let certified = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| anyhow!("the key does not go with the certificate: {e}"))?;
    // from_der accepts keys whose public half it cannot compare; insist on a match.
    certified
        .keys_match()
        .map_err(|e| anyhow!("the key does not go with the certificate: {e}"))?;
    Ok(LoadedPair {
        key: Arc::new(certified),
        info,
    })
}

pub(crate) fn read_files(files: &TlsFiles) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn cert_info(der: &[u8]) -> anyhow::Result<CertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow!("parsing the certificate: {e}"))?;
    let names = crate::certs::san_names(&cert);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        names,
        serial: cert.raw_serial_as_string(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Hands the current certificate to every new TLS handshake; [`CertResolver::set`]
/// swaps it without touching established connections.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<LoadedPair>,
}

impl CertResolver {
    pub fn new(pair: LoadedPair) -> CertResolver {
        CertResolver {
            current: RwLock::new(pair),
        }
    }

    pub fn set(&self, pair: LoadedPair) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = pair;
    }

    pub fn info(&self) -> CertInfo {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .info
            .clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .key
                .clone(),
        )
    }
}

/// Requires a client certificate signed by one of the CAs in `ca_pem` (`--client-ca`):
/// only the API server, holding such a certificate, can then ask for reviews.
pub fn client_verifier(ca_pem: &[u8]) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let certs = rustls_pemfile::certs(&mut &ca_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .context("reading the client CA PEM")?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no CERTIFICATE block in the client CA file"
    );
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| anyhow!("the client CA file holds an unusable certificate: {e}"))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| anyhow!("the client CA: {e}"))
}

/// The webhook port's rustls configuration: TLS 1.2 and 1.3 only, ALPN `h2` then
/// `http/1.1`; client certificates verified by `client_auth` when given, else not asked for.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
) -> anyhow::Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
