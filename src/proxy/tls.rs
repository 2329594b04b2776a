//! TLS: one server config per HTTPS listener with SNI certificate selection, client configs for
//! HTTPS backends, and a backend connector that speaks plain TCP or TLS.

use crate::ir::Listener;
use crate::translate::tls::{certified_key, parse_certs};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{PrivateKeyDer, ServerName};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::net::TcpStream;

/// The one crypto provider wsgate uses (explicit, so another provider pulled in by a dependency
/// can never make the choice ambiguous).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for SNI names no Secret covers (clients see a verification error,
/// not another host's certificate).
pub(crate) fn default_certificate() -> Result<Arc<CertifiedKey>, String> {
    let generated = rcgen::generate_simple_self_signed(vec!["wsgate-default.invalid".to_string()])
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![generated.cert.der().clone()],
        signing,
    )))
}

/// Picks the certificate for a ClientHello's SNI name: exact host, then the longest wildcard,
/// then a certificate for any host, then the default.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    any: Option<Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name().map(str::to_ascii_lowercase) {
            if let Some(c) = self.exact.get(&name) {
                return Some(c.clone());
            }
            let wild = self.wildcard.iter().find(|(suffix, _)| {
                name.len() > suffix.len()
                    && name.ends_with(suffix.as_str())
                    && !name[..name.len() - suffix.len()].contains('.')
            });
            if let Some((_, c)) = wild {
                return Some(c.clone());
            }
        }
        Some(self.any.clone().unwrap_or_else(|| self.default.clone()))
    }
}

/// The server config of an HTTPS listener. Certificates that fail to load are reported and left
/// out; the listener still serves the others.
pub(crate) fn server_config(
    listener: &Listener,
    default: &Arc<CertifiedKey>,
) -> Result<(Arc<ServerConfig>, Vec<String>), String> {
    use crate::ir::HostMatch;
    let mut errors = Vec::new();
    let mut resolver = SniResolver {
        exact: HashMap::new(),
        wildcard: Vec::new(),
        any: None,
        default: default.clone(),
    };
    for cert in listener.certificates.iter() {
        let key = match certified_key(&cert.cert_pem.0, &cert.key_pem.0) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                errors.push(format!("{}: {e}", cert.source));
                continue;
            }
        };
        for host in &cert.hosts {
            match host {
                HostMatch::Exact(h) => {
                    resolver
                        .exact
                        .entry(h.clone())
                        .or_insert_with(|| key.clone());
                }
                // A certificate's `*.` covers one label, whatever the route's wildcard covers.
                HostMatch::Wildcard(suffix) | HostMatch::Suffix(suffix) => {
                    resolver.wildcard.push((suffix.clone(), key.clone()))
                }
                HostMatch::Any => {
                    resolver.any.get_or_insert_with(|| key.clone());
                }
            }
        }
    }
    resolver
        .wildcard
        .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), errors))
}

/// A client config verifying backends against `ca_pem`, or the bundled public roots.
pub(crate) fn client_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in parse_certs(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable CA certificate: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection to a backend: plain TCP, or TLS verified against the pool's client config.
/// The TLS state is boxed: it is large, and streams are moved between futures.
pub(crate) type BackendStream =
    tokio_util::either::Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// Connects to `host:port`, with TLS when `tls` is given. The name sent as SNI and verified in
/// the certificate is `server_name` when given (a `BackendTLSPolicy` hostname), else `host`
/// (an IP address or DNS name).
pub(crate) async fn connect(
    host: &str,
    port: u16,
    tls: Option<&Arc<ClientConfig>>,
    server_name: Option<&str>,
) -> std::io::Result<BackendStream> {
    let tcp = TcpStream::connect((host, port)).await?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(tokio_util::either::Either::Left(tcp));
    };
    let host = server_name.unwrap_or(host);
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid server name {host:?}: {e}"),
        )
    })?;
    // Boxed: the handshake future is large and only TLS backends need it.
    let stream =
        Box::pin(tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp)).await?;
    Ok(tokio_util::either::Either::Right(Box::new(stream)))
}
